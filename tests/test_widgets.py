"""Widget logic without a browser: state classes, the live widget wiring and the static fallback.

The rendering in a real JupyterLab is covered by tests/test_browser.py.
"""

from __future__ import annotations

import json
import types

import pytest

from instructlab import widgets
from instructlab.widgets import (ChatComparison, ChatComparisonState, DatasetBrowser, DatasetBrowserState,
                                 LiveLossPlot, LossHistory, MaskInspector, MaskInspectorState, is_headless)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _conv(q: str, a: str, system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


MULTI_TURN = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"},
              {"role": "user", "content": "Again."}, {"role": "assistant", "content": "Hi again!"}]


@pytest.fixture()
def records():
    kinds = ["question", "summary", "question", "decline", "question"]
    recs = [{"id": f"r{i}", "task_type": t, "messages": _conv(f"q{i} <b>bold?</b>", f"a{i}", "sys")}
            for i, t in enumerate(kinds)]
    recs.append({"id": "r5", "task_type": "analysis", "category": "domain", "messages": MULTI_TURN})
    return recs


# ---------------------------------------------------------------------------- headless detection

def test_is_headless_env_override_and_kernel_detection(monkeypatch):
    monkeypatch.delenv(widgets.HEADLESS_ENV, raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert is_headless()  # pytest: no IPython kernel
    kernel_shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setattr(widgets, "_ipython", lambda: kernel_shell)
    assert is_headless()  # a kernel started by papermill / nbclient: no Jupyter server session
    monkeypatch.setenv("JPY_SESSION_NAME", "/tmp/x.ipynb")
    assert not is_headless()  # a kernel started by JupyterLab
    monkeypatch.setenv(widgets.HEADLESS_ENV, "1")
    assert is_headless()
    monkeypatch.setenv(widgets.HEADLESS_ENV, "0")
    monkeypatch.setattr(widgets, "_ipython", lambda: None)
    assert not is_headless()


# ---------------------------------------------------------------------------- dataset browser

def test_browser_paging_clamps_and_counts(records):
    s = DatasetBrowserState(records, page_size=4)
    assert s.n_pages == 2
    assert [i for i, _ in s.page_items()] == [0, 1, 2, 3]
    assert s.next_page() == 1 and [i for i, _ in s.page_items()] == [4, 5]
    assert s.next_page() == 1  # clamped at the last page
    assert s.prev_page() == 0 and s.prev_page() == 0
    assert s.goto(99) == 1
    with pytest.raises(ValueError):
        DatasetBrowserState(records, page_size=0)


def test_browser_filters(records):
    s = DatasetBrowserState(records, page_size=2)
    assert s.filter_fields == ["task_type", "category"]
    assert s.filter_options() == {"task_type": ["analysis", "decline", "question", "summary"],
                                  "category": ["domain"]}
    s.next_page()
    s.set_filter("task_type", "question")
    assert s.page == 0  # a new filter starts on the first page
    assert [r["id"] for _, r in s.filtered()] == ["r0", "r2", "r4"]
    assert s.n_pages == 2
    assert "3 of 6 records (task_type=question)" in s.status()
    s.set_filter("category", "domain")
    assert s.filtered() == []
    assert s.n_pages == 1 and s.page_items() == []
    s.set_filter("task_type", widgets.ALL)
    assert [r["id"] for _, r in s.filtered()] == ["r5"]
    with pytest.raises(KeyError, match="unknown filter"):
        s.set_filter("doc", "x")
    only_messages = DatasetBrowserState([{"messages": _conv("q", "a")}])
    assert only_messages.filter_fields == []  # no filter offered for a field no record has


def test_browser_views(records):
    s = DatasetBrowserState(records, page_size=10)
    single, multi = s.records[0], s.records[5]
    assert s.render_record(single) == single["messages"]
    s.set_view("alpaca")
    assert s.render_record(single) == {"instruction": "q0 <b>bold?</b>", "input": "", "output": "a0", "system": "sys"}
    with pytest.raises(ValueError, match="Alpaca"):  # FormatError is a ValueError
        s.render_record(multi)
    text, page = s.render_text(), s.render_page_html()
    assert '"instruction": "q0 <b>bold?</b>"' in text and "(no alpaca view:" in text
    assert "No alpaca view" in page
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page and "<b>bold?</b>" not in page  # content is escaped
    s.set_view("sharegpt")
    convs = s.render_record(multi)["conversations"]
    assert [t["from"] for t in convs] == ["human", "gpt", "human", "gpt"]
    with pytest.raises(ValueError, match="unknown view"):
        s.set_view("csv")


def test_browser_shows_validation_problems(records, tmp_path):
    bad_in_memory = records + [{"messages": [{"role": "user", "content": "no answer"}]}]
    s = DatasetBrowserState(bad_in_memory)
    assert len(s.records) == 6 and len(s.problems) == 1
    assert s.problems[0]["line"] == 7 and "assistant" in s.problems[0]["reason"]

    path = tmp_path / "data.jsonl"
    lines = [json.dumps(r) for r in records[:2]] + ["{not json", json.dumps({"messages": [{"role": "bot"}]})]
    path.write_text("\n".join(lines) + "\n")
    s = DatasetBrowserState.from_path(path)
    assert len(s.records) == 2 and [p["line"] for p in s.problems] == [3, 4]
    assert s.records[0]["task_type"] == "question"  # extra fields are kept
    assert "2 validation problem(s)" in s.status()
    html = s.render_problems_html()
    assert html.count("<tr>") == 3 and "malformed JSON" in html and "<td>messages[0].content</td>" in html
    assert "problem: line 3" in s.render_text()
    with pytest.raises(FileNotFoundError, match="build the data first"):
        DatasetBrowserState.from_path(tmp_path / "missing.jsonl")


def test_browser_static_fallback_and_live_widget(records):
    static = DatasetBrowser(records, headless=True, page_size=2)
    bundle = static._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}
    assert "il-dataset-browser" in bundle["text/html"] and "page 1/3" in bundle["text/plain"]
    assert static._widget is None  # headless never creates widget comms

    live = DatasetBrowser(records, headless=False, page_size=2)
    assert WIDGET_MIME in live._repr_mimebundle_()
    controls, view, page, problems = live.widget.children
    task_type, category, prev_b, next_b = controls.children
    next_b.click()
    assert live.state.page == 1 and "#2" in page.value
    task_type.value = "question"
    assert [r["id"] for _, r in live.state.page_items()] == ["r0", "r2"] and "#4" not in page.value
    view.value = "sharegpt"
    assert live.state.view == "sharegpt" and "&quot;from&quot;: &quot;human&quot;" in page.value
    prev_b.click()
    assert live.state.page == 0


