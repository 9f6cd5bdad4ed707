"""Export a matting network to ONNX, and run an exported one with onnxruntime.

    python -m matting_lib.export --checkpoint CKPT --out model.onnx [--force] [--opset N]

``CKPT``: a matting_lib checkpoint (teacher or student, e.g. ``matting_lib/assets/teacher-default.pt``) or
DIM-PyTorch's ``BEST_checkpoint.tar`` (imported safely, :mod:`matting_lib.checkpoints`). The ``.onnx`` file is
self-contained (weights inside), takes N×4×H×W float32 with dynamic N, H, W (H, W ≥ 32, any value: the
max-unpooling gets each stage's pre-pool size, so sizes not divisible by 32 are exact) and returns N×1×H×W alpha.
Its input layout, output meaning and the network's kind, width and parameter count are stored in the model's
``metadata_props`` (keys ``matting_lib.*``), so it can be fed without this code. Before the file is written,
onnxruntime's output is compared with PyTorch's on a 37×53 input (max |Δα| ≤ 1e-4, else nothing is written); an
existing ``--out`` is refused unless ``--force``.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript). The TorchScript-based exporter
(``dynamo=False``) cannot export this network on torch 2.14: tracing turns the unpooling's ``output_size`` into
tensors, which ``F.max_unpool2d``'s size check rejects, and past that it has no ONNX translation for
``aten::max_unpool2d`` at all. The dynamo exporter decomposes max-unpooling into ScatterND with the stored indices and
keeps H and W symbolic.

:class:`OnnxMatting` wraps an exported file as an ``nn.Module`` (onnxruntime on the CPU), so
:func:`matting_lib.inference.evaluation.predict_alpha` and ``python -m matting_lib.predict --checkpoint model.onnx`` use
it exactly like the PyTorch network.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from matting_lib.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from matting_lib.data.output_safety import check_output, one_line_warnings
from matting_lib.files import atomic_write, sha256_file
from matting_lib.networks.checkpoints import CheckpointError, load_any_model
from matting_lib.networks.models import MIN_SIDE, DIMNet, count_parameters

FORMAT = "matting_lib.onnx/1"
DEFAULT_OPSET = 18  # the oldest opset torch's dynamo exporter emits natively; onnxruntime ≥ 1.14 runs it
#: The oldest opset these networks export to. torch's dynamo exporter builds the graph at opset 18 and converts it
#: down with onnx's version converter, which has no adapter below opset 16 for the graph's Identity nodes: 16 and 17
#: export and match PyTorch (teacher and student), 15 and below fail only after the whole export. The newest is the
#: newest the installed onnx knows (:func:`opset_range`; 28 with onnx 1.23, which onnxruntime 1.32 runs).
MIN_OPSET = 16
INPUT_NAME, OUTPUT_NAME = "input", "alpha"
PARITY_ATOL = 1e-4  # max |Δα| allowed between onnxruntime and PyTorch
CHECK_SHAPE = (1, 4, 37, 53)  # odd sizes: every pooling floors, every unpooling pads back
METADATA_KEYS = tuple(f"matting_lib.{k}" for k in (
    "format", "kind", "width", "parameters", "arch", "input", "output", "input_name", "output_name",
    "imagenet_mean", "imagenet_std", "trimap_values", "min_side", "exporter", "source", "source_sha256"))

INPUT_LAYOUT = (
    f"'{INPUT_NAME}': float32 N×4×H×W (N, H, W dynamic; H, W ≥ {MIN_SIDE}, any value). Channels 0-2 = RGB "
    f"(not BGR) as (pixel/255 - mean)/std with ImageNet mean {[round(float(m), 3) for m in IMAGENET_MEAN]} and std "
    f"{[round(float(s), 3) for s in IMAGENET_STD]}; channel 3 = trimap/255, not normalised: 0 = background, "
    f"128/255 = unknown, 1 = foreground.")
OUTPUT_MEANING = (
    f"'{OUTPUT_NAME}': float32 N×1×H×W alpha in [0, 1] (after the sigmoid), 1 = foreground. The network predicts "
    f"every pixel; matting_lib then sets alpha to 0 / 1 where the trimap is background / foreground and saves "
    f"round(alpha·255) as an 8-bit PNG.")


class ExportError(ValueError):
    """The network, checkpoint or output path cannot be exported; the message says why and what to do."""


class OnnxModelError(ValueError):
    """The file is not an ONNX matting network exported by matting_lib."""


# ------------------------------------------------------------------------------------------------- export
def _require(module: str):
    """Import an optional dependency (the ``onnx`` extra) with an error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed; ONNX export and inference need the 'onnx' extra: "
                          f"pip install -e '.[onnx]' (or the pinned versions in requirements.lock)") from None


