"""Shared test set-up: offline, run folders in a temporary place, caches kept between runs.

The converted model cache (``INSTRUCTLAB_CACHE``, default ``~/.cache/instructlab``) is reused on
purpose: converting the embedded GGUF models takes about a minute and happens once per machine.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path_factory, monkeypatch):
    """Every test writes its run folders into a temporary ``runs`` root, never into the repo."""
    monkeypatch.setenv("INSTRUCTLAB_RUNS", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path_factory.getbasetemp() / "hf_modules"))
