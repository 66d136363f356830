"""Command line: ``python -m instructlab <command>``.

  run <notebook> -p name value ...   execute one notebook with papermill in a new run folder
  params <notebook>                  list a notebook's parameters (defaults and types)
  sweep <config.yaml> [--workers N]  run or resume an ablation grid (train_run then eval_run per run);
        [--engine submitit --cluster slurm --partition P]   one Slurm job per run (a job array)
  smoke                              every notebook 00..05 on tiny-random (profile smoke)
  demo --profile quick [--publish]   the whole path 00..05 on the embedded models
  publish <chain folder>             copy a finished demo's executed lessons and results into docs/

Parameters are checked before any kernel starts: an unknown name or a value of the wrong type
stops the command at once and lists the valid parameters. While a notebook runs, the terminal
shows which cell runs and what it prints (training steps with loss and ETA, generation); --quiet
turns that off. A notebook that fails leaves its executed copy (with the error) in its run folder;
the command exits 1 and names it. Ctrl-C stops cleanly (exit 130) and says how to resume.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_FAILED, EXIT_USAGE = 1, 2
# `sweep` flags that set the config's `submitit:` settings: (flag, settings key, type, help).
SUBMITIT_FLAGS = (
    ("--cluster", "cluster", str, "submitit cluster: local (processes here), slurm (a job array), "
                                  "debug (in this process)"),
    ("--partition", "slurm_partition", str, "Slurm partition"),
    ("--array-parallelism", "array_parallelism", int, "jobs at once (default: --workers on the local cluster)"),
    ("--timeout-min", "timeout_min", int, "time limit of one job, in minutes (default 1440)"),
    ("--cpus-per-task", "cpus_per_task", int, "CPU cores per job"),
    ("--gpus-per-node", "gpus_per_node", int, "GPUs per job on Slurm"),
    ("--job-folder", "folder", str, "submitit's job folder, for the jobs' logs (default <sweep>/submitit/%%j)"),
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m instructlab", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one notebook with parameters in a new run folder")
    run.add_argument("notebook", help="path, file name or number prefix (e.g. 02)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="notebook parameter; the value is converted to the declared type")
    run.add_argument("--run-dir", help="run folder (default: runs/<stamp>-<notebook>)")
    run.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir")
    run.add_argument("--quiet", action="store_true", help="do not stream the cells and their output")
    run.add_argument("--log-output", action="store_true", help=argparse.SUPPRESS)   # the default now
    params = sub.add_parser("params", help="list a notebook's parameters")
    params.add_argument("notebook")
    sweep = sub.add_parser("sweep", help="run or resume an ablation grid from a YAML config")
    sweep.add_argument("config", help="e.g. configs/sweep_quick.yaml")
    sweep.add_argument("--workers", type=int, default=None,
                       help="runs at once (at most one per GPU; on CPU they split the cores; default: the config's)")
    sweep.add_argument("--out", help="sweep folder (default runs/sweep-<name>; the same folder resumes)")
    sweep.add_argument("--fresh", action="store_true", help="start a new, time-stamped sweep folder")
    engine = sweep.add_argument_group("job engine", "where the runs execute (override the config's `engine` and "
                                      "`submitit:` settings); each run is one job writing its own run folder")
    engine.add_argument("--engine", choices=("local", "submitit"), default=None,
                        help="local: the process pool on this machine (the default); submitit: one submitit job per "
                             "run (a Slurm job array, or processes on this machine)")
    for flag, key, kind, text in SUBMITIT_FLAGS:
        engine.add_argument(flag, dest=key, type=kind, default=None,
                            metavar=key.upper().removeprefix("SLURM_"), help=text,
                            choices=("local", "slurm", "debug") if key == "cluster" else None)
    for name, default in (("smoke", "smoke"), ("demo", "quick")):
        c = sub.add_parser(name, help=f"run notebooks 00..05 in profile {default!r}")
        c.add_argument("--profile", default=default, choices=("smoke", "quick", "full"))
        c.add_argument("--out", help="folder for the run folders (default runs/<stamp>-<command>)")
        c.add_argument("--quiet", action="store_true", help="one line per notebook, not its cells and output")
        c.add_argument("--log-output", action="store_true", help=argparse.SUPPRESS)   # the default now
        c.add_argument("--publish", action="store_true",
                       help="when every notebook succeeded, copy the executed lessons and their results into docs/ "
                            "(docs/lessons, docs/results/<profile>)")
    ref = sub.add_parser("reference", help="the reference sweep and its report: notebooks 04 and 05 on "
                                           "configs/sweep_reference.yaml (resumes its finished runs)")
    ref.add_argument("--config", default="configs/sweep_reference.yaml", help="the sweep (default: %(default)s)")
    ref.add_argument("--sweep-dir", help="sweep folder (default runs/sweep-<name>; the same folder resumes)")
    ref.add_argument("--out", help="folder for the two notebooks' run folders (default runs/<stamp>-<name>)")
    ref.add_argument("--quiet", action="store_true", help="one line per notebook, not its cells and output")
    ref.add_argument("--publish", action="store_true",
                     help="when both notebooks succeeded, copy their results, the sweep's tables and the executed "
                          "notebooks into docs/results/<name>/")
    pub = sub.add_parser("publish", help="copy a finished demo chain's executed lessons and results into docs/")
    pub.add_argument("chain_dir", help="the folder `demo` wrote (holds chain.json)")
    pub.add_argument("--docs", default=None, help="default: the repository's docs/")
    return p


def cmd_run(args: argparse.Namespace) -> int:
    from . import pipeline, runs

    params = dict(args.parameter)
    if len(params) != len(args.parameter):
        print("error: a parameter was given twice", file=sys.stderr)
        return EXIT_USAGE
    params = pipeline.validate_parameters(args.notebook, params, from_cli=True)
    params = pipeline.absolutize_paths(params)
    _check_run_dir(args.run_dir or params.get("run_dir"), args.overwrite)
    start = time.perf_counter()
    run_dir = Path(args.run_dir) if args.run_dir else runs.new_run_dir(pipeline.resolve_notebook(args.notebook).stem)
    again = "the command again with --overwrite" if args.run_dir else "the command again"
    _INTERRUPTED_HINT[0] = (f"stopped: {run_dir} holds what ran so far (manifest status 'interrupted'); "
                            f"run {again} to start over")
    executed = pipeline.run_notebook(args.notebook, params, run_dir, log_output=not args.quiet, progress=print)
    print(f"done in {time.perf_counter() - start:.1f} s; executed notebook: {executed}")
    return 0


def _check_run_dir(run_dir: str | None, overwrite: bool) -> None:
    """A non-empty run folder is refused (ParameterError) unless --overwrite, which clears it first."""
    from . import pipeline, runs

    try:
        runs.check_run_dir(run_dir, overwrite=overwrite, flags="--overwrite (replace it)")
    except runs.RunDirInUseError as exc:
        raise pipeline.ParameterError(str(exc)) from None


_INTERRUPTED_HINT = ["stopped"]


def cmd_params(args: argparse.Namespace) -> int:
    from . import pipeline

    nb = pipeline.resolve_notebook(args.notebook)
    print(f"parameters of {nb.name}:\n{pipeline.describe_parameters(pipeline.notebook_parameters(nb))}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from . import ablation, runs

    config = ablation.load_sweep_config(args.config)
    given = {key: getattr(args, key) for _, key, _, _ in SUBMITIT_FLAGS if getattr(args, key) is not None}
    if args.engine:
        config.engine = args.engine
    if given:
        if config.engine != "submitit":
            flags = [flag for flag, key, _, _ in SUBMITIT_FLAGS if key in given]
            raise ablation.SweepConfigError(f"{' '.join(flags)} set the submitit engine, but {args.config} runs "
                                            f"with engine {config.engine!r}: add --engine submitit")
        config.submitit = {**config.submitit, **given}
    ablation.check_config(config, where=f"{args.config} with the command line's engine flags")
    out = Path(args.out) if args.out else (runs.new_run_dir("sweep", config.name) if args.fresh else None)
    out = out or ablation.default_sweep_dir(config)
    again = "".join(f" {flag} {getattr(args, key)}" for flag, key, _, _ in SUBMITIT_FLAGS if key in given)
    again = (f" --workers {args.workers}" if args.workers else "") + (f" --engine {args.engine}" if args.engine
                                                                      else "") + again
    _INTERRUPTED_HINT[0] = (f"stopped: finished runs are kept in {out}; resume with "
                            f"`python -m instructlab sweep {args.config} --out {out}{again}` "
                            "(finished run folders are skipped)")
    result = ablation.run_sweep(config, out, workers=args.workers)
    print(f"sweep finished in {result.duration_s:.0f} s: {len(result.rows)} runs, {len(result.failed)} failed")
    for key, path in result.files.items():
        print(f"  {key}: {path}")
    for row in result.failed:
        print(f"  FAILED {row['run_id']}: {row.get('error')}\n    run folder: {row['run_dir']}", file=sys.stderr)
    return EXIT_FAILED if result.failed else 0


def cmd_chain(args: argparse.Namespace) -> int:
    from . import pipeline, runs

    start = time.perf_counter()
    out = Path(args.out) if args.out else runs.new_run_dir(args.command, args.profile)
    _INTERRUPTED_HINT[0] = (f"stopped: the finished notebooks are in {out} (chain.json); run "
                            f"`python -m instructlab {args.command} --profile {args.profile}` again to start over "
                            "(a sweep inside it resumes from its finished runs)")
    steps = pipeline.run_chain(args.profile, out, log_output=not args.quiet)
    return _chain_done(f"{args.command} ({args.profile})", out, steps, time.perf_counter() - start, args.publish)


def cmd_reference(args: argparse.Namespace) -> int:
    from . import ablation, pipeline, runs

    config = ablation.load_sweep_config(args.config)
    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else ablation.default_sweep_dir(config)
    start = time.perf_counter()
    out = Path(args.out) if args.out else runs.new_run_dir(config.name, config.profile)
    _INTERRUPTED_HINT[0] = (f"stopped: finished sweep runs are kept in {sweep_dir}; run "
                            f"`python -m instructlab reference --config {args.config} --sweep-dir {sweep_dir}` "
                            "again to resume")
    notebooks = [pipeline.resolve_notebook("04"), pipeline.resolve_notebook("05")]
    params = {"04": {"config": str(Path(args.config).resolve()), "sweep_dir": str(sweep_dir.resolve())}}
    # published under docs/results/<name>/: never a profile's name, whose folder holds the demo's results
    name = f"sweep-{config.name}" if config.name in pipeline.PROFILES else config.name
    steps = pipeline.run_chain(config.profile, out, log_output=not args.quiet, notebooks=notebooks,
                               parameters=params, name=name)
    return _chain_done(f"reference sweep {config.name!r}", out, steps, time.perf_counter() - start, args.publish)


def _chain_done(what: str, out: Path, steps: list, total: float, publish: bool) -> int:
    """Print a finished chain's steps (and publish it when asked); the exit status."""
    out = out.resolve()
    print(f"\n{what}: {len(steps)} notebooks in {total:.0f} s ({total / 60:.1f} min); results in {out}")
    for s in steps:
        print(f"  {s.status:9s} {s.duration_s:7.1f} s  {s.notebook}  -> {s.run_dir}")
    failed = [s for s in steps if s.status != "succeeded"]
    if failed:
        print(f"\nFAILED: {failed[0].error}", file=sys.stderr)
        return EXIT_FAILED
    report = sorted(out.glob("05_*/*.md")) if out else []
    if report:
        print(f"report: {report[0]}")
    if publish:
        return cmd_publish(argparse.Namespace(chain_dir=out, docs=None))
    print(f"publish into docs/: python -m instructlab publish {out}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from . import pipeline

    try:
        written = pipeline.publish_chain(args.chain_dir, args.docs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"published {len(written['lessons'])} executed lessons and {len(written['results'])} result files:")
    for path in written["lessons"]:
        print(f"  {path}")
    if written["results"]:
        print(f"  {written['results'][0].parent} and its notebook folders")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a notebook or run failed, 2 bad usage)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = _parser().parse_args(argv)
    from . import ablation, pipeline

    handlers = {"run": cmd_run, "params": cmd_params, "sweep": cmd_sweep, "smoke": cmd_chain, "demo": cmd_chain,
                "reference": cmd_reference,
                "publish": cmd_publish}
    try:
        return handlers[args.command](args)
    except (pipeline.ParameterError, ablation.SweepConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except pipeline.NotebookFailedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"\ninterrupted (Ctrl-C). {_INTERRUPTED_HINT[0]}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
