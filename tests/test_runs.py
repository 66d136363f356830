import json

from instructlab import runs


def test_new_run_dir_is_unique_and_under_root(tmp_path):
    a = runs.new_run_dir("train", root=tmp_path)
    b = runs.new_run_dir("train", root=tmp_path)
    assert a != b and a.parent == tmp_path and b.parent == tmp_path
    assert a.name.endswith("-train")


def test_fingerprint_depends_on_content_and_order():
    r1 = [{"messages": [{"role": "user", "content": "a"}]}, {"x": 1}]
    assert runs.fingerprint(r1) == runs.fingerprint([dict(r) for r in r1])
    assert runs.fingerprint(r1) != runs.fingerprint(r1[::-1])
    assert runs.fingerprint(r1) != runs.fingerprint(r1[:1])


def test_manifest_records_versions_and_keeps_fields(tmp_path):
    runs.write_manifest(tmp_path, kind="eval", params={"n": 3})
    runs.write_manifest(tmp_path, metrics={"loss": 1.5})
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["kind"] == "eval" and m["params"] == {"n": 3} and m["metrics"] == {"loss": 1.5}
    assert m["packages"]["torch"] and "python" in m["packages"]


def test_jsonl_round_trip(tmp_path):
    rows = [{"a": "é"}, {"b": [1, 2]}]
    runs.write_jsonl(tmp_path / "x.jsonl", rows)
    assert runs.read_jsonl(tmp_path / "x.jsonl") == rows
