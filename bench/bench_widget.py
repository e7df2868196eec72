"""Widget-to-console latency at 100/500/1,000 visitor sockets, every message persisted, vs a bare Channels relay.

What is measured (bench/README.md has the method and the figures):

* **product**: the real ASGI app (``omnichannel.asgi:application``) under daphne. N visitor sockets
  on ``/ws/widget/<token>/`` send ``{"type": "message", ...}`` frames; each is stored by
  ``do_visitor_message`` (PostgreSQL transaction, per-stream seq, replay log) and published to the
  inbox's group after commit; one supervisor's ``/ws/console/`` socket receives it. Latency: from
  the message's *intended* send time to its arrival on the console socket.
* **relay** (baseline, same run, same server, same process count, same channel layer settings):
  ``bench/relay_asgi.py``, a consumer that only ``group_send``s each frame to its own group and
  sends it back. Latency: intended send time to the echo.

Both are driven by ``bench/widget_load.py``, an open-model generator (constant total arrival rate,
latency from the intended send time, per-connection sequence numbers checked for loss, duplicates
and order). After each product run the stored rows are counted in PostgreSQL.

Environment knobs (defaults in brackets):

* BENCH_WIDGET_CONNECTIONS [100,500,1000]; BENCH_WIDGET_RATE total msg/s [20], the same at every
  connection count and for both apps; BENCH_WIDGET_DURATION s [20] measured after BENCH_WIDGET_WARMUP
  s [4] (warm-up messages are checked for loss but not timed);
* BENCH_WIDGET_LAYERS [the settings' default layer, then the other one at the smallest and the largest
  connection count only, right after the first layer's pair at that count];
* BENCH_WIDGET_PROCESSES daphne processes [2, one per core: visitor i connects to process i mod 2, as
  behind a load balancer; the console to the first]; BENCH_WIDGET_WORKERS generator processes [1];
* BENCH_WIDGET_SWEEP extra total rates run at the largest connection count with the first layer [none];
* BENCH_WS_DATABASE_URL [the bench database's name + ``_ws``]; BENCH_WS_REDIS_URL [BENCH_REDIS_URL,
  flushed before each run]; BENCH_WIDGET_MAX_LOAD [none; e.g. 1.5: first wait up to 10 min for the
  1-minute load average to fall below it].

Targets (issue): zero errors and zero lost messages at 1,000 connections; product p99 within 3x of
the same-run relay p99.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from bench import harness
from bench.harness import PY, ROOT, busy_pct, cpu_seconds, load_avg, proc_stat

PRODUCT_APP = "omnichannel.asgi:application"
RELAY_APP = "bench.relay_asgi:application"
DEFAULT_CONNECTIONS = "100,500,1000"
DEFAULT_RATE = 20.0  # total messages per second, the same for every connection count and for both apps
TARGET_RATIO = 3.0
BASE_PORT = 18700


def settings_default_layer() -> str:
    """The layer omnichannel.settings picks when CHANNEL_LAYER is unset (read from the file, no import)."""
    text = (ROOT / "omnichannel" / "settings.py").read_text()
    marker = 'os.getenv("CHANNEL_LAYER") or "'
    return text.split(marker, 1)[1].split('"', 1)[0] if marker in text else "core"


class Bench:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.stack = harness.Stack("ws", database=harness.database_url("ws", "BENCH_WS_DATABASE_URL"),
                                   redis=harness.redis_url("BENCH_WS_REDIS_URL"))
        self.connections = [int(x) for x in harness.env_list("BENCH_WIDGET_CONNECTIONS", DEFAULT_CONNECTIONS)]
        self.rate = harness.env_float("BENCH_WIDGET_RATE", DEFAULT_RATE)
        self.duration = harness.env_float("BENCH_WIDGET_DURATION", 20)
        self.warmup = harness.env_float("BENCH_WIDGET_WARMUP", 4)
        first = settings_default_layer()
        self.layers = harness.env_list("BENCH_WIDGET_LAYERS", ",".join([first] + [x for x in ("core", "pubsub")
                                                                                  if x != first]))
        self.processes = harness.env_int("BENCH_WIDGET_PROCESSES", 2)
        self.workers = harness.env_int("BENCH_WIDGET_WORKERS", 1)
        self.sweep = [float(x) for x in harness.env_list("BENCH_WIDGET_SWEEP", "")]
        self.setup: dict = {}
        self.run_no = 0
        self.rows: list[dict] = []

    def prepare(self) -> None:
        self.stack.prepare_database()
        visitors = max(self.connections)
        print(f"== {visitors} visitor sessions, each with an open chat (made once, reused)", flush=True)
        out = self.out_dir / "widget_setup.json"
        self.stack.python("-m", "bench.widget_setup", "--visitors", str(visitors), "--out", str(out))
        self.setup = json.loads(out.read_text())
        out.unlink()  # holds a session cookie and visitor tokens

    def persisted(self, tag: str) -> tuple[int, int]:
        """(rows, distinct bodies) stored for this run's messages."""
        import psycopg

        with psycopg.connect(self.stack.db_url) as conn:
            return conn.execute(
                "SELECT count(*), count(DISTINCT body) FROM conversations_message WHERE inbox_id = %s AND body LIKE %s",
                [self.setup["inbox_id"], tag + " %"]).fetchone()

    def start_servers(self, app: str, layer: str) -> tuple[list[subprocess.Popen], list[int]]:
        procs, ports = [], []
        try:
            for k in range(self.processes):
                port = harness.free_port(BASE_PORT + 10 * self.run_no + k)
                procs.append(self.stack.daphne(app, port, self.out_dir / "widget_servers.log",
                                               env=self.stack.env(CHANNEL_LAYER=layer)))
                ports.append(port)
        except BaseException:
            self.stop_servers(procs)
            raise
        return procs, ports

    def stop_servers(self, procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            self.stack.stop(proc, timeout=5)
        self.stack.procs = [p for p in self.stack.procs if p not in procs]

    # --- one run -----------------------------------------------------------------------

    def run_one(self, kind: str, layer: str, connections: int, rate: float) -> dict:
        self.run_no += 1
        tag = f"w{int(time.time())}r{self.run_no}"
        self.stack.flush_redis()
        app = PRODUCT_APP if kind == "product" else RELAY_APP
        procs, ports = self.start_servers(app, layer)
        cfg = {"mode": kind, "host": "127.0.0.1", "ports": ports, "connections": connections,
               "interval": connections / rate, "warmup": self.warmup, "duration": self.duration,
               "drain": 10.0, "workers": self.workers, "tag": tag, "consoles": 1}
        if kind == "product":
            cfg.update(public_token=self.setup["public_token"], origin=self.setup["origin"],
                       visitor_tokens=self.setup["visitor_tokens"][:connections],
                       session_cookie=self.setup["session_cookie"])
        cfg_path = self.out_dir / f"widget_run{self.run_no}.cfg.json"
        res_path = self.out_dir / f"widget_run{self.run_no}.json"
        cfg_path.write_text(json.dumps(cfg))
        stat0, cpu0, wall0 = proc_stat(), _cpu_of(procs), time.monotonic()
        try:
            budget = 120 + connections * 0.1 + self.warmup + self.duration
            gen = subprocess.run([PY, "-m", "bench.widget_load", str(cfg_path), str(res_path)],
                                 cwd=ROOT, timeout=budget, capture_output=True, text=True)
            server_cpu = (_cpu_of(procs) - cpu0) / (time.monotonic() - wall0) * 100
            busy = busy_pct(stat0, proc_stat())
        finally:
            self.stop_servers(procs)
            cfg_path.unlink()
        if gen.returncode != 0:
            raise RuntimeError(f"load generator failed ({gen.returncode}):\n{gen.stdout}\n{gen.stderr}")
        result = json.loads(res_path.read_text())
        result.update(kind=kind, layer=layer, tag=tag, server_cpu_pct=round(server_cpu, 1),
                      machine_busy_pct=round(busy, 1), load=os.getloadavg()[0])
        if kind == "product":
            rows, distinct = self.persisted(tag)
            result.update(persisted=rows, persisted_distinct=distinct)
        samples = result.pop("samples_ms")
        res_path.write_text(json.dumps({**result, "samples_ms": [round(s, 3) for s in samples]}))
        lat = result["latency_ms"]
        print(f"   {kind:7} {layer:6} {connections:5} conns {rate:g} msg/s: sent {result['sent']}, "
              f"received {result['received']}, lost {result['lost']}, errors {result['errors']}, "
              f"p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} ms"
              + (f" (ack p99 {_ms(result['ack_latency_ms']['p99'])} ms)" if kind == "product" else "")
              + f", server cpu {result['server_cpu_pct']} %, "
              f"machine busy {result['machine_busy_pct']} %", flush=True)
        for line in result["error_samples"][:3]:
            print(f"      ! {line}", flush=True)
        return result

    def pair(self, layer: str, connections: int, rate: float) -> dict:
        product = self.run_one("product", layer, connections, rate)
        relay = self.run_one("relay", layer, connections, rate)
        row = summarize(product, relay)
        self.rows.append(row)
        return row

    def run(self) -> list[dict]:
        harness.wait_for_quiet("BENCH_WIDGET_MAX_LOAD")
        print(f"== daphne x{self.processes} process(es), {self.workers} generator process(es), "
              f"{self.duration:g} s measured after {self.warmup:g} s warm-up per run, total rate {self.rate:g} msg/s, "
              f"layers {', '.join(self.layers)}; load average {load_avg()}", flush=True)
        self.prepare()
        ends = {min(self.connections), max(self.connections)}
        for n in self.connections:  # the layers interleaved at each count: they see the same machine state
            for index, layer in enumerate(self.layers):
                if index == 0 or n in ends:
                    self.pair(layer, n, self.rate)
        for rate in self.sweep:
            self.pair(self.layers[0], max(self.connections), rate)
        print_table(self.rows)
        print_layer_comparison(self.rows)
        return self.rows


def summarize(product: dict, relay: dict) -> dict:
    p99, base = product["latency_ms"]["p99"], relay["latency_ms"]["p99"]
    ratio = p99 / base if p99 and base else None
    clean = all(product[k] == 0 for k in ("errors", "lost", "duplicates", "out_of_order")) and \
        all(relay[k] == 0 for k in ("errors", "lost", "duplicates", "out_of_order"))
    stored = product["persisted"] == product["sent"] == product["persisted_distinct"]
    met = clean and stored and ratio is not None and ratio <= TARGET_RATIO
    missed = [] if met else [
        *(["errors/loss"] if not clean else []), *(["not all stored"] if not stored else []),
        *([f">{TARGET_RATIO:g}x"] if ratio is None or ratio > TARGET_RATIO else [])]
    return {"layer": product["layer"], "connections": product["connections"], "rate": product["rate"],
            "product": product, "relay": relay, "p99_ratio": ratio,
            "target": "met" if met else "MISSED (" + ", ".join(missed) + ")"}


def print_table(rows: list[dict]) -> None:
    header = ("layer", "conns", "msg/s", "app", "sent", "/conn", "recv", "lost", "dup", "ooo", "err", "stored",
              "p50 ms", "p95 ms", "p99 ms", "max ms", "p99/relay", "target", "connect s", "srv cpu", "gen cpu", "busy")
    table = [header]
    for row in rows:
        for kind in ("product", "relay"):
            r = row[kind]
            lat = r["latency_ms"]
            table.append((
                row["layer"], str(row["connections"]), f"{row['rate']:g}", kind, str(r["sent"]),
                f"{r['sent'] / row['connections']:.1f}", str(r["received"]),
                str(r["lost"]), str(r["duplicates"]), str(r["out_of_order"]), str(r["errors"]),
                str(r.get("persisted", "-")), _ms(lat["p50"]), _ms(lat["p95"]), _ms(lat["p99"]), _ms(lat["max"]),
                (f"{row['p99_ratio']:.1f}x" if row["p99_ratio"] else "-") if kind == "product" else "baseline",
                row["target"] if kind == "product" else "", f"{r['connect_seconds']:.1f}", f"{r['server_cpu_pct']:.0f}%",
                f"{r['generator_cpu_pct']:.0f}%", f"{r['machine_busy_pct']:.0f}%"))
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    print("\nwidget -> console (product) vs bare group_send relay; latency from the intended send time")
    left = {0, 3, 17}
    for i, t in enumerate(table):
        print("  ".join(c.ljust(widths[j]) if j in left else c.rjust(widths[j]) for j, c in enumerate(t)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("/conn: messages per connection; lost: sent but not on the receiving socket within 10 s of the last "
          "send; dup/ooo: duplicates and out-of-order per connection (sequence numbers); stored: rows in "
          "conversations_message; connect s: time to open all the sockets; srv cpu: the daphne process(es), % of one core, over the whole run (connecting "
          "included); gen cpu: the load generator while sending; busy: the whole machine's CPU (both cores, "
          "every process, other sessions' included) during the run")


def print_layer_comparison(rows: list[dict]) -> None:
    """Same connection count and rate under each layer: product and relay p50/p99, errors + losses."""
    by_key: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        by_key.setdefault((row["connections"], row["rate"]), {})[row["layer"]] = row
    pairs = {k: v for k, v in by_key.items() if len(v) > 1}
    if not pairs:
        return
    print("\nchannel layers side by side (same run): p50 / p99 ms, errors + lost")
    for (n, rate), layers in sorted(pairs.items()):
        for kind in ("product", "relay"):
            cells = []
            for layer, row in sorted(layers.items()):
                r = row[kind]
                lat = r["latency_ms"]
                cells.append(f"{layer} {_ms(lat['p50'])} / {_ms(lat['p99'])}, {r['errors']} + {r['lost']}")
            print(f"  {n:5} conns {rate:g} msg/s {kind:7}  " + "   |   ".join(cells))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cpu_of(procs: list[subprocess.Popen]) -> float:
    """User + system CPU seconds of the server processes so far."""
    return sum(cpu_seconds(proc.pid) for proc in procs)


def _ms(value: float | None) -> str:
    return harness.fmt(value, 1)


def run(options=None) -> dict:
    bench = Bench(harness.results_dir())
    try:
        rows = bench.run()
    finally:
        bench.stack.stop_all(timeout=5)
    targets = []
    largest = max(bench.connections)
    for row in rows:
        p, r = row["product"], row["relay"]
        clean = all(p[k] == 0 for k in ("errors", "lost", "duplicates", "out_of_order")) and \
            p["persisted"] == p["sent"] == p["persisted_distinct"]
        if row["connections"] == largest:
            targets.append(harness.target(
                f"0 errors, 0 lost, every message stored once ({row['layer']}, {largest} sockets)", clean,
                f"{p['errors']} errors, {p['lost']} lost, {p['duplicates']} dup, {p['out_of_order']} ooo, "
                f"{p['persisted']}/{p['sent']} stored"))
        ratio = row["p99_ratio"]
        targets.append(harness.target(
            f"product p99 <= {TARGET_RATIO:g}x relay p99 ({row['layer']}, {row['connections']} sockets, "
            f"{row['rate']:g} msg/s)", ratio is not None and ratio <= TARGET_RATIO,
            f"p99 {_ms(p['latency_ms']['p99'])} ms ({ratio:.1f}x)" if ratio else "-",
            f"relay p99 {_ms(r['latency_ms']['p99'])} ms"))
    return {"targets": targets, "rows": [
        {k: v for k, v in row.items() if k not in ("product", "relay")}
        | {kind: {k: v for k, v in row[kind].items() if k != "error_samples"} for kind in ("product", "relay")}
        for row in rows]}
