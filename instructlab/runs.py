"""Run folders: every notebook, training run and sweep writes into one folder under ``runs/``.

A run folder holds a ``manifest.json`` (what ran, with which parameters, package versions, git
commit, data fingerprint) next to the artefacts it produced, so any number can be traced back
to the run that made it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

__all__ = ["runs_root", "new_run_dir", "ensure_run_dir", "package_versions", "fingerprint", "write_json", "write_jsonl",
           "read_jsonl", "write_manifest", "read_manifest", "RunDirInUseError", "describe_run", "check_run_dir", "record_resume"]

RUNS_ROOT_ENV = "INSTRUCTLAB_RUNS"
TRACKED_PACKAGES = (
    "torch", "transformers", "trl", "peft", "datasets", "accelerate", "evaluate",
    "papermill", "tokenizers", "numpy", "instructlab-kit",
)


def runs_root() -> Path:
    """The folder that holds run folders: ``$INSTRUCTLAB_RUNS`` or ``runs/`` under the repo root
    (the current directory when the kit is not inside its repository)."""
    env = os.environ.get(RUNS_ROOT_ENV)
    if env:
        return Path(env)
    from .profiles import REPO_ROOT as repo

    return (repo / "runs") if (repo / "pyproject.toml").exists() else Path.cwd() / "runs"


def new_run_dir(kind: str, name: str | None = None, root: str | Path | None = None) -> Path:
    """Create and return a fresh run folder ``<root>/<UTC timestamp>-<kind>[-<name>]``.

    The folder name sorts by time; a numeric suffix keeps two runs started in the same second apart.
    """
    root = Path(root) if root else runs_root()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{kind}" + (f"-{name}" if name else "")
    path, i = root / base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            i += 1
            path = root / f"{base}-{i}"


def ensure_run_dir(run_dir: str | Path | None, kind: str, name: str | None = None) -> Path:
    """Notebook helper: use ``run_dir`` when given (creating it), else make a new one."""
    if run_dir:
        path = Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return new_run_dir(kind, name)


def package_versions(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that decide a result (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the kit's repository, with ``-dirty`` when it has uncommitted changes; None outside git."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint(records: Iterable[Any]) -> str:
    """A stable SHA-256 over records (any JSON-serialisable objects), in order.

    Two datasets get the same fingerprint exactly when they hold the same examples in the same order.
    """
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps(rec, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write one JSON object per line, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_jsonl(path: str | Path) -> list[Any]:
    """Read a JSONL file written by :func:`write_jsonl`."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of ``run_dir`` as a dict; {} when there is none or it is not valid JSON."""
    path = Path(run_dir) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        return {}


def write_manifest(run_dir: str | Path, **fields: Any) -> Path:
    """Write ``manifest.json`` into ``run_dir``: the given fields plus time, command line,
    package versions and git commit. Existing fields are updated, not lost."""
    path = Path(run_dir) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    manifest.update(fields)
    manifest.setdefault("created_utc", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    manifest["updated_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest.setdefault("argv", sys.argv)
    manifest.setdefault("packages", package_versions())
    manifest.setdefault("git_commit", git_commit())
    return write_json(path, manifest)


# ---------------------------------------------------------------------------------------------
# Reusing a run folder: refuse unless the user resumes or asks to overwrite

class RunDirInUseError(ValueError):
    """A run folder already holds a run, and neither resume nor overwrite was asked for."""


def describe_run(path: Path) -> str:
    """', started <time> by `<command>`' from a folder's manifest, or '' when it has none (for messages)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    argv = " ".join(str(a) for a in manifest.get("argv") or [])
    return f", started {manifest.get('created_utc', '?')} by `{argv}`" if argv else ""


def check_run_dir(run_dir: str | Path | None, *, overwrite: bool = False, resume: bool = False,
                  artefacts: Iterable[str] | None = None,
                  flags: str = "--resume (continue it) or --overwrite (replace it)") -> None:
    """Refuse to start a new run in a folder that already holds one; clear it when ``overwrite``.

    Args:
        run_dir: the folder (None or a missing or empty folder is always fine).
        overwrite: delete what the old run left (``artefacts``, or every entry, plus the manifest) first.
        resume: the caller continues the run in the folder; nothing is checked here.
        artefacts: names that mark a run (e.g. a training run's ``config.json``, ``checkpoints``);
            None: any entry does.
        flags: how the caller asks for resume / overwrite, for the message.
    Raises:
        RunDirInUseError: the folder holds a run and neither flag was given, or ``overwrite`` was given
            for a folder that is not a run folder (no ``manifest.json``), which is never deleted.
    """
    if not run_dir or resume:
        return
    path = Path(run_dir)
    if not path.is_dir():
        if path.exists():
            raise RunDirInUseError(f"run folder {path} is a file, not a folder: choose another run folder")
        return
    names = sorted(p.name for p in path.iterdir())
    found = names if artefacts is None else [n for n in names if n in set(artefacts)]
    if not found:
        return
    if not overwrite:
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        raise RunDirInUseError(f"run folder {path} already holds a run ({shown}{describe_run(path)}). "
                               f"Choose another run folder, or pass {flags}")
    if not (path / "manifest.json").exists() and not (path / "config.json").exists():
        raise RunDirInUseError(f"refusing to overwrite {path}: it is not a run folder (no manifest.json). "
                               "Choose an empty or new run folder")
    import shutil

    for name in sorted(set(found) | ({"manifest.json"} & set(names))):
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def record_resume(run_dir: str | Path, **fields: Any) -> Path:
    """Append one entry (time, command line, git commit, ``fields``) to the manifest's ``resumes`` list,
    so the manifest keeps the command that started the run and every command that continued it."""
    path = Path(run_dir) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    entry = {"utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
             "git_commit": git_commit(), **fields}
    return write_manifest(run_dir, resumes=[*manifest.get("resumes", []), entry])
