"""One instruction-set level for every numerical library, so that two x86-64 machines compute the same numbers.

Why: NumPy, PyTorch (ATen), oneDNN and MKL pick their kernels at run time by what the CPU offers. On an AVX-512
machine they run other code than on an AVX2 one, and the results differ in the last bits: NumPy's AVX-512
transcendental and reduction loops changed 1–6 of the 2,454 files of the default synthetic benchmark (measured on
an AVX-512 machine by disabling its AVX-512 paths), and at lr 0.01 last-bit differences in training grow into
different students. Current x86-64 machines are AVX2 or AVX-512, so the pipeline pins everything to AVX2
(x86-64-v3), the level they share: :data:`PINNED_ENV`, set by :func:`pin` before any kernel starts (the notebooks'
kernels inherit it) and reported by :func:`describe`. On a CPU without AVX-512 OpenCV's switch is left out
(:func:`pinned_env`): there is nothing to switch off, and OpenCV would warn about it on every import.

Not reached by the pin: OpenCV's Intel IPP (resize, Gaussian blur, distance transforms...) chooses its own level
from the CPU, and ``OPENCV_CPU_DISABLE`` does not limit it (only ``OPENCV_IPP`` would). Measured on an AVX2-only AMD
EPYC: the synthetic generator makes another default benchmark (content identity ``6575ab7…``) than the AVX-512
machines under this pin (``31bb438…``, the shipped teacher's data), and forcing IPP to SSE4.2 there changes 511 of
its 2,454 files, so IPP's AVX-512 code is the likely cause. :func:`describe` reports IPP's level. Pinning it
(``OPENCV_IPP=avx2``) would change the data on AVX-512 machines, i.e. the shipped teacher's training data: see
``docs/reproducibility.md``.

The variables must be set before the libraries load, so this module imports nothing but the standard library.
Thread counts matter too (parallel reductions split work by thread); the pipeline fixes them per run.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping

# What each variable does (all documented by the library concerned):
#   NPY_DISABLE_CPU_FEATURES  NumPy's dispatched SIMD loops above AVX2 off (numpy >= 2.4 names the levels X86_V4 ...)
#   ATEN_CPU_CAPABILITY       PyTorch's own CPU kernels compiled for AVX2 instead of AVX-512
#   ONEDNN_MAX_CPU_ISA        oneDNN (convolutions, batch norm, pooling) at most AVX2
#   MKL_CBWR                  MKL's conditional numerical reproducibility: the AVX2 code path on every AVX2+ CPU
#   OPENCV_CPU_DISABLE        OpenCV's AVX-512 dispatch off (set only where the CPU has AVX-512: see pinned_env)
#   OPENBLAS_CORETYPE         OpenBLAS (NumPy's BLAS) kernels for Haswell (AVX2)
PINNED_ENV: dict[str, str] = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OPENCV_CPU_DISABLE": "AVX512-SKX",
    "OPENBLAS_CORETYPE": "Haswell",
}


#: The CPU flags of OpenCV's AVX512-SKX level (``OPENCV_CPU_DISABLE``'s value). On a CPU without all of them OpenCV
#: has nothing to disable and prints "OPENCV: Trying to disable unavailable CPU feature on the current platform:
#: 'AVX512-SKX'." on every import, so the variable is set only where they are all present.
OPENCV_AVX512_FLAGS = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (``/proc/cpuinfo``), e.g. ``{"avx2", "fma", ...}``; empty
    elsewhere."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            line = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def supported() -> bool:
    """True on x86-64 Linux with AVX2 (the pinned level can only be reached where the CPU has it)."""
    return {"avx2", "fma"} <= cpu_flags()


def pinned_env() -> dict[str, str]:
    """The variables of :data:`PINNED_ENV` that mean something on this CPU: all of them, less
    ``OPENCV_CPU_DISABLE`` where the CPU lacks AVX-512 (:data:`OPENCV_AVX512_FLAGS`): OpenCV dispatches no AVX-512
    code there anyway, and asking it to disable a feature the CPU lacks makes it print a warning on every import."""
    if set(OPENCV_AVX512_FLAGS) <= cpu_flags():
        return dict(PINNED_ENV)
    return {k: v for k, v in PINNED_ENV.items() if k != "OPENCV_CPU_DISABLE"}


def pin(env: os._Environ | dict | None = None) -> dict[str, str]:
    """Put :func:`pinned_env` into ``env`` (default ``os.environ``) where the CPU supports it; a variable the
    user already set is left alone (their choice wins). Returns what is now in effect of :data:`PINNED_ENV`'s
    variables."""
    env = os.environ if env is None else env
    if supported():
        for key, value in pinned_env().items():
            env.setdefault(key, value)
    return {k: env[k] for k in PINNED_ENV if k in env}


def is_pinned(env: Mapping[str, str] | None = None) -> bool:
    """Whether every variable of :func:`pinned_env` has its pinned value in ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    return all(env.get(k) == v for k, v in pinned_env().items())


def opencv_ipp_level() -> str | None:
    """The code level OpenCV's Intel IPP runs in this process, e.g. ``"AVX2 (l9)"`` (``"off"`` when IPP is disabled,
    None without OpenCV). IPP picks it from the CPU by itself (the pin does not reach it, see the module docstring),
    so generated data records it (:func:`matting_lib.data.synthetic.generate_dataset`'s manifest)."""
    try:
        # imported only to describe the pin: this module stays standard library only
        import cv2

        ipp = cv2.ipp.getIppVersion() if cv2.ipp.useIPP() else "off"
    except (ImportError, AttributeError):
        return None
    return ipp[ipp.find(" ") + 1:ipp.find(")") + 1] if "(" in ipp else ipp


def describe() -> str:
    """One line on the instruction sets in effect (call after torch/numpy are imported, e.g. in a notebook)."""
    parts = []
    try:
        # imported only to describe the pin: this module stays standard library only
        import torch

        parts.append(f"torch {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s)")
    except ImportError:
        pass
    try:
        # imported only to describe the pin: this module stays standard library only
        import numpy as np
        from numpy._core._multiarray_umath import __cpu_features__ as feats  # type: ignore[attr-defined]
        top = [k for k in ("X86_V4", "X86_V3", "X86_V2") if feats.get(k)]
        parts.append(f"numpy {top[0] if top else 'baseline'} ({np.__version__})")
    except ImportError:
        pass
    ipp = opencv_ipp_level()
    if ipp is not None:
        parts.append(f"opencv IPP {ipp}")
    state = "pinned to AVX2 for reproducibility" if is_pinned() else "native (not pinned: results may differ by CPU)"
    return f"CPU kernels {state}: " + "; ".join(parts)


def reexec_pinned() -> None:
    """Restart this Python process with :data:`PINNED_ENV` if it is not in effect yet (for command-line entry
    points: the variables only work before NumPy/PyTorch load). Does nothing where :func:`supported` is False."""
    # imported only to describe the pin: this module stays standard library only
    import sys

    if not supported() or is_pinned():
        return
    env = dict(os.environ)
    pin(env)
    if is_pinned(env):  # never loop when the user set one of the variables to something else
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
