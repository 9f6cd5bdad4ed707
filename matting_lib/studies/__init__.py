"""Studies on the validation split that fix the profiles' settings: the calibration study (teacher vs no-KD student
gap, ``python -m matting_lib.calibration``) and the students' training protocol (``python -m
matting_lib.protocol_study``).

May import everything below it: :mod:`matting_lib.training.loop`, :mod:`matting_lib.reporting`, ... Only the pipeline
and the command shims stand above it.
"""
