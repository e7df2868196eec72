"""Join and summarise bench/widget_trace_asgi.py's per-message timestamps (bench-only).

    python -m bench.widget_trace /tmp/widget-trace [--tag TAG] [--skip SECONDS]

Prints, per segment of a message's path (generator intended -> sent -> daphne recv -> sync thread start ->
stored -> inbox group_send returned -> console handler -> forwarded -> console socket), p50 / p90 / p99 /
max in ms, then the breakdown of the slowest messages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

STAGES = ["g_intended", "g_sent", "recv", "thread", "stored", "sent", "console", "forwarded", "g_console"]
EXTRA = ["acked", "g_ack"]


def load(directory: str) -> dict[str, dict[str, float]]:
    records: dict[str, dict[str, float]] = {}
    for path in Path(directory).glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue
            stage, key, at = parts
            if stage.startswith("gc"):
                GCS.append((float(at), path.stem, stage, key))
                continue
            records.setdefault(key, {}).setdefault(stage, float(at))
    return records


GCS: list[tuple[float, str, str, str]] = []  # (end time, pid, generation, "collected/duration")


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--tag", help="only this run's messages (the generator's tag)")
    parser.add_argument("--skip", type=float, default=4.0, help="leave out the first seconds (warm-up)")
    args = parser.parse_args()
    records = load(args.directory)
    by_tag: dict[str, dict[str, dict[str, float]]] = {}
    for key, stages in records.items():
        by_tag.setdefault(key.rsplit("-", 2)[0], {})[key] = stages
    for tag, recs in sorted(by_tag.items()):
        if args.tag and tag != args.tag:
            continue
        full = {k: r for k, r in recs.items() if all(s in r for s in STAGES)}
        if not full:
            print(f"{tag}: {len(recs)} messages, none with every stage")
            continue
        start = min(r["g_intended"] for r in full.values()) + args.skip
        full = {k: r for k, r in full.items() if r["g_intended"] >= start}
        print(f"\n{tag}: {len(full)} messages with every stage (of {len(recs)})")
        segments = list(zip(STAGES, STAGES[1:], strict=False)) + [("stored", "acked"), ("acked", "g_ack"),
                                                                   ("g_intended", "g_ack"), ("g_intended", "g_console")]
        print(f"  {'segment':28} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  ms")
        for a, b in segments:
            vals = [(r[b] - r[a]) * 1000 for r in full.values() if a in r and b in r]
            if vals:
                print(f"  {a + ' -> ' + b:28} {pct(vals, 50):8.2f} {pct(vals, 90):8.2f} {pct(vals, 99):8.2f} "
                      f"{max(vals):8.2f}")
        gcs = [g for g in GCS if start - args.skip <= g[0] <= max(r["g_console"] for r in full.values())]
        for gen in ("gc0", "gc1", "gc2"):
            durations = [float(g[3].split("/")[1][:-2]) for g in gcs if g[2] == gen]
            if durations:
                print(f"  {gen}: {len(durations)} collections, {sum(durations):.1f} ms in all, max {max(durations):.1f} ms")
        slow = sorted(full.items(), key=lambda kv: kv[1]["g_console"] - kv[1]["g_intended"], reverse=True)[:8]
        print("  slowest: " + " ".join(f"{a[:4]}>{b[:4]}" for a, b in zip(STAGES, STAGES[1:], strict=False)))
        for key, r in slow:
            cells = " ".join(f"{(r[b] - r[a]) * 1000:9.1f}" for a, b in zip(STAGES, STAGES[1:], strict=False))
            print(f"  {key:24} total {(r['g_console'] - r['g_intended']) * 1000:7.1f}: {cells}"
                  f"  at +{r['g_intended'] - start + args.skip:.1f}s")
            near = [g for g in gcs if r["g_intended"] - 0.05 <= g[0] <= r["g_console"] + 0.05 and g[2] != "gc0"]
            for g in near:
                print(f"      {g[2]} in {g[1]}: {g[3]} ending at +{g[0] - start + args.skip:.2f}s")


if __name__ == "__main__":
    main()
