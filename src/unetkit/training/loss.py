"""Weighted pixel-wise softmax cross entropy (paper Eq. 1, with the minus sign it lacks):

    E = - sum_x w(x) log p_{l(x)}(x),   p_k(x) = exp(a_k(x)) / sum_k' exp(a_k'(x))

Normalisation (``reduction=``): ``"pixels"`` (default) divides by the number of non-ignored
pixels, like Caffe's SoftmaxWithLoss the paper trained with; with balanced class weights
(mean 1) the value is comparable to plain cross entropy and the gradient scale does not depend
on how many borders a tile has. ``"weights"`` divides by the sum of the weights (a weighted
mean of -log p); ``"sum"`` is E itself. Ignored pixels contribute nothing and receive no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("pixels", "weights", "sum")
__all__ = ["weighted_cross_entropy", "soft_dice_loss", "WeightedCrossEntropy", "REDUCTIONS"]


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore: torch.Tensor | None = None,
    reduction: str = "pixels",
) -> torch.Tensor:
    """Weighted softmax cross entropy over pixels -> scalar.

    Args:
        logits: ``(B, K, H, W)`` unnormalised class scores (the network output).
        target: ``(B, H, W)`` integer class indices in ``[0, K)`` (any value where ignored).
        weight: ``(B, H, W)`` per-pixel weights w(x) (e.g. :func:`unetkit.weight_map`);
            ``None`` = 1.
        ignore: ``(B, H, W)`` bool, True = excluded from the loss; ``None`` = nothing ignored.
        reduction: ``"pixels"``, ``"weights"`` or ``"sum"`` (see the module docstring).

    Returns:
        0-d tensor. 0 when every pixel is ignored (or all weights are 0 with ``"weights"``).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, K, H, W), got shape {tuple(logits.shape)}")
    b, k, h, w = logits.shape
    for name, tensor in (("target", target), ("weight", weight), ("ignore", ignore)):
        if tensor is not None and tuple(tensor.shape) != (b, h, w):
            raise ValueError(
                f"{name} shape {tuple(tensor.shape)} does not match logits (B, H, W) = {(b, h, w)}"
            )
    valid = torch.ones_like(target, dtype=torch.bool) if ignore is None else ~ignore.bool()
    target = target.long()
    bad = valid & ((target < 0) | (target >= k))
    if bool(bad.any()):
        raise ValueError(f"target value {int(target[bad][0])} out of range for {k} classes")
    safe_target = torch.where(valid, target, torch.zeros_like(target))  # gather needs [0, K)
    log_p = F.log_softmax(logits, dim=1)
    nll = -log_p.gather(1, safe_target[:, None])[:, 0]  # (B, H, W)
    if weight is not None:
        nll = nll * weight.to(nll.dtype)
    # where, not multiplication: a non-finite value at an ignored pixel must not leak
    loss = torch.where(valid, nll, torch.zeros_like(nll)).sum()
    if reduction == "sum":
        return loss
    if reduction == "pixels":
        denom = valid.sum().to(nll.dtype).clamp_min(1.0)
    else:
        w = valid.to(nll.dtype) if weight is None else weight.to(nll.dtype)
        w_valid = torch.where(valid, w, torch.zeros_like(w))
        denom = w_valid.sum().clamp_min(torch.finfo(nll.dtype).tiny)
    return loss / denom  # an empty denominator means an all-zero loss: 0 / clamp = 0


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor,
                   ignore: torch.Tensor | None = None, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of the foreground classes (1..K-1), pooled over the batch -> scalar.

    ``logits`` (B, K, H, W), ``target`` (B, H, W), ``ignore`` (B, H, W) bool or None.  Dice
    scores overlap directly, so it pulls the 0.5 level of the probability onto the object outline
    whatever the class frequencies (weighted cross entropy with balanced weights pushes it out).
    ``eps`` smooths tiles without foreground.  Mean over the foreground classes.
    """
    k = logits.shape[1]
    valid = (torch.ones_like(target, dtype=torch.bool) if ignore is None else ~ignore.bool())
    p = F.softmax(logits, dim=1)
    v = valid[:, None].to(p.dtype)
    onehot = F.one_hot(torch.where(valid, target.long(), 0), k).permute(0, 3, 1, 2).to(p.dtype)
    p, onehot = p[:, 1:] * v, onehot[:, 1:] * v
    inter = (p * onehot).sum(dim=(0, 2, 3))
    total = p.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


class WeightedCrossEntropy(nn.Module):
    """Module form of :func:`weighted_cross_entropy` with a fixed ``reduction``."""

    def __init__(self, reduction: str = "pixels") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        ignore: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return weighted_cross_entropy(logits, target, weight, ignore, self.reduction)
