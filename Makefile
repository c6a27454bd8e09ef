# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEVSTAMP:= $(VENV)/.installed-dev
DEMO_OUT ?= out/demo.mp4

.PHONY: demo test install install-dev install-distill bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Tests train a tiny student, so they need torch: pinned to the CPU build (an unpinned torch pulls CUDA, several GB).
$(DEVSTAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[dev,distill,plot]'
	touch $@

install: $(STAMP)
install-dev: $(DEVSTAMP)

demo: $(STAMP)
	@mkdir -p $(dir $(DEMO_OUT))
	$(BIN)/streamer convert streamer/assets/sample.mp4 $(DEMO_OUT) --style starry_night -y

test: $(DEVSTAMP)
	$(BIN)/python -m pytest -q

bench: $(DEVSTAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) out build *.egg-info
