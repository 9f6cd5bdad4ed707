"""Student training objective: alpha losses + similarity-preserving KD and the paper's baselines.

Total loss (Yoon, Park & Cho, IEEE SPL 2020; ``docs/paper_notes.md`` §4; the SPKD code's ``over_all_loss``)::

    (1 − w1) · L_α(α_s, α_gt) + w1 · L_α(α_s, α_teacher) + Σ_type w_type · L_type(layers)

with w1 = ``teacher_alpha_weight`` (0.5 in the paper: "(alpha loss vs gt + alpha loss vs teacher) / 2";
the slides write w1 · L(α_t, α_s) + (1 − w1) · L(α_s, α_gt)). L_α is :func:`matting_lib.networks.losses.alpha_loss`
on the unknown region of the training trimap, for both alpha terms.

The paper's configurations (:data:`PAPER_CONFIGS`), as the SPKD code trains them:

=========================  ===========================  ========  ====================================
name                       feature terms (weight)       w1        notes
=========================  ===========================  ========  ====================================
student                    none                         0         plain alpha loss vs ground truth
hinton                     none                         0.5       SPKD ``KD_type='hilton'``: only the
                                                                  (gt + teacher-alpha)/2 alpha terms
at                         at (1)                       0.5
fsp                        fsp (1)                      0.5       student features through the adapters
ofd                        ofd (0.016)                  0         SPKD ``train_OFD``: gt alpha loss +
                                                                  Σ/1000 at batch 16 (= 16/1000 per sample)
batch / spatial / channel  that type (1)                0.5
spatial+channel            spatial (1), channel (1)     0.5
batch+spatial+channel      batch, spatial, channel (1)  0.5       SPKD README: ``--KD_weight [1,1,1]``
=========================  ===========================  ========  ====================================

All use layers ``conv2``–``conv5`` (encoder stages 2–5 after pooling; SPKD ``--feature_layer [1,2,3,4]``).
The plain student uses no teacher term: the paper's no-KD and Hinton rows differ, and Hinton is exactly
the teacher-alpha term. Channel and FSP pass the student features through learned 1×1 adapters (with
bias, 304,512 parameters for conv2–5 at full width, the paper's count); OFD through its own connectors
(1×1 conv without bias + BN, Heo et al.). Both live in the objective, so they are optimised with the
student and saved in the checkpoint under "objective".

OFD on this network: the SPKD code distils the *pre*-ReLU output of the last BatchNorm of encoder stages
2–5, max-pooled, with margins from those BatchNorms, layer i of n weighted 1/2^(n−1−i), and the sum over
all elements / 1000 added to the ground-truth alpha loss only. The contract's features are taken after
ReLU and pooling; since max pooling commutes with ReLU they are ReLU(pooled pre-ReLU), so
:func:`kd_losses.ofd_loss` replaces the teacher's zeros by the margin (see there). Margins come from the
same BatchNorms (:func:`bn_before_relu`); the sum is divided by the batch size (Heo et al.), and the weight
16/1000 restores SPKD's scale at its batch size of 16.

Unlike the SPKD code, the teacher is frozen: ``eval()`` (BatchNorm uses its running statistics),
``requires_grad_(False)``, forward under ``torch.no_grad``, and it is not a registered submodule (absent
from ``parameters()`` and ``state_dict()``; ``objective.train()`` does not touch it). The original leaves
it in train mode: its weights never change (they are not in the optimizer), but its BatchNorms normalise
with each batch's statistics, which at batch 16 of 320×320 crops are close to the running ones. Being frozen,
it runs as a copy with each convolution's BatchNorm folded in and ``channels_last`` weights
(:func:`models.frozen_inference_copy`, made on its first forward: 94 instead of 132 ms per batch at width 0.25, 96 px,
1 thread), equal to the eval-mode teacher up to float rounding (≈6e-8 on alpha). Evaluation and notebook 02's
verification of the teacher use the teacher itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from matting_lib.distillation.kd_losses import KD_LOSSES, SPATIAL_MODES, KDLoss, TermContext, ofd_margin
from matting_lib.distillation.teacher_cache import TeacherOutputCache
from matting_lib.networks.checkpoints import check_kind, weights_fingerprint
from matting_lib.networks.losses import alpha_loss, unknown_mask
from matting_lib.networks.models import LAYERS, build_channel_adapters, build_connector, frozen_inference_copy
from matting_lib.params import UnknownNameError, lookup
from matting_lib.paths import student_run_name
from matting_lib.provenance import code_digest

LAYER_NAMES = LAYERS  # conv1..conv5 (encoder stages after pooling), dconv5..dconv2 (decoder stages after BN)
DEFAULT_LAYERS = ("conv2", "conv3", "conv4", "conv5")
#: The layer ablation of the paper's Table 3 (spatial+channel); keys are accepted by :func:`parse_layers`.
LAYER_ABLATION = {
    "conv2-5": DEFAULT_LAYERS,
    "conv3-5+dconv5": ("conv3", "conv4", "conv5", "dconv5"),
    "conv4-5+dconv5-4": ("conv4", "conv5", "dconv5", "dconv4"),
    "conv5+dconv5-3": ("conv5", "dconv5", "dconv4", "dconv3"),
}


# ------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class DistillConfig:
    """Which terms a student trains with. Validates itself; see the module docstring for the formula.

    types: KD_LOSSES names; weights: one non-negative weight per type; layers: feature layers by name
    (``conv1``..``conv5``, ``dconv5``..``dconv2``); teacher_alpha_weight: w1 in [0, 1];
    spatial_mode: ``auto`` | ``explicit`` | ``efficient`` (see :func:`kd_losses.choose_spatial_mode`).
    """

    types: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    layers: tuple[str, ...] = DEFAULT_LAYERS
    teacher_alpha_weight: float = 0.5
    spatial_mode: str = "auto"

    def __post_init__(self) -> None:
        for name in ("types", "weights", "layers"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        for t in self.types:
            lookup(KD_LOSSES, t, "distillation type")
        if len(set(self.types)) != len(self.types):
            raise ValueError(f"DistillConfig: repeated type in {self.types}")
        if len(self.weights) != len(self.types):
            raise ValueError(f"DistillConfig: {len(self.types)} type(s) {self.types} but {len(self.weights)} "
                             f"weight(s) {self.weights}; give one weight per type")
        if any(not (w >= 0.0 and w < float("inf")) for w in self.weights):
            raise ValueError(f"DistillConfig: weights must be finite and >= 0, got {self.weights}")
        for layer in self.layers:
            lookup(dict.fromkeys(LAYER_NAMES), layer, "layer")
        if self.types and not self.layers:
            raise ValueError(f"DistillConfig: types {self.types} need at least one layer")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"DistillConfig: repeated layer in {self.layers}")
        if "fsp" in self.types and len(self.layers) < 2:
            raise ValueError(f"DistillConfig: fsp needs at least two layers, got {self.layers}")
        if not 0.0 <= self.teacher_alpha_weight <= 1.0:
            raise ValueError(f"DistillConfig: teacher_alpha_weight must be in [0, 1], got {self.teacher_alpha_weight}")
        if self.spatial_mode not in SPATIAL_MODES:
            raise ValueError(
                f"DistillConfig: unknown spatial_mode {self.spatial_mode!r}; valid: {', '.join(SPATIAL_MODES)}"
            )

    @property
    def uses_teacher(self) -> bool:
        return bool(self.types) or self.teacher_alpha_weight > 0

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _cfg(types: Sequence[str] = (), weights: Sequence[float] | None = None, w1: float = 0.5) -> DistillConfig:
    return DistillConfig(tuple(types), tuple(weights if weights is not None else [1.0] * len(types)),
                         teacher_alpha_weight=w1)


#: The configurations of the paper's Table 1, as the SPKD code trains them (see the module docstring).
PAPER_CONFIGS: dict[str, DistillConfig] = {
    "student": _cfg(w1=0.0),
    "hinton": _cfg(),
    "at": _cfg(["at"]),
    "fsp": _cfg(["fsp"]),
    "ofd": _cfg(["ofd"], [16 / 1000], w1=0.0),
    "batch": _cfg(["batch"]),
    "spatial": _cfg(["spatial"]),
    "channel": _cfg(["channel"]),
    "spatial+channel": _cfg(["spatial", "channel"]),
    "batch+spatial+channel": _cfg(["batch", "spatial", "channel"]),
}


#: The layer ablation of the paper's Table 3 as named configurations (spatial+channel on each other layer set of
#: :data:`LAYER_ABLATION`), named by :func:`config_label`, e.g. ``spatial+channel-Lconv3.conv4.conv5.dconv5``;
#: conv2-5 is ``spatial+channel`` itself. ``profiles/ablation.toml`` runs them.
ABLATION_CONFIGS: dict[str, DistillConfig] = {}
#: Every configuration a profile may name (``distill.configs``): the paper's Table 1 and the Table 3 ablation.
CONFIGS: dict[str, DistillConfig] = dict(PAPER_CONFIGS)


def _split(text: str) -> list[str]:
    return [tok for tok in re.split(r"[,+\s]+", text.strip()) if tok]


def parse_types(text: str) -> tuple[str, ...]:
    """``"spatial,channel"`` or ``"spatial+channel"`` -> ``("spatial", "channel")``; validates each name."""
    types = tuple(_split(text))
    for t in types:
        lookup(KD_LOSSES, t, "distillation type")
    return types


def parse_weights(text: str) -> tuple[float, ...]:
    """``"1,0.5"`` -> ``(1.0, 0.5)``."""
    try:
        return tuple(float(tok) for tok in _split(text.replace("+", ",")))
    except ValueError:
        raise ValueError(f"weights {text!r}: expected comma-separated numbers such as '1,1'") from None


def parse_layers(text: str) -> tuple[str, ...]:
    """Layer names, ranges or a Table 3 key: ``"conv2-5"``, ``"conv3-5,dconv5"``, ``"conv5+dconv5-3"``.

    A range ``conv2-5`` expands to conv2, conv3, conv4, conv5; ``dconv5-3`` to dconv5, dconv4, dconv3.
    """
    if text.strip() in LAYER_ABLATION:
        return LAYER_ABLATION[text.strip()]
    layers: list[str] = []
    for tok in _split(text):
        m = re.fullmatch(r"(d?conv)(\d)(?:-(\d))?", tok)
        if m is None:
            raise UnknownNameError(f"layer {tok!r} in {text!r}: expected names like conv2, dconv5 or ranges like "
                           f"conv2-5; valid names: {', '.join(LAYER_NAMES)}")
        a, b = int(m[2]), int(m[3] or m[2])
        step = 1 if b >= a else -1
        layers += [f"{m[1]}{i}" for i in range(a, b + step, step)]
    for layer in layers:
        lookup(dict.fromkeys(LAYER_NAMES), layer, "layer")
    return tuple(layers)


def make_config(config: str = "", *, types: str = "", weights: str = "", layers: str = "",
                teacher_alpha_weight: float | None = None, spatial_mode: str = "") -> DistillConfig:
    """Build a :class:`DistillConfig` from a paper configuration name and/or string overrides.

    ``config`` is a :data:`PAPER_CONFIGS` name (or empty); ``types`` (e.g. ``"spatial,channel"``) replaces
    its types with weight 1 each unless ``weights`` is given; ``layers`` replaces the layers
    (:func:`parse_layers`); ``teacher_alpha_weight`` < 0 or None keeps the configuration's; empty strings
    keep the configuration's values. Without ``config`` the defaults are those of the similarity configs.
    """
    base = lookup(CONFIGS, config, "configuration") if config else DistillConfig()
    changes: dict[str, Any] = {}
    if types.strip():
        changes["types"] = parse_types(types)
        changes["weights"] = (1.0,) * len(changes["types"])
    if weights.strip():
        changes["weights"] = parse_weights(weights)
    if layers.strip():
        changes["layers"] = parse_layers(layers)
    if teacher_alpha_weight is not None and teacher_alpha_weight >= 0:
        changes["teacher_alpha_weight"] = float(teacher_alpha_weight)
    if spatial_mode:
        changes["spatial_mode"] = spatial_mode
    return dataclasses.replace(base, **changes)


def config_label(config: DistillConfig) -> str:
    """A filesystem-safe name: the paper name when ``config`` equals one, else types plus what differs.

    Examples: ``spatial+channel``; ``spatial+channel-Lconv3.conv4.conv5.dconv5``; ``spatial-w2``; ``at-t0``.
    """
    def math_of(c: DistillConfig) -> DistillConfig:
        return dataclasses.replace(c, spatial_mode="auto")  # the mode never changes the loss

    for name, cfg in PAPER_CONFIGS.items():
        if math_of(cfg) == math_of(config):
            return name
    ref = next((c for n, c in PAPER_CONFIGS.items() if c.types == config.types and n != "student"), None)
    ref = ref or _cfg(config.types)
    label = "+".join(config.types) or ("hinton" if config.teacher_alpha_weight > 0 else "student")
    if config.layers != ref.layers:
        label += "-L" + ".".join(config.layers)
    if config.weights != ref.weights:
        label += "-w" + "_".join(f"{w:g}" for w in config.weights)
    if config.teacher_alpha_weight != ref.teacher_alpha_weight:
        label += f"-t{config.teacher_alpha_weight:g}"
    return label


for _key, _layers in LAYER_ABLATION.items():
    if _layers != DEFAULT_LAYERS:
        _cfg_l = dataclasses.replace(PAPER_CONFIGS["spatial+channel"], layers=_layers)
        ABLATION_CONFIGS[config_label(_cfg_l)] = _cfg_l
CONFIGS.update(ABLATION_CONFIGS)


def run_name(config: DistillConfig | str, seed: int) -> str:
    """The run folder name of a student: ``kd-<label>-seed<seed>``, e.g. ``kd-spatial+channel-seed0``."""
    return student_run_name(config if isinstance(config, str) else config_label(config), seed)


# ------------------------------------------------------------------------------------------- objective
def bn_before_relu(teacher: nn.Module, layer: str) -> nn.BatchNorm2d | None:
    """The BatchNorm feeding the ReLU of encoder stage ``conv<k>`` (the last BN of module ``down<k>``).

    Relies on the DIM-PyTorch module names (``down1``..``down5``) that :mod:`matting_lib.networks.models` keeps so
    the public checkpoint loads. Decoder layers (``dconv*``) have no ReLU: returns None.
    """
    if layer.startswith("dconv"):
        return None
    stage = f"down{layer[-1]}."
    bns = [m for name, m in teacher.named_modules() if name.startswith(stage) and isinstance(m, nn.BatchNorm2d)]
    if not bns:
        raise ValueError(f"OFD: cannot find the BatchNorm of encoder stage {layer!r}: the teacher "
                         f"({type(teacher).__name__}) has no BatchNorm2d under '{stage[:-1]}'; pass margins= "
                         f"explicitly to DistillObjective")
    return bns[-1]


def _channels(model: nn.Module, which: str) -> dict[str, int]:
    ch = getattr(model, "feature_channels", None)
    if not isinstance(ch, Mapping):
        raise TypeError(f"DistillObjective: the {which} ({type(model).__name__}) has no feature_channels dict; "
                        f"build it with matting_lib.networks.models.build_{which}")
    return dict(ch)


def teacher_cache_for(root, teacher_checkpoint) -> TeacherOutputCache:
    """The teacher-output cache of one teacher under ``root``, named by the teacher's weights fingerprint and the
    digest of the network code that computes its forward pass (two files with the same weights share it; another
    teacher, or changed network code, never reads its outputs)."""
    return TeacherOutputCache(root, f"{weights_fingerprint(teacher_checkpoint)[:24]}-{code_digest('networks')[:8]}")


class DistillObjective(nn.Module):
    """The student objective of the training contract: ``forward(model, batch) -> (loss, logs)``.

    Args:
        teacher: a DIMNet (frozen here: eval, no grad, not registered); may be None only when the config
            uses no teacher (``student``).
        student: the DIMNet to be trained (read only for its ``feature_channels``; not stored).
        config: the :class:`DistillConfig`.
        margins: optional OFD margins per layer (``(C,)`` tensors or None); computed from the teacher's
            BatchNorms by default (:func:`bn_before_relu`, :func:`kd_losses.ofd_margin`).
        teacher_cache: optional :class:`matting_lib.distillation.teacher_cache.TeacherOutputCache`: the teacher's
        outputs are
            read from it when another run of the same seed stored them (identical results, one forward per batch).

    Submodules ``adapters`` (channel, fsp) and ``connectors`` (ofd) are trained with the student.
    ``logs`` holds ``loss``, ``alpha`` (vs ground truth, as :class:`training.AlphaObjective` names it),
    ``alpha_teacher`` (when w1 > 0) and ``kd_<type>`` (each unweighted, summed over the layers).
    """

    def __init__(self, teacher: nn.Module | None, student: nn.Module, config: DistillConfig, *,
                 margins: Mapping[str, Tensor | None] | None = None,
                 teacher_cache: TeacherOutputCache | None = None) -> None:
        super().__init__()
        self.config = config
        self.teacher_cache = teacher_cache  # shares the teacher's forward between the runs of one seed
        if config.uses_teacher and teacher is None:
            raise ValueError(f"DistillObjective: configuration {config_label(config)!r} needs a teacher; load one "
                             f"(matting_lib.checkpoints) or use the 'student' configuration")

        check_kind(student, "student", "DistillObjective's student")
        if teacher is not None:
            check_kind(teacher, "teacher", "DistillObjective's teacher")
        object.__setattr__(self, "_teacher", teacher)  # deliberately not a registered submodule
        object.__setattr__(self, "_teacher_fast", None)  # its BN-folded channels_last copy, made on first use
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        layers = config.layers if config.types else ()
        s_ch = _channels(student, "student") if layers else {}
        t_ch = _channels(teacher, "teacher") if layers else {}
        for layer in layers:
            for which, ch in (("student", s_ch), ("teacher", t_ch)):
                if layer not in ch:
                    raise UnknownNameError(f"layer {layer!r} is not a feature layer of the {which}; "
                                           f"its layers: {', '.join(ch)}")
        views = {KD_LOSSES[t].student_input for t in config.types}
        # SPKD's 1×1 convs with bias (models.build_channel_adapters): 304,512 parameters for conv2-5 at width 1
        self.adapters = build_channel_adapters(student, teacher, layers) if "adapter" in views else nn.ModuleDict()
        self.connectors = nn.ModuleDict(
            {name: build_connector(s_ch[name], t_ch[name]) for name in layers} if "connector" in views else {})
        if "connector" in views:
            for layer in layers:
                if margins is not None:
                    margin = margins.get(layer)
                else:
                    bn = bn_before_relu(teacher, layer)
                    margin = None if bn is None else ofd_margin(bn.weight, bn.bias)
                if margin is not None:  # derived from the teacher, so kept out of the checkpoint
                    self.register_buffer(f"margin_{layer}", margin.detach().float().clone(), persistent=False)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher

    def _apply(self, fn, recurse=True):  # .to()/.cuda()/.double() move the (unregistered) teacher too
        if self._teacher is not None:
            self._teacher._apply(fn)
        object.__setattr__(self, "_teacher_fast", None)  # remade from the moved teacher on next use
        return super()._apply(fn, recurse)

    def _teacher_outputs(self, x: Tensor, layers: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """The frozen teacher's alpha and features for ``x``, computed by its BN-folded ``channels_last`` copy
        (:func:`models.frozen_inference_copy`: ~30 % cheaper on the CPU, equal up to float rounding); returned
        contiguous, so every loss sees the same tensors whether they were computed here or read from the cache."""
        if self._teacher_fast is None:
            object.__setattr__(self, "_teacher_fast", frozen_inference_copy(self._teacher))
        with torch.no_grad():
            xc = x.contiguous(memory_format=torch.channels_last)
            alpha, feats = self._teacher_fast.forward_features(xc, layers) if layers else (self._teacher_fast(xc), {})
        return alpha.contiguous(), {k: v.contiguous() for k, v in feats.items()}

    def _student_view(self, kind: str, layer: str, feature: Tensor) -> Tensor:
        if kind == "adapter":
            return self.adapters[layer](feature)
        if kind == "connector":
            return self.connectors[layer](feature)
        return feature

    def forward(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """batch: "input" (N, 4, H, W), "alpha" (N, 1, H, W) in [0, 1], "trimap" (N, 1, H, W) -> (loss, logs)."""
        cfg = self.config
        x, mask = batch["input"], unknown_mask(batch["trimap"])
        layers = cfg.layers if cfg.types else ()
        # model(x, layers=...) is DIMNet.forward_features in the form a DistributedDataParallel wrapper passes on
        s_alpha, s_feats = model(x, layers=layers) if layers else (model(x), {})
        loss_gt = alpha_loss(s_alpha, batch["alpha"], mask)
        total = (1.0 - cfg.teacher_alpha_weight) * loss_gt
        terms: dict[str, Tensor] = {"alpha": loss_gt}
        if cfg.uses_teacher:
            teacher = self._teacher
            if teacher.training:  # someone flipped it: a frozen teacher always runs with running BN stats
                teacher.eval()
            cache = self.teacher_cache
            if cache is None:
                t_alpha, t_feats = self._teacher_outputs(x, layers)
            else:  # one entry per batch for every configuration of the seed: the cache's layers and ours
                wanted = tuple(name for name in LAYER_NAMES if name in layers or name in cache.layers)
                t_alpha, t_all = cache.get(x, wanted, lambda: self._teacher_outputs(x, wanted))
                t_feats = {name: t_all[name] for name in layers}
            if cfg.teacher_alpha_weight > 0:
                terms["alpha_teacher"] = alpha_loss(s_alpha, t_alpha, mask)
                total = total + cfg.teacher_alpha_weight * terms["alpha_teacher"]
            ctx = TermContext(cfg.spatial_mode, tuple(self._buffers.get(f"margin_{name}") for name in layers))
            for kind, weight in zip(cfg.types, cfg.weights):
                spec: KDLoss = KD_LOSSES[kind]
                fs = [self._student_view(spec.student_input, name, s_feats[name]) for name in layers]
                terms[f"kd_{kind}"] = spec.fn(fs, [t_feats[name] for name in layers], ctx)
                total = total + weight * terms[f"kd_{kind}"]
        terms["loss"] = total
        values = torch.stack([t.detach().float() for t in terms.values()]).tolist()  # one device sync
        return total, dict(zip(terms, values))
