"""Loss: weighted softmax cross entropy against a hand computation; ignored pixels."""

import math

import pytest
import torch

from unetkit.training.loss import WeightedCrossEntropy, weighted_cross_entropy


def hand_loss(logits, target, weight, valid):
    """E = -sum_x w(x) log p_l(x) with explicit loops (B, K, H, W)."""
    total, count, wsum = 0.0, 0, 0.0
    b, k, h, w = logits.shape
    for n in range(b):
        for y in range(h):
            for x in range(w):
                if not valid[n, y, x]:
                    continue
                scores = [float(logits[n, c, y, x]) for c in range(k)]
                log_z = math.log(sum(math.exp(s) for s in scores))
                wx = float(weight[n, y, x])
                total += -wx * (scores[int(target[n, y, x])] - log_z)
                count += 1
                wsum += wx
    return total, count, wsum


def example(seed=0, shape=(2, 3, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    b, k, h, w = shape
    logits = torch.randn(shape, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (b, h, w), generator=g)
    weight = torch.rand((b, h, w), generator=g, dtype=torch.float64) * 10
    ignore = torch.rand((b, h, w), generator=g) < 0.3
    return logits, target, weight, ignore


def test_matches_hand_computation_for_each_reduction():
    logits, target, weight, ignore = example()
    total, count, wsum = hand_loss(logits, target, weight, ~ignore)
    for reduction, expected in (("sum", total), ("pixels", total / count),
                                ("weights", total / wsum)):
        got = weighted_cross_entropy(logits, target, weight, ignore, reduction)
        assert got.ndim == 0
        assert float(got) == pytest.approx(expected, rel=1e-12)


def test_unweighted_equals_torch_cross_entropy():
    logits, target, _, _ = example(1)
    ours = weighted_cross_entropy(logits, target)
    assert float(ours) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, target)))
    assert float(WeightedCrossEntropy("sum")(logits, target)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
    )


def test_two_pixel_example():
    logits = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    weight = torch.tensor([[[2.0, 5.0]]])
    # pixel 0: p_1 = 1/2; pixel 1: p_0 = 3/4
    expected = -(2 * math.log(0.5) + 5 * math.log(0.75))
    got = weighted_cross_entropy(logits, target, weight, reduction="sum")
    assert float(got) == pytest.approx(expected)


def test_ignored_pixels_get_no_gradient_and_do_not_count():
    logits, target, weight, ignore = example(2)
    target = torch.where(ignore, torch.full_like(target, 255), target)  # illegal where ignored
    logits = logits.clone().requires_grad_(True)
    loss = WeightedCrossEntropy()(logits, target, weight, ignore)
    loss.backward()
    grad = logits.grad.abs().sum(dim=1)  # (B, H, W)
    assert torch.all(grad[ignore] == 0)
    assert torch.all(grad[~ignore] > 0)
    # changing logits at ignored pixels does not change the loss
    moved = logits.detach() + ignore[:, None] * 100.0
    assert float(weighted_cross_entropy(moved, target, weight, ignore)) == pytest.approx(
        loss.item()
    )


def test_all_ignored_gives_zero_and_bad_inputs_raise():
    logits, target, weight, _ = example(3)
    everything = torch.ones_like(target, dtype=torch.bool)
    for reduction in ("pixels", "weights", "sum"):
        assert float(weighted_cross_entropy(logits, target, weight, everything, reduction)) == 0
    with pytest.raises(ValueError, match="7"):
        weighted_cross_entropy(logits, torch.full_like(target, 7))
    with pytest.raises(ValueError, match="shape"):
        weighted_cross_entropy(logits, target[:, :2])
    with pytest.raises(ValueError, match="'mean'"):
        weighted_cross_entropy(logits, target, reduction="mean")
    with pytest.raises(ValueError, match="B, K, H, W"):
        weighted_cross_entropy(logits[0], target)


def test_soft_dice_loss_is_zero_for_a_perfect_prediction_and_ignores_masked_pixels():
    from unetkit.training.loss import soft_dice_loss

    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    perfect = torch.stack([(target == 0).float(), (target == 1).float()], 1) * 40 - 20
    assert float(soft_dice_loss(perfect, target, eps=1e-6)) < 1e-6
    wrong = -perfect
    assert float(soft_dice_loss(wrong, target, eps=1e-6)) > 0.99
    ignore = torch.zeros(1, 8, 8, dtype=torch.bool)
    ignore[0, :, :4] = True  # half the object ignored: the rest still perfect
    mixed = perfect.clone()
    mixed[:, :, :, :4] = -mixed[:, :, :, :4]
    assert float(soft_dice_loss(mixed, target, ignore, eps=1e-6)) < 1e-6
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    soft_dice_loss(logits, torch.randint(0, 3, (2, 8, 8))).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
