# ablab: every target that needs Python depends on the virtualenv, which builds itself on first
# use (at the versions in constraints.txt) and reinstalls when pyproject.toml or the
# constraints change.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# TensorFlow flavour: gpu where nvidia-smi sees a GPU, else cpu. Override: make setup TF=gpu
TF     ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
EXTRAS ?= $(TF),dev,postgres,dashboard
STAMP  := $(VENV)/.installed-$(TF)

NAME    ?=
SEEDS   ?=
WORKERS ?=
TRIALS  ?=
ARGS    ?=
JOBS    ?= 2  # pytest-xdist processes (CI has 2 cores)

.PHONY: data readme-check readme-figures setup system-deps test test-fast lint format ablation report search train axes ui dashboard server clean help

# What the end-to-end tests need from the system, from Debian's packages: PostgreSQL 15
# (initdb/pg_ctl: `ablab server` starts a cluster), Chromium (the browser test drives it
# with Playwright's Python package; never a browser download), and SLURM with munge (the
# cluster test starts a one-node SLURM). Installed when missing: as root directly, else with
# sudo; without either, it stops at once naming the command to run.
SYSTEM_NEEDS = $(strip \
	$(if $(shell command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null),,postgresql) \
	$(if $(shell command -v chromium),,chromium) \
	$(if $(shell command -v slurmctld),,slurm-wlm) \
	$(if $(shell command -v munged),,munge))

help:
	@echo "make ablation NAME=<ablation> [SEEDS=N] [WORKERS=K]   run a study (ablations/)"
	@echo "make report NAME=<ablation>                         statistics + plots (reports/)"
	@echo "make search NAME=<search> [TRIALS=N] [WORKERS=K]    Optuna search (searches/)"
	@echo "make train NAME=<experiment>                        one seeded trial (experiments/)"
	@echo "make data NAME=<experiment>                         the data card (counts, examples, leakage)"
	@echo "make ui | dashboard                                 MLflow UI | optuna-dashboard"
	@echo "make server [ARGS='--data DIR --port P']            PostgreSQL + MLflow server for workers"
	@echo "make test | lint | setup | system-deps | clean"

# constraints.txt: the exact versions the suite last passed with (README, "Versions").
$(STAMP): pyproject.toml constraints.txt setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

system-deps:
ifneq ($(SYSTEM_NEEDS),)
	@if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=sudo; \
	else echo "make test needs Debian packages: $(SYSTEM_NEEDS). Install them with:"; \
	     echo "  sudo apt-get update && sudo apt-get install -y $(SYSTEM_NEEDS)"; exit 2; fi; \
	echo "installing Debian packages the tests need: $(SYSTEM_NEEDS)"; \
	$$sudo apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $(SYSTEM_NEEDS)
endif

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --timeout 1200 --durations=25 -n $(JOBS) --dist loadfile $(ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

axes: $(STAMP)
	@$(BIN)/ablab axes

data: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make data NAME=<experiment> [ARGS='--set ...']"; exit 2; }
	$(BIN)/ablab data $(NAME) $(ARGS)

train: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make train NAME=<experiment> [ARGS='--seed 1']"; exit 2; }
	$(BIN)/ablab train $(NAME) $(ARGS)

ablation: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make ablation NAME=<ablation> [SEEDS=N] [WORKERS=K]"; ls ablations; exit 2; }
	$(BIN)/ablab run $(NAME) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

report: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make report NAME=<ablation>"; exit 2; }
	$(BIN)/ablab report $(NAME) $(ARGS)

search: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make search NAME=<search> [TRIALS=N] [WORKERS=K]"; ls searches; exit 2; }
	$(BIN)/ablab search $(NAME) $(if $(TRIALS),--trials $(TRIALS)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

ui: $(STAMP)
	$(BIN)/ablab ui $(ARGS)

dashboard: $(STAMP)
	$(BIN)/optuna-dashboard --host 127.0.0.1 --port 8080 $${ABLAB_STORAGE:-$(CURDIR)/mlruns/optuna.journal}

server: $(STAMP)
	$(BIN)/ablab server $(ARGS)

# README's quoted results against a fresh run of the study (about 2 minutes)
readme-check: $(STAMP)
	$(BIN)/python -m tests.readme_figures check

readme-figures: $(STAMP)
	$(BIN)/python -m tests.readme_figures write

clean:
	rm -rf reports .pytest_cache .ruff_cache
