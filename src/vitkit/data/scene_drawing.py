"""Procedural scenes: coloured circles, squares and triangles on a light background, sampled at random with room
between them (`sample_scene`) and drawn with flat colours (`render_scene`), so every pixel is the background or an
object's exact colour. `Scene` holds the metadata questions, captions and statements are answered from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 60),
    "blue": (35, 75, 220),
    "yellow": (240, 210, 25),
    "purple": (135, 50, 175),
    "orange": (245, 135, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUND: tuple[int, int, int] = (236, 236, 232)
MAX_OBJECTS = 5


def object_extents(image_size: int) -> dict[str, int]:
    """Side length in pixels of a small / large object: 12 / 22 px at 64x64, scaled with the image size."""
    return {"small": max(4, round(12 * image_size / 64)), "large": max(7, round(22 * image_size / 64))}


def _gap(image_size: int) -> int:  # minimum free pixels between two objects' boxes
    return max(2, round(2 * image_size / 64))


def _margin(image_size: int) -> int:  # minimum free pixels between an object and the image border
    return max(1, round(image_size / 64))


def _separation(image_size: int) -> float:  # how much further left "the leftmost object" must be than the rest
    return max(3.0, 4 * image_size / 64)


# ----------------------------------------------------------------------------------------------------------------
# Scenes


@dataclass(frozen=True)
class SceneObject:
    """One object: its square bounding box is columns x0..x0+extent-1, rows y0..y0+extent-1."""

    shape: str
    colour: str
    size: str
    x0: int
    y0: int
    extent: int

    @property
    def x1(self) -> int:
        """The column just right of the box (exclusive end)."""
        return self.x0 + self.extent

    @property
    def y1(self) -> int:
        """The row just below the box (exclusive end)."""
        return self.y0 + self.extent

    @property
    def cx(self) -> float:
        """The box's horizontal centre."""
        return self.x0 + self.extent / 2

    @property
    def cy(self) -> float:
        """The box's vertical centre."""
        return self.y0 + self.extent / 2

    @property
    def name(self) -> str:
        """How captions describe it: "small red circle"."""
        return f"{self.size} {self.colour} {self.shape}"

    def matches(self, shape: str | None = None, colour: str | None = None, size: str | None = None) -> bool:
        """Whether the object fits the description (None matches anything)."""
        return ((shape is None or self.shape == shape) and (colour is None or self.colour == colour)
                and (size is None or self.size == size))


@dataclass(frozen=True)
class Scene:
    """A square image's background colour and objects: what questions, captions and statements are answered
    from."""

    image_size: int
    background: tuple[int, int, int]
    objects: tuple[SceneObject, ...]

    def find(self, shape: str | None = None, colour: str | None = None, size: str | None = None) -> list[SceneObject]:
        """The objects matching the description (None matches anything)."""
        return [o for o in self.objects if o.matches(shape, colour, size)]

    def count(self, shape: str | None = None, colour: str | None = None, size: str | None = None) -> int:
        """How many objects match the description."""
        return len(self.find(shape, colour, size))

    def unique(self, shape: str | None = None, colour: str | None = None,
               size: str | None = None) -> SceneObject | None:
        """The one object matching the description, or None when none or several match."""
        found = self.find(shape, colour, size)
        return found[0] if len(found) == 1 else None

    def extreme(self, side: str) -> SceneObject | None:
        """The clearly leftmost / rightmost object (centre and edge beyond every other object's by a margin), or
        None (fewer than two objects, or no clear winner)."""
        if side not in ("left", "right"):
            raise ConfigError(f"side must be 'left' or 'right', got {side!r}")
        if len(self.objects) < 2:
            return None
        sep = _separation(self.image_size)
        sign = 1.0 if side == "left" else -1.0
        best = min(self.objects, key=lambda o: sign * o.cx)
        for o in self.objects:
            if o is best:
                continue
            if sign * (o.cx - best.cx) < sep:
                return None
            if (side == "left" and o.x0 <= best.x0) or (side == "right" and o.x1 >= best.x1):
                return None
        return best

    def to_dict(self) -> dict:
        """Plain JSON types, as the generators' summaries record scenes."""
        return {"image_size": self.image_size, "background": list(self.background),
                "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size, "x0": o.x0, "y0": o.y0,
                             "extent": o.extent} for o in self.objects]}


