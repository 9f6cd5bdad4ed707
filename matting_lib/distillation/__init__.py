"""Distillation: the similarity-preserving losses and the paper's baselines as tensor functions, the paper's
configurations, the student objective (alpha terms + distillation terms), and the cache of the frozen teacher's
outputs shared by the runs of a seed.

May import: :mod:`matting_lib.networks`, :mod:`matting_lib.data` and the top-level helpers. Not the training loop.
"""