# ---------------------------------------------------------------------------- mask inspector

@pytest.fixture(scope="module")
def tiny_tokenizer():
    from instructlab.models import load_tokenizer

    return load_tokenizer("tiny-random")


def test_mask_inspector_stats(tiny_tokenizer):
    s = MaskInspectorState([_conv("What is MTTR?", "Mean time to restore.", "Be brief."), MULTI_TURN],
                           tokenizers={"tiny": tiny_tokenizer})
    st = s.stats()
    ex = s.example()
    assert st["n_tokens"] == len(ex["input_ids"]) == len(ex["labels"])
    assert st["n_trained"] == sum(x != -100 for x in ex["labels"]) and 0 < st["trained_fraction"] < 1
    assert st["n_trained"] + st["n_masked"] == st["n_tokens"]
    s.select(1)
    both = s.stats()["n_trained"]
    s.set_train_on("last_assistant")
    assert 0 < s.stats()["n_trained"] < both
    s.set_train_on("all")
    assert s.stats()["trained_fraction"] == 1.0
    assert "trained fraction 100.0%" in s.describe()
    for bad in (lambda: s.select(2), lambda: s.set_train_on("user"), lambda: s.set_tokenizer("x"),
                lambda: s.set_template("x")):
        with pytest.raises(ValueError):
            bad()


