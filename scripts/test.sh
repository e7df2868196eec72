#!/usr/bin/env bash
# The README's second command: install everything and run the whole test suite
# against real PostgreSQL and Redis, with Debian's chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python
bootstrap_chromium
ensure_services

export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/omnichannel}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/5}"
export OMNICHANNEL_TESTING=True
export CELERY_QUEUE=omnichannel-test
export OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS=127.0.0.1,localhost

# The suite creates its own test database; this one only serves the migrations check below.
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='omnichannel'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE omnichannel" || true

echo "== ruff"
.venv/bin/ruff check .
echo "== the import contract (docs/architecture.md)"
.venv/bin/lint-imports
echo "== migrations are complete"
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
