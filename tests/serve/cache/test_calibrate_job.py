"""`infopt cache calibrate`'s job: reading a user's pairs, the output rules, the fit, the curve (fake encoder)."""

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from infopt.errors import UserError
from infopt.serve.cache._calibrate import Calibration
from infopt.serve.cache._calibrate_job import COSINES, check_calibration_output, is_calibration, run
from infopt.serve.cache._pairs import read_user_pairs


class FakeEncoder:
    """Looks each text up in a table of unit vectors (the tests choose every pair's cosine)."""

    name, dim = "fake:test", 2

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([self.table[t] for t in texts], dtype=np.float32).reshape(len(texts), self.dim)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


def _word(i: int) -> str:
    return "q" + "".join(chr(97 + int(d)) for d in f"{i:04d}")


def write_pairs(path: Path, n_pos: int, n_neg: int, table: dict[str, np.ndarray], offset: int = 0) -> Path:
    """Positives at cosine 0.9-1.0, negatives at 0.1-0.6; b is a with a question mark (the guard sees no change)."""
    cosines = [(0.9 + 0.1 * i / n_pos, True) for i in range(n_pos)] + [(0.1 + 0.5 * j / n_neg, False)
                                                                      for j in range(n_neg)]
    with path.open("w") as f:
        for i, (cos, same) in enumerate(cosines):
            a = f"tell me about {_word(offset + i)}"
            table[a], table[a + "?"] = np.array([1.0, 0.0]), np.array([cos, math.sqrt(1 - cos * cos)])
            f.write(json.dumps({"a": a, "b": a + "?", "same": same, "kind": "test"}) + "\n")
    return path


def lines_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = '{"a": "How do I enable 2FA?", "b": "How do I turn on 2FA?", "same": true}'
BAD = '{"a": "How do I enable 2FA?", "b": "How do I disable 2FA?", "same": false}'


def test_reads_a_user_file(tmp_path: Path) -> None:
    pairs = read_user_pairs(lines_file(tmp_path, GOOD, "", BAD.replace("}", ', "kind": "negation"}')))
    assert [(p.same, p.kind, p.split) for p in pairs] == [(True, "", "user"), (False, "negation", "user")]


@pytest.mark.parametrize(("lines", "words"), [
    ((GOOD, "{not json", BAD), ["line 2", "not JSON"]),
    ((GOOD, BAD, '{"a": "x", "b": "y"}'), ["line 3", "no field 'same'", "true or false"]),
    ((GOOD, BAD, '{"a": "x", "b": "y", "same": "yes"}'), ["line 3", "'same' is not true or false"]),
    ((GOOD, '{"a": "", "b": "y", "same": true}', BAD), ["line 2", "'a' is not a non-empty string"]),
    ((GOOD, '{"a": "x", "b": 3, "same": true}', BAD), ["line 2", "'b'"]),
    ((GOOD, "[1, 2]", BAD), ["line 2", "not a JSON object"]),
    (("", "  "), ["holds no pairs"]),
    ((GOOD, GOOD), ["no negative", "need both"]),
    ((BAD,), ["no positive"]),
])
def test_one_error_per_problem(tmp_path: Path, lines: tuple[str, ...], words: list[str]) -> None:
    with pytest.raises(UserError) as e:
        read_user_pairs(lines_file(tmp_path, *lines))
    for w in words:
        assert w in str(e.value), str(e.value)
    assert e.value.fix


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_user_pairs(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="is a folder"):
        read_user_pairs(tmp_path)


def test_output_rules(tmp_path: Path) -> None:
    assert check_calibration_output(tmp_path / "new" / "c.json") == tmp_path / "new" / "c.json"
    assert not (tmp_path / "new").exists()  # the writability probe leaves nothing behind
    with pytest.raises(UserError, match="is a folder"):
        check_calibration_output(tmp_path)
    mine = tmp_path / "notes.json"
    mine.write_text('{"threshold": 0.5}')
    assert not is_calibration(mine)
    with pytest.raises(UserError, match="did not write"):
        check_calibration_output(mine, overwrite=True)
    earlier = tmp_path / "c.json"
    earlier.write_text(Calibration(0.8, 0.9, 0.01, 0.95).to_json())
    with pytest.raises(UserError, match="--overwrite"):
        check_calibration_output(earlier)
    assert check_calibration_output(earlier, overwrite=True) == earlier
    (tmp_path / "link.json").symlink_to(earlier)
    with pytest.raises(UserError, match="link"):
        check_calibration_output(tmp_path / "link.json", overwrite=True)


