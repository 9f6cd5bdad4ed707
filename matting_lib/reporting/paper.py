"""The paper's published numbers (Yoon, Park & Cho, IEEE SPL 2020), the targets of the results notebook.

Transcribed from the SPKD README and the authors' slides (``docs/paper_notes.md`` §9; ``tests/test_paper.py``
checks this module against an independent transcription when one is present). Metrics are in the units
papers report: SAD (official /1000), MSE, Grad/1000, Conn/1000, on Adobe Composition-1k.
"""

from __future__ import annotations

from matting_lib.metrics import METRIC_KEYS

#: Table 1, Composition-1k: row name -> (SAD, MSE, Grad, Conn). Row names are the pipeline's configuration
#: names (``teacher`` for DIM-teacher, ``student`` for the student without distillation).
TABLE1: dict[str, tuple[float, float, float, float]] = {
    "teacher": (65.37, 0.021, 33.20, 67.58),
    "student": (121.77, 0.058, 75.36, 129.55),
    "hinton": (120.32, 0.055, 69.56, 128.19),
    "at": (117.00, 0.052, 74.90, 125.60),
    "fsp": (136.12, 0.065, 95.47, 147.83),
    "ofd": (94.47, 0.042, 54.56, 100.66),
    "batch": (124.43, 0.055, 74.36, 132.25),
    "spatial": (95.40, 0.039, 54.71, 100.92),
    "channel": (94.76, 0.038, 56.36, 100.36),
    "spatial+channel": (84.37, 0.034, 47.63, 89.35),
    "batch+spatial+channel": (91.30, 0.037, 56.20, 97.20),
}

#: The paper's display names for the rows of Table 1.
DISPLAY_NAMES: dict[str, str] = {
    "teacher": "DIM-teacher",
    "student": "DIM-student (no KD)",
    "hinton": "DIM-Hinton",
    "at": "DIM-AT",
    "fsp": "DIM-FSP",
    "ofd": "DIM-OFD",
    "batch": "DIM-batch",
    "spatial": "DIM-spatial",
    "channel": "DIM-channel",
    "spatial+channel": "DIM-spatial+channel",
    "batch+spatial+channel": "DIM-batch+spatial+channel",
    # Table 3's layer sets (spatial+channel; conv2-5 is the row above), as
    # matting_lib.distillation.distill.ABLATION_CONFIGS names them
    "spatial+channel-Lconv3.conv4.conv5.dconv5": "DIM-spatial+channel, conv3-5 + dconv5",
    "spatial+channel-Lconv4.conv5.dconv5.dconv4": "DIM-spatial+channel, conv4-5 + dconv5-4",
    "spatial+channel-Lconv5.dconv5.dconv4.dconv3": "DIM-spatial+channel, conv5 + dconv5-3",
}

#: Table 2, alphamatting.com benchmark (average over its 8 test images).
TABLE2: dict[str, tuple[float, float, float, float]] = {
    "teacher": (3.85, 0.009, 3.81, 3.25),
    "student": (5.91, 0.020, 7.90, 5.47),
    "hinton": (6.02, 0.021, 8.72, 5.69),
    "at": (6.23, 0.022, 9.03, 5.89),
    "fsp": (9.29, 0.037, 15.65, 9.06),
    "ofd": (5.39, 0.016, 6.51, 4.99),
    "batch": (5.92, 0.020, 8.01, 5.49),
    "spatial": (5.50, 0.017, 7.22, 5.04),
    "channel": (5.47, 0.018, 7.74, 5.13),
    "spatial+channel": (5.23, 0.016, 7.19, 4.74),
    "batch+spatial+channel": (5.60, 0.018, 7.64, 5.21),
}

#: Table 3, which layers to distil (spatial+channel, Composition-1k): layer names as the library names them.
TABLE3: dict[tuple[str, ...], tuple[float, float, float, float]] = {
    ("conv2", "conv3", "conv4", "conv5"): (84.37, 0.034, 47.63, 89.35),
    ("conv3", "conv4", "conv5", "dconv5"): (98.25, 0.041, 58.90, 104.80),
    ("conv4", "conv5", "dconv5", "dconv4"): (95.98, 0.042, 62.44, 102.08),
    ("conv5", "dconv5", "dconv4", "dconv3"): (115.33, 0.050, 72.49, 124.66),
}

#: Parameter counts (DIM): teacher, student network, student + the four channel adapters.
PARAMS = {"teacher": 25_582_595, "student": 4_877_283, "student+adapters": 5_181_795}


def table1_row(name: str) -> dict[str, float]:
    """The paper's Table 1 row ``name`` as a dict of metric -> value; KeyError lists the valid rows."""
    if name not in TABLE1:
        raise KeyError(f"no row {name!r} in the paper's Table 1; rows are: {', '.join(TABLE1)}")
    return dict(zip(METRIC_KEYS, TABLE1[name]))


def relative_change(value: float, reference: float) -> float:
    """(value − reference) / reference: negative is better for every matting metric (lower error)."""
    return (value - reference) / reference