def test_mask_inspector_template_switch_leaves_tokenizer_alone(tiny_tokenizer):
    from instructlab.models import DEFAULT_TEMPLATE_FILE

    own = tiny_tokenizer.chat_template
    s = MaskInspectorState([_conv("Hello?", "Hi.")], tokenizers={"tiny": tiny_tokenizer},
                           templates={"gemma": DEFAULT_TEMPLATE_FILE.read_text()})
    chatml = s.example()["input_ids"]
    s.set_template("gemma")
    gemma = s.example()["input_ids"]
    assert gemma != chatml
    assert "<start_of_turn>" in tiny_tokenizer.decode(gemma) and "<|im_start|>" in tiny_tokenizer.decode(chatml)
    assert tiny_tokenizer.chat_template == own  # the template was applied on a copy
    assert "template gemma" in s.describe()


def test_mask_inspector_loads_tokenizers_lazily_once(tiny_tokenizer):
    calls = []

    def loader(name):
        calls.append(name)
        return tiny_tokenizer

    s = MaskInspectorState([_conv("a?", "b.")], tokenizers=["one", "two"], loader=loader)
    assert calls == []
    s.stats()
    s.set_train_on("all")
    s.stats()
    s.set_tokenizer("two")
    s.stats()
    assert calls == ["one", "two"]


def test_mask_inspector_renders_static_and_live(tiny_tokenizer):
    static = MaskInspector([_conv("What is MTTR?", "Mean time to restore.")], headless=True,
                           tokenizers={"tiny": tiny_tokenizer})
    bundle = static._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}
    assert "il-mask-tokens" in bundle["text/html"] and "trained fraction" in bundle["text/plain"]
    assert "restore" in bundle["text/html"]

    live = MaskInspector([_conv("a?", "b."), MULTI_TURN], headless=False, tokenizers={"tiny": tiny_tokenizer})
    row, train_on, out = live.widget.children
    example, tok, tpl = row.children
    example.value = 1
    assert "example 2/2" in out.value
    train_on.value = "all"
    assert "trained fraction 100.0%" in out.value


def test_mask_inspector_shows_errors_in_the_widget(tiny_tokenizer):
    live = MaskInspector([_conv("a?", "b.")], headless=False, tokenizers={"tiny": tiny_tokenizer},
                         templates={"broken": "{{ raise_exception('template says no') }}"})
    out = live.widget.children[2]
    live.widget.children[0].children[2].value = "broken"
    assert "template says no" in out.value


# ---------------------------------------------------------------------------- chat comparison

@pytest.fixture(scope="module")
def tiny_pair(tiny_tokenizer):
    from instructlab.models import load_model

    return load_model("tiny-random"), tiny_tokenizer


def test_chat_comparison_settings():
    with pytest.raises(ValueError, match="two or more"):
        ChatComparisonState({"only": "tiny-random"})
    s = ChatComparisonState({"a": "x", "b": "y"}, max_new_tokens=7, system_prompt="Be brief.")
    with pytest.raises(ValueError):
        s.set_settings(max_new_tokens=0)
    with pytest.raises(ValueError):
        s.set_settings(temperature=-1)
    assert s.messages("hi") == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    tok = types.SimpleNamespace(pad_token_id=0, eos_token_id=2, get_vocab=lambda: {"<|im_end|>": 2, "<end_of_turn>": 9})
    assert s.generation_kwargs(tok) == {"max_new_tokens": 7, "pad_token_id": 0, "eos_token_id": [2, 9],
                                        "do_sample": False}
    s.set_settings(temperature=0.8)
    assert s.generation_kwargs(tok)["do_sample"] and s.generation_kwargs(tok)["temperature"] == 0.8
    with pytest.raises(ValueError, match="prompt"):
        s.run("   ")


