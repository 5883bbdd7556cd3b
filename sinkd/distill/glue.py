"""GLUE's two sources: the Hugging Face hub (``datasets``) and GLUE's own TSV files.

Both give a task's official train and eval sets as plain tuples, the same rows in the same order
with the same label names; :func:`sinkd.distill.data.load_glue` splits them. The file layouts are
those GLUE distributes (``download_glue_data.py``): a task folder with ``train.tsv`` and
``dev.tsv`` (MNLI: ``dev_matched.tsv``), tab-separated, with a header row except CoLA's. The
files contain bare quotes (``"`` inside texts, never quoting a field), so they are read with
``csv.QUOTE_NONE``, as GLUE's own loaders do; every row must have the header's number of fields,
else the file and line are named. Labels get the names and order of the hub's ``nyu-mll/glue``
features, so a task read from the files equals the hub's.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

# GLUE task -> (display name, text column, second text column or None, official eval split)
GLUE_TASKS = {
    "sst2": ("SST-2", "sentence", None, "validation"),
    "cola": ("CoLA", "sentence", None, "validation"),
    "rte": ("RTE", "sentence1", "sentence2", "validation"),
    "mrpc": ("MRPC", "sentence1", "sentence2", "validation"),
    "qnli": ("QNLI", "question", "sentence", "validation"),
    "qqp": ("QQP", "question1", "question2", "validation"),
    "mnli": ("MNLI", "premise", "hypothesis", "validation_matched"),
}
GLUE_HELP = ("GLUE needs the `datasets` package and access to the Hugging Face hub (pip install "
             "datasets), or GLUE's own TSV files: pass --data-dir DIR (data_dir) with the task's "
             "train.tsv and dev.tsv")
# texts, second texts (None for one-text tasks), label indices, label names
Rows = tuple[tuple[str, ...], tuple[str, ...] | None, tuple[int, ...], tuple[str, ...]]

# the folder names of GLUE's download, so that ``data_dir`` may also be the GLUE root
GLUE_FOLDERS = {"sst2": "SST-2", "cola": "CoLA", "rte": "RTE", "mrpc": "MRPC", "qnli": "QNLI",
                "qqp": "QQP", "mnli": "MNLI"}


@dataclass(frozen=True)
class GlueFiles:
    """The layout of one task's TSV files: columns by header name (by position if no header)."""

    dev_file: str  # the official dev file: our test split (GLUE's test labels are hidden)
    text: str | int  # column of the first text
    text_b: str | int | None  # column of the second text of a pair, None for one text
    label: str | int  # column of the label
    label_names: tuple[str, ...]  # the hub's ClassLabel names, in its order
    label_values: tuple[str, ...]  # how each of those labels is written in the files
    fields: int | None = None  # headerless files only: the number of fields of every row


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("entailment", "neutral", "contradiction")
GLUE_FILES = {
    "sst2": GlueFiles("dev.tsv", "sentence", None, "label", ("negative", "positive"), _BINARY),
    # CoLA has no header: source, label, original label (blank or "*"), sentence
    "cola": GlueFiles("dev.tsv", 3, None, 1, ("unacceptable", "acceptable"), _BINARY, fields=4),
    "rte": GlueFiles("dev.tsv", "sentence1", "sentence2", "label", _NLI2, _NLI2),
    "mrpc": GlueFiles("dev.tsv", "#1 String", "#2 String", "Quality",
                      ("not_equivalent", "equivalent"), _BINARY),
    "qnli": GlueFiles("dev.tsv", "question", "sentence", "label", _NLI2, _NLI2),
    "qqp": GlueFiles("dev.tsv", "question1", "question2", "is_duplicate",
                     ("not_duplicate", "duplicate"), _BINARY),
    "mnli": GlueFiles("dev_matched.tsv", "sentence1", "sentence2", "gold_label", _NLI3, _NLI3),
}


