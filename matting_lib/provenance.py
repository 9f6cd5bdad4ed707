"""What a result depends on in the code: a digest per group of modules (comments, docstrings and formatting do not
count). A run's identity, the pipeline's up-to-date check and the caches are keyed by it. Standard library only."""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

#: The modules (relative to ``matting_lib/``) whose code determines a result, by group (see the module docstring).
CODE = {
    "data": ("data/datasets.py", "data/compositing.py", "data/trimap.py", "data/layout.py"),
    "networks": ("networks/models.py",),
    "training": ("data/datasets.py", "data/compositing.py", "data/trimap.py", "data/layout.py", "networks/models.py",
                 "networks/losses.py", "distillation/kd_losses.py", "distillation/distill.py", "training/loop.py",
                 "training/train_ddp.py", "settings.py", "params.py", "training/seeding.py"),
    "evaluation": ("inference/evaluation.py", "metrics/__init__.py", "metrics/kernels.py", "metrics/folder.py",
                   "data/layout.py"),
    "tables": ("reporting/results.py", "reporting/figures.py", "reporting/paper.py", "networks/profiling.py",
               "reporting/paired_stats.py", "reporting/paired_report.py"),
    "explorer": ("reporting/explorer.py", "reporting/figures.py", "distillation/kd_losses.py"),
}


PACKAGE = Path(__file__).resolve().parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@functools.cache
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def code_digest(*groups: str) -> str:
    """SHA-256 (16 hex) of the code of the :data:`CODE` groups: each module's syntax tree without docstrings
    (comments, docstrings and formatting do not count). A module that does not exist counts as ``missing``."""
    h = hashlib.sha256()
    for name in sorted({m for g in groups for m in CODE[g]}):
        path = PACKAGE / name
        if path.is_file():
            st = path.stat()
            h.update(f"{name}|{_file_digest(path, st.st_mtime_ns, st.st_size)}|".encode())
        else:
            h.update(f"{name}|missing|".encode())
    return h.hexdigest()[:16]
