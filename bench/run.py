"""Run the benchmarks: every bench/bench_*.py, or the ones named on the command line.

    .venv/bin/python bench/run.py [--iterations N] [--warmup N] [--reseed] [console sla ...]

Normally started by scripts/bench.sh. Creates and migrates the bench database (``BENCH_DATABASE_URL``,
default omnichannel_bench; Redis ``BENCH_REDIS_URL``, default db 7), then runs each module's
``run(options) -> dict``: the dict's ``targets`` (made with ``harness.target``) are printed at the end,
and the whole dict is written to bench/results/<name>-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # import the project (and this package as `bench`), not bench/ as top level

ALIASES = {"twilio": "twilio_webhook"}  # short names accepted on the command line


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})")
    parser.add_argument("--iterations", type=int, default=200, help="timed rounds per case (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per case first (default 20)")
    parser.add_argument("--reseed", action="store_true", help="drop the benchmarks' data and seed it again")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    options = parser.parse_args(argv)
    if options.list:
        print("\n".join(available()))
        return 0
    names = [n.removeprefix("bench_").removesuffix(".py") for n in options.names] or available()
    names = [ALIASES.get(n, n) for n in names]
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available())}")

    from bench import harness

    os.environ["DATABASE_URL"] = harness.database_url()
    os.environ["REDIS_URL"] = harness.redis_url()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
    os.environ.setdefault("CACHE_PREFIX", "omnibench")
    os.environ.setdefault("CHANNEL_LAYER_PREFIX", "omnibench")
    os.environ.setdefault("CELERY_QUEUE", "omnichannel-bench")
    os.environ.setdefault("SECRET_KEY", "bench-in-process-secret-key-not-for-production")  # noqa: S105
    harness.ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if settings.DEBUG:
        raise SystemExit("DEBUG must be False while measuring (no query log); unset DEBUG")
    call_command("migrate", interactive=False, verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), current_setting('shared_buffers'), current_setting('work_mem'), "
                       "current_setting('autovacuum')")
        pg_version, shared_buffers, work_mem, autovacuum = cursor.fetchone()
    machine = {"python": platform.python_version(), "django": django.get_version(), "cpus": os.cpu_count(),
               "postgresql": pg_version.split(" on ")[0], "shared_buffers": shared_buffers, "work_mem": work_mem,
               "autovacuum": autovacuum, "host": platform.node()}
    print(f"== python {machine['python']}, django {machine['django']}, {machine['cpus']} cpus, DEBUG off")
    print(f"== {machine['postgresql']}, shared_buffers={shared_buffers}, work_mem={work_mem}, "
          f"autovacuum={autovacuum}; Redis {harness.redis_url()}")
    print(f"== load average {harness.load_avg()} (other processes on these cores inflate the figures)")
    print(f"== {options.iterations} timed rounds after {options.warmup} warm-up calls per in-process case; "
          f"logs in {harness.results_dir().relative_to(ROOT)}")

    verdicts: dict[str, list[dict]] = {}
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"\n#### {name}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        started, load_before = time.time(), harness.load_avg()
        result = module.run(options) or {}
        verdicts[name] = result.get("targets", [])
        harness.print_targets(f"{name}: targets", verdicts[name])
        path = harness.save_result(name, {
            "benchmark": name, "run": harness.run_stamp(), "seconds": round(time.time() - started, 1),
            "load_before": load_before, "load_after": harness.load_avg(), "machine": machine,
            "options": {"iterations": options.iterations, "warmup": options.warmup}, **result})
        print(f"== {path.relative_to(ROOT)}", flush=True)
    print(f"\n== load average at the end {harness.load_avg()}")
    if len(verdicts) > 1:
        harness.print_targets("all targets", [{**t, "target": f"{n}: {t['target']}"}
                                              for n, ts in verdicts.items() for t in ts])
    return 0


if __name__ == "__main__":
    sys.exit(main())
