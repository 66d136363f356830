"""LoRA training through TRL + PEFT on the tiny random model: run folder, labels, determinism, resume,
merge, clear errors. Each training run here takes a few seconds on a 2-core CPU."""

import json
import math

import pytest
import torch
from conftest import scratch_dir
from crash import Killed, KillAtStep

from instructlab import runs
from instructlab.train import (TRAIN_PROFILES, LengthGroupedSampler, LoRATargetError, QLoRAUnavailableError,
                               TrainConfig, TrainDataError, config_subset, merge_adapter, padding_fraction,
                               select_examples, train_lora)

TINY = "tiny-random"


def _conversations(n=16):
    """Small conversations of varied length, with task types so stratified selection has groups."""
    out = []
    for i in range(n):
        words = " ".join(["detail"] * (3 + 5 * (i % 5)))
        out.append({"task_type": "decline" if i % 4 == 0 else "question", "id": f"c{i}", "messages": [
            {"role": "system", "content": "You are the Kestrel assistant."},
            {"role": "user", "content": f"Question {i}: explain item {i} with {words}."},
            {"role": "assistant", "content": f"Dear colleague, item {i} is covered in KB-{1000 + i}. Kind regards,"},
        ]})
    return out


def _cfg(**kw):
    base = dict(epochs=1, max_steps=4, batch_size=2, grad_accum=1, max_length=256, learning_rate=5e-3,
                save_steps=100, seed=7)
    base.update(kw)
    return TrainConfig(**base)


# One uninterrupted reference run shared by the run-folder, determinism, resume and merge tests
# (training runs are the slow part of this file). lr is high so that the adapter visibly moves the model.
BASE_CFG = dict(max_steps=6, save_steps=2, grad_accum=2, learning_rate=5e-2)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return train_lora(TINY, _conversations(), config=_cfg(**BASE_CFG),
                      run_dir=tmp_path_factory.mktemp("baseline") / "run", progress=False)


def test_defaults_are_the_case_study_configuration():
    c = TrainConfig()
    assert (c.epochs, c.learning_rate, c.batch_size, c.grad_accum, c.max_length) == (4, 2e-4, 4, 4, 2048)
    assert (c.lora_r, c.lora_alpha, c.target_modules, c.train_on) == (16, 32, ("q_proj", "v_proj"), "assistant")
    assert set(TRAIN_PROFILES) == {"smoke", "quick", "full"}
    assert TRAIN_PROFILES["smoke"].model == TINY and TRAIN_PROFILES["quick"].model == "smollm2-135m-instruct"
    with pytest.raises(ValueError, match="train_on"):
        TrainConfig(train_on="prompt")


def test_select_examples_keeps_task_mix_and_is_seeded():
    recs = _conversations(40)  # 10 declines, 30 questions
    sub = select_examples(recs, 20, seed=1)
    assert len(sub) == 20 and sum(r["task_type"] == "decline" for r in sub) == 5
    assert [r["id"] for r in sub] == [r["id"] for r in select_examples(recs, 20, seed=1)]
    assert [r["id"] for r in sub] != [r["id"] for r in select_examples(recs, 20, seed=2)]


def test_select_examples_category_shares_fix_the_rare_category_share():
    recs = [{"id": i, "category": c, "task_type": t, "messages": []} for i, (c, t) in enumerate(
        [("domain", "question")] * 60 + [("domain", "summary")] * 20 + [("decline", "decline")] * 12
        + [("lookalike", "question")] * 8)]
    sub = select_examples(recs, 40, seed=0, category_shares={"lookalike": 0.2})
    cats = [r["category"] for r in sub]
    assert len(sub) == len({r["id"] for r in sub}) == 40
    assert cats.count("lookalike") == 8                                 # 20% of 40
    assert cats.count("decline") == 4                                   # the rest keeps its mix (12/92 of 32)
    assert [r["id"] for r in sub] == [r["id"] for r in select_examples(recs, 40, seed=0, category_shares={"lookalike": 0.2})]
    with pytest.raises(ValueError, match="has 8"):
        select_examples(recs, 40, seed=0, category_shares={"lookalike": 0.5})
    with pytest.raises(ValueError, match="at most 1"):
        select_examples(recs, 40, seed=0, category_shares={"lookalike": 0.6, "decline": 0.6})
    assert len(select_examples(recs, 500, seed=0, category_shares={"lookalike": 0.5})) == 100  # n >= len: all