def test_fits_saves_and_compares(tmp_path: Path) -> None:
    table: dict[str, np.ndarray] = {}
    pairs = write_pairs(tmp_path / "cal.jsonl", 320, 320, table)
    result = run(pairs, 0.01, 0.95, FakeEncoder(table), tmp_path / "c.json")
    cal = Calibration.load(tmp_path / "c.json")
    assert cal.enabled and 0.6 <= cal.threshold <= 0.9 and cal.encoder == "fake:test" and cal.n_pairs == 640
    assert cal.threshold == result.calibration.threshold and not result.replaced
    names = [name for name, _ in result.rows]
    assert names[0].startswith("infopt") and [f"plain cosine >= {t}" for t in COSINES] == names[2:]
    infopt = result.rows[0][1]
    assert infopt["hits"] >= 319 and infopt["wrong"] == 0 and infopt["recall"] >= 319 / 320  # threshold: 4 decimals
    text = "\n".join(result.lines())
    assert "on the calibration pairs themselves — optimistic" in text and "saved" in text
    assert "false-hit" in text and "UCB95" in text and "para recall" in text


def test_heldout_curve_and_overwrite(tmp_path: Path) -> None:
    table: dict[str, np.ndarray] = {}
    pairs = write_pairs(tmp_path / "cal.jsonl", 320, 320, table)
    held = write_pairs(tmp_path / "held.jsonl", 40, 60, table, offset=1000)
    run(pairs, 0.01, 0.95, FakeEncoder(table), tmp_path / "c.json")
    result = run(pairs, 0.01, 0.95, FakeEncoder(table), tmp_path / "c.json", overwrite=True, heldout=held)
    assert result.replaced and result.n_eval == 100 and result.eval_positives == 40
    text = "\n".join(result.lines())
    assert f"on the held-out pairs of {held}" in text and "optimistic" not in text
    assert dict(result.rows)["plain cosine >= 0.7"]["hits"] == 40


def test_no_threshold_meets_the_budget(tmp_path: Path) -> None:
    table: dict[str, np.ndarray] = {}
    pairs = write_pairs(tmp_path / "cal.jsonl", 30, 30, table)
    result = run(pairs, 0.01, 0.95, FakeEncoder(table), tmp_path / "c.json")
    assert not Calibration.load(tmp_path / "c.json").enabled
    text = "\n".join(result.lines())
    assert "serves NO semantic hits" in text and "at least 299 hits" in text
    assert result.rows[0][1]["hits"] == 0


def test_checks_come_before_any_work(tmp_path: Path) -> None:
    table: dict[str, np.ndarray] = {}
    pairs = write_pairs(tmp_path / "cal.jsonl", 30, 30, table)
    enc = FakeEncoder(table)
    (tmp_path / "mine.json").write_text("my notes")
    with pytest.raises(UserError, match="did not write"):
        run(pairs, 0.01, 0.95, enc, tmp_path / "mine.json", overwrite=True)
    assert (tmp_path / "mine.json").read_text() == "my notes"
    with pytest.raises(UserError, match="--heldout file"):
        run(pairs, 0.01, 0.95, enc, tmp_path / "c.json", heldout=tmp_path / "missing.jsonl")
    for rate, conf in ((0.0, 0.95), (1.5, 0.95), (0.01, 1.0)):
        with pytest.raises(UserError, match="strictly between 0 and 1"):
            run(pairs, rate, conf, enc, tmp_path / "c.json")
    with pytest.raises(UserError, match="no encoder"):
        run(pairs, 0.01, 0.95, "bert-huge", tmp_path / "c.json")
    assert enc.calls == 0 and not (tmp_path / "c.json").exists()
