"""Fused element-wise kernels for LoRA training on a CPU, compiled from C at first use.

A Llama-family decoder layer's RMSNorm, SwiGLU gating and rotary embedding are a dozen PyTorch operations each
(forward and backward), every one a pass over its tensor and an autograd node, for almost no arithmetic. On a
training step of SmolLM2-135M (batch 4, bf16) they took about a fifth of the step. ``csrc/cpu_fused.c`` does
each in one pass, rounding where PyTorch's bf16 operations round, so that the results are PyTorch's: the same
bits for SwiGLU and the rotary embedding, forward and backward; RMSNorm sums each row in another order (a bf16
rounding differs on about 1 element in 10,000, forward and backward). Tested against PyTorch's in
``tests/test_cpu_fused.py``; on SmolLM2 the loss and LoRA gradients are as close to the fp32 computation as
PyTorch's bf16 operations' are.

The C file is compiled once per machine and PyTorch install with the system's C compiler (``$CC``, else ``cc``
or ``gcc``: ``-O3 -march=native``, about a second; ``INSTRUCTLAB_CPU_FUSED_MARCH`` names another ``-march``
target, such as ``haswell`` for a CPU with AVX2 alone) into ``cache_dir()`` and loaded with ``ctypes``. Its loops use
PyTorch's own OpenMP runtime (the ``libgomp`` in torch's ``lib`` folder), so they run on PyTorch's threads and
follow ``torch.set_num_threads``. Without a compiler, or with ``INSTRUCTLAB_CPU_FUSED=0``, nothing changes:
:func:`library` returns None, :func:`status` says why, and the model keeps PyTorch's operations.

:func:`use_fused_elementwise` switches a model's RMSNorm and MLP modules (transformers' Llama classes, exactly)
to the fused forward; :func:`fused_rotary` swaps transformers' ``apply_rotary_pos_emb`` while training (the
kit's trainer enters it around its loss). The fused path runs only where gradients are recorded (a training
forward) on CPU tensors in bf16 or fp32 with a frozen norm weight; anything else, evaluation and generation
included, runs PyTorch's operations unchanged. The exception is :func:`fused_generation`, which the kit enters
around bf16 generation: there RMSNorm (:func:`rms_norm_exact`, a kernel that sums in PyTorch's order), SwiGLU
and the rotary embedding run compiled kernels without gradients, with PyTorch's bits. One kernel is not
element-wise: :func:`decode_attention`, a decoding step's attention for the whole batch in one call, each
sequence alone on its keys (``cpu_kernels.batch_invariant``'s attention runs it on bf16); it rounds its own way,
not SDPA's, so switching the kernels off changes some bf16 answers (each path gives the same answers at any
batch size). In training, :func:`masked_softmax` computes the short attention's masked softmax (forward and
backward, each row up to its last allowed key) while :func:`fused_softmax` is active: the kit's trainer enters
it around its loss. And one is a matmul: :func:`amx_linear`, a decoding step's bf16 linear layers on AMX tiles
(Intel CPUs with ``amx_bf16``), which ``cpu_kernels.batch_invariant`` runs where a once-per-process probe
(:func:`amx_matches_plain`) finds it gives ``F.linear``'s bits: the same answers, in less time.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import types
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = ["SOURCE", "DISABLE_ENV", "MARCH_ENV", "library", "status", "rms_norm", "swiglu", "rotary", "use_fused_elementwise",
           "fused_modules", "fused_rotary", "masked_softmax", "masked_softmax_rows", "fused_softmax", "fused_generation", "rms_norm_exact", "decode_attention",
           "decode_bounds", "amx_fits", "amx_pack", "amx_linear", "amx_matches_plain"]

SOURCE = Path(__file__).with_name("csrc") / "cpu_fused.c"
DISABLE_ENV = "INSTRUCTLAB_CPU_FUSED"  # "0" (or "false", "no", "off") keeps PyTorch's operations
# the compiler's -march target (default "native": this CPU); e.g. "haswell" or "x86-64-v3" builds the AVX2 code a
# CPU without AVX-512 runs, "x86-64-v4" AVX-512, for a cache shared by machines or to measure another kind's code
MARCH_ENV = "INSTRUCTLAB_CPU_FUSED_MARCH"
_SUFFIX = {torch.bfloat16: "bf16", torch.float32: "f32"}
_reason = "not built yet"


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("0", "false", "no", "off")


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _torch_openmp() -> Path | None:
    """PyTorch's bundled GNU OpenMP runtime (Linux wheels), which the kernels link so as to share its threads."""
    found = sorted((Path(torch.__file__).parent / "lib").glob("libgomp*.so*"))
    return found[0] if found else None


def _march() -> str:
    """The ``-march`` target: :data:`MARCH_ENV`, else ``native``."""
    march = os.environ.get(MARCH_ENV, "").strip() or "native"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", march):
        raise ValueError(f"{MARCH_ENV}={march!r} is not a compiler -march target: use a name such as native, "
                         "haswell, x86-64-v3 or x86-64-v4 (letters, digits, '.', '_', '+', '-'), or unset it")
    return march


