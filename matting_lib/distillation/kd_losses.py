"""Knowledge-distillation losses as pure tensor functions (no modules, no state).

Features are encoder/decoder stage outputs of shape ``(B, C, H, W)`` (float). Every loss returns a
scalar tensor, differentiable with respect to the student features; teacher features are treated as
constants by the caller (they come from a frozen teacher under ``torch.no_grad``).

Similarity-preserving KD (the paper; ``docs/paper_notes.md`` §3):
    * :func:`similarity_matrix` / :func:`similarity_loss` for ``batch``, ``spatial`` and ``channel``.
      ``batch`` follows Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019;
      ``spatial`` and ``channel`` follow Yoon, Park & Cho, IEEE SPL 2020 (the SPKD code's
      ``spatial_similarity`` / ``channel_similarity``: eps 1e-7 added to the L2 norm).
    * The spatial loss has an exact low-memory form (:func:`spatial_loss_efficient`) that never builds
      the ``(HW, HW)`` matrices.

Baselines of the paper's Table 1:
    * :func:`at_loss`   — attention transfer, Zagoruyko & Komodakis, ICLR 2017.
    * :func:`fsp_loss`  — flow of solution procedure, Yim et al., CVPR 2017.
    * :func:`ofd_loss`  — overhaul of feature distillation, Heo et al., ICCV 2019, with
      :func:`ofd_margin` computing the per-channel margin from the teacher's BatchNorm.
    * Hinton-style output distillation is not a feature loss; in this regression setting it is the alpha
      loss against the teacher's alpha (see :mod:`matting_lib.distillation.distill`).

:data:`KD_LOSSES` is the plain-dict registry of feature-distillation types (each summed over the selected
layers) that :class:`matting_lib.distillation.distill.DistillObjective` dispatches on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from matting_lib.params import lookup

SPATIAL_MODES = ("auto", "explicit", "efficient")
EPS_NORM = 1e-7  # added to the L2 norm in the SPKD code's spatial/channel similarity

SimilarityKind = Literal["batch", "spatial", "channel"]
SpatialMode = Literal["auto", "explicit", "efficient"]


def _check_features(name: str, f: Tensor) -> None:
    if f.dim() != 4:
        raise ValueError(f"{name}: expected a feature map of shape (B, C, H, W), got shape {tuple(f.shape)}")


def _unit_positions(f: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, HW) with each position's C-vector divided by (its L2 norm + 1e-7)."""
    f = f.flatten(2)
    return f / (f.norm(dim=1, keepdim=True) + EPS_NORM)


def _unit_channels(f: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, HW) with each channel's HW-vector divided by (its L2 norm + 1e-7)."""
    f = f.flatten(2)
    return f / (f.norm(dim=2, keepdim=True) + EPS_NORM)


def batch_similarity(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, B): Q = F'F'ᵀ with F' = features reshaped (B, CHW), each row of Q divided by its L2
    norm (``F.normalize``, as Tung & Mori)."""
    flat = features.flatten(1)  # (B, CHW)
    return F.normalize(flat @ flat.t(), p=2, dim=1)


def spatial_similarity(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, HW, HW): per sample, each position's C-vector unit-normalised (eps 1e-7 added to
    the norm); cosine similarity between positions."""
    u = _unit_positions(features)  # (B, C, HW)
    return u.transpose(1, 2) @ u


