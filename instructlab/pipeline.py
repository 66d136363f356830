"""Run notebooks as pipeline steps: papermill with run folders, manifests and early validation.

The kit's notebooks are jupytext text notebooks (``notebooks/NN_name.py``, ``py:percent`` cells):
the text file is the source, JupyterLab opens it as a notebook, and this module converts it in
memory for papermill. Every notebook has one cell tagged ``parameters`` holding literals. This
module reads that cell (with ``ast``), checks the parameters a caller passes *before* a kernel
starts (unknown names and wrong types fail at once, listing the valid parameters), executes the
notebook with the kernel ``python3`` of the running interpreter, and records what ran in the run
folder's ``manifest.json``. A notebook that fails leaves its executed copy, error included, in the
run folder, and :class:`NotebookFailedError` names it.

The ``smoke`` and ``demo`` paths chain the numbered notebooks 00..05, passing run folders between
them (02's run folder becomes 03's ``adapter``, 04's results folder becomes 05's input).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import profiles, runs

__all__ = ["ParameterError", "NotebookFailedError", "Parameter", "StepResult", "CHAIN_WIRING", "resolve_notebook",
           "load_notebook", "notebook_parameters", "describe_parameters", "validate_parameters", "absolutize_paths",
           "run_notebook", "run_succeeded", "chain_notebooks", "run_chain", "publish_chain"]

REPO_ROOT = profiles.REPO_ROOT   # repository paths are computed in one place
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PROFILES = profiles.NAMES
# The one kernel name: the venv's own ipykernel spec (no registration step), also the notebooks' kernelspec
# and what `make lab` offers; jupyter_client runs it with this interpreter.
KERNEL_NAME = "python3"


class ParameterError(ValueError):
    """Parameters that the notebook does not accept (unknown name or wrong type)."""


class NotebookFailedError(RuntimeError):
    """A notebook raised while it ran. ``executed`` is the executed copy holding the error."""

    def __init__(self, notebook: Path, executed: Path, run_dir: Path, reason: str):
        self.notebook, self.executed, self.run_dir, self.reason = notebook, executed, run_dir, reason
        super().__init__(f"notebook {notebook.name} failed: {reason}\n"
                         f"  executed copy with the error: {executed}\n"
                         f"  open it (jupyter lab {executed}) to see the failing cell and its traceback")


@dataclass(frozen=True)
class Parameter:
    """One entry of a notebook's ``parameters`` cell."""

    name: str
    default: Any          # the literal's value (source text when it is not a literal)
    type_name: str        # "str", "int", "float", "bool", "list", "dict", "tuple" or "any" (default None)
    help: str = ""

    def describe(self) -> str:
        text = f"{self.name} = {self.default!r}  ({self.type_name})"
        return text + (f"  # {self.help}" if self.help else "")


NOTEBOOK_SUFFIXES = (".py", ".ipynb")


def resolve_notebook(notebook: str | Path) -> Path:
    """Find a notebook by path, file name or number prefix ("02", "02_lora_training").

    The kit's lessons are jupytext ``py:percent`` files (``notebooks/NN_name.py``); any ``.ipynb``
    path works too.

    Args:
        notebook: a path, a file name in ``notebooks/`` or a number prefix.
    Returns:
        The notebook's absolute path.
    Raises:
        FileNotFoundError: naming the notebooks that exist.
    """
    path = Path(notebook)
    if path.exists():
        return path.resolve()
    if (NOTEBOOKS_DIR / path.name).exists():
        return NOTEBOOKS_DIR / path.name
    if path.suffix not in NOTEBOOK_SUFFIXES:
        matches = [p for p in chain_notebooks() if p.name.startswith(path.name)]
        if len(matches) == 1:
            return matches[0]
    known = ", ".join(p.name for p in chain_notebooks(must_exist=False)) or "(none)"
    raise FileNotFoundError(f"no notebook {str(notebook)!r}; notebooks in {NOTEBOOKS_DIR}: {known}")


