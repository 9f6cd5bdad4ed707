"""Repository hygiene: the contract files exist and committed notebooks carry no outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO


def _notebooks():
    return sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_source_notebooks_have_no_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [
        i for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_source_notebooks_have_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"


# Notebooks whose code cells are short steps; 04 and 05: tests/test_notebooks_04_05.py.
SHORT_CELL_NOTEBOOKS = ("00_calibration.ipynb", "01_compositing.ipynb", "02_teacher.ipynb", "03_distill.ipynb")


@pytest.mark.parametrize("name", SHORT_CELL_NOTEBOOKS)
def test_notebook_cells_are_short_steps_each_introduced_by_markdown(name):
    """A code cell is a step of ~10 lines calling the library (imports and the parameters cell aside), and a
    markdown cell says what it does before the first code cell of every step."""
    cells = json.loads((REPO / "notebooks" / name).read_text())["cells"]
    code = [(i, c) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    long = [i for i, c in code[1:] if "parameters" not in c["metadata"].get("tags", [])
            and len("".join(c["source"]).splitlines()) > 10]
    assert not long, f"{name}: code cells {long} are longer than 10 lines; move the logic into matting_lib"
    after_params = [i for i, c in code if i > next(j for j, c in code if "parameters" in c["metadata"].get("tags", []))]
    unintroduced = [i for i in after_params if cells[i - 1]["cell_type"] != "markdown"
                    and i - 1 not in after_params]  # a step may span consecutive code cells
    assert not unintroduced, f"{name}: code cells {unintroduced} have no markdown before them"


def test_contract_files_exist():
    for name in ["README.md", "run_all.sh", "test.sh", "environment.yml", "pyproject.toml",
                 "requirements.lock", ".ci/run", "notebooks", "matting_lib", "data", "figures", "benchmarks"]:
        assert (REPO / name).exists(), name


def test_run_all_help_and_bad_option():
    ok = subprocess.run(["bash", str(REPO / "run_all.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "--profile" in ok.stdout and "smoke" in ok.stdout
    bad = subprocess.run(
        ["bash", str(REPO / "run_all.sh"), "--no-such-option"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0
    assert "--no-such-option" in bad.stderr


@pytest.mark.parametrize("profile", ["default"])
def test_shipped_teacher_matches_its_manifest_and_profile(profile):
    """The teacher a profile loads is in git, intact (SHA-256), and was trained with the [teacher] settings."""
    import tomllib

    from matting_lib.networks import checkpoints

    prof = tomllib.loads((REPO / "profiles" / f"{profile}.toml").read_text())
    assert prof["teacher"]["mode"] == "load"
    path = REPO / "matting_lib" / "assets" / f"teacher-{profile}.pt"
    manifest = checkpoints.check_manifest(path)
    model = checkpoints.load_model(path)
    trained_with = manifest["parameters"]
    if manifest["mode"] == "calibration":  # a snapshot of a calibration run (constant lr): its step is the length
        trained_with = {**trained_with, "steps": manifest["steps"], "lr_decay": ""}
        assert (
            manifest["validation"]["curve_sad"][str(manifest["steps"])]
            == manifest["validation"]["scores"]["all"]["sad"]
        )
    for key in ("width", "crop_size", "batch_size", "lr", "lr_decay", "steps", "seed"):
        assert trained_with[key] == prof["teacher"][key], key  # --retrain-teacher trains the same way
    assert model.arch["kind"] == "teacher" and model.arch["width"] == prof["teacher"]["width"] == manifest["width"]
    assert manifest["test_images"] > 0 and set(manifest["metrics"]["official"]) == {"sad", "mse", "grad", "conn"}
    assert manifest["dataset"]["kind"] == "files" and len(manifest["dataset"]["sha256"]) == 64  # checkable provenance

    def strings(x):
        return [x] if isinstance(x, str) else [s for v in (x.values() if isinstance(x, dict) else
                                                              x if isinstance(x, list) else []) for s in strings(v)]
    assert not [s for s in strings(manifest) if s.startswith("/")], "manifest stores a machine's absolute path"
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(path.relative_to(REPO))], cwd=REPO,
                             capture_output=True)
    assert tracked.returncode == 0 or not (REPO / ".git").exists(), f"{path} is not committed"


def _package_map() -> set[str]:
    """Paths listed under ``matting_lib/`` in docs/layout.md's map (two spaces of indent per folder level)."""
    text = (REPO / "docs" / "layout.md").read_text(encoding="utf-8")
    block = text.split("```\n", 2)[1]
    lines = block.splitlines()
    assert lines[0] == "matting_lib/", "the map starts with the package folder"
    stack, listed = [], set()
    for line in lines[1:]:
        if not line.startswith("  "):
            break  # the package ends where the top-level folders (notebooks/, ...) start
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        stack[depth - 1:] = [name.rstrip("/")]
        listed.add("/".join(stack) + ("/" if name.endswith("/") else ""))
    return listed


