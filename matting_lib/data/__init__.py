"""The data: the Composition-1k folder layout and its checks, the embedded synthetic benchmark, compositing, trimaps,
the torch Datasets that compose training crops, the shared cache of composed batches, and where commands may write
(never into a dataset).

May import: :mod:`matting_lib.files`, :mod:`matting_lib.paths`, :mod:`matting_lib.params`,
:mod:`matting_lib.provenance`, :mod:`matting_lib.cpu_env`. Nothing above it (networks, training, ...).
"""
