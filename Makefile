# Two commands do all the set-up on a fresh machine (see README.md):
#   make run    # creates .venv, installs linksim, runs the main job
#   make test   # creates .venv, installs linksim with its test and ray extras, runs the tests
# Override the scenario with `make run SCENARIO=scenarios/other.yaml ARGS="--quick"`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?= scenarios/multihop_df.yaml
ARGS ?=

.PHONY: venv run test test-slow bench clean

$(BIN)/.linksim-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

$(BIN)/.linksim-ray-installed: $(BIN)/.linksim-installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,ray]"
	touch $@

venv: $(BIN)/.linksim-installed

run: venv
	$(BIN)/linksim run $(SCENARIO) $(ARGS)

test: $(BIN)/.linksim-ray-installed
	$(BIN)/python -m pytest

test-slow: $(BIN)/.linksim-ray-installed
	$(BIN)/python -m pytest -m slow

bench: venv
	$(BIN)/python benchmarks/sscc_throughput.py
	$(BIN)/python benchmarks/deepjscc_speed.py
	$(BIN)/python benchmarks/codec_rate_control.py
	$(BIN)/python benchmarks/training_loop.py
	$(BIN)/python benchmarks/run_times.py --before 84f4e7d scenarios/multihop_df.yaml scenarios/awgn_sscc.yaml scenarios/awgn_jscc_vs_sscc.yaml
	$(BIN)/python benchmarks/run_times.py --workers-pair
	$(BIN)/python benchmarks/ldpc_early_stop.py
	$(BIN)/python benchmarks/ldpc_hopeless_threshold.py
	$(BIN)/python benchmarks/source_cache.py
	$(BIN)/python benchmarks/validate_speed.py
	$(BIN)/python benchmarks/jscc_quality.py --run-dir runs/awgn_jscc_vs_sscc

clean:
	rm -rf $(VENV) runs
