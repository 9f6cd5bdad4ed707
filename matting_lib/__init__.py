"""matting_lib: similarity-preserving knowledge distillation for Deep Image Matting.

A reproduction of Yoon, Park & Cho, "Lightweight Deep CNN for Natural Image Matting via
Similarity-Preserving Knowledge Distillation", IEEE Signal Processing Letters 27 (2020).

Modules (one concept each):
    metrics      SAD / MSE / Grad / Conn as the official DIM MATLAB evaluation code computes them
    metrics_folder  folder evaluation (CSV, process pool) and the metrics command line
    layout       the Adobe dataset layout and image I/O
    layout_check the dataset checker (check_layout) and link_dataset
    compositing  Composition-1k compositing and the published test set (re-exports layout, layout_check)
    synthetic    the embedded, procedurally generated matting benchmark: presets and dataset generation
    synthetic_textures     its backgrounds and colour textures
    synthetic_foregrounds  its foregrounds: hair, fur, glass, smoke, veils, nets, lace
    trimap       trimaps from alphas and from binary masks
    datasets     on-the-fly training composites and the test set as torch Datasets
    dataset_report  notebook 01's dataset step: prepare the dataset, its summary, statistics and figures
    models       the DIM teacher and the paper's student
    checkpoints  the project's checkpoints and a safe importer for the public DIM-PyTorch teacher
    training     one training loop for teacher and students (resumable, DDP-ready)
    run_identity what a training run is (settings, teacher weights, data): resume only the same one
    kd_losses    batch / spatial / channel similarity and the AT / FSP / OFD losses, as tensor functions
    distill      the paper's distillation configurations and the student objective
    evaluation   predict a test set and score it; python -m matting_lib.evaluation scores a checkpoint on a folder
    predict      command line: matte one image
    export       ONNX export, and exported networks run by onnxruntime
    profiling    parameters, multiply-accumulates and latency
    paper        the paper's published numbers
    results      Table 1 from run metrics: mean ± std, relative changes, Markdown / CSV / LaTeX
    figures      the results figures
    explorer     the interactive similarity explorer (ipywidgets)
    pipeline     the notebook pipeline behind run_all.sh
    pipeline_validate  the profile and --set values checked against the notebooks before anything runs
    pipeline_exec      one notebook execution: time limits, liveness, a kernel client that never misses a reply
    pipeline_state     whether a job is up to date: markers, fingerprints, declared outputs that must load
    runlock      one pipeline per run folder (fcntl lock with the holder's PID)
    run_paths    a profile's dataset, runs and figures for a notebook opened by hand (04, 05)

The package imports nothing heavy at import time, so ``python -m matting_lib.pipeline --help`` answers
instantly; import the submodules you need.
"""

__version__ = "0.1.0"
