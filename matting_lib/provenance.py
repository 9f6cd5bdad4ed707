"""What a result depends on in the code: a digest per group of code units (comments, docstrings and formatting do not
count). A run's identity, the pipeline's up-to-date check and the caches are keyed by it. Standard library only.

A **unit** is a whole module (``"training/loop.py"``, relative to ``matting_lib/``), one top-level definition of a
module with the top-level definitions it uses (``"distillation/kd_losses.py:ofd_margin"``), or one entry of a
top-level dict literal, a registry, with what it uses (``"distillation/kd_losses.py:KD_LOSSES[spatial]"``). What a
definition uses is read from the syntax tree: every top-level name of the module that its code mentions, and so on
(a statement that defines no name, such as a loop filling a registry, counts for every name it mentions). A helper
that several entries reach counts for each of them.

A **group** is a name of :data:`CODE` (a tuple of units) or ``"kd:<type>"``: the entry ``<type>`` of the
distillation registry :data:`KD_REGISTRY` (``KD_LOSSES`` of :mod:`matting_lib.distillation.kd_losses`). So a run
that distils with spatial similarity depends on ``training``, ``distillation`` and ``kd:spatial``
(:func:`training_groups`): an edit of the spatial term retrains the runs that use it and no other, the no-KD
student included.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

KD_MODULE = "distillation/kd_losses.py"
#: The registry whose entries are the per-type groups ``kd:<type>``.
KD_REGISTRY = f"{KD_MODULE}:KD_LOSSES"
_DATA = ("data/datasets.py", "data/compositing.py", "data/trimap.py", "data/layout.py")

#: The code units whose code determines a result, by group (see the module docstring).
CODE = {
    "data": _DATA,
    "networks": ("networks/models.py",),
    # what every training executes: data, network, alpha loss, the loop, its settings and seeding
    "training": (*_DATA, "networks/models.py", "networks/losses.py", "training/run.py", "training/loop.py",
                 "training/train_ddp.py", "settings.py", "params.py", "training/seeding.py"),
    # what every student executes besides: its objective, and the parts of the loss module it uses outside the
    # registry (each registry entry is a group of its own, kd:<type>)
    "distillation": ("distillation/distill.py", f"{KD_MODULE}:SPATIAL_MODES", f"{KD_MODULE}:KDLoss",
                     f"{KD_MODULE}:TermContext", f"{KD_MODULE}:ofd_margin"),
    "evaluation": ("inference/evaluation.py", "metrics/__init__.py", "metrics/kernels.py", "metrics/folder.py",
                   "data/layout.py"),
    "tables": ("reporting/results.py", "reporting/figures.py", "reporting/paper.py", "networks/profiling.py",
               "reporting/paired_stats.py", "reporting/paired_report.py"),
    "explorer": ("reporting/explorer.py", "reporting/figures.py", KD_MODULE),
}


PACKAGE = Path(__file__).resolve().parent


def training_groups(kd_types: Sequence[str] | None = None) -> tuple[str, ...]:
    """The groups a training depends on: ``training`` for a network trained on the alpha loss alone (the teacher,
    the calibration runs; ``kd_types`` None); a student (notebook 03's objective, ``kd_types`` its distillation
    types, empty for the no-KD student and Hinton) adds ``distillation`` and ``kd:<type>`` per type."""
    if kd_types is None:
        return ("training",)
    return ("training", "distillation", *(f"kd:{t}" for t in sorted(kd_types)))


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False)


def _defined(stmt: ast.stmt) -> set[str]:
    """The top-level names ``stmt`` defines (a statement defining none: every name it mentions)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else \
        [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else []
    names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names or {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}


def _mentions(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class _Module:
    """One module's syntax tree without docstrings, its top-level statements and what each defines."""

    def __init__(self, path: Path):
        self.tree = _strip_docstrings(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        self.statements = list(self.tree.body)
        self.defines: dict[str, list[int]] = {}
        for i, stmt in enumerate(self.statements):
            for name in _defined(stmt):
                self.defines.setdefault(name, []).append(i)

    def closure(self, names: Iterable[str]) -> list[int]:
        """The statements defining ``names`` and, recursively, the top-level names they mention, in file order."""
        todo, seen = [n for n in names if n in self.defines], set()
        while todo:
            for i in self.defines[todo.pop()]:
                if i not in seen:
                    seen.add(i)
                    todo += [n for n in _mentions(self.statements[i]) if n in self.defines]
        return sorted(seen)

    def registry_entry(self, registry: str, key: str) -> ast.AST:
        """The value of ``key`` in the top-level dict literal ``registry``; ``KeyError`` naming the keys there."""
        for stmt in self.statements:
            value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
            if registry in _defined(stmt) and isinstance(value, ast.Dict):
                keys = [k.value for k in value.keys if isinstance(k, ast.Constant)]
                if key in keys:
                    return value.values[keys.index(key)]
                raise KeyError(f"{registry} has no entry {key!r}; it has {', '.join(map(str, keys))}")
        raise KeyError(f"no top-level dict literal {registry}")


@functools.cache
def _module(path: Path, mtime_ns: int, size: int) -> _Module:
    return _Module(path)


def unit_digest(unit: str) -> str:
    """SHA-256 (hex) of one code unit (see the module docstring); ``missing`` for a module that does not exist."""
    name, _, part = unit.partition(":")
    path = PACKAGE / name
    if not path.is_file():
        return "missing"
    st = path.stat()
    mod = _module(path, st.st_mtime_ns, st.st_size)
    if not part:
        text = _dump(mod.tree)
    elif part.endswith("]") and "[" in part:
        registry, _, key = part[:-1].partition("[")
        entry = mod.registry_entry(registry, key)
        text = _dump(entry) + "".join(_dump(mod.statements[i]) for i in mod.closure(_mentions(entry)))
    else:
        if part not in mod.defines:
            raise KeyError(f"{name} defines no top-level {part!r}")
        text = "".join(_dump(mod.statements[i]) for i in mod.closure([part]))
    return hashlib.sha256(text.encode()).hexdigest()


def group_units(group: str) -> tuple[str, ...]:
    """The units of a group: :data:`CODE`'s, or for ``kd:<type>`` the entry of :data:`KD_REGISTRY`."""
    if group in CODE:
        return CODE[group]
    kind, sep, key = group.partition(":")
    if kind == "kd" and sep and key:
        return (f"{KD_REGISTRY}[{key}]",)
    raise KeyError(f"unknown code group {group!r}; groups: {', '.join(CODE)}, kd:<distillation type>")


def group_digests(*groups: str) -> dict[str, str]:
    """``{group: SHA-256 (16 hex) of its units}`` for each group given: what :func:`code_digest` combines, kept
    apart so that a message can say which group changed."""
    out = {}
    for group in sorted(set(groups)):
        h = hashlib.sha256()
        for unit in sorted(set(group_units(group))):
            h.update(f"{unit}|{unit_digest(unit)}|".encode())
        out[group] = h.hexdigest()[:16]
    return out


def code_digest(*groups: str) -> str:
    """SHA-256 (16 hex) of the code of the groups given (:data:`CODE` names or ``kd:<type>``): each unit's syntax
    tree without docstrings (comments, docstrings and formatting do not count). A module that does not exist
    counts as ``missing``."""
    h = hashlib.sha256()
    for unit in sorted({u for g in groups for u in group_units(g)}):
        h.update(f"{unit}|{unit_digest(unit)}|".encode())
    return h.hexdigest()[:16]