def load_notebook(notebook: str | Path) -> Any:
    """The notebook as an ``nbformat`` node: a jupytext text notebook (``.py``) or an ``.ipynb`` file.

    Args:
        notebook: a path, file name or number prefix (see :func:`resolve_notebook`).
    Returns:
        ``nbformat.NotebookNode`` (version 4).
    Raises:
        FileNotFoundError: no such notebook.
    """
    path = resolve_notebook(notebook)
    if path.suffix == ".py":
        import jupytext

        nb = jupytext.read(str(path), fmt="py:percent")
        # a text notebook without a header still runs as Python (papermill needs the language)
        nb.metadata.setdefault("kernelspec", {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"})
        nb.metadata.setdefault("language_info", {"name": "python"})
        return nb
    import nbformat

    return nbformat.read(str(path), as_version=4)


def notebook_parameters(notebook: str | Path) -> dict[str, Parameter]:
    """The parameters a notebook declares in its cell tagged ``parameters``, with defaults and types.

    The cell is parsed with Python's ``ast``: every ``name = literal`` line is a parameter, its type
    comes from the literal (``100`` -> int, ``"quick"`` -> str, ``None`` -> any) and its help from
    the trailing comment.

    Args:
        notebook: a path, file name or number prefix (see :func:`resolve_notebook`).
    Returns:
        {name: Parameter} in the cell's order; empty when the notebook has no parameters cell.
    """
    nb = load_notebook(notebook)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    lines, out = source.splitlines(), {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if not isinstance(target, ast.Name) or getattr(node, "value", None) is None:
            continue
        try:
            default = ast.literal_eval(node.value)
            type_name = "any" if default is None else type(default).__name__
        except ValueError:
            default, type_name = ast.get_source_segment(source, node.value), "any"
        tail = lines[node.end_lineno - 1][node.end_col_offset:]
        out[target.id] = Parameter(target.id, default, type_name, tail.split("#", 1)[1].strip() if "#" in tail else "")
    return out


def describe_parameters(params: Mapping[str, Parameter]) -> str:
    """A readable list of parameters, one per line.

    Args:
        params: what :func:`notebook_parameters` returns.
    Returns:
        ``"  name = default  (type)  # help"`` lines.
    """
    return "\n".join("  " + p.describe() for p in params.values()) or "  (no parameters cell)"


_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def _coerce(param: Parameter, value: Any, from_cli: bool) -> Any:
    """Convert/check one value against the parameter's type; raise ValueError when it does not fit."""
    t = param.type_name
    if t == "any" or value is None:
        if from_cli and isinstance(value, str):
            try:
                return ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value
        return value
    if isinstance(value, Path):
        value = str(value)
    if from_cli and isinstance(value, str) and t != "str":
        low = value.strip().lower()
        if t == "bool":
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(f"expected true/false, got {value!r}")
        value = ast.literal_eval(value) if t not in ("int", "float") else value
        if t == "int":
            return int(value)
        if t == "float":
            return float(value)
    if t == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if t == "list" and isinstance(value, tuple):
        return list(value)
    expected = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
                "tuple": (tuple, list)}.get(t)
    if expected is None:
        return value
    if not isinstance(value, expected) or (t == "int" and isinstance(value, bool)):
        raise ValueError(f"expected {t}, got {type(value).__name__} {value!r}")
    return value


def validate_parameters(notebook: str | Path, parameters: Mapping[str, Any] | None,
                        from_cli: bool = False) -> dict[str, Any]:
    """Check ``parameters`` against the notebook's parameters cell and return them converted.

    Args:
        notebook: a path, file name or number prefix (see :func:`resolve_notebook`).
        parameters: {name: value}.
        from_cli: the values are command-line strings, converted to the declared type
            (``"100"`` -> 100 for an int parameter, ``"true"`` -> True, ``"[1, 2]"`` -> a list).
    Returns:
        The parameters, converted.
    Raises:
        ParameterError: unknown names, values of the wrong type or an unknown ``profile``; the
            message lists every valid parameter with its default and type.
    """
    path = resolve_notebook(notebook)
    declared = notebook_parameters(path)
    parameters = dict(parameters or {})
    problems = [f"unknown parameter {name!r}" for name in parameters if name not in declared]
    out = {}
    for name, value in parameters.items():
        if name not in declared:
            continue
        try:
            out[name] = _coerce(declared[name], value, from_cli)
        except (ValueError, SyntaxError, TypeError) as exc:
            problems.append(f"parameter {name!r}: {exc}")
    if "profile" in out and out["profile"] not in PROFILES:
        problems.append(f"parameter 'profile': expected one of {PROFILES}, got {out['profile']!r}")
    problems += api_key_env_problems(out)
    if problems:
        raise ParameterError(f"{path.name}: " + "; ".join(problems) + "\nvalid parameters of "
                             f"{path.name}:\n{describe_parameters(declared)}")
    return out


def api_key_env_problems(parameters: Mapping[str, Any]) -> list[str]:
    """One problem per ``*_api_key_env`` parameter whose value is not an environment variable's name.

    Checked before a kernel starts, because the notebook, the manifest and the build's files would all
    record the value, and such a value is usually the key itself. The value is never shown.
    """
    from .llm import check_env_var_name

    problems = []
    for name, value in parameters.items():
        if name.endswith("_api_key_env"):
            try:
                check_env_var_name(value, name)
            except ValueError as exc:
                problems.append(f"parameter {name!r}: {exc}")
    return problems


def absolutize_paths(parameters: Mapping[str, Any], base: Path | None = None) -> dict[str, Any]:
    """Turn string values that name an existing relative path into absolute paths (notebooks run with
    their own folder as working directory).

    Args:
        parameters: {name: value}.
        base: the folder relative paths start from (default: the current directory).
    Returns:
        The parameters with such paths (and ``run_dir``) made absolute.
    """
    base = Path(base or Path.cwd())
    out = {}
    for name, value in parameters.items():
        if isinstance(value, str) and value and not os.path.isabs(value) and (base / value).exists():
            value = str((base / value).resolve())
        elif name == "run_dir" and isinstance(value, str) and value and not os.path.isabs(value):
            value = str((base / value).resolve())
        out[name] = value
    return out


def _failure_reason(exc: BaseException) -> str:
    """One line for a papermill error: exception name, value and the failing cell number."""
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    cell = getattr(exc, "exec_count", None)
    where = f" (cell [{cell}])" if cell is not None else ""
    return f"{ename}: {str(evalue).strip().splitlines()[-1] if str(evalue).strip() else ''}{where}"


def run_notebook(path: str | Path, parameters: Mapping[str, Any] | None = None,
                 run_dir: str | Path | None = None, *, log_output: bool = False,
                 validate: bool = True, from_cli: bool = False,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Execute a notebook with papermill in its run folder and return the executed copy's path.

    The kernel is ``python3`` of this venv, the working directory the notebook's folder. A jupytext
    text notebook is converted in memory; the executed copy is always an ``.ipynb``.

    Args:
        path: a notebook (path, name or number prefix).
        parameters: notebook parameters, validated first unless ``validate=False``.
        run_dir: the run folder (created; default ``runs/<stamp>-<notebook stem>``). When the notebook
            declares ``run_dir`` it receives this folder.
        log_output: stream what the cells print to the terminal, each line prefixed by the notebook
            and cell (``[02 cell 7/15 Train] ...``), so a headless run shows training steps and loss.
        validate: check ``parameters`` against the parameters cell first.
        from_cli: the values are command-line strings (see :func:`validate_parameters`).
        progress: called with one line when the notebook starts.
    Returns:
        ``<run_dir>/<notebook stem>.ipynb`` (the executed copy). ``manifest.json`` gets ``notebook``,
        ``notebook_parameters``, ``status`` (running/succeeded/failed/interrupted), ``duration_s``, ``error``.
    Raises:
        ParameterError: before anything runs.
        NotebookFailedError: when a cell raises.
        KeyboardInterrupt: on Ctrl-C, after the manifest records ``status="interrupted"``.
    """
    import papermill as pm

    nb = resolve_notebook(path)
    params = validate_parameters(nb, parameters, from_cli=from_cli) if validate else dict(parameters or {})
    run_dir = Path(run_dir) if run_dir else runs.new_run_dir(nb.stem)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = run_dir.resolve()
    if "run_dir" in notebook_parameters(nb) and not params.get("run_dir"):
        params["run_dir"] = str(run_dir)
    executed = run_dir / f"{nb.stem}.ipynb"
    # `notebook_parameters`, not `parameters`: the notebook may record its own resolved settings.
    runs.write_manifest(run_dir, notebook=str(nb), notebook_parameters=params, status="running",
                        executed_notebook=str(executed))
    (progress or (lambda s: None))(f"running {nb.name} -> {run_dir}")
    start = time.perf_counter()
    live = _LiveOutput(nb.stem) if log_output else None
    try:
        # Headless execution stores static views, even when launched from a live JupyterLab kernel
        # (whose JPY_SESSION_NAME the child kernel would otherwise inherit).
        with _papermill_quiet(True), _temporary_env(INSTRUCTLAB_HEADLESS="1"):
            pm.execute_notebook(load_notebook(nb), str(executed), parameters=params, kernel_name=KERNEL_NAME,
                                progress_bar=False, cwd=str(nb.parent),
                                **(live.papermill_kwargs() if live else {}))
    except KeyboardInterrupt:
        runs.write_manifest(run_dir, status="interrupted", error="interrupted (Ctrl-C)",
                            duration_s=round(time.perf_counter() - start, 2))
        raise
    except Exception as exc:  # papermill wraps cell errors; kernel deaths raise other types
        if getattr(exc, "ename", "") == "KeyboardInterrupt":   # Ctrl-C reached the kernel first
            runs.write_manifest(run_dir, status="interrupted", error="interrupted (Ctrl-C)",
                                duration_s=round(time.perf_counter() - start, 2))
            raise KeyboardInterrupt(str(executed)) from exc
        reason = _failure_reason(exc)
        runs.write_manifest(run_dir, status="failed", error=reason,
                            duration_s=round(time.perf_counter() - start, 2))
        raise NotebookFailedError(nb, executed, run_dir, reason) from exc
    runs.write_manifest(run_dir, status="succeeded", error=None,
                        duration_s=round(time.perf_counter() - start, 2))
    return executed


class _LiveOutput:
    """Live terminal view of a headless notebook: one line per code cell as it starts
    (``[02 cell 7/15 Train]``) and every line the cells print, indented under it."""

    ENGINE = "instructlab-live"

    def __init__(self, stem: str, write: Callable[[str], None] | None = None):
        import sys

        self.tag = stem.split("_", 1)[0] if stem[:2].isdigit() else stem
        self.write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
        self._pending = ""

    def papermill_kwargs(self) -> dict[str, Any]:
        _register_live_engine()
        return {"engine_name": self.ENGINE, "live": self}

    def cell_started(self, nb: Any, index: int) -> None:
        cells = nb.cells
        if cells[index].cell_type != "code":
            return
        code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
        heading = next((_heading(cells[i].source) for i in range(index, -1, -1)
                        if cells[i].cell_type == "markdown" and _heading(cells[i].source)), "")
        self.flush()
        self.write(f"[{self.tag} cell {code.index(index) + 1}/{len(code)}{' ' + heading if heading else ''}]\n")

    # file-like: papermill writes the cells' stdout/stderr here
    def write_text(self, text: str) -> None:
        text = self._pending + text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._pending = text.split("\n")
        for line in lines:
            if line.strip():
                self.write(f"    {line}\n")

    def flush(self) -> None:
        if self._pending.strip():
            self.write(f"    {self._pending}\n")
        self._pending = ""


def _heading(markdown: str) -> str:
    first = next((line for line in markdown.splitlines() if line.startswith("#")), "")
    return first.lstrip("#").strip()[:60]


class _FileAdapter:
    """What papermill's ``stdout_file`` needs (``write``, ``flush``), forwarding to :class:`_LiveOutput`."""

    def __init__(self, live: _LiveOutput):
        self.live = live

    def write(self, text: str) -> None:
        self.live.write_text(text)

    def flush(self) -> None:
        pass


def _register_live_engine() -> None:
    """Register a papermill engine that tells :class:`_LiveOutput` when each cell starts."""
    from papermill.engines import NBClientEngine, papermill_engines

    if _LiveOutput.ENGINE in papermill_engines._engines:
        return

    class LiveEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, live=None, stdout_file=None, stderr_file=None,
                                     **kwargs):
            started = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                if live is not None and cell_index is not None:
                    live.cell_started(nb_man.nb, cell_index)
                return started(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
            adapter = _FileAdapter(live) if live is not None else None
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, stdout_file=adapter,
                                                        stderr_file=adapter, **kwargs)
            finally:
                if live is not None:
                    live.flush()

    papermill_engines.register(_LiveOutput.ENGINE, LiveEngine)


@contextlib.contextmanager
def _temporary_env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _papermill_quiet(quiet: bool):
    """Silence papermill's parameter-parsing warnings when the parameters were validated here
    (its line parser misreports some valid cells; see :func:`notebook_parameters`)."""
    import logging

    logger = logging.getLogger("papermill")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_succeeded(run_dir: str | Path) -> bool:
    """Whether ``run_dir/manifest.json`` records a finished, successful notebook run.

    Args:
        run_dir: a run folder.
    Returns:
        True when its manifest says ``status: succeeded``.
    """
    return runs.read_manifest(run_dir).get("status") == "succeeded"


# ---------------------------------------------------------------------------------------------
# The whole path: notebooks 00..05 in one run folder


# Parameters wired between notebooks: {notebook prefix: {parameter: prefix of the notebook whose
# run folder it receives}}. A parameter is passed only when the notebook declares it.
CHAIN_WIRING: dict[str, dict[str, str]] = {
    "03": {"adapter": "02"},
    "05": {"ablation_dir": "04", "eval_dir": "03", "train_dir": "02"},
}


@dataclass
class StepResult:
    """One notebook of a chain: where it ran, how long, whether it succeeded."""

    notebook: str
    run_dir: Path
    duration_s: float
    status: str
    error: str | None = None


def chain_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR, must_exist: bool = True) -> list[Path]:
    """The numbered lessons ``NN_name.py`` (jupytext text notebooks) in order.

    Args:
        notebooks_dir: where to look (default ``notebooks/``).
        must_exist: raise when there is none.
    Returns:
        The paths, sorted by number.
    Raises:
        FileNotFoundError: when none exist and ``must_exist``.
    """
    found = sorted(notebooks_dir.glob("[0-9][0-9]_*.py"))
    if not found and must_exist:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.py) in {notebooks_dir}")
    return found


