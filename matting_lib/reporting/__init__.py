"""Reporting: run metrics into Table 1 and Table 3, paired statistics and verdicts, the paper's numbers, figures,
and notebook 05's similarity explorer.

May import: :mod:`matting_lib.inference`, :mod:`matting_lib.distillation`, :mod:`matting_lib.networks`,
:mod:`matting_lib.metrics`, :mod:`matting_lib.data` and the top-level helpers. Not the training loop.
"""
