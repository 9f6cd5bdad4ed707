"""Training: the one function that trains any network of the project (:func:`matting_lib.training.run.train_network`),
the loop it runs (one step, validation, checkpointing, logging), what a run *is* (its identity, so a folder is
resumed only by the same training), notebook 02's teacher and notebook 03's student parameters, several processes
(DDP), seeding.

May import: :mod:`matting_lib.distillation`, :mod:`matting_lib.networks`, :mod:`matting_lib.data` and the top-level
helpers.
"""
