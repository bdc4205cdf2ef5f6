"""The openvino* schemes on the tiny BERT models, with the real OpenVINO and NNCF (each build takes a few seconds,
so each scheme is built once per module). Skipped where OpenVINO is not installed."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, PreTrainedTokenizerBase

from infopt.compress.quantize import (
    OpenVinoBf16Config,
    OpenVinoFp32Config,
    OpenVinoInt8Config,
    OpenVinoModel,
    config_from_dict,
    config_from_name,
    quantize,
    uses_calibration,
)
from infopt.compress.quantize import _openvino as ov_backend
from infopt.compress.quantize._openvino_format import recorded_config
from infopt.errors import MissingDependency, NotApplicable, UserError
from infopt.models import LoadedModel, Manifest, get_format, load_model, save_model, weights_mb
from tests.conftest import make_reviews, tiny_classifier  # type: ignore[import-not-found]

from .conftest import TEXTS

BATCH = [*TEXTS, "a good and great film", "boring", "the cast is sharp but the plot is weak", "quite moving really"]
CALIBRATION = make_reviews(48).texts


@pytest.fixture(scope="module")
def ov() -> object:
    pytest.importorskip("nncf")
    return pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def bf16(ov: object) -> bool:
    return "BF16" in ov_backend.cpu_capabilities()


@pytest.fixture(scope="module")
def clf(tokenizer: PreTrainedTokenizerBase) -> LoadedModel:
    return tiny_classifier(tokenizer, name="tiny-bert-classifier")


@pytest.fixture(scope="module")
def built(ov: object, bf16: bool, clf: LoadedModel) -> dict[str, LoadedModel]:
    """Each scheme built once: openvino on 1 thread, openvino-int8 with the classifier head left out."""
    configs = [OpenVinoFp32Config(threads=1), OpenVinoInt8Config(exclude=("classifier",))]
    if bf16:
        configs += [config_from_name("openvino-bf16"), config_from_name("openvino-int8-bf16")]
    return {c.scheme: quantize(clf, c, calibration=CALIBRATION) for c in configs}


def _scheme(built: dict[str, LoadedModel], scheme: str) -> LoadedModel:
    if scheme not in built:
        pytest.skip("OpenVINO's CPU plugin offers no bf16 on this CPU")
    return built[scheme]


def _ir_bytes(model: LoadedModel) -> int:
    path = model.model.path
    return int(path.stat().st_size + path.with_suffix(".bin").stat().st_size)


def test_fp32_ir_matches_torch_for_any_batch(built: dict[str, LoadedModel], clf: LoadedModel) -> None:
    q = built["openvino"]
    assert isinstance(q.model, OpenVinoModel)
    assert q.manifest.format == "openvino" and q.manifest.method == "quantize:openvino"
    assert q.model.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert q.model.output_name == "logits" and q.model.threads == 1
    assert q.model.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert (q.model.path.parent / "config.json").is_file()
    for batch in (BATCH[:1], BATCH, BATCH * 3):  # dynamic batch and sequence
        torch.testing.assert_close(q.predict(batch), clf.predict(batch), rtol=0, atol=1e-4)
    without_types = {k: v for k, v in q.encode(BATCH).items() if k != "token_type_ids"}
    torch.testing.assert_close(q.forward(without_types), q.predict(BATCH))  # zeros filled in
    assert abs(q.num_parameters() - clf.num_parameters()) < 0.01 * clf.num_parameters()


@pytest.mark.parametrize("scheme", ["openvino-bf16", "openvino-int8-bf16"])
def test_bf16_hint_is_close(built: dict[str, LoadedModel], clf: LoadedModel, scheme: str) -> None:
    q = _scheme(built, scheme)
    assert q.model.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    assert q.manifest.metrics["quantize"]["precision_hint"] == "bf16"
    torch.testing.assert_close(q.predict(BATCH), clf.predict(BATCH), rtol=0, atol=0.02)


def test_int8_agrees_and_is_smaller(built: dict[str, LoadedModel], clf: LoadedModel) -> None:
    q = built["openvino-int8"]
    info = q.manifest.metrics["quantize"]
    assert info["nncf"] and info["calibration"]["texts"] == len(CALIBRATION)
    assert info["fp32_modules"] == ["classifier"] and info["int8_constants"] >= 12  # 2 layers x 6 Linear
    assert q.model.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    agree = (q.predict(BATCH).argmax(-1) == clf.predict(BATCH).argmax(-1)).float().mean()
    assert agree >= 0.75
    assert _ir_bytes(q) < 0.5 * _ir_bytes(built["openvino"])  # int8 weights and word embedding
    if "openvino-int8-bf16" in built:  # the default exclude quantizes the head too
        assert built["openvino-int8-bf16"].manifest.metrics["quantize"]["fp32_modules"] == []


@pytest.mark.parametrize("scheme", ["openvino", "openvino-int8", "openvino-bf16"])
def test_round_trip_same_outputs_and_recorded_config(built: dict[str, LoadedModel], tmp_path: Path,
                                                     scheme: str) -> None:
    q = _scheme(built, scheme)
    saved = save_model(q, tmp_path / scheme)
    assert {"model.xml", "model.bin", "config.json", "infopt.json"} <= {p.name for p in (tmp_path / scheme).iterdir()}
    back = load_model(tmp_path / scheme)
    assert isinstance(back.model, OpenVinoModel) and back.manifest.fingerprint == saved.manifest.fingerprint
    torch.testing.assert_close(back.predict(BATCH), q.predict(BATCH), rtol=0, atol=1e-6)
    assert back.num_parameters() == q.num_parameters()
    assert weights_mb(tmp_path / scheme) == pytest.approx(_ir_bytes(q) / 1e6)
    recorded = recorded_config(back.manifest)
    assert recorded is not None
    assert recorded.to_dict() == q.manifest.recipe[-1]["config"]
    assert back.model.precision_hint == recorded.precision_hint
    assert back.model.threads == (recorded.threads or torch.get_num_threads())


def test_fingerprints_differ_between_schemes(built: dict[str, LoadedModel], tmp_path: Path) -> None:
    prints = {save_model(q, tmp_path / s).manifest.fingerprint for s, q in built.items()}
    assert len(prints) == len(built)


def test_the_manifest_records_the_config(built: dict[str, LoadedModel]) -> None:
    q = built["openvino-int8"]
    step = q.manifest.recipe[-1]
    assert step["stage"] == "quantize"
    assert step["config"] == {"version": 1, "scheme": "openvino-int8", "exclude": ["classifier"], "threads": None,
                              "calibration_size": 300, "max_length": 128}
    assert recorded_config(q.manifest) == OpenVinoInt8Config(exclude=("classifier",))
    assert json.loads(q.manifest.to_json())["recipe"][-1]["config"]["scheme"] == "openvino-int8"
    assert recorded_config(built["openvino"].manifest) == OpenVinoFp32Config(threads=1)


def test_a_missing_or_corrupt_model_xml_is_one_user_error(built: dict[str, LoadedModel], tmp_path: Path) -> None:
    q = built["openvino"]
    folder = tmp_path / "ov"
    folder.mkdir()
    fmt = get_format("openvino")
    fmt.write(q, folder)
    config = AutoConfig.from_pretrained(folder)
    assert isinstance(fmt.read(folder, config, q.manifest), OpenVinoModel)
    with open(folder / "model.bin", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(UserError, match=r"model\.xml \(with model\.bin\) cannot be read by OpenVINO") as err:
        fmt.read(folder, config, q.manifest)
    assert "Incorrect weights in bin file" in err.value.problem and "re-save the model" in err.value.fix
    (folder / "model.xml").write_text("<net><layers><layer id='0' type='Parameter'")  # truncated
    with pytest.raises(UserError, match=r"model\.xml \(with model\.bin\) cannot be read by OpenVINO"):
        fmt.read(folder, config, q.manifest)
    (folder / "model.xml").unlink()
    with pytest.raises(UserError, match=r"model\.xml is missing") as err:
        fmt.read(folder, config, q.manifest)
    assert "model.xml and model.bin" in err.value.fix


def test_load_model_of_a_corrupt_folder_names_the_file(built: dict[str, LoadedModel], tmp_path: Path) -> None:
    save_model(built["openvino"], tmp_path / "ov")
    (tmp_path / "ov" / "model.xml").write_text("not xml at all")
    with pytest.raises(UserError, match=r"model\.xml \(with model\.bin\) cannot be read by OpenVINO"):
        load_model(tmp_path / "ov")


def test_an_embedder_gives_the_hidden_states(ov: object, tiny_bert_embedder: LoadedModel) -> None:
    q = quantize(tiny_bert_embedder, OpenVinoFp32Config(threads=1))
    assert q.model.output_name == "last_hidden_state"
    torch.testing.assert_close(q.predict(BATCH), tiny_bert_embedder.predict(BATCH), rtol=0, atol=1e-4)
    raw = q.model(**{k: v for k, v in q.encode(BATCH[:2]).items()})
    assert raw.last_hidden_state.shape[:2] == q.encode(BATCH[:2])["input_ids"].shape


def test_a_causal_lm_is_not_applicable(ov: object, tiny_llama: LoadedModel) -> None:
    for scheme in ("openvino", "openvino-int8"):
        with pytest.raises(NotApplicable, match="classification and embedding"):
            quantize(tiny_llama, scheme, calibration=["x"])


def test_an_onnx_parent_is_not_applicable(clf: LoadedModel) -> None:
    onnx_like = LoadedModel(object(), clf.tokenizer, dataclasses.replace(clf.manifest, format="onnx"))
    with pytest.raises(NotApplicable, match="needs a PyTorch model"):
        quantize(onnx_like, "openvino")
    with pytest.raises(NotApplicable, match="convert from the torch model"):
        ov_backend.apply_openvino(onnx_like, OpenVinoFp32Config())


def test_int8_needs_calibration_texts(ov: object, clf: LoadedModel) -> None:
    with pytest.raises(UserError, match="needs calibration texts"):
        quantize(clf, "openvino-int8")


def test_bf16_is_not_applicable_without_bf16_in_the_cpu_plugin(ov: object, clf: LoadedModel,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda: ["FP32", "INT8", "EXPORT_IMPORT"])
    for scheme in ("openvino-bf16", "openvino-int8-bf16"):
        with pytest.raises(NotApplicable, match="FP32, INT8, EXPORT_IMPORT") as err:
            quantize(clf, scheme, calibration=CALIBRATION)
        assert "AMX or AVX-512 BF16" in err.value.fix and scheme in err.value.problem
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda: pytest.fail("fp32 does not ask"))
    assert ov_backend._check_bf16(OpenVinoFp32Config()) == {}


def test_missing_openvino_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(MissingDependency, match="OpenVINO is not installed") as err:
        ov_backend.import_openvino()
    assert "pip install 'infopt[openvino]'" in err.value.fix


# ---------------------------------------------------------------- configs (no OpenVINO needed)

def test_configs_validate_and_round_trip() -> None:
    for config in (OpenVinoFp32Config(threads=4), OpenVinoBf16Config(),
                   OpenVinoInt8Config(exclude=("*.output.dense",), calibration_size=64, max_length=32, threads=2),
                   config_from_name("openvino-int8-bf16", calibration_size=10)):
        assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert config.kind == "openvino"
        assert uses_calibration(config) == ("int8" in config.scheme)
    assert OpenVinoBf16Config.precision_hint == "bf16" and OpenVinoFp32Config.precision_hint == "f32"
    with pytest.raises(UserError, match="quantizes nothing") as err:
        OpenVinoFp32Config(exclude=("classifier",))
    assert "openvino-int8" in err.value.fix
    for bad in ({"threads": 0}, {"calibration_size": 0}, {"max_length": 1}, {"exclude": "classifier"}):
        with pytest.raises(UserError):
            OpenVinoInt8Config(**bad)  # type: ignore[arg-type]


def test_recorded_config_ignores_other_schemes() -> None:
    manifest = Manifest(name="x", task="classification",
                        recipe=[{"stage": "quantize", "config": {"scheme": "dynamic-int8"}}])
    assert recorded_config(manifest) is None
    assert recorded_config(Manifest(name="x", task="classification")) is None
