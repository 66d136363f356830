"""Chat backends shared by the data-building teacher and the LLM judge.

Two backends with the same two methods:

* :class:`OpenAIChat` talks to any OpenAI-compatible endpoint (OpenAI, vLLM, ``transformers serve``,
  llama.cpp server ...) through the official ``openai`` client. The API key is read from an
  environment variable at call time only; it is never stored on the object, in ``settings()``,
  in the response cache or in a log.
* :class:`LocalChat` runs a local transformers model (an embedded model name, a folder or a hub id,
  optionally with a LoRA adapter) through :func:`instructlab.models.load_model`.

Both expose ``.complete(messages) -> str`` and ``.settings() -> dict``. :func:`complete_many` runs
many prompts with a bounded thread pool, a progress bar and an on-disk :class:`ResponseCache`, so
a re-run costs nothing and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import email.utils
import hashlib
import inspect
import json
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

__all__ = ["JSON_SCHEMA", "SCANNER", "json_schema_format", "Answer", "MissingAPIKeyError", "BadResponseError",
           "check_env_var_name", "OpenAIChat", "LocalChat", "cache_key", "ResponseCache", "Completion",
           "request_format", "complete_many"]

Messages = list[dict[str, str]]

# Settings that change how a request is sent but not what the model answers: left out of cache keys.
TRANSPORT_SETTINGS = frozenset({"timeout", "max_retries", "backoff", "structured"})

# How an answer was asked for and is to be read: "json_schema" (the server was sent ``response_format``
# with a JSON schema and must answer with JSON of that schema) or "scanner" (the prompt asks for JSON in
# prose and the hand-written scanner reads it back).
JSON_SCHEMA, SCANNER = "json_schema", "scanner"
STRUCTURED_MODES = ("auto", "on", "off")


def json_schema_format(name: str, model: Any, strict: bool = True) -> dict:
    """The ``response_format`` of an OpenAI-compatible request asking for JSON of pydantic ``model``'s schema."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": model.model_json_schema(),
                                                   "strict": strict}}


class Answer(str):
    """An assistant text that also says how it was asked for: ``output_path`` is :data:`JSON_SCHEMA` or
    :data:`SCANNER`. It is a ``str`` so that every caller of ``complete`` keeps working."""

    output_path: str = SCANNER

    def __new__(cls, text: str, output_path: str = SCANNER):
        obj = super().__new__(cls, text)
        obj.output_path = output_path
        return obj


def is_unsupported_format(exc: BaseException) -> bool:
    """True for the HTTP 400 / 422 a server answers a request whose ``response_format`` it does not support."""
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in (400, 422)


class MissingAPIKeyError(RuntimeError):
    """The environment variable that should hold the API key is not set."""


class BadResponseError(RuntimeError):
    """The server answered HTTP 200 with something that is not a usable chat completion.

    ``transient`` is True for a torn reply (empty or truncated body, an empty answer), worth retrying, and
    False for a reply that is not a chat completion at all (usually a wrong ``base_url``).
    """

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env_var_name(value: str | None, what: str = "api_key_env") -> None:
    """Raise ValueError when ``value`` is not an environment variable's name (None and "" mean no key).

    The message never repeats the value: a value that is not a name is usually the key itself, pasted
    where its variable's name belongs, and error messages end up in logs, notebooks and reports.
    """
    if value is None or value == "":
        return
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value) or len(value) > 128:
        raise ValueError(f"{what} must be the NAME of an environment variable (letters, digits and underscores, "
                         f"not starting with a digit, e.g. OPENAI_API_KEY); the value given is not one (not shown: "
                         "it may be the key itself). Put the key in the environment (export OPENAI_API_KEY=...) "
                         f"and pass its name as {what}")


# --------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------

