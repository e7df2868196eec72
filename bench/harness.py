"""Timing helpers shared by the benchmarks: interleaved cases, percentiles, the result table, EXPLAIN.

A benchmark is a list of :class:`Case` objects. Each case is a zero-argument callable; cases that
are compared with each other are timed *interleaved* (case A, case B, case C, case A, …) so that
the baseline and the thing measured against it see the same machine state (caches, autovacuum,
CPU frequency). Timings are wall-clock ``perf_counter_ns`` around one call, reported in ms.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The target: p95 within 5x the same-run bare query, and under 100 ms.
TARGET_RATIO = 5.0
TARGET_ABS_MS = 100.0


@dataclass
class Case:
    name: str
    fn: Callable[[], object]
    baseline: str | None = None  # name of the baseline case this one is judged against
    note: str = ""
    part: bool = False  # a component of a page (e.g. template rendering alone): ratio shown, no target
    samples_ns: list[int] = field(default_factory=list)
    queries: int | None = None  # SQL statements per call, counted once outside the timed runs


def percentile(sorted_values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def stats_ms(samples_ns: list[int]) -> dict[str, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    return {
        "n": len(ms),
        "min": ms[0],
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": ms[-1],
    }


class QueryCounter:
    """Records the SQL (and params) the default connection executes; works with DEBUG=False."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append((sql, params))
        return execute(sql, params, many, context)


def capture_queries(fn: Callable[[], object]) -> list[tuple[str, object]]:
    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        fn()
    return counter.statements


def run_interleaved(cases: list[Case], *, iterations: int, warmup: int) -> None:
    """Warm every case up, count its queries once, then time `iterations` rounds of all cases."""
    for case in cases:
        case.queries = len(capture_queries(case.fn))
        for _ in range(warmup):
            case.fn()
    clock = time.perf_counter_ns
    for _ in range(iterations):
        for case in cases:
            start = clock()
            case.fn()
            case.samples_ns.append(clock() - start)


def explain(sql: str, params: object = None) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


_COST = re.compile(r"\s*\(cost=[^)]*\)")
_NOISE = ("Buffers:", "Cache Key:", "Cache Mode:", "Hits:", "Planning:", "Full-sort Groups:", "Heap Blocks:",
          "Workers Planned:", "Workers Launched:", "Batches:", "Sort Method:")


def compact_plan(plan: str) -> str:
    """The plan without costs and bookkeeping lines (the full text is saved to bench/results/)."""
    lines = plan.splitlines()
    out = [_COST.sub("", line) for line in lines if not line.strip().startswith(_NOISE)]
    top_buffers = next((line.strip() for line in lines if line.strip().startswith("Buffers:")), "")
    return "\n".join(out + ([f"Total {top_buffers}"] if top_buffers else []))


def verdict(case: Case, by_name: dict[str, Case]) -> tuple[str, str]:
    """(ratio text, target text) for a case judged against its baseline."""
    if case.baseline is None:
        return "-", "(part)" if case.part else "baseline"
    p95 = stats_ms(case.samples_ns)["p95"]
    base_p95 = stats_ms(by_name[case.baseline].samples_ns)["p95"]
    ratio = p95 / base_p95
    if case.part:
        return f"{ratio:.1f}x", "(part)"
    ok_ratio = ratio <= TARGET_RATIO
    ok_abs = p95 < TARGET_ABS_MS
    if ok_ratio and ok_abs:
        return f"{ratio:.1f}x", "met"
    missed = []
    if not ok_ratio:
        missed.append(f">{TARGET_RATIO:g}x")
    if not ok_abs:
        missed.append(f">={TARGET_ABS_MS:g}ms")
    return f"{ratio:.1f}x", "MISSED (" + ", ".join(missed) + ")"


def print_table(title: str, cases: list[Case]) -> list[dict]:
    by_name = {c.name: c for c in cases}
    rows = []
    header = ("case", "queries", "p50 ms", "p95 ms", "p99 ms", "max ms", "baseline", "p95/base", "target")
    table = [header]
    for case in cases:
        s = stats_ms(case.samples_ns)
        ratio, target = verdict(case, by_name)
        table.append((case.name, str(case.queries), f"{s['p50']:.2f}", f"{s['p95']:.2f}", f"{s['p99']:.2f}",
                      f"{s['max']:.2f}", case.baseline or "-", ratio, target))
        rows.append({"case": case.name, "baseline": case.baseline, "queries": case.queries, "note": case.note,
                     **{k: round(v, 3) for k, v in s.items()}, "p95_ratio": ratio, "target": target})
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate(table):
        print("  ".join(cell.ljust(widths[j]) if j in (0, 6, 8) else cell.rjust(widths[j])
                        for j, cell in enumerate(r)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return rows


_RUN_DIR: Path | None = None


def results_dir() -> Path:
    """bench/results/<UTC timestamp>/ for this run (created once per process)."""
    global _RUN_DIR
    if _RUN_DIR is None:
        stamp = os.environ.get("BENCH_RUN_ID") or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        _RUN_DIR = RESULTS_DIR / stamp
        _RUN_DIR.mkdir(parents=True, exist_ok=True)
    return _RUN_DIR


def save_json(name: str, data: object) -> Path:
    path = results_dir() / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def save_text(name: str, text: str) -> Path:
    path = results_dir() / name
    path.write_text(text)
    return path
