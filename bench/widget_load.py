"""Open-model websocket load generator for bench_widget (a separate process from the server under test).

    python -m bench.widget_load CONFIG.json RESULT.json

CONFIG (written by bench/bench_widget.py): ``mode`` "product" or "relay", ``host``, ``ports`` (one per
server process; connection i goes to ports[i % len(ports)], the console(s) to ports[0]),
``connections``, ``interval`` (seconds between two messages of one connection), ``warmup`` and
``duration`` (seconds), ``drain`` (seconds to wait for stragglers), ``workers`` (generator processes
for the visitor sockets), ``tag`` (unique per run), and for the product ``public_token``, ``origin``,
``visitor_tokens``, ``session_cookie``, ``consoles``.

Open model: message j of connection i is *scheduled* at ``T0 + i*interval/N + j*interval``, so the
N connections together send at a constant ``N/interval`` messages per second, whatever the server
does; the client never waits for a reply before sending the next message. Latency is measured from
that intended time (not the actual send, so a late send is charged to the system: no coordinated
omission) to the reception of the message on the agent console socket (product) or of the echo on the
same socket (relay). Every body carries ``<tag> v<i> #<j>``; the receiver checks per connection for
lost, duplicated and out-of-order messages. Messages scheduled in the first ``warmup`` seconds are
checked but left out of the latency figures. All clocks are CLOCK_MONOTONIC (shared by processes).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import sys
import time
from contextlib import suppress
from pathlib import Path

from websockets.asyncio.client import connect

from bench.harness import own_cpu_seconds, percentile

FILLER = "Hello, I ordered the blue one last week and the tracking page still says pending, can you check?"
BODY_RE = re.compile(r"^(\S+) v(\d+) #(\d+) ")
CONNECT_CONCURRENCY = 24  # handshakes in flight per generator process (daphne's listen backlog is 50)


def body(tag: str, i: int, j: int) -> str:
    return f"{tag} v{i} #{j} {FILLER}"


def schedule(cfg: dict, t0: float, i: int) -> list[float]:
    """Intended send times of connection i."""
    n, interval = cfg["connections"], cfg["interval"]
    end = t0 + cfg["warmup"] + cfg["duration"]
    first = t0 + i * interval / n
    count = max(0, int((end - first) // interval + (1 if (end - first) % interval else 0)))
    return [first + j * interval for j in range(count)]


def url_for(cfg: dict, i: int) -> str:
    port = cfg["ports"][i % len(cfg["ports"])]
    if cfg["mode"] == "relay":
        return f"ws://{cfg['host']}:{port}/ws/relay/"
    return f"ws://{cfg['host']}:{port}/ws/widget/{cfg['public_token']}/?token={cfg['visitor_tokens'][i]}"


class Visitors:
    """The visitor sockets of one generator process."""

    def __init__(self, cfg: dict, indices: list[int]) -> None:
        self.cfg = cfg
        self.indices = indices
        self.sockets: dict[int, object] = {}
        self.errors: list[str] = []
        self.sent: dict[int, list[int]] = {i: [] for i in indices}  # j values actually sent
        self.send_lag_ms: list[float] = []
        self.acks: dict[tuple[int, int], float] = {}  # product: (i, j) -> ack latency ms
        self.ack_dups = 0
        self.echoes: list[tuple[int, int, float]] = []  # relay: (i, j, recv time)
        self.visitor_events = 0  # product: the visitor's own message coming back on its stream
        self.error_frames = 0
        self.t0 = 0.0
        self.closing = False
        self.cpu = self.wall = 0.0  # over the sending window

    async def open_all(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def open_one(i: int) -> None:
            async with gate:
                try:
                    ws = await connect(url_for(self.cfg, i), origin=self.cfg.get("origin"), compression=None,
                                       open_timeout=60, ping_interval=None, close_timeout=5, max_queue=None)
                except Exception as exc:  # noqa: BLE001 - every failure is an error in the report
                    self.errors.append(f"connect v{i}: {type(exc).__name__}: {exc}")
                    return
                self.sockets[i] = ws

        await asyncio.gather(*(open_one(i) for i in self.indices))

    async def read(self, i: int, ws) -> None:
        tag = self.cfg["tag"]
        relay = self.cfg["mode"] == "relay"
        try:
            async for raw in ws:
                now = time.monotonic()
                frame = json.loads(raw)
                if relay:
                    m = BODY_RE.match(frame.get("body", ""))
                    if m and m.group(1) == tag:
                        self.echoes.append((int(m.group(2)), int(m.group(3)), now))
                    continue
                kind = frame.get("type")
                if kind == "ack":
                    cid = str(frame.get("client_id") or "")
                    parts = cid.split("-")
                    if len(parts) == 3 and parts[0] == tag:
                        key = (int(parts[1]), int(parts[2]))
                        if key in self.acks:
                            self.ack_dups += 1
                        else:
                            self.acks[key] = (now - self.intended(*key)) * 1000
                elif kind == "error":
                    self.error_frames += 1
                    self.errors.append(f"error frame v{i}: {frame.get('message')}"[:200])
                elif kind == "message":
                    self.visitor_events += 1
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"read v{i}: {type(exc).__name__}: {exc}"[:200])
        if not self.closing:
            self.errors.append(f"v{i} closed by the server: code {ws.close_code} {ws.close_reason}"[:200])

    def intended(self, i: int, j: int) -> float:
        return self.t0 + i * self.cfg["interval"] / self.cfg["connections"] + j * self.cfg["interval"]

    async def send_loop(self, i: int, ws) -> None:
        tag = self.cfg["tag"]
        for j, at in enumerate(schedule(self.cfg, self.t0, i)):
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = {"type": "message", "body": body(tag, i, j), "client_id": f"{tag}-{i}-{j}"}
            try:
                await ws.send(json.dumps(frame))
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"send v{i} #{j}: {type(exc).__name__}: {exc}"[:200])
                return
            self.send_lag_ms.append((time.monotonic() - at) * 1000)
            self.sent[i].append(j)

    def done(self) -> bool:
        sent = sum(len(v) for v in self.sent.values())
        if self.cfg["mode"] == "relay":
            return len(self.echoes) >= sent
        return len(self.acks) >= sent

    async def run(self, t0: float, deadline: float) -> None:
        self.t0 = t0
        readers = [asyncio.create_task(self.read(i, ws)) for i, ws in self.sockets.items()]
        cpu0, wall0 = own_cpu_seconds(), time.monotonic()
        await asyncio.gather(*(self.send_loop(i, ws) for i, ws in self.sockets.items()))
        self.cpu, self.wall = own_cpu_seconds() - cpu0, time.monotonic() - wall0
        while time.monotonic() < deadline and not self.done():
            await asyncio.sleep(0.05)
        self.closing = True
        with suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in self.sockets.values()),
                                                  return_exceptions=True), 15)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


def _event_loop():
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def worker(cfg: dict, indices: list[int], conn) -> None:
    """A generator process: open its visitor sockets, report ready, get T0, send, report results."""
    loop = _event_loop()
    asyncio.set_event_loop(loop)
    visitors = Visitors(cfg, indices)
    loop.run_until_complete(visitors.open_all())
    conn.send({"ready": len(visitors.sockets)})
    t0, deadline = conn.recv()
    loop.run_until_complete(visitors.run(t0, deadline))
    conn.send({
        "errors": visitors.errors, "sent": visitors.sent, "send_lag_ms": visitors.send_lag_ms,
        "acks": visitors.acks, "ack_dups": visitors.ack_dups, "echoes": visitors.echoes,
        "visitor_events": visitors.visitor_events, "error_frames": visitors.error_frames,
        "cpu": visitors.cpu, "wall": visitors.wall,
    })
    conn.close()


class Console:
    """An agent console socket (a supervisor's: it is in the inbox's group), product mode only."""

    def __init__(self, cfg: dict, index: int) -> None:
        self.cfg = cfg
        self.index = index
        self.ws = None
        self.received: list[tuple[int, int, float]] = []
        self.errors: list[str] = []
        self.other_frames = 0
        self.closing = False

    async def open(self) -> None:
        port = self.cfg["ports"][0]
        self.ws = await connect(f"ws://{self.cfg['host']}:{port}/ws/console/", origin=f"http://127.0.0.1:{port}",
                                additional_headers={"Cookie": self.cfg["session_cookie"]}, compression=None,
                                open_timeout=60, ping_interval=None, close_timeout=5, max_queue=None)

    async def read(self) -> None:
        tag = self.cfg["tag"]
        try:
            async for raw in self.ws:
                now = time.monotonic()
                frame = json.loads(raw)
                if frame.get("type") == "message" and frame.get("op") == "created":
                    m = BODY_RE.match(frame.get("preview") or "")
                    if m and m.group(1) == tag:
                        self.received.append((int(m.group(2)), int(m.group(3)), now))
                        continue
                self.other_frames += 1
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"console {self.index} read: {type(exc).__name__}: {exc}"[:200])
        if not self.closing:
            self.errors.append(f"console {self.index} closed by the server: code {self.ws.close_code}")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "p999": None, "max": None}
    v = sorted(values)
    return {"n": len(v), **{k: percentile(v, p) for k, p in (("p50", 50), ("p95", 95), ("p99", 99), ("p999", 99.9))},
            "max": v[-1]}


def check(received: list[tuple[int, int, float]], sent: dict[int, list[int]], intended, measure_from: float):
    """Loss, duplicates, order and latency of one receiver's (i, j, time) records."""
    seen: set[tuple[int, int]] = set()
    last: dict[int, int] = {}
    duplicates = out_of_order = 0
    latencies = []
    sent_set = {(i, j) for i, js in sent.items() for j in js}
    unexpected = 0
    for i, j, at in received:
        if (i, j) in seen:
            duplicates += 1
            continue
        seen.add((i, j))
        if (i, j) not in sent_set:
            unexpected += 1
        if j < last.get(i, -1):
            out_of_order += 1
        last[i] = max(j, last.get(i, -1))
        start = intended(i, j)
        if start >= measure_from:
            latencies.append((at - start) * 1000)
    lost = len(sent_set - seen)
    return {"received": len(seen), "lost": lost, "duplicates": duplicates, "out_of_order": out_of_order,
            "unexpected": unexpected, "latency_ms": percentiles(latencies), "samples": latencies}


