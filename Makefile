# Set-up and main jobs. `make run` and `make test` work on a fresh Debian machine with Python 3.11.
PYTHON ?= python3
VENV   ?= .venv
# The CPU wheel of torch: installed first so that the project's torch range pulls nothing more
# (a bare `pip install torch` would bring gigabytes of CUDA packages). Override for a GPU build.
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
FMNIST  = /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data run smoke test lint report tables claims reliability clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Fashion-MNIST from Debian when apt is there; otherwise the harness falls back to sklearn's digits.
data:
	@if [ -f $(FMNIST) ]; then exit 0; fi; \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	if command -v apt-get >/dev/null 2>&1; then \
	  ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist) \
	  || echo "Fashion-MNIST not installed: falling back to scikit-learn's digits"; \
	else echo "no apt-get: falling back to scikit-learn's digits"; fi

run: setup data
	$(BIN)/bench run

smoke: setup data
	$(BIN)/bench run --preset smoke --results results/smoke

test: setup data
	$(BIN)/ruff check bench methods zoos tests
	$(BIN)/pytest -q

report: setup
	$(BIN)/bench report

# The committed tables, from the committed rows of the default benchmark (byte for byte)
tables: setup
	$(BIN)/bench report --results results/archive/default --into results
	$(BIN)/bench reproduce --report-only --results results/archive/reproductions --into results
	$(BIN)/bench perf --report-only
	$(BIN)/bench report --claims --report-only --results results/archive/claims --into results
	$(BIN)/bench ae study --report-only --results results/archive --into results

# The papers' claims tested on our zoos (runs what they need, resumable): results/claims.md
claims: setup data
	$(BIN)/bench report --claims

# SIGKILLs, concurrent runs, repeat runs and hostile input against a reference: results/reliability.md
reliability: setup data
	$(BIN)/python -m tests.harness.reliability

clean:
	rm -rf $(VENV) results/rows results/zoos results/mlflow.db results/mlruns results/cache results/.claims results/sweeps
