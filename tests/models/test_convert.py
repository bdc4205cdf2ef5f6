"""The packaged ONNX / GGUF models converted to torch folders (built once into the user's infopt cache)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from infopt.models import LoadedModel, bundled_path, fingerprint_folder, load_model, package_file
from infopt.models._convert import MINILM_L3_DIST, MINILM_L3_FILE, convert_minilm_l3

pytestmark = pytest.mark.slow

TEXTS = ["a great film", "an excellent movie", "the stock market fell", "Hello there, how are you today?"]


@pytest.fixture(scope="module")
def minilm_l3() -> LoadedModel:
    return load_model("minilm-l3")


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return load_model("smollm2-135m")


def _ort_last_hidden(batch: dict[str, torch.Tensor]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(package_file(MINILM_L3_DIST, MINILM_L3_FILE)),
                                   providers=["CPUExecutionProvider"])
    feed = {k: batch[k].numpy() for k in ("input_ids", "attention_mask")}
    (hidden,) = session.run(["onnx::Shape_422"], feed)  # [B, T, 384], before pooling
    return hidden


def test_minilm_l3_shape(minilm_l3: LoadedModel) -> None:
    c = minilm_l3.model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size, c.vocab_size) == (
        3, 384, 12, 1536, 30522)
    assert minilm_l3.task == "embedding"
    assert minilm_l3.manifest.method == "convert:onnx"
    assert minilm_l3.manifest.fingerprint == fingerprint_folder(bundled_path("minilm-l3"))


def test_minilm_l3_matches_onnx(minilm_l3: LoadedModel) -> None:
    batch = minilm_l3.encode(TEXTS)
    with torch.inference_mode():
        hidden = minilm_l3.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    mask = batch["attention_mask"].bool()
    expected = torch.from_numpy(_ort_last_hidden(dict(batch)))
    assert (hidden.last_hidden_state[mask] - expected[mask]).abs().max() < 1e-4


def test_minilm_l3_embeddings_carry_meaning(minilm_l3: LoadedModel) -> None:
    great, excellent, stocks, _ = minilm_l3.predict(TEXTS)  # unit vectors [384]
    assert great @ excellent > great @ stocks + 0.2


def test_convert_minilm_l3_into_empty_folder(tmp_path: Path) -> None:
    convert_minilm_l3(tmp_path)
    manifest = json.loads((tmp_path / "infopt.json").read_text())
    assert manifest["metrics"]["max_abs_diff_vs_onnx"] < 1e-4
    assert manifest["fingerprint"] == fingerprint_folder(tmp_path)
    assert load_model(tmp_path).manifest.name == "minilm-l3"


def test_smollm2_structure(smollm2: LoadedModel) -> None:
    model = smollm2.model
    assert model.config.num_hidden_layers == 30
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.dtype == torch.float32
    assert 130e6 < smollm2.num_parameters() < 140e6
    saved_config = json.loads((bundled_path("smollm2-135m") / "config.json").read_text())
    assert "quantization_config" not in saved_config
    assert smollm2.manifest.method == "convert:gguf"


def test_smollm2_generates_text(smollm2: LoadedModel) -> None:
    tok = smollm2.tokenizer
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        out = smollm2.model.generate(**prompt, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert text
    assert "Paris" in text