# the compiler's predefined macros for an x86 target's instruction sets, and the /proc/cpuinfo flag of each
_X86_FEATURES = {"__AVX__": "avx", "__AVX2__": "avx2", "__FMA__": "fma", "__F16C__": "f16c", "__BMI__": "bmi1",
                 "__BMI2__": "bmi2", "__AVX512F__": "avx512f", "__AVX512BW__": "avx512bw", "__AVX512VL__": "avx512vl",
                 "__AVX512DQ__": "avx512dq", "__AVX512CD__": "avx512cd", "__AVX512VNNI__": "avx512_vnni",
                 "__AVX512BF16__": "avx512_bf16", "__AVX512FP16__": "avx512fp16", "__AMX_TILE__": "amx_tile",
                 "__AMX_BF16__": "amx_bf16"}


def _check_target(compiler: str, march: str, cpu_flags: set[str]) -> None:
    """Refuse a named ``-march`` target that the compiler does not know (rather than quietly building the
    portable fallback), or whose instruction sets this CPU (``cpu_flags``, as /proc/cpuinfo lists them) lacks:
    the library would build, and then stop the process with an illegal instruction at its first call. The
    instruction sets are checked on x86 where the flags are known, from the compiler's predefined macros."""
    if march == "native":
        return
    run = subprocess.run([compiler, f"-march={march}", "-dM", "-E", "-x", "c", os.devnull],
                         capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise ValueError(f"{MARCH_ENV}={march!r}: the C compiler ({compiler}) does not take this -march target: "
                         f"{(run.stderr.strip().splitlines() or ['no message'])[0][:300]}")
    if platform.machine() not in ("x86_64", "AMD64") or "avx" not in cpu_flags:
        return
    defined = {line.split()[1] for line in run.stdout.splitlines() if line.startswith("#define ")}
    missing = sorted(flag for macro, flag in _X86_FEATURES.items() if macro in defined and flag not in cpu_flags)
    if missing:
        raise ValueError(f"{MARCH_ENV}={march!r} targets instruction sets this CPU does not have ({', '.join(missing)}): "
                         "the compiled kernels would stop the process with an illegal instruction. Unset it (the "
                         "kernels are then built for this CPU), or name a target this CPU runs, such as haswell")


def _flag_sets(openmp: Path | None) -> list[list[str]]:
    """Compiler flags to try, best first: tuned (``-march``, see :data:`MARCH_ENV`) and on PyTorch's threads,
    then portable, then on one thread (a compiler without OpenMP: the loops still vectorize, ``-fopenmp-simd``)."""
    base = ["-O3", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
            "-Wno-unknown-pragmas"]
    march = _march()
    wide = march == "native" and platform.machine() in ("x86_64", "AMD64")  # 512-bit vectors where AVX-512 is
    tuned = [f"-march={march}"] + (["-mprefer-vector-width=512"] if wide else [])
    serial = base + tuned + ["-fopenmp-simd"]
    if openmp is None:
        return [serial, base + ["-fopenmp-simd"]]
    # linked by the soname PyTorch already loaded: one OpenMP runtime in the process, one thread pool
    threaded = base + ["-fopenmp", f"-L{openmp.parent}", f"-l:{openmp.name}", f"-Wl,-rpath,{openmp.parent}"]
    return [threaded + tuned, threaded, serial]


def _build(compiler: str, openmp: Path | None) -> Path:
    """The compiled library for this source, compiler, CPU and PyTorch: from the cache, or built now. Beside it,
    ``<name>.flags`` holds the flags that built it (see :func:`_built_with`)."""
    from .models import _cpu_info, _file_lock, _heartbeat, cache_dir

    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    flag_sets = _flag_sets(openmp)
    cpu_model, cpu_flags = _cpu_info()
    _check_target(compiler, _march(), cpu_flags)
    key = hashlib.sha256(repr((source, compiler, version, flag_sets, cpu_model, sorted(cpu_flags), torch.__version__,
                               platform.machine(), "flags recorded")).encode()).hexdigest()[:16]
    folder = cache_dir() / "cpu_fused"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"cpu_fused-{key}.so"
    with _file_lock(folder / ".lock"):
        if target.exists():
            return target
        errors = []
        with _heartbeat("compiling the fused CPU kernels (instructlab/csrc/cpu_fused.c, once per machine and PyTorch)"):
            for flags in flag_sets:
                with tempfile.TemporaryDirectory(dir=folder) as tmp:
                    built = Path(tmp) / target.name
                    run = subprocess.run([compiler, *flags, str(SOURCE), "-o", str(built), "-lm"],
                                         capture_output=True, text=True, timeout=300)
                    if run.returncode == 0:
                        target.with_suffix(".flags").write_text(" ".join(flags) + "\n")
                        os.replace(built, target)
                        return target
                    errors.append(f"{' '.join(flags)}: {run.stderr.strip()[-500:]}")
        raise RuntimeError("the C compiler failed: " + " | ".join(errors))


def _built_with(path: Path) -> str:
    """How the library at ``path`` was built, in a few words: its ``-march`` target, or portable; one thread
    where it has no OpenMP."""
    try:
        flags = (path.with_suffix(".flags")).read_text().split()
    except OSError:
        return "build flags not recorded"
    march = next((f for f in flags if f.startswith("-march=")), "portable, no -march")
    return march + ("" if "-fopenmp" in flags else ", one thread (no OpenMP)")


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, n, f = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    for suffix in _SUFFIX.values():
        getattr(lib, f"rmsnorm_forward_{suffix}").argtypes = [p, p, p, p, n, n, f]
        getattr(lib, f"rmsnorm_backward_{suffix}").argtypes = [p, p, p, p, p, n, n]
        getattr(lib, f"swiglu_forward_{suffix}").argtypes = [p, p, p, n]
        getattr(lib, f"swiglu_backward_{suffix}").argtypes = [p, p, p, p, p, n]
        for kind in ("forward", "backward"):
            getattr(lib, f"rope_{kind}_{suffix}").argtypes = [p, p, p, p] + [n] * 12
        getattr(lib, f"masked_softmax_forward_{suffix}").argtypes = [p, p, p, n, n, n, n]
        getattr(lib, f"masked_softmax_backward_{suffix}").argtypes = [p, p, p, p, n, n, n, n]
    lib.rmsnorm_forward_exact_bf16.argtypes = [p, p, p, n, n, f, n]
    lib.decode_attention_bf16.argtypes = [p] * 6 + [n] * 11 + [f]
    lib.decode_attention_bf16.restype = ctypes.c_int
    lib.sum_of_squares_bf16.argtypes = [p, p, n, n, n]
    lib.amx_linear_available.restype = ctypes.c_int
    lib.amx_pack_bf16.argtypes = [p, p, n, n]
    lib.amx_pack_bf16.restype = None
    lib.amx_linear_bf16.argtypes = [p, p, p, n, n, n]
    lib.amx_linear_bf16.restype = ctypes.c_int
    names = [f"{k}_{s}" for k in ("rmsnorm_forward", "rmsnorm_backward", "swiglu_forward", "swiglu_backward",
                                  "rope_forward", "rope_backward", "masked_softmax_forward",
                                  "masked_softmax_backward") for s in _SUFFIX.values()]
    for name in names + ["rmsnorm_forward_exact_bf16", "sum_of_squares_bf16"]:
        getattr(lib, name).restype = None
    lib.fused_threads.restype = ctypes.c_int
    return lib


@functools.cache
def _load() -> ctypes.CDLL | None:
    global _reason
    if sys.platform == "win32":
        _reason = "not built on Windows"
        return None
    compiler = _compiler()
    if compiler is None:
        _reason = "no C compiler found (set CC, or install gcc)"
        return None
    try:
        path = _build(compiler, _torch_openmp())
        lib = _declare(ctypes.CDLL(str(path)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _reason = f"could not be built or loaded: {exc}"
        warnings.warn(f"instructlab.cpu_fused: the fused CPU kernels {_reason}; training keeps PyTorch's "
                      "operations", RuntimeWarning, stacklevel=3)
        return None
    _reason = f"compiled ({lib._name}, {_built_with(path)}, {lib.fused_threads()} threads now)"
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled kernels (built on first call), or None where they are off or cannot be built
    (:func:`status` says why)."""
    return None if _disabled() else _load()


def status(model: torch.nn.Module | None = None) -> str:
    """One line: whether the fused kernels are in use, and why not where they are not. Given ``model``, whether
    *its* training uses them: off where none of its modules was switched to them (not a Llama-family model, or
    kernels not turned on for it: see :func:`use_fused_elementwise`), without building them for nothing."""
    if _disabled():
        return f"off ({DISABLE_ENV}={os.environ[DISABLE_ENV]})"
    if model is not None and not fused_modules(model):
        return "off: none of this model's modules was switched to them (Llama-family RMSNorm and MLP only)"
    return ("on: " if _load() is not None else "off: ") + _reason


def _usable(*tensors: torch.Tensor, grad: bool = True) -> ctypes.CDLL | None:
    """The library, when these tensors are for it: CPU, one dtype it has kernels for, a graph being recorded
    (``grad=False``: none being recorded, as in generation)."""
    # a plain loop, no generator: this runs several times per layer and decoding step
    first = tensors[0]
    dtype = first.dtype
    if torch.is_grad_enabled() != grad or dtype not in _SUFFIX:
        return None
    for t in tensors:
        if t.dtype != dtype or not t.is_cpu:
            return None
    return library()


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


# ----------------------------------------------------------------------------- RMSNorm

class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, lib):  # type: ignore[override]
        x = x.contiguous()
        d = x.shape[-1]
        rows = x.numel() // d
        y = torch.empty_like(x)
        rstd = torch.empty(rows, dtype=torch.float32)
        getattr(lib, f"rmsnorm_forward_{_SUFFIX[x.dtype]}")(_ptr(x), _ptr(weight), _ptr(y), _ptr(rstd), rows, d, eps)
        ctx.save_for_backward(x, weight, rstd)
        ctx.lib = lib
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight, rstd = ctx.saved_tensors
        grad = grad.contiguous()
        dx = torch.empty_like(x)
        d = x.shape[-1]
        getattr(ctx.lib, f"rmsnorm_backward_{_SUFFIX[x.dtype]}")(_ptr(grad), _ptr(x), _ptr(weight), _ptr(rstd),
                                                                _ptr(dx), x.numel() // d, d)
        return dx, None, None, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor | None:
    """transformers' ``LlamaRMSNorm`` (``weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype)``, computed in fp32)
    as one fused operation, or None where it does not apply (then run the module's own forward): the weight must
    be frozen and of x's dtype."""
    lib = _usable(x, weight)
    if lib is None or weight.requires_grad or weight.shape != x.shape[-1:]:
        return None
    return _RMSNorm.apply(x, weight.contiguous(), float(eps), lib)


# ----------------------------------------------------------------------------- SwiGLU

def _swiglu_out(lib: ctypes.CDLL, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(``silu(gate) * up``, contiguous gate, contiguous up): the kernel's forward alone."""
    gate, up = gate.contiguous(), up.contiguous()
    out = torch.empty_like(gate)
    getattr(lib, f"swiglu_forward_{_SUFFIX[gate.dtype]}")(_ptr(gate), _ptr(up), _ptr(out), gate.numel())
    return out, gate, up


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up, lib):  # type: ignore[override]
        out, gate, up = _swiglu_out(lib, gate, up)
        ctx.save_for_backward(gate, up)
        ctx.lib = lib
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        gate, up = ctx.saved_tensors
        grad = grad.contiguous()
        d_gate, d_up = torch.empty_like(gate), torch.empty_like(up)
        getattr(ctx.lib, f"swiglu_backward_{_SUFFIX[gate.dtype]}")(_ptr(grad), _ptr(gate), _ptr(up), _ptr(d_gate),
                                                                   _ptr(d_up), gate.numel())
        return d_gate, d_up, None


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor | None:
    """``silu(gate) * up`` as one fused operation, or None where it does not apply (same shapes needed)."""
    lib = _usable(gate, up)
    if lib is None or gate.shape != up.shape:
        return None
    return _SwiGLU.apply(gate, up, lib)


# ----------------------------------------------------------------------------- rotary embedding

def _rope_args(x: torch.Tensor, cos: torch.Tensor, out: torch.Tensor) -> list[int]:
    b, heads, length, d = x.shape
    return [b, heads, length, d, *x.stride()[:3], *out.stride()[:3], cos.stride(0), cos.stride(1)]


def _rotary_out(lib: ctypes.CDLL, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)  # x's layout (a transposed view of the projection), as PyTorch's result has
    getattr(lib, f"rope_forward_{_SUFFIX[x.dtype]}")(_ptr(x), _ptr(cos), _ptr(sin), _ptr(out),
                                                     *_rope_args(x, cos, out))
    return out


class _Rotary(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin, lib):  # type: ignore[override]
        out = _rotary_out(lib, x, cos, sin)
        ctx.save_for_backward(cos, sin)
        ctx.lib = lib
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        cos, sin = ctx.saved_tensors
        if grad.stride(-1) != 1:
            grad = grad.contiguous()
        dx = torch.empty_like(grad)
        getattr(ctx.lib, f"rope_backward_{_SUFFIX[grad.dtype]}")(_ptr(grad), _ptr(cos), _ptr(sin), _ptr(dx),
                                                                 *_rope_args(grad, cos, dx))
        return dx, None, None, None


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor | None:
    """transformers' rotary embedding of one tensor, ``x * cos + rotate_half(x) * sin`` with ``x`` of shape
    ``b x heads x length x d`` and ``cos``, ``sin`` of shape ``b x length x d`` (``unsqueeze_dim=1``), as one
    fused operation; None where it does not apply (then run transformers' function)."""
    lib = _usable(x, cos, sin)
    if lib is None or not _rotary_shapes(x, cos, sin):
        return None
    return _Rotary.apply(x, *_per_sequence(x, cos, sin), lib)


def _per_sequence(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` with one entry per sequence of ``x`` (one set of positions may serve the whole batch)."""
    if cos.shape[0] != x.shape[0]:
        cos, sin = cos.expand(x.shape[0], -1, -1), sin.expand(x.shape[0], -1, -1)
    return cos, sin


def _rotary_shapes(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> bool:
    """Whether the rotary kernel takes these shapes and layouts (see :func:`rotary`)."""
    return not (x.dim() != 4 or cos.dim() != 3 or cos.shape != sin.shape or x.shape[-1] % 2
                or cos.shape[-1] != x.shape[-1] or cos.shape[1] != x.shape[2] or cos.shape[0] not in (1, x.shape[0])
                or x.stride(-1) != 1 or cos.stride() != sin.stride() or cos.stride(-1) != 1)


@contextlib.contextmanager
def fused_rotary(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """While active, transformers' ``apply_rotary_pos_emb`` of ``model``'s modeling module (Llama-family models
    only) computes through :func:`rotary` where it applies; transformers' function is restored on exit.

    Args:
        model: the model (or a PeftModel around it) whose attention calls ``apply_rotary_pos_emb``.
        enabled: False leaves transformers' function (a no-op context).
    """
    module = _llama_module(model) if enabled else None
    original = getattr(module, "apply_rotary_pos_emb", None)
    if original is None or getattr(original, "_instructlab_fused", False):
        yield
        return

    def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
        if unsqueeze_dim == 1:
            q_out, k_out = rotary(q, cos, sin), rotary(k, cos, sin)
            if q_out is not None and k_out is not None:
                return q_out, k_out
        return original(q, k, cos, sin, unsqueeze_dim)

    apply_rotary_pos_emb._instructlab_fused = True  # type: ignore[attr-defined]
    module.apply_rotary_pos_emb = apply_rotary_pos_emb
    try:
        yield
    finally:
        module.apply_rotary_pos_emb = original


# ----------------------------------------------------------------------------- attention's masked softmax

def _softmax_forward(lib: ctypes.CDLL, scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The compiled masked softmax of ``scores`` (contiguous ``[b, ..., q, n]``) under ``allowed`` (``[b, q, n]``
    bytes), no graph."""
    q, n = scores.shape[-2:]
    probs = torch.empty_like(scores)
    getattr(lib, f"masked_softmax_forward_{_SUFFIX[scores.dtype]}")(
        _ptr(scores), _ptr(allowed), _ptr(probs), scores.numel() // n, q, n, scores.numel() // (allowed.numel()))
    return probs


def _softmax_backward(lib: ctypes.CDLL, grad: torch.Tensor, probs: torch.Tensor, allowed: torch.Tensor,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """The scores' gradient from the probabilities' (``grad``, contiguous), into ``out`` (which may be ``grad``
    itself: each element is read before it is written) or a new tensor."""
    q, n = probs.shape[-2:]
    out = torch.empty_like(probs) if out is None else out
    getattr(lib, f"masked_softmax_backward_{_SUFFIX[probs.dtype]}")(
        _ptr(grad), _ptr(probs), _ptr(allowed), _ptr(out), probs.numel() // n, q, n, probs.numel() // allowed.numel())
    return out


class _MaskedSoftmaxFused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, allowed, lib):  # type: ignore[override]
        probs = _softmax_forward(lib, scores, allowed)
        ctx.save_for_backward(probs, allowed)
        ctx.lib = lib
        return probs

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        probs, allowed = ctx.saved_tensors
        return _softmax_backward(ctx.lib, grad.contiguous(), probs, allowed), None, None


_SOFTMAX_MAX_KEYS = 8192  # the kernel keeps a row's terms on its thread's stack (2 floats a key)


class _SoftmaxSwitch(threading.local):
    on = False


_SOFTMAX = _SoftmaxSwitch()


@contextlib.contextmanager
def fused_softmax(enabled: bool = True) -> Iterator[None]:
    """While active (in this thread), :func:`masked_softmax` computes (where it applies); the kit's trainer enters
    it around its loss, with :func:`fused_rotary`. ``enabled=False``: a no-op context."""
    before = _SOFTMAX.on
    _SOFTMAX.on = before or enabled
    try:
        yield
    finally:
        _SOFTMAX.on = before


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor | None:
    """Attention's ``softmax(scores.masked_fill(~allowed, min))`` over the keys, forward and backward in one pass
    each (``masked_softmax_*`` in ``csrc/cpu_fused.c``), or None where it does not apply (then compute it
    otherwise): outside :func:`fused_softmax`, no graph being recorded, not CPU bf16/fp32, or shapes it does not
    take (more than 8,192 keys among them; the kit's short attention stops at
    ``cpu_kernels.short_length``: 512 tokens), or more queries than keys.

    Each row is reduced in fp32 and rounded once, as PyTorch's softmax is (its ``exp`` is the kernels' own, within 2
    ulp of ``expf``, so some probabilities differ from PyTorch's by a bf16 rounding); a masked key's probability
    and gradient are exactly 0, and a row with no allowed key is uniform with a zero gradient, as the kit's
    two-step version gives them (``cpu_kernels._MaskedSoftmax``). The loops stop at each row's last allowed key:
    under a causal mask about half of the scores are never read.

    Args:
        scores: ``[b, ..., queries, keys]``, contiguous: the whole square (``queries == keys``), or a block of
            queries over the keys they may see (``queries < keys``; with ``keys`` a multiple of 16, each row gets
            the bits it gets in the whole square: see ``csrc/cpu_fused.c``).
        allowed: bool, ``[b, 1, ..., 1, queries, keys]``: which keys each query of sequence i may see, the same
            for all of its heads; or ``[queries, keys]``, the same for every sequence.
    """
    found = _softmax_kernel(scores, allowed, grad=True)
    return None if found is None else _MaskedSoftmaxFused.apply(scores, found[1], found[0])


def masked_softmax_rows(scores: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, Any] | None:
    """:func:`masked_softmax` without a graph, for code that computes its own backward (the short attention's
    causal blocks): ``(probs, backward)``, where ``backward(grad)`` turns the probabilities' gradient (contiguous;
    it is overwritten) into the scores'; or None where the kernel does not apply (outside
    :func:`fused_softmax`, not CPU bf16/fp32, shapes it does not take). Runs with or without grad mode."""
    found = _softmax_kernel(scores, allowed, grad=torch.is_grad_enabled())
    if found is None:
        return None
    lib, flat = found
    probs = _softmax_forward(lib, scores, flat)
    return probs, lambda grad: _softmax_backward(lib, grad, probs, flat, out=grad)


def _softmax_kernel(scores: torch.Tensor, allowed: torch.Tensor, grad: bool) -> tuple[ctypes.CDLL, torch.Tensor] | None:
    """The library and ``allowed`` as the kernel's ``[b, q, n]`` bytes, where it applies (see
    :func:`masked_softmax`); ``grad``: whether a graph must be being recorded (True) or must not (False)."""
    if not _SOFTMAX.on:
        return None
    lib = _usable(scores, grad=grad)
    q, n = scores.shape[-2:]
    if allowed.dim() == 2 and scores.dim() >= 3:  # one mask for every sequence (a causal mask without padding)
        allowed = allowed.view((1,) * (scores.dim() - 2) + allowed.shape).expand(
            (scores.shape[0],) + (1,) * (scores.dim() - 3) + allowed.shape)
    if (lib is None or scores.dim() < 3 or q > n or n > _SOFTMAX_MAX_KEYS or not scores.is_contiguous()
            or allowed.dtype != torch.bool or allowed.dim() != scores.dim() or allowed.shape[0] != scores.shape[0]
            or allowed.shape[-2:] != scores.shape[-2:] or any(x != 1 for x in allowed.shape[1:-2])):
        return None
    return lib, allowed.reshape(allowed.shape[0], q, n).contiguous().view(torch.uint8)


# ----------------------------------------------------------------------------- the model's modules

def _llama_module(model: torch.nn.Module) -> Any:
    """transformers' modeling module for Llama when ``model`` is a Llama model (SmolLM2 is one), else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    from transformers.models.llama import modeling_llama

    return modeling_llama if isinstance(base, modeling_llama.LlamaPreTrainedModel) else None


def _fused_norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    out = rms_norm(hidden_states, self.weight, self.variance_epsilon)
    return out if out is not None else super(type(self), self).forward(hidden_states)


def _is_silu(act_fn: Any) -> bool:
    return type(act_fn) is torch.nn.SiLU or type(act_fn).__name__ == "SiLUActivation"


def _fused_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    if not _is_silu(self.act_fn) or _usable(x) is None:  # decided before the projections, so that none runs twice
        return super(type(self), self).forward(x)
    gate, up = self.gate_proj(x), self.up_proj(x)
    gated = swiglu(gate, up)
    return self.down_proj(gated if gated is not None else self.act_fn(gate) * up)


@functools.cache
def _fused_class(original: type, forward: Any) -> type:
    """``original`` with the fused ``forward``: a subclass, so that models pickle and copy as usual."""
    name = f"Fused{original.__name__}"
    return type(name, (original,), {"forward": forward, "__module__": __name__, "__qualname__": name})


def _module_classes() -> dict[type, Any]:
    from transformers.models.llama import modeling_llama

    return {modeling_llama.LlamaRMSNorm: _fused_norm_forward, modeling_llama.LlamaMLP: _fused_mlp_forward}


def use_fused_elementwise(model: torch.nn.Module, enabled: bool = True) -> int:
    """Give ``model``'s RMSNorm and MLP modules (transformers' ``LlamaRMSNorm`` and ``LlamaMLP``, exactly: not
    subclasses, nor other families' modules) the fused forward (``enabled=False``: their own again).

    The fused forward runs only where it applies (see the module docstring) and otherwise calls the module's own;
    rotary embeddings are not modules: :func:`fused_rotary` covers them.

    Returns:
        How many modules now have the requested forward.
    """
    classes = _module_classes()
    changed = 0
    for module in model.modules():
        original = next((c for c in classes if type(module) in (c, _fused_class(c, classes[c]))), None)
        if original is not None:
            module.__class__ = _fused_class(original, classes[original]) if enabled else original
            changed += 1
    return changed


def fused_modules(model: torch.nn.Module) -> int:
    """How many of ``model``'s modules have the fused forward (see :func:`use_fused_elementwise`)."""
    fused = {_fused_class(original, forward) for original, forward in _module_classes().items()}
    return sum(type(m) in fused for m in model.modules())


# ----------------------------------------------------------------------------- generation

@functools.lru_cache(maxsize=None)
def _sum_lanes() -> int | None:
    """How many fp32 lanes PyTorch's sum kernel adds in here (its vector width: 8 on the AVX512 machine
    measured, whose sum kernel is PyTorch's AVX2 one), found once per process by matching the kernel's sums
    of squares, bit for bit, with ``x.float().pow(2).sum(-1)`` on random rows of several lengths; None (the
    exact RMSNorm unused) where no width gives PyTorch's sums."""
    lib = library()
    if lib is None:
        return None
    gen = torch.Generator().manual_seed(0)
    cases = []
    for d in (40, 200, 576, 2051, 9000):  # shorter than a vector, a few, many (the cascade's levels), odd tails
        x = (torch.randn(16, d, generator=gen) * 30).to(torch.bfloat16)
        cases.append((x, x.float().pow(2).sum(-1)))
    for lanes in (16, 8, 4, 1):
        def same(x, ref, lanes=lanes):
            out = torch.empty(x.shape[0], dtype=torch.float32)
            lib.sum_of_squares_bf16(_ptr(x), _ptr(out), x.shape[0], x.shape[1], lanes if x.shape[1] >= lanes else 1)
            return torch.equal(out, ref)
        if all(same(*case) for case in cases):
            return lanes
    return None


def rms_norm_exact(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor | None:
    """transformers' ``LlamaRMSNorm`` forward on bf16 tensors, without gradients, with PyTorch's bits: the row's
    sum of squares in at::sum's own order (its cascade over vectors of the width :func:`_sum_lanes` found),
    so the kernel can stand in for the module in generation. None where it does not apply: gradients recorded,
    not bf16 on CPU, or no vector width that gives PyTorch's bits."""
    lib = _usable(x, weight, grad=False)
    if lib is None or x.dtype != torch.bfloat16 or weight.shape != x.shape[-1:] or not x.numel():
        return None
    lanes = _sum_lanes()
    if lanes is None:
        return None
    x, weight = x.contiguous(), weight.contiguous()
    d = x.shape[-1]
    y = torch.empty_like(x)
    lib.rmsnorm_forward_exact_bf16(_ptr(x), _ptr(weight), _ptr(y), x.numel() // d, d, float(eps),
                                   lanes if d >= lanes else 1)  # a row shorter than a vector: the scalar path
    return y


def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bounds: torch.Tensor,
                     scale: float) -> torch.Tensor | None:
    """A decoding step's attention in bf16, each sequence alone on its own keys, in a summation order fixed by
    the code (``decode_attention_bf16`` in ``csrc/cpu_fused.c``), so a sequence's result has the same bits in any
    batch, at any offset of the cache, on any number of threads. One call for the whole batch, where PyTorch's
    SDPA would need a call per sequence to give those guarantees.

    Args:
        query: ``[b, kv_heads, groups, d]``: per sequence and key/value head, the query heads that share it.
        key, value: ``[b, kv_heads, slots, d]`` (a static cache's tensors), their last dimension contiguous.
        bounds: ``[2, b]`` int64: sequence i's keys are the slots ``bounds[0, i]`` to ``bounds[1, i] - 1``
            (:func:`decode_bounds` makes it from two lists).
        scale: the scores' factor (``1 / sqrt(d)`` for most models).
    Returns:
        ``[b, kv_heads, groups, d]`` in bf16, or None where the kernel does not apply (not bf16 on CPU, gradients
        recorded, strides, sizes or key ranges it does not take, the kernels off): the caller then computes it
        otherwise.
    """
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad):
        return None  # no backward here
    lib = _usable(query, key, value, grad=torch.is_grad_enabled())
    b, kv_heads, groups, d = query.shape
    if (lib is None or query.dtype != torch.bfloat16 or key.shape[:2] != (b, kv_heads) or value.shape != key.shape
            or key.shape[-1] != d or key.stride(-1) != 1 or value.stride(-1) != 1 or bounds.dtype != torch.int64
            or bounds.shape != (2, b) or not bounds.is_contiguous()):
        return None
    query = query.contiguous()
    out = torch.empty_like(query)
    k_strides, v_strides = key.stride(), value.stride()
    lo = bounds.data_ptr()
    if lib.decode_attention_bf16(query.data_ptr(), key.data_ptr(), value.data_ptr(), out.data_ptr(), lo, lo + 8 * b,
                                 b, kv_heads, groups, d, key.shape[2], k_strides[0], k_strides[1], k_strides[2],
                                 v_strides[0], v_strides[1], v_strides[2], float(scale)) != 0:
        return None  # more query heads per key/value head or larger heads than it holds, or a range off the cache
    return out


def amx_fits(weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether :func:`amx_linear` takes this linear layer: a bf16 CPU weight without bias, ``out_features`` a
    multiple of 64 and ``in_features`` of 32, on a machine where :func:`amx_matches_plain`."""
    return (bias is None and weight.dtype == torch.bfloat16 and weight.dim() == 2 and weight.is_cpu
            and weight.shape[0] % 64 == 0 and weight.shape[1] % 32 == 0
            and library() is not None and amx_matches_plain())  # the kernels may be turned off since the probe


def amx_pack(weight: torch.Tensor) -> torch.Tensor | None:
    """``weight`` (``out x in``, bf16) laid out in AMX tiles for :func:`amx_linear` (where :func:`amx_fits`);
    None where the kernels are off."""
    lib = library()
    if lib is None:
        return None
    w = weight.detach().contiguous()
    packed = torch.empty_like(w)
    lib.amx_pack_bf16(w.data_ptr(), packed.data_ptr(), w.shape[0], w.shape[1])
    return packed


def amx_linear(rows: torch.Tensor, packed: torch.Tensor) -> torch.Tensor | None:
    """``F.linear(rows, weight)`` for bf16 ``rows`` (``m x in``: at most 16 rows, or a multiple of 16) and the
    weight :func:`amx_pack` laid out, on AMX tiles (``amx_linear_bf16`` in ``csrc/cpu_fused.c``); the same bits
    as ``F.linear`` at up to 16 rows where :func:`amx_matches_plain`. None where the kernel does not take these
    rows."""
    lib = library()
    if lib is None or rows.dtype != torch.bfloat16 or rows.dim() != 2 or rows.shape[1] != packed.shape[1]:
        return None
    rows = rows.contiguous()
    out = rows.new_empty(rows.shape[0], packed.shape[0])
    if lib.amx_linear_bf16(rows.data_ptr(), packed.data_ptr(), out.data_ptr(), rows.shape[0], packed.shape[1],
                           packed.shape[0]) != 0:
        return None
    return out


@functools.lru_cache(maxsize=None)
def amx_matches_plain() -> bool:
    """Whether the AMX linear kernel runs here (a CPU with AMX, a library built for it, Linux's permission for
    the tiles) and gives ``F.linear``'s bits: probed once per process on random bf16 data at the rows of a
    decoding step's blocks (``cpu_kernels.INVARIANT_ROWS``, 16) and fewer, at SmolLM2's shapes. Where it does
    not, generation keeps oneDNN's call (the same bits). At a prompt's 128 rows oneDNN sums some products in
    another order (2 to 9 of 24,576 to 73,728 outputs differed, measured on the AMX machine), so prompts keep
    oneDNN's call."""
    lib = library()
    if lib is None or lib.amx_linear_available() != 0:
        return False
    gen = torch.Generator().manual_seed(0)
    for n_in, n_out in ((64, 64), (576, 192), (1536, 576)):
        w = (torch.randn(n_out, n_in, generator=gen) * 0.05).to(torch.bfloat16)
        packed = amx_pack(w)
        for rows in (1, 3, 16):
            x = torch.randn(rows, n_in, generator=gen).to(torch.bfloat16)
            out = amx_linear(x, packed)
            if out is None or not torch.equal(out, torch.nn.functional.linear(x, w)):
                return False
    return True


def decode_bounds(lo: list[int], hi: list[int]) -> torch.Tensor:
    """The ``bounds`` argument of :func:`decode_attention`: ``[2, b]`` int64 from the first and one-past-last
    key slot of each sequence."""
    return torch.tensor([lo, hi], dtype=torch.int64)


def _generation_norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """An RMSNorm module's forward inside :func:`fused_generation` (see :func:`rms_norm_exact`)."""
    out = rms_norm_exact(hidden_states, self.weight, self.variance_epsilon)
    return out if out is not None else type(self).forward(self, hidden_states)


def _generation_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    """An MLP module's forward inside :func:`fused_generation`: the gating by the kernel where no gradient is
    recorded, else the module's own forward."""
    lib = _usable(x, grad=False) if _is_silu(self.act_fn) and x.dtype == torch.bfloat16 else None
    if lib is None:
        return type(self).forward(self, x)
    gate, up = self.gate_proj(x), self.up_proj(x)
    if gate.shape != up.shape or gate.dtype != up.dtype or gate.dtype != x.dtype:
        return self.down_proj(self.act_fn(gate) * up)
    return self.down_proj(_swiglu_out(lib, gate, up)[0])


@contextlib.contextmanager
def fused_generation(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """While active, ``model``'s RMSNorms, SwiGLU gatings and rotary embeddings (Llama-family models:
    transformers' ``LlamaRMSNorm``, ``LlamaMLP`` and ``apply_rotary_pos_emb``) run compiled kernels on bf16
    tensors in forwards that record no gradient, such as ``generate``, with PyTorch's bits (tested): the SwiGLU
    and rotary kernels round where PyTorch's bf16 operations round, and the RMSNorm is
    :func:`rms_norm_exact`, which sums a row's squares in PyTorch's own order (the training kernel does not).
    One pass each instead of a few operations. fp32 keeps PyTorch's operations (there the SwiGLU and rotary
    kernels are an fp32 rounding apart, and gave no measurable gain). The kit enters it around bf16
    generation (``generate._generation_kernels``, once around all of a call's batches). Anything the kernels
    do not take runs the original code; everything is restored on exit. A no-op for other models, without the
    library, or with ``enabled=False``.
    """
    module = _llama_module(model) if enabled else None
    original = getattr(module, "apply_rotary_pos_emb", None)
    if original is None or getattr(original, "_instructlab_generation", False) or library() is None:
        yield
        return
    swaps = {cls: forward for plain, training_forward, forward in (  # the classes, and their fused subclasses
        (module.LlamaMLP, _fused_mlp_forward, _generation_mlp_forward),
        (module.LlamaRMSNorm, _fused_norm_forward, _generation_norm_forward))
        for cls in (plain, _fused_class(plain, training_forward))}
    swapped = [m for m in model.modules() if type(m) in swaps and "forward" not in m.__dict__]

    def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
        lib = _usable(q, k, cos, sin, grad=False) if q.dtype == torch.bfloat16 else None
        if lib is not None and unsqueeze_dim == 1 and _rotary_shapes(q, cos, sin) and _rotary_shapes(k, cos, sin):
            cos, sin = _per_sequence(q, cos, sin)
            return _rotary_out(lib, q, cos, sin), _rotary_out(lib, k, cos, sin)
        return original(q, k, cos, sin, unsqueeze_dim)

    apply_rotary_pos_emb._instructlab_generation = True  # type: ignore[attr-defined]
    module.apply_rotary_pos_emb = apply_rotary_pos_emb
    for m in swapped:
        m.forward = types.MethodType(swaps[type(m)], m)
    try:
        yield
    finally:
        for m in swapped:
            del m.forward
        module.apply_rotary_pos_emb = original


def __getattr__(name: str) -> Any:  # ``cpu_fused.FusedLlamaRMSNorm`` / ``FusedLlamaMLP``, for pickle and for users
    for original, forward in _module_classes().items():
        if name == f"Fused{original.__name__}":
            return _fused_class(original, forward)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