def glue_file(data_dir: Path | str, task: str, name: str) -> Path:
    """``data_dir/name``, else ``data_dir/<GLUE folder of task>/name`` (the GLUE root given).

    Raises ValueError naming both places when neither is a file.
    """
    folder = Path(data_dir).expanduser()
    for path in (folder / name, folder / GLUE_FOLDERS[task] / name):
        if path.is_file():
            return path
    raise ValueError(f"data_dir {str(folder)!r} has no {name} (nor {GLUE_FOLDERS[task]}/{name}): "
                     f"it must hold GLUE's TSV files of the task")


def read_glue_tsv(path: Path | str, files: GlueFiles
                  ) -> tuple[tuple[str, ...], tuple[str, ...] | None, tuple[int, ...]]:
    """Texts, second texts (None for one-text tasks) and label indices of a GLUE TSV file.

    Blank lines are skipped; any other row must have exactly the header's fields (``fields``
    without a header) and a label among ``files.label_values``. A UTF-8 byte-order mark (MRPC's
    files start with one) is dropped.

    Raises
    ------
    ValueError
        Naming the file (and line): an empty file, missing columns, a row with another number of
        fields, or an unknown label.
    """
    path = Path(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) if files.fields is None else None
        if files.fields is None and not header:
            raise ValueError(f"{path}: empty file, expected a header row")
        width = len(header) if header else files.fields
        wanted = (files.text, files.text_b, files.label)
        if header:
            absent = [c for c in wanted if c is not None and c not in header]
            if absent:
                raise ValueError(f"{path}: missing columns {absent}; header: {header}")
        at = [None if c is None else header.index(c) if header else c for c in wanted]
        codes = {value: i for i, value in enumerate(files.label_values)}
        texts: list[str] = []
        texts_b: list[str] = []
        labels: list[int] = []
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise ValueError(f"{path}: line {reader.line_num} has {len(row)} tab-separated "
                                 f"fields, expected {width}")
            label = row[at[2]].strip()
            if label not in codes:
                raise ValueError(f"{path}: line {reader.line_num}: label {label!r} is not one of "
                                 f"{list(files.label_values)}")
            texts.append(row[at[0]])
            if at[1] is not None:
                texts_b.append(row[at[1]])
            labels.append(codes[label])
    if not labels:
        raise ValueError(f"{path}: no data rows")
    return tuple(texts), tuple(texts_b) if at[1] is not None else None, tuple(labels)


def read_glue_hub(task: str) -> tuple[Rows, Rows]:
    """The official train and eval sets of GLUE task ``task`` (a key of GLUE_TASKS) from the hub.

    Raises RuntimeError, in one line naming the ``data_dir`` alternative, when ``datasets`` is
    missing or the hub cannot be reached.
    """
    name, col_a, col_b, eval_split = GLUE_TASKS[task]
    try:
        import datasets  # lazy: optional, and it needs the hub
    except ImportError as e:
        raise RuntimeError(GLUE_HELP) from e
    try:
        ds = datasets.load_dataset("nyu-mll/glue", task)
    except Exception as e:  # offline, hub errors, missing cache: all mean "not available here"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RuntimeError(f"{GLUE_HELP} (loading {name} failed: {reason})") from e
    label_names = tuple(ds["train"].features["label"].names)

    def rows(split: str) -> Rows:
        part = ds[split]
        return (tuple(part[col_a]), tuple(part[col_b]) if col_b else None,
                tuple(int(y) for y in part["label"]), label_names)

    return rows("train"), rows(eval_split)


def read_glue_dir(task: str, data_dir: Path | str) -> tuple[Rows, Rows, tuple[Path, Path]]:
    """The official train and dev sets of GLUE task ``task`` from GLUE's TSV files in
    ``data_dir`` (see :func:`glue_file`), and the two files' paths."""
    files = GLUE_FILES[task]
    paths = (glue_file(data_dir, task, "train.tsv"), glue_file(data_dir, task, files.dev_file))
    train, dev = ((*read_glue_tsv(p, files), files.label_names) for p in paths)
    return train, dev, paths
