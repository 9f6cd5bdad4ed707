"""The DIM teacher and the paper's student: SegNet-style encoder-decoders that predict an alpha matte.

Teacher (docs/paper_notes.md §1): the encoder-decoder of Deep Image Matting (Xu et al., CVPR 2017) as re-implemented by
DIM-PyTorch (foamliu/Deep-Image-Matting-PyTorch, ``models.py``), layer for layer and with the same state-dict
names, so its public ``BEST_checkpoint.tar`` loads strictly (see :mod:`matting_lib.checkpoints`):

* encoder = VGG-16 layout, stages of 64, 128, 256, 512, 512 channels with 2, 2, 3, 3, 3 convolutions
  (3×3, padding 1, bias) each followed by BatchNorm and ReLU; each stage ends with 2×2 max pooling that keeps
  the indices and the pre-pool size (modules ``down1..down5``, ``convK.cbr_unit.{0: conv, 1: BN}``);
* decoder = 5 stages of max-unpooling (stored indices and size) → one 5×5 conv (padding 2, bias) →
  BatchNorm, **no ReLU**; widths 512, 256, 128, 64, 1 (modules ``up5..up1``, ``conv.cbr_unit.{0, 1}``);
* output = sigmoid. 25,582,595 parameters at width 1.

Student (docs/paper_notes.md §2; Yoon, Park & Cho, IEEE SPL 2020): the same shape at half width with 1, 1, 1, 2, 2
encoder convolutions: 4,877,283 parameters; with the four 1×1 channel-similarity adapters of encoder stages
2–5 (:func:`build_channel_adapters`) 5,181,795, the paper's count.

``width`` scales every stage for CPU-sized runs: a stage of ``c`` channels gets ``max(4, round(c·width))``
(half-up rounding; never below 4 so BatchNorm statistics stay meaningful). The 4 input channels and the
1 output channel are not scaled. Any H×W ≥ 32 works (pooling floors, unpooling gets the stored size).

Intermediate features by name (for distillation): ``conv1``..``conv5`` = encoder stage outputs after pooling,
``dconv5``..``dconv2`` = decoder stage outputs after their BatchNorm (``dconv5`` is the first decoder stage).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

ENCODER_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
DECODER_LAYERS = ("dconv5", "dconv4", "dconv3", "dconv2")
LAYERS = ENCODER_LAYERS + DECODER_LAYERS

TEACHER_WIDTHS = (64, 128, 256, 512, 512)
TEACHER_CONVS = (2, 2, 3, 3, 3)
STUDENT_WIDTHS = (32, 64, 128, 256, 256)
STUDENT_CONVS = (1, 1, 1, 2, 2)
MIN_SIDE = 32  # five 2×2 poolings


def scale_channels(channels: int, width: float) -> int:
    """Channels of a stage at ``width``: ``max(4, round(channels · width))`` with half-up rounding."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width!r}")
    return max(4, int(channels * width + 0.5))


class ConvBN(nn.Module):
    """Conv → BatchNorm (→ ReLU), stored as ``cbr_unit`` like DIM-PyTorch's ``conv2DBatchNormRelu``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, relu: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=True),
                                   nn.BatchNorm2d(c_out)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        self.cbr_unit = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr_unit(x)


class EncoderStage(nn.Module):
    """``n_convs`` × (3×3 conv, BN, ReLU) then 2×2 max pooling that returns indices and the pre-pool size."""

    def __init__(self, c_in: int, c_out: int, n_convs: int):
        super().__init__()
        for i in range(n_convs):
            self.add_module(f"conv{i + 1}", ConvBN(c_in if i == 0 else c_out, c_out, 3))
        self.n_convs = n_convs
        self.maxpool_with_argmax = nn.MaxPool2d(2, 2, return_indices=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
        for i in range(self.n_convs):
            x = getattr(self, f"conv{i + 1}")(x)
        size = x.size()
        x, indices = self.maxpool_with_argmax(x)
        return x, indices, size


class DecoderStage(nn.Module):
    """Max-unpooling with the encoder's indices and size, then 5×5 conv and BN (no ReLU, as DIM-PyTorch)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.conv = ConvBN(c_in, c_out, 5, relu=False)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return self.conv(self.unpool(x, indices, output_size=size))


