"""Tests for instructlab.models: tiny-random, the cache, templates, offline errors, device settings."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from instructlab import models


# ----------------------------------------------------------------------------- tiny-random

def _state(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def test_tiny_random_is_deterministic_by_seed(tmp_path):
    a = models.build_tiny_random(tmp_path / "a", seed=0)
    b = models.build_tiny_random(tmp_path / "b", seed=0)
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys() and len(sa) > 10
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # another seed differs: see the seed1 test below


def test_tiny_random_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    models.build_tiny_random(tmp_path / "t", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_random_shape_names_and_tokenizer():
    tok = models.load_tokenizer("tiny-random")
    model = models.load_model("tiny-random")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= names
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert cfg.vocab_size == len(tok) == 49152
    assert not model.training and model.device.type == "cpu" and model.dtype == models.device_settings().dtype
    assert tok.pad_token is not None and tok.instructlab_template_note is None
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert models.load_model("tiny-random", for_training=True).training


def test_tiny_random_named_seed_is_another_model():
    path0, path1 = models.resolve_model_path("tiny-random"), models.resolve_model_path("tiny-random-seed1")
    assert Path(path0).name == "tiny-random-seed0" and Path(path1).name == "tiny-random-seed1"
    s0, s1 = _state(path0), _state(path1)
    assert not torch.equal(s0["model.embed_tokens.weight"], s1["model.embed_tokens.weight"])


# ----------------------------------------------------------------------------- cache: atomic, locked, reused

def test_cached_build_is_reused_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLAB_CACHE", str(tmp_path))
    calls = []

    def build(out):
        calls.append(out)
        (out / "weights.bin").write_text("ok")

    first = models.cached_build("thing", build)
    second = models.cached_build("thing", build)
    assert first == second == tmp_path / "thing" and len(calls) == 1
    assert (first / "weights.bin").read_text() == "ok" and (first / models.CACHE_MARKER).is_file()
    assert not list(tmp_path.glob(".tmp-*"))


def test_killed_build_leaves_nothing_usable(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLAB_CACHE", str(tmp_path))

    def dies(out):
        (out / "half.bin").write_text("half")
        raise KeyboardInterrupt  # like Ctrl-C in the middle of a conversion

    with pytest.raises(KeyboardInterrupt):
        models.cached_build("thing", dies)
    assert not (tmp_path / "thing").exists()
    # A hard kill (SIGKILL) cannot clean up: simulate its leftovers, and a final folder without marker.
    (tmp_path / ".tmp-thing-abc123").mkdir()
    (tmp_path / ".tmp-thing-abc123" / "half.bin").write_text("half")
    built = models.cached_build("thing", lambda out: (out / "full.bin").write_text("full"))
    assert (built / "full.bin").exists() and not (built / "half.bin").exists()
    assert not list(tmp_path.glob(".tmp-thing-*")), "stale temp folder should be cleaned up"


def test_incomplete_final_folder_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLAB_CACHE", str(tmp_path))
    (tmp_path / "thing").mkdir()
    (tmp_path / "thing" / "half.bin").write_text("half")  # no marker: e.g. copied by hand, half-way
    built = models.cached_build("thing", lambda out: (out / "full.bin").write_text("full"))
    assert sorted(p.name for p in built.iterdir()) == sorted(["full.bin", models.CACHE_MARKER])


_CONCURRENT = """
import sys, time
from instructlab import models
def build(out):
    (out / "who").write_text(sys.argv[1]); time.sleep(1.0)
    with open(sys.argv[2], "a") as fh: fh.write(sys.argv[1] + "\\n")