def check_image_size(image_size: int) -> None:
    """ConfigError unless `image_size` is an integer >= 32 (smaller images leave no room between objects)."""
    if int(image_size) != image_size or image_size < 32:
        raise ConfigError(f"image_size must be an integer >= 32, got {image_size!r}")


def sample_scene(rng: np.random.Generator, image_size: int = 64, *, num_objects: int | None = None,
                 max_objects: int = MAX_OBJECTS, tint: int = 8) -> Scene:
    """A random scene: non-overlapping objects, each fully inside the image with a free gap around it, on the
    light background.

    Args:
        rng: the random source.
        image_size: the side of the square image, >= 32 pixels.
        num_objects: how many objects (None: uniform in 1..max_objects).
        max_objects: the most objects a scene gets when `num_objects` is None (at most MAX_OBJECTS).
        tint: the background colour is shifted by up to +-tint per channel.
    """
    check_image_size(image_size)
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise ConfigError(f"max_objects must be in 1..{MAX_OBJECTS}, got {max_objects}")
    if num_objects is not None and not 1 <= num_objects <= MAX_OBJECTS:
        raise ConfigError(f"num_objects must be in 1..{MAX_OBJECTS}, got {num_objects}")
    extents = object_extents(image_size)
    gap, margin = _gap(image_size), _margin(image_size)
    shift = rng.integers(-tint, tint + 1, size=3) if tint > 0 else np.zeros(3, dtype=np.int64)
    background = tuple(int(np.clip(c + s, 0, 255)) for c, s in zip(BACKGROUND, shift))
    n = int(num_objects) if num_objects is not None else int(rng.integers(1, max_objects + 1))
    attr_high = np.array([len(SHAPES), len(COLOUR_NAMES), len(SIZES)])
    for _ in range(200):
        objects: list[SceneObject] = []
        for shape_i, colour_i, size_i in rng.integers(0, attr_high, size=(n, 3)).tolist():
            size = SIZES[size_i]
            e = extents[size]
            # 64 candidate top-left corners at once; keep the first whose box (plus the gap) is clear of the others
            xy = rng.integers(margin, image_size - margin - e + 1, size=(64, 2))
            ok = np.ones(len(xy), dtype=bool)
            for o in objects:
                ok &= ((xy[:, 0] >= o.x1 + gap) | (xy[:, 0] + e + gap <= o.x0)
                       | (xy[:, 1] >= o.y1 + gap) | (xy[:, 1] + e + gap <= o.y0))
            free = np.flatnonzero(ok)
            if len(free) == 0:
                break  # no room: start this scene's layout again
            x0, y0 = xy[free[0]].tolist()
            objects.append(SceneObject(SHAPES[shape_i], COLOUR_NAMES[colour_i], size, x0, y0, e))
        if len(objects) == n:
            return Scene(image_size, background, tuple(objects))
    raise RuntimeError(f"could not place {n} objects in a {image_size}x{image_size} image")  # pragma: no cover


def render_scene(scene: Scene) -> Image.Image:
    """The scene as an RGB PIL image (flat colours, no antialiasing: every pixel is the background or an object's
    exact colour)."""
    img = Image.new("RGB", (scene.image_size, scene.image_size), scene.background)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        fill = COLOURS[o.colour]
        box = (o.x0, o.y0, o.x1 - 1, o.y1 - 1)
        if o.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif o.shape == "square":
            draw.rectangle(box, fill=fill)
        elif o.shape == "triangle":
            draw.polygon([(o.x0, o.y1 - 1), (o.x1 - 1, o.y1 - 1), (o.x0 + (o.extent - 1) / 2, o.y0)], fill=fill)
        else:
            raise ConfigError(f"unknown shape {o.shape!r}")
    return img


__all__ = [
    "BACKGROUND",
    "COLOURS",
    "COLOUR_NAMES",
    "MAX_OBJECTS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "check_image_size",
    "object_extents",
    "render_scene",
    "sample_scene",
]
