# Set up a virtual environment, install pyroseq, and run the demo or the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean docs notebooks

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first, so no resolver ever pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,fast]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pyroseq demo --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check pyroseq tests benchmarks notebooks

clean:
	rm -rf $(VENV) demo_output .pytest_cache

# API reference (HTML in docs/_build/html); sphinx comes from the docs extra.
docs: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[docs]"
	$(BIN)/python -m sphinx -b html docs docs/_build/html

# Execute the tutorials from their sources (notebooks/NN_*.py) in full mode and save the outputs (.ipynb).
notebooks: $(STAMP)
	$(BIN)/python notebooks/build_notebooks.py --execute
