"""Shared fixtures of the causal analyses' tests."""
from __future__ import annotations

import shutil

import pytest


@pytest.fixture()
def run(tiny_run, tmp_path):
    """A copy of the session's tiny run, for a test that writes into it."""
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    return out

