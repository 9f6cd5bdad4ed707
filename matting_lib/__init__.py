"""matting_lib: similarity-preserving knowledge distillation for Deep Image Matting.

A reproduction of Yoon, Park & Cho, "Lightweight Deep CNN for Natural Image Matting via
Similarity-Preserving Knowledge Distillation", IEEE Signal Processing Letters 27 (2020).

One module per idea; docs/layout.md is the map (one line per module, kept in sync with
the files by ``tests/test_repo.py``).

The package imports nothing heavy at import time, so ``python -m matting_lib.pipeline --help`` answers
instantly; import the submodules you need.
"""

__version__ = "0.1.0"
