"""What every benchmark shares: databases, Redis, processes, ports, percentiles, tables, targets, results.

Benchmarks are not tests: each prints its figures beside a baseline measured in the same run and a
target verdict, and asserts nothing. See bench/README.md for the method.

* **Configuration.** ``BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/omnichannel_bench``)
  names the console benchmark's database; the others use a database of their own beside it, named
  ``<that name>_<suffix>`` (``omnichannel_bench_sla``, ...), or the URL in their own variable.
  ``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/7``) is the Redis database every benchmark uses;
  the benchmarks that start workers or servers flush it first.
* **Timing in-process.** A benchmark is a list of :class:`Case` objects timed *interleaved*
  (A, B, C, A, B, C, ...) after a warm-up, so a baseline and what is judged against it see the same
  machine state. Samples are wall-clock ms of one call.
* **Processes.** :class:`Stack` is a benchmark's own database and Redis, the environment its child
  processes get (daphne, Celery workers, probes), and the processes it started (stopped at the end).
* **Results.** :func:`target` records a target and whether it was met; ``bench/run.py`` prints every
  target at the end and writes ``bench/results/<name>-<UTC time>.json``; logs, plans and per-run files go
  to ``bench/results/<UTC time>/`` (:func:`results_dir`). Both are git-ignored.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/omnichannel_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"


# --- configuration -----------------------------------------------------------------------------------


def env_list(name: str, default: str) -> list[str]:
    return [x.strip() for x in (os.getenv(name) or default).split(",") if x.strip()]


def env_float(name: str, default: float) -> float:
    value = os.getenv(name)
    return float(value) if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    value = os.getenv(name)
    return int(value) if value not in (None, "") else default


def database_url(suffix: str = "", override: str | None = None) -> str:
    """The bench database (``suffix`` empty) or a benchmark's own one beside it; ``override`` names a variable."""
    if override and os.getenv(override):
        return os.environ[override]
    base = os.getenv("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL
    if not suffix:
        return base
    parsed = urlparse(base)
    return parsed._replace(path=f"{parsed.path.rstrip('/')}_{suffix}").geturl()


def redis_url(override: str | None = None) -> str:
    if override and os.getenv(override):
        return os.environ[override]
    return os.getenv("BENCH_REDIS_URL") or DEFAULT_REDIS_URL


def ensure_database(url: str, *, drop: bool = False) -> bool:
    """Create the database if missing (dropped first with ``drop``); True when it was created.

    Refuses a database whose name does not contain ``bench``: seeding and resets delete rows.
    """
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"benchmarks need a database whose name contains 'bench', not {name!r}")
    with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and drop:
            print(f"== dropping database {name} (--reseed)", flush=True)
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            print(f"== creating database {name}", flush=True)
            conn.execute(f'CREATE DATABASE "{name}"')
    return not exists


def setup_django() -> None:
    """Django set up in a benchmark's process, refusing a database that is not PostgreSQL or whose name lacks
    ``bench`` (seeding and resets delete rows), and DEBUG (its query log would be measured too)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
    import django

    django.setup()
    from django.conf import settings

    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql") or "bench" not in str(db["NAME"]):
        raise SystemExit(f"refusing database {db['NAME']!r}: benchmarks need a PostgreSQL database whose name "
                         "contains 'bench'")
    if settings.DEBUG:
        raise SystemExit("DEBUG must be False while measuring (no query log); unset DEBUG")


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# --- the machine -------------------------------------------------------------------------------------


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_for_quiet(variable: str, wait_variable: str | None = None) -> None:
    """With ``<variable>=1.5`` set, wait (up to ``<wait_variable>`` s, default 600) for a load average below it."""
    limit = env_float(variable, 0)
    deadline = time.monotonic() + (env_float(wait_variable, 600) if wait_variable else 600)
    while limit and os.getloadavg()[0] > limit and time.monotonic() < deadline:
        print(f"== load average {load_avg()} > {limit:g}: waiting (up to 10 min) for a quieter machine", flush=True)
        time.sleep(30)


def proc_stat() -> list[int]:
    """The machine's CPU counters (/proc/stat's first line); two readings give :func:`busy_pct`."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def busy_pct(before: list[int], after: list[int]) -> float:
    """How busy the whole machine was between two readings, % of all cores (other sessions included)."""
    delta = [b - a for a, b in zip(before, after, strict=False)]
    idle = delta[3] + (delta[4] if len(delta) > 4 else 0)
    return 100.0 * (sum(delta) - idle) / max(sum(delta), 1)


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of one process (0 when gone); ``reaped`` adds its exited children's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (a load generator's own cost)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def free_port(preferred: int = 0) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- a benchmark's database, Redis and processes -----------------------------------------------------


