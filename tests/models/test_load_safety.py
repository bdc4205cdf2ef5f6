"""Safe loading: a model folder loads its weights from safetensors only (pickle-only folders are refused, naming
the file and the opt-in) and never runs the folder's own code, unless the caller opts in; real tiny folders saved
each way, and the CLI's --allow-pickle."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, PreTrainedTokenizerBase

from infopt.cli import main
from infopt.errors import UserError
from infopt.models import LoadedModel, load_model
from infopt.models._formats import LoadOptions
from infopt.models._load import ALLOW_PICKLE_ENV, _check_pickles
from infopt.models._manifest import Manifest


def _tiny(tokenizer: PreTrainedTokenizerBase) -> Any:
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128,
                        architectures=["BertForSequenceClassification"], id2label={0: "negative", 1: "positive"},
                        label2id={"negative": 0, "positive": 1})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_config(config, dtype=torch.float32).eval()


def _folder(path: Path, tokenizer: PreTrainedTokenizerBase, safe: bool) -> Path:
    """A Hugging Face folder (no infopt manifest: it comes from elsewhere) saved as safetensors or, as older
    transformers wrote them, as a pickled state dict in pytorch_model.bin."""
    model = _tiny(tokenizer)
    if safe:
        model.save_pretrained(path)
    else:
        model.config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    tokenizer.save_pretrained(path)
    return path


def _logits(loaded: LoadedModel, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    batch = tokenizer(["a fine film"], return_tensors="pt")
    with torch.inference_mode():
        return loaded.model(**batch).logits  # type: ignore[no-any-return]


@pytest.fixture
def pickled(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> Path:
    path = _folder(tmp_path / "pickled", tokenizer, safe=False)
    assert (path / "pytorch_model.bin").exists() and not list(path.glob("*.safetensors"))
    return path


def test_a_pickle_only_folder_is_refused_naming_the_file_and_the_opt_in(pickled: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    with pytest.raises(UserError) as e:
        load_model(pickled)
    assert "pytorch_model.bin" in e.value.problem and "safetensors only" in e.value.problem
    assert "--allow-pickle" in e.value.fix and "allow_pickle=True" in e.value.fix


def test_allow_pickle_loads_it_and_the_log_says_so(pickled: Path, tokenizer: PreTrainedTokenizerBase,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="infopt.models._load"):
        loaded = load_model(pickled, allow_pickle=True)
    assert "loading pickle weights pytorch_model.bin" in caplog.text
    assert torch.allclose(_logits(loaded, tokenizer), _logits(LoadedModel(_tiny(tokenizer), tokenizer,
                                                                          loaded.manifest), tokenizer))
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")  # what --allow-pickle sets for the processes a command starts
    assert load_model(pickled).task == "classification"
    with pytest.raises(UserError, match="pickle"):
        load_model(pickled, allow_pickle=False)  # an explicit False wins over the environment


def test_safetensors_are_read_and_a_pickle_beside_them_never(tmp_path: Path, tokenizer: PreTrainedTokenizerBase,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    path = _folder(tmp_path / "safe", tokenizer, safe=True)
    expected = _logits(load_model(path), tokenizer)
    (path / "pytorch_model.bin").write_bytes(b"not a pickle at all")  # would fail if anything read it
    assert torch.allclose(_logits(load_model(path), tokenizer), expected)


def test_other_pickle_names_are_refused_too_and_onnx_is_not_pickle(tmp_path: Path,
                                                                    tokenizer: PreTrainedTokenizerBase) -> None:
    path = _folder(tmp_path / "pt", tokenizer, safe=False)
    (path / "pytorch_model.bin").rename(path / "weights.pt")
    with pytest.raises(UserError, match=r"weights\.pt"):
        load_model(path, allow_pickle=False)
    manifest = Manifest(name="x", task="classification", format="onnx")
    (path / "model.onnx").write_bytes(b"")
    _check_pickles(path, manifest, LoadOptions())  # an ONNX folder's weights are the graph: nothing refused
    torch_state = tmp_path / "own"
    torch_state.mkdir()
    (torch_state / "state.pt").write_bytes(b"")
    _check_pickles(torch_state, Manifest(name="q", task="classification", format="torch-state"), LoadOptions())
    with pytest.raises(UserError, match=r"state\.pt"):  # the same file in a foreign folder is refused
        _check_pickles(torch_state, Manifest(name="q", task="classification"), LoadOptions())


CONFIG_PY = '''
from pathlib import Path
from typing import Any
from transformers import BertConfig

Path({marker!r}).write_text("the folder's code ran")


class CustomConfig(BertConfig):
    model_type = "infopt-test-custom"
'''

MODELING_PY = '''
from transformers import BertModel

from .configuration_custom import CustomConfig


class CustomModel(BertModel):
    config_class = CustomConfig
'''


def _remote_code_folder(path: Path, tokenizer: PreTrainedTokenizerBase, marker: Path) -> Path:
    """A folder whose config names its own classes (auto_map) in .py files beside it; importing them writes
    `marker`."""
    _tiny(tokenizer).bert.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="infopt-test-custom", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "configuration_custom.CustomConfig",
                            "AutoModel": "modeling_custom.CustomModel"})
    (path / "config.json").write_text(json.dumps(config))
    (path / "configuration_custom.py").write_text(CONFIG_PY.format(marker=str(marker)))
    (path / "modeling_custom.py").write_text(MODELING_PY)
    return path


def test_remote_code_never_runs_unless_asked(tmp_path: Path, tokenizer: PreTrainedTokenizerBase,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import dynamic_module_utils

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    monkeypatch.delenv("INFOPT_TRUST_REMOTE_CODE", raising=False)
    marker = tmp_path / "ran.txt"
    path = _remote_code_folder(tmp_path / "custom", tokenizer, marker)
    with pytest.raises(UserError) as e:
        load_model(path)
    assert "code from the folder itself" in e.value.problem and "--trust-remote-code" in e.value.fix
    assert not marker.exists()
    loaded = load_model(path, trust_remote_code=True)
    assert marker.exists() and type(loaded.model).__name__ == "CustomModel" and loaded.task == "embedding"


def test_the_cli_refuses_pickles_in_one_line(pickled: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    assert main(["serve", str(pickled), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("infopt: error:") and "pytorch_model.bin" in err and "--allow-pickle" in err
    assert len(err.splitlines()) == 1
