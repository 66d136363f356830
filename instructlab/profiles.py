"""Profiles: ``smoke``, ``quick`` and ``full``, each defined once, here.

A profile says how big a run is: which model, how much training, how much of the eval set and which
sweep. Every lesson and the command line read it from here (``profiles.get(profile)``); a parameter
that a caller sets explicitly overrides the profile's value, and an empty/zero parameter means "the
profile's". The lessons never branch on a profile's name.

* ``smoke``: the 3M-parameter ``tiny-random`` model, a handful of examples and tokens. It checks the
  plumbing in seconds and learns nothing (tests, ``make smoke``).
* ``quick``: SmolLM2-135M-Instruct sized for a 2-core CPU (``make demo``).
* ``full``: the case study's configuration (4 epochs, all 1,800 examples); a GPU-sized job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Profile", "PROFILES", "NAMES", "get", "check_name", "train_profiles", "eval_profiles"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """Everything a profile decides, in one object.

    Model:
        model: the model that lessons 02-04 tune and evaluate.
        base_model / instruct_model: the two models notebook 00 compares.
    Training (notebook 02, ``python -m instructlab.train``, the sweep):
        train: ``train.TrainConfig`` fields (epochs, learning rate, batch, LoRA rank, ``n_examples`` ...).
        eval_loss_examples: held-out conversations whose loss is measured at the start and end of training.
        compare_prompts / compare_max_new_tokens: notebook 02's before/after answers.
    Evaluation (notebook 03, the sweep):
        eval_per_category: prompts per category (domain, decline, look-alike); 0 = the whole eval set.
        eval_max_new_tokens: answer budget in tokens.
        side_by_side_per_category: answers shown per category in notebook 03.
    Other lessons:
        demo_prompts / demo_max_new_tokens: notebook 00 (0 prompts = all).
        teacher_max_chunks / teacher_examples_per_chunk / data_limit: notebook 01 (0 = all).
    Sweep:
        sweep: the sweep YAML (notebook 04, ``python -m instructlab sweep``), relative to the repository.
    """

    name: str
    description: str
    model: str
    base_model: str
    instruct_model: str
    train: dict[str, Any] = field(default_factory=dict)
    eval_loss_examples: int = 48
    compare_prompts: int = 6
    compare_max_new_tokens: int = 160
    eval_per_category: int = 20
    eval_max_new_tokens: int = 160
    side_by_side_per_category: int = 3
    demo_prompts: int = 0
    demo_max_new_tokens: int = 64
    teacher_max_chunks: int = 0
    teacher_examples_per_chunk: int = 4
    data_limit: int = 0
    sweep: str = ""

    @property
    def sweep_path(self) -> Path:
        """The sweep YAML of this profile, as an absolute path."""
        return REPO_ROOT / self.sweep


_ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="tiny random model, 8 examples, 4 steps: checks the plumbing in seconds, learns nothing",
        model="tiny-random", base_model="tiny-random", instruct_model="tiny-random",
        train=dict(epochs=1, max_steps=4, batch_size=2, grad_accum=1, max_length=512, n_examples=8,
                   learning_rate=1e-3, save_steps=2),
        eval_loss_examples=4, compare_prompts=3, compare_max_new_tokens=12,
        eval_per_category=2, eval_max_new_tokens=8, side_by_side_per_category=1,
        demo_prompts=2, demo_max_new_tokens=8,
        teacher_max_chunks=2, teacher_examples_per_chunk=2, data_limit=300,
        sweep="configs/sweep_smoke.yaml"),
    "quick": Profile(
        name="quick",
        description="SmolLM2-135M-Instruct, all 1,800 training examples once (the data's own mix: 15% declines, "
                    "22% look-alikes, every minimal pair), LoRA r=16 on every linear layer, 450 steps of 4 at "
                    "max_length 512: the recipe chosen on the dev split (configs/recipes_quick.yaml), "
                    "10-16 min of training on a 2-core CPU with native bf16, 27-38 min in fp32 on one without",
        model="smollm2-135m-instruct", base_model="gemma-3-270m", instruct_model="smollm2-135m-instruct",
        train=dict(epochs=1, learning_rate=1e-3, batch_size=4, grad_accum=1, max_length=512, n_examples=None,
                   lora_r=16, lora_alpha=32, target_modules=_ALL_LINEAR, warmup_ratio=0.05, save_steps=50),
        # 45 prompts per category (135): a refusal rate's 95% interval is at most +-15 points (Wilson, p=0.5)
        eval_per_category=45, eval_max_new_tokens=160,
        sweep="configs/sweep_quick.yaml"),
    "full": Profile(
        name="full",
        description="the case study's configuration (4 epochs, lr 2e-4, batch 4 x accumulation 4, r=16 on q/v, "
                    "all data)",
        model="smollm2-135m-instruct", base_model="gemma-3-270m", instruct_model="smollm2-135m-instruct",
        train={}, eval_per_category=0, eval_max_new_tokens=256,
        sweep="configs/sweep_full.yaml"),
}
NAMES = tuple(PROFILES)


def check_name(name: str, where: str = "profile") -> str:
    """Return ``name`` when it is a profile.

    Args:
        name: the profile name to check.
        where: what to call it in the error (e.g. ``"configs/sweep_x.yaml: profile"``).
    Returns:
        ``name``.
    Raises:
        ValueError: naming the valid profiles.
    """
    if name not in PROFILES:
        raise ValueError(f"{where}: unknown profile {name!r}; use one of {', '.join(NAMES)}")
    return name


def get(name: str) -> Profile:
    """The profile called ``name``.

    Args:
        name: ``"smoke"``, ``"quick"`` or ``"full"``.
    Returns:
        The :class:`Profile`.
    Raises:
        ValueError: for another name, listing the valid ones.
    """
    return PROFILES[check_name(name)]


def train_profiles() -> dict[str, Any]:
    """``{name: train.TrainProfile}`` built from :data:`PROFILES` (what ``train.TRAIN_PROFILES`` holds).

    Returns:
        One ``TrainProfile(model, TrainConfig, description)`` per profile.
    """
    from . import train   # imported here: train.py reads this at its own import time

    return {p.name: train.TrainProfile(p.model, train.TrainConfig(**p.train), p.description)
            for p in PROFILES.values()}


def eval_profiles() -> dict[str, tuple[int, int]]:
    """``{name: (prompts per category, max new tokens)}`` (what ``metrics.EVAL_PROFILES`` holds).

    Returns:
        One pair per profile.
    """
    return {p.name: (p.eval_per_category, p.eval_max_new_tokens) for p in PROFILES.values()}