class Stack:
    """A benchmark's own database and Redis db, its child processes' environment, and those processes.

    ``env()`` is the environment of every child (``manage.py migrate``, daphne, Celery, probes): the
    product's settings with DEBUG off, the bench database and Redis, a prefix of its own for cache and
    channel-layer keys, a Celery queue of its own, and a secret key for loopback only.
    """

    def __init__(self, name: str, *, database: str, redis: str, queue: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.db_url = database
        self.redis_url = redis
        self.queue = queue or f"omnichannel-bench-{name}"
        self.extra_env = dict(extra_env or {})
        self.procs: list[subprocess.Popen] = []

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("DEBUG", "OMNICHANNEL_TESTING", "DJANGO_SETTINGS_MODULE", "CELERY_TASK_ALWAYS_EAGER"):
            env.pop(var, None)
        env.update({
            "DATABASE_URL": self.db_url, "REDIS_URL": self.redis_url,
            "SECRET_KEY": f"bench-{self.name}-secret-key-not-for-production",  # loopback only
            "CHANNEL_LAYER_PREFIX": f"omnibench{self.name}", "CACHE_PREFIX": f"omnibench{self.name}",
            "CELERY_QUEUE": self.queue, "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "omnichannel.settings",
        })
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def python(self, *args: str, timeout: float = 900, echo: bool = False, env: dict | None = None) -> str:
        """Run ``.venv/bin/python args`` in this stack's environment; its stdout (printed with ``echo``)."""
        done = subprocess.run([PY, *args], cwd=ROOT, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode:
            raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-5000:]}")
        if echo and done.stdout:
            print(done.stdout, end="", flush=True)
        return done.stdout

    def prepare_database(self, *, reseed: bool = False) -> None:
        """Create (``reseed``: drop and re-create) and migrate this stack's database."""
        ensure_database(self.db_url, drop=reseed)
        print(f"== migrate {urlparse(self.db_url).path.lstrip('/')}", flush=True)
        self.python("manage.py", "migrate", "--no-input", "-v0")

    def flush_redis(self) -> None:
        flush_redis(self.redis_url)

    def spawn(self, cmd: list[str], *, env: dict | None = None, log: Path | None = None, **kw) -> subprocess.Popen:
        """Start a process in its own process group (stopped by :meth:`stop_all`); output to ``log``."""
        if log is not None:
            out = open(log, "ab")  # noqa: SIM115 - the child keeps it; closed below in this process
            kw.setdefault("stdout", out)
            kw.setdefault("stderr", out)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env(), start_new_session=True, **kw)
        if log is not None:
            out.close()
        self.procs.append(proc)
        return proc

    def celery_worker(self, log: Path, *, concurrency: int, queue: str | None = None, name: str = "worker",
                      extra: tuple[str, ...] = (), env: dict | None = None) -> subprocess.Popen:
        """``celery -A omnichannel worker`` (prefork, as docker-compose runs it), once it logs ``ready``."""
        log.write_text("")
        proc = self.spawn([PY, "-m", "celery", "-A", "omnichannel", "worker", "-l", "info", "--concurrency",
                           str(concurrency), "-P", "prefork", "-Q", queue or self.queue,
                           "-n", f"bench-{self.name}-{name}-{os.getpid()}@%h", "--logfile", str(log), *extra],
                          env=env)
        wait_for_log(proc, log, " ready.", 60, f"celery {name}")
        return proc

    def daphne(self, app: str, port: int, log: Path, *, env: dict | None = None) -> subprocess.Popen:
        """``daphne app`` on 127.0.0.1:port, once it accepts connections."""
        with open(log, "ab") as f:
            f.write(f"\n=== daphne {app} on port {port}\n".encode())
        proc = self.spawn([PY, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port), app], env=env, log=log)
        wait_for_port(proc, port, 60, log)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL to its process group after ``timeout`` s."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:  # still working through a backlog: it has been measured already
                os.killpg(proc.pid, signal.SIGKILL)  # its own process group (start_new_session)
                proc.wait(10)

    def stop_all(self, timeout: float = 20) -> None:
        for proc in reversed(self.procs):
            self.stop(proc, timeout)
        self.procs = [p for p in self.procs if p.poll() is None]