def channel_similarity(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, C): per sample, each channel's HW-vector unit-normalised (eps 1e-7); cosine
    similarity between channels."""
    u = _unit_channels(features)  # (B, C, HW)
    return u @ u.transpose(1, 2)


#: similarity kind -> its matrix of one feature map (the three similarities of docs/paper_notes.md §3)
SIMILARITIES: dict[str, Callable[[Tensor], Tensor]] = {
    "batch": batch_similarity, "spatial": spatial_similarity, "channel": channel_similarity}
SIMILARITY_KINDS = tuple(SIMILARITIES)


def similarity_matrix(kind: SimilarityKind, features: Tensor) -> Tensor:
    """The similarity matrix of one feature map: ``SIMILARITIES[kind](features)``.

    Args:
        kind: ``"batch"`` -> ``(B, B)`` (:func:`batch_similarity`), ``"spatial"`` -> ``(B, HW, HW)``
            (:func:`spatial_similarity`), ``"channel"`` -> ``(B, C, C)`` (:func:`channel_similarity`).
        features: ``(B, C, H, W)`` float.

    The spatial matrix is ``B·(HW)²`` floats: 2.6 GB at B=16 for a 80×80 stage; use
    :func:`similarity_loss` (which avoids it) for training.
    """
    fn = lookup(SIMILARITIES, kind, "similarity kind")
    _check_features("features", features)
    return fn(features)


def spatial_loss_efficient(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared difference of the spatial similarity matrices without building them.

    For one sample with position-normalised features Ŝ (Cs, N) and T̂ (Ct, N), N = HW:
    ‖ŜᵀŜ − T̂ᵀT̂‖²_F = ‖ŜŜᵀ‖²_F − 2‖ŜT̂ᵀ‖²_F + ‖T̂T̂ᵀ‖²_F (expand the square; tr(ŜᵀŜT̂ᵀT̂) = ‖ŜT̂ᵀ‖²_F).
    Only (Cs, Cs), (Cs, Ct) and (Ct, Ct) products are formed: memory O(B·C²) instead of O(B·N²), time
    O(B·N·C²) instead of O(B·N²·C). Exact in real arithmetic; computed in at least float32 (half-precision
    inputs are upcast, since the three terms cancel). Returns the mean over all B·N² elements.
    """
    _check_features("student", student)
    _check_features("teacher", teacher)
    dtype = torch.promote_types(torch.promote_types(student.dtype, teacher.dtype), torch.float32)
    s = _unit_positions(student.to(dtype))  # (B, Cs, N)
    t = _unit_positions(teacher.to(dtype))  # (B, Ct, N)
    ss = (s @ s.transpose(1, 2)).square().sum()  # Σ_b ‖ŜŜᵀ‖²
    st = (s @ t.transpose(1, 2)).square().sum()  # Σ_b ‖ŜT̂ᵀ‖²
    tt = (t @ t.transpose(1, 2)).square().sum()  # Σ_b ‖T̂T̂ᵀ‖²
    n = s.shape[-1]
    return ((ss - 2.0 * st + tt) / (s.shape[0] * n * n)).to(student.dtype)


def choose_spatial_mode(student: Tensor, teacher: Tensor, mode: SpatialMode = "auto") -> str:
    """Resolve ``mode``: ``"auto"`` picks ``"efficient"`` when HW > max(Cs, Ct), else ``"explicit"``.

    At HW > C the (HW, HW) matrices are larger than the (C, C) products and the efficient form is both
    cheaper in memory (B·C² vs B·HW²) and in time (B·HW·C² vs B·HW²·C); below it the explicit form is
    the cheaper one and the memory is small either way.
    """
    if mode not in SPATIAL_MODES:
        raise ValueError(f"unknown spatial_mode {mode!r}; valid modes: {', '.join(SPATIAL_MODES)}")
    if mode != "auto":
        return mode
    hw = student.shape[-2] * student.shape[-1]
    return "efficient" if hw > max(student.shape[1], teacher.shape[1]) else "explicit"


def similarity_loss(kind: SimilarityKind, student: Tensor, teacher: Tensor, *,
                    spatial_mode: SpatialMode = "auto") -> Tensor:
    """Mean squared difference of the student's and teacher's similarity matrices (SPKD's ``nn.MSELoss``).

    The mean runs over every element, the batch included: B² (batch), B·(HW)² (spatial), B·C² (channel).

    Args:
        kind: ``"batch"``, ``"spatial"`` or ``"channel"`` (see :func:`similarity_matrix`).
        student: ``(B, Cs, H, W)``. For ``channel`` pass the student features *after* the learned 1×1
            adapter, so that Cs equals the teacher's Ct.
        teacher: ``(B, Ct, H, W)`` (constant).
        spatial_mode: ``"explicit"`` builds the (HW, HW) matrices; ``"efficient"`` uses
            :func:`spatial_loss_efficient`; ``"auto"`` chooses (see :func:`choose_spatial_mode`).
    """
    lookup(SIMILARITIES, kind, "similarity kind")
    _check_features("student", student)
    _check_features("teacher", teacher)
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"{kind} similarity: batch sizes differ (student {student.shape[0]}, "
                         f"teacher {teacher.shape[0]})")
    if kind in ("spatial", "channel") and student.shape[-2:] != teacher.shape[-2:]:
        raise ValueError(f"{kind} similarity: spatial sizes differ (student {tuple(student.shape[-2:])}, "
                         f"teacher {tuple(teacher.shape[-2:])}); distil layers of the same resolution")
    if kind == "channel" and student.shape[1] != teacher.shape[1]:
        raise ValueError(f"channel similarity needs equal channel counts, got student {student.shape[1]} vs "
                         f"teacher {teacher.shape[1]}: pass the student features through a 1×1 adapter first "
                         f"(DistillObjective does this)")
    if kind == "spatial" and choose_spatial_mode(student, teacher, spatial_mode) == "efficient":
        return spatial_loss_efficient(student, teacher)
    return (similarity_matrix(kind, student) - similarity_matrix(kind, teacher)).square().mean()


