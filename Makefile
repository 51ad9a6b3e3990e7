# mmdiffssl: the commands of the README, and their parts.
#   make pipeline  set up if needed, then the README's experiment: pretrained U-Net features vs
#                  random init vs pixels on Fashion-MNIST, a heatmap and samples (tools/pipeline.py)
#   make demo      the same, shrunk to a few minutes (tools/pipeline.py --preset demo)
#   make test      set up if needed, then run the CPU test suite
PY := .venv/bin/python
STAMP := .venv/.mmdiffssl-ready
DATA := data/fashion_mnist

.PHONY: setup test test-slow demo pipeline wheelhouse clean-venv

setup: $(STAMP)

$(STAMP): tools/setup_env.sh setup.py requirements/*.txt
	bash tools/setup_env.sh
	touch $(STAMP)

test: setup
	$(PY) -m pytest tests -q -m "not slow and not gpu"

test-slow: setup
	$(PY) -m pytest tests -q -m "slow"

# writes work_dirs/pipeline/report.md (+ heatmap.png, samples.png); a rerun reuses its caches
pipeline: setup
	$(PY) tools/pipeline.py --data $(DATA) --work-dir work_dirs/pipeline

demo: setup
	$(PY) tools/pipeline.py --preset demo --data $(DATA) --work-dir work_dirs/demo

# Fill ./wheelhouse with every wheel (mmcv built for this torch) for an offline install:
#   MMDIFFSSL_WHEELHOUSE=wheelhouse make setup
wheelhouse: setup
	bash tools/setup_env.sh --fill-wheelhouse wheelhouse

clean-venv:
	rm -rf .venv
