"""Signed Twilio SMS webhook ingest at a constant arrival rate (20 % duplicates, 5 % bad signatures) vs a trivial view.

What is measured (bench/README.md has the method):

* **webhook**: ``POST /webhooks/twilio/<token>/sms/`` of the real app (``omnichannel.asgi:application``,
  wrapped by ``bench/twilio_asgi.py`` only to add the baseline's URL) under one daphne process, with
  requests signed exactly as Twilio signs them (``RequestValidator.compute_signature`` over
  PUBLIC_BASE_URL + path and every posted parameter). Each arrival is a new message (75 %), a
  duplicate of an earlier MessageSid (20 %: Twilio's retries; half of them the SID sent just before,
  usually still in flight, half an older one) or a request with a bad signature (5 %: wrong auth
  token, a parameter tampered with after signing, or no signature header; each with a SID of its own).
  Expected: 200 with empty TwiML, 200, 403.
* **trivial** (baseline, same server, same run, interleaved with the webhooks at the same rate):
  ``POST /bench/trivial/``, a Django view behind the same middleware that parses the same form and
  answers the same TwiML, and does nothing else.

Open model: arrivals at a constant rate from a schedule made beforehand (bodies and signatures
precomputed); latency is time-to-answer (200 or 403) from the *intended* send time, so a slow server
is not hidden by a generator waiting for it. At most BENCH_TWILIO_MAX_IN_FLIGHT requests are
outstanding: past that the server is not keeping up, and further arrivals are shed (counted as
failures) rather than opening ever more PostgreSQL connections (one per request in flight) on a
shared server. Rates are run in ascending order, each with its own baseline; the next rate is
skipped once one is not sustained (an unexpected answer, or webhook p99 > 1 s). The webhook stores the
verified delivery (conversations_inbounddelivery) before its 200 and enqueues a Celery task that makes the
contact, conversation and message. By default no Celery worker runs during the steps (the tasks, and the
routing task each new conversation enqueues, wait in Redis, flushed afterwards), so the measure is the
ingest alone; BENCH_TWILIO_WORKER=1 runs one worker process beside daphne during the steps. After the
runs, the deliveries left unprocessed are drained with the task's own code (in order, timed), then every
stored delivery and message of the run's inbox (a new inbox per run) is counted in PostgreSQL: exactly
one of each per MessageSid that got a 200, none for the bad-signature SIDs, nothing else.

Environment knobs (defaults in brackets): BENCH_TWILIO_RATES webhooks/s [10,25,50], BENCH_TWILIO_BASELINE_SHARE
trivial requests per webhook, interleaved [1], BENCH_TWILIO_DURATION s per rate [20], BENCH_TWILIO_WARMUP s [3],
BENCH_TWILIO_MAX_IN_FLIGHT [40], BENCH_TWILIO_PHONES distinct senders [200], BENCH_TWILIO_DATABASE_URL
[the bench database's name + ``_sms``], BENCH_TWILIO_REDIS_URL [BENCH_REDIS_URL; flushed before and after],
BENCH_TWILIO_MAX_LOAD [off; e.g. 1.5: wait for the 1-minute load average to fall to it before measuring],
BENCH_TWILIO_MAX_WAIT s [600], BENCH_TWILIO_WORKER [0; 1: a Celery worker during the steps].

Target (issue): webhook p99 within 3x of the same-run trivial view's p99 (judged only at a rate that is
sustained); exactly one stored message per SID.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from bench import harness
from bench.harness import ROOT, busy_pct, cpu_seconds, load_avg, proc_stat

APP = "bench.twilio_asgi:application"
BASE_PORT = 18950
TARGET_RATIO = 3.0
SUSTAINED_P99_MS = 1000.0
REQUEST_TIMEOUT_S = 15.0  # Twilio gives up on a webhook after 15 s
OUR_NUMBER = "+15550100000"
SEED = 20240611


def _pct(values: list[float], p: float) -> float | None:
    return harness.pct(values, p) if values else None


def _ms(v: float | None) -> str:
    return harness.fmt(v, 1)


# --- the schedule ------------------------------------------------------------------------


@dataclass
class Req:
    at: float  # intended send time, seconds from the phase's start
    kind: str  # new | dup | bad | trivial
    url: str
    body: bytes
    headers: dict[str, str]
    sid: str = ""
    expect: int = 200


@dataclass
class Traffic:
    """Builds signed requests; remembers every validly signed SID (for duplicates) and every bad-only SID."""

    base: str
    token: str
    secret: str
    account_sid: str
    phones: list[str]
    rng: random.Random
    valid: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # valid SIDs in the order first scheduled
    bad: set[str] = field(default_factory=set)
    bad_kinds: int = 0

    @property
    def url(self) -> str:
        return f"{self.base}/webhooks/twilio/{self.token}/sms/"

    def params(self, sid: str) -> dict[str, str]:
        words = ["order", "refund", "delivery", "tomorrow", "thanks", "where", "is", "my", "parcel", "please", "help",
                 "the", "address", "changed", "ok", "😀", "café"]
        body = " ".join(self.rng.choice(words) for _ in range(self.rng.randint(3, 25)))
        return {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "",
                "FromZip": "94105", "SmsSid": sid, "FromState": "CA", "SmsStatus": "received", "FromCity": "SAN FRANCISCO",
                "Body": body, "FromCountry": "US", "To": OUR_NUMBER, "ToZip": "", "NumSegments": "1",
                "MessageSid": sid, "AccountSid": self.account_sid, "From": self.rng.choice(self.phones),
                "ApiVersion": "2010-04-01"}

    def sign(self, params: dict[str, str], token: str | None = None) -> str:
        from twilio.request_validator import RequestValidator

        return RequestValidator(token or self.secret).compute_signature(self.url, params)

    @staticmethod
    def headers(signature: str | None) -> dict[str, str]:
        h = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
        if signature is not None:
            h["X-Twilio-Signature"] = signature
        return h

    def new(self, at: float) -> Req:
        sid = "SM" + uuid.UUID(int=self.rng.getrandbits(128)).hex
        params = self.params(sid)
        body, headers = urlencode(params).encode(), self.headers(self.sign(params))
        self.valid[sid] = (body, headers)
        self.order.append(sid)
        return Req(at, "new", self.url, body, headers, sid)

    def dup(self, at: float) -> Req:
        # Half: the SID scheduled just before (usually still being processed: the race); half: an older one.
        sid = self.order[-1] if self.rng.random() < 0.5 else self.rng.choice(self.order)
        body, headers = self.valid[sid]
        return Req(at, "dup", self.url, body, headers, sid)

    def forged(self, at: float) -> Req:
        sid = "SM" + uuid.UUID(int=self.rng.getrandbits(128)).hex
        params = self.params(sid)
        how = self.bad_kinds % 3
        self.bad_kinds += 1
        if how == 0:  # signed with the wrong auth token
            signature = self.sign(params, token="not-the-" + self.secret)
        elif how == 1:  # a parameter changed after signing
            signature = self.sign(params)
            params = {**params, "Body": params["Body"] + " (and send me a refund)"}
        else:  # no signature at all
            signature = None
        self.bad.add(sid)
        return Req(at, "bad", self.url, urlencode(params).encode(), self.headers(signature), sid, expect=403)

    def trivial(self, at: float) -> Req:
        sid = "SM" + uuid.UUID(int=self.rng.getrandbits(128)).hex
        params = self.params(sid)
        return Req(at, "trivial", f"{self.base}/bench/trivial/", urlencode(params).encode(),
                   self.headers(self.sign(params)), "")

    def schedule(self, rate: float, duration: float, baseline_rate: float, offset: float = 0.0) -> list[Req]:
        """Webhooks at `rate`/s (75 % new, 20 % duplicate, 5 % bad signature), trivial requests at
        `baseline_rate`/s interleaved (half a period later), from `offset` s."""
        reqs: list[Req] = []
        for i in range(int(rate * duration)):
            at = offset + i / rate
            roll = self.rng.random()
            if roll < 0.05:
                reqs.append(self.forged(at))
            elif roll < 0.25 and self.order:
                reqs.append(self.dup(at))
            else:
                reqs.append(self.new(at))
        if baseline_rate > 0:
            reqs += [self.trivial(offset + (i + 0.5) / baseline_rate) for i in range(int(baseline_rate * duration))]
        reqs.sort(key=lambda r: r.at)
        return reqs


# --- the open-model generator ------------------------------------------------------------


@dataclass
class Result:
    kind: str
    sid: str
    status: int  # 0: no answer (connection error or timeout)
    latency_ms: float  # from the intended send time to the whole answer
    lag_ms: float  # how late the generator started the request
    expect: int
    error: str = ""
    twiml_ok: bool = True
    sent_at: float = 0.0  # seconds from the phase's start
    done_at: float = 0.0
    phase: int = 0


async def _fire(reqs: list[Req], max_in_flight: int) -> list[Result]:
    import aiohttp

    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    results: list[Result] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        start = loop.time() + 0.2

        async def one(req: Req) -> None:
            intended = start + req.at
            sent = loop.time()
            lag = (sent - intended) * 1000
            try:
                async with session.post(req.url, data=req.body, headers=req.headers, allow_redirects=False) as resp:
                    text = await resp.text()
                    status = resp.status
                now = loop.time()
                ok = status != 200 or "<Response" in text
                results.append(Result(req.kind, req.sid, status, (now - intended) * 1000, lag, req.expect, twiml_ok=ok,
                                      sent_at=sent - start, done_at=now - start))
            except (TimeoutError, aiohttp.ClientError) as exc:
                now = loop.time()
                results.append(Result(req.kind, req.sid, 0, (now - intended) * 1000, lag, req.expect,
                                      error=type(exc).__name__, sent_at=sent - start, done_at=now - start))

        tasks: set[asyncio.Task] = set()
        for req in reqs:
            delay = start + req.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= max_in_flight:  # the server is not keeping up: shed rather than exhaust PostgreSQL
                results.append(Result(req.kind, req.sid, 0, 0.0, 0.0, req.expect, error="shed"))
                continue
            task = asyncio.create_task(one(req))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    return results


def fire(reqs: list[Req], max_in_flight: int = 32) -> list[Result]:
    return asyncio.run(_fire(reqs, max_in_flight))


def summarize(results: list[Result], kinds: tuple[str, ...]) -> dict:
    rs = [r for r in results if r.kind in kinds]
    lat = [r.latency_ms for r in rs if r.status]  # answered; shed and failed requests are counted as unexpected
    statuses: dict[str, int] = {}
    for r in rs:
        key = str(r.status or r.error)
        statuses[key] = statuses.get(key, 0) + 1
    return {"n": len(rs), "p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99), "max": max(lat, default=None),
            "statuses": statuses, "unexpected": sum(1 for r in rs if r.status != r.expect or not r.twiml_ok),
            "lag_p99": _pct([r.lag_ms for r in rs], 99)}


# --- the bench -----------------------------------------------------------------------------


class Bench:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.rates = sorted(float(x) for x in harness.env_list("BENCH_TWILIO_RATES", "10,25,50"))
        self.baseline_share = harness.env_float("BENCH_TWILIO_BASELINE_SHARE", 1)
        self.duration = harness.env_float("BENCH_TWILIO_DURATION", 20)
        self.warmup = harness.env_float("BENCH_TWILIO_WARMUP", 3)
        self.max_in_flight = harness.env_int("BENCH_TWILIO_MAX_IN_FLIGHT", 40)
        self.phones = harness.env_int("BENCH_TWILIO_PHONES", 200)
        self.port = harness.free_port(BASE_PORT)
        self.stack = harness.Stack(
            "sms", database=harness.database_url("sms", "BENCH_TWILIO_DATABASE_URL"),
            redis=harness.redis_url("BENCH_TWILIO_REDIS_URL"),
            extra_env={"PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}"})
        self.server: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.phases = 0

    def prepare(self) -> dict:
        self.stack.prepare_database()
        info = json.loads(self.stack.python("-m", "bench.bench_twilio_webhook", "setup", timeout=120)
                          .strip().splitlines()[-1])
        self.stack.flush_redis()
        return info

    def start_server(self) -> None:
        self.server = self.stack.daphne(APP, self.port, self.out_dir / "twilio_server.log")

    def server_cpu(self) -> float:
        return cpu_seconds(self.server.pid)

    def stored(self, inbox_id: int, table: str = "conversations_message") -> dict[str, int]:
        """Rows per provider message id: messages, or (table="conversations_inbounddelivery") stored deliveries."""
        import psycopg

        with psycopg.connect(self.stack.db_url) as conn:
            rows = conn.execute(f"SELECT provider_message_id, count(*) FROM {table} WHERE inbox_id = %s "  # noqa: S608
                                "AND provider_message_id IS NOT NULL GROUP BY provider_message_id", [inbox_id]).fetchall()
        return dict(rows)

    def drain(self, inbox_id: int) -> dict:
        """Process the deliveries no worker processed during the steps, as the worker does (the task's code)."""
        return json.loads(self.stack.python("-m", "bench.bench_twilio_webhook", "drain", str(inbox_id), timeout=1800)
                          .strip().splitlines()[-1])

    def start_worker(self) -> None:
        """BENCH_TWILIO_WORKER=1: one Celery worker (one pool process) on the bench queue during the steps."""
        self.worker = self.stack.celery_worker(self.out_dir / "twilio_worker.log", concurrency=1,
                                               extra=("--without-gossip", "--without-mingle", "--without-heartbeat"))

    def phase(self, label: str, reqs: list[Req]) -> tuple[list[Result], dict]:
        cpu0, stat0, t0 = self.server_cpu(), proc_stat(), time.monotonic()
        results = fire(reqs, self.max_in_flight)
        self.phases += 1
        for r in results:
            r.phase = self.phases
        elapsed = time.monotonic() - t0
        info = {"label": label, "elapsed_s": elapsed, "server_cpu_s": self.server_cpu() - cpu0,
                "machine_busy_pct": busy_pct(stat0, proc_stat()), "load_after": load_avg()}
        return results, info


def exactly_once(traffic: Traffic, results: list[Result], stored: dict[str, int]) -> dict:
    acked = {r.sid for r in results if r.kind in ("new", "dup") and r.status == 200}
    sent_valid = set(traffic.valid)
    first_done: dict[tuple[int, str], float] = {}  # (phase, SID) -> when the first request for it was answered
    overlapping = 0
    for r in results:
        if r.kind == "new":
            first_done[(r.phase, r.sid)] = r.done_at
    for r in results:
        if r.kind == "dup" and r.error != "shed" and r.sent_at < first_done.get((r.phase, r.sid), -1.0):
            overlapping += 1
    return {
        "duplicates_sent": sum(1 for r in results if r.kind == "dup" and r.error != "shed"),
        "duplicates_in_flight_with_original": overlapping,
        "valid_sids": len(sent_valid),
        "acked_sids": len(acked),
        "stored_rows": sum(stored.values()),
        "stored_sids": len(stored),
        "acked_not_stored": len(acked - set(stored)),
        "stored_more_than_once": sum(1 for n in stored.values() if n > 1),
        "bad_signature_stored": len(traffic.bad & set(stored)),
        "stored_unexpected": len(set(stored) - sent_valid),
        "ok": bool(acked) and acked <= set(stored) and all(n == 1 for n in stored.values())
        and not (traffic.bad & set(stored)) and set(stored) <= sent_valid,
    }


def print_table(rows: list[tuple]) -> None:
    harness.print_rows(("case", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "statuses", "unexpected", "ratio p99"),
                       rows, left=(0, 6), indent=2)


def _row(name: str, s: dict, base_p99: float | None) -> tuple:
    ratio = f"{s['p99'] / base_p99:.2f}x" if base_p99 and s["p99"] is not None else "-"
    statuses = " ".join(f"{k}:{v}" for k, v in sorted(s["statuses"].items()))
    return (name, s["n"], _ms(s["p50"]), _ms(s["p95"]), _ms(s["p99"]), _ms(s["max"]), statuses, s["unexpected"], ratio)


def measure(bench: Bench, traffic: Traffic, rate: float) -> tuple[list[Result], dict]:
    reqs = traffic.schedule(rate, bench.duration, rate * bench.baseline_share)
    results, info = bench.phase(f"{rate:g}/s", reqs)
    webhook = summarize(results, ("new", "dup"))
    trivial = summarize(results, ("trivial",))
    ratio = webhook["p99"] / trivial["p99"] if webhook["p99"] and trivial["p99"] else None
    unexpected = sum(1 for r in results if r.status != r.expect or not r.twiml_ok)
    sustained = unexpected == 0 and (webhook["p99"] or 1e9) <= SUSTAINED_P99_MS
    info.update({"rate": rate, "baseline_rate": rate * bench.baseline_share, "requests": len(reqs), "webhook": webhook,
                 "trivial": trivial, **{f"webhook_{k}": summarize(results, (k,)) for k in ("new", "dup", "bad")},
                 "ratio_p99": ratio, "unexpected": unexpected, "sustained": sustained,
                 "target_met": sustained and ratio is not None and ratio <= TARGET_RATIO,
                 "generator_lag_p99_ms": _pct([r.lag_ms for r in results if r.error != "shed"], 99)})
    return results, info


def print_step(step: dict) -> None:
    base = step["trivial"]["p99"]
    print(f"\n{step['rate']:g} webhooks/s + {step['baseline_rate']:g} trivial/s interleaved, {step['requests']} requests "
          f"in {step['elapsed_s']:.1f} s (load average after: {step['load_after']})")
    print_table([
        _row("trivial view (baseline)", step["trivial"], None),
        _row("webhook, signed (new + duplicate)", step["webhook"], base),
        _row("  new MessageSid", step["webhook_new"], base),
        _row("  duplicate MessageSid", step["webhook_dup"], base),
        _row("  bad signature (403)", step["webhook_bad"], base),
    ])
    n = step["requests"]
    print(f"  server CPU {step['server_cpu_s']:.1f} s ({100 * step['server_cpu_s'] / step['elapsed_s']:.0f} % of a core, "
          f"{1000 * step['server_cpu_s'] / max(n, 1):.1f} ms per request on average); machine "
          f"{step['machine_busy_pct']:.0f} % busy; generator lag p99 {_ms(step['generator_lag_p99_ms'])} ms")
    ratio = step["ratio_p99"]
    print(f"  {'sustained' if step['sustained'] else 'NOT sustained'} (no unexpected answer and webhook p99 <= "
          f"{SUSTAINED_P99_MS:g} ms); webhook p99 / trivial p99 = {f'{ratio:.2f}x' if ratio else '-'} -> target "
          f"(<= {TARGET_RATIO:g}x, sustained) {'met' if step['target_met'] else 'NOT met'}")


def run(options=None) -> dict:
    t_begin = time.monotonic()
    bench = Bench(harness.results_dir())
    info = bench.prepare()
    rng = random.Random(SEED)
    phones = [f"+1415555{n:04d}" for n in rng.sample(range(10000), bench.phones)]
    bench.start_server()
    with_worker = os.getenv("BENCH_TWILIO_WORKER", "0") == "1"
    if with_worker:
        bench.start_worker()
    traffic = Traffic(base=f"http://127.0.0.1:{bench.port}", token=info["token"], secret=info["secret"],
                      account_sid=info["account_sid"], phones=phones, rng=rng)
    out: dict = {"inbox_id": info["inbox_id"], "rates": bench.rates, "baseline_share": bench.baseline_share,
                 "duration_s": bench.duration, "max_in_flight": bench.max_in_flight, "steps": []}
    all_results: list[Result] = []
    try:
        print(f"== daphne {APP} on 127.0.0.1:{bench.port} (one process), inbox {info['inbox_id']} (new for this "
              f"run), {bench.phones} senders, at most {bench.max_in_flight} requests in flight", flush=True)
        harness.wait_for_quiet("BENCH_TWILIO_MAX_LOAD", "BENCH_TWILIO_MAX_WAIT")
        out["load_before"] = load_avg()
        warm, _ = bench.phase("warm-up", traffic.schedule(bench.rates[0], bench.warmup, bench.rates[0]))
        all_results += warm
        for k, rate in enumerate(bench.rates):
            results, step = measure(bench, traffic, rate)
            all_results += results
            out["steps"].append(step)
            print_step(step)
            if not step["sustained"] and k + 1 < len(bench.rates):
                print(f"  (higher rates skipped: {', '.join(f'{r:g}/s' for r in bench.rates[k + 1:])})", flush=True)
                break
            time.sleep(1)
    finally:
        bench.stack.stop_all(timeout=10)
    deliveries = bench.stored(info["inbox_id"], "conversations_inbounddelivery")
    drained = bench.drain(info["inbox_id"])
    stored = bench.stored(info["inbox_id"])
    bench.stack.flush_redis()
    once = exactly_once(traffic, all_results, stored)
    once_deliveries = exactly_once(traffic, all_results, deliveries)
    out.update({"exactly_once": once, "exactly_once_deliveries": once_deliveries, "worker": with_worker,
                "drain": drained})

    steps = out["steps"]
    sustained = [s["rate"] for s in steps if s["sustained"]]
    met = [s["rate"] for s in steps if s["target_met"]]
    print(f"\nSummary (load average before {out['load_before']}, now {load_avg()}; {time.monotonic() - t_begin:.0f} s)")
    print(f"  {'rate':>6}  {'webhook p50':>11}  {'p95':>7}  {'p99':>7}  {'trivial p99':>11}  {'ratio':>6}  "
          f"{'unexpected':>10}  sustained  target")
    for s in steps:
        ratio = f"{s['ratio_p99']:.2f}x" if s["ratio_p99"] else "-"
        print(f"  {s['rate']:>4g}/s  {_ms(s['webhook']['p50']):>11}  {_ms(s['webhook']['p95']):>7}  "
              f"{_ms(s['webhook']['p99']):>7}  {_ms(s['trivial']['p99']):>11}  {ratio:>6}  {s['unexpected']:>10}  "
              f"{'yes' if s['sustained'] else 'no':>9}  {'met' if s['target_met'] else 'NOT met'}")
    print(f"  sustained: {', '.join(f'{r:g}/s' for r in sustained) or 'none'}; target met at: "
          f"{', '.join(f'{r:g}/s' for r in met) or 'none'}")
    print(f"  exactly once: {once['stored_rows']} rows for {once['acked_sids']} acknowledged SIDs "
          f"({once['valid_sids']} valid SIDs scheduled; {once['duplicates_sent']} duplicates, "
          f"{once['duplicates_in_flight_with_original']} of them sent while the original was still being processed), "
          f"{once['stored_more_than_once']} stored twice, "
          f"{once['acked_not_stored']} acknowledged but missing, {once['bad_signature_stored']} of {len(traffic.bad)} "
          f"bad-signature SIDs stored, {once['stored_unexpected']} unexpected: {'OK' if once['ok'] else 'FAILED'}")
    print(f"  stored before the 200 (inbound deliveries): {once_deliveries['stored_rows']} rows, "
          f"{once_deliveries['stored_more_than_once']} twice, {once_deliveries['acked_not_stored']} acknowledged but "
          f"missing, {once_deliveries['bad_signature_stored']} bad-signature: "
          f"{'OK' if once_deliveries['ok'] else 'FAILED'}; "
          f"{'a Celery worker (1 process) ran during the steps' if with_worker else 'no worker ran during the steps'}"
          f", {drained['processed']} left for the drain after them ({drained['seconds']:.1f} s, "
          f"{drained['cpu_ms_per_delivery']:.1f} ms CPU per delivery)")
    out.update({"sustained_rates": sustained, "target_met_rates": met})
    judged = [s for s in steps if s["sustained"]] or steps
    best = max(judged, key=lambda s: s["rate"]) if judged else None
    out["targets"] = [
        harness.target(f"webhook p99 <= {TARGET_RATIO:g}x trivial view p99 at a sustained rate", bool(met),
                       "; ".join(f"{s['rate']:g}/s: {_ms(s['webhook']['p99'])} ms"
                                 f" ({s['ratio_p99']:.2f}x)" if s["ratio_p99"] else f"{s['rate']:g}/s: -"
                                 for s in steps) or "no step",
                       f"trivial view p99 {_ms(best['trivial']['p99'])} ms at {best['rate']:g}/s" if best else ""),
        harness.target("exactly one stored message per SID, none for bad signatures", once["ok"],
                       f"{once['stored_rows']} rows for {once['acked_sids']} acknowledged SIDs, "
                       f"{once['stored_more_than_once']} twice, {once['bad_signature_stored']} bad-signature stored"),
    ]
    return out


# --- helpers ---------------------------------------------------------------------------------


def setup_inbox() -> None:
    """(In the bench environment) a new SMS inbox for this run; prints its token and auth token as JSON."""
    import secrets

    import django

    django.setup()
    from conversations.models import ChannelKind, Inbox

    account_sid = "AC" + secrets.token_hex(16)
    inbox = Inbox.objects.create(name=f"Bench SMS {time.strftime('%Y-%m-%d %H:%M:%S')}", kind=ChannelKind.SMS,
                                 secret=secrets.token_hex(16),
                                 settings={"account_sid": account_sid, "from_number": OUR_NUMBER})
    print(json.dumps({"inbox_id": inbox.id, "token": inbox.public_token, "secret": inbox.secret,
                      "account_sid": account_sid}))


def drain_inbox(inbox_id: int) -> None:
    """(In the bench environment) process the inbox's unprocessed deliveries with the worker's task code, in order;
    prints how many, how long and the CPU per delivery as JSON."""
    import django

    django.setup()
    from conversations.models import InboundDelivery
    from conversations.tasks import process_inbound_delivery

    ids = list(InboundDelivery.objects.filter(inbox_id=inbox_id, processed_at__isnull=True).order_by("id")
               .values_list("id", flat=True))
    t0, c0 = time.monotonic(), time.process_time()
    for delivery_id in ids:
        process_inbound_delivery(delivery_id)
    print(json.dumps({"processed": len(ids), "seconds": time.monotonic() - t0,
                      "cpu_ms_per_delivery": 1000 * (time.process_time() - c0) / max(len(ids), 1)}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] == ["setup"]:
        setup_inbox()
    elif sys.argv[1:2] == ["drain"]:
        drain_inbox(int(sys.argv[2]))
    else:
        run()
