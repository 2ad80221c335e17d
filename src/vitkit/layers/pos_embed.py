"""Position embeddings: resampling a learned grid, and fixed 2-D sin-cos embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int],
    *,
    num_prefix: int = 0,
    mode: str = "bicubic",
    antialias: bool = True,
    align_corners: bool | None = None,
) -> torch.Tensor:
    """Resample [1, num_prefix + gh*gw, D] to another (possibly non-square) grid; prefix tokens are kept as is.

    Defaults match timm (bicubic, antialias); ViLT uses mode="bilinear", align_corners=True, antialias=False.
    """
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    D = grid.shape[-1]
    if grid.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"position embedding has {grid.shape[1]} grid tokens, not {old_grid[0]}x{old_grid[1]}")
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], D).permute(0, 3, 1, 2)  # [1, D, gh, gw]
    grid = F.interpolate(grid, size=tuple(new_grid), mode=mode, align_corners=align_corners, antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, D).to(pos_embed.dtype)  # [1, gh'*gw', D]
    return torch.cat([prefix, grid], dim=1)


def sincos_2d_pos_embed(grid: tuple[int, int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sin-cos embeddings [gh*gw, dim], row-major over the grid.

    Half the channels encode the column (x), half the row (y), each as [sin, cos] over dim/4 frequencies
    1/temperature^(i/(dim/4)) — the layout of MAE and DiT (`get_2d_sincos_pos_embed`), so their fixed
    embeddings are reproduced exactly.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    gh, gw = grid
    omega = torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0)
    omega = 1.0 / temperature**omega  # [dim/4]
    ys, xs = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )
    out_x = xs.reshape(-1, 1) * omega[None]  # [gh*gw, dim/4]
    out_y = ys.reshape(-1, 1) * omega[None]
    emb = torch.cat([out_x.sin(), out_x.cos(), out_y.sin(), out_y.cos()], dim=1)  # [gh*gw, dim]
    return emb.float()
