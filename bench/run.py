"""Run the benchmarks: every bench/bench_*.py, or the ones named on the command line.

    .venv/bin/python bench/run.py [--iterations N] [--warmup N] [--reseed] [console ...]

Normally started by scripts/bench.sh, which sets up the environment (PostgreSQL database
omnichannel_bench, Redis db 7) and migrates. Each module defines ``run(options) -> list[dict]``;
the rows of every module are also written to bench/results/<run id>/summary.json.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
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
    parser.add_argument("--reseed", action="store_true", help="flush the bench database and seed it again")
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

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from bench import harness

    if settings.DEBUG:
        raise SystemExit("DEBUG must be False while measuring (no query log); unset DEBUG")
    if connection.vendor != "postgresql":
        raise SystemExit("benchmarks run on PostgreSQL: set DATABASE_URL (scripts/bench.sh does)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), current_setting('shared_buffers'), current_setting('work_mem')")
        pg_version, shared_buffers, work_mem = cursor.fetchone()
    print(f"== python {platform.python_version()}, django {django.get_version()}, {os.cpu_count()} cpus, "
          f"DEBUG={settings.DEBUG}")
    print(f"== {pg_version.split(' on ')[0]}, database {settings.DATABASES['default']['NAME']}, "
          f"shared_buffers={shared_buffers}, work_mem={work_mem}")
    print(f"== load average {_load()} (other processes on these cores inflate the figures)")
    print(f"== {options.iterations} timed rounds after {options.warmup} warm-up calls per case; "
          f"results in {harness.results_dir().relative_to(ROOT)}")

    summary = {}
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"\n#### {name}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        summary[name] = module.run(options)
    print(f"\n== load average at the end {_load()}")
    harness.save_json("summary.json", summary)
    return 0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
