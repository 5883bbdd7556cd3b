"""Tests for the reference's GLUE recipes (``distill --task``, ``--dry-run``) and GLUE's own TSV
files (``--data-dir``): sinkd.distill.tasks, sinkd.distill.glue and the GLUE path of
sinkd.distill.data.

The recipe table below is copied from the method notes' "Per-task settings used" table, by hand,
independently of sinkd.distill.tasks. The TSV folders are written here in GLUE's file layouts
(headers, column orders, CoLA without a header, MRPC's byte-order mark, MNLI's many columns) from
rows kept in the test, and the loaded texts, pairs and labels are compared with those rows.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sinkd.cli import main
from sinkd.distill.data import load_glue, load_splits
from sinkd.distill.records import load_record
from sinkd.distill.tasks import steps_for_epochs, task_settings

# the method notes' table: batch, epochs, lr, alpha, T_kd, annealed; beta 0.8, 128 tokens everywhere
REFERENCE = {
    "cola": (16, 20, 5e-5, 0.9, 1.0, False),
    "mnli": (16, 10, 4e-5, 0.8, 3.0, True),
    "mrpc": (16, 3, 3e-5, 1.0, 4.0, True),
    "qnli": (16, 6, 3e-5, 0.8, 3.0, False),
    "qqp": (32, 8, 4e-5, 1.0, 4.0, True),
    "rte": (16, 5, 2e-5, 0.9, 3.5, False),
    "sst2": (32, 2, 4e-5, 0.9, 2.0, False),
}
# the Hugging Face nyu-mll/glue label names, in their order (label i is names[i])
HUB_LABELS = {
    "sst2": ("negative", "positive"), "cola": ("unacceptable", "acceptable"),
    "rte": ("entailment", "not_entailment"), "mrpc": ("not_equivalent", "equivalent"),
    "mnli": ("entailment", "neutral", "contradiction"),
}


def parse_dry_run(text: str) -> dict[str, tuple[str, str]]:
    """field -> (value, source) from the dry run's table (the lines before 'runs:')."""
    rows = {}
    for line in text.splitlines()[1:]:
        if line.startswith("runs:"):
            break
        name, value, source = line.split(None, 2)
        rows[name] = (value, source)
    return rows


