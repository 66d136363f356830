"""Interactive views for JupyterLab: look at data, masks, model answers and training without code.

Four views, each split in two parts so that the logic is testable without a browser:

- ``DatasetBrowser`` / ``DatasetBrowserState``: page through records, filter by task type or
  category, switch between the messages, Alpaca and ShareGPT views, list validation problems.
- ``MaskInspector`` / ``MaskInspectorState``: one example through one tokenizer (or chat template);
  trained versus masked tokens in colour (``masking.show_mask``), token count, trained fraction.
- ``ChatComparison`` / ``ChatComparisonState``: one prompt, two or more models or adapters side by
  side, max new tokens and temperature, output streamed with ``TextIteratorStreamer``.
- ``LiveLossPlot``: a ``transformers.TrainerCallback`` that redraws the loss curve while training.

Every view degrades to static output when no Jupyter frontend is there to render widgets
(papermill, nbconvert, a terminal): displaying it then gives HTML plus plain text, and no widget
comm is opened. ``is_headless()`` decides; set ``INSTRUCTLAB_HEADLESS=1`` (or ``0``) to force it.
"""

from __future__ import annotations

import html
import io
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .masking import TRAIN_ON

__all__ = ["is_headless", "DatasetBrowser", "DatasetBrowserState", "MaskInspector", "MaskInspectorState",
           "ChatComparison", "ChatComparisonState", "LiveLossPlot", "LossHistory", "TRAIN_ON"]  # noqa: F822 (LiveLossPlot: built lazily)

HEADLESS_ENV = "INSTRUCTLAB_HEADLESS"
VIEWS = ("messages", "alpaca", "sharegpt")
ALL = "(all)"
_ROLE_COLOURS = {"system": "#eef2f7", "user": "#e8f1fb", "assistant": "#eaf7ea", "tool": "#fbf3e6"}


# --------------------------------------------------------------------------------------------
# Where are we running?
# --------------------------------------------------------------------------------------------

def is_headless() -> bool:
    """True when no Jupyter frontend can render widgets, so views should show static output.

    Order: ``$INSTRUCTLAB_HEADLESS`` ("1"/"true" forces static, "0"/"false" forces widgets);
    no IPython kernel (plain Python, terminal IPython) -> headless; Google Colab -> live;
    a kernel started by a Jupyter server (JupyterLab / Notebook set ``JPY_SESSION_NAME`` in the
    kernel's environment) -> live; any other kernel (papermill, nbclient, nbconvert) -> headless.
    """
    forced = os.environ.get(HEADLESS_ENV, "").strip().lower()
    if forced in {"1", "true", "yes", "on"}:
        return True
    if forced in {"0", "false", "no", "off"}:
        return False
    shell = _ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return True
    if "google.colab" in sys.modules:
        return False
    return not os.environ.get("JPY_SESSION_NAME")


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


