"""The notebook pipeline behind ``run_all.sh``: profiles, stages, skipping finished work, papermill.

Stages, in order (each is a parameterised notebook executed headlessly with papermill):

    data      notebooks/01_compositing.ipynb    build / check the dataset and the test composites
    teacher   notebooks/02_teacher.ipynb        load + verify the shipped teacher (or train / import one)
    distill   notebooks/03_distill.ipynb        one student per (configuration, seed); independent runs
    results   notebooks/04_results.ipynb        the paper's Table 1 side by side, figures
    explorer  notebooks/05_similarity_explorer.ipynb   the widget notebook, executed headlessly as a check

A profile (``profiles/<name>.toml``) holds one table per stage; every key in a stage's table becomes a
notebook parameter, except the pipeline's own keys (:data:`PIPELINE_KEYS`: ``configs``, ``seeds``, ``jobs`` and
each stage's ``cell_timeout_s`` / ``job_timeout_s``). The pipeline adds the derived ones (profile, data folder,
run folders, figures folder, the teacher checkpoint, thread count). The whole profile is validated against the
notebooks' declared parameters before anything runs (:mod:`matting_lib.pipeline.validate`).

Everything a run writes goes under ``<runs-dir>/<profile>/``: executed notebooks in ``notebooks/``, markers in
``pipeline/``, trainings in ``teacher/`` and ``students/``, and the tables and figures in ``figures/`` — except
with the default ``--runs-dir`` (``runs/``), whose tables and figures go to the repository's
``figures/<profile>/``, and with ``--figures-dir``. A job is up to date when its marker
``pipeline/<job>.json`` records the same parameters, notebook source and upstream results *and* its declared
outputs exist and verify (:mod:`matting_lib.pipeline.state`); so an interrupted or damaged run resumes where it
stopped. A lock per ``<runs-dir>/<profile>`` refuses a second pipeline on the same folder
(:mod:`matting_lib.pipeline.runlock`).

Modules: :mod:`~matting_lib.pipeline.common` (shared names, errors, :class:`Job`), :mod:`~.profiles`,
:mod:`~.plan` (profile to jobs), :mod:`~.validate`, :mod:`~.state` (up to date or not), :mod:`~.execute`
(papermill under limits), :mod:`~.runlock`, :mod:`~.executors` (where the jobs run: this machine, one GPU per
parallel student run), :mod:`~.slurm` (each notebook run a submitit job: SLURM or submitit's local executor),
:mod:`~.cli` (``run_all.sh``'s options and the run loop). The package imports only the standard library at import
time (submitit only when a submitit executor is chosen), so ``--help`` and argument checks are instant.
"""
