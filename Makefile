# clusternet.node: one entry point for setup, tests, the lab and the benchmarks.
# Every target installs what it needs itself (apt and pip), so each works on a
# fresh Debian 12 machine as root.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
APT_PACKAGES := ipset iptables nftables conntrack iproute2 python3 python3-pyroute2 git \
	podman runc catatonit debootstrap uidmap shellcheck chromium fonts-dejavu-core
# dot: make docs draws the user guide's diagrams from their text (sphinx.ext.graphviz).
APT_PACKAGES += graphviz
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup apt venv lock collections cores test check unit integration lint molecule build docs bench bench-fleet lab lab-down clean

help:
	@echo "make lab        converge a podman lab of nodes from inventories/lab and check it"
	@echo "make test       run every test (unit, integration, lint gates, docsite, molecule, build)"
	@echo "make docs       build the HTML docsite into build/docs/html (antsibull-docs + Sphinx, offline)"
	@echo "make check      the edit loop: unit tests on fakes, ruff, changelog lint (no root, no kernel)"
	@echo "make lock       regenerate requirements/*.lock (every pip install reads one, with hashes)"
	@echo "make unit | integration | lint | molecule | build | bench | bench-fleet | fuzz | lab-down | clean"

setup: apt venv collections cores

# Install only the Debian packages the machine lacks.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.stamp

# containers.podman (the lab's and Molecule's connection plugin) without Galaxy; idempotent.
collections: venv
	@bash lab/collections.sh $(VENV)

# One venv per other ansible-core major the collection claims (tests/lint/cores.py); idempotent.
cores: venv
	@$(PY) tests/lint/cores.py

# Every pip install reads a lock with hashes (requirements/*.lock): a fresh machine gets exactly
# the versions of the last green run. The venv is rebuilt whole when its lock changes.
$(VENV)/.stamp: requirements/dev.lock
	python3 -m venv --clear $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.lock
	touch $@

# Regenerate every lock on purpose (uv's resolver, PyPI as of LOCK_DATE, default now); then make test.
lock:
	python3 requirements/lock.py

# The one test command: the README and .ci/run call exactly this.
test: setup
	$(PYTEST) tests

# The edit loop: no root, no kernel, no network (unit tests on fakes, ruff, changelog lint).
check: venv
	$(PYTEST) -q tests/unit
	$(VENV)/bin/ruff check plugins tests bench requirements
	$(VENV)/bin/antsibull-changelog lint

unit: venv
	$(PYTEST) tests/unit

integration: setup
	$(PYTEST) tests/integration

lint: setup
	$(PYTEST) tests/lint

molecule: setup
	$(PYTEST) tests/molecule

build: venv
	$(PYTEST) tests/lint/test_build.py

# The HTML docsite, offline (docs/build.py); tests/docs opens it in headless Chromium.
docs: venv
	$(PY) docs/build.py

# The property test of tests/property for longer, with a new seed each time (printed first):
# FUZZ_SECONDS of new examples per engine, all four at once.
FUZZ_SECONDS ?= 1800
.PHONY: fuzz
fuzz: setup
	CN_PROPERTY_SEED=$${CN_PROPERTY_SEED:-random} CN_PROPERTY_EXAMPLES=$${CN_PROPERTY_EXAMPLES:-1000000} \
	CN_PROPERTY_SECONDS=$(FUZZ_SECONDS) CN_PROPERTY_SHRINK_SECONDS=300 $(PYTEST) -s tests/property

# Every bench/bench_*.py; the fleet benchmark's table comes last (about an hour: intents of
# 3 to 10,000 nodes). FLEET_ARGS for bench-fleet alone, e.g. FLEET_ARGS=--quick or --strict.
bench: setup
	$(PY) bench/run.py

bench-fleet: setup
	$(PY) bench/bench_fleet.py $(FLEET_ARGS)

lab: setup
	bash lab/lab.sh up

lab-down:
	bash lab/lab.sh down

clean: lab-down
	rm -rf $(VENV) build tests/output
