"""Ablation: nested subsets, quality selection, confidence intervals, aggregation, sweep resume."""

import json
import math
from pathlib import Path

import pytest
import yaml

from instructlab import ablation
from instructlab.ablation import RunSpec, SweepConfig

REPO = Path(__file__).resolve().parent.parent


def records(n, noisy_every=0):
    out = []
    for i in range(n):
        decline = i % 7 == 0
        answer = ("Dear colleague,\n\nWe cannot share that; please contact HR.\n\nKind regards,\nKestrel HR" if decline
                  else f"Dear colleague,\n\nThe change request (CR) {i} is scheduled in the maintenance window "
                       f"(MW) and the Change Advisory Board (CAB) approved it after review of risk.\n\n"
                       "Kind regards,\nKestrel Service Desk")
        noisy = bool(noisy_every) and i % noisy_every == 0
        if noisy:
            answer = "hey!! no worries, just open a ticket lol"
        rec = {"id": f"r{i}", "task_type": "decline" if decline else "question",
               "messages": [{"role": "user", "content": f"question number {i}?"},
                            {"role": "assistant", "content": answer}]}
        if noisy_every:
            rec["noise"] = "slang" if noisy else None
        out.append(rec)
    return out


def test_nested_subsets_are_nested_and_seeded():
    recs = list(range(500))
    subsets = ablation.nested_subsets(recs, [300, 10, 100], seed=3)
    assert sorted(subsets) == [10, 100, 300]
    assert set(subsets[10]) <= set(subsets[100]) <= set(subsets[300])
    assert all(len(subsets[n]) == len(set(subsets[n])) == n for n in subsets)
    assert subsets == ablation.nested_subsets(recs, [10, 100, 300], seed=3)          # same seed, same subsets
    assert subsets[100] != ablation.nested_subsets(recs, [100], seed=4)[100]          # other seed, other subset
    # adding a size does not change the other subsets
    assert ablation.nested_subsets(recs, [10, 50, 100, 300], seed=3)[100] == subsets[100]


def test_nested_subsets_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="between 1 and the 5 available"):
        ablation.nested_subsets([1, 2, 3, 4, 5], [3, 6], seed=0)


def test_split_dev_is_disjoint():
    recs = records(40)
    pool, dev = ablation.split_dev(recs, 8, seed=1)
    assert len(dev) == 8 and len(pool) == 32
    assert not {r["id"] for r in pool} & {r["id"] for r in dev}


def test_quality_selection_prefers_clean_examples_and_keeps_task_mix():
    recs = records(140, noisy_every=3)
    scores = ablation.quality_scores(recs)
    noisy = [s.total for s, r in zip(scores, recs) if r["noise"]]
    clean = [s.total for s, r in zip(scores, recs) if not r["noise"]]
    assert max(noisy) < min(clean)
    subsets = ablation.quality_subsets(recs, [20, 60], seed=0, scores=scores)
    assert {r["id"] for r in subsets[20]} <= {r["id"] for r in subsets[60]}
    assert ablation.noise_rate(subsets[60]) == 0 < ablation.noise_rate(recs)
    share = sum(r["task_type"] == "decline" for r in recs) / len(recs)
    assert abs(sum(r["task_type"] == "decline" for r in subsets[60]) / 60 - share) < 0.05


def test_quality_scores_flag_duplicate_prompts():
    recs = records(5)
    recs.append({**recs[1], "id": "dup"})
    scores = ablation.quality_scores(recs)
    assert scores[-1].duplicate and not scores[1].duplicate
    assert "dup" not in {r["id"] for r in ablation.quality_subsets(recs, [5], seed=0, scores=scores)[5]}


def test_t_interval_matches_scipy():
    from scipy import stats

    vals = [0.61, 0.70, 0.66]
    ci = ablation.t_interval(vals)
    low, high = stats.t.interval(0.95, 2, loc=sum(vals) / 3, scale=stats.sem(vals))
    assert ci["n"] == 3 and math.isclose(ci["ci_low"], low) and math.isclose(ci["ci_high"], high)
    assert ablation.t_interval([0.5])["ci_low"] is None                          # one seed: no interval
    assert ablation.t_interval([None, float("nan")])["n"] == 0


def test_summarize_groups_over_seeds_and_skips_failed_runs():
    rows = [{"variant": "clean-random-assistant", "data": "clean", "selection": "random", "train_on": "assistant",
             "size": n, "seed": s, "terminology": n / 1000 + s / 100, "status": "succeeded"}
            for n in (100, 300) for s in (0, 1, 2)]
    rows.append({**rows[0], "seed": 9, "terminology": 99.0, "status": "failed"})
    summary = ablation.summarize(rows)
    assert [(r["size"], r["metric"], r["n"]) for r in summary] == [(100, "terminology", 3), (300, "terminology", 3)]
    assert math.isclose(summary[0]["mean"], 0.11) and summary[0]["ci_low"] < 0.11 < summary[0]["ci_high"]
    assert summary[1]["seeds"] == [0, 1, 2]