def test_chat_comparison_streams_the_greedy_answer(tiny_pair):
    from instructlab.generate import generate_answers

    model, tok = tiny_pair
    s = ChatComparisonState({"base": tiny_pair, "same": tiny_pair}, max_new_tokens=12)
    updates = []
    out = s.run("What does MTTR stand for?", on_update=lambda label, text: updates.append((label, text)))
    expected = generate_answers(model, tok, [[{"role": "user", "content": "What does MTTR stand for?"}]],
                                max_new_tokens=12, progress=False)[0]
    assert out["base"].strip() == expected and out["same"] == out["base"]  # greedy: the same text
    base_updates = [t for label, t in updates if label == "base"]
    assert len(base_updates) > 1 and base_updates[-1] == out["base"]  # streamed in pieces
    assert all(b.startswith(a) for a, b in zip(base_updates, base_updates[1:]))
    assert set(s.seconds) == {"base", "same"} and not s.errors
    assert out["base"] in s.render_text() and "il-chat-comparison" in s.render_html()


def test_chat_comparison_one_failing_model_does_not_hide_the_other(tiny_pair):
    model, tok = tiny_pair

    class Broken:
        device = model.device

        def generate(self, **kwargs):
            raise RuntimeError("out of memory (simulated)")

    s = ChatComparisonState({"broken": (Broken(), tok), "ok": tiny_pair}, max_new_tokens=4)
    out = s.run("hi")
    assert "simulated" in s.errors["broken"] and out["broken"] == ""
    assert "ok" not in s.errors and out["ok"] != ""
    assert "simulated" in s.render_html()


def test_chat_comparison_widget_and_compare(tiny_pair):
    view = ChatComparison({"a": tiny_pair, "b": tiny_pair}, headless=False, max_new_tokens=3)
    prompt, settings, columns = view.widget.children
    max_new, temp, go, status = settings.children
    prompt.value, max_new.value = "Hello", 5
    go.click()
    assert view.state.max_new_tokens == 5 and view.state.prompt == "Hello"
    assert columns.children[0].children[1].value == view.state.outputs["a"] != ""
    assert "a:" in status.value
    static = ChatComparison({"a": tiny_pair, "b": tiny_pair}, headless=True, max_new_tokens=3).compare("Hello")
    assert static.state.outputs["a"] in static._repr_mimebundle_()["text/plain"]


# ---------------------------------------------------------------------------- live loss plot

def _trainer_state(step=0, zero=True):
    return types.SimpleNamespace(global_step=step, is_world_process_zero=zero)


def test_loss_history():
    h = LossHistory()
    assert "no loss logged" in h.summary()
    assert not h.add(1, {"learning_rate": 1e-4})
    assert h.add(1, {"loss": 2.5}) and h.add(2, {"loss": 2.0}) and h.add(2, {"eval_loss": 2.2})
    assert (h.steps, h.losses, h.eval_steps, h.eval_losses) == ([1, 2], [2.5, 2.0], [2], [2.2])
    assert h.summary() == ("train loss 2.5000 -> 2.0000 over 2 logs (steps 1..2); "
                           "eval loss 2.2000 -> 2.2000 (best 2.2000)")
    fig = h.figure("t")
    assert len(fig.axes[0].lines) == 2


def test_live_loss_plot_headless_saves_and_prints(tmp_path, capsys):
    cb = LiveLossPlot(save_to=tmp_path / "fig" / "loss", headless=True)
    cb.on_train_begin(None, _trainer_state(), None)
    for step, loss in [(1, 3.0), (2, 2.0)]:
        cb.on_log(None, _trainer_state(step), None, logs={"loss": loss})
    cb.on_log(None, _trainer_state(2, zero=False), None, logs={"loss": 99.0})  # other ranks never record
    cb.on_train_end(None, _trainer_state(2), None)
    assert cb.history.losses == [3.0, 2.0]
    png, svg = cb.saved
    assert png.stat().st_size > 1000 and svg.read_text().lstrip().startswith("<?xml")
    assert "train loss 3.0000 -> 2.0000" in capsys.readouterr().out


def test_live_loss_plot_redraws_every_n_logs():
    updates = []
    cb = LiveLossPlot(every=2, headless=False)
    cb._handle = types.SimpleNamespace(update=updates.append)  # the display handle of a live notebook
    for step in range(1, 6):
        cb.on_log(None, _trainer_state(step), None, logs={"loss": 1.0 / step})
    assert len(updates) == 2 and updates[0].data[:8] == b"\x89PNG\r\n\x1a\n"