class DIMNet(nn.Module):
    """SegNet-style matting network: input (N, 4, H, W) → alpha (N, 1, H, W) in [0, 1].

    Args:
        widths: channels of encoder stages 1–5; decoder stage k outputs the channels of encoder stage k−1
            (the last one outputs 1).
        convs: 3×3 convolutions per encoder stage.
        kind, width: recorded in :attr:`arch` so a checkpoint can rebuild the network.
    """

    def __init__(self, widths: Sequence[int], convs: Sequence[int], *, in_channels: int = 4,
                 kind: str = "custom", width: float = 1.0):
        super().__init__()
        widths, convs = tuple(int(w) for w in widths), tuple(int(c) for c in convs)
        if len(widths) != 5 or len(convs) != 5:
            raise ValueError(f"need 5 encoder stages, got widths={widths}, convs={convs}")
        self.arch = {"kind": kind, "width": float(width), "widths": list(widths), "convs": list(convs),
                     "in_channels": in_channels}
        self.in_channels = in_channels
        c_prev = in_channels
        for k in range(5):
            self.add_module(f"down{k + 1}", EncoderStage(c_prev, widths[k], convs[k]))
            c_prev = widths[k]
        outs = (1,) + widths[:4]  # up1 → 1, up2 → widths[0], ..., up5 → widths[3]
        for k in range(5, 0, -1):
            self.add_module(f"up{k}", DecoderStage(widths[k - 1], outs[k - 1]))
        self.sigmoid = nn.Sigmoid()
        self.feature_channels: dict[str, int] = {f"conv{k + 1}": widths[k] for k in range(5)}
        self.feature_channels.update({f"dconv{k}": outs[k - 1] for k in range(5, 1, -1)})
        self._init_weights()

    def _init_weights(self) -> None:
        # DIM-PyTorch "pretrains" by copying an *un*-pretrained torchvision VGG-16 into every encoder conv whose
        # shape matches (all but the first, which sees 4 channels): kaiming-normal (fan-out, ReLU), zero bias.
        # We apply that initialiser to the same convs; the rest keeps PyTorch's default, as in the original.
        for k in range(1, 6):
            for name, m in getattr(self, f"down{k}").named_modules():
                if isinstance(m, nn.Conv2d) and not (k == 1 and name.startswith("conv1.")):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, layers: Sequence[str] | None = None):
        """``x``: (N, 4, H, W) float (normalised RGB + trimap/255), H, W ≥ 32.

        Returns alpha (N, 1, H, W) in [0, 1]; with ``layers`` (names from :data:`LAYERS`) returns
        ``(alpha, {name: feature})`` instead — the form :meth:`forward_features` and DDP wrappers use.
        """
        wanted = _check_layers(layers) if layers is not None else ()
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"input {tuple(x.shape[-2:])} is too small: both sides must be ≥ {MIN_SIDE} px "
                             f"(five 2×2 poolings); pad or resize the image")
        feats: dict[str, torch.Tensor] = {}
        skips = []
        for k in range(1, 6):
            x, idx, size = getattr(self, f"down{k}")(x)  # (N, c_k, H/2^k, W/2^k)
            skips.append((idx, size))
            if f"conv{k}" in wanted:
                feats[f"conv{k}"] = x
        for k in range(5, 0, -1):
            idx, size = skips[k - 1]
            x = getattr(self, f"up{k}")(x, idx, size)  # (N, c_{k-1}, H/2^(k-1), W/2^(k-1))
            if f"dconv{k}" in wanted:
                feats[f"dconv{k}"] = x
        alpha = self.sigmoid(x)  # (N, 1, H, W)
        return alpha if layers is None else (alpha, feats)

    def forward_features(self, x: torch.Tensor, layers: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Alpha (N, 1, H, W) and the named intermediate features (see module docstring)."""
        return self(x, layers=tuple(layers))


def _check_layers(layers: Sequence[str]) -> tuple[str, ...]:
    if isinstance(layers, str):
        layers = (layers,)
    bad = [name for name in layers if name not in LAYERS]
    if bad:
        raise ValueError(f"unknown layer name(s) {bad}; valid names are: {', '.join(LAYERS)}")
    return tuple(layers)


def build_teacher(width: float = 1.0) -> DIMNet:
    """The DIM teacher (25,582,595 parameters at width 1.0; state-dict names of DIM-PyTorch)."""
    return DIMNet([scale_channels(c, width) for c in TEACHER_WIDTHS], TEACHER_CONVS, kind="teacher", width=width)


def build_student(width: float = 1.0) -> DIMNet:
    """The paper's student (4,877,283 parameters at width 1.0): half widths, 1/1/1/2/2 encoder convs."""
    return DIMNet([scale_channels(c, width) for c in STUDENT_WIDTHS], STUDENT_CONVS, kind="student", width=width)


def frozen_inference_copy(net: nn.Module) -> nn.Module:
    """A copy of an eval-mode network for a frozen teacher's forward pass: every Conv2d → BatchNorm2d pair of a
    ``cbr_unit`` folded into one convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``; the BN becomes an
    Identity) and the weights in ``channels_last``; pass inputs in ``channels_last`` too.

    Same function as ``net.eval()`` in exact arithmetic; in float32 the outputs differ in the last bits (≈6e-8 on
    alpha at width 0.25), deterministically for a given input and thread count. Measured with
    ``benchmarks/bench_kd_cost.py``'s cold row (width 0.25, 96 px, batch 16, 1 thread, AVX2): 94 ms per teacher
    forward instead of 132 ms. The copy shares no tensor with ``net`` (later changes to ``net`` do not reach it)
    and has no gradients.
    """
    was_training = net.training
    copy_ = copy.deepcopy(net).eval()
    net.train(was_training)
    for module in copy_.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
    return copy_.requires_grad_(False).to(memory_format=torch.channels_last)


MODELS = {"teacher": build_teacher, "student": build_student}


def build_model(kind: str, width: float = 1.0) -> DIMNet:
    """``MODELS[kind](width)`` with an error listing the valid kinds."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds are: {', '.join(MODELS)}")
    return MODELS[kind](width)


def model_from_arch(arch: dict) -> DIMNet:
    """Rebuild a network from its :attr:`DIMNet.arch` dict (as stored in checkpoints)."""
    return DIMNet(arch["widths"], arch["convs"], in_channels=arch.get("in_channels", 4),
                  kind=arch.get("kind", "custom"), width=arch.get("width", 1.0))


def build_channel_adapters(student: DIMNet, teacher: DIMNet,
                           layers: Sequence[str] = ("conv2", "conv3", "conv4", "conv5")) -> nn.ModuleDict:
    """1×1 convs (with bias, no BN) mapping student to teacher channels, one per layer (docs/paper_notes.md §2).

    For the paper's four encoder stages 2–5 at width 1 they hold 304,512 parameters.
    """
    layers = _check_layers(layers)
    return nn.ModuleDict({name: nn.Conv2d(student.feature_channels[name], teacher.feature_channels[name], 1, bias=True)
                          for name in layers})


def build_connector(student_channels: int, teacher_channels: int) -> nn.Sequential:
    """OFD's connector (Heo et al. 2019): 1×1 conv without bias, init N(0, 2/C_t), then BatchNorm (γ=1, β=0)."""
    conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
    nn.init.normal_(conv.weight, 0.0, (2.0 / teacher_channels) ** 0.5)
    return nn.Sequential(conv, nn.BatchNorm2d(teacher_channels))


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not, each shared tensor counted once)."""
    return sum(p.numel() for p in module.parameters())
