"""The alpha-prediction loss of Deep Image Matting, used by every objective (teacher, students, distillation).

DIM-PyTorch ``utils.alpha_prediction_loss`` (Xu et al., CVPR 2017, eq. 1):
:func:`alpha_loss` = Σ sqrt(((α̂ − α)·m)² + 1e-12) / (Σ m + 1e-6), m = :func:`unknown_mask` of the trimap.
The feature-distillation losses are :mod:`matting_lib.distillation.kd_losses`; the training loop is
:mod:`matting_lib.training.loop`. Kept apart from both so that distillation and profiling use the loss without importing
the training loop.
"""

from __future__ import annotations

import torch


def unknown_mask(trimap: torch.Tensor) -> torch.Tensor:
    """1 where the trimap (N, 1, H, W) in {0, 128/255, 1} is unknown, else 0 (same dtype)."""
    return ((trimap > 0.25) & (trimap < 0.75)).to(trimap.dtype)


def alpha_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Alpha-prediction loss of DIM-PyTorch: all (N, 1, H, W), alpha in [0, 1], mask in {0, 1}; scalar."""
    diff = (pred - target) * mask
    return torch.sqrt(diff * diff + 1e-12).sum() / (mask.sum() + 1e-6)
