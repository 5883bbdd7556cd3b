"""Text report of the benchmark results: header, comparison rows per section, raw timings."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from bench.suite import SECTIONS, Results
from bench.timing import environment


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def _fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:.0f}x"


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _header(env: dict) -> list[str]:
    lines = [
        "SinKD Lab benchmarks: ratio = peer time / our time (> 1: ours is faster), median times",
        f"torch {env.get('torch')} | POT {env.get('pot')} | numpy {env.get('numpy')} | "
        f"transformers {env.get('transformers')} | Python {env.get('python')}",
        f"CPU: {env.get('cpu')} ({env.get('cores')} cores) | threads: {env.get('threads')} "
        f"(torch), numpy BLAS: {env.get('numpy_blas_threads')}",
    ]
    load = f"load average (1 min) {env.get('load_avg_1min')} at start"
    if "load_avg_1min_end" in env:
        load += f", {env['load_avg_1min_end']} at end"
    run = []
    if "wall_s" in env:
        run.append(f"suite wall time {env['wall_s']} s")
    if "budget_s" in env:
        run.append(f"~{env['budget_s']} s per timed cell")
    if env.get("quick"):
        run.append("--quick subset")
    lines.append(" | ".join([load, *run]))
    cpu = env.get("cpu_during_run") or {}
    if cpu:
        lines.append(
            f"CPU use during the run (cores, average): {cpu['busy_cores']} busy, "
            f"{cpu['own_cores']} this process, {cpu['other_cores']} other processes"
            + ("  <- others were busy: timings are noisy" if cpu["other_cores"] > 0.2 else "")
        )
    return lines


def format_table(results: list[dict], env: dict | None = None) -> str:
    """The printed report: header, then per section the comparisons and the raw timings."""
    env = env or getattr(results, "env", None)
    if env is None:  # rows without their env (e.g. a plain list): describe this machine
        import torch

        env = environment(torch.get_num_threads())
    out = _header(env)
    for section, title in SECTIONS.items():
        rows = [r for r in results if r["section"] == section]
        if not rows:
            continue
        out += ["", title]
        cells = [
            [r["case"], r["ours"], _fmt_time(r["ours_s"]), r["peer"], _fmt_time(r["peer_s"]),
             _fmt_ratio(r["ratio"]), "-" if r["target"] is None else f">= {r['target']:g}x",
             r["status"]]
            for r in rows
        ]
        out += _table(["case", "ours", "time", "vs", "time", "ratio", "target", "status"],
                      cells, right={2, 4, 5})
        notes = []
        for r in rows:
            if r["note"] and r["note"] not in notes:
                notes.append(r["note"])
        if notes:
            out += [f"  note: {n}" for n in notes]
        out += _timings(rows)
    passed = [r for r in results if r["status"] == "PASS"]
    failed = [r for r in results if r["status"] == "FAIL"]
    out += ["", f"Targets: {len(passed)} PASS, {len(failed)} FAIL of {len(passed) + len(failed)}"]
    for r in failed:
        out.append(f"  FAIL {r['section']}: {r['case']}: {r['ours']} vs {r['peer']} "
                   f"{_fmt_ratio(r['ratio'])} < {r['target']:g}x")
    return "\n".join(out)


def format_spread(runs: list[list[dict]]) -> str:
    """Each targeted comparison over several runs of the suite: min, median and max of its
    ratio, and in how many runs it met its target (one machine's noise, stated plainly)."""
    keyed: dict[tuple, list[dict]] = {}
    for results in runs:
        for r in results:
            if r["target"] is not None:  # one target, even where its peer (the faster POT
                # path) or its note (a measured share) differs between runs
                key = (r["section"], r["case"], r["ours"], r["target"])
                keyed.setdefault(key, []).append(r)
    cells = []
    for (_section, case, ours, _target), rows in keyed.items():
        ratios = sorted(r["ratio"] for r in rows)
        passed = sum(r["status"] == "PASS" for r in rows)
        peers = Counter(r["peer"] for r in rows)
        peer = rows[0]["peer"] if len(peers) == 1 else ", ".join(
            f"{name} ({count})" for name, count in peers.most_common())
        cells.append([case, ours, peer, _fmt_ratio(ratios[0]),
                      _fmt_ratio(statistics.median(ratios)), _fmt_ratio(ratios[-1]),
                      f">= {rows[0]['target']:g}x", f"{passed}/{len(rows)}"])
    out = ["", f"Spread over {len(runs)} runs of the suite in one process (ratio min / median / "
           "max; runs that met the target):"]
    out += _table(["case", "ours", "vs", "min", "median", "max", "target", "met"], cells,
                  right={3, 4, 5})
    always = sum(c[-1].split("/")[0] == c[-1].split("/")[1] for c in cells)
    out.append(f"{always} of {len(cells)} targets met in every run")
    return "\n".join(out)


def _timings(rows: list[dict]) -> list[str]:
    """All implementations of each case side by side (median; * timed once; ! not finite)."""
    cases: dict[str, dict] = {}
    for r in rows:
        cases.setdefault(r["case"], r["times"])
    names: list[str] = []
    for times in cases.values():
        names += [k for k in times if k not in names]
    body = []
    for case, times in cases.items():
        line = [case]
        for name in names:
            t = times.get(name)
            if t is None:
                line.append("-")
                continue
            mark = ("*" if t["repeats"] == 1 else "") + ("" if t.get("finite", True) else "!")
            line.append(_fmt_time(t["median_s"]) + mark)
        body.append(line)
    lines = ["", "  timings (median per call; * = timed once, ! = result not finite):"]
    lines += ["  " + x for x in _table(["case", *names], body, right=set(range(1, len(names) + 1)))]
    return lines


def _round(x, digits: int = 6):
    """Floats to ``digits`` significant digits, recursively (keeps the JSON small)."""
    if isinstance(x, float):
        return float(f"{x:.{digits}g}")
    if isinstance(x, dict):
        return {k: _round(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v, digits) for v in x]
    return x


def save_json(results: list[dict], path: str | Path) -> None:
    """Write ``{"env": ..., "results": [...], "timings": {...}}``, one row per line.

    The timings of every implementation of a case are stored once, under
    ``timings["<section>/<case>"]``, not in each of the case's rows.
    """
    rows, timings = [], {}
    for r in results:
        timings.setdefault(f"{r['section']}/{r['case']}", r["times"])
        rows.append({k: v for k, v in r.items() if k != "times"})
    lines = ["{", f' "env": {json.dumps(_round(getattr(results, "env", {})))},', ' "results": [']
    lines.append(",\n".join("  " + json.dumps(_round(r)) for r in rows))
    lines += [" ],", ' "timings": {']
    lines.append(",\n".join(f"  {json.dumps(k)}: {json.dumps(_round(v))}"
                             for k, v in timings.items()))
    lines += [" }", "}"]
    Path(path).write_text("\n".join(lines) + "\n")


def load_json(path: str | Path) -> Results:
    """Read a file written by :func:`save_json` back into a :class:`Results` list."""
    payload = json.loads(Path(path).read_text())
    timings = payload.get("timings", {})
    results = Results(
        {**r, "times": r.get("times") or timings.get(f"{r['section']}/{r['case']}", {})}
        for r in payload["results"]
    )
    results.env = payload.get("env", {})
    return results
