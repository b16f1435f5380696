"""Shared test fixtures: offline Hub settings, the optional assets folder, a temp store."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from bench.assets import assets_dir  # noqa: E402


@pytest.fixture
def assets():
    """The ../shared/assets folder (BENCH_ASSETS); skips the test when it is absent."""
    path = assets_dir()
    if path is None:
        pytest.skip("offline assets not found: set BENCH_ASSETS to the shared/assets folder")
    return path


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "bench.duckdb"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
