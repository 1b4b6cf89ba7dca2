# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser demo test clean

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

# The web page's tests drive Debian's chromium through its chromedriver (never a browser downloaded at run
# time): installed here when missing, as root or through password-less sudo; anything else stops with why.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "make: the browser tests need $(CHROMIUM) and $(CHROMEDRIVER) (Debian's chromium and chromium-driver), and there is no apt-get here to install them" >&2; exit 1; \
	fi; \
	echo "installing chromium and chromium-driver for the web page's browser tests"; \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null || { \
		echo "make: could not install chromium and chromium-driver (apt-get failed; as root: apt-get install chromium chromium-driver)" >&2; exit 1; }; \
	[ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ] || { echo "make: chromium was installed but $(CHROMIUM) or $(CHROMEDRIVER) is missing" >&2; exit 1; }

test: install browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .qualia .pytest_cache
