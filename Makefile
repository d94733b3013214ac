# whisper-service: `make run` serves the embedded model, `make test` runs every check.
# Both create or reuse the virtualenv in .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
# The locks pin torch's CPU build (2.13.0+cpu), which is not on PyPI: it lies in
# /opt/wheels on these machines, and comes from PyTorch's CPU index elsewhere (as in
# the image's build).
PIP_FLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu)
PYTEST_ARGS ?=
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint typecheck pytest install install-dev tools emulators lock audit render docs bench clean image

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# Every package comes from a lock, pinned and hash-checked: the service's from the
# image's (requirements_secure.txt), the tests' from requirements_dev.txt, the same
# versions plus the dev tools; so the suite tests what ships. pyproject.toml states the
# ranges, `make lock` resolves both locks from it, and a test checks that they agree.
# Stamps re-run the install whenever pyproject.toml or a lock changes.
$(VENV)/.installed-run: pyproject.toml dependencies/requirements_secure.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps $(PIP_FLAGS) -r dependencies/requirements_secure.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml dependencies/requirements_dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps $(PIP_FLAGS) -r dependencies/requirements_dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

# Debian's packages the tests use: prometheus (promtool, prometheus) for the monitoring
# tests, chromium for the live page's browser test (driven by playwright, which then
# downloads no browser of its own). Installed once, where missing.
tools:
	@missing=""; \
	{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

run: install
	PORT=$(PORT) WHISPER_HOST=127.0.0.1 APP_ENV=$${APP_ENV:-development} $(BIN)/whisper-service serve

# The image of Dockerfile.secure, built here (Docker Hub and PyPI's torch index are out
# of reach: a Debian base from mmdebstrap, the machine's torch wheel). Installs and
# starts Docker where it is missing. ENGINES=faster-whisper builds the lean image
# (no torch). `make test` builds both as well (whisper-service:test and :test-lean) for
# tests/container, which run them as Cloud Run does.
image:
	bash scripts/build_image.sh

lint: install-dev
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/hadolint Dockerfile.secure
	$(BIN)/lint-imports

typecheck: install-dev
	$(BIN)/mypy src

# Google's Pub/Sub and Firestore emulators (and the Java they run on) come with the
# machine image (Debian packages google-cloud-cli-pubsub-emulator and
# google-cloud-cli-firestore-emulator), not from a registry: say what is missing.
EMULATORS := $(shell gcloud info --format='value(installation.sdk_root)' 2>/dev/null)/platform
emulators:
	@missing=""; \
	command -v gcloud >/dev/null || missing="$$missing gcloud (Google Cloud CLI)"; \
	command -v java >/dev/null || missing="$$missing java"; \
	test -d "$(EMULATORS)/pubsub-emulator" || missing="$$missing google-cloud-cli-pubsub-emulator"; \
	test -d "$(EMULATORS)/cloud-firestore-emulator" || missing="$$missing google-cloud-cli-firestore-emulator"; \
	if [ -n "$$missing" ]; then \
	  echo "the distributed-jobs tests need Google's emulators; missing:$$missing" >&2; \
	  echo "(part of the machine image: install those Debian packages from Google's apt repository)" >&2; \
	  exit 1; fi

pytest: install-dev tools emulators
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# dependencies/requirements_secure.txt: every package of the image pinned with hashes,
# resolved from pyproject.toml with its openai-whisper extra for linux/amd64 and Python
# 3.11 (torch: the CPU build; triton: left out, openai-whisper uses it only for CUDA
# kernels); requirements_lean.txt: the lean image's (no extra: no torch, no
# openai-whisper), and requirements_dev.txt: with the dev extra; both held to the
# image's versions. Versions already locked stay unless pyproject.toml rules them out
# (uv's --upgrade-package NAME moves one).
LOCK_FLAGS := --override dependencies/overrides.txt \
	  $(if $(wildcard /opt/wheels),--find-links /opt/wheels,) \
	  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --no-emit-package triton --no-header --no-annotate
lock: install-dev
	$(BIN)/uv pip compile pyproject.toml dependencies/lock-inputs.txt --extra openai-whisper \
	  $(LOCK_FLAGS) --override dependencies/overrides-torch-cpu.txt \
	  -o dependencies/requirements_secure.txt
	$(BIN)/uv pip compile pyproject.toml dependencies/lock-inputs.txt $(LOCK_FLAGS) \
	  --override dependencies/overrides-lean.txt \
	  --constraint dependencies/requirements_secure.txt -o dependencies/requirements_lean.txt
	$(BIN)/uv pip compile pyproject.toml dependencies/lock-inputs.txt --extra dev $(LOCK_FLAGS) \
	  --override dependencies/overrides-torch-cpu.txt \
	  --constraint dependencies/requirements_secure.txt -o dependencies/requirements_dev.txt

# Known vulnerabilities in the locked packages (needs the PyPI vulnerability API).
audit: install-dev
	$(BIN)/pip-audit --disable-pip --no-deps -r dependencies/requirements_secure.txt

# Speed: pytest-benchmark suites, then every comparison of docs/benchmarks.md (ratios
# measured within one run, load tests on 127.0.0.1), then one long job on 1, 2 and 3
# instances over the emulators (files in gcp-storage-emulator, then in a shared
# directory), speaker diarization, live streams (both ways of decoding a final), batching
# across requests, the image's size, start and memory. About 55 minutes; not in
# `make test`.
bench: install-dev emulators
	$(BIN)/pytest benchmarks -o python_files='bench_*.py' -p no:cacheprovider \
	  --benchmark-only --benchmark-json=.benchmarks/pytest-benchmark.json --timeout 1200
	$(BIN)/python benchmarks/compare.py --output .benchmarks/compare.json
	$(BIN)/python benchmarks/diarization.py --output .benchmarks/diarization.json
	$(BIN)/python benchmarks/jobs_scaling.py --output .benchmarks/jobs_scaling.json
	$(BIN)/python benchmarks/jobs_scaling.py --files directory --instances 1 2 \
	  --output .benchmarks/jobs_scaling_directory.json
	$(BIN)/python benchmarks/realtime.py --output .benchmarks/realtime.json
	$(BIN)/python benchmarks/realtime_words.py --output .benchmarks/realtime-words.json
	$(BIN)/python benchmarks/batching.py --output .benchmarks/batching.json
	bash scripts/build_image.sh
	ENGINES=faster-whisper bash scripts/build_image.sh
	$(BIN)/python benchmarks/image.py --image whisper-service:local --output .benchmarks/image.json
	$(BIN)/python benchmarks/image.py --image whisper-service:local-lean \
	  --output .benchmarks/image-lean.json

# docs/configuration.md's settings and presets tables, from the Settings model.
docs: install
	$(BIN)/whisper-service config docs

# The Cloud Run manifests of every preset.
render: install
	for env in production staging development; do $(BIN)/whisper-service deploy render --env $$env; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache
