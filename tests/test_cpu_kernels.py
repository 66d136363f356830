"""The kit's CPU training kernels give the math of the modules they replace: FastDropout is nn.Dropout's
distribution, LeanLogProb is TRL's ChunkedLogProbFunction (values and gradients), and a trainer with them on
computes the same loss and LoRA gradients as one with TRL's and PyTorch's kernels."""

import types

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction

from instructlab import cpu_kernels, models
from instructlab.cpu_kernels import FastDropout, LeanLogProb, keep_mask, lean_lm_head_on_cpu, use_fast_dropout

TINY = "tiny-random"
OUTPUTS = ("log_probs", "entropy", "is_top1")


# ----------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_keep_mask_keeps_each_element_with_probability_one_minus_p(p):
    g = torch.Generator().manual_seed(0)
    kept = keep_mask((1000, 1000), p, generator=g).float()
    assert abs(kept.mean().item() - (1 - p)) < 0.002  # 1e6 draws: the standard error is under 0.0005
    # independent elements: neighbours are not correlated
    pairs = kept.view(-1, 4)
    corr = torch.corrcoef(torch.stack([pairs[:, 0], pairs[:, 1]]))[0, 1]
    assert abs(corr.item()) < 0.01


@pytest.mark.parametrize("p", [0.05, 0.3, 1e-5])
def test_dropped_positions_are_bernoulli_trials_drawn_by_their_gaps(p, monkeypatch):
    """Distinct, increasing, in range; the count and the gaps follow independent Bernoulli(p) trials: the
    number dropped is Binomial(n, p) and a gap of exactly 1 (two drops in a row) has probability p."""
    from instructlab.cpu_kernels import dropped_positions

    g = torch.Generator().manual_seed(0)
    n = 2_000_000
    draws = [dropped_positions(n, p, g) for _ in range(5)]
    for pos in draws:
        assert pos.dtype == torch.int64 and int(pos.min()) >= 0 and int(pos.max()) < n
        assert bool((pos[1:] > pos[:-1]).all())
    counts = torch.tensor([len(d) for d in draws], dtype=torch.float64)
    sd = (n * p * (1 - p)) ** 0.5
    assert abs(counts.mean().item() - n * p) < 4 * sd / 5 ** 0.5 + 1
    gaps = torch.cat([d.diff() for d in draws])
    if len(gaps) > 10_000:
        ones = (gaps == 1).double().mean().item()
        assert abs(ones - p) < 4 * (p * (1 - p) / len(gaps)) ** 0.5
    assert not torch.equal(draws[0][:10], draws[1][:10])
    assert len(dropped_positions(10, 0.0)) == 0 and len(dropped_positions(0, 0.5)) == 0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropped_positions(10, 1.0)
    # with no margin, about half the draws need a second batch of gaps: still every position with probability p
    monkeypatch.setattr(cpu_kernels, "_GAP_MARGIN", 0)
    small = torch.stack([torch.bincount(dropped_positions(40, 0.5, g), minlength=40) for _ in range(4000)])
    assert (small.double().mean(0) - 0.5).abs().max() < 0.05
    assert small.max() == 1


