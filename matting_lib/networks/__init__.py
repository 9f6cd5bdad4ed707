"""The networks: the DIM teacher and the paper's student (one file), their alpha-prediction loss, checkpoints
(state dicts and primitives, loaded safely; shipping; DIM-PyTorch's checkpoint imported), devices, and their costs.

May import: :mod:`matting_lib.data` and the top-level helpers. Nothing about distillation or training.
"""
