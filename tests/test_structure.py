"""The library's structure, read from its source: the import graph has no cycle (beyond the two named below),
no module imports another's private (``_``) names, and ``__all__`` lists only names a module defines (no
re-export layers)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "matting_lib"

KNOWN_CYCLES: set[frozenset[str]] = set()  # none: every cycle fails


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _imports(mod: str) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import in ``mod``, function-level ones included."""
    path = MODULES[mod]
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            for a in node.names:
                if f"{name}.{a.name}" in MODULES:
                    found.append((f"{name}.{a.name}", None))
                elif name in MODULES:
                    found.append((name, a.name))
    return found


def _edges() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(m) if t != m} for m in MODULES}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(u: str) -> None:
        state[u] = "open"
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if state.get(v) == "open":
                found.append(stack[stack.index(v):])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_import_graph_has_no_new_cycle():
    cycles = [c for c in _cycles(_edges()) if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_metrics_package_imports_one_way():
    edges = _edges()
    assert "matting_lib.metrics.folder" not in edges["matting_lib.metrics"]
    assert "matting_lib.metrics" in edges["matting_lib.metrics.folder"]


def test_no_module_imports_private_names_of_another():
    private = [f"{m} imports {t}.{n}" for m in MODULES for t, n in _imports(m) if n and n.startswith("_")]
    assert not private, private


def test_all_lists_only_names_defined_in_the_module():
    # a name in __all__ that the module imports is a re-export layer: import it from where it is defined
    offenders = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {a.asname or a.name for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                    for a in n.names}
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
                offenders += [f"{mod}.{e.value}" for e in node.value.elts if e.value in imported]
    assert not offenders, f"re-exported through __all__: {offenders}"


# The package's floors, from the ground up (docs/layout.md, "Which folder may import which"): a module may import its
# own folder and any folder on a lower floor, never one on its floor or above. The top-level helpers are floor 0 and
# may import each other (without a cycle); the command shims stand on top.
FLOORS = {
    "paths": 0, "files": 0, "params": 0, "settings": 0, "provenance": 0, "cpu_env": 0,
    "data": 1,
    "metrics": 2, "networks": 2,
    "distillation": 3, "inference": 3,
    "training": 4, "reporting": 4,
    "studies": 5,
    "pipeline": 6,
    "evaluation": 7, "predict": 7, "export": 7, "checkpoints": 7, "paired_report": 7, "calibration": 7,
    "protocol_study": 7,
}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_every_part_of_the_package_has_a_floor():
    parts = {_part(m) for m in MODULES} - {""}
    assert parts == set(FLOORS), f"parts without a floor: {sorted(parts - set(FLOORS))}; floors of nothing: " \
                                 f"{sorted(set(FLOORS) - parts)}"


def test_no_part_imports_one_on_its_floor_or_above():
    up = []
    for mod, targets in _edges().items():
        a = _part(mod)
        for target in targets:
            b = _part(target)
            if a and b and a != b and not (FLOORS[a] == FLOORS[b] == 0) and FLOORS[b] >= FLOORS[a]:
                up.append(f"{mod} -> {target}")
    assert not up, "imports that run sideways or up: " + "; ".join(sorted(up))


def test_the_top_level_keeps_at_most_eight_modules_besides_the_command_shims():
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    shims = {name for name in top if FLOORS.get(name) == 7}
    for name in shims:  # a shim only runs its module's main
        assert len((PACKAGE / f"{name}.py").read_text().splitlines()) <= 12, name
    assert len(top - shims) <= 8, sorted(top - shims)


def test_distillation_and_profiling_do_not_import_the_training_loop():
    edges = _edges()
    for mod in ("matting_lib.distillation.distill", "matting_lib.networks.profiling",
                "matting_lib.distillation.kd_losses"):
        assert "matting_lib.training.loop" not in edges[mod], mod
    loss = "matting_lib.networks.losses"
    assert loss in edges["matting_lib.distillation.distill"] and loss in edges["matting_lib.training.loop"]


def test_the_runs_folder_layout_and_the_run_name_are_spelled_in_one_module():
    """``RunLayout`` (matting_lib/paths.py) is the only code naming the runs folder's parts and making a student's
    run name; every other module asks it."""
    spelled = []
    for mod, path in MODULES.items():
        if mod == "matting_lib.paths":
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value in ("students", "teacher-cache", "batch-cache") or node.value.startswith("kd-")):
                spelled.append(f"{mod}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.Constant) and str(v.value).startswith("kd-")
                                                       for v in node.values[:1]):
                spelled.append(f"{mod}:{node.lineno}: an f-string starting kd-")
    assert not spelled, spelled


def test_the_training_loop_reads_top_to_bottom():
    """``train`` is a screen long and calls named parts; no closure keeps mutable state."""
    tree = ast.parse(MODULES["matting_lib.training.loop"].read_text(encoding="utf-8"))
    train = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    assert train.end_lineno - train.lineno + 1 <= 60
    assert not [n for n in ast.walk(train) if isinstance(n, (ast.FunctionDef, ast.Lambda)) and n is not train]
    called = {n.func.id for n in ast.walk(train) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"start_trainer", "resume", "epoch_loader", "train_step", "after_step"} <= called


def test_one_place_prepares_a_run_folder():
    callers = [m for m, p in MODULES.items() if "prepare_run_dir(" in p.read_text(encoding="utf-8")
               and m != "matting_lib.training.run_identity"]
    assert callers == ["matting_lib.training.run"], callers