# ----------------------------------------------------------------------------- recipes
def test_every_task_dry_run_prints_the_reference_recipe_without_loading_a_model(tmp_path):
    """`distill --task T --dry-run` exits 0 for each of the seven tasks and prints the table's
    batch size, epochs, lr, alpha, T_kd, annealing, beta 0.8 and 128 tokens, each marked as the
    task recipe's; transformers is never imported and no cache folder is created."""
    cache, hf = tmp_path / "cache", tmp_path / "hf"
    code = ("import json, sys\nfrom sinkd.cli import main\nout = {}\n"
            "import contextlib, io\n"
            f"for task in {sorted(REFERENCE)!r}:\n"
            "    buf = io.StringIO()\n"
            "    with contextlib.redirect_stdout(buf):\n"
            f"        rc = main(['distill', '--task', task, '--dry-run', '--set', "
            f"'cache_dir={cache}'])\n"
            "    out[task] = [rc, buf.getvalue()]\n"
            "print(json.dumps({'runs': out, 'transformers': 'transformers' in sys.modules}))\n")
    env = {**os.environ, "HF_HOME": str(hf), "SINKD_CACHE": str(tmp_path / "sinkd"),
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["transformers"] is False
    assert not cache.exists() and not hf.exists() and not (tmp_path / "sinkd").exists()
    for task, (batch, epochs, lr, alpha, t_kd, anneal) in REFERENCE.items():
        rc, text = result["runs"][task]
        assert rc == 0, text
        rows = parse_dry_run(text)
        expected = {"data": task, "batch_size": batch, "epochs": float(epochs), "lr": lr,
                    "alpha": alpha, "kd_temperature": t_kd, "anneal_temperature": anneal,
                    "beta": 0.8, "max_length": 128}
        for name, value in expected.items():
            got, source = rows[name]
            assert source.startswith("task recipe"), (task, name, source)
            if isinstance(value, bool):
                assert got == str(value), (task, name)
            elif isinstance(value, str):
                assert got == value, (task, name)
            else:
                assert float(got) == value, (task, name, got)
        # the hub is never asked: the steps wait for the data, and the text says so
        assert rows["steps"][0] == "?" and "once the data loads" in rows["steps"][1]
        assert rows["teacher_steps"][1] == "default"
        assert "MiniLM" in text and "BERT-base-uncased" in text
        assert ("once per epoch" in text) == anneal


def test_flags_and_set_override_the_task(capsys):
    """Flags and --set beat the task's values (and say so); the others stay the task's; explicit
    steps replace the task's epochs; steps and epochs both given is an error."""
    config, source = task_settings("RTE", ["alpha=0.5", "kd_temperature=2"],
                                   {"batch_size": 8, "steps": 7, "device": None})
    assert (config.alpha, config.kd_temperature, config.batch_size, config.steps) == (0.5, 2, 8, 7)
    assert (source["alpha"], source["batch_size"], source["steps"]) == ("--set", "--batch-size",
                                                                       "--steps")
    assert (config.lr, config.beta, config.max_length, config.data) == (2e-5, 0.8, 128, "rte")
    assert source["lr"] == "task recipe (RTE)" and source["device"] == "default"
    assert config.epochs is None and "--steps" in source["epochs"]
    with pytest.raises(ValueError, match="not both"):
        task_settings("rte", ["epochs=2"], {"steps": 5})
    with pytest.raises(ValueError, match="task must be one of"):
        task_settings("imdb")
    # the same through the CLI's dry run
    assert main(["distill", "--task", "sst2", "--dry-run", "--batch-size", "4",
                 "--set", "lr=1e-4", "--recipe", "kd", "sinkd", "--seed", "1", "2"]) == 0
    rows = parse_dry_run(capsys.readouterr().out)
    assert rows["batch_size"] == ("4", "--batch-size") and rows["lr"] == ("0.0001", "--set")
    assert rows["alpha"] == ("0.9", "task recipe (SST-2)")
    assert rows["recipe"] == ("kd,sinkd", "--recipe") and rows["seed"] == ("1,2", "--seed")
    assert main(["distill", "--dry-run"]) == 0  # without a task: the defaults
    rows = parse_dry_run(capsys.readouterr().out)
    assert rows["data"] == ("rotten_tomatoes", "default") and rows["epochs"][0] == "None"


def test_steps_for_epochs_is_the_ceiling_of_passes_over_the_rows():
    """steps = ceil(epochs * rows / batch): exact passes, a partial last batch, fractional
    epochs, and at least one step."""
    assert steps_for_epochs(2, 64, 32) == 4
    assert steps_for_epochs(1, 65, 32) == 3
    assert steps_for_epochs(0.5, 100, 16) == math.ceil(50 / 16) == 4
    assert steps_for_epochs(0.001, 3, 32) == 1


# ----------------------------------------------------------------------------- GLUE's TSV files
def tsv(path: Path, lines: list[list[str]], bom: bool = False) -> None:
    """Tab-joined lines, newline-terminated, as GLUE writes them (no quoting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join("\t".join(line) + "\n" for line in lines)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


# rows per task: (text, second text or None, label as the file writes it); 21 train, 4 dev,
# with bare quotes inside texts (GLUE's files have them; csv quoting would mangle them)
def rows_of(task: str, n: int, offset: int = 0) -> list[tuple[str, str | None, str]]:
    values = {"sst2": ("0", "1"), "cola": ("0", "1"), "rte": ("entailment", "not_entailment"),
              "mrpc": ("0", "1"), "mnli": ("entailment", "neutral", "contradiction")}[task]
    pair = task not in ("sst2", "cola")
    return [(f'"{task} text {i}', f"second {i}'s" if pair else None, values[i % len(values)])
            for i in range(offset, offset + n)]


MNLI_TRAIN = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
              "sentence2", "label1", "gold_label"]
MNLI_DEV = MNLI_TRAIN[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]


def write_task(folder: Path, task: str, name: str, rows) -> None:
    """One GLUE file of ``task`` in its official layout."""
    path = folder / name
    if task == "sst2":
        tsv(path, [["sentence", "label"]] + [[a, y] for a, _, y in rows])
    elif task == "cola":  # no header: source, label, original label, sentence
        tsv(path, [["gj04", y, "" if y == "1" else "*", a] for a, _, y in rows])
    elif task == "rte":
        tsv(path, [["index", "sentence1", "sentence2", "label"]]
            + [[str(i), a, b, y] for i, (a, b, y) in enumerate(rows)])
    elif task == "mrpc":
        tsv(path, [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]]
            + [[y, str(100 + i), str(200 + i), a, b] for i, (a, b, y) in enumerate(rows)],
            bom=True)
    else:  # mnli: train has one annotator label, dev five
        header = MNLI_TRAIN if name == "train.tsv" else MNLI_DEV
        tsv(path, [header] + [[str(i), "1", f"{i}e", "fiction", "( x )", "( y )", "(ROOT x)",
                               "(ROOT y)", a, b] + [y] * (len(header) - 10)
                              for i, (a, b, y) in enumerate(rows)])


def glue_folder(root: Path, task: str) -> Path:
    folder = root / task
    write_task(folder, task, "train.tsv", rows_of(task, 21))
    write_task(folder, task, "dev_matched.tsv" if task == "mnli" else "dev.tsv",
               rows_of(task, 4, offset=100))
    return folder


@pytest.mark.parametrize("task", ["rte", "sst2", "cola", "mrpc", "mnli"])
def test_glue_tsv_folder_loads_texts_pairs_and_labels(tmp_path, task):
    """A folder in GLUE's layout loads: train + dev are exactly the train file's rows (a split of
    them, no row lost or repeated), test is the dev file in order, with texts (bare quotes kept),
    second texts of pairs, and labels under the hub's names; the GLUE root works too."""
    folder = glue_folder(tmp_path, task)
    splits = load_glue(task, data_dir=folder)
    names = HUB_LABELS[task]
    assert splits.train.label_names == names

    def as_rows(d):
        pairs = d.texts_b if d.texts_b is not None else [None] * len(d)
        # labels back to how the files write them: the index of the name (MRPC/SST/CoLA: 0/1)
        written = {"entailment", "not_entailment", "neutral", "contradiction"}
        return [(a, b, names[y] if names[y] in written else str(y))
                for a, b, y in zip(d.texts, pairs, d.labels, strict=True)]

    assert Counter(as_rows(splits.train) + as_rows(splits.dev)) == Counter(rows_of(task, 21))
    assert len(splits.dev) > 0 and len(splits.train) > len(splits.dev)
    assert as_rows(splits.test) == rows_of(task, 4, offset=100)
    assert "TSV" in splits.source and (splits.train.texts_b is None) == (task in ("sst2", "cola"))
    # the GLUE root holding <Task>/ (GLUE's folder names) is found as well
    root = tmp_path / "glue_data"
    root.mkdir()
    folder.rename(root / {"rte": "RTE", "sst2": "SST-2", "cola": "CoLA", "mrpc": "MRPC",
                          "mnli": "MNLI"}[task])
    assert load_splits(task, data_dir=root).fingerprint() == splits.fingerprint()


def test_broken_glue_tsv_is_a_value_error_naming_file_and_line(tmp_path):
    """A row with one field too many or too few, an unknown label, a missing column or a missing
    file: ValueError naming the file (and the line)."""
    folder = glue_folder(tmp_path, "rte")
    lines = (folder / "train.tsv").read_text().splitlines()
    lines[3] += "\textra"  # line 4 of the file
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train\.tsv: line 4 has 5 tab-separated fields, "
                                         r"expected 4"):
        load_glue("rte", data_dir=folder)
    cola = glue_folder(tmp_path, "cola")
    (cola / "dev.tsv").write_text("gj04\t1\t\tfine\ngj04\t1\tno sentence\n")
    with pytest.raises(ValueError, match=r"dev\.tsv: line 2 has 3 .*expected 4"):
        load_glue("cola", data_dir=cola)
    sst = glue_folder(tmp_path, "sst2")
    (sst / "dev.tsv").write_text("sentence\tlabel\ngood\t1\nbad\tpositive\n")
    with pytest.raises(ValueError, match=r"dev\.tsv: line 3: label 'positive'"):
        load_glue("sst2", data_dir=sst)
    (sst / "dev.tsv").write_text("text\tlabel\ngood\t1\n")
    with pytest.raises(ValueError, match=r"dev\.tsv: missing columns \['sentence'\]"):
        load_glue("sst2", data_dir=sst)
    with pytest.raises(ValueError, match="has no dev_matched.tsv"):
        load_glue("mnli", data_dir=folder)
    with pytest.raises(ValueError, match="data_dir .* is for GLUE tasks"):
        load_splits("rotten_tomatoes", data_dir=folder)


