"""Simulated crashes for the resume tests (test_train, test_reliability)."""

from transformers import TrainerCallback


class Killed(Exception):
    """Raised by :class:`KillAtStep` in place of a real SIGKILL."""


class KillAtStep(TrainerCallback):
    """Simulates a crash: raises at the start of the step after ``step`` (its checkpoint is on disk)."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed after step {self.step}")
