# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEVSTAMP:= $(VENV)/.installed-dev
DEMO_OUT ?= out/demo.mp4

.PHONY: demo test install install-dev install-distill bench student student-live student-hq teacher-video tuned-styles clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Tests train a tiny student, so they need torch: pinned to the CPU build (an unpinned torch pulls CUDA, several GB).
# The live extra (pyvirtualcam) too, so the virtual camera tests run; Xvfb and xdotool come from .ci/run.
# The export extra (litert-torch, ai-edge-litert) for the TFLite export tests, the ray extra for tests/test_ray.py
# (a real two-node local cluster).
$(DEVSTAMP): $(STAMP) pyproject.toml Makefile
	$(BIN)/pip install -q -e '.[dev,distill,plot,live,export,ray]'
	touch $@

install: $(STAMP) web
install-dev: $(DEVSTAMP)

# `streamer web`'s in-browser runtime: ONNX Runtime Web (pinned npm package, sha512-checked) into
# streamer/web_static/ort/, not committed (about 41 MB). Standard library only: runs before the venv exists.
ORT_WEB := streamer/web_static/ort/MANIFEST.json
.PHONY: web
web: $(ORT_WEB)
$(ORT_WEB): streamer/web_fetch.py
	$(PY) streamer/web_fetch.py && touch $@

demo: $(STAMP)
	@mkdir -p $(dir $(DEMO_OUT))
	$(BIN)/streamer convert streamer/assets/sample.mp4 $(DEMO_OUT) --style starry_night -y

test: $(DEVSTAMP) web
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

# The two v2 tiers, each warm-started from the base student above (`make student`, its $(RUN)/student.pt) with a
# 1/8-resolution branch added and the terms that ask for the teacher's stylization itself: the style-space distance
# (the teacher's own style predictor applied to the output), the colour layout at 1/8 scale, and the log power
# spectrum (no periodic patterns). Resumable like the base recipe; TIER_MINUTES of training each on 2 CPU cores.
# The shipped tiers are these recipes' output (streamer/models/MODEL_CARD.md says how they were run).
TIER_MINUTES ?= 135
TIER_TRAIN = $(BIN)/distill train --data $(CACHE)/prep2000,$(CACHE)/prep_div,$(CACHE)/prep_s2 --init $(RUN)/student.pt \
    --steps 100000 --minutes $(TIER_MINUTES) --lr 1e-3 --batch 8 --crop 160 --threads 2 --w-ssim4 2.0 \
    --w-stylespace 0.15 --w-color 5 --w-spectrum 1.0 --quiet
# The live tier then trains four more stages with the style-space term raised (0.15 -> 0.4 -> 0.5 -> 0.5 -> 0.6,
# SSIM/4 2 -> 2.5): they moved held-out photos further into the painting's style (0.62 -> 0.69 -> 0.72 -> 0.74 -> 0.76)
# for about 0.02 of SSIM/4 in all. Threads and crops as they were run; every stage resumes from its own folder.
CONTINUE = $(BIN)/distill train --data $(CACHE)/prep2000,$(CACHE)/prep_div,$(CACHE)/prep_s2 --steps 100000 --batch 8 \
    --crop 160 --threads 1 --c3 48 --blocks3 2 --w-color 5 --w-spectrum 1.0 --quiet
student-live: $(CACHES)
	@test -f $(RUN)/student.pt || { echo "run 'make student' first: the tiers start from its $(RUN)/student.pt"; exit 2; }
	$(TIER_TRAIN) --out runs/student-live --c3 48 --blocks3 2
	$(CONTINUE) --init runs/student-live/student.pt --out runs/student-live-2 --minutes 95 --lr 5e-4 \
	    --w-ssim4 2.0 --w-stylespace 0.4
	$(CONTINUE) --init runs/student-live-2/student.pt --out runs/student-live-3 --minutes 62 --lr 4e-4 \
	    --w-ssim4 2.5 --w-stylespace 0.5
	$(CONTINUE) --init runs/student-live-3/student.pt --out runs/student-live-4 --minutes 50 --lr 4e-4 \
	    --w-ssim4 2.5 --w-stylespace 0.5 --crop 192 --threads 2
	$(CONTINUE) --init runs/student-live-4/student.pt --out runs/student-live-5 --minutes 55 --lr 3e-4 \
	    --w-ssim4 2.5 --w-stylespace 0.6 --crop 192 --threads 2
	$(BIN)/distill export --weights runs/student-live-5/student.pt --out runs/student-live-5/student_live.onnx
	$(BIN)/distill eval --model runs/student-live-5/student_live.onnx --data $(CACHE)/prep2000 --pairs 36
# The high-quality tier: the teacher's own network (`distill hq-init`, weights from arbitrary_transform.onnx) pruned to
# 3 of its 5 residual blocks and 5x5 outer kernels (0.6 of its MACs), its whole-frame moments carried from frame to
# frame (keep 0.98, engines/student_hq.py) so video does not pulse, then distilled on whole 384-px frames (each
# normalized by itself, as the teacher normalizes it). Resumable: run it again and training continues.
HQ_MINUTES ?= 100
student-hq: $(CACHES)
	@test -f runs/student-hq/init.pt || $(BIN)/distill hq-init --data $(CACHE)/prep2000 --out runs/student-hq/init.pt \
	    --frame-moments 0.98 --blocks 3 --kernel 5
	$(BIN)/distill train --data $(CACHE)/prep2000,$(CACHE)/prep_div,$(CACHE)/prep_s2 --arch hq \
	    --init runs/student-hq/init.pt --out runs/student-hq --steps 100000 --minutes $(HQ_MINUTES) --lr 3e-4 \
	    --batch 2 --crop 384 --threads 2 --w-ssim4 2.5 --w-stylespace 0.5 --w-color 5 --w-spectrum 1.0 --quiet
	$(BIN)/distill export --weights runs/student-hq/student.pt --out runs/student-hq/student_hq.onnx
	$(BIN)/distill eval --model runs/student-hq/student_hq.onnx --data $(CACHE)/prep2000 --pairs 36

# The teacher's own network and weights at any frame size, its moments carried the same way (`--model teacher-video`):
# no training, seconds on any CPU. On a still it is the teacher's picture.
teacher-video: $(CACHES)
	$(BIN)/distill hq-init --data $(CACHE)/prep2000 --out runs/teacher-video/teacher_video.pt --frame-moments 0.98
	$(BIN)/distill export --weights runs/teacher-video/teacher_video.pt --out runs/teacher-video/teacher_video.onnx
	$(BIN)/distill eval --model runs/teacher-video/teacher_video.onnx --data $(CACHE)/prep2000 --pairs 36

# Every bundled style tuned for the live tier (streamer/models/tuned/ and its MANIFEST.json): `streamer tune` with its
# defaults, 5 minutes per style. Run it again after retraining the tier: a tuned model whose base or painting changed
# is no longer used (`--style NAME` falls back to the arbitrary student). Styles still valid are skipped.
tuned-styles: $(DEVSTAMP)
	$(BIN)/python -m distill.tune_bundled --tier student-live

clean:
	rm -rf $(VENV) out build *.egg-info
