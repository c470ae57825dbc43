"""Shared pytest set-up: make tests/ importable (fixture writers) and keep caches out of the repository."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