def opset_range() -> tuple[int, int]:
    """(oldest, newest) ONNX opset :func:`export_onnx` writes: :data:`MIN_OPSET` and the installed onnx's newest."""
    return MIN_OPSET, _require("onnx").defs.onnx_opset_version()


def check_opset(opset: int) -> int:
    """``opset`` if :func:`export_onnx` can write it, else an :class:`ExportError` with the true range, before the
    export starts (the exporter itself would fail only after it, with the version converter's traceback)."""
    low, high = opset_range()
    if not low <= opset <= high:
        raise ExportError(f"--opset {opset}: this exporter writes opsets {low} to {high} (torch's exporter builds the "
                          f"graph at opset 18 and onnx's version converter cannot take it below {low}; the installed "
                          f"onnx knows up to {high}); use --opset {DEFAULT_OPSET} (the default) or another in that "
                          f"range")
    return opset


def metadata(model: DIMNet, *, opset: int, source: str = "", source_sha256: str = "") -> dict[str, str]:
    """The ``metadata_props`` written into an exported file (all values strings, keys ``matting_lib.*``)."""
    arch = dict(model.arch)
    meta = {
        "format": FORMAT,
        "kind": str(arch.get("kind", "custom")),
        "width": repr(float(arch.get("width", 1.0))),
        "parameters": str(count_parameters(model)),
        "arch": json.dumps(arch, sort_keys=True),
        "input": INPUT_LAYOUT,
        "output": OUTPUT_MEANING,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "imagenet_mean": json.dumps([float(m) for m in IMAGENET_MEAN]),
        "imagenet_std": json.dumps([float(s) for s in IMAGENET_STD]),
        "trimap_values": json.dumps([0.0, 128 / 255, 1.0]),
        "min_side": str(MIN_SIDE),
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}, opset {opset}",
        "source": source,
        "source_sha256": source_sha256,
    }
    meta = {f"matting_lib.{k}": v for k, v in meta.items()}
    assert tuple(meta) == METADATA_KEYS  # --help lists METADATA_KEYS
    return meta


def _to_onnx_proto(model: DIMNet, opset: int):
    """The exported ``onnx.ModelProto`` (weights inline) with dynamic N, H, W."""
    _require("onnxscript")  # torch's dynamo exporter translates through it
    # An example batch of 2 at an odd size: torch.export specialises dimensions of size 1, and odd sizes exercise
    # the floor-pooling / padded-unpooling path while tracing.
    example = torch.randn(2, 4, 64, 96)
    dims = {0: Dim("N"), 2: Dim("H", min=MIN_SIDE), 3: Dim("W", min=MIN_SIDE)}
    # Quiet, as the result is checked here (opset, parity): onnx_ir's "attribute type is ambiguous" for empty INTS
    # attributes, torch's note that it builds at opset 18 and converts down, onnxscript's converter fallback.
    logs = [logging.getLogger(name) for name in ("onnx_ir", "torch.onnx", "onnxscript")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.ERROR)
    try:
        program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=opset, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=(dims,),
                                    external_data=False)
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)
    return program.model_proto


