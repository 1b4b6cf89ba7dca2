# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test clean

install: $(STAMP)

# torch and torchvision are pinned to the builds this project is tested with; pip takes them from
# the local disk where they lie there, and from PyPI elsewhere.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The demo keeps its workspace inside the checkout unless QUALIA_HOME says otherwise.
demo: install
	QUALIA_HOME="$${QUALIA_HOME:-$(CURDIR)/.qualia}" $(BIN)/qualia demo

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .qualia .pytest_cache