class _View:
    """Display protocol shared by the widget classes.

    In a live frontend ``display(view)`` renders the ipywidgets tree (built lazily on first use);
    headless it renders ``state.render_html()`` with ``state.render_text()`` as the plain-text
    fallback. ``str(view)`` is always the text rendering.
    """

    state: Any

    def __init__(self, headless: bool | None = None):
        self._headless = headless
        self._widget = None

    @property
    def headless(self) -> bool:
        return is_headless() if self._headless is None else self._headless

    @property
    def widget(self):
        """The ipywidgets container (created on first access)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_mimebundle_(self, include=None, exclude=None):
        if self.headless:
            return {"text/html": self.state.render_html(), "text/plain": self.state.render_text()}
        return self.widget._repr_mimebundle_(include=include, exclude=exclude)

    def __str__(self) -> str:
        return self.state.render_text()

    def show(self) -> None:
        """Display in a notebook, print in a terminal."""
        if _ipython() is None:
            print(self.state.render_text())
        else:
            from IPython.display import display

            display(self)


def _esc(text: Any) -> str:
    return html.escape(str(text))


def _pre(text: str) -> str:
    return ("<pre style='white-space:pre-wrap;margin:2px 0;font-size:12px'>"
            f"{_esc(text)}</pre>")


def _as_messages(item: Any) -> list[dict]:
    """A checked conversation from a messages list, a record with ``messages`` or any supported
    format (``formats.to_messages``; raises ``formats.FormatError`` naming the bad field)."""
    from instructlab import formats

    if isinstance(item, Mapping) and isinstance(item.get("messages"), list):
        item = item["messages"]
    return formats.to_messages(item)


# --------------------------------------------------------------------------------------------
# Dataset browser
# --------------------------------------------------------------------------------------------

class DatasetBrowserState:
    """Paging, filtering and view switching over a list of records, without any widget.

    Inputs: ``records`` (dicts with ``messages`` plus extra keys such as ``task_type``, ``category``,
    ``id``; Alpaca / ShareGPT dicts are converted), ``problems`` (validation problems: objects with
    ``line``/``field``/``reason`` such as ``formats.BadRecord``, or plain strings), ``page_size``
    and ``filter_fields`` (the record keys offered as filters; only keys present are kept).
    ``allow_prompts=True`` accepts prompt-only records (no assistant turn, e.g. an eval set).
    A record that cannot be converted to messages is moved to ``problems`` (``line`` = its 1-based
    position), never dropped silently.
    """

    def __init__(self, records: Sequence[Any], problems: Sequence[Any] = (), page_size: int = 5,
                 filter_fields: Sequence[str] = ("task_type", "category"), source: str = "",
                 allow_prompts: bool = False):
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.source, self.page_size, self.allow_prompts = source, page_size, allow_prompts
        self.problems = [_problem_row(p) for p in problems]
        self.records: list[dict] = []
        for i, rec in enumerate(records):
            extra = dict(rec) if isinstance(rec, Mapping) else {}
            try:
                extra["messages"] = _as_messages(rec)
            except Exception as exc:  # noqa: BLE001 - every bad record becomes a visible problem
                prompt = _prompt_only(rec, exc) if allow_prompts else None
                if prompt is None:
                    self.problems.append({"line": i + 1, "field": getattr(exc, "field", "") or "",
                                          "reason": str(exc)})
                    continue
                extra["messages"] = prompt
            self.records.append(extra)
        self.filter_fields = [f for f in filter_fields if any(f in r for r in self.records)]
        self.filters: dict[str, str | None] = {f: None for f in self.filter_fields}
        self.view, self.page = "messages", 0

    @classmethod
    def from_path(cls, path: str | Path, allow_prompts: bool = False, **kwargs) -> "DatasetBrowserState":
        """Load a JSON / JSONL file with ``formats.load_records``; bad lines become validation problems.

        With ``allow_prompts`` the prompt-only records are shown too (after the full conversations).
        """
        records, problems = _load_with_problems(Path(path))
        if allow_prompts:
            prompts = [p for p in problems if _prompt_only(getattr(p, "record", None), p) is not None]
            records += [p.record for p in prompts]
            problems = [p for p in problems if p not in prompts]
        return cls(records, problems=problems, source=str(path), allow_prompts=allow_prompts, **kwargs)

    # -- filters --------------------------------------------------------------------------
    def filter_options(self) -> dict[str, list[str]]:
        """Each filter field -> its sorted distinct values (as strings)."""
        return {f: sorted({str(r[f]) for r in self.records if r.get(f) is not None})
                for f in self.filter_fields}

    def set_filter(self, field: str, value: str | None) -> None:
        """Keep only records whose ``field`` equals ``value`` (None or "(all)" clears it)."""
        if field not in self.filters:
            raise KeyError(f"unknown filter {field!r}; choose one of {self.filter_fields}")
        self.filters[field] = None if value in (None, "", ALL) else str(value)
        self.page = 0

    def filtered(self) -> list[tuple[int, dict]]:
        """(index in ``records``, record) for every record that passes all filters."""
        return [(i, r) for i, r in enumerate(self.records)
                if all(v is None or str(r.get(f)) == v for f, v in self.filters.items())]

    # -- paging ---------------------------------------------------------------------------
    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.filtered()) // self.page_size))

    def goto(self, page: int) -> int:
        """Go to ``page`` (0-based, clamped into range); returns the page shown."""
        self.page = min(max(0, int(page)), self.n_pages - 1)
        return self.page

    def next_page(self) -> int:
        return self.goto(self.page + 1)

    def prev_page(self) -> int:
        return self.goto(self.page - 1)

    def page_items(self) -> list[tuple[int, dict]]:
        start = self.goto(self.page) * self.page_size
        return self.filtered()[start:start + self.page_size]

    # -- views ----------------------------------------------------------------------------
    def set_view(self, view: str) -> None:
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")
        self.view = view

    def render_record(self, record: dict, view: str | None = None) -> Any:
        """The record in ``view``: the messages list, or the Alpaca / ShareGPT dict.

        Raises ``formats.FormatError`` when the conversation has no such form (for example a
        multi-turn conversation in Alpaca); the HTML / text renderings show that message instead.
        """
        view = view or self.view
        if view == "messages":
            return record["messages"]
        from instructlab import formats

        convert = formats.to_alpaca if view == "alpaca" else formats.to_sharegpt
        return convert(record["messages"])

    def status(self) -> str:
        shown = len(self.filtered())
        active = ", ".join(f"{f}={v}" for f, v in self.filters.items() if v is not None)
        return (f"page {self.page + 1}/{self.n_pages} | {shown} of {len(self.records)} records"
                + (f" ({active})" if active else "") + f" | view: {self.view}"
                + f" | {len(self.problems)} validation problem(s)")

    def render_text(self) -> str:
        lines = [f"DatasetBrowser {self.source}".rstrip(), self.status()]
        for i, rec in self.page_items():
            lines.append(f"--- #{i} {_meta(rec)}")
            lines.append(_render_text_body(self, rec))
        lines += [f"problem: {_problem_text(p)}" for p in self.problems[:20]]
        return "\n".join(lines)

    def render_page_html(self) -> str:
        parts = [f"<div class='il-status'><b>{_esc(self.status())}</b></div>"]
        for i, rec in self.page_items():
            parts.append("<div class='il-record' style='border:1px solid #ccc;border-radius:4px;"
                         f"margin:6px 0;padding:4px'><div style='color:#555'>#{i} {_esc(_meta(rec))}"
                         f"</div>{_render_html_body(self, rec)}</div>")
        return "".join(parts)

    def render_problems_html(self) -> str:
        if not self.problems:
            return "<div class='il-problems'>No validation problems.</div>"
        rows = "".join(f"<tr><td>{_esc(p['line'])}</td><td>{_esc(p['field'])}</td>"
                       f"<td>{_esc(p['reason'])}</td></tr>" for p in self.problems)
        return ("<table class='il-problems'><tr><th>line</th><th>field</th><th>problem</th></tr>"
                f"{rows}</table>")

    def render_html(self) -> str:
        return (f"<div class='il-dataset-browser'>{self.render_page_html()}"
                f"<h4>Validation problems</h4>{self.render_problems_html()}</div>")


def _load_with_problems(path: Path) -> tuple[list[dict], list]:
    """Records and problems of a JSON / JSONL file, through ``formats.load_records(skip_bad=True)``."""
    from instructlab import formats

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; build the data first "
                                "(python -m instructlab.kestrel) or pass the path of a JSONL file")
    good, bad = formats.load_records(path, skip_bad=True)
    return list(good), list(bad)


def _prompt_only(record: Any, error: Any) -> list[dict] | None:
    """The messages of a record whose only fault is a missing assistant turn, else None."""
    reason = getattr(error, "reason", None) or str(error)
    msgs = record.get("messages") if isinstance(record, Mapping) else record
    if "no assistant turn" not in reason or not isinstance(msgs, list):
        return None
    ok = all(isinstance(m, Mapping) and isinstance(m.get("content"), str)
             and m.get("role") in ("system", "user") for m in msgs)
    return [dict(m) for m in msgs] if ok and msgs else None


def _problem_row(p: Any) -> dict:
    if isinstance(p, Mapping):
        return {"line": p.get("line", ""), "field": p.get("field", ""), "reason": p.get("reason", str(p))}
    if isinstance(p, str):
        return {"line": "", "field": "", "reason": p}
    return {"line": getattr(p, "line", ""), "field": getattr(p, "field", "") or "",
            "reason": getattr(p, "reason", str(p))}


def _problem_text(p: dict) -> str:
    return f"line {p['line']} field {p['field'] or '-'}: {p['reason']}"


def _meta(rec: dict) -> str:
    keys = ("id", "task_type", "category", "doc", "template")
    return "  ".join(f"{k}={rec[k]}" for k in keys if rec.get(k) not in (None, ""))


def _render_text_body(state: DatasetBrowserState, rec: dict) -> str:
    try:
        body = state.render_record(rec)
    except Exception as exc:  # noqa: BLE001 - shown to the user, not hidden
        return f"(no {state.view} view: {exc})"
    if state.view == "messages":
        return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in body)
    return json.dumps(body, ensure_ascii=False, indent=2)


def _render_html_body(state: DatasetBrowserState, rec: dict) -> str:
    try:
        body = state.render_record(rec)
    except Exception as exc:  # noqa: BLE001
        return f"<div style='color:#b00'>No {state.view} view: {_esc(exc)}</div>"
    if state.view != "messages":
        return _pre(json.dumps(body, ensure_ascii=False, indent=2))
    return "".join(
        f"<div style='background:{_ROLE_COLOURS.get(m.get('role'), '#f4f4f4')};padding:3px 6px;"
        f"margin:2px 0;border-radius:3px'><b>{_esc(m.get('role'))}</b>{_pre(m.get('content', ''))}</div>"
        for m in body)


class DatasetBrowser(_View):
    """Page through a dataset with filters and a view switch (messages / Alpaca / ShareGPT).

    ``DatasetBrowser("data/kestrel/train.jsonl")`` or ``DatasetBrowser(records, problems=bad)``;
    keyword arguments go to ``DatasetBrowserState``. Display it (last expression of a cell).
    """

    def __init__(self, data: str | Path | Sequence[Any], headless: bool | None = None, **kwargs):
        super().__init__(headless)
        if isinstance(data, (str, Path)):
            self.state = DatasetBrowserState.from_path(data, **kwargs)
        else:
            self.state = DatasetBrowserState(data, **kwargs)

    def _build(self):
        import ipywidgets as w

        s = self.state
        filters = {f: w.Dropdown(options=[ALL] + vals, value=ALL, description=f)
                   for f, vals in s.filter_options().items()}
        view = w.ToggleButtons(options=list(VIEWS), value=s.view, description="view")
        prev_b, next_b = w.Button(description="< prev"), w.Button(description="next >")
        page = w.HTML(s.render_page_html())
        problems = w.Accordion(children=[w.HTML(s.render_problems_html())])
        problems.set_title(0, f"Validation problems ({len(s.problems)})")

        def refresh(*_):
            page.value = s.render_page_html()

        for f, dd in filters.items():
            dd.observe(lambda ch, f=f: (s.set_filter(f, ch["new"]), refresh()), names="value")
        view.observe(lambda ch: (s.set_view(ch["new"]), refresh()), names="value")
        prev_b.on_click(lambda _: (s.prev_page(), refresh()))
        next_b.on_click(lambda _: (s.next_page(), refresh()))
        controls = w.HBox([*filters.values(), prev_b, next_b])
        return w.VBox([controls, view, page, problems]).add_class("il-dataset-browser")


# --------------------------------------------------------------------------------------------
# Mask inspector
# --------------------------------------------------------------------------------------------

OWN_TEMPLATE = "(tokenizer's own)"


class MaskInspectorState:
    """Which tokens of one example are trained, for a chosen tokenizer and chat template.

    Inputs: ``conversations`` (messages lists or records), ``tokenizers`` (names for
    ``models.load_tokenizer``, loaded lazily and cached, or a dict name -> tokenizer object),
    ``templates`` (optional dict name -> Jinja chat template applied on a copy of the tokenizer),
    ``train_on`` and ``max_length`` as in ``masking.tokenize_with_mask``.
    Errors: ValueError for an empty dataset or an unknown choice; masking errors propagate.
    """

    def __init__(self, conversations: Sequence[Any], tokenizers: Sequence[str] | Mapping[str, Any] = ("tiny-random",),
                 templates: Mapping[str, str] | None = None, train_on: str = "assistant",
                 max_length: int | None = None, loader: Callable[[str], Any] | None = None):
        self.conversations = [_as_messages(c) for c in conversations]
        if not self.conversations:
            raise ValueError("MaskInspector needs at least one conversation")
        self._tokenizers = dict(tokenizers) if isinstance(tokenizers, Mapping) else {n: None for n in tokenizers}
        if not self._tokenizers:
            raise ValueError("MaskInspector needs at least one tokenizer name")
        self.templates = {OWN_TEMPLATE: None, **dict(templates or {})}
        self._loader, self.max_length = loader, max_length
        self.index, self.tokenizer_name, self.template_name = 0, next(iter(self._tokenizers)), OWN_TEMPLATE
        self.set_train_on(train_on)
        self._cache: dict[tuple, dict] = {}

    @property
    def tokenizer_names(self) -> list[str]:
        return list(self._tokenizers)

    def select(self, index: int) -> None:
        if not 0 <= int(index) < len(self.conversations):
            raise ValueError(f"example {index} out of range 0..{len(self.conversations) - 1}")
        self.index = int(index)

    def set_tokenizer(self, name: str) -> None:
        if name not in self._tokenizers:
            raise ValueError(f"unknown tokenizer {name!r}; choose one of {self.tokenizer_names}")
        self.tokenizer_name = name

    def set_template(self, name: str) -> None:
        if name not in self.templates:
            raise ValueError(f"unknown template {name!r}; choose one of {list(self.templates)}")
        self.template_name = name

    def set_train_on(self, mode: str) -> None:
        if mode not in TRAIN_ON:
            raise ValueError(f"unknown train_on {mode!r}; choose one of {TRAIN_ON}")
        self.train_on = mode

    def tokenizer(self):
        """The selected tokenizer, with the selected template applied on a shallow copy."""
        tok = self._tokenizers[self.tokenizer_name]
        if tok is None:
            if self._loader is None:
                from instructlab.models import load_tokenizer as loader
            else:
                loader = self._loader
            tok = self._tokenizers[self.tokenizer_name] = loader(self.tokenizer_name)
        template = self.templates[self.template_name]
        if template is None:
            return tok
        import copy

        tok = copy.copy(tok)
        tok.chat_template = template
        return tok

    def example(self) -> dict:
        """``tokenize_with_mask`` output for the current choices (cached)."""
        key = (self.index, self.tokenizer_name, self.template_name, self.train_on, self.max_length)
        if key not in self._cache:
            from instructlab.masking import tokenize_with_mask

            self._cache[key] = tokenize_with_mask(self.tokenizer(), self.conversations[self.index],
                                                  max_length=self.max_length, train_on=self.train_on)
        return self._cache[key]

    def stats(self) -> dict:
        """n_tokens, n_trained, n_masked and trained_fraction of the current example."""
        labels = self.example()["labels"]
        n_trained = sum(1 for x in labels if x != -100)
        return {"n_tokens": len(labels), "n_trained": n_trained, "n_masked": len(labels) - n_trained,
                "trained_fraction": n_trained / len(labels) if labels else 0.0}

    def describe(self) -> str:
        s = self.stats()
        return (f"example {self.index + 1}/{len(self.conversations)} | tokenizer {self.tokenizer_name}"
                f" | template {self.template_name} | train_on {self.train_on} | {s['n_tokens']} tokens,"
                f" {s['n_trained']} trained, {s['n_masked']} masked"
                f" | trained fraction {s['trained_fraction']:.1%}")

    def render_html(self) -> str:
        from instructlab.masking import show_mask

        body = show_mask(self.tokenizer(), self.example(), html=True).html
        return (f"<div class='il-mask-inspector'><div class='il-mask-stats'><b>{_esc(self.describe())}"
                f"</b></div><div class='il-mask-tokens'>{body}</div></div>")

    def render_text(self) -> str:
        """Stats, then the text with trained runs in ⟦ ⟧ (``MaskView.marked``)."""
        from instructlab.masking import show_mask

        return self.describe() + "\n" + show_mask(self.tokenizer(), self.example(), html=False).marked


class MaskInspector(_View):
    """Pick an example, a tokenizer and a chat template; see trained versus masked tokens.

    ``MaskInspector(conversations, tokenizers=["tiny-random", "smollm2-135m-instruct"])``;
    keyword arguments go to ``MaskInspectorState``.
    """

    def __init__(self, conversations: Sequence[Any], headless: bool | None = None, **kwargs):
        super().__init__(headless)
        self.state = MaskInspectorState(conversations, **kwargs)

    def _build(self):
        import ipywidgets as w

        s = self.state
        example = w.BoundedIntText(value=s.index, min=0, max=len(s.conversations) - 1, description="example")
        tok = w.Dropdown(options=s.tokenizer_names, value=s.tokenizer_name, description="tokenizer")
        tpl = w.Dropdown(options=list(s.templates), value=s.template_name, description="template")
        train_on = w.ToggleButtons(options=list(TRAIN_ON), value=s.train_on, description="train on")
        out = w.HTML(_safe(s.render_html))

        def on(setter):
            def handler(change):
                setter(change["new"])
                out.value = _safe(s.render_html)
            return handler

        example.observe(on(s.select), names="value")
        tok.observe(on(s.set_tokenizer), names="value")
        tpl.observe(on(s.set_template), names="value")
        train_on.observe(on(s.set_train_on), names="value")
        return w.VBox([w.HBox([example, tok, tpl]), train_on, out]).add_class("il-mask-inspector")


def _safe(render: Callable[[], str]) -> str:
    """Render, or show the error in the widget (a template that cannot mask is worth seeing)."""
    try:
        return render()
    except Exception as exc:  # noqa: BLE001
        return f"<div style='color:#b00'><b>{type(exc).__name__}</b>: {_esc(exc)}</div>"


# --------------------------------------------------------------------------------------------
# Chat comparison
# --------------------------------------------------------------------------------------------

class ChatComparisonState:
    """One prompt answered by several models or adapters, with streamed generation.

    Inputs: ``models``: label -> a model name (``models.load_model``), a dict
    ``{"model": name, "adapter": path}``, or a ready ``(model, tokenizer)`` pair; at least two
    labels. ``max_new_tokens``, ``temperature`` (0 = greedy), ``system_prompt`` (optional),
    ``seed`` (sampling reproducibility). Models are loaded lazily on first use and cached.
    Errors: ValueError for fewer than two models or bad settings.
    """

    def __init__(self, models: Mapping[str, Any], max_new_tokens: int = 128, temperature: float = 0.0,
                 system_prompt: str | None = None, seed: int = 0):
        if len(models) < 2:
            raise ValueError("ChatComparison compares two or more models; pass e.g. "
                             "{'base': 'gemma-3-270m', 'instruct': 'smollm2-135m-instruct'}")
        self.specs, self._loaded = dict(models), {}
        self.system_prompt, self.seed = system_prompt, seed
        self.set_settings(max_new_tokens, temperature)
        self.prompt, self.outputs = "", {label: "" for label in self.specs}
        self.seconds: dict[str, float] = {}
        self.errors: dict[str, str] = {}

    @property
    def labels(self) -> list[str]:
        return list(self.specs)

    def set_settings(self, max_new_tokens: int | None = None, temperature: float | None = None) -> None:
        if max_new_tokens is not None:
            if int(max_new_tokens) < 1:
                raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
            self.max_new_tokens = int(max_new_tokens)
        if temperature is not None:
            if float(temperature) < 0:
                raise ValueError(f"temperature must be >= 0, got {temperature}")
            self.temperature = float(temperature)

    def messages(self, prompt: str) -> list[dict]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return msgs + [{"role": "user", "content": prompt}]

    def generation_kwargs(self, tokenizer) -> dict:
        """``GenerationConfig`` fields: greedy at temperature 0, sampling above; stops at the
        end-of-turn tokens of the chat template (``generate.stop_token_ids``)."""
        from instructlab.generate import stop_token_ids

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        kw = {"max_new_tokens": self.max_new_tokens, "pad_token_id": pad,
              "eos_token_id": stop_token_ids(tokenizer), "do_sample": self.temperature > 0}
        if self.temperature > 0:
            kw["temperature"] = self.temperature
        return kw

    def model_and_tokenizer(self, label: str):
        if label not in self._loaded:
            spec = self.specs[label]
            if isinstance(spec, tuple):
                self._loaded[label] = spec
            else:
                from instructlab.models import load_model, load_tokenizer

                name, adapter = (spec["model"], spec.get("adapter")) if isinstance(spec, Mapping) else (spec, None)
                self._loaded[label] = (load_model(name, adapter=adapter), load_tokenizer(name))
        return self._loaded[label]

    def stream(self, label: str, prompt: str) -> Iterator[str]:
        """Yield text pieces of ``label``'s answer as they are generated (generation runs in a thread).

        Raises whatever ``generate`` raised, after the streamer has been closed.
        """
        import torch
        from transformers import GenerationConfig, TextIteratorStreamer

        model, tok = self.model_and_tokenizer(label)
        # the ids training saw before an answer
        from instructlab.masking import prompt_ids

        ids = torch.tensor([prompt_ids(tok, self.messages(prompt))], device=model.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def work():
            try:
                torch.manual_seed(self.seed)
                with torch.no_grad():
                    model.generate(**inputs, streamer=streamer,
                                   generation_config=GenerationConfig(**self.generation_kwargs(tok)))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if failure:
            raise failure[0]

    def run(self, prompt: str, on_update: Callable[[str, str], None] | None = None) -> dict[str, str]:
        """Answer ``prompt`` with every model in turn; ``on_update(label, text_so_far)`` per piece.

        A model that fails gets its error recorded in ``errors`` (shown next to the others).
        Returns label -> full answer.
        """
        if not prompt.strip():
            raise ValueError("type a prompt first")
        self.prompt, self.errors = prompt, {}
        self.outputs = {label: "" for label in self.specs}
        for label in self.specs:
            start = time.perf_counter()
            try:
                for piece in self.stream(label, prompt):
                    self.outputs[label] += piece
                    if on_update:
                        on_update(label, self.outputs[label])
            except Exception as exc:  # noqa: BLE001 - one broken model must not hide the others
                self.errors[label] = f"{type(exc).__name__}: {exc}"
                if on_update:
                    on_update(label, self.outputs[label] + f"\n[error] {self.errors[label]}")
            self.seconds[label] = time.perf_counter() - start
        return dict(self.outputs)

    def render_text(self) -> str:
        lines = [f"prompt: {self.prompt}", f"max_new_tokens={self.max_new_tokens} temperature={self.temperature}"]
        for label in self.specs:
            took = f" ({self.seconds[label]:.1f} s)" if label in self.seconds else ""
            lines += [f"=== {label}{took}", self.outputs.get(label, "")]
            if label in self.errors:
                lines.append(f"[error] {self.errors[label]}")
        return "\n".join(lines)

    def render_html(self) -> str:
        cells = "".join(
            f"<td style='vertical-align:top;border:1px solid #ccc;padding:4px;width:{100 // len(self.specs)}%'>"
            f"<b>{_esc(label)}</b>{_pre(self.outputs.get(label, ''))}"
            + (f"<div style='color:#b00'>{_esc(self.errors[label])}</div>" if label in self.errors else "")
            + "</td>" for label in self.specs)
        return (f"<div class='il-chat-comparison'><div><b>prompt:</b> {_esc(self.prompt)}</div>"
                f"<div style='color:#555'>max_new_tokens={self.max_new_tokens}, temperature={self.temperature}</div>"
                f"<table style='width:100%;table-layout:fixed'><tr>{cells}</tr></table></div>")


class ChatComparison(_View):
    """One prompt, several models side by side, streamed.

    ``ChatComparison({"base": "gemma-3-270m", "instruct": "smollm2-135m-instruct",
    "tuned": {"model": "smollm2-135m-instruct", "adapter": run_dir}})``; call ``.compare(prompt)``
    to answer from code (it returns the view, so headless notebooks show the answers).
    """

    def __init__(self, models: Mapping[str, Any], headless: bool | None = None, **kwargs):
        super().__init__(headless)
        self.state = ChatComparisonState(models, **kwargs)
        self._boxes: dict[str, Any] = {}

    def compare(self, prompt: str) -> "ChatComparison":
        def update(label, text):
            if label in self._boxes:
                self._boxes[label].value = text

        self.state.run(prompt, on_update=update)
        return self

    def _build(self):
        import ipywidgets as w

        s = self.state
        prompt = w.Textarea(value=s.prompt, placeholder="Type a prompt", layout=w.Layout(width="100%"))
        wide = {"description_width": "initial"}
        max_new = w.IntSlider(value=s.max_new_tokens, min=1, max=512, description="max new tokens", style=wide)
        temp = w.FloatSlider(value=s.temperature, min=0.0, max=2.0, step=0.05, description="temperature", style=wide)
        go, status = w.Button(description="Generate", button_style="primary"), w.Label("")
        columns = []
        for label in s.labels:
            self._boxes[label] = w.Textarea(value=s.outputs[label], layout=w.Layout(width="auto", height="220px"))
            columns.append(w.VBox([w.HTML(f"<b>{_esc(label)}</b>"), self._boxes[label]],
                                  layout=w.Layout(flex="1 1 0", min_width="0")))

        def on_click(_):
            go.disabled, status.value = True, "generating..."
            try:
                s.set_settings(max_new.value, temp.value)
                self.compare(prompt.value)
                status.value = " | ".join(f"{k}: {v:.1f} s" for k, v in s.seconds.items())
            except ValueError as exc:
                status.value = str(exc)
            finally:
                go.disabled = False

        go.on_click(on_click)
        return w.VBox([prompt, w.HBox([max_new, temp, go, status]),
                       w.HBox(columns, layout=w.Layout(width="100%"))]).add_class("il-chat-comparison")


# --------------------------------------------------------------------------------------------
# Live loss plot
# --------------------------------------------------------------------------------------------

class LossHistory:
    """Training and evaluation losses by step, from ``Trainer`` log dicts (plain Python)."""

    def __init__(self):
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.eval_steps: list[int] = []
        self.eval_losses: list[float] = []

    def add(self, step: int, logs: Mapping[str, Any] | None) -> bool:
        """Record ``loss`` / ``eval_loss`` from one log dict; True when something was recorded."""
        logs, added = logs or {}, False
        if isinstance(logs.get("loss"), (int, float)):
            self.steps.append(int(step))
            self.losses.append(float(logs["loss"]))
            added = True
        if isinstance(logs.get("eval_loss"), (int, float)):
            self.eval_steps.append(int(step))
            self.eval_losses.append(float(logs["eval_loss"]))
            added = True
        return added

    def summary(self) -> str:
        if not self.losses and not self.eval_losses:
            return "no loss logged (set logging_steps so that the trainer logs at least once)"
        parts = []
        if self.losses:
            parts.append(f"train loss {self.losses[0]:.4f} -> {self.losses[-1]:.4f} over "
                         f"{len(self.losses)} logs (steps {self.steps[0]}..{self.steps[-1]})")
        if self.eval_losses:
            parts.append(f"eval loss {self.eval_losses[0]:.4f} -> {self.eval_losses[-1]:.4f} "
                         f"(best {min(self.eval_losses):.4f})")
        return "; ".join(parts)

    def figure(self, title: str = "Training loss"):
        """A matplotlib Figure (object API: no pyplot state, nothing shown by itself)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.2))
        ax = fig.add_subplot()
        if self.losses:
            ax.plot(self.steps, self.losses, marker=".", label="train")
        if self.eval_losses:
            ax.plot(self.eval_steps, self.eval_losses, marker="o", label="eval")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if self.losses or self.eval_losses:
            ax.legend()
        fig.tight_layout()
        return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


