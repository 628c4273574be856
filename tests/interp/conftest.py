"""Fixtures of the interp tests: tiny random-weight models saved once per session, one thread."""
from tests.interp.fixtures import one_thread, tiny_dirs  # noqa: F401  (fixtures for every test here)
