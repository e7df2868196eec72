#!/usr/bin/env bash
# The README's first command: install everything, migrate, load demo data and start
# web + Celery worker + beat on embedded defaults (embedded PostgreSQL + Redis under var/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bootstrap_python
exec .venv/bin/python manage.py serve "$@"