def test_keep_mask_is_seeded_by_the_generator_and_differs_between_draws():
    a = keep_mask((64, 64), 0.3, generator=torch.Generator().manual_seed(7))
    b = keep_mask((64, 64), 0.3, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    c, d = keep_mask((64, 64), 0.3, generator=g), keep_mask((64, 64), 0.3, generator=g)
    assert torch.equal(a, b) and torch.equal(a, c) and not torch.equal(c, d)
    torch.manual_seed(1)
    e = keep_mask((64, 64), 0.3)
    torch.manual_seed(1)
    assert torch.equal(e, keep_mask((64, 64), 0.3))  # the default generator: set_seed reproduces a run


def test_fast_dropout_zeroes_and_rescales_like_nn_dropout_and_its_gradient_follows_the_mask():
    x = torch.randn(200, 300, dtype=torch.bfloat16, requires_grad=True)
    drop = FastDropout(0.1).train()
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.01
    scale = 1 / (1 - drop.p)
    torch.testing.assert_close(y[kept], (x[kept].float() * scale).bfloat16())
    y.float().sum().backward()
    torch.testing.assert_close(x.grad, (kept.float() * scale).bfloat16())
    # the expectation is kept: the mean of many draws approaches x
    ones = torch.ones(1000, 1000)
    assert abs(drop(ones).mean().item() - 1) < 0.005
    assert torch.equal(drop.eval()(x), x)  # evaluation: identity
    assert torch.equal(FastDropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        FastDropout(1.0)


def test_use_fast_dropout_replaces_only_the_lora_dropout_modules():
    from peft import LoraConfig, get_peft_model

    model = models.load_model(TINY, for_training=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05,
                                                  target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    others = [m for n, m in peft_model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_dropout" not in n]
    n_lora = sum(1 for n, m in peft_model.named_modules() if "lora_dropout." in n and isinstance(m, torch.nn.Dropout))
    assert n_lora > 0
    assert use_fast_dropout(peft_model) == n_lora
    fast = [m for m in peft_model.modules() if isinstance(m, FastDropout)]
    assert len(fast) == n_lora and all(m.p == 0.05 and m.training == peft_model.training for m in fast)
    assert [m for n, m in peft_model.named_modules()
            if isinstance(m, torch.nn.Dropout) and "lora_dropout" not in n] == others
    assert use_fast_dropout(peft_model) == 0  # idempotent


# ----------------------------------------------------------------------------- log-probabilities

def _head_case(dtype, n=37, hidden=24, vocab=501, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = (torch.randn(vocab, hidden, generator=g) * 0.3).to(dtype)
    h = torch.randn(n, hidden, generator=g)
    targets = torch.randint(0, vocab, (n,), generator=g)
    targets[0] = int((h[0] @ weight.float().t()).argmax())  # one target that is the top-1
    return h, weight, targets


def _run(kind, h0, weight, targets, autocast, weight_grad=False, entropy_grad=True, mean=False):
    h = h0.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(weight_grad)
    g = torch.Generator().manual_seed(1)
    up_lp, up_ent = torch.randn(h0.shape[0], generator=g), torch.randn(h0.shape[0], generator=g)
    if mean:  # the same weight for every token, as TRL's mean loss gives (LeanLogProb scales in the GEMM)
        up_lp = torch.full((h0.shape[0],), -1 / h0.shape[0])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        if kind == "trl":
            lp, ent, _, _, top = ChunkedLogProbFunction.apply(h, w, None, targets, 1.0, 128, None, 1.0, OUTPUTS)
        else:
            lp, ent, top = LeanLogProb.apply(h, w, targets, OUTPUTS)
    # both gradients (log-prob and entropy), or the log-probs' alone (LeanLogProb's kept d log p / d logits:
    # the entropy must be out of the graph, else its gradient arrives as zeros, not None)
    loss = (lp * up_lp).sum() + ((ent * up_ent).sum() if entropy_grad else 0)
    loss.backward()
    return lp.detach(), ent.detach(), top, h.grad, w.grad


@pytest.mark.parametrize("path", ["float32", "bfloat16-autocast"])
@pytest.mark.parametrize("chunk_elements", [1 << 24, 2000])  # one chunk, and several (4 tokens each)
@pytest.mark.parametrize("block_elements", [1 << 18, 1100])  # the forward's reductions in one block, or 2 tokens each
@pytest.mark.parametrize("backward", ["kept", "kept-mean", "recomputed", "entropy"])  # d log p / d logits kept or not
def test_lean_log_prob_matches_trl_values_and_gradients(path, chunk_elements, block_elements, backward, monkeypatch):
    monkeypatch.setattr(cpu_kernels, "_CHUNK_ELEMENTS", chunk_elements)
    monkeypatch.setattr(cpu_kernels, "_BLOCK_ELEMENTS", block_elements)
    if backward == "recomputed":
        monkeypatch.setattr(cpu_kernels, "_KEEP_ELEMENTS", 0)
    taken = []
    original = cpu_kernels._Tiles.take
    monkeypatch.setattr(cpu_kernels._Tiles, "take", lambda self, name, numel, dtype: taken.append(name) or
                        original(self, name, numel, dtype))
    autocast = path != "float32"
    h, weight, targets = _head_case(torch.bfloat16 if autocast else torch.float32)
    options = dict(weight_grad=True, entropy_grad=backward == "entropy", mean=backward == "kept-mean")
    trl = _run("trl", h, weight, targets, autocast, **options)
    with cpu_kernels.reused_tiles():
        lean = _run("lean", h, weight, targets, autocast, **options)
    # which backward ran: a recomputing one takes a work tile of its own (the entropy's gradient forces it)
    assert taken.count("work") == (1 if backward.startswith("kept") else 2)
    tol = dict(rtol=1e-5, atol=1e-5) if not autocast else dict(rtol=2e-2, atol=2e-2)
    for name, a, b in zip(("log_probs", "entropy"), trl[:2], lean[:2]):
        torch.testing.assert_close(b, a, **tol, msg=name)
    assert torch.equal(trl[2], lean[2]) and bool(lean[2][0])
    for name, a, b in zip(("hidden grad", "weight grad"), trl[3:], lean[3:]):
        assert a.abs().max() > 0
        torch.testing.assert_close(b.float(), a.float(), **tol, msg=name)
        # and as a whole, relative to its size (small gradients, as a mean loss gives, pass any atol)
        assert float((b.float() - a.float()).norm() / a.float().norm()) < (1e-5 if not autocast else 2e-2), name


@pytest.mark.parametrize("autocast", [False, True])
def test_lean_log_prob_gives_the_same_bits_whatever_its_blocks(autocast, monkeypatch):
    """The forward's reductions run block by block (rows are independent): any block size, the same bits."""
    h, weight, targets = _head_case(torch.bfloat16 if autocast else torch.float32)
    out = {}
    for block in (1 << 18, 1100, 501):  # one block; 2 tokens each; 1 token each
        monkeypatch.setattr(cpu_kernels, "_BLOCK_ELEMENTS", block)
        with cpu_kernels.reused_tiles():
            out[block] = _run("lean", h, weight, targets, autocast, weight_grad=True, entropy_grad=False)
    for block in (1100, 501):
        for a, b in zip(out[1 << 18], out[block]):
            assert torch.equal(a, b)


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("kept", [True, False])
@pytest.mark.parametrize("vocab, n, rows, block", [(501, 36, 4, 4), (40000, 8, 4, 3)])
def test_lean_log_prob_scores_the_kept_tile_in_one_gemm_with_the_chunked_bits(autocast, kept, vocab, n, rows,
                                                                               block, monkeypatch):
    """Where the forward keeps d log p / d logits (its tile holds every token's logits), one GEMM computes them
    all in the precisions of KEPT_IN_ONE_GEMM; the reductions keep the chunks' blocks, so the bits are the chunked
    GEMMs' wherever this BLAS gives a row the same bits in a GEMM of any row count. Without the kept tile, one GEMM
    per chunk. The second case has blocks of one row (3 + 1 per chunk of 4) over a vocabulary large enough for a
    row's sum to be split across threads: blocks counted from the start instead of each chunk's would change its
    bits."""
    monkeypatch.setattr(cpu_kernels, "_CHUNK_ELEMENTS", rows * vocab)
    monkeypatch.setattr(cpu_kernels, "_BLOCK_ELEMENTS", block * vocab)
    if not kept:
        monkeypatch.setattr(cpu_kernels, "_KEEP_ELEMENTS", 0)
    dtype = torch.bfloat16 if autocast else torch.float32
    h, weight, targets = _head_case(dtype, n=n, hidden=16, vocab=vocab)
    gemms, logits = [], cpu_kernels.head_logits
    monkeypatch.setattr(cpu_kernels, "head_logits", lambda h, *a: gemms.append(h.shape[0]) or logits(h, *a))
    out = {}
    for one in (True, False):
        monkeypatch.setattr(cpu_kernels, "KEPT_IN_ONE_GEMM", frozenset({dtype} if one else ()))
        gemms.clear()
        with cpu_kernels.reused_tiles():
            out[one] = _run("lean", h, weight, targets, autocast, weight_grad=True, entropy_grad=False)
        # the logits' GEMMs, by their rows (the backward recomputes them where the forward keeps nothing)
        assert gemms == ([n] if one and kept else [rows] * (n // rows) * (1 if kept else 2))
    x, w = h.to(dtype), weight.to(dtype)
    rows_agree = torch.equal(x @ w.t(), torch.cat([x[s:s + rows] @ w.t() for s in range(0, n, rows)]))
    for a, b in zip(out[True], out[False]):
        if rows_agree:
            assert torch.equal(a, b)
        else:  # another BLAS: a row's bits depend on the GEMM's row count, so only the values agree
            torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


def test_lean_log_prob_keeps_one_gemm_per_chunk_in_bf16_where_the_published_demo_did(monkeypatch):
    """The kept tile's one GEMM is on in fp32 only: in bf16 the head runs one GEMM per chunk, the code that
    trained the published demo, until a CPU that computes bf16 natively has measured both (a last chunk of
    a few tokens rounds differently in one GEMM on MKL's fp32, so it may in bf16 too)."""
    monkeypatch.setattr(cpu_kernels, "_CHUNK_ELEMENTS", 4 * 501)
    h, weight, targets = _head_case(torch.float32, n=9, hidden=16, vocab=501)
    gemms, logits = [], cpu_kernels.head_logits
    monkeypatch.setattr(cpu_kernels, "head_logits", lambda h, *a: gemms.append((h.shape[0], h.dtype)) or logits(h, *a))
    for autocast, dtype, expected in ((False, torch.float32, [9]), (True, torch.bfloat16, [4, 4, 1])):
        gemms.clear()
        with cpu_kernels.reused_tiles():
            _run("lean", h, weight, targets, autocast, weight_grad=True, entropy_grad=False)
        assert gemms == [(r, dtype) for r in expected]


@pytest.mark.parametrize("rows", [1, 16, 63, 64])
def test_head_logits_below_the_row_limit_are_vocabulary_blocks_with_the_gemms_bits_in_fp32(rows, monkeypatch):
    """Few tokens against a large vocabulary: the transposed product over blocks of the vocabulary, each block
    copied in; every logit is the same dot product in the same order, so fp32 gives the one GEMM's bits (the
    kit's claim where it computes the head this way: HEAD_BLOCKS_BELOW). A precision left out of the table, or
    rows at the limit, take the one GEMM."""
    monkeypatch.setattr(cpu_kernels, "HEAD_BLOCKS_BELOW", {torch.float32: 64})
    monkeypatch.setattr(cpu_kernels, "HEAD_VOCAB_BLOCK", 100)
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(rows, 96, generator=g), torch.randn(1050, 96, generator=g) * 0.1
    calls, mm = [], torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b, **k: calls.append(tuple(a.shape)) or mm(a, b, **k))
    for dtype in (torch.float32, torch.bfloat16):
        calls.clear()
        out = cpu_kernels.head_logits(hidden.to(dtype), weight.to(dtype), torch.empty(rows, 1050, dtype=dtype))
        blocked = dtype == torch.float32 and rows < 64
        assert calls == ([(100, 96)] * 10 + [(50, 96)] if blocked else [(rows, 96)])
        one = mm(hidden.to(dtype), weight.to(dtype).t())
        if dtype == torch.float32:
            assert torch.equal(out, one)
        torch.testing.assert_close(out, one)


def test_lean_log_prob_takes_zero_tokens_and_keeps_nothing_without_a_graph():
    h, weight, targets = _head_case(torch.float32)
    lp, ent, top, g_h, g_w = _run("lean", h[:0], weight, targets[:0], autocast=False, weight_grad=True)
    assert lp.shape == ent.shape == top.shape == (0,) and g_h.shape == (0, h.shape[1])
    assert not g_w.any()
    with cpu_kernels.reused_tiles(), torch.no_grad():  # a weight that wants a gradient, but no graph
        cpu_kernels.LeanLogProb.apply(h, weight.clone().requires_grad_(), targets, OUTPUTS, torch.is_grad_enabled())
        assert set(cpu_kernels._TILES.free) == {"work", "logits"}  # work tiles, no d log p / d logits


def test_reused_tiles_keeps_the_head_work_tensors_between_calls_and_frees_them_on_exit():
    h, weight, targets = _head_case(torch.float32)
    tiles = cpu_kernels._TILES
    _run("lean", h, weight, targets, autocast=False, entropy_grad=False)
    assert not tiles.free  # outside the context nothing is kept
    with cpu_kernels.reused_tiles():
        first = _run("lean", h, weight, targets, autocast=False, entropy_grad=False)
        kept = {name: t.data_ptr() for name, t in tiles.free.items()}
        assert set(kept) == {"work", "d_logits"}
        with cpu_kernels.reused_tiles():  # nested: the outer context still owns them
            second = _run("lean", h, weight, targets, autocast=False, entropy_grad=False)
        assert {name: t.data_ptr() for name, t in tiles.free.items()} == kept  # the same memory, reused
    assert not tiles.free
    for a, b in zip(first, second):  # and reuse changes nothing
        assert (a is None and b is None) or torch.equal(a, b)


def test_lean_head_dispatch_sends_what_it_does_not_cover_to_trl(monkeypatch):
    from trl.trainer import utils as trl_utils

    calls = []
    original = trl_utils._ChunkedLogProbFunction
    monkeypatch.setattr(original, "apply", lambda *a: calls.append(a) or (None,) * 5)
    h, weight, targets = _head_case(torch.float32)
    with lean_lm_head_on_cpu():
        fn = trl_utils._ChunkedLogProbFunction
        assert fn is not original
        lp, ent, lss, mean, top = fn.apply(h, weight, None, targets, 1.0, 128, None, 1.0, OUTPUTS)
        assert lp.shape == (h.shape[0],) and lss is None and mean is None and not calls
        fn.apply(h, weight, torch.zeros(weight.shape[0]), targets, 1.0, 128, None, 1.0, OUTPUTS)  # a bias
        fn.apply(h, weight, None, targets, 0.7, 128, None, 1.0, OUTPUTS)  # temperature
        fn.apply(h, weight, None, targets, 1.0, 128, 30.0, 1.0, OUTPUTS)  # soft-capping
        fn.apply(h, weight, None, targets, 1.0, 128, None, 1.0, ("log_probs", "mean_logits"))
    assert len(calls) == 4
    assert trl_utils._ChunkedLogProbFunction is original  # restored
    with lean_lm_head_on_cpu(enabled=False):
        assert trl_utils._ChunkedLogProbFunction is original


# ----------------------------------------------------------------------------- in a trainer

def _relative_error(grads, reference):
    return float(sum((g - r).norm() ** 2 for g, r in zip(grads, reference)) ** 0.5
                 / sum(r.norm() ** 2 for r in reference) ** 0.5)


def _errors_against_fp32(trainer, batch, lora, out, reference_path, seed=None):
    """How far the reference path's (``out[False]``) and the kit's (``out[True]``) bf16 results are from the fp32
    computation on the same weights: ((reference's, kit's) relative LoRA-gradient errors, (their loss errors)).
    The model is cast to fp32 and run without autocast, ``reference_path()`` having switched the trainer to the
    reference path; ``seed`` re-seeds first (the same dropout masks as the bf16 passes)."""
    from test_precision import _loss_and_lora_grads

    trainer.model.float()
    reference_path()
    if seed is not None:
        torch.manual_seed(seed)
    loss, reference = _loss_and_lora_grads(trainer, batch, lora, autocast=False)
    return (tuple(_relative_error(out[k][1], reference) for k in (False, True)),
            tuple(float(abs(out[k][0] - loss)) for k in (False, True)))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("head", ["kept", "recomputed"])  # LeanLogProb's two backward paths
def test_trainer_with_the_cpu_kernels_gives_the_loss_and_lora_gradients_of_trl_and_sdpa(dtype, head, monkeypatch):
    """fp32: the kit's kernels give TRL's and SDPA's loss and LoRA gradients. bf16: both are compared with the
    fp32 computation on the same (bf16-stored) weights, and the kit's error is no larger than TRL's (within
    rounding luck: seeds 3-5 gave 0.7-1.1x TRL's ~0.4%); a wrong gradient would be off by far more."""

    from instructlab.train import TrainConfig, use_cpu_kernels

    from test_precision import _batch_and_lora, _loss_and_lora_grads, _tiny_trainer

    if head == "recomputed":
        monkeypatch.setattr(cpu_kernels, "_KEEP_ELEMENTS", 0)
    cfg = TrainConfig(epochs=1, max_steps=2, batch_size=4, max_length=256, save_steps=100, seed=3,
                      lora_dropout=0.0, dtype=dtype)
    trainer = _tiny_trainer(cfg, dtype)
    assert trainer.kit_lean_head and trainer.kit_compact_head  # on by default on CPU
    batch, lora = _batch_and_lora(trainer)
    out = {}
    assert trainer.model.get_base_model().config._attn_implementation == "kit_cpu_short"

    def trl_and_sdpa():
        use_cpu_kernels(trainer, lean_head=False, short_attention=False, fast_dropout=False)
        trainer.model.get_base_model().set_attn_implementation("sdpa")

    for lean in (False, True):  # TRL's head and SDPA attention, then the kit's kernels
        if lean:
            use_cpu_kernels(trainer, lean_head=True, short_attention=True, fast_dropout=False)
        else:
            trl_and_sdpa()
        with cpu_kernels.reused_tiles():
            out[lean] = (*_loss_and_lora_grads(trainer, batch, lora),
                         trainer._metrics["train"]["mean_token_accuracy"][-1],
                         trainer._metrics["train"]["entropy"][-1])
    assert out[True][2] == out[False][2]  # the logged token accuracy and entropy too
    assert out[True][3] == pytest.approx(out[False][3], rel=1e-2)
    assert all(g.abs().max() > 0 for g in out[False][1])
    if dtype == "float32":
        tol = dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[True][0], out[False][0], **tol)
        for g_lean, g_trl in zip(out[True][1], out[False][1]):
            torch.testing.assert_close(g_lean, g_trl, **tol)
        return
    (trl_error, kit_error), (trl_loss, kit_loss) = _errors_against_fp32(trainer, batch, lora, out, trl_and_sdpa)
    assert 0 < trl_error < 1e-2
    assert kit_error < 1.25 * trl_error, (kit_error, trl_error)
    assert kit_loss < 2 * trl_loss + 1e-4


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lean_lora_forward_gives_peft_loss_and_lora_gradients(dtype):
    """The trainer's loss and the gradients of both LoRA matrices with the kit's LoRA forward equal PEFT's, dropout
    included (the same random masks: same seed, same shapes). bf16 (under the trainer's autocast, as in training):
    both are compared with the fp32 computation on the same weights, and the kit's error is no larger than PEFT's
    within rounding luck (seeds 3-7 gave 0.84-1.16x PEFT's ~0.4%); a wrong gradient would be off by far more."""
    from instructlab.train import TrainConfig, use_cpu_kernels

    from test_precision import _batch_and_lora, _loss_and_lora_grads, _tiny_trainer

    cfg = TrainConfig(epochs=1, max_steps=2, batch_size=4, max_length=256, save_steps=100, seed=3,
                      lora_dropout=0.1, dtype=dtype)
    trainer = _tiny_trainer(cfg, dtype)
    layers = [m for m in trainer.model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    assert layers and all(type(m).__name__ == "LeanLoraLinear" for m in layers)  # on by default on CPU
    assert any(isinstance(m, FastDropout) for m in trainer.model.modules())  # its 1/(1-p) folded into the scaling
    batch, _ = _batch_and_lora(trainer)  # B given weights, so that A's gradients are not zero
    lora = [p for n, p in trainer.model.named_parameters() if "lora_" in n]
    assert any("lora_A" in n for n, _ in trainer.model.named_parameters())
    out = {}
    for lean in (False, True):
        use_cpu_kernels(trainer, lean_lora=lean)
        assert all((type(m).__name__ == "LeanLoraLinear") == lean for m in layers)
        torch.manual_seed(11)
        out[lean] = _loss_and_lora_grads(trainer, batch, lora)
    assert all(g.abs().max() > 0 for g in out[False][1])
    if dtype == "float32":
        tol = dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[True][0], out[False][0], **tol)
        for g_lean, g_peft in zip(out[True][1], out[False][1]):
            torch.testing.assert_close(g_lean, g_peft, **tol)
        return
    (peft_error, kit_error), (peft_loss, kit_loss) = _errors_against_fp32(
        trainer, batch, lora, out, lambda: use_cpu_kernels(trainer, lean_lora=False), seed=11)
    assert 0 < peft_error < 1e-2
    assert kit_error < 1.5 * peft_error, (kit_error, peft_error)
    assert kit_loss < 2 * peft_loss + 2e-4


@pytest.mark.parametrize("options", [{}, {"lora_bias": True}, {"use_rslora": True}])
def test_lean_lora_forward_leaves_what_it_does_not_cover_to_peft(options):
    """Same outputs as PEFT's forward, including with rsLoRA's scaling; a bias on B (``lora_bias``), adapters
    disabled or merged, and extra arguments go to PEFT's own forward. The model still pickles and copies."""
    import copy
    import pickle

    from peft import LoraConfig, get_peft_model

    from instructlab.cpu_kernels import use_lean_lora
    from instructlab.models import load_model

    model = get_peft_model(load_model("tiny-random", dtype="float32"),
                           LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False, **options))
    model.eval()
    layer = next(m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
    if options.get("lora_bias"):
        with torch.no_grad():
            layer.lora_B["default"].bias.normal_()
    x = torch.randn(2, 5, layer.in_features)
    peft_out = layer(x)
    n = len([m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")])
    assert use_lean_lora(model) == n and type(layer).__name__ == "LeanLoraLinear"
    torch.testing.assert_close(layer(x), peft_out, rtol=1e-5, atol=1e-6)
    with model.disable_adapter():
        torch.testing.assert_close(layer(x), layer.base_layer(x))
    copied = pickle.loads(pickle.dumps(model))
    deep = copy.deepcopy(model)
    for other in (copied, deep):
        twin = next(m for m in other.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
        assert type(twin).__name__ == "LeanLoraLinear"
        torch.testing.assert_close(twin(x), peft_out, rtol=1e-5, atol=1e-6)
    if not options.get("lora_bias"):  # PEFT cannot merge a B bias into a base layer without one
        layer.merge()
        torch.testing.assert_close(layer(x), peft_out, rtol=1e-5, atol=1e-5)  # merged: the base layer alone
        layer.unmerge()
    assert use_lean_lora(model, enabled=False) == n and type(layer).__name__ == "Linear"
    torch.testing.assert_close(layer(x), peft_out, rtol=1e-5, atol=1e-6)


def test_build_trainer_uses_fast_lora_dropout_on_cpu():
    from instructlab.train import TrainConfig

    from test_precision import _tiny_trainer

    cfg = TrainConfig(epochs=1, max_steps=1, batch_size=2, max_length=128, save_steps=100, lora_dropout=0.05,
                      dtype="float32")
    trainer = _tiny_trainer(cfg, "float32", n=4)
    drops = [m for n, m in trainer.model.named_modules() if "lora_dropout." in n]
    assert drops and all(isinstance(m, FastDropout) and m.p == 0.05 for m in drops)


# ----------------------------------------------------------------------------- attention

def _attention_case(length, dtype, heads=6, kv_heads=2, d=8, b=3, seed=0):
    import types

    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, length, d, generator=g).to(dtype).requires_grad_(True)
               for h in (heads, kv_heads, kv_heads))
    mask = torch.ones(length, length, dtype=torch.bool).tril()[None, None].expand(b, 1, length, length).clone()
    mask[b - 1, :, :, length - 3:] = False  # right padding: the last 3 keys of the last row
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, training=True)
    return module, q, k, v, mask


def _small_blocks(monkeypatch, block: int = 16) -> None:
    """Causal blocks of ``block`` queries in both precisions, so that short test sequences run in blocks."""
    monkeypatch.setattr(cpu_kernels, "CAUSAL_BLOCK", {torch.float32: block, torch.bfloat16: block})


def _count_blocks(monkeypatch) -> list:
    """A list that gets one entry per call of the causal blocks' autograd function."""
    calls, original = [], cpu_kernels._CausalBlocks.apply
    monkeypatch.setattr(cpu_kernels._CausalBlocks, "apply", staticmethod(lambda *a: calls.append(a[4]) or original(*a)))
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("blocks", [False, True])
def test_short_attention_matches_sdpa_outputs_and_gradients(dtype, masked, blocks, monkeypatch):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from instructlab.cpu_kernels import short_attention_forward

    if blocks:
        _small_blocks(monkeypatch)  # 40 tokens: blocks of queries 0-15, 16-31, 32-39
    else:
        monkeypatch.setattr(cpu_kernels, "CAUSAL_BLOCK", {})
    calls = _count_blocks(monkeypatch)
    results = []
    for fn in (sdpa_attention_forward, short_attention_forward):
        module, q, k, v, mask = _attention_case(40, dtype)
        out, _ = fn(module, q, k, v, mask if masked else None, scaling=0.3)
        keep = out.new_ones(out.shape, dtype=torch.bool)
        if masked:
            keep[-1, 37:] = False  # padded queries: their output is never read
        (out.float() * keep).sum().backward()
        results.append((out.detach().float()[keep], q.grad.float(), k.grad.float(), v.grad.float()))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
    for name, a, b in zip(("output", "dq", "dk", "dv"), *results):
        torch.testing.assert_close(b, a, **tol, msg=name)
    assert calls == ([(0, 16, 32, 40)] if blocks else [])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fused_softmax", [True, False])
def test_causal_blocks_give_the_whole_squares_attention(dtype, fused_softmax, monkeypatch):
    """Blocks of queries over the keys up to their last: the output is the whole square's (fp32: the same bits
    or an fp32 rounding apart; the softmax of each row is exactly the square's), and so are the gradients, within
    the rounding of summing the key and value gradients block by block. Inputs in transformers' layout
    ([b, length, heads, d] transposed), padding on the right, with the compiled softmax and without it."""
    from instructlab import cpu_fused
    from instructlab.cpu_kernels import short_attention_forward

    if fused_softmax and cpu_fused.library() is None:
        pytest.skip(f"the compiled kernels: {cpu_fused.status()}")
    g = torch.Generator().manual_seed(3)
    b, heads, kv_heads, d, length = 3, 6, 2, 16, 53
    q, k, v = (torch.randn(b, length, h, d, generator=g).to(dtype).transpose(1, 2) for h in (heads, kv_heads, kv_heads))
    mask = torch.ones(length, length, dtype=torch.bool).tril()[None, None].expand(b, 1, length, length).clone()
    mask[1, :, :, 40:] = False  # sequence 1 ends at 40
    grad = torch.randn(b, length, heads, d, generator=g).to(dtype)
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True, training=True)
    calls = _count_blocks(monkeypatch)
    results = []
    for block in (0, 16):
        monkeypatch.setattr(cpu_kernels, "CAUSAL_BLOCK", {dtype: block} if block else {})
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
        with cpu_fused.fused_softmax(fused_softmax):
            out, _ = short_attention_forward(module, *leaves, mask, scaling=d ** -0.5)
        assert out.shape == (b, length, heads, d) and out.is_contiguous()
        out.backward(grad)
        results.append((out.detach().float(), *(t.grad.float() for t in leaves)))
    assert calls == [(0, 16, 32, 48, 53)]
    (square, *square_grads), (blocked, *blocked_grads) = results
    if dtype == torch.float32:
        torch.testing.assert_close(blocked, square, rtol=1e-6, atol=1e-7)
        for name, a, b_ in zip("qkv", square_grads, blocked_grads):
            torch.testing.assert_close(b_, a, rtol=1e-5, atol=1e-6, msg=name)
    else:  # the blocks' key and value gradients are rounded to bf16 before they are summed
        assert (blocked != square).float().mean() < 0.01
        for name, a, b_ in zip("qkv", square_grads, blocked_grads):
            assert _relative_error([b_], [a]) < 0.01, name


def test_causal_blocks_only_beyond_two_blocks_and_their_length_limit(monkeypatch):
    """The short attention runs in blocks from 2 * block + 1 tokens; it takes sequences up to
    SHORT_LENGTH_BLOCKS where the blocks are on in that precision, SHORT_LENGTH_BF16 / SHORT_LENGTH where not.
    By default the blocks are on in fp32 and off in bf16 (whose published demo was trained without them)."""
    from instructlab.cpu_kernels import short_attention_forward

    assert cpu_kernels.causal_block(torch.float32) > 0 and cpu_kernels.causal_block(torch.bfloat16) == 0
    assert cpu_kernels.short_length(torch.float32) == cpu_kernels.SHORT_LENGTH_BLOCKS
    assert cpu_kernels.short_length(torch.bfloat16) == cpu_kernels.SHORT_LENGTH_BF16
    _small_blocks(monkeypatch)
    calls = _count_blocks(monkeypatch)
    for length in (32, 33):
        module, q, k, v, mask = _attention_case(length, torch.float32)
        short_attention_forward(module, q, k, v, mask)
    assert calls == [(0, 16, 32, 33)]
    monkeypatch.setattr(cpu_kernels, "CAUSAL_BLOCK", {})
    assert cpu_kernels.short_length(torch.float32) == cpu_kernels.SHORT_LENGTH
    assert cpu_kernels.short_length(torch.bfloat16) == cpu_kernels.SHORT_LENGTH_BF16


def test_short_attention_in_bf16_is_the_whole_square_bit_for_bit():
    """The bf16 path (blocks off) computes exactly the square formula the published demo was trained with."""
    from instructlab.cpu_kernels import _MaskedSoftmax, short_attention_forward

    module, q, k, v, mask = _attention_case(200, torch.bfloat16, d=16)
    out, _ = short_attention_forward(module, q, k, v, mask, scaling=0.25)
    b, heads, length, d = q.shape
    scores = ((q * 0.25).reshape(b, 2, 3 * length, d) @ k.transpose(-1, -2)).view(b, 2, 3, length, length)
    probs = _MaskedSoftmax.apply(scores, mask[:, :, None])
    ref = (probs.view(b, 2, 3 * length, length) @ v).view(b, heads, length, d).transpose(1, 2)
    assert torch.equal(out, ref)


def test_short_attention_sends_long_sequences_decoding_and_extras_to_sdpa(monkeypatch):
    import transformers.integrations.sdpa_attention as sdpa

    from instructlab import cpu_kernels as ck

    calls = []
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **kw: calls.append(a[1].shape) or ("sdpa", None))
    module, q, k, v, mask = _attention_case(ck.short_length(torch.float32) + 1, torch.float32, b=1)
    assert ck.short_attention_forward(module, q, k, v, mask)[0] == "sdpa"  # too long
    module, q, k, v, mask = _attention_case(ck.SHORT_LENGTH_BF16 + 1, torch.bfloat16, b=1)
    assert ck.short_attention_forward(module, q, k, v, mask)[0] == "sdpa"  # too long in bf16
    module, q, k, v, mask = _attention_case(ck.SHORT_LENGTH + 1, torch.float32, b=1)
    assert ck.short_attention_forward(module, q[:, :, -1:], k, v, mask[:, :, -1:])[0] == "sdpa"  # decoding
    module, q, k, v, mask = _attention_case(16, torch.float32, b=1)
    assert ck.short_attention_forward(module, q, k, v, mask, dropout=0.1)[0] == "sdpa"
    assert ck.short_attention_forward(module, q, k, v, mask, softcap=30.0)[0] == "sdpa"
    assert ck.short_attention_forward(module, q, k, v, mask.float())[0] == "sdpa"  # an additive mask
    assert ck.short_attention_forward(module, q, k, v, mask.expand(1, 6, 16, 16))[0] == "sdpa"  # a mask per head
    assert len(calls) == 7
    out, _ = ck.short_attention_forward(module, q, k, v, mask)
    assert isinstance(out, torch.Tensor) and len(calls) == 7
    # over the whole square, bf16 takes longer sequences than fp32 (benchmarks/attention_length.py): between the
    # two limits, bf16 only, or fp32 in causal blocks
    assert ck.SHORT_LENGTH < ck.SHORT_LENGTH_BF16 and ck.short_length(torch.float16) == ck.SHORT_LENGTH
    module, q, k, v, mask = _attention_case(ck.SHORT_LENGTH_BF16, torch.bfloat16, b=1)
    out, _ = ck.short_attention_forward(module, q, k, v, mask)
    assert isinstance(out, torch.Tensor) and len(calls) == 7
    blocks = dict(ck.CAUSAL_BLOCK)
    monkeypatch.setattr(ck, "CAUSAL_BLOCK", {})
    module, q, k, v, mask = _attention_case(ck.SHORT_LENGTH + 1, torch.float32, b=1)
    assert ck.short_attention_forward(module, q, k, v, mask)[0] == "sdpa" and len(calls) == 8  # the whole square
    monkeypatch.setattr(ck, "CAUSAL_BLOCK", blocks)
    out, _ = ck.short_attention_forward(module, q, k, v, mask)  # in causal blocks
    assert isinstance(out, torch.Tensor) and len(calls) == 8


@pytest.mark.parametrize("blocks", [False, True])
def test_short_attention_a_row_with_nothing_to_attend_to_gives_no_nan(blocks, monkeypatch):
    from instructlab.cpu_kernels import short_attention_forward

    if blocks:
        _small_blocks(monkeypatch, block=4)
    module, q, k, v, mask = _attention_case(12, torch.bfloat16)
    mask[0, :, :, :4] = False  # left padding: rows 0-3 of sequence 0 attend to nothing
    out, _ = short_attention_forward(module, q, k, v, mask)
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all() and torch.isfinite(q.grad.float()).all()


def test_a_model_with_short_attention_gives_sdpas_logits_and_greedy_answers():
    from instructlab.cpu_kernels import SHORT_ATTENTION, use_short_attention

    tok = models.load_tokenizer(TINY)
    ref = models.load_model(TINY, dtype="float32")
    model = models.load_model(TINY, dtype="float32")
    use_short_attention(model)
    assert model.config._attn_implementation == SHORT_ATTENTION
    tok.padding_side = "left"
    enc = tok(["Dear colleague, the first question", "Hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        a, b = ref(**enc).logits, model(**enc).logits
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(b[real], a[real], rtol=1e-4, atol=1e-5)
    gen = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(ref.generate(**enc, **gen), model.generate(**enc, **gen))


def test_masked_softmax_gives_the_bits_of_masked_fill_then_softmax_and_zero_gradient_on_dead_rows():
    from instructlab.cpu_kernels import _MaskedSoftmax

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        allowed = torch.ones(9, 9, dtype=torch.bool).tril()[None, None, None].expand(2, 1, 1, 9, 9).clone()
        allowed[1, ..., 6:] = False  # right padding
        for dead in (False, True):
            if dead:
                allowed[0, ..., :3, :] = False  # left padding: rows 0-2 of sequence 0 attend to nothing
            scores = torch.randn(2, 3, 2, 9, 9, generator=g).to(dtype)
            grad = torch.randn(2, 3, 2, 9, 9, generator=g).to(dtype)
            results = []
            for fn in (lambda s: torch.softmax(s.masked_fill(~allowed, torch.finfo(dtype).min), -1),
                       lambda s: _MaskedSoftmax.apply(s, allowed)):
                leaf = scores.clone().requires_grad_(True)
                out = fn(leaf * 1)  # a non-leaf, as the scores are in attention
                out.backward(grad)
                results.append((out.detach(), leaf.grad))
            (ref_out, ref_grad), (out, got) = results
            assert torch.equal(out, ref_out) and torch.equal(got, ref_grad), (dtype, dead)
            assert ref_grad[~allowed.expand_as(ref_grad)].abs().max() == 0
            assert got.abs().sum() > 0
