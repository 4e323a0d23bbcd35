"""The dating generator, the STS-B reader and the user-file loader, on real files."""

import json

import numpy as np
import pytest

from harness import dating
from harness.data import DataError, load_splits, load_stsb


def test_dating_is_deterministic_for_a_seed():
    assert dating.generate(seed=3) == dating.generate(seed=3)
    assert dating.generate(seed=3) != dating.generate(seed=4)


def test_dating_default_sizes():
    rows = dating.generate(seed=0)
    assert {s: len(r) for s, r in rows.items()} == {"train": 2000, "validation": 500, "test": 500}


def test_dating_splits_are_disjoint_by_profile_and_phrasing():
    rows = dating.generate(seed=0)
    profiles = {s: {p for r in rs for p in (r["profile_a"], r["profile_b"])} for s, rs in rows.items()}
    frames = {s: {f for r in rs for f in (r["frame_a"], r["frame_b"]) if f >= 0} for s, rs in rows.items()}
    for a, b in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        assert not profiles[a] & profiles[b]
        assert not frames[a] & frames[b]
    # the stance sentences themselves (without lead-ins) never cross from train into test
    strip = tuple(dating.LEAD_INS[1:])

    def bare(text):
        for lead in strip:
            if text.startswith(lead):
                return text[len(lead):].lower()
        return text.lower()
    train_texts = {bare(t) for r in rows["train"] for t in (r["text_a"], r["text_b"])}
    test_texts = {bare(t) for r in rows["test"] for t in (r["text_a"], r["text_b"])}
    assert not train_texts & test_texts


def test_dating_scores_follow_the_documented_rules():
    rows = dating.generate(seed=1)["train"]
    assert {r["score"] for r in rows} == {0.0, 0.4, 1.0}
    compatible = [r for r in rows if r["score"] == 1.0]
    incompatible = [r for r in rows if r["score"] == 0.0]
    # compatible pairs never reuse a frame; most incompatible pairs do (the ADR's inversion)
    assert all(r["frame_a"] != r["frame_b"] for r in compatible if r["frame_a"] >= 0)
    same = np.mean([r["frame_a"] == r["frame_b"] for r in incompatible])
    assert 0.7 < same < 0.9
    assert {r["category"] for r in rows} == set(dating.CATEGORIES)


def test_stsb_splits_and_normalisation():
    splits = load_stsb()
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (5749, 1500, 1379)
    assert splits.test.score.min() >= 0 and splits.test.score.max() <= 1
    # first test line of the official file: score 2.500 -> 0.5, genre main-captions
    assert splits.test.text_a[0] == "A girl is styling her hair."
    assert splits.test.score[0] == pytest.approx(0.5)
    assert set(splits.test.category) == {"captions", "news", "forums"}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_user_csv_with_splits_and_declared_range(tmp_path):
    lines = ["text_a,text_b,score,category,split"]
    for split in ("train", "validation", "test"):
        lines += [f"a {split},b {split},4,c1,{split}", f"x {split},y {split},1,c2,{split}"]
    splits = load_splits(write(tmp_path, "mine.csv", "\n".join(lines)), score_range=(0, 5))
    assert splits.name == "mine"
    assert list(splits.test.score) == [pytest.approx(0.8), pytest.approx(0.2)]
    assert splits.train.category == ["c1", "c2"]


def test_user_jsonl_without_split_is_split_by_seed(tmp_path):
    rows = [json.dumps({"text_a": f"a{i}", "text_b": f"b{i}", "score": i / 30}) for i in range(30)]
    path = write(tmp_path, "mine.jsonl", "\n".join(rows))
    one, two = load_splits(path, seed=0), load_splits(path, seed=0)
    assert (len(one.train), len(one.validation), len(one.test)) == (24, 3, 3)
    assert one.fingerprint == two.fingerprint
    assert set(one.test.text_a).isdisjoint(one.train.text_a)


@pytest.mark.parametrize("body, message", [
    ("text_a,text_b\nx,y\n", "mine.csv:1: missing column score"),
    ("text_a,text_b,score\nx,y,0.5\nx,,0.5\n", "mine.csv:3: text_b is empty"),
    ("text_a,text_b,score\nx,y,high\n", "mine.csv:2: score 'high' is not a number"),
    ("text_a,text_b,score\nx,y,nan\n", "mine.csv:2: score 'nan' is not a finite number"),
    ("text_a,text_b,score\nx,y,inf\n", "mine.csv:2: score 'inf' is not a finite number"),
    ("text_a,text_b,score\nx,y,1.5\n", "mine.csv:2: score 1.5 is outside the declared range [0.0, 1.0]"),
    ("", "mine.csv: empty file"),
    ("text_a,text_b,score,split\nx,y,0.5,train\nx,y,0.5,dev\n", "mine.csv:3: split 'dev' is not one of"),
    ("text_a,text_b,score,split\nx,y,0.5,train\nx,y,0.5,test\n", "the validation split is empty"),
])
def test_user_csv_errors_name_file_line_and_problem(tmp_path, body, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_splits(write(tmp_path, "mine.csv", body))


def test_user_jsonl_errors(tmp_path):
    with pytest.raises(DataError, match=r"mine\.jsonl:2: not valid JSON"):
        load_splits(write(tmp_path, "mine.jsonl", '{"text_a": "x", "text_b": "y", "score": 0}\n{oops\n'))
    with pytest.raises(DataError, match=r"mine\.jsonl:1: missing column score"):
        load_splits(write(tmp_path, "mine.jsonl", '{"text_a": "x", "text_b": "y"}\n'))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_splits(str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="not a built-in dataset"):
        load_splits("imdb")