def test_live_loss_plot_in_a_real_trainer(tmp_path, tiny_pair, capsys):
    import torch
    from transformers import Trainer, TrainingArguments

    from instructlab.models import load_model

    model = load_model("tiny-random", for_training=True)
    rows = [{"input_ids": ids, "attention_mask": [1] * 8, "labels": ids}
            for ids in torch.randint(10, 1000, (8, 8)).tolist()]
    cb = LiveLossPlot(save_to=tmp_path / "loss", headless=True)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3, logging_steps=1, use_cpu=True,
                             per_device_train_batch_size=4, report_to=[], disable_tqdm=True, save_strategy="no")
    Trainer(model=model, args=args, train_dataset=rows, callbacks=[cb]).train()
    assert cb.history.steps == [1, 2, 3] and all(x > 0 for x in cb.history.losses)
    assert cb.saved[0].exists() and "LiveLossPlot: train loss" in capsys.readouterr().out


# ---------------------------------------------------------------------------- headless in a real kernel

LIVE_LOSS_CELL = """\
import os, types
os.environ["INSTRUCTLAB_HEADLESS"] = "0"   # pretend a frontend is there: exercise the live path
from instructlab.widgets import LiveLossPlot
cb = LiveLossPlot(every=1)
st = lambda step: types.SimpleNamespace(global_step=step, is_world_process_zero=True)
cb.on_train_begin(None, st(0), None)
for step in (1, 2, 3):
    cb.on_log(None, st(step), None, logs={"loss": 4.0 / step})
cb.on_train_end(None, st(3), None)
"""


@pytest.mark.notebook
def test_views_in_a_real_kernel(tmp_path, monkeypatch):
    """In a papermill kernel a displayed view is stored as HTML + text, with no widget output; the
    live loss plot keeps one output that it updates in place (display_id), not one per log."""
    import nbformat
    import papermill as pm

    monkeypatch.delenv(widgets.HEADLESS_ENV, raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    cell = ("from instructlab.widgets import DatasetBrowser, is_headless\n"
            "print('headless', is_headless())\n"
            "DatasetBrowser([[{'role': 'user', 'content': 'q?'}, {'role': 'assistant', 'content': 'a <i>!'}]])")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell), nbformat.v4.new_code_cell(LIVE_LOSS_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    out = pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                              progress_bar=False)
    outputs = out.cells[0].outputs
    assert outputs[0]["text"] == "headless True\n"
    data = outputs[1]["data"]
    assert set(data) == {"text/html", "text/plain"} and WIDGET_MIME not in data
    assert "il-dataset-browser" in data["text/html"] and "a &lt;i&gt;!" in data["text/html"]
    assert "widgets" not in out.metadata  # no widget state saved: nothing was opened

    loss_outputs = out.cells[1].outputs
    images = [o for o in loss_outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, [o.get("output_type") for o in loss_outputs]  # one figure, updated in place
    assert "waiting for the first" not in str(loss_outputs)  # the placeholder was replaced
    assert "train loss 4.0000 -> 1.3333 over 3 logs" in "".join(o.get("text", "") for o in loss_outputs)


def test_browser_prompt_only_records(tmp_path):
    prompt = {"id": "e1", "category": "decline", "messages": [{"role": "user", "content": "Rate Ardent Cloud?"}]}
    assert len(DatasetBrowserState([prompt]).problems) == 1  # a training set must have answers
    s = DatasetBrowserState([prompt, {"messages": [{"role": "user", "content": 3}]}], allow_prompts=True)
    assert [r["id"] for r in s.records] == ["e1"] and len(s.problems) == 1  # other faults stay problems
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"messages": _conv("q", "a")}) + "\n" + json.dumps(prompt) + "\n")
    s = DatasetBrowserState.from_path(path, allow_prompts=True)
    assert len(s.records) == 2 and s.problems == [] and s.filter_options() == {"category": ["decline"]}
    assert "[user] Rate Ardent Cloud?" in s.render_text()