def test_write_table_csv_and_json(tmp_path):
    rows = [{"a": 1, "b": [1, 2]}, {"a": 2, "c": "x"}]
    csv_path, json_path = ablation.write_table(rows, tmp_path / "t")
    assert json.loads(json_path.read_text()) == rows
    assert csv_path.read_text().splitlines()[0] == "a,b,c"


def test_grid_baseline_sizes_plus_comparisons():
    cfg = SweepConfig(sizes=[50, 100, 200], seeds=[0, 1],
                      comparisons={"size": 100, "variants": [{"data": "noisy"}, {"data": "noisy", "selection": "quality"},
                                                             {"train_on": "all"}]})
    specs = ablation.grid(cfg)
    assert len(specs) == 6 + 6 and len(set(specs)) == len(specs)
    assert RunSpec(100, 1, "noisy", "quality", "assistant") in specs
    assert specs[0].size == 50


def test_config_errors_list_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sizez: [1]\n")
    with pytest.raises(ablation.SweepConfigError, match="valid keys"):
        ablation.load_sweep_config(path)
    path.write_text("comparisons: {size: 10, variants: [{data: dirty}]}\n")
    with pytest.raises(ablation.SweepConfigError, match="data must be one of"):
        ablation.load_sweep_config(path)


@pytest.mark.parametrize("name", ["sweep_quick.yaml", "sweep_smoke.yaml", "sweep_full.yaml"])
def test_shipped_configs_load(name):
    cfg = ablation.load_sweep_config(REPO / "configs" / name)
    assert ablation.grid(cfg)


# ------------------------------------------------------------------------ a sweep with fake notebooks

def _fake_notebook(path, params, body):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, str(path))
    return path


FAKE_TRAIN = '''import json, pathlib
rd = pathlib.Path(run_dir); rd.mkdir(parents=True, exist_ok=True)
sweep = rd.parent.parent.parent
with open(sweep / "calls.txt", "a") as f: f.write(f"train {rd.parent.name}\\n")
if (sweep / f"fail_{n_examples}").exists(): raise RuntimeError(f"simulated crash at n={n_examples}")
n = sum(1 for _ in open(data_path))
assert n == n_examples, (n, n_examples)
(rd / "metrics.json").write_text(json.dumps({"train_loss": 1.0 / n, "eval_loss": 2.0 / n}))
(rd / "log_history.jsonl").write_text("".join(json.dumps({"step": i, "loss": 1.0 / i}) + "\\n" for i in range(1, 4)))
'''
FAKE_EVAL = '''import json, pathlib
rd = pathlib.Path(run_dir); rd.mkdir(parents=True, exist_ok=True)
with open(rd.parent.parent.parent / "calls.txt", "a") as f: f.write(f"eval {rd.parent.name}\\n")
(rd / "before_metrics.json").write_text(json.dumps({"metrics": {"terminology": {"value": 0.05, "n": 5}}}))
if adapter:
    train = json.loads((pathlib.Path(adapter) / "metrics.json").read_text())   # adapter = the train run folder
    value = min(1.0, 0.02 / train["train_loss"])
    (rd / "after_metrics.json").write_text(json.dumps({"metrics": {"terminology": {"value": value, "n": 5}}}))
'''


