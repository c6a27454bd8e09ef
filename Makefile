# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEVSTAMP:= $(VENV)/.installed-dev
DEMO_OUT ?= out/demo.mp4

.PHONY: demo test install install-dev install-distill bench student clean

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

# The student in one uninterrupted run from scratch, sized for the 3-hour budget on 2 CPU cores: three teacher-target
# caches (about 8 min), then 165 min of training with every loss term, then export and the held-out eval.
# The shipped weights are this recipe's output (streamer/models/MODEL_CARD.md); this target writes to $(RUN)
# and never touches them.
DATA    ?= ../shared/data
CACHE   ?= cache
RUN     ?= runs/student
TRAIN_MINUTES ?= 165
CACHES  := $(CACHE)/prep2000/manifest.json $(CACHE)/prep_div/manifest.json $(CACHE)/prep_s2/manifest.json
PREP    := $(BIN)/distill prepare --content $(DATA)/content --styles $(DATA)/styles --threads 2 --quiet
$(CACHE)/prep2000/manifest.json: | $(DEVSTAMP)
	$(PREP) --out $(CACHE)/prep2000 --pairs 2000
$(CACHE)/prep_div/manifest.json: | $(DEVSTAMP)
	$(PREP) --out $(CACHE)/prep_div --pairs 1500 --seed 1 --palette-jitter 0.6 --photo-styles 0.25
$(CACHE)/prep_s2/manifest.json: | $(DEVSTAMP)
	$(PREP) --out $(CACHE)/prep_s2 --pairs 2000 --seed 2 --palette-jitter 0.6 --photo-styles 0.2
# resumable: run it again after an interruption and training continues from $(RUN)/last.pt with the time it has left
student: $(CACHES)
	$(BIN)/distill train --data $(CACHE)/prep2000,$(CACHE)/prep_div,$(CACHE)/prep_s2 --out $(RUN) --steps 100000 \
	    --minutes $(TRAIN_MINUTES) --lr 2e-3 --batch 8 --crop 160 --threads 2 --w-ssim4 2.0 --quiet
	$(BIN)/distill export --weights $(RUN)/student.pt --out $(RUN)/student.onnx
	$(BIN)/distill eval --model $(RUN)/student.onnx --data $(CACHE)/prep2000 --pairs 36 --sheet $(RUN)/contact_sheet.png

clean:
	rm -rf $(VENV) out build *.egg-info