def run_chain(profile: str, out_dir: str | Path | None = None, *, log_output: bool = False,
              notebooks: Sequence[Path] | None = None, parameters: Mapping[str, Mapping[str, Any]] | None = None,
              name: str = "", progress: Callable[[str], None] = print) -> list[StepResult]:
    """Run the numbered notebooks in order with ``profile``, each in ``<out_dir>/<notebook stem>``,
    passing run folders along (see CHAIN_WIRING). Stops at the first failing notebook.

    Args:
        profile: ``smoke`` / ``quick`` / ``full`` (see ``profiles``).
        out_dir: the chain's folder (default ``runs/<stamp>-demo-<profile>``, ``-smoke`` for smoke).
        log_output: stream each notebook's cells and printed lines (see :func:`run_notebook`).
        notebooks: the notebooks to chain (default :func:`chain_notebooks`).
        parameters: {notebook number prefix ("04"): {parameter: value}}, over the profile and the wiring.
        name: the chain's name in ``chain.json`` (e.g. ``"reference"``); a named chain is published under
            ``docs/results/<name>/`` with its executed notebooks beside their results (:func:`publish_chain`).
        progress: called with one line per notebook.
    Returns:
        The StepResults (the failing one last, ``status="failed"``); ``<out_dir>/chain.json`` and a
        manifest record them.
    Raises:
        ParameterError: an unknown profile.
        KeyboardInterrupt: on Ctrl-C, after ``chain.json`` records the interrupted notebook.
    """
    if profile not in PROFILES:
        raise ParameterError(f"profile must be one of {PROFILES}, got {profile!r}")
    out = Path(out_dir) if out_dir else runs.new_run_dir("smoke" if profile == "smoke" else "demo", profile)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    notebooks = list(notebooks) if notebooks is not None else chain_notebooks()
    runs.write_manifest(out, kind="chain", profile=profile, notebooks=[p.name for p in notebooks], status="running")
    dirs: dict[str, Path] = {}
    steps: list[StepResult] = []
    start = time.perf_counter()
    for nb in notebooks:
        prefix, declared = nb.name[:2], notebook_parameters(nb)
        params: dict[str, Any] = {"profile": profile} if "profile" in declared else {}
        for key, source in CHAIN_WIRING.get(prefix, {}).items():
            if key in declared and source in dirs:
                params[key] = str(dirs[source])
        params.update((parameters or {}).get(prefix, {}))
        dirs[prefix] = out / nb.stem
        t0 = time.perf_counter()
        progress(f"[{len(steps) + 1}/{len(notebooks)}] {nb.name} ({profile}) -> {dirs[prefix]}")
        try:
            run_notebook(nb, params, dirs[prefix], log_output=log_output)
            steps.append(StepResult(nb.name, dirs[prefix], round(time.perf_counter() - t0, 1), "succeeded"))
            progress(f"    done in {steps[-1].duration_s:.1f} s")
        except NotebookFailedError as exc:
            steps.append(StepResult(nb.name, dirs[prefix], round(time.perf_counter() - t0, 1), "failed", str(exc)))
            break
        except KeyboardInterrupt:
            steps.append(StepResult(nb.name, dirs[prefix], round(time.perf_counter() - t0, 1), "interrupted"))
            _write_chain(out, profile, steps, round(time.perf_counter() - start, 1), "interrupted", name)
            raise
    total = round(time.perf_counter() - start, 1)
    status = "succeeded" if all(s.status == "succeeded" for s in steps) else "failed"
    _write_chain(out, profile, steps, total, status, name)
    return steps


