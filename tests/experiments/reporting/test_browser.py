"""The report in a real browser: headless Chromium opens report.html from disk (offline),
every figure renders, no JavaScript error is logged, nothing is fetched from the network,
the checkpoint slider animates; a screenshot is saved for people to look at.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``make test`` installs them
when it can) and ``selenium``; without them the test is skipped, saying why.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


def _find(names: list[str]) -> str | None:
    for name in names:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.common.exceptions import WebDriverException

    chromium = _find(["chromium", "/usr/bin/chromium", "chromium-browser"])
    driver_path = _find(["chromedriver", "/usr/bin/chromedriver"])
    if chromium is None or driver_path is None:
        pytest.skip("headless Chromium is not installed (needs Debian packages chromium and chromium-driver; "
                    "`make test` installs them with apt-get when run as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    except WebDriverException as exc:
        pytest.skip(f"Chromium is installed but could not start: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _severe(logs: list[dict]) -> list[str]:
    return [entry["message"] for entry in logs if entry.get("level") == "SEVERE"]


def test_report_renders_every_figure_without_js_errors(tiny_run, browser, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    from experiments.causal import patch_run, steer_run
    from experiments.reporting.report import FIGURES, write_report

    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    patch_run(out, min_shift=0.0)  # yes/no patching (the tiny model barely moves: every shift kept)
    steer_run(out, layers=[1], alphas=(-1.0, 1.0), n_random=1)
    report = write_report(out)
    browser.get(report.resolve().as_uri())
    div_ids = browser.execute_script(
        "return Array.from(document.querySelectorAll('div.plotly-graph-div')).map(d => d.id)")
    # the tiny run has data for every figure but the stability protocol's, the judge's (off),
    # pretraining tracking's (off) and forced-choice and probe patching's (not run)
    expected = [f"fig-{name}" for name in FIGURES if not name.startswith("stability_")
                and name not in ("judged_belief", "pretraining_tracking", "belief_patching_forced_choice",
                                 "belief_patching_probe")]
    assert sorted(div_ids) == sorted(expected), div_ids

    rendered = ("return Array.from(document.querySelectorAll('div.plotly-graph-div'))"
                ".filter(d => d.querySelector('.plot-container .main-svg') && d._fullLayout).map(d => d.id)")
    WebDriverWait(browser, 60).until(lambda d: len(d.execute_script(rendered)) == len(div_ids))
    # each figure drew its data, not just an empty frame
    n_traces = browser.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('div.plotly-graph-div'))"
        ".map(d => [d.id, d.querySelectorAll('.scatterlayer .trace, .heatmaplayer .hm, image, .table').length]))")
    assert all(n > 0 for n in n_traces.values()), n_traces

    # the checkpoint slider: jump to the last frame and check the points moved there
    moved = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const div = document.getElementById('fig-activation_projection');
        const frames = div._transitionData._frames;
        const last = frames[frames.length - 1];
        Plotly.animate(div, [last.name], {frame: {duration: 0, redraw: true}, transition: {duration: 0}, mode: 'immediate'})
          .then(() => done({n: frames.length, x: div.data[0].x[0], want: last.data[0].x[0]}))
          .catch(e => done({error: String(e)}));
    """)
    assert "error" not in moved, moved
    assert moved["n"] >= 2 and moved["x"] == pytest.approx(moved["want"]), moved
    assert browser.find_elements("css selector", "#fig-activation_projection .slider-container")

    # offline: every resource the page loaded came from disk or was inline
    remote = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !/^(file|data|blob):/.test(n))")
    assert remote == []
    assert _severe(browser.get_log("browser")) == []

    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 16000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("NEGLECT_SCREENSHOT_DIR")  # handy for looking at it after a run
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")


def test_javascript_errors_would_be_caught(browser, tmp_path):
    """The error check above is not vacuous: a page that throws shows up in the log."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    browser.get(page.as_uri())
    errors = _severe(browser.get_log("browser"))
    assert any("undefinedFunction" in e for e in errors), errors
