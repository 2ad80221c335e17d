"""Batched, masked optimal transport by IPOT, and ViLT's word-patch alignment (WPA) distance.

IPOT (Xie et al. 2019, "A Fast Proximal Point Method for Computing Exact Wasserstein Distance",
https://arxiv.org/abs/1802.04307) solves OT between uniform distributions over the valid tokens of each pair
with proximal-point steps; unlike Sinkhorn it converges to the exact (unregularised) plan. ViLT (Kim et al.
2021, https://arxiv.org/abs/2102.03334, Sec. 3.2) uses it with beta = 0.5, 50 outer iterations and k = 1
inner step, cost = 1 - cosine similarity between text and image token features, and the transport plan held
constant (no gradient): the loss gradient flows through the cost only.

Masks are True where a token takes part. Padded rows / columns get no mass and never change the result, so
any batch of differently sized problems is solved at once, with no Python loop over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_cost(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """1 - cosine similarity: [B, M, D], [B, N, D] -> [B, M, N], in [0, 2]."""
    x = F.normalize(x, p=2, dim=-1, eps=eps)
    y = F.normalize(y, p=2, dim=-1, eps=eps)
    return 1.0 - x @ y.transpose(1, 2)


@torch.no_grad()
def ipot_plan(
    cost: torch.Tensor,
    x_mask: torch.Tensor,
    y_mask: torch.Tensor,
    *,
    beta: float = 0.5,
    iterations: int = 50,
    k: int = 1,
) -> torch.Tensor:
    """The IPOT transport plan [B, M, N] between uniform distributions over the valid rows and columns.

    cost: [B, M, N]; x_mask: [B, M] and y_mask: [B, N], bool, True where a token takes part. Each problem's
    plan has mass 1/M_valid per valid row and 1/N_valid per valid column (columns exactly, rows to IPOT's
    convergence) and zero on padding. A problem without any valid row or column gets an all-zero plan.
    """
    cost = cost.float()
    joint = x_mask[:, :, None] & y_mask[:, None, :]  # [B, M, N]
    xm, ym = x_mask.float(), y_mask.float()
    x_len = xm.sum(1, keepdim=True).clamp_min(1.0)  # [B, 1]
    y_len = ym.sum(1, keepdim=True).clamp_min(1.0)
    A = torch.exp(-cost / beta) * joint  # the proximal kernel, zero on padding
    T = joint.float()
    u = xm / x_len  # [B, M] row scaling
    v = ym  # [B, N] column scaling (overwritten before use)

    def inv(x: torch.Tensor, length: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # 1 / (length * x) on valid entries; 0 on padding and where nothing can be transported (x = 0)
        d = length * x
        ok = (mask > 0) & (d > 0)
        return ok / d.masked_fill(~ok, 1.0)

    for _ in range(iterations):
        Q = A * T  # [B, M, N]
        for _ in range(k):
            v = inv(torch.einsum("bmn,bm->bn", Q, u), y_len, ym)  # [B, N]
            u = inv(torch.einsum("bmn,bn->bm", Q, v), x_len, xm)  # [B, M]
        T = u[:, :, None] * Q * v[:, None, :]
    return T


def ipot_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    x_mask: torch.Tensor,
    y_mask: torch.Tensor,
    *,
    beta: float = 0.5,
    iterations: int = 50,
    k: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """OT distance between two sets of token features under cosine cost.

    x: [B, M, D], y: [B, N, D]; masks [B, M], [B, N] bool (True = take part).
    Returns (distance [B] = trace(C^T T) = sum(C * T), differentiable through C; plan T [B, M, N], no grad).
    Computed in float32 whatever the input dtype (the plan's exponentials underflow in half precision).
    """
    cost = cosine_cost(x.float(), y.float())  # [B, M, N]
    joint = x_mask[:, :, None] & y_mask[:, None, :]
    cost = cost.masked_fill(~joint, 0.0)
    plan = ipot_plan(cost.detach(), x_mask, y_mask, beta=beta, iterations=iterations, k=k)
    distance = (cost * plan).sum(dim=(1, 2))  # [B] = trace(C^T T)
    return distance, plan


def wpa_masks(text_masks: torch.Tensor, image_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens word-patch alignment transports between: text without [CLS] and [SEP], image without [CLS].

    text_masks: [B, Lt] (1/True = real token, [CLS] first, [SEP] last of each row's valid tokens, right
    padding); image_masks: [B, Li] ([CLS] first). Returns bool masks of the same shapes.
    """
    t = text_masks.bool().clone()
    i = image_masks.bool().clone()
    sep = (t.sum(dim=1) - 1).clamp_min(0)  # [B] index of each row's [SEP]
    t.scatter_(1, sep[:, None], False)
    t[:, 0] = False
    i[:, 0] = False
    return t, i


def word_patch_alignment(
    text_feats: torch.Tensor,
    image_feats: torch.Tensor,
    text_masks: torch.Tensor,
    image_masks: torch.Tensor,
    *,
    beta: float = 0.5,
    iterations: int = 50,
    k: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ViLT's WPA distance per pair, from the backbone's outputs (`ViLTOutput.text_feats`, ...).

    Returns (distance [B], plan [B, Lt, Li]). ViLT's loss is 0.1 * (sum of distances of matched pairs - sum
    over mismatched pairs) / B, trained alongside image-text matching.
    """
    t, i = wpa_masks(text_masks, image_masks)
    return ipot_distance(text_feats, image_feats, t, i, beta=beta, iterations=iterations, k=k)


__all__ = ["cosine_cost", "ipot_distance", "ipot_plan", "word_patch_alignment", "wpa_masks"]
