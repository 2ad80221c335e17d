"""IPOT (vitkit.ot): uniform marginals, agreement with exact OT, invariance to padding, batching, gradients
through the cost only, and the WPA token selection."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from vitkit.models.vilt.ot import cosine_cost, ipot_distance, ipot_plan, word_patch_alignment, wpa_masks


def ragged_problem(B: int, M: int, N: int, D: int = 16, seed: int = 0):
    """A batch of features with a different number of valid rows / columns per problem (right padding)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, M, D, generator=g), torch.randn(B, N, D, generator=g)
    m_len = torch.randint(2, M + 1, (B,), generator=g)
    n_len = torch.randint(2, N + 1, (B,), generator=g)
    x_mask = torch.arange(M)[None] < m_len[:, None]
    y_mask = torch.arange(N)[None] < n_len[:, None]
    return x, y, x_mask, y_mask


def test_marginals_are_uniform_over_valid_tokens():
    x, y, xm, ym = ragged_problem(B=6, M=12, N=20)
    _, plan = ipot_distance(x, y, xm, ym)
    rows, cols = plan.sum(2), plan.sum(1)  # [B, M], [B, N]
    want_rows = xm.float() / xm.sum(1, keepdim=True)
    want_cols = ym.float() / ym.sum(1, keepdim=True)
    assert (rows - want_rows).abs().max() < 1e-3
    assert (cols - want_cols).abs().max() < 1e-3
    assert torch.allclose(plan.sum((1, 2)), torch.ones(6), atol=1e-3)
    assert (plan[~(xm[:, :, None] & ym[:, None, :])] == 0).all()  # no mass on padding


@pytest.mark.parametrize("n,d", [(4, 8), (7, 16), (10, 4), (12, 32)])
def test_distance_matches_exact_ot_on_square_problems(n, d):
    """With n = m and uniform marginals an optimal plan is a permutation / n (Birkhoff), so
    linear_sum_assignment gives the exact OT distance."""
    g = torch.Generator().manual_seed(n * 100 + d)
    x, y = torch.randn(5, n, d, generator=g), torch.randn(5, n, d, generator=g)
    mask = torch.ones(5, n, dtype=torch.bool)
    dist, _ = ipot_distance(x, y, mask, mask)
    cost = cosine_cost(x, y)
    for b in range(5):
        r, c = linear_sum_assignment(cost[b].numpy())
        exact = float(cost[b].numpy()[r, c].mean())
        assert abs(dist[b].item() - exact) <= 0.02 * exact, (b, dist[b].item(), exact)
        assert dist[b].item() >= exact - 1e-5  # a feasible plan never beats the optimum


def test_padding_never_changes_the_result():
    x, y, xm, ym = ragged_problem(B=4, M=8, N=10)
    dist, plan = ipot_distance(x, y, xm, ym)
    # the same problems with 5 extra (masked, garbage) rows and 7 extra columns, at the end of each
    xp = torch.cat([x, 100 * torch.randn(4, 5, x.shape[2])], 1)
    yp = torch.cat([y, 100 * torch.randn(4, 7, y.shape[2])], 1)
    xmp = torch.cat([xm, torch.zeros(4, 5, dtype=torch.bool)], 1)
    ymp = torch.cat([ym, torch.zeros(4, 7, dtype=torch.bool)], 1)
    dist_p, plan_p = ipot_distance(xp, yp, xmp, ymp)
    torch.testing.assert_close(dist_p, dist, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(plan_p[:, :8, :10], plan, rtol=1e-5, atol=1e-7)
    assert plan_p[:, 8:].abs().max() == 0 and plan_p[:, :, 10:].abs().max() == 0


def test_batched_equals_one_problem_at_a_time():
    x, y, xm, ym = ragged_problem(B=5, M=9, N=11)
    dist, plan = ipot_distance(x, y, xm, ym)
    for b in range(5):
        m, n = int(xm[b].sum()), int(ym[b].sum())
        d1, p1 = ipot_distance(x[b : b + 1, :m], y[b : b + 1, :n], xm[b : b + 1, :m], ym[b : b + 1, :n])
        torch.testing.assert_close(d1[0], dist[b], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(p1[0], plan[b, :m, :n], rtol=1e-5, atol=1e-7)


def test_gradient_flows_through_the_cost_only():
    x, y, xm, ym = ragged_problem(B=3, M=6, N=7)
    x.requires_grad_(True)
    y.requires_grad_(True)
    dist, plan = ipot_distance(x, y, xm, ym)
    assert not plan.requires_grad
    dist.sum().backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    assert (x.grad[~xm] == 0).all() and (y.grad[~ym] == 0).all()  # padding gets no gradient
    # d/dC of sum(C * T) with T held constant is T: compare with the explicit formula
    xc, yc = x.detach().clone().requires_grad_(True), y.detach()
    (cosine_cost(xc, yc) * plan).sum().backward()
    torch.testing.assert_close(x.grad, xc.grad, rtol=1e-4, atol=1e-6)


def test_empty_problem_gives_zero_plan_not_nan():
    x, y = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
    xm = torch.tensor([[True, True, False, False], [False] * 4])
    ym = torch.ones(2, 5, dtype=torch.bool)
    dist, plan = ipot_distance(x, y, xm, ym)
    assert torch.isfinite(dist).all() and torch.isfinite(plan).all()
    assert dist[1] == 0 and plan[1].abs().sum() == 0


def test_half_precision_features_are_solved_in_float32():
    x, y, xm, ym = ragged_problem(B=2, M=6, N=8)
    d32, _ = ipot_distance(x, y, xm, ym)
    d16, plan = ipot_distance(x.bfloat16(), y.bfloat16(), xm, ym)
    assert plan.dtype == torch.float32 and d16.dtype == torch.float32
    torch.testing.assert_close(d16, d32, rtol=2e-2, atol=1e-3)


def test_ipot_plan_uses_the_given_hyperparameters():
    x, y, xm, ym = ragged_problem(B=2, M=6, N=6)
    cost = cosine_cost(x, y)
    few = ipot_plan(cost, xm, ym, iterations=1)
    many = ipot_plan(cost, xm, ym, iterations=50)
    assert not torch.allclose(few, many)
    assert torch.allclose(ipot_plan(cost, xm, ym, beta=0.5, iterations=50, k=1), many)


def test_wpa_excludes_text_cls_sep_and_image_cls():
    text_masks = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    image_masks = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    t, i = wpa_masks(text_masks, image_masks)
    assert t.tolist() == [[False, True, True, False, False, False], [False, True, True, True, True, False]]
    assert i.tolist() == [[False, True, True, False], [False, True, True, True]]
    assert text_masks[0, 3] == 1  # inputs untouched

    feats_t, feats_i = torch.randn(2, 6, 8), torch.randn(2, 4, 8)
    dist, plan = word_patch_alignment(feats_t, feats_i, text_masks, image_masks)
    assert dist.shape == (2,) and plan.shape == (2, 6, 4)
    assert plan[:, 0].abs().sum() == 0 and plan[:, :, 0].abs().sum() == 0  # no [CLS] on either side
    assert plan[0, 3].abs().sum() == 0 and plan[1, 5].abs().sum() == 0  # no [SEP]
