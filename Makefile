# gpuscale: `make demo` to try it, `make test` for everything CI runs.
SHELL := /bin/bash
CARGO ?= cargo
DEMO_DURATION ?=

.PHONY: all deps build release test lint fmt demo bench clean

all: build

deps:
	@scripts/ensure-deps.sh

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --workspace --release --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Everything CI runs: lint, build, unit + integration + end-to-end tests against real
# Prometheus/promtool, and the manifest checks.
test: deps lint build
	$(CARGO) test --workspace --locked
	@scripts/check-images.sh
	@scripts/check-manifests.sh

fmt:
	$(CARGO) fmt --all

# Exporter on a simulated 4-GPU node whose load follows a real trace, scraped by a real
# local Prometheus; prints live series. DEMO_DURATION=N stops after N seconds.
demo: deps release
	@DEMO_DURATION="$(DEMO_DURATION)" scripts/demo.sh

bench: deps release
	@scripts/bench-exporter.sh
	@command -v wrk >/dev/null || { echo "installing wrk for the adapter benchmark"; apt-get install -y -qq wrk >/dev/null; }
	@scripts/bench-adapter.sh

clean:
	$(CARGO) clean
	rm -rf .demo