def test_select_examples_returns_exactly_n_when_the_shares_round_down():
    # 263.x domain records by share would round to 479 in all without the top-up (the quick profile's
    # 15% declines + 30% look-alikes of 480 did this, and the run then refused its own subset)
    recs = [{"id": i, "category": c, "task_type": t, "messages": []} for i, (c, t) in enumerate(
        [("domain", "question")] * 333 + [("domain", "summary")] * 333 + [("domain", "rewrite")] * 334
        + [("decline", "decline")] * 100 + [("lookalike", "question")] * 200)]
    for n in (40, 100, 479, 480, 481):
        sub = select_examples(recs, n, seed=0, category_shares={"decline": 0.15, "lookalike": 0.30})
        assert len(sub) == len({r["id"] for r in sub}) == n
        assert len(select_examples(recs, n, seed=0)) == n


def test_pairs_together_draws_each_chosen_decline_with_its_look_alike():
    recs = [{"id": i, "category": "domain", "task_type": "question", "messages": []} for i in range(60)]
    recs += [{"id": 100 + i, "category": "decline", "task_type": "decline", "pair_id": f"p{i}", "messages": []}
             for i in range(20)]
    recs += [{"id": 200 + i, "category": "lookalike", "task_type": "question", "pair_id": f"p{i}" if i < 20 else None,
              "messages": []} for i in range(30)]
    shares = {"decline": 0.1, "lookalike": 0.2}

    def complete_pairs(sub):
        ids = [r["pair_id"] for r in sub if r.get("pair_id")]
        return sum(ids.count(p) == 2 for p in set(ids))

    apart = select_examples(recs, 40, seed=3, category_shares=shares)
    together = select_examples(recs, 40, seed=3, category_shares=shares, pair_key="pair_id")
    for sub in (apart, together):   # the shares hold either way
        cats = [r["category"] for r in sub]
        assert len({r["id"] for r in sub}) == 40 and cats.count("decline") == 4 and cats.count("lookalike") == 8
    assert complete_pairs(together) == 4 > complete_pairs(apart)
    assert [r["id"] for r in together] == [r["id"] for r in select_examples(recs, 40, seed=3, category_shares=shares,
                                                                           pair_key="pair_id")]
    config = TrainConfig(n_examples=40, category_shares=shares, pairs_together=True, seed=3)
    assert [r["id"] for r in config_subset(recs, config)] == [r["id"] for r in together]
    with pytest.raises(ValueError, match="pairs_together"):
        TrainConfig(pairs_together="yes")


def test_length_grouped_sampler_cuts_padding_and_covers_every_index_once():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 400, (203,), generator=gen).tolist()
    s = LengthGroupedSampler(lengths, batch_size=4, seed=3)
    order = list(s)
    assert sorted(order) == list(range(203))
    grouped = [order[i:i + 4] for i in range(0, len(order), 4)]
    shuffled = [list(range(203))[i:i + 4] for i in range(0, 203, 4)]
    assert padding_fraction(lengths, grouped) < 0.05 < padding_fraction(lengths, shuffled)
    s.set_epoch(1)
    assert list(s) != order  # a new order each epoch
    # batch order is shuffled: lengths do not simply decrease (or increase) through the epoch
    maxes = [max(lengths[i] for i in b) for b in grouped]
    assert maxes != sorted(maxes) and maxes != sorted(maxes, reverse=True)


