"""The dating generator, the STS-B reader and the user-file loader, on real files."""

import json

import numpy as np
import pytest

from harness import dating
from harness.data import DataError, load_splits, load_stsb


def test_dating_is_deterministic_for_a_seed():
    assert dating.generate(seed=3) == dating.generate(seed=3)
    assert dating.generate(seed=3) != dating.generate(seed=4)


def test_the_generated_data_is_kept_and_read_back_as_generated(tmp_path, monkeypatch):
    """The dating rows are generated once into the harness's cache and read back with the fingerprint
    of a fresh generation; a damaged file is generated again, and a cache that cannot be written is done
    without."""
    from harness import data
    fresh = data._make_splits("dating", dating.generate(seed=1), version=dating.VERSION).fingerprint
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert load_splits("dating", seed=1).fingerprint == fresh
    (kept,) = (tmp_path / "cache" / "data").glob("dating-v2-s1-*.json")
    assert load_splits("dating", seed=1).fingerprint == fresh and json.loads(kept.read_text())["test"]
    for damage in ('{"train": [', '{"train": []}', '{"train": [], "validation": [], "test": []}', "[]", "\x00"):
        kept.write_text(damage)
        assert load_splits("dating", seed=1).fingerprint == fresh
        assert json.loads(kept.read_text()).keys() == {"train", "validation", "test"}  # written again whole
    (tmp_path / "blocked").write_text("a file where the cache folder would be")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "blocked"))
    assert load_splits("dating", seed=1).fingerprint == fresh


def test_dating_v2_size_and_distinct_pairs_meet_the_targets():
    """Test >= 1,000 pairs, >= 95% distinct after stripping lead-ins, each pair its own group."""
    splits = load_splits("dating", seed=0)
    test = splits.test
    assert (len(splits.train), len(splits.validation), len(test)) == (2000, 500, 1500)
    distinct = {frozenset((dating.strip_lead_in(a), dating.strip_lead_in(b)))
                for a, b in zip(test.text_a, test.text_b, strict=True)}
    assert len(distinct) / len(test) >= 0.95
    assert test.n_groups == len(test)
    assert splits.summary()["version"] == "dating-v2"
    assert len(set(np.round(test.score, 9))) >= 30  # a continuous gold score, not three values


def test_dating_v2_holds_out_families_and_profiles():
    rows = dating.generate(seed=0)
    families = {s: {f for r in rs for f in (*r["families_a"], *r["families_b"])} for s, rs in rows.items()}
    profiles = {s: {p for r in rs for p in (r["profile_a"], r["profile_b"])} for s, rs in rows.items()}
    assert families["test"] == set(dating.SPLIT_FAMILIES["test"])
    for a, b in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        assert not families[a] & families[b]
        assert not profiles[a] & profiles[b]
    every_profile = [p for rs in rows.values() for r in rs for p in (r["profile_a"], r["profile_b"])]
    assert len(every_profile) == len(set(every_profile))  # each profile in one pair only: pairs are independent


def test_dating_v2_gold_follows_the_documented_weights():
    # kids (weight 3) strongly opposed, pets (weight 1) the same: (3 * 0 + 1 * 1) / 4
    assert dating.compatibility({"kids": 2, "pets": 1}, {"kids": -2, "pets": 1, "travel": 2}) == (0.25, "kids")
    # mild opposites agree 0.5; same side at another strength 0.75
    assert dating.compatibility({"smoking": 1}, {"smoking": -1}) == (0.5, "smoking")
    assert dating.compatibility({"travel": 2}, {"travel": 1}) == (0.75, "travel")
    for r in dating.generate(seed=2, sizes={"train": 300})["train"]:
        assert (r["score"], r["category"]) == dating.compatibility(r["stances_a"], r["stances_b"])
        assert r["shared"] and 0 <= r["score"] <= 1


def test_dating_v2_opposed_topics_mostly_share_words_and_agreeing_ones_never_do():
    """The mechanism behind the inverted stock model (pinned on the real model in test_reproduction)."""
    same_words, opposed = 0, 0
    for r in dating.generate(seed=1, sizes={"train": 600})["train"]:
        for topic in r["shared"]:
            a, b = r["stances_a"][topic], r["stances_b"][topic]
            wa, wb = r["wordings_a"][topic], r["wordings_b"][topic]
            assert wa[2].lower() in r["text_a"].lower() and wb[2].lower() in r["text_b"].lower()  # in the text
            if (a > 0) != (b > 0):
                opposed += 1
                same_words += wa == wb
            else:
                assert wa[0] != wb[0] and wa[2] != wb[2]  # same side: another family, another synonym
    assert 0.7 < same_words / opposed < 0.9


def test_dating_v1_stays_available_with_its_old_fingerprint_and_pair_groups():
    splits = load_splits("dating-v1", seed=0)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (2000, 500, 500)
    assert splits.summary()["version"] == "dating-v1"
    # the fingerprint that the published v1 records carry
    assert splits.fingerprint == "72ceb687b68cdfe55d408ddcd5acd421d70359f257d50b57367f09c2f32bb42f"
    # 500 rows, but far fewer underlying sentence pairs: the independent units
    assert splits.test.n_groups == 66


def test_stsb_groups_are_distinct_sentence_pairs():
    test = load_stsb().test
    assert test.n_groups <= len(test) and test.n_groups > 0.98 * len(test)


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


def test_a_new_dataset_is_one_registry_entry(monkeypatch, capsys, harness_cache):
    """Adding an entry to data.DATASETS is all it takes: the command line accepts the name, the spec
    keeps it as the data version, the forgetting reference follows the entry."""
    from harness import data, forgetting
    from harness.__main__ import main
    from harness.spec import build_specs

    def load(seed):
        rows = {split: [{"text_a": f"{split} a {i}", "text_b": f"{split} b {i}", "score": (i % 5) / 4}
                        for i in range(20)] for split in data.SPLITS}
        return data._make_splits("toy", rows, version="toy")

    monkeypatch.setitem(data.DATASETS, "toy", data.Dataset("toy", "a toy set", load, forgetting_reference="dating"))
    assert "toy" in data.names()
    (spec,) = build_specs(arms=["baseline"], dataset="toy")
    assert spec.dataset_name == "toy" and forgetting.resolve("auto", "toy") == "dating"
    code = main(["run", "--dry-run", "--dataset", "toy", "--arms", "baseline", "--set", "model=tiny-random-bert"])
    out = capsys.readouterr().out
    assert code == 0 and "run: baseline seed 0 untrained" in out
