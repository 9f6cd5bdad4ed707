"""Running a trained network: predicting and scoring a test set (``python -m matting_lib.evaluation``), matting your
own photo (``python -m matting_lib.predict``), exporting to ONNX (``python -m matting_lib.export``).

May import: :mod:`matting_lib.metrics`, :mod:`matting_lib.networks`, :mod:`matting_lib.data` and the top-level
helpers. Not the training code.
"""