def test_train_writes_a_complete_run_folder(baseline):
    res = baseline
    d = res.run_dir
    for name in ("config.json", "manifest.json", "log_history.jsonl", "metrics.json", "mask_report.json",
                 "adapter/adapter_config.json", "adapter/tokenizer_config.json"):
        assert (d / name).is_file(), name
    cfg = json.loads((d / "config.json").read_text())
    from instructlab import models

    assert cfg["hardware"]["use_cpu"] is True and cfg["hardware"]["bf16"] is models.device_settings().bf16
    from instructlab import cpu_fused

    # which element-wise kernels trained (the tiny Llama's modules switched: the kernels' own status)
    assert res.throughput["cpu_fused"] == cpu_fused.status(res.model) == cpu_fused.status()
    assert cfg["sft_config"]["activation_checkpointing"] is False and cfg["config"]["max_steps"] == 6
    man = json.loads((d / "manifest.json").read_text())
    assert man["world_size"] == 1 and man["packages"]["trl"] and len(man["data_fingerprint"]) == 64
    assert man["data_fingerprint"] == runs.fingerprint(select_examples(_conversations(), None, seed=7))
    logged = runs.read_jsonl(d / "log_history.jsonl")
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert len(res.losses) == 6 and all(math.isfinite(x) for x in res.losses)
    assert res.metrics["final_loss"] == res.losses[-1]
    assert res.throughput["tokens_per_s"] > 0 and 0 <= res.throughput["padding_fraction"] < 0.5


def _trainer_and_examples(config, data=None):
    """The SFTTrainer train_lora would build, plus the kit's masked examples, without training."""
    from instructlab import models
    from instructlab.train import as_conversations, build_trainer, prepare_examples, sft_config, to_dataset

    hw = models.device_settings()
    tok = models.load_tokenizer(TINY)
    masked = prepare_examples(tok, as_conversations(data or _conversations()), config)
    args = sft_config(config, hw, scratch_dir("trainer"))
    return build_trainer(TINY, to_dataset(masked.examples), None, config, args, tok, hw), masked.examples


@pytest.mark.parametrize("batching", ["group_by_length", "padding_free"])
@pytest.mark.parametrize("train_on", ["assistant", "all"])
def test_trl_trains_on_exactly_the_kits_labels(batching, train_on):
    trainer, examples = _trainer_and_examples(_cfg(batching=batching, train_on=train_on))
    by_ids = {tuple(e["input_ids"]): e["labels"] for e in examples}
    seen = 0
    for batch in trainer.get_train_dataloader():
        if batching == "padding_free":  # one flat row; position_ids restart at 0 for every example
            assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
            starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
            rows = [(batch["input_ids"][0, a:b], batch["labels"][0, a:b]) for a, b in zip(starts, starts[1:])]
        else:
            rows = [(ids[m.bool()], lab[m.bool()]) for ids, lab, m in
                    zip(batch["input_ids"], batch["labels"], batch["attention_mask"])]
            assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()  # padding never trained
        for ids, lab in rows:
            expected = by_ids[tuple(ids.tolist())]
            # a causal LM predicts token t from tokens < t: the label at position 0 never enters the loss
            # (padding-free batches set it to -100 to cut the previous example off)
            assert lab.tolist()[1:] == expected[1:]
            if train_on == "all":
                assert lab[1:].tolist() == ids[1:].tolist()
            else:
                assert (lab == -100).sum() > 0 and (lab != -100).sum() > 0
            seen += 1
    assert seen == len(examples)


def test_padding_free_batches_do_not_attend_across_examples(monkeypatch):
    monkeypatch.setenv("INSTRUCTLAB_DTYPE", "float32")  # an fp32 tolerance; bf16 numerics: test_precision.py
    trainer, examples = _trainer_and_examples(_cfg(batching="padding_free"))
    model = trainer.model.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
    assert len(starts) > 2
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        for a, b in zip(starts, starts[1:]):
            alone = model(input_ids=batch["input_ids"][:, a:b], use_cache=False).logits
            torch.testing.assert_close(packed[:, a:b], alone, atol=1e-4, rtol=1e-4)


