# charrnn developer tasks. Needs only python3 (with pip), make and a POSIX shell.
#
#   make install                     create .venv and install charrnn with the dev extras
#   make train CORPUS=shakespeare ARGS="--max-time 60 --cell gru"
#   make sample ARGS="--len 500 --temperature 0.7"
#   make forecast SERIES=co2 ARGS="--cell lstm"   (needs the timeseries extra: statsmodels)
#   make test                        the whole suite (what CI runs)
#   make test-fast                   the suite without the tests marked slow

PYTHON ?= python3
VENV = .venv
CORPUS ?= shakespeare
SERIES ?= co2
# Empty MODEL lets charrnn choose models/<corpus>.npz.
MODEL ?=
ARGS ?=
PYTEST_ARGS ?=
TORCH_VERSION ?= 2.13.0
# Extra pip options for `make torch` (e.g. TORCH_PIP_ARGS="--index-url <a CPU wheel index>").
TORCH_PIP_ARGS ?=

BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
BOOTSTRAP = build/venv-bootstrap

.DEFAULT_GOAL := help

.PHONY: help venv install train sample forecast bench-forecast test test-fast lint format bench bench-memory bench-classify \
	quality corpora torch clean distclean

help: ## List the targets
	@echo "Usage: make <target> [CORPUS=name] [MODEL=path] [ARGS='...'] [PYTEST_ARGS='...']"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_ -]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

venv install: $(STAMP) ## Create .venv and install charrnn in editable mode with the dev extras

# The stamp is rebuilt whenever the package metadata changes, so `make test` after editing
# setup.cfg reinstalls automatically. A venv without a working pip (e.g. Debian without
# python3-venv) is discarded and rebuilt with virtualenv, bootstrapped through pip --target.
$(STAMP): setup.cfg pyproject.toml
	@if ! $(BIN)/python -m pip --version >/dev/null 2>&1; then \
		echo "Creating virtual environment in $(VENV)"; \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) || { \
			echo "'$(PYTHON) -m venv' failed; bootstrapping virtualenv with pip instead"; \
			rm -rf $(VENV) $(BOOTSTRAP); \
			$(PYTHON) -m pip install --quiet --target $(BOOTSTRAP) virtualenv && \
			PYTHONPATH=$(BOOTSTRAP) $(PYTHON) -m virtualenv $(VENV); \
		}; \
	fi
	$(BIN)/python -m pip install --upgrade pip || echo "pip upgrade failed; keeping the installed pip"
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $@

train: $(STAMP) ## Train on CORPUS (MODEL=path to choose the output, ARGS for options)
	$(BIN)/charrnn train $(CORPUS) $(if $(MODEL),--model $(MODEL)) $(ARGS)

sample: $(STAMP) ## Generate text from a trained model (MODEL, ARGS)
	$(BIN)/charrnn sample $(if $(MODEL),--model $(MODEL)) $(ARGS)

forecast: $(STAMP) ## Forecast SERIES (named: pip install -e '.[timeseries]'; or a CSV file)
	$(BIN)/charrnn forecast $(SERIES) $(ARGS)

test: $(STAMP) ## Run the test suite (PYTEST_ARGS for pytest options)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Run the tests not marked slow (no subprocess-heavy end-to-end runs)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP) ## Check code style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Rewrite code with ruff's formatter and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Speed benchmark (ARGS for options; torch comparison needs `make torch`)
	$(BIN)/python scripts/bench.py $(ARGS)

bench-memory: $(STAMP) ## Long memory: rnn/lstm/gru recall a key across 10-200 steps (ARGS for options)
	$(BIN)/python scripts/recall_bench.py $(ARGS)

bench-classify: $(STAMP) ## Classifier vs n-gram baseline on play genres (ARGS for options)
	$(BIN)/python scripts/classify_bench.py $(ARGS)

bench-forecast: $(STAMP) ## RNN forecaster vs seasonal naive, Ridge, ETS, ARIMA on real series
	$(BIN)/python -c "import statsmodels" 2>/dev/null || $(BIN)/python -m pip install -e ".[timeseries]"
	$(BIN)/python scripts/forecast_bench.py $(ARGS)

quality: $(STAMP) ## Model quality report
	$(BIN)/python scripts/quality.py $(ARGS)

corpora: $(STAMP) ## Download and build the named corpora into corpora/
	$(BIN)/charrnn corpora --build $(ARGS)

torch: $(STAMP) ## Install PyTorch into the venv (for bench and the cross-check tests)
	$(BIN)/python -m pip install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)

clean: ## Remove build artefacts and caches (keeps .venv, models and corpora)
	rm -rf build dist .eggs *.egg-info .pytest_cache .ruff_cache .hypothesis bench_results
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean ## Also remove .venv and trained models
	rm -rf $(VENV) models
