.PHONY: run test bench lint
run:      ## install, migrate, demo data, start web + worker + beat (embedded PostgreSQL + Redis)
	scripts/run.sh
test:     ## install and run the whole test suite (embedded PostgreSQL + Redis, chromium)
	scripts/test.sh
bench:    ## run the benchmarks against PostgreSQL
	scripts/bench.sh
lint:
	.venv/bin/ruff check .