def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: timeouts, connection errors, HTTP 5xx and 429 (rate limit).

    Other HTTP 4xx errors (bad request, wrong model name, authentication) are the caller's mistake
    and fail at once: retrying them only hides the problem.
    """
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a declared dependency
        openai = None
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, BadResponseError):
        return exc.transient
    if openai is not None:
        if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code >= 500 or exc.status_code == 429
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status == 429)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked the client to wait, from the error's HTTP response, or None.

    Reads ``retry-after-ms`` (milliseconds, sent by OpenAI and Azure) first, then ``retry-after``
    (seconds, or an HTTP date), as the openai client itself does.
    """
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def retry_call(fn: Callable[[], Any], max_retries: int = 4, backoff: float = 0.5,
               max_delay: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call ``fn()``; on a transient error (:func:`is_transient`) wait and try again.

    The wait is what the server asked for in ``Retry-After`` / ``retry-after-ms`` (429, 503) when it
    says; otherwise it doubles each time (``backoff * 2**attempt``, plus up to 10% jitter). Either is
    capped at ``max_delay`` seconds. After ``max_retries`` retries the last error is raised; a
    non-transient error is raised at once.
    """
    for attempt in range(max_retries + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified just below
            if attempt >= max_retries or not is_transient(exc):
                raise
            asked = retry_after(exc)
            if asked is not None:  # the server knows when it can take the request again
                sleep(min(max_delay, asked))
            else:
                sleep(min(max_delay, backoff * (2 ** attempt)) * (1.0 + 0.1 * random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------

def _strip_credentials(url: str) -> str:
    """``http://user:pass@host/v1`` -> ``http://host/v1`` so that a URL can be logged safely."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


class OpenAIChat:
    """A chat model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        base_url: e.g. ``"https://api.openai.com/v1"`` or ``"http://127.0.0.1:8000/v1"``.
        model: the model name the server expects (for ``transformers serve`` started with a model,
            exactly the string given on its command line).
        api_key_env: name of the environment variable holding the key, read at every call. ``None``
            for a local server without authentication (a placeholder key is sent).
        temperature, max_tokens: generation settings (part of the cache key).
        structured: ``"auto"`` (default): when a caller passes a ``response_format`` (the teacher and the
            judges do), send it; if the server refuses it (HTTP 400 / 422), ask the same prompt again
            without it and keep doing so for this backend (``structured_fallback`` says why). ``"on"``:
            always send it, a refusal is an error. ``"off"``: never send it (prose + scanner only).
        timeout: seconds per request. max_retries: retries on timeouts, connection errors, 429
            and 5xx, torn replies (empty or truncated body) and empty answers, waiting what the
            server's ``Retry-After`` asks or else with exponential backoff starting at ``backoff``
            seconds. HTTP 4xx is not retried.

    Raises:
        ValueError: ``api_key_env`` is not an environment variable's name (the value is never shown).
        MissingAPIKeyError: (from :meth:`complete`) ``api_key_env`` is not set.
        BadResponseError: (from :meth:`complete`) the reply is not a chat completion or the answer is empty.
        openai.APIError: (from :meth:`complete`) the last attempt's error when retries are exhausted.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 temperature: float = 0.0, max_tokens: int = 512, timeout: float = 60,
                 max_retries: int = 4, backoff: float = 0.5, structured: str = "auto"):
        if not base_url or not model:
            raise ValueError("OpenAIChat needs both base_url (e.g. http://127.0.0.1:8000/v1) and model")
        check_env_var_name(api_key_env)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured must be one of {STRUCTURED_MODES}, got {structured!r}")
        self.structured = structured
        self.structured_fallback: str | None = None  # auto: why the server's refusal made us stop sending it

    def __repr__(self) -> str:
        return f"OpenAIChat(base_url={_strip_credentials(self.base_url)!r}, model={self.model!r})"

    def settings(self) -> dict:
        """What decides the answers (and the transport), without secrets: safe to log and cache."""
        return {"backend": "openai", "base_url": _strip_credentials(self.base_url), "model": self.model,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "timeout": self.timeout, "max_retries": self.max_retries, "backoff": self.backoff,
                "structured": self.structured}

    def _api_key(self) -> str:
        if not self.api_key_env:
            return "not-needed"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise MissingAPIKeyError(
                f"environment variable {self.api_key_env} is not set: export it before starting "
                f"(never write the key into a notebook), or pass api_key_env=None for a local "
                f"server without authentication")
        return key

    def check_credentials(self) -> None:
        """Raise :class:`MissingAPIKeyError` now when the key's environment variable is not set, so a
        batch stops before its first request instead of failing every prompt the same way."""
        self._api_key()

    def _request(self, messages: Messages, response_format: dict | None = None) -> str:
        from openai import OpenAI

        # A client per request: the key lives only for the duration of this call. Its own retries are
        # off because retry_call retries (honouring Retry-After) around the whole request and its checks.
        with OpenAI(base_url=self.base_url, api_key=self._api_key(), timeout=self.timeout,
                    max_retries=0) as client:
            try:
                resp = client.chat.completions.create(model=self.model, messages=messages,
                                                      temperature=self.temperature,
                                                      max_tokens=self.max_tokens,
                                                      **({"response_format": response_format}
                                                         if response_format else {}))
            except json.JSONDecodeError as exc:  # an empty or torn body, seen from overloaded proxies
                raise BadResponseError(f"the reply is not complete JSON ({exc.msg} at character {exc.pos}: an "
                                       "empty or truncated body)", transient=True) from None
        return answer_text(resp)

    def sends_response_format(self) -> bool:
        """Whether a ``response_format`` given to :meth:`complete` is sent to the server now."""
        return self.structured == "on" or (self.structured == "auto" and self.structured_fallback is None)

    def complete(self, messages: Messages, response_format: dict | None = None) -> Answer:
        """Send one chat (list of ``{"role", "content"}``) and return the assistant's text.

        With ``response_format`` (see :func:`json_schema_format`) and ``structured`` not "off", the server is
        asked for JSON of that schema; the returned :class:`Answer`'s ``output_path`` says which way was used.
        """
        key = self._api_key()  # fail fast, without retries, when the key is missing
        try:
            if response_format is None or not self.sends_response_format():
                return Answer(retry_call(lambda: self._request(messages), self.max_retries, self.backoff), SCANNER)
            try:
                text = retry_call(lambda: self._request(messages, response_format), self.max_retries, self.backoff)
                return Answer(text, JSON_SCHEMA)
            except Exception as exc:  # noqa: BLE001 - a refused response_format falls back below
                if self.structured == "on" or not is_unsupported_format(exc):
                    raise
                refusal = f"{type(exc).__name__}: {str(exc)[:200]}"
            # The same prompt without response_format; if this fails too, its error is the prompt's error.
            text = retry_call(lambda: self._request(messages), self.max_retries, self.backoff)
            if self.structured_fallback is None:
                self.structured_fallback = refusal.replace(key, "***") if self.api_key_env else refusal
            return Answer(text, SCANNER)
        except Exception as exc:
            # A server may echo the key in its error text; that text ends up in logs and reports.
            if self.api_key_env and key in str(exc):
                raise RuntimeError(str(exc).replace(key, "***")) from None
            raise


def answer_text(resp: Any) -> str:
    """The assistant text of a chat completion; BadResponseError when there is none.

    Raises:
        BadResponseError: the reply is not a chat completion (``transient=False``: e.g. an HTML page or
            ``{"foo": 1}`` from a wrong base_url) or its answer is empty (``transient=True``).
    """
    choices = getattr(resp, "choices", None)
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    content = getattr(message, "content", None)
    if message is None or not isinstance(content, (str, type(None))):
        shown = resp if isinstance(resp, str) else getattr(resp, "model_dump_json", lambda: repr(resp))()
        raise BadResponseError(f"the reply is not a chat completion (no choices[0].message.content): "
                               f"{str(shown)[:160]!r}. Check that base_url is the /v1 address of an "
                               "OpenAI-compatible server", transient=False)
    if not content or not content.strip():
        finish = getattr(choices[0], "finish_reason", None)
        raise BadResponseError(f"empty answer (finish_reason={finish!r})", transient=True)
    return content


class LocalChat:
    """A local transformers chat model, greedy decoding.

    Args:
        model_name_or_path: an embedded name (``"smollm2-135m-instruct"``, ``"tiny-random"``), a
            local folder or a hub id; see :func:`instructlab.models.load_model`.
        adapter: optional PEFT adapter folder (or a run folder containing ``adapter/``).
        max_new_tokens: generation budget per answer.
        dtype: weights' dtype, e.g. ``"float32"``; None = :func:`instructlab.models.device_settings`'s
            (bf16 on a CPU with native bf16, else fp32). Given explicitly, or resolved to anything but fp32,
            it is part of ``settings()`` and so of the response cache key.

    The model is loaded on the first call. Calls are serialised (one generation at a time),
    so :func:`complete_many` runs a local model with concurrency 1.
    """

    max_concurrency = 1

    def __init__(self, model_name_or_path: str, adapter: str | None = None, max_new_tokens: int = 256,
                 dtype: str | None = None):
        self.model_name_or_path = str(model_name_or_path)
        self.adapter = str(adapter) if adapter else None
        self.max_new_tokens = max_new_tokens
        self.dtype = dtype
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalChat({self.model_name_or_path!r}, adapter={self.adapter!r})"

    def settings(self) -> dict:
        settings = {"backend": "local", "model": self.model_name_or_path, "adapter": self.adapter,
                    "max_new_tokens": self.max_new_tokens, "do_sample": False}
        # The precision decides the answers: named in the key unless it is fp32, so that keys from before
        # bf16 generation (all fp32 on CPU) stay valid and a bf16 answer never stands in for an fp32 one.
        # Only a CPU's automatic choice changed (GPUs keep the keys they had).
        dtype = self.dtype or self._resolved_dtype()
        return {**settings, "dtype": dtype} if self.dtype or dtype not in (None, "float32") else settings

    def _resolved_dtype(self) -> str | None:
        """The dtype the model loads in on a CPU (decided once per instance); None elsewhere."""
        if "_auto_dtype" not in self.__dict__:
            from instructlab.models import device_settings

            hw = device_settings()
            self._auto_dtype = str(hw.dtype).replace("torch.", "") if hw.device == "cpu" else None
        return self._auto_dtype

    def _load(self):
        if self._model is None:
            from instructlab.models import load_model, load_tokenizer

            self._tokenizer = load_tokenizer(self.model_name_or_path)
            # the dtype the cache key names (settings), not one decided again
            self._model = load_model(self.model_name_or_path, adapter=self.adapter,
                                     dtype=self.dtype or self._resolved_dtype())
        return self._model, self._tokenizer

    @property
    def tokenizer(self):
        """The model's tokenizer (loads the model on first use)."""
        return self._load()[1]

    def complete(self, messages: Messages) -> str:
        """Greedy answer to one chat, without the prompt and special tokens."""
        import torch

        with self._lock:
            model, tok = self._load()
            # the ids training saw before an answer
            from instructlab.masking import prompt_ids

            prompt = torch.tensor([prompt_ids(tok, messages)], device=model.device)
            ids = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}
            with torch.no_grad():
                out = model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