def start_workers(cfg: dict) -> tuple[list, list, float]:
    """Fork the visitor processes (before any event loop exists); they start connecting at once."""
    n, workers = cfg["connections"], max(1, cfg.get("workers", 1))
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for w in range(workers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(cfg, list(range(w, n, workers)), child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    return pipes, procs, time.monotonic()


async def main_async(cfg: dict, pipes: list, procs: list, connect_started: float) -> dict:
    n = cfg["connections"]
    consoles = [Console(cfg, k) for k in range(cfg.get("consoles", 1))] if cfg["mode"] == "product" else []
    for console in consoles:
        await console.open()
    readers = [asyncio.create_task(c.read()) for c in consoles]
    loop = asyncio.get_running_loop()
    ready = [await loop.run_in_executor(None, p.recv) for p in pipes]
    connect_seconds = time.monotonic() - connect_started
    await asyncio.sleep(1.0)  # let the server settle after the connection burst
    t0 = time.monotonic() + 0.5
    end_of_schedule = t0 + cfg["warmup"] + cfg["duration"]
    deadline = end_of_schedule + cfg["drain"]
    for p in pipes:
        p.send((t0, deadline))
    cpu0 = own_cpu_seconds()
    await asyncio.sleep(max(0.0, end_of_schedule - time.monotonic()))
    main_cpu, main_wall = own_cpu_seconds() - cpu0, end_of_schedule - t0
    results = [await loop.run_in_executor(None, p.recv) for p in pipes]
    if consoles:  # the workers are done with their sockets; wait for the console to catch up
        sent_total = sum(len(js) for r in results for js in r["sent"].values())
        while time.monotonic() < deadline and any(len(c.received) < sent_total for c in consoles):
            await asyncio.sleep(0.05)
    for c in consoles:
        c.closing = True
        with suppress(Exception):
            await asyncio.wait_for(c.ws.close(), 5)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for proc in procs:
        proc.join(10)

    sent: dict[int, list[int]] = {}
    errors: list[str] = []
    for r in results:
        sent.update({int(i): js for i, js in r["sent"].items()})
        errors += r["errors"]
    for c in consoles:
        errors += c.errors

    def intended(i: int, j: int) -> float:
        return t0 + i * cfg["interval"] / n + j * cfg["interval"]

    measure_from = t0 + cfg["warmup"]
    if consoles:
        per_receiver = [check(c.received, sent, intended, measure_from) for c in consoles]
    else:
        echoes = [e for r in results for e in r["echoes"]]
        per_receiver = [check(echoes, sent, intended, measure_from)]
    samples = [s for r in per_receiver for s in r.pop("samples")]
    scheduled = sum(len(schedule(cfg, t0, i)) for i in range(n))
    sent_total = sum(len(js) for js in sent.values())
    acks = {k: v for r in results for k, v in r["acks"].items()}
    noack = sent_total - len(acks) if cfg["mode"] == "product" else 0
    if noack:
        errors.append(f"{noack} messages got no ack")
    cpu_pct = [100 * main_cpu / main_wall] + [100 * r["cpu"] / r["wall"] for r in results if r["wall"]]
    return {
        "mode": cfg["mode"], "connections": n, "connected": sum(r["ready"] for r in ready),
        "connect_seconds": round(connect_seconds, 2),
        "rate": n / cfg["interval"], "interval": cfg["interval"], "scheduled": scheduled, "sent": sent_total,
        "received": sum(r["received"] for r in per_receiver), "lost": sum(r["lost"] for r in per_receiver),
        "duplicates": sum(r["duplicates"] for r in per_receiver),
        "out_of_order": sum(r["out_of_order"] for r in per_receiver),
        "unexpected": sum(r["unexpected"] for r in per_receiver),
        "receivers": len(per_receiver),
        "errors": len(errors),
        "error_samples": errors[:20],
        "latency_ms": percentiles(samples),
        "ack_latency_ms": percentiles([v for (i, j), v in acks.items() if intended(i, j) >= measure_from]),
        "send_lag_ms": percentiles([x for r in results for x in r["send_lag_ms"]]),
        "generator_cpu_pct": round(sum(cpu_pct), 1), "generator_cpu_pct_max_process": round(max(cpu_pct), 1),
        "visitor_events": sum(r["visitor_events"] for r in results),
        "console_other_frames": sum(c.other_frames for c in consoles),
        "samples_ms": samples,
    }


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    pipes, procs, started = start_workers(cfg)
    loop = _event_loop()
    asyncio.set_event_loop(loop)
    result = loop.run_until_complete(main_async(cfg, pipes, procs, started))
    Path(sys.argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
