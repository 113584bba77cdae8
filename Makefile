# Two commands a fresh machine needs: `make demo` and `make test`. Both install what they use into .venv.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-all bench lint-hdl clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel; an unpinned torch would pull several GB of CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,plot,synth,ray]'
	touch $(STAMP)

install: $(STAMP)

# Icarus Verilog comes from Debian (the one simulator not on PyPI); only the Icarus tests need it.
iverilog:
	@command -v iverilog >/dev/null || { apt-get update -qq && apt-get install -y -qq iverilog >/dev/null; } \
	  || echo "warning: could not install iverilog; Icarus tests will be skipped"

demo: install
	$(VENV)/bin/systola demo

test: install iverilog
	$(PY) -m pytest -n 2 -q --durations=20

test-all: install iverilog
	$(PY) -m pytest -n 2 -q -m ''

bench: install
	$(PY) bench/golden_speed.py

clean:
	rm -rf build sim_build .pytest_cache