def test_package_map_matches_the_files():
    pkg = REPO / "matting_lib"
    on_disk = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py") if "__pycache__" not in p.parts}
    on_disk |= {p.relative_to(pkg).as_posix() + "/" for p in pkg.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    # a subpackage's own __init__ is its folder's line
    on_disk -= {f"{d.rstrip('/')}/__init__.py" for d in on_disk if d.endswith("/")}
    listed = _package_map()
    assert not on_disk - listed, f"docs/layout.md misses {sorted(on_disk - listed)}"
    assert not listed - on_disk, f"docs/layout.md lists {sorted(listed - on_disk)}, which do not exist"


def test_test_sh_fast_deselects_the_slow_tests():
    """``./test.sh --fast`` becomes ``-m "not slow"`` (the marker is registered); other arguments pass through."""
    script = (REPO / "test.sh").read_text()
    start = script.index("args=()")
    loop = script[start:script.index("done\n", start) + 5]  # the argument translation, without the env
    out = subprocess.run(["bash", "-c", loop + 'printf "%s\\n" "${args[@]}"', "test.sh", "--fast", "-k", "metrics"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["-m", "not slow", "-k", "metrics"], out.stderr
    assert "slow:" in " ".join(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    )



def test_test_sh_runs_the_linters_before_the_tests(tmp_path):
    """test.sh runs ruff and codespell (configured in pyproject.toml) before pytest, so CI fails on a lint error."""
    script = (REPO / "test.sh").read_text()
    lint, tests = script.index("-m ruff check"), script.index("-m pytest")
    assert lint < tests and script.index("-m codespell_lib") < tests
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]
    assert {"F", "E", "I", "UP", "B"} <= set(config["ruff"]["lint"]["select"]) and config["ruff"]["line-length"] == 120
    # the checks are real: a dead import and a typo in a file of the package are found
    probe = tmp_path / "probe.py"
    typo = "rec" + "ieve"  # spelt apart so that the tree itself stays clean
    probe.write_text(f"import os\n\n# {typo}\n")
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", "--no-cache", str(probe)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert ruff.returncode == 1 and "F401" in ruff.stdout
    spell = subprocess.run([sys.executable, "-m", "codespell_lib", str(probe)], capture_output=True, text=True,
                           cwd=REPO, timeout=60)
    assert spell.returncode != 0 and f"{typo} ==> receive" in spell.stdout

# ----------------------------------------------------------------------------------------- no development history
# What a user reads states what the project is, never how it was made: no "session 6", "issue 12", "before this
# change", "the teacher shipped before". Python files are checked in their comments and strings only (docstrings,
# CLI help, messages), so that code names such as an onnxruntime ``session`` variable are not prose.
HISTORY_PATTERNS = {
    "a work session": r"\bsessions?\b",
    "an issue number": r"\bissues?\s*#?\d+",
    "the issue": r"\b(?:the|this|that) issue(?:'s)?\b",
    "before this change": r"\bbefore this (?:change|work|study|session|issue|fix|commit|refactor)\b",
    "shipped before": r"\bshipped (?:before|until|earlier)\b",
    "until issue/session": r"\buntil (?:issue|session|now)\b",
    "the previous code": r"\b(?:previous|earlier|old) (?:code|version of (?:the|this) (?:code|project))\b",
    "this machine earlier": r"\bthis machine earlier\b",
}
# Legitimate uses of those words, as (file, exact phrase): a Jupyter / onnxruntime / process "session".
HISTORY_ALLOWED = {
    ("matting_lib/inference/export.py", "An onnxruntime CPU session"),
    ("matting_lib/pipeline/execute.py", "jupyter_client's ``Session.send``"),
    ("matting_lib/pipeline/execute.py", "the kernel runs in its own session"),
}
USER_READ_GLOBS = ("README.md", "docs/**/*.md", "notebooks/*.ipynb", "profiles/*.toml", "matting_lib/**/*.py",
                   "matting_lib/assets/*.csv", "matting_lib/assets/*.json", "benchmarks/*.py", "benchmarks/*.md",
                   "figures/*.md", "*.sh", "scripts/*.sh", "CITATION.cff", "pyproject.toml")


def _prose(path) -> list[tuple[int, str]]:
    """(line number, text) of what a reader of ``path`` sees as prose: a notebook's cell sources, a Python file's
    comments and strings, any other file whole."""
    import io
    import tokenize

    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        return [(i, line) for i, c in enumerate(cells) for line in "".join(c["source"]).splitlines()]
    if path.suffix == ".py":
        out = []
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.COMMENT, tokenize.STRING) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
                out += [(tok.start[0] + k, line) for k, line in enumerate(tok.string.splitlines())]
        return out
    return list(enumerate(text.splitlines(), 1))


def _user_read_files() -> list:
    files = {p for pattern in USER_READ_GLOBS for p in REPO.glob(pattern) if p.is_file()}
    return sorted(p for p in files if not {".venv", "runs", "data", "__pycache__"} & set(p.relative_to(REPO).parts))


@pytest.mark.parametrize("path", _user_read_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_development_history_where_a_user_reads(path):
    import re

    rel = path.relative_to(REPO).as_posix()
    allowed = [phrase for f, phrase in HISTORY_ALLOWED if f == rel]
    found = []
    for where, line in _prose(path):
        for name, pattern in HISTORY_PATTERNS.items():
            for m in re.finditer(pattern, line, flags=re.IGNORECASE):
                if not any(phrase in line and phrase.lower().find(m.group().lower()) >= 0 for phrase in allowed):
                    found.append(f"{rel}:{where}: {name}: {line.strip()[:120]}")
    assert not found, "development history where a user reads; state what is, with the command that measures " \
                      "it:\n" + "\n".join(found)


def test_history_check_catches_what_it_should_and_allows_the_listed_phrases(tmp_path):
    import re

    hits = ["measured in session 8", "(issue 10, item 2)", "sessions 3–5", "the issue's target", "before this change",
            "the teacher shipped before this study", "until issue 12", "the previous code took 28 min",
            "as this machine earlier gave"]
    misses = ["an onnxruntime session object", "the issued warning", "a tissue-like texture", "this study's budget",
              "the earlier checkpoint", "before the students train"]
    flagged = [t for t in hits + misses
               if any(re.search(p, t, flags=re.IGNORECASE) for p in HISTORY_PATTERNS.values())]
    assert set(hits) <= set(flagged), set(hits) - set(flagged)
    assert flagged == hits + ["an onnxruntime session object"]  # a bare "session" needs an entry in HISTORY_ALLOWED
    for rel, phrase in HISTORY_ALLOWED:
        assert phrase in (REPO / rel).read_text(encoding="utf-8"), f"{rel} no longer says {phrase!r}: drop the entry"


def test_no_file_name_tells_when_it_was_made():
    import re

    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.splitlines() \
        if (REPO / ".git").exists() else [p.relative_to(REPO).as_posix() for p in REPO.rglob("*") if p.is_file()]
    dated = [n for n in names if re.search(r"_s\d+\b|session|issue_?\d|_v\d+_old|_revised", n, flags=re.IGNORECASE)]
    assert not dated, f"file names that say when they were made, not what they are: {dated}"


def test_help_lists_every_profile():
    """``run_all.sh --help`` names every file in profiles/, in the --profile help and in the epilog."""
    from matting_lib.pipeline import cli, profiles

    parser = cli.build_parser()
    profile_help = next(a.help for a in parser._actions if "--profile" in a.option_strings)
    for name in profiles.available_profiles():
        assert name in profile_help.split(" (")[0].split(" | "), f"--profile help misses {name}"
        assert f"{name} (" in parser.epilog, f"the --help epilog does not describe profile {name}"


def test_readme_links_every_docs_page_and_every_link_resolves():
    """Every page in docs/ is linked from the README's documentation index, and every relative link in the README
    and the docs pages names a file that exists and, with a #fragment, a heading of that file."""
    import re

    def anchors(md: str) -> set[str]:  # GitHub's heading ids: lower case, punctuation dropped, spaces -> hyphens
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", md, flags=re.MULTILINE)}

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    index = readme.split("## Documentation\n", 1)[1].split("\n## ", 1)[0]
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert [p for p in pages if f"(docs/{p})" not in index] == [], "pages missing from the README's documentation index"
    broken = []
    for md in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = md.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            path, _, fragment = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                broken.append(f"{md.relative_to(REPO)}: {target} (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{md.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