# --------------------------------------------------------------------------------------------
# Cache and batch completion
# --------------------------------------------------------------------------------------------

def cache_key(messages: Messages, settings: dict, response_format: dict | None = None) -> str:
    """sha256 over the chat, the answer-deciding settings (transport settings left out) and the
    ``response_format`` asked for (None leaves keys as they were before structured outputs)."""
    semantic = {k: v for k, v in settings.items() if k not in TRANSPORT_SETTINGS}
    payload: dict[str, Any] = {"messages": messages, "settings": semantic}
    if response_format is not None:
        payload["response_format"] = response_format
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """Answers on disk, one JSON line per answer: ``{"key", "text", "settings", "time"}``.

    Append-only, so an interrupted run loses at most the line being written (a torn last line
    is skipped on load). Thread-safe within a process; only successful answers are stored, so
    failed prompts are tried again on the next run.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._data: dict[str, str] = {}
        self._paths: dict[str, str] = {}
        self.skipped_lines = 0
        if self.path.exists():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self._data[row["key"]] = row["text"]
                        self._paths[row["key"]] = row.get("output_path", SCANNER)
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.skipped_lines += 1

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def output_path(self, key: str) -> str | None:
        """How the cached answer was asked for (:data:`JSON_SCHEMA` or :data:`SCANNER`), None when not cached."""
        return self._paths.get(key) if key in self._data else None

    def put(self, key: str, text: str, settings: dict | None = None, output_path: str = SCANNER) -> None:
        row = {"key": key, "text": str(text), "settings": settings or {}, "time": round(time.time(), 3),
               "output_path": output_path}
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
            self._data[key] = str(text)
            self._paths[key] = output_path


@dataclass
class Completion:
    """One prompt's outcome: ``text`` (None on failure), ``error`` ("Type: message" or None),
    ``cached`` (True when the answer came from the cache and no request was made), ``output_path``
    (:data:`JSON_SCHEMA` or :data:`SCANNER`: how the answer was asked for and is to be parsed; None on failure)."""

    text: str | None
    error: str | None = None
    cached: bool = False
    output_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "completions", disable=not enabled, leave=True)


def takes_response_format(backend: Any) -> bool:
    """Whether ``backend.complete`` accepts ``response_format`` and would send it now."""
    try:
        params = inspect.signature(backend.complete).parameters
    except (TypeError, ValueError):
        return False
    if "response_format" not in params:
        return False
    sends = getattr(backend, "sends_response_format", None)
    return bool(sends()) if callable(sends) else True


def request_format(backend: Any, response_format: dict | None) -> dict | None:
    """The ``response_format`` a request to ``backend`` carries now (None: prose + scanner)."""
    return response_format if response_format is not None and takes_response_format(backend) else None


def complete_many(backend, prompts: Sequence[Messages], cache: ResponseCache | None = None,
                  concurrency: int = 4, desc: str = "", progress: bool = True,
                  response_format: dict | None = None) -> list[Completion]:
    """Complete every prompt with ``backend`` and return one :class:`Completion` per prompt, in order.

    Cached answers are returned without a request. The others run on a thread pool of at most
    ``concurrency`` workers (capped by ``backend.max_concurrency`` when set); each answer is
    written to the cache as soon as it arrives, so an interrupted run resumes where it stopped.
    A failing prompt is recorded (``Completion.error``), never raised mid-run. Transient errors
    are retried inside the backend (see :class:`OpenAIChat`). A ``KeyboardInterrupt`` cancels
    the prompts not yet started and is re-raised.

    ``response_format`` (see :func:`json_schema_format`) is passed to a backend whose ``complete`` takes
    it (``OpenAIChat`` unless ``structured="off"``); it is part of the cache key. Each Completion's
    ``output_path`` says whether the answer is JSON of that schema or prose for the scanner.
    """
    settings = backend.settings()
    fmt = request_format(backend, response_format)
    keys = [cache_key(list(p), settings, fmt) for p in prompts]
    results: list[Completion | None] = [None] * len(prompts)
    todo = []
    for i, key in enumerate(keys):
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            results[i] = Completion(hit, None, True, cache.output_path(key))
        else:
            todo.append(i)
    workers = max(1, min(concurrency, getattr(backend, "max_concurrency", concurrency) or concurrency))
    bar = _progress(len(prompts), desc, progress)
    bar.update(len(prompts) - len(todo))

    stop = threading.Event()  # set on an interrupt: queued prompts then never reach the backend

    def run(i: int) -> Completion | None:
        if stop.is_set():
            return None
        try:
            text = backend.complete(list(prompts[i]), response_format=fmt) if fmt else backend.complete(list(prompts[i]))
        except Exception as exc:  # noqa: BLE001 - recorded per prompt, by design
            return Completion(None, f"{type(exc).__name__}: {exc}", False)
        except BaseException:
            stop.set()
            raise
        path = getattr(text, "output_path", SCANNER) if fmt else SCANNER
        text = str(text) if isinstance(text, str) else text
        if cache is not None:
            cache.put(keys[i], text, {k: v for k, v in settings.items() if k not in TRANSPORT_SETTINGS}, path)
        return Completion(text, None, False, path)

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(run, i): i for i in todo}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update(1)
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    return results  # type: ignore[return-value]