def test_glue_without_hub_or_data_dir_says_pass_data_dir(monkeypatch, capsys):
    """Without --data-dir and without the hub (here: no `datasets`), --task fails with one line
    that names --data-dir and exit code 2."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["distill", "--task", "rte", "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data-dir DIR" in err and "GLUE's own TSV" in err


def test_local_glue_trains_a_few_steps_with_the_task_recipe(tmp_path, tiny):
    """`distill --task rte --data-dir DIR` on a GLUE-format folder trains end to end: the record
    holds the task's recipe, epochs and the steps they give (5 epochs x 16 rows / batch 16 = 5),
    five steps of metrics, a test accuracy, and the data named as GLUE's TSV files."""
    folder = tmp_path / "RTE"
    write_task(folder, "rte", "train.tsv", rows_of("rte", 40))
    write_task(folder, "rte", "dev.tsv", rows_of("rte", 8, offset=100))
    out = tmp_path / "runs"
    rc = main(["distill", "--task", "rte", "--data-dir", str(folder), "--train-limit", "16",
               "--device", "cpu", "--no-progress", "--out", str(out),
               "--set", f"teacher={tiny['teacher']}", "--set", "teacher_steps=2",
               "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "eval_every=5"])
    assert rc == 0
    record = load_record(out / "sinkd-seed0.json")
    c = record.config
    assert (c["data"], c["data_dir"], c["batch_size"], c["lr"], c["alpha"], c["beta"],
            c["kd_temperature"], c["anneal_temperature"], c["max_length"]) == (
        "rte", str(folder), 16, 2e-5, 0.9, 0.8, 3.5, False, 128)
    assert c["epochs"] == 5 and c["steps"] == 5 == len(record.metrics)
    assert record.data["name"] == "RTE" and "TSV" in record.data["source"]
    assert record.data["train"] == 16 and record.data["test"] == 8
    assert not record.stopped and 0 <= record.results["test"] <= 1
