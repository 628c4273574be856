"""The documentation site builds with `mkdocs build --strict` (a missing snippet, a broken link or
an unresolved reference fails it), includes every README section, and documents the public
names other code relies on (DESIGN.md's public surface) from their docstrings."""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.paths import REPO

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")


def text_of(page) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))))


def build(root, out):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(root / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, env=env, cwd=root, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = build(REPO, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_every_readme_section_is_a_guide_page(site):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sections = re.findall(r"<!-- --8<-- \[start:([a-z-]+)\] -->\n+(.+)", readme)
    assert {name for name, _ in sections} == {"intro", "demo", "running", "measures", "patching", "steering",
                                              "real-models", "layout"}
    pages = {"intro": "index.html", **{name: f"guide/{name}/index.html" for name, _ in sections if name != "intro"}}
    for name, first_line in sections:
        words = " ".join(re.sub(r"[`*]", "", first_line).split()[:6])
        assert words in text_of(site / pages[name]), (name, words)
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert len(headings) == len(sections) - 1  # every section of the README is marked for the site


def test_the_public_surface_is_documented_from_its_docstrings(site):
    interp_page = (site / "reference" / "interp" / "index.html").read_text(encoding="utf-8")
    for name in ("interp.load_model", "interp.residuals.residuals", "interp.continuation_logprobs",
                 "interp.logits_under", "interp.residuals_under", "interp.Patch", "interp.LoadedModel"):
        assert f'id="{name}"' in interp_page, name
    probes_page = (site / "reference" / "probes" / "index.html").read_text(encoding="utf-8")
    for name in ("probes.LogisticProbe", "probes.MassMeanProbe", "probes.CCSProbe", "probes.sweep.sweep_probes"):
        assert f'id="{name}"' in probes_page, name
    causal = text_of(site / "reference" / "causal" / "index.html")
    assert "belief_patching" in causal and "Parameters" in causal and "min_shift" in causal
    assert "Among SITES" in causal  # the docstring's Sphinx role (:data:`SITES`) shown as code
    for page in (site / "reference").rglob("*.html"):
        assert not re.search(r":(func|class|data|meth|attr|mod):", text_of(page)), page


def test_a_missing_snippet_fails_the_build(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    (root / "README.md").write_text("# x\n", encoding="utf-8")  # its sections are gone
    for package in ("interp", "probes", "experiments"):
        (root / package).symlink_to(REPO / package)
    (root / "benchmarks").symlink_to(REPO / "benchmarks")
    proc = build(root, tmp_path / "site")
    assert proc.returncode != 0 and "intro" in proc.stderr