print(models.cached_build("shared", build))
"""


def test_two_processes_build_once(tmp_path):
    env = {**os.environ, "INSTRUCTLAB_CACHE": str(tmp_path / "cache")}
    log = tmp_path / "builds.log"
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(i), str(log)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len(log.read_text().split()) == 1, "the lock must make the second process reuse the first build"
    assert outs[0][0].strip() == outs[1][0].strip()


def test_second_load_uses_the_cache(monkeypatch):
    models.resolve_model_path("tiny-random")  # built (once per machine)
    monkeypatch.setattr(models, "build_tiny_random", lambda *a, **k: pytest.fail("rebuilt a cached model"))
    start = time.monotonic()
    models.load_model("tiny-random")
    assert time.monotonic() - start < 10


# ----------------------------------------------------------------------------- templates

class _NoTemplateTok:
    """A stand-in with the attributes ensure_chat_template reads."""

    def __init__(self, vocab):
        self.chat_template, self.eos_token, self._vocab = None, "</s>", vocab

    def get_vocab(self):
        return self._vocab


def test_default_template_is_applied_with_notice(capsys):
    tok = _NoTemplateTok({"<start_of_turn>": 105, "<end_of_turn>": 106})
    with pytest.warns(models.DefaultChatTemplateWarning, match="no chat template"):
        models.ensure_chat_template(tok, "my-base")
    assert tok.chat_template == models.DEFAULT_CHAT_TEMPLATE
    assert "my-base" in tok.instructlab_template_note and "gemma_default.jinja" in tok.instructlab_template_note
    assert "no chat template" in capsys.readouterr().err


def test_default_template_without_gemma_tokens_uses_eos():
    tok = _NoTemplateTok({"</s>": 2})
    with pytest.warns(models.DefaultChatTemplateWarning):
        models.ensure_chat_template(tok, "other-base")
    assert "<end_of_turn>" not in tok.chat_template and "</s>" in tok.chat_template


def test_model_template_is_kept_without_notice(recwarn):
    tok = models.load_tokenizer("tiny-random")
    assert tok.instructlab_template_note is None
    assert not [w for w in recwarn if issubclass(w.category, models.DefaultChatTemplateWarning)]


def test_default_template_renders_gemma_turns():
    tok = models.load_tokenizer("tiny-random")
    tok.chat_template = models.DEFAULT_CHAT_TEMPLATE
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": " Hello! "}, {"role": "user", "content": "Bye"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (f"{tok.bos_token}<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                    "<start_of_turn>model\n Hello! <end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n"
                    "<start_of_turn>model\n")


@pytest.mark.real_model
def test_gemma_base_gets_default_template_with_notice():
    with pytest.warns(models.DefaultChatTemplateWarning):
        tok = models.load_tokenizer("gemma-3-270m")
    assert "gemma-3-270m" in tok.instructlab_template_note
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
                                  tokenize=False)
    assert ids.startswith("<bos><start_of_turn>user\nHi<end_of_turn>")
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    assert eot == 106 and tok.pad_token is not None
    gen = json.loads((Path(models.resolve_model_path("gemma-3-270m")) / "generation_config.json").read_text())
    assert eot in gen["eos_token_id"], "generation must stop at the template's end-of-turn marker"


@pytest.mark.real_model
def test_smollm2_loads_and_answers():
    tok = models.load_tokenizer("smollm2-135m-instruct")
    model = models.load_model("smollm2-135m-instruct")
    assert tok.instructlab_template_note is None and tok.pad_token == tok.eos_token == "<|im_end|>"
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    answer = models.complete_text(model, tok, "What is the capital of France?", max_new_tokens=12, chat=True)
    assert "Paris" in answer


# ----------------------------------------------------------------------------- names, offline, adapters

def test_local_folder_and_hub_id_resolution(tmp_path):
    assert models.resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert models.resolve_model_path("someone/some-model") == "someone/some-model"
    assert set(models.EMBEDDED_MODELS) == {"smollm2-135m-instruct", "gemma-3-270m", "tiny-random"}


def test_local_folder_loads_as_is():
    folder = models.resolve_model_path("tiny-random")
    assert len(models.load_tokenizer(folder)) == 49152
    assert models.load_model(folder).config.hidden_size == 64


def test_offline_hub_id_names_embedded_choices(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for loader in (models.load_tokenizer, models.load_model):
        with pytest.raises(models.ModelNotAvailableError) as info:
            loader("no-such-org/no-such-model-xyz")
        msg = str(info.value)
        assert all(name in msg for name in models.EMBEDDED_MODELS)
        assert "HF_HUB_OFFLINE=0" in msg and "no-such-org/no-such-model-xyz" in msg


def test_adapter_folder_and_run_folder(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = models.load_model("tiny-random")
    peft = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(tmp_path / "run" / "adapter")
    for where in (tmp_path / "run", tmp_path / "run" / "adapter"):
        loaded = models.load_model("tiny-random", adapter=where)
        assert isinstance(loaded, PeftModel) and not loaded.training
    trainable = models.load_model("tiny-random", adapter=tmp_path / "run", for_training=True)
    assert any(p.requires_grad for n, p in trainable.named_parameters() if "lora_" in n)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        models.load_model("tiny-random", adapter=tmp_path)


# ----------------------------------------------------------------------------- device & precision

def test_device_settings_cpu(monkeypatch):
    monkeypatch.setenv("INSTRUCTLAB_DTYPE", "float32")  # the bf16 path: tests/test_precision.py
    s = models.device_settings("cpu")
    assert (s.device, s.dtype, s.bf16, s.fp16) == ("cpu", torch.float32, False, False)
    assert s.use_cpu and not s.supports_qlora
    assert s.training_args() == {"bf16": False, "fp16": False, "use_cpu": True}
    assert "CPU" in s.description


def test_device_settings_env_and_errors(monkeypatch):
    monkeypatch.setenv("INSTRUCTLAB_DEVICE", "cpu")
    assert models.device_settings().device == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        models.device_settings("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            models.device_settings("cuda")


def test_device_settings_cuda_precision(monkeypatch):
    """bf16 where the GPU supports it, else fp16 (CUDA faked: the decision logic is what is tested)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "FakeGPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    s = models.device_settings()
    assert (s.device, s.dtype, s.bf16, s.fp16, s.use_cpu) == ("cuda", torch.bfloat16, True, False, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    s = models.device_settings("cuda")
    assert (s.dtype, s.bf16, s.fp16) == (torch.float16, False, True)
