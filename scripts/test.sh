#!/usr/bin/env bash
# The README's second command: install everything and run the whole test suite against PostgreSQL and Redis,
# with Debian's chromium for the browser tests. Unless TEST_DATABASE_URL / TEST_REDIS_URL name other servers,
# both are embedded (omnichannel/embedded.py): PostgreSQL in var/test-postgres, Redis on var/test-redis.sock,
# started (or reused) here and stopped when this script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python
bootstrap_chromium

embedded_args=()
[ -n "${TEST_DATABASE_URL:-}" ] || embedded_args+=(--postgres var/test-postgres --database omnichannel --test)
[ -n "${TEST_REDIS_URL:-}" ] || embedded_args+=(--redis var/test-redis.sock)
if [ ${#embedded_args[@]} -gt 0 ]; then
  stop_args=()
  [ -n "${TEST_DATABASE_URL:-}" ] || stop_args+=(--postgres var/test-postgres)
  [ -n "${TEST_REDIS_URL:-}" ] || stop_args+=(--redis var/test-redis.sock)
  trap '.venv/bin/python -m omnichannel.embedded stop "${stop_args[@]}"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  echo "== embedded servers"
  eval "$(.venv/bin/python -m omnichannel.embedded start "${embedded_args[@]}")"
fi
export DATABASE_URL="${TEST_DATABASE_URL:-$DATABASE_URL}"
export REDIS_URL="${TEST_REDIS_URL:-$REDIS_URL}"
export OMNICHANNEL_TESTING=True
export CELERY_QUEUE=omnichannel-test
export OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS=127.0.0.1,localhost

echo "== ruff"
.venv/bin/ruff check .
echo "== the import contract (docs/architecture.md)"
.venv/bin/lint-imports
echo "== migrations are complete"
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
echo "== pytest"
.venv/bin/python -m pytest "$@"