def wait_for_log(proc: subprocess.Popen, log: Path, needle: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}; see {log}")
        if log.exists() and needle in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"{what}: no {needle!r} after {timeout:g} s; see {log}")


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            Stack.stop(proc)
            raise RuntimeError(f"nothing listening on port {port}; see {log}")
        time.sleep(0.2)


# --- percentiles and tables ----------------------------------------------------------------------------


def percentile(sorted_values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), over values sorted ascending."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def pct(values: list[float], p: float) -> float:
    """:func:`percentile` of unsorted values."""
    return percentile(sorted(values), p)


def summary(values: list[float]) -> dict:
    """n, min, p50, p95, p99, max of the values ({"n": 0} when there are none)."""
    if not values:
        return {"n": 0}
    s = sorted(values)
    return {"n": len(s), "min": s[0], "p50": percentile(s, 50), "p95": percentile(s, 95),
            "p99": percentile(s, 99), "max": s[-1]}


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def print_rows(header: tuple, rows: list[tuple], *, left: tuple[int, ...] = (0,), title: str = "",
               indent: int = 0) -> None:
    """A plain-text table: columns in ``left`` left-aligned, the others right-aligned."""
    table = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    if title:
        print(f"\n{title}")
    pad = " " * indent
    for i, r in enumerate(table):
        print(pad + "  ".join(c.ljust(widths[j]) if j in left else c.rjust(widths[j]) for j, c in enumerate(r))
              .rstrip())
        if i == 0:
            print(pad + "  ".join("-" * w for w in widths))


# --- in-process cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    """One timed callable. ``baseline``: the case it is judged against; ``part``: a component shown with its
    ratio but no target; ``setup``/``teardown`` run untimed around each call; a ``fn`` returning a float
    reports its own elapsed ms (e.g. up to a point inside the call)."""

    name: str
    fn: Callable[[], object]
    baseline: str | None = None
    note: str = ""
    part: bool = False
    setup: Callable[[], object] | None = None
    teardown: Callable[[], object] | None = None
    rows: int | None = None
    proposal: bool = False
    samples: list[float] = field(default_factory=list)  # ms
    queries: int | None = None  # SQL statements per call, counted once outside the timed runs

    def once(self) -> float:
        if self.setup:
            self.setup()
        start = time.perf_counter_ns()
        own = self.fn()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if self.teardown:
            self.teardown()
        return own if isinstance(own, float) else elapsed

    def stats(self) -> dict:
        return summary(self.samples)


class QueryCounter:
    """Records the SQL (and params) Django's default connection executes; works with DEBUG=False."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append((sql, params))
        return execute(sql, params, many, context)


def capture_queries(fn: Callable[[], object]) -> list[tuple[str, object]]:
    from django.db import connection

    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        fn()
    return counter.statements