def _write_chain(out: Path, profile: str, steps: Sequence[StepResult], total: float, status: str,
                 name: str = "") -> None:
    runs.write_json(out / "chain.json", {"profile": profile, **({"name": name} if name else {}), "total_s": total,
                                         "status": status,
                                         "steps": [{**s.__dict__, "run_dir": str(s.run_dir)} for s in steps]})
    runs.write_manifest(out, status=status, duration_s=total)


# What a published chain keeps of each notebook's folder: its small result files (top level only: no
# adapters, checkpoints or sweep run folders), so that a reader of the repository can trace every number.
PUBLISH_SUFFIXES = (".json", ".jsonl", ".csv", ".md", ".png", ".svg")
PUBLISH_MAX_BYTES = 2_000_000
PUBLISH_SUBDIRS = ("sweep",)   # notebook 04's sweep folder: its results, summary and comparisons tables (not its runs)


def small_results(folder: Path) -> list[Path]:
    """The files of ``folder`` (top level) that a publish copies: small results, not the manifest."""
    return [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix in PUBLISH_SUFFIXES
            and f.name != "manifest.json" and f.stat().st_size <= PUBLISH_MAX_BYTES]


def publish_chain(chain_dir: str | Path, docs_dir: str | Path | None = None) -> dict[str, list[Path]]:
    """Copy a finished chain (``make demo``) into the repository's docs: the executed lessons and their results.

    A named chain (``chain.json``'s ``name``, e.g. ``reference``: notebooks 04 and 05 on the reference sweep)
    goes to ``<docs>/results/<name>/`` instead, with each executed notebook beside its results (the lessons in
    ``docs/lessons`` stay the demo's); a sweep folder outside the notebook's run folder is found through the
    notebook's manifest (``sweep_dir``) and published with its ``manifest.json`` (the sweep's sessions).

    Every succeeded notebook's executed copy goes to ``<docs>/lessons/<stem>.ipynb`` (with its outputs), and
    the small result files at the top of its folder (``PUBLISH_SUFFIXES``, at most ``PUBLISH_MAX_BYTES``
    each; not the manifest) to ``<docs>/results/<profile>/<stem>/``, next to the chain's ``chain.json``; so are
    those at the top of a ``sweep/`` subfolder (notebook 04's results, summary and paired comparisons).
    Files that an earlier publish left there are replaced, so one folder always holds one run.

    Args:
        chain_dir: the folder ``python -m instructlab demo`` wrote (it holds ``chain.json``).
        docs_dir: default ``docs/`` of the repository.
    Returns:
        ``{"lessons": [...], "results": [...]}``: the files written.
    Raises:
        FileNotFoundError: no ``chain.json`` in ``chain_dir``.
        ValueError: the chain did not succeed (a partial chain is never published as if it were whole).
    """
    import shutil

    chain_dir = Path(chain_dir)
    chain_file = chain_dir / "chain.json"
    if not chain_file.exists():
        raise FileNotFoundError(f"{chain_file}: not found; publish the folder that `python -m instructlab demo` "
                                "wrote (it holds chain.json)")
    chain = json.loads(chain_file.read_text(encoding="utf-8"))
    if chain.get("status") != "succeeded":
        failed = [s["notebook"] for s in chain.get("steps", []) if s.get("status") != "succeeded"]
        raise ValueError(f"{chain_file}: status {chain.get('status')!r} (not succeeded: {failed or 'steps missing'});"
                         " only a whole chain is published")
    docs = Path(docs_dir) if docs_dir else REPO_ROOT / "docs"
    named = bool(chain.get("name"))          # e.g. the reference sweep: its notebooks stay beside their results
    if named and chain["name"] in PROFILES:
        raise ValueError(f"{chain_file}: a named chain cannot be called {chain['name']!r}: docs/results/"
                         f"{chain['name']}/ holds the {chain['name']} profile's demo; rename it")
    results_root = docs / "results" / (chain.get("name") or chain["profile"])
    written: dict[str, list[Path]] = {"lessons": [], "results": []}
    if not named:
        (docs / "lessons").mkdir(parents=True, exist_ok=True)
    results_root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(chain_file, results_root / "chain.json")
    written["results"].append(results_root / "chain.json")
    published: set[Path] = set()
    for step in chain["steps"]:
        stem, run_dir = Path(step["notebook"]).stem, Path(step["run_dir"])
        executed = run_dir / f"{stem}.ipynb"
        target = results_root / stem
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        if executed.exists():
            where = target if named else docs / "lessons"
            written["results" if named else "lessons"].append(Path(shutil.copy2(executed, where / executed.name)))
        for f in small_results(run_dir):
            written["results"].append(Path(shutil.copy2(f, target / f.name)))
        manifest = runs.read_manifest(run_dir)
        for sub in PUBLISH_SUBDIRS:
            # the sweep inside the run folder, or the one its manifest names (a sweep folder of its own), once:
            # notebook 05 names the sweep that 04 ran
            source = run_dir / sub if (run_dir / sub).is_dir() else Path(manifest.get(f"{sub}_dir") or run_dir / sub)
            if source.is_dir() and source.resolve() not in published:
                published.add(source.resolve())
                (target / sub).mkdir()
                for f in small_results(source):
                    written["results"].append(Path(shutil.copy2(f, target / sub / f.name)))
                if (source / "manifest.json").exists():   # the sweep's sessions: durations and the machine
                    written["results"].append(Path(shutil.copy2(source / "manifest.json", target / sub / "manifest.json")))
    return written
