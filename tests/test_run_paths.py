"""Notebooks 04 and 05 opened by hand: paths derive from one ``profile`` parameter, and a missing run says which
run, the command that makes it and the profiles that do have runs."""

from __future__ import annotations

import pytest
from conftest import REPO

from matting_lib.pipeline import common, plan, profiles, run_paths


def test_paths_derive_from_the_profile_and_explicit_ones_win(tmp_path):
    smoke = run_paths.for_profile("smoke")
    prof = profiles.load_profile("smoke")
    assert smoke.data == REPO / "data" / "synthetic-smoke"
    assert smoke.runs == REPO / "runs" / "smoke" and smoke.figures == REPO / "figures" / "smoke"
    assert smoke.configs == tuple(prof["distill"]["configs"]) and smoke.seeds == prof["distill"]["seeds"] == 1
    assert smoke.command == "./run_all.sh --profile smoke"
    # the pipeline's own paths for the same profile are the same
    jobs = plan.plan_jobs("smoke", prof, runs_root=REPO / "runs")
    res = next(j for j in jobs if j.stage == "results").params
    assert (REPO / res["data_dir"], res["runs_dir"], res["figures_dir"]) == (smoke.data, str(smoke.runs),
                                                                            str(smoke.figures))
    assert res["configs"] == list(smoke.configs) and res["seeds"] == smoke.seeds
    mine = run_paths.for_profile("smoke", data_dir=str(tmp_path / "d"), runs_dir=str(tmp_path / "r" / "smoke"))
    assert (mine.data, mine.runs) == (tmp_path / "d", tmp_path / "r" / "smoke")
    assert mine.figures == tmp_path / "r" / "smoke" / "figures"  # figures go with another runs folder
    assert mine.command == f"./run_all.sh --profile smoke --runs-dir {tmp_path / 'r'}"
    with pytest.raises(common.ProfileError, match="valid profiles: .*smoke"):
        run_paths.for_profile("smok")


def test_a_missing_run_names_it_the_command_and_the_profiles_that_exist(tmp_path):
    (tmp_path / "smoke" / "teacher").mkdir(parents=True)
    paths = run_paths.for_profile("default", runs_dir=str(tmp_path / "default"))
    missing = tmp_path / "default" / "teacher" / "teacher.pt"
    with pytest.raises(FileNotFoundError) as err:
        paths.require(missing, "the teacher")
    msg = str(err.value)
    assert str(missing) in msg and "the teacher of profile 'default'" in msg
    assert f"./run_all.sh --profile default --runs-dir {tmp_path}" in msg
    assert 'profile = "smoke"' in msg and str(tmp_path / "smoke" / "notebooks") in msg
    assert paths.require(tmp_path / "smoke", "x") == tmp_path / "smoke"  # present: returned as is
    alone = run_paths.for_profile("smoke", runs_dir=str(tmp_path / "smoke"))
    with pytest.raises(FileNotFoundError) as err:
        alone.require(tmp_path / "smoke" / "teacher" / "teacher.pt", "the teacher")
    assert "Runs exist" not in str(err.value)  # no other profile to point to


@pytest.mark.slow
def test_explorer_opened_with_only_the_profile_runs_and_the_wrong_profile_says_which(smoke_run, tmp_path):
    import papermill as pm

    runs_root, _, _ = smoke_run
    nb = REPO / "notebooks" / "05_similarity_explorer.ipynb"
    # data_dir, configurations and seeds come from the profile; only the runs folder is this test's own
    pm.execute_notebook(str(nb), str(tmp_path / "ok.ipynb"), kernel_name="python3", progress_bar=False,
                        parameters={"profile": "smoke", "runs_dir": str(runs_root / "smoke"), "n_images": 2,
                                    "size": 64})
    # the executed copy keeps a picture of the initial view (widget state is not saved) and says how to get controls
    import nbformat

    last = [c for c in nbformat.read(tmp_path / "ok.ipynb", 4).cells if c.cell_type == "code"][-1]
    assert any("image/png" in o.get("data", {}) for o in last.outputs)
    assert any("run all cells" in o.get("data", {}).get("text/markdown", "") for o in last.outputs)
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(nb), str(tmp_path / "bad.ipynb"), kernel_name="python3", progress_bar=False,
                            parameters={"profile": "default", "runs_dir": str(runs_root / "default")})
    assert "the teacher of profile 'default'" in str(err.value) and 'profile = "smoke"' in str(err.value)
