"""matting_lib: similarity-preserving knowledge distillation for Deep Image Matting.

A reproduction of Yoon, Park & Cho, "Lightweight Deep CNN for Natural Image Matting via
Similarity-Preserving Knowledge Distillation", IEEE Signal Processing Letters 27 (2020).

The package reads by its nouns (docs/layout.md is the map, kept in sync with the files by ``tests/test_repo.py``):
``data`` (datasets, compositing, trimaps), ``networks`` (the DIM teacher and student, checkpoints), ``distillation``
(the losses and the student objective), ``training`` (one function that trains any network, the loop), ``metrics``,
``inference`` (scoring a test set, your own photo, ONNX), ``reporting`` (Table 1, statistics, figures), ``studies``
(calibration and protocol) and ``pipeline`` (run_all.sh); beside them a few helpers (``paths``, ``files``,
``params``, ``settings``, ``provenance``, ``cpu_env``) and the command shims (``python -m matting_lib.predict``, ...).

The package imports nothing heavy at import time, so ``python -m matting_lib.pipeline --help`` answers
instantly; import the submodules you need.
"""

__version__ = "0.1.0"