class _LiveLossPlotLogic:
    """A ``TrainerCallback`` that draws the loss curve while training.

    Live (JupyterLab): one output is created at the start of training and redrawn every
    ``every`` logs. Headless (papermill, terminal): nothing is drawn during training; at the end
    the final figure is shown once and a one-line summary printed. With ``save_to`` (a path
    without suffix) the final figure is also saved as PNG and SVG (``plots.save_figure``).
    Only the main process draws. The recorded losses are in ``.history`` (a ``LossHistory``).
    ``LiveLossPlot`` subclasses ``transformers.TrainerCallback``; it is created on first access
    so that importing this module does not import transformers.
    """

    def __init__(self, save_to: str | Path | None = None, every: int = 1, title: str = "Training loss",
                 headless: bool | None = None):
        self.save_to, self.every, self.title = save_to, max(1, int(every)), title
        self._headless, self.history, self._handle = headless, LossHistory(), None
        self.saved: tuple[Path, Path] | None = None

    @property
    def headless(self) -> bool:
        return is_headless() if self._headless is None else self._headless

    def on_train_begin(self, args, state, control, **kwargs):
        self.history = LossHistory()
        if state.is_world_process_zero and not self.headless and _ipython() is not None:
            from IPython.display import HTML, display

            self._handle = display(HTML("<i>waiting for the first logged loss...</i>"), display_id=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not self.history.add(state.global_step, logs):
            return
        n = len(self.history.losses) + len(self.history.eval_losses)
        if self._handle is not None and n % self.every == 0:
            self._redraw()

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        fig = self.history.figure(self.title)
        if self.save_to:
            from instructlab.plots import save_figure

            self.saved = save_figure(fig, self.save_to)
        if self._handle is not None:
            self._redraw(fig)
        elif _ipython() is not None:
            from IPython.display import Image, display

            display(Image(data=_png(fig)))
        print(f"LiveLossPlot: {self.history.summary()}"
              + (f"; saved {self.saved[0]} and .svg" if self.saved else ""))

    def _redraw(self, fig=None) -> None:
        from IPython.display import Image

        self._handle.update(Image(data=_png(fig or self.history.figure(self.title))))


def _make_live_loss_plot() -> type:
    from transformers import TrainerCallback

    return type("LiveLossPlot", (_LiveLossPlotLogic, TrainerCallback),
                {"__module__": __name__, "__doc__": _LiveLossPlotLogic.__doc__})


def __getattr__(name: str):
    # PEP 562: ``LiveLossPlot`` is built on first use (it needs transformers, the rest does not).
    if name == "LiveLossPlot":
        cls = globals()["LiveLossPlot"] = _make_live_loss_plot()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
