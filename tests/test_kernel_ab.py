"""benchmarks/kernel_ab.py: one kernel on and off on the same batch, and whether the two give the same bits."""

import importlib.util
import sys
import types
from pathlib import Path

import torch

_DIR = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(_DIR))  # kernel_ab imports train_throughput beside it
_spec = importlib.util.spec_from_file_location("kernel_ab", _DIR / "kernel_ab.py")
kernel_ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kernel_ab)


def test_same_bits_says_identical_only_for_equal_tensors_and_otherwise_how_far_apart():
    loss, grad = torch.tensor(2.5), torch.tensor([1.0, -2.0, 3.0])
    assert kernel_ab.same_bits([loss, grad], [loss.clone(), grad.clone()]) == "identical bits"
    nudged = grad.clone()
    nudged[1] = torch.nextafter(nudged[1], torch.tensor(0.0))  # one bit in one gradient
    said = kernel_ab.same_bits([loss, nudged], [loss, grad])
    assert said.startswith("differ (loss 2.500000 against 2.500000") and "e-08" in said
    assert kernel_ab.same_bits([loss], [loss, grad]) == "differ (1 tensors against 2)"


def test_head_gemm_switches_the_one_gemm_head_in_the_trainers_precision_and_puts_it_back():
    from instructlab import cpu_kernels

    before = cpu_kernels.KEPT_IN_ONE_GEMM
    assert before == {torch.float32}  # bf16 keeps one GEMM per chunk until measured on a CPU with native bf16
    for bf16, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        trainer = types.SimpleNamespace(model=None, args=types.SimpleNamespace(bf16=bf16))
        with kernel_ab.switch(trainer, "head-gemm", False):
            assert cpu_kernels.KEPT_IN_ONE_GEMM == before - {dtype}
        with kernel_ab.switch(trainer, "head-gemm", True):
            assert cpu_kernels.KEPT_IN_ONE_GEMM == before | {dtype}
        assert cpu_kernels.KEPT_IN_ONE_GEMM is before


def test_head_blocks_switches_the_blocked_head_in_the_trainers_precision_and_puts_the_table_back():
    from instructlab import cpu_kernels

    before = dict(cpu_kernels.HEAD_BLOCKS_BELOW)
    for bf16, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        trainer = types.SimpleNamespace(model=None, args=types.SimpleNamespace(bf16=bf16))
        with kernel_ab.switch(trainer, "head-blocks", False):
            assert cpu_kernels.HEAD_BLOCKS_BELOW[dtype] == 0
        with kernel_ab.switch(trainer, "head-blocks", True):  # the kit's limit, or the one tried where it has none
            assert cpu_kernels.HEAD_BLOCKS_BELOW[dtype] == before.get(dtype, kernel_ab.HEAD_BLOCKS_TRIED) > 0
        assert cpu_kernels.HEAD_BLOCKS_BELOW == before
