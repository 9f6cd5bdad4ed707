"""Notebooks 05 and 04 in a real browser: JupyterLab on 127.0.0.1 with a token, headless Chromium
driven by selenium, on the executed copies of the session's smoke run (``smoke_run`` in conftest.py).

05: run all cells; the explorer's widgets render (not "Loading widget…", not a ``VBox(...)`` text repr); moving
the image slider and choosing another similarity kind each redraw the figure. 04: run all cells; every figure
renders. Both: no cell raises, and the browser console logs no error.

Needs the system's Chromium and its driver (Debian: ``apt-get install -y chromium chromium-driver``; selenium
drives that binary, nothing is downloaded). Without them the tests are skipped saying so, unless
``MATTING_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing them): then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
TOKEN = "matting-browser-test"
RUN_ALL_TIMEOUT_S = 600  # notebook 04 times latencies and builds every figure; CI machines are slow


def _require_browser() -> None:
    if CHROMIUM and DRIVER:
        return
    msg = ("browser tests need the system's Chromium and chromedriver, not found on PATH: install them with "
           "`apt-get install -y chromium chromium-driver` (as .ci/run does) to run tests/test_browser.py")
    if os.environ.get("MATTING_REQUIRE_BROWSER") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """JupyterLab user settings for a deterministic page: every cell rendered (no windowing: off-screen figures
    must load too), no autosave (the executed copies stay as the run wrote them), no news pop-up."""
    settings = {"notebook-extension/tracker": {"windowingMode": "none"},
                "docmanager-extension/plugin": {"autosave": False},
                "apputils-extension/notification": {"fetchNews": "false"}}
    for name, values in settings.items():
        package, plugin = name.split("/")
        path = folder / "@jupyterlab" / package / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    """JupyterLab serving copies of the smoke run's executed 04 and 05 (their parameters point at that run)."""
    _require_browser()
    runs_root, _, _ = request.getfixturevalue("smoke_run")
    root = tmp_path_factory.mktemp("lab")
    nbs = root / "notebooks"
    nbs.mkdir()
    for name in ("04_results-results.ipynb", "05_similarity_explorer-explorer.ipynb"):
        shutil.copy(runs_root / "smoke" / "notebooks" / name, nbs / name)
    _write_settings(root / "settings")
    port = _free_port()
    env = {**os.environ, **{f"JUPYTER_{k}_DIR": str(root / k.lower()) for k in ("RUNTIME", "CONFIG", "DATA")}}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={nbs}", f"--IdentityProvider.token={TOKEN}",
           f"--LabApp.user_settings_dir={root / 'settings'}", f"--LabApp.workspaces_dir={root / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: run commands, read the notebook model
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = (root / "lab.log").open("w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, (root / "lab.log").read_text()[-3000:]
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not answer on {base}: {(root / 'lab.log').read_text()[-3000:]}")
        yield base
    finally:
        server.terminate()  # the server this fixture started
        server.wait(timeout=60)
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)  # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def _wait(check, timeout_s: float, what: str):
    end = time.time() + timeout_s
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


_STATE_JS = """
const app = window.jupyterapp;
const w = app && Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === arguments[0]);
if (!w || !w.content.model || !w.sessionContext.session || !w.sessionContext.session.kernel) return null;
if (arguments[1]) app.shell.activateById(w.id);
const cells = w.content.model.cells, out = [];
for (let i = 0; i < cells.length; i++) {
  const c = cells.get(i);
  if (c.type === 'code') out.push({count: c.executionCount, outputs: c.outputs.toJSON()});
}
return {status: w.sessionContext.session.kernel.status, cells: out, current: app.shell.currentWidget === w};
"""


def _run_all(driver, lab: str, name: str) -> list[dict]:
    """Open ``name`` (in a fresh workspace), run all its cells and wait until every code cell has run again;
    returns the code cells' outputs."""
    state = lambda activate=False: driver.execute_script(_STATE_JS, name, activate)  # noqa: E731
    driver.get(f"{lab}/lab/tree/{name}?reset&token={TOKEN}")
    _wait(lambda: (s := state(True)) and s["status"] == "idle" and s["current"], 180, f"{name} to open, kernel idle")
    # clear what the executed copy saved (outputs and execution counts), so every output checked is this run's
    driver.execute_script("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');")
    _wait(lambda: all(c["count"] is None and not c["outputs"] for c in state()["cells"]), 30, "cleared outputs")
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    done = _wait(lambda: (s := state()) and s["status"] == "idle" and all(c["count"] for c in s["cells"]) and s,
                 RUN_ALL_TIMEOUT_S, f"all cells of {name} to run")
    errors = [o for c in done["cells"] for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    return done["cells"]


def _console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_explorer_widgets_render_and_redraw_on_every_control(browser, lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    cells = _run_all(browser, lab, "05_similarity_explorer-explorer.ipynb")
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cells[-1]["outputs"])
    ui = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-vbox"), 60,
               "the explorer's widgets to render")[0]
    texts = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))
    assert "Loading widget" not in texts and "VBox(children" not in texts  # a widget, not its text repr
    assert ui.find_elements(By.CSS_SELECTOR, ".widget-slider") and ui.find_elements(By.CSS_SELECTOR,
                                                                                    ".widget-toggle-button")
    figure = lambda: browser.execute_script(  # noqa: E731 - the widget's current figure, as its data URI
        "const i = arguments[0].querySelector('img'); return i && i.naturalWidth > 0 ? i.src : null;", ui)
    first = _wait(figure, 60, "the explorer's figure")

    image_slider = ui.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", image_slider)
    before = image_slider.get_attribute("aria-valuenow")
    image_slider.click()
    image_slider.send_keys(Keys.ARROW_RIGHT)
    second = _wait(lambda: (lambda f: f if f and f != first else None)(figure()), 60, "a redraw after the slider")
    assert float(image_slider.get_attribute("aria-valuenow")) == float(before) + 1

    channel = next(b for b in ui.find_elements(By.CSS_SELECTOR, ".widget-toggle-button") if b.text.strip() == "channel")
    channel.click()
    _wait(lambda: (lambda f: f if f and f != second else None)(figure()), 60, "a redraw after choosing 'channel'")
    # the static picture of the initial view is there as well (it is what the saved notebook keeps)
    assert browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output.jp-RenderedImage img")
    assert not _console_errors(browser), _console_errors(browser)


def test_results_notebook_shows_every_figure(browser, lab):
    from selenium.webdriver.common.by import By

    cells = _run_all(browser, lab, "04_results-results.ipynb")
    pngs = sum("image/png" in o.get("data", {}) for c in cells for o in c["outputs"])
    assert pngs >= 5  # relative SAD and Grad, learning curves, qualitative grid, similarity matrices
    rendered = lambda: browser.execute_script(  # noqa: E731
        "return Array.from(document.querySelectorAll('.jp-RenderedImage img')).filter(i => i.naturalWidth > 0).length;")
    assert _wait(lambda: rendered() >= pngs, 60, f"{pngs} figures to render") and rendered() == pngs
    tables = browser.find_elements(By.CSS_SELECTOR, ".jp-RenderedMarkdown table")
    assert tables and "DIM-teacher" in tables[0].text  # Table 1, rendered from its Markdown
    assert not _console_errors(browser), _console_errors(browser)