def run_interleaved(cases: list[Case], *, iterations: int, warmup: int, count_queries: bool = False) -> None:
    """``warmup`` untimed rounds, then ``iterations`` timed rounds of every case in turn."""
    if count_queries:
        for case in cases:
            if case.setup:
                case.setup()
            case.queries = len(capture_queries(case.fn))
            if case.teardown:
                case.teardown()
    for _ in range(warmup):
        for case in cases:
            case.once()
    for _ in range(iterations):
        for case in cases:
            case.samples.append(case.once())


def print_cases(title: str, cases: list[Case], *, judge: str = "p95",
                verdict: Callable[[Case, Case], str] | None = None) -> list[dict]:
    """The cases' table: p50/p95/p99/max ms, statements, the ``judge`` percentile's ratio to the baseline,
    and ``verdict(case, baseline_case)`` (e.g. "met" / "MISSED (...)") for judged cases."""
    by_name = {c.name: c for c in cases}
    rows, out = [], []
    for case in cases:
        s = case.stats()
        base = by_name.get(case.baseline) if case.baseline else None
        ratio = s[judge] / base.stats()[judge] if base else None
        if base is None:
            target = "baseline"
        elif case.part:
            target = "(part)"
        else:
            target = verdict(case, base) if verdict else ""
            if case.proposal:
                target = f"(proposal: {target})"
        rows.append((case.name, "-" if case.queries is None else case.queries,
                     "-" if case.rows is None else case.rows, fmt(s["p50"], 2), fmt(s["p95"], 2),
                     fmt(s["p99"], 2), fmt(s["max"], 2), case.baseline or "-",
                     "-" if ratio is None else f"{ratio:.1f}x", target))
        out.append({"case": case.name, "baseline": case.baseline, "queries": case.queries, "rows": case.rows,
                    "note": case.note, "part": case.part, "proposal": case.proposal,
                    **{k: round(v, 4) for k, v in s.items()}, f"{judge}_ratio": ratio, "target": target})
    print_rows(("case", "queries", "rows", "p50 ms", "p95 ms", "p99 ms", "max ms", "baseline",
                f"{judge}/base", "target"), rows, left=(0, 7, 9), title=title)
    return out


# --- targets and results ---------------------------------------------------------------------------------


def target(name: str, met: bool, figure: str, baseline: str = "") -> dict:
    """One target of a benchmark: what it asks, whether it was met, the figure and its same-run baseline."""
    return {"target": name, "met": bool(met), "figure": figure, "baseline": baseline}


def print_targets(title: str, targets: list[dict]) -> None:
    print_rows(("target", "figure", "same-run baseline", "verdict"),
               [(t["target"], t["figure"], t["baseline"] or "-", "met" if t["met"] else "MISSED") for t in targets],
               left=(0, 1, 2, 3), title=title)


_STAMP: str | None = None


def run_stamp() -> str:
    """This run's UTC time, ``BENCH_RUN_ID`` if set (child processes get the parent's)."""
    global _STAMP
    if _STAMP is None:
        _STAMP = os.environ.get("BENCH_RUN_ID") or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        os.environ["BENCH_RUN_ID"] = _STAMP
    return _STAMP


def results_dir() -> Path:
    """bench/results/<UTC time>/: this run's logs, plans and per-step files."""
    path = RESULTS_DIR / run_stamp()
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_result(name: str, data: object) -> Path:
    """bench/results/<name>-<UTC time>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{run_stamp()}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def save_json(name: str, data: object) -> Path:
    """bench/results/<UTC time>/<name>: a per-run file (samples, per-step data)."""
    path = results_dir() / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def save_text(name: str, text: str) -> Path:
    path = results_dir() / name
    path.write_text(text)
    return path


# --- EXPLAIN -----------------------------------------------------------------------------------------------


def explain(sql: str, params: object = None) -> str:
    from django.db import connection

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