@pytest.fixture
def fake_sweep(tmp_path):
    train_nb = _fake_notebook(tmp_path / "train.ipynb",
                              'model = "m"\ndata_path = ""\neval_path = ""\nn_examples = 0\nprofile = "quick"\n'
                              'seed = 0\ntrain_on = "assistant"\nrun_dir = ""', FAKE_TRAIN)
    eval_nb = _fake_notebook(tmp_path / "eval.ipynb", 'model = "m"\nadapter = ""\neval_path = ""\n'
                             'profile = "quick"\nrun_dir = ""', FAKE_EVAL)
    (tmp_path / "data").mkdir()
    for name, recs in (("train", records(60)), ("noisy", records(60, noisy_every=3)), ("eval", records(5))):
        (tmp_path / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    cfg = SweepConfig(name="t", sizes=[10, 20], seeds=[0, 1], dev_size=6,
                      data={"clean": str(tmp_path / "data/train.jsonl"), "noisy": str(tmp_path / "data/noisy.jsonl")},
                      eval_path=str(tmp_path / "data/eval.jsonl"), train_notebook=str(train_nb),
                      eval_notebook=str(eval_nb), comparisons={"size": 10, "variants": [{"data": "noisy", "selection": "quality"}]},
                      select_checkpoint=False)   # the fake training writes no adapter to choose from
    return cfg, tmp_path / "sweep"


def _calls(sweep_dir):
    path = sweep_dir / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_sweep_runs_aggregates_and_resumes(fake_sweep):
    cfg, sweep_dir = fake_sweep
    sweep_dir.mkdir()
    (sweep_dir / "fail_20").write_text("")           # the size-20 runs crash: an interrupted sweep
    first = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert sorted(r["run_id"] for r in first.failed) == ["clean-random-assistant-n20-s0", "clean-random-assistant-n20-s1"]
    failed_dir = Path(first.failed[0]["run_dir"]) / "train"
    assert (failed_dir / "train.ipynb").exists()                       # executed copy with the error kept
    assert json.loads((sweep_dir / "manifest.json").read_text())["status"] == "failed"
    assert len(_calls(sweep_dir)) == 1 + 4 * 2 + 2             # untuned eval + 4 good runs x (train, eval) + 2 crashes

    (sweep_dir / "fail_20").unlink()
    (sweep_dir / "calls.txt").unlink()
    second = ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not second.failed
    assert sorted(_calls(sweep_dir)) == sorted(f"{step} clean-random-assistant-n20-s{s}"
                                               for s in (0, 1) for step in ("train", "eval"))   # only the missing runs

    rows = json.loads((sweep_dir / "results.json").read_text())
    assert len(rows) == 7 and all(r["status"] == "succeeded" for r in rows)
    assert rows[0]["variant"] == "untuned" and rows[0]["terminology"] == 0.05 and rows[0]["size"] == 0
    row = next(r for r in rows if r["run_id"] == "clean-random-assistant-n10-s0")
    assert row["terminology"] == pytest.approx(0.2) and row["dev_loss"] == pytest.approx(0.2)
    assert len(row["data_fingerprint"]) == 64 and row["n_train"] == 10
    assert next(r for r in rows if r["data"] == "noisy")["noise_rate"] == 0.0    # quality selection drops noise
    summary = {(s["variant"], s["size"], s["metric"]): s for s in json.loads((sweep_dir / "summary.json").read_text())}
    assert summary[("clean-random-assistant", 20, "terminology")]["mean"] == pytest.approx(0.4)
    assert summary[("clean-random-assistant", 20, "terminology")]["n"] == 2
    assert (sweep_dir / "results.csv").exists() and (sweep_dir / "summary.csv").exists()
    assert set(ablation.loss_curves(sweep_dir)) == {r["run_id"] for r in rows[1:]}

    # nested: the size-10 subset of a seed lies inside its size-20 subset
    ids = {n: {json.loads(line)["id"] for line in open(sweep_dir / f"runs/clean-random-assistant-n{n}-s0/train_data.jsonl")}
           for n in (10, 20)}
    assert ids[10] < ids[20]
    dev = {json.loads(line)["id"] for line in open(sweep_dir / "data/dev.jsonl")}
    assert not dev & ids[20]                                                  # dev never trained on


@pytest.mark.slow
def test_sweep_resumes_evaluation_without_retraining(fake_sweep, tmp_path):
    cfg, sweep_dir = fake_sweep
    cfg.sizes, cfg.seeds, cfg.comparisons, cfg.evaluate_untuned = [10], [0], {}, False
    eval_nb = Path(cfg.eval_notebook)
    ok = eval_nb.read_text()
    _fake_notebook(eval_nb, 'model = "m"\nadapter = ""\neval_path = ""\nprofile = "quick"\nrun_dir = ""',
                   "raise KeyboardInterrupt('killed')")
    assert ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).failed
    eval_nb.write_text(ok)
    (sweep_dir / "calls.txt").unlink()
    assert not ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None).failed
    assert _calls(sweep_dir) == ["eval clean-random-assistant-n10-s0"]


def test_sweep_rejects_bad_notebook_parameters_before_running(fake_sweep):
    cfg, sweep_dir = fake_sweep
    cfg.train_params = {"epochz": 2}
    with pytest.raises(Exception, match="unknown parameter 'epochz'"):
        ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    assert not _calls(sweep_dir)


@pytest.mark.slow
def test_sweep_with_two_workers(fake_sweep):
    cfg, sweep_dir = fake_sweep
    cfg.sizes, cfg.seeds, cfg.comparisons, cfg.evaluate_untuned = [10], [0, 1], {}, False
    result = ablation.run_sweep(cfg, sweep_dir, workers=2, progress=lambda s: None)
    assert not result.failed and [r["seed"] for r in result.rows] == [0, 1]
    assert len(_calls(sweep_dir)) == 4


def test_masking_variant_needs_a_train_on_parameter(fake_sweep, tmp_path):
    cfg, sweep_dir = fake_sweep
    cfg.train_notebook = str(_fake_notebook(tmp_path / "train_no_mask.ipynb",
                                            'model = "m"\ndata_path = ""\neval_path = ""\nn_examples = 0\n'
                                            'profile = "quick"\nrun_dir = ""', FAKE_TRAIN))
    cfg.comparisons = {"size": 10, "variants": [{"train_on": "all"}]}
    with pytest.raises(ablation.SweepConfigError, match="no `train_on` parameter"):
        ablation.run_sweep(cfg, sweep_dir, progress=lambda s: None)
    cfg.comparisons = {}
    tasks = ablation.run_tasks(cfg, sweep_dir, ablation.load_sweep_data(cfg))
    assert "seed" not in tasks[1]["train_params"]            # not declared: the seed draws the subset only