def test_same_seed_same_loss_curve_and_another_seed_differs(baseline, tmp_path):
    again = train_lora(TINY, _conversations(), config=_cfg(**BASE_CFG), run_dir=tmp_path / "b", progress=False)
    assert again.losses == baseline.losses
    other = train_lora(TINY, _conversations(), config=_cfg(**{**BASE_CFG, "max_steps": 2, "seed": 8}),
                       run_dir=tmp_path / "c", progress=False)
    assert other.losses != baseline.losses[:2]


def test_killed_run_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(baseline, tmp_path):
    full, cfg = baseline, _cfg(**BASE_CFG)
    with pytest.raises(Killed):
        train_lora(TINY, _conversations(), config=cfg, run_dir=tmp_path / "killed", callbacks=[KillAtStep(4)],
                   progress=False)
    assert not (tmp_path / "killed" / "adapter").exists()
    assert (tmp_path / "killed" / "checkpoints" / "checkpoint-4").is_dir()
    resumed = train_lora(TINY, _conversations(), run_dir=tmp_path / "killed", resume=True, progress=False)
    assert resumed.metrics["resumed_from"].endswith("checkpoint-4")
    assert resumed.metrics["global_step"] == 6
    assert resumed.metrics["final_loss"] == pytest.approx(full.metrics["final_loss"], rel=1e-4)
    assert resumed.losses == pytest.approx(full.losses, rel=1e-4)
    logged = runs.read_jsonl(tmp_path / "killed" / "log_history.jsonl")
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="different config"):
        train_lora(TINY, _conversations(), config=_cfg(seed=1), run_dir=tmp_path / "killed", resume=True)


def test_merged_model_generates_exactly_like_base_plus_adapter(baseline, tmp_path):
    from instructlab import models

    res = baseline
    out = merge_adapter(res.run_dir, tmp_path / "merged")
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    tok = models.load_tokenizer(str(out))
    # Compared in fp32, where "exactly" is meaningful; the same in bf16: tests/test_precision.py
    with_adapter = models.load_model(TINY, adapter=res.run_dir, dtype="float32")
    merged, base = models.load_model(str(out), dtype="float32"), models.load_model(TINY, dtype="float32")
    text = tok.apply_chat_template([{"role": "user", "content": "Explain item 3."}], tokenize=False,
                                   add_generation_prompt=True)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        la, lm, lb = (m(**enc).logits for m in (with_adapter, merged, base))
    torch.testing.assert_close(lm, la, atol=1e-4, rtol=1e-4)
    assert (la - lb).abs().max() > 1e-3  # the adapter really changed the model
    gen = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(with_adapter.generate(**enc, **gen), merged.generate(**enc, **gen))


def test_clear_errors(tmp_path):
    with pytest.raises(TrainDataError, match="empty"):
        train_lora(TINY, [], config=_cfg(), run_dir=tmp_path / "e1")
    with pytest.raises(TrainDataError, match="max_length"):
        train_lora(TINY, _conversations(), config=_cfg(max_length=8), run_dir=tmp_path / "e2")
    with pytest.raises(LoRATargetError, match="query_key_value.*q_proj"):
        train_lora(TINY, _conversations(), config=_cfg(target_modules=("query_key_value",)), run_dir=tmp_path / "e3")
    with pytest.raises(QLoRAUnavailableError, match="CUDA"):
        train_lora(TINY, _conversations(), config=_cfg(quantization="4bit"), run_dir=tmp_path / "e4")
    no_answers = [{"messages": [{"role": "user", "content": "hello"}]}] * 3
    with pytest.raises(TrainDataError, match="assistant"):
        train_lora(TINY, no_answers, config=_cfg(), run_dir=tmp_path / "e5")


@pytest.mark.real_model
def test_short_real_run_on_smollm2(tmp_path):
    res = train_lora("smollm2-135m-instruct", _conversations(8),
                     config=_cfg(max_steps=3, batch_size=4, learning_rate=1e-3), run_dir=tmp_path / "real",
                     progress=False)
    assert len(res.losses) == 3 and all(0 < x < 20 for x in res.losses)
    assert (res.adapter_dir / "adapter_model.safetensors").is_file()
    assert res.throughput["tokens_per_s"] > 0
