#!/usr/bin/env bash
# Run the benchmarks (bench/README.md):
#   scripts/bench.sh                       every bench/bench_*.py
#   scripts/bench.sh console|sla|routing|twilio|widget ...   only those
#   scripts/bench.sh --iterations 50 --warmup 10 console      fewer in-process rounds (default 200 / 20)
#   scripts/bench.sh --reseed routing      drop the benchmark's data and seed it again
#   scripts/bench.sh --list
# Each benchmark's own knobs (BENCH_<NAME>_*) are listed in its module docstring and in bench/README.md.
# Databases: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/omnichannel_bench; the other
# benchmarks use <that>_sla, _routing, _ws, _sms); Redis: BENCH_REDIS_URL (default redis://127.0.0.1:6379/7).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
# An existing .venv is used as it is (it may be shared with other checkouts): install only when it is missing.
[ -x .venv/bin/python ] || bootstrap_python
ensure_services

# Packages only the benchmarks use (the websocket load generator), outside pyproject's extras.
if ! .venv/bin/python -c "import websockets" 2>/dev/null; then
  echo "== installing bench/requirements.txt"
  .venv/bin/pip install -q -c constraints.txt -r bench/requirements.txt
fi
# bench_widget holds 1,000+ sockets on each side of loopback: raise the open-files limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

export OMNICHANNEL_TESTING=True
unset DEBUG  # measured with DEBUG off (no query log); bench/run.py refuses DEBUG=True
exec .venv/bin/python bench/run.py "$@"