# ------------------------------------------------------------------------------------------- baselines
def _pool_to_common_size(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool the larger of two maps down to the smaller one's (H, W) (as common AT/FSP code does)."""
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    if (ha, wa) == (hb, wb):
        return a, b
    if ha * wa > hb * wb:
        return F.adaptive_avg_pool2d(a, (hb, wb)), b
    return a, F.adaptive_avg_pool2d(b, (ha, wa))


def attention_map(features: Tensor, p: float = 2.0) -> Tensor:
    """Spatial attention map of Zagoruyko & Komodakis (ICLR 2017): Σ_c |F_c|^p, L2-normalised per sample.

    features: ``(B, C, H, W)`` -> ``(B, H·W)`` with unit L2 norm per row (F.normalize, eps 1e-12).
    Their code uses the channel *mean*; the normalisation makes sum and mean identical.
    """
    _check_features("features", features)
    return F.normalize(features.abs().pow(p).sum(1).flatten(1), p=2, dim=1)


def at_loss(student: Tensor, teacher: Tensor, p: float = 2.0) -> Tensor:
    """Attention-transfer loss: mean squared difference of the normalised attention maps (one layer).

    Channel counts may differ; if spatial sizes differ the larger map is average-pooled to the smaller.
    Zagoruyko & Komodakis weight the sum over layers by β/2 = 500; the SPKD code uses weight 1 with the
    same per-layer mean (set the weight in :class:`matting_lib.distillation.distill.DistillConfig`).
    """
    student, teacher = _pool_to_common_size(student, teacher)
    return (attention_map(student, p) - attention_map(teacher, p)).square().mean()


def fsp_matrix(first: Tensor, second: Tensor) -> Tensor:
    """FSP ("flow of solution procedure") matrix of Yim et al. (CVPR 2017) between two layers.

    first ``(B, C1, H1, W1)``, second ``(B, C2, H2, W2)``; the larger map is average-pooled to the smaller
    size (the SPKD code pools ``first``); G = F1 F2ᵀ / (H·W) -> ``(B, C1, C2)``.
    """
    _check_features("first", first)
    _check_features("second", second)
    first, second = _pool_to_common_size(first, second)
    a = first.flatten(2)  # (B, C1, N)
    b = second.flatten(2)  # (B, C2, N)
    return a @ b.transpose(1, 2) / a.shape[-1]  # (B, C1, C2)


def fsp_loss(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
    """Sum over consecutive layer pairs (l, l+1) of the mean squared difference of the FSP matrices.

    ``student[i]`` and ``teacher[i]`` must have equal channel counts (the SPKD code passes the student
    features through the channel adapters first). Needs at least two layers.
    """
    if len(student) != len(teacher) or len(student) < 2:
        raise ValueError(f"FSP needs the same number (at least 2) of student and teacher layers, got "
                         f"{len(student)} and {len(teacher)}: select two or more layers")
    total = student[0].new_zeros(())
    for i in range(len(student) - 1):
        gs = fsp_matrix(student[i], student[i + 1])
        gt = fsp_matrix(teacher[i], teacher[i + 1])
        if gs.shape != gt.shape:
            raise ValueError(f"FSP pair {i}: student matrix {tuple(gs.shape)} vs teacher {tuple(gt.shape)}; "
                             f"adapt the student's channels to the teacher's first")
        total = total + (gs - gt).square().mean()
    return total


def ofd_margin(bn_weight: Tensor, bn_bias: Tensor) -> Tensor:
    """Per-channel OFD margin from the teacher's pre-ReLU BatchNorm (Heo et al., ICCV 2019, Eq. 3).

    Assuming the BN output of a channel is N(β, γ²), the margin is the expected value of its negative
    part: m = β − |γ|·φ(β/|γ|)/Φ(−β/|γ|) when Φ(−β/|γ|) > 0.001, else −3|γ| (their code's rule).
    bn_weight, bn_bias: ``(C,)`` -> margins ``(C,)`` (float32, on the BN's device), all ≤ 0 in practice.
    """
    s = bn_weight.detach().double().abs().clamp_min(1e-12)
    m = bn_bias.detach().double()
    z = -m / s
    cdf = torch.special.ndtr(z)
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    expected = m - s * pdf / cdf.clamp_min(1e-300)
    return torch.where(cdf > 1e-3, expected, -3.0 * s).float()


def ofd_loss(student: Tensor, teacher: Tensor, margin: Tensor | None) -> Tensor:
    """OFD partial L2 between connector-mapped student features and teacher features, summed, per sample.

    Args:
        student: ``(B, C, H, W)`` — the student feature after the OFD connector (1×1 conv + BN).
        teacher: ``(B, C, H, W)`` — the teacher feature.
        margin: ``(C,)`` from :func:`ofd_margin`, or ``None`` for a layer with no ReLU (decoder outputs):
            then the loss is the plain squared error.

    Heo et al. distil *pre*-ReLU teacher features: target = max(t, m); an element counts when
    student > target or target > 0. Our features are taken after ReLU and pooling (max pooling
    commutes with ReLU, so t = ReLU(maxpool(pre-ReLU))): where t = 0 the pre-ReLU value was ≤ 0 and
    is replaced by the margin, so target = t if t > 0 else m. This differs from the original only where
    m < pre-ReLU value ≤ 0, which post-ReLU features cannot see. Returns Σ over elements / B.
    """
    _check_features("student", student)
    _check_features("teacher", teacher)
    if student.shape != teacher.shape:
        raise ValueError(f"OFD: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}; "
                         f"map the student through its connector first")
    if margin is None:
        return (student - teacher).square().sum() / student.shape[0]
    m = margin.to(teacher.dtype).view(1, -1, 1, 1)
    target = torch.where(teacher > 0, teacher, m)
    keep = (student > target) | (target > 0)
    return ((student - target).square() * keep).sum() / student.shape[0]


# ------------------------------------------------------------------------------------------- registry
# Each feature-distillation type of the paper's Table 1 as a term summed over the selected layers.
@dataclass(frozen=True)
class TermContext:
    """What a KD term may need besides the features: the spatial mode and per-layer OFD margins."""

    spatial_mode: str = "auto"
    margins: tuple[Tensor | None, ...] = ()


@dataclass(frozen=True)
class KDLoss:
    """One feature-distillation type: ``fn(student_feats, teacher_feats, ctx) -> scalar``, summed over layers.

    ``student_input`` says which view of the student features ``fn`` receives: ``"raw"``, ``"adapter"``
    (1×1 conv to the teacher's channels) or ``"connector"`` (OFD's 1×1 conv + BN).
    """

    fn: Callable[[Sequence[Tensor], Sequence[Tensor], TermContext], Tensor]
    student_input: Literal["raw", "adapter", "connector"]


def _per_layer(loss: Callable[[Tensor, Tensor], Tensor]):
    return lambda fs, ft, ctx: sum((loss(s, t) for s, t in zip(fs, ft)), fs[0].new_zeros(()))


def _spatial(fs: Sequence[Tensor], ft: Sequence[Tensor], ctx: TermContext) -> Tensor:
    return sum((similarity_loss("spatial", s, t, spatial_mode=ctx.spatial_mode) for s, t in zip(fs, ft)),
               fs[0].new_zeros(()))


def _ofd(fs: Sequence[Tensor], ft: Sequence[Tensor], ctx: TermContext) -> Tensor:
    # Heo et al. / SPKD weight layer i of n by 1 / 2^(n-1-i): the deepest layer counts most.
    n = len(fs)
    return sum((ofd_loss(s, t, m) / 2 ** (n - 1 - i) for i, (s, t, m) in enumerate(zip(fs, ft, ctx.margins))),
               fs[0].new_zeros(()))


KD_LOSSES: dict[str, KDLoss] = {
    # Tung & Mori, Similarity-Preserving Knowledge Distillation, ICCV 2019
    "batch": KDLoss(_per_layer(lambda s, t: similarity_loss("batch", s, t)), "raw"),
    # Yoon, Park & Cho, IEEE SPL 2020 (spatial similarity)
    "spatial": KDLoss(_spatial, "raw"),
    # Yoon, Park & Cho, IEEE SPL 2020 (channel similarity)
    "channel": KDLoss(_per_layer(lambda s, t: similarity_loss("channel", s, t)), "adapter"),
    # Zagoruyko & Komodakis, Attention Transfer, ICLR 2017
    "at": KDLoss(_per_layer(at_loss), "raw"),
    # Yim, Joo, Bae & Kim, A Gift from Knowledge Distillation (FSP), CVPR 2017
    "fsp": KDLoss(lambda fs, ft, ctx: fsp_loss(fs, ft), "adapter"),
    # Heo et al., A Comprehensive Overhaul of Feature Distillation, ICCV 2019
    "ofd": KDLoss(_ofd, "connector"),
}
