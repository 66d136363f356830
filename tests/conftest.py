"""Shared test set-up: offline, run folders in a temporary place, caches kept between runs.

The converted model cache (``INSTRUCTLAB_CACHE``, default ``~/.cache/instructlab``) is reused on
purpose: converting the embedded GGUF models takes about a minute and happens once per machine.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_ROOT_BEFORE = set(os.listdir(REPO))
INTENDED = {"test-artifacts"}  # tests/test_browser.py's screenshot (git ignores it)
SCRATCH = tempfile.TemporaryDirectory(prefix="instructlab-tests-")  # removed when the session's process exits


def scratch_dir(name: str) -> str:
    """A folder for trainer output a test does not read (``sft_config``'s ``output_dir``), outside the repo."""
    path = Path(SCRATCH.name) / name
    path.mkdir(exist_ok=True)
    return str(path)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a test left something new in the repository's top folder (an empty folder included,
    which ``git status`` does not show)."""
    left = sorted(n for n in set(os.listdir(REPO)) - _ROOT_BEFORE if not n.startswith(".") and n not in INTENDED)
    if left:
        print(f"\ntests left {', '.join(left)} in {REPO}: write into tmp_path or conftest.scratch_dir() instead")
        if session.exitstatus == pytest.ExitCode.OK:  # a failed or interrupted run keeps its own status
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path_factory, monkeypatch):
    """Every test writes its run folders into a temporary ``runs`` root, never into the repo."""
    monkeypatch.setenv("INSTRUCTLAB_RUNS", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path_factory.getbasetemp() / "hf_modules"))
