"""SinKD Lab benchmark suite: our Sinkhorn solver and SinKD term against POT and a BERT step.

Run ``python -m bench`` from the repository root (the suite is not part of the installed
``sinkd`` package and ``sinkd`` never imports it); from code::

    from bench import format_table, run_all

    results = run_all(quick=True)  # list of comparison rows (dicts), with .env
    print(format_table(results))

Each row compares one of our implementations with a peer on one case: ``ratio = peer_s /
ours_s`` (> 1: ours is faster), ``target`` (minimum ratio, or None for information) and
``status`` ("PASS", "FAIL" or "info"). See ``bench/suite.py`` for the cases and targets and
``docs/benchmarks.md`` for results.
"""

from bench.cli import main
from bench.report import format_table, load_json, save_json
from bench.suite import SECTIONS, Results, run_all

__all__ = ["SECTIONS", "Results", "format_table", "load_json", "main", "run_all", "save_json"]
