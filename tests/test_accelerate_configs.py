"""The multi-GPU configs in configs/accelerate/, checked on CPU as far as a CPU can check them.

Each YAML goes through accelerate's own launcher code (``accelerate launch --config_file``): it must
parse and become the environment the training processes would get. For FSDP that environment builds
accelerate's FSDP plugin, and the kit's trainer then saves under it: transformers 5.23's
``Trainer.save_model`` writes under FSDP only with ``FULL_STATE_DICT`` (the state dict gathered on rank 0),
so the test hands the save path the full state dict that gathering yields and checks that the adapter
is written and holds the trained LoRA weights. The GPU runs themselves are not tested here.
"""

from pathlib import Path

import torch
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
from safetensors.torch import load_file

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "accelerate"


def launch_env(name):
    """(args, environment) that ``accelerate launch --config_file configs/accelerate/<name>.yaml`` prepares."""
    args = launch_command_parser().parse_args(
        ["--config_file", str(CONFIGS / f"{name}.yaml"), "-m", "instructlab.train", "--profile", "smoke"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # what launch_command does before deepspeed_launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


def test_every_config_parses_into_its_launch():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == ["ddp", "deepspeed_zero3", "fsdp"]
    args, env = launch_env("ddp")
    assert args.multi_gpu and args.num_processes == 2 and env["ACCELERATE_MIXED_PRECISION"] == "no"
    args, env = launch_env("fsdp")
    assert args.use_fsdp and env["FSDP_VERSION"] == "2" and env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    args, env = launch_env("deepspeed_zero3")
    assert args.use_deepspeed and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"  # weights gathered when saving


def test_fsdp_config_has_no_fsdp1_leftovers():
    import yaml

    fsdp = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())["fsdp_config"]
    assert "fsdp_use_orig_params" not in fsdp and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def fsdp_plugin(monkeypatch, name="fsdp"):
    from accelerate.utils import FullyShardedDataParallelPlugin

    for key, value in launch_env(name)[1].items():
        monkeypatch.setenv(key, value)
    return FullyShardedDataParallelPlugin()


def _trainer(tmp_path):
    """The kit's trainer on tiny-random, LoRA weights moved off their init so a saved adapter is recognisable."""
    from instructlab import models
    from instructlab.train import TrainConfig, as_conversations, build_trainer, prepare_examples, sft_config, to_dataset

    config = TrainConfig(max_steps=1, batch_size=2, grad_accum=1, max_length=128, save_steps=100)
    hw = models.device_settings("cpu")
    tok = models.load_tokenizer("tiny-random")
    conv = [[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]] * 2
    masked = prepare_examples(tok, as_conversations(conv), config)
    trainer = build_trainer("tiny-random", to_dataset(masked.examples), None, config,
                            sft_config(config, hw, str(tmp_path / "checkpoints")), tok, hw)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.25)
    return trainer


def save_under_fsdp(trainer, plugin, out, monkeypatch):
    """``trainer.save_model(out)`` as it runs under FSDP on rank 0: the gathered state dict is the full one."""
    monkeypatch.setattr(trainer, "is_fsdp_enabled", True)
    monkeypatch.setattr(trainer.accelerator.state, "fsdp_plugin", plugin, raising=False)
    monkeypatch.setattr(trainer.accelerator, "get_state_dict", lambda model, unwrap=True: model.state_dict())
    trainer.save_model(str(out))


def test_fsdp_save_path_writes_the_adapter(tmp_path, monkeypatch):
    plugin = fsdp_plugin(monkeypatch)
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    trainer = _trainer(tmp_path)
    save_under_fsdp(trainer, plugin, tmp_path / "adapter", monkeypatch)
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    lora_b = [k for k in saved if "lora_B" in k]
    assert lora_b and all(torch.all(saved[k] == 0.25) for k in lora_b)
    assert not any("lora" not in k for k in saved)  # the adapter only, not the frozen base
    from instructlab import models
    assert models.load_model("tiny-random", adapter=tmp_path / "adapter") is not None


def test_the_old_sharded_setting_would_have_left_the_adapter_folder_empty(tmp_path, monkeypatch):
    """Why the config says FULL_STATE_DICT: the same save with FSDP2's default writes no weights."""
    plugin = fsdp_plugin(monkeypatch)
    monkeypatch.setattr(plugin, "state_dict_type", plugin.state_dict_type.__class__["SHARDED_STATE_DICT"])
    trainer = _trainer(tmp_path)
    save_under_fsdp(trainer, plugin, tmp_path / "adapter", monkeypatch)
    assert not (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_deepspeed_is_an_optional_extra():
    import tomllib

    project = tomllib.loads((CONFIGS.parent.parent / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("deepspeed") for d in project["optional-dependencies"]["deepspeed"])
    assert not any(d.startswith("deepspeed") for d in project["dependencies"])