def onnx_session(path: str | os.PathLike, *, threads: int | None = None):
    """An onnxruntime CPU session for ``path``; ``threads`` = intra-op threads (None: onnxruntime's default)."""
    ort = _require("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def max_abs_diff(model: nn.Module, session, shape: Sequence[int] = CHECK_SHAPE, *, seed: int = 0) -> float:
    """max |α_onnxruntime − α_pytorch| on a random normal input of ``shape`` (N, 4, H, W); ``model`` in eval
    mode."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    ref = model(x).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    if got.shape != ref.shape:
        return float("inf")
    return float(np.abs(got - ref).max())


def export_onnx(model: DIMNet, out: str | os.PathLike, *, force: bool = False, opset: int = DEFAULT_OPSET,
                source: str = "", source_sha256: str = "") -> Path:
    """Export ``model`` (eval mode) to ``out`` (must end in ``.onnx``) with its metadata; returns the path.

    The file is written atomically and only after onnxruntime reproduces PyTorch on a :data:`CHECK_SHAPE` input
    within :data:`PARITY_ATOL`; an existing ``out`` is replaced only with ``force``.
    """
    onnx = _require("onnx")
    out = Path(out)
    if not isinstance(model, DIMNet):
        raise ExportError(f"expected a matting network (DIMNet), got {type(model).__name__}")
    device = next(model.parameters()).device
    if device.type != "cpu":  # the example input and the parity check run on the CPU
        raise ExportError(f"the network is on {device}; export it from the CPU: export_onnx(model.cpu(), ...)")
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"output {out} must end in .onnx (matting_lib.predict recognises exported models by it)")
    check_output(out, force=force, example="model.onnx")
    check_opset(opset)
    was_training = model.training
    model.eval()  # BatchNorm with running statistics, as at inference
    try:
        proto = _to_onnx_proto(model, opset)
        # below 18 torch converts the graph down and keeps 18 where it cannot: record what the file really has
        actual = max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))
        if actual != opset:
            raise ExportError(f"torch could not convert the graph to opset {opset} (it stays at {actual}); "
                              f"nothing was written. Use --opset {DEFAULT_OPSET} (the default) or higher")
        del proto.metadata_props[:]
        for key, value in metadata(model, opset=actual, source=source, source_sha256=source_sha256).items():
            proto.metadata_props.add(key=key, value=value)
        proto.doc_string = f"matting_lib {model.arch.get('kind', 'custom')} network. {INPUT_LAYOUT} {OUTPUT_MEANING}"
        onnx.checker.check_model(proto)

        def write(tmp: Path) -> None:
            onnx.save_model(proto, str(tmp))
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o666 & ~umask)  # the temporary file is private (mkstemp); a deployed model is not
            diff = max_abs_diff(model, onnx_session(tmp, threads=1))
            if not diff <= PARITY_ATOL:  # also catches NaN
                raise ExportError(f"onnxruntime differs from PyTorch by {diff:.2e} (> {PARITY_ATOL:g}) on a "
                                  f"{CHECK_SHAPE} input; {out} was not written. Try another --opset.")

        return atomic_write(out, write)
    finally:
        model.train(was_training)


def load_network(checkpoint: str | os.PathLike) -> nn.Module:
    """Any network the project reads: a matting_lib checkpoint, DIM-PyTorch's ``BEST_checkpoint.tar`` or a
    ``.onnx`` export (an onnxruntime-backed module on the CPU). Errors name the file."""
    if Path(checkpoint).suffix.lower() == ".onnx":
        return OnnxMatting(checkpoint)
    return load_any_model(checkpoint)


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, force: bool = False,
                      opset: int = DEFAULT_OPSET) -> Path:
    """Export any checkpoint :func:`matting_lib.networks.checkpoints.load_any_model` loads (ours, or DIM-PyTorch's
    ``BEST_checkpoint.tar``); the metadata records the checkpoint's file name and SHA-256."""
    checkpoint, out = Path(checkpoint), Path(out)
    check_output(out, inputs=[checkpoint], force=force, example="model.onnx")  # before the (slow) load and export
    check_opset(opset)
    try:
        model = load_any_model(checkpoint)
    except CheckpointError as err:
        raise ExportError(f"{checkpoint} is not a matting network this project can load, so there is nothing to "
                          f"export:\n{err}") from None
    return export_onnx(model, out, force=force, opset=opset, source=checkpoint.name,
                       source_sha256=sha256_file(checkpoint))


# ---------------------------------------------------------------------------------------------- inference
def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``matting_lib.*`` metadata of an exported file; :class:`OnnxModelError` if it is not ours."""
    onnx = _require("onnx")
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX model {path} does not exist")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as err:  # a truncated or foreign file: protobuf's DecodeError and friends
        raise OnnxModelError(f"{path} is not a readable ONNX model ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200] if str(err) else ''})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("matting_lib.format") != FORMAT or "matting_lib.kind" not in meta:
        found = meta.get("matting_lib.format") or f"producer {proto.producer_name or '?'!r}, no matting_lib metadata"
        raise OnnxModelError(f"{path} is an ONNX model but not a matting network exported by matting_lib "
                             f"({found}; expected format {FORMAT!r}). Export one with: python -m "
                             f"matting_lib.export --checkpoint CKPT --out {path.name}")
    return meta


class OnnxMatting(nn.Module):
    """An exported network run by onnxruntime on the CPU, callable like a :class:`~matting_lib.networks.models.DIMNet`:
    ``(N, 4, H, W)`` float input (see :data:`INPUT_LAYOUT`) → alpha ``(N, 1, H, W)`` in [0, 1] on the input's
    device. It has no parameters: ``.to(device)`` is a no-op, the work always runs on the CPU.

    Args:
        path: a ``.onnx`` file written by :func:`export_onnx` (others raise :class:`OnnxModelError`).
        threads: onnxruntime intra-op threads (None: its default, one per core).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.arch = json.loads(self.metadata["matting_lib.arch"])
        self.session = onnx_session(self.path, threads=threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 4:
            raise ValueError(f"expected input of shape (N, 4, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"input {tuple(x.shape[-2:])} is too small: both sides must be ≥ {MIN_SIDE} px")
        x_np = x.detach().to("cpu", torch.float32).contiguous().numpy()  # NCHW in memory, as onnxruntime reads it
        alpha = self.session.run([OUTPUT_NAME], {INPUT_NAME: x_np})[0]  # (N, 1, H, W)
        return torch.from_numpy(alpha).to(x.device)

    def extra_repr(self) -> str:
        return f"{self.path}, kind={self.arch.get('kind')}, width={self.arch.get('width')}"


# --------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m matting_lib.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(textwrap.fill(text, 100) for text in (
                                    f"Input: {INPUT_LAYOUT}", f"Output: {OUTPUT_MEANING}",
                                    f"Metadata (onnx metadata_props): {', '.join(METADATA_KEYS)}.")))
    p.add_argument("--checkpoint", required=True,
                   help="matting_lib checkpoint (teacher/student .pt) or DIM-PyTorch BEST_checkpoint.tar")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, {MIN_OPSET} to the installed onnx's newest (default {DEFAULT_OPSET})")
    return p


def main(argv: list[str] | None = None) -> int:

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with one_line_warnings(parser.prog):
            out = export_checkpoint(args.checkpoint, args.out, force=args.force, opset=args.opset)
            meta = read_metadata(out)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({meta['matting_lib.kind']}, width {meta['matting_lib.width']}, "
          f"{int(meta['matting_lib.parameters']):,} parameters, {meta['matting_lib.exporter']}; onnxruntime matches "
          f"PyTorch within {PARITY_ATOL:g} on a {CHECK_SHAPE[2]}×{CHECK_SHAPE[3]} input)")
    return 0
