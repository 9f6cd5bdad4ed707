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


def test_distillation_and_profiling_do_not_import_the_training_loop():
    edges = _edges()
    for mod in (
        "matting_lib.distillation.distill",
        "matting_lib.networks.profiling",
        "matting_lib.distillation.kd_losses",
    ):
        assert "matting_lib.training.loop" not in edges[mod], mod
    assert (
        "matting_lib.networks.losses" in edges["matting_lib.distillation.distill"]
        and "matting_lib.networks.losses" in edges["matting_lib.training.loop"]
    )
