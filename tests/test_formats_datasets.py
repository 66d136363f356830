"""formats.load_dataset_messages: a datasets.Dataset, a save_to_disk folder or a Hub id as training
data, columns mapped to messages. Offline throughout: the Hub case checks the error."""

import datasets
import pytest

from instructlab import formats, train
from instructlab.formats import DatasetNotAvailableError, FormatError, load_dataset_messages

QA = {"question": ["What is an SLA?", "Reset my password."],
      "answer": ["A service level agreement.", "Use the self-service portal."],
      "category": ["domain", "domain"]}


def test_columns_map_single_turn_data_and_keep_the_other_columns():
    ds = datasets.Dataset.from_dict({**QA, "sys": ["Be formal.", "Be formal."]})
    records = load_dataset_messages(ds, columns={"prompt": "question", "response": "answer", "system": "sys"})
    assert records[0] == {"category": "domain", "messages": [
        {"role": "system", "content": "Be formal."}, {"role": "user", "content": "What is an SLA?"},
        {"role": "assistant", "content": "A service level agreement."}]}
    plain = load_dataset_messages(ds, columns={"instruction": "question", "output": "answer"}, keep_extra=False)
    assert plain[1] == [{"role": "user", "content": "Reset my password."},
                        {"role": "assistant", "content": "Use the self-service portal."}]


def test_rows_in_the_known_formats_need_no_mapping():
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert load_dataset_messages(datasets.Dataset.from_list([{"messages": chat}]), keep_extra=False) == [chat]
    sharegpt = datasets.Dataset.from_list([{"turns": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}])
    assert load_dataset_messages(sharegpt, columns={"conversations": "turns"}, keep_extra=False) == [chat]
    trl_style = datasets.Dataset.from_list([{"prompt": chat[:1], "completion": chat[1:]}])  # TRL prompt-completion
    assert load_dataset_messages(trl_style, keep_extra=False) == [chat]


def test_a_save_to_disk_folder_and_its_splits(tmp_path):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(QA),
                               "test": datasets.Dataset.from_dict({k: v[:1] for k, v in QA.items()})})
    dd.save_to_disk(str(tmp_path / "dd"))
    columns = {"prompt": "question", "response": "answer"}
    assert len(load_dataset_messages(tmp_path / "dd", columns=columns)) == 2
    assert len(load_dataset_messages(str(tmp_path / "dd"), columns=columns, split="test")) == 1
    with pytest.raises(FormatError, match=r"no split 'dev'.*one of \['test', 'train'\]"):
        load_dataset_messages(tmp_path / "dd", columns=columns, split="dev")
    dd["train"].save_to_disk(str(tmp_path / "one"))
    records = load_dataset_messages(tmp_path / "one", columns=columns)
    assert train.as_conversations(records)[1][0]["content"] == "Reset my password."  # what train_lora takes


def test_bad_rows_and_bad_mappings_name_what_to_fix():
    ds = datasets.Dataset.from_dict({"question": ["Q1", "Q2"], "answer": ["A1", ""]})
    columns = {"prompt": "question", "response": "answer"}
    with pytest.raises(FormatError, match=r":2: .*empty response"):
        load_dataset_messages(ds, columns=columns)
    good, bad = load_dataset_messages(ds, columns=columns, skip_bad=True)
    assert len(good) == 1 and bad[0].line == 2
    with pytest.raises(ValueError, match=r"\['question_text'\].*its columns are \['question', 'answer'\]"):
        load_dataset_messages(ds, columns={"prompt": "question_text", "response": "answer"})
    with pytest.raises(ValueError, match=r"\['reply'\] are not fields the kit knows.*'response'"):
        load_dataset_messages(ds, columns={"prompt": "question", "reply": "answer"})


def test_a_hub_id_offline_names_the_embedded_data(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotAvailableError, match=r"HF_HUB_OFFLINE=1 is set.*data/kestrel/train.jsonl"):
        load_dataset_messages("someone/not-cached-anywhere-1234")
    assert all((formats.Path(__file__).parent.parent / p).is_file() for p in formats.EMBEDDED_DATASETS)
