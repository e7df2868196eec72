#!/usr/bin/env bash
# Run the benchmarks (bench/README.md) against PostgreSQL and Redis:
#   scripts/bench.sh                  every bench/bench_*.py
#   scripts/bench.sh console          only bench/bench_console.py
#   scripts/bench.sh widget           only bench/bench_widget.py (websocket latency; BENCH_WIDGET_* knobs)
#   scripts/bench.sh sla              only bench/bench_sla.py (SLA sweep and lateness; BENCH_SLA_* knobs)
#   scripts/bench.sh routing          only bench/bench_routing.py (routing latency and routed/s; BENCH_ROUTING_* knobs)
#   scripts/bench.sh twilio           only bench/bench_twilio_webhook.py (signed SMS webhook ingest; BENCH_TWILIO_* knobs)
#   scripts/bench.sh --iterations 500 --warmup 50 --reseed
# The data set is seeded once into the omnichannel_bench database and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python
ensure_services

# Packages only the benchmarks use (the websocket load generator), outside pyproject's extras.
if [ -f bench/requirements.txt ] && { [ ! -f .venv/.bench-installed ] || [ bench/requirements.txt -nt .venv/.bench-installed ]; }; then
  echo "== installing bench/requirements.txt"
  .venv/bin/pip install -q -c constraints.txt -r bench/requirements.txt
  touch .venv/.bench-installed
fi
# bench_widget holds 1,000+ sockets on each side of loopback: raise the open-files limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

export DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/omnichannel_bench}"
export REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/7}"
export OMNICHANNEL_TESTING=True
export DJANGO_SETTINGS_MODULE=omnichannel.settings
export CACHE_PREFIX=omnibench CHANNEL_LAYER_PREFIX=omnibench CELERY_QUEUE=omnichannel-bench
unset DEBUG  # measured with DEBUG off (no query log); bench/run.py refuses DEBUG=True

db_name="${DATABASE_URL##*/}"
db_name="${db_name%%\?*}"
db_server="${DATABASE_URL%/*}/postgres"
if ! psql "$db_server" -Atc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
  echo "== creating database $db_name"
  psql "$db_server" -qc "CREATE DATABASE \"$db_name\""
fi

echo "== migrate"
.venv/bin/python manage.py migrate --no-input -v0
exec .venv/bin/python bench/run.py "$@"
