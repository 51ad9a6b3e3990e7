# mmdiffssl: the commands of the README, and their parts.
#   make pipeline  set up if needed, then the CPU-sized pretraining experiment (~15 min)
#   make demo      set up if needed, then train and test a diffusion-feature linear probe
#   make test      set up if needed, then run the CPU test suite
PY := .venv/bin/python
STAMP := .venv/.mmdiffssl-ready
DATA := data/fashion_mnist
DEMO_CFG := configs/diffssl/linear_adm-tiny_1xb64-2e_fashion-mnist-32px.py
DEMO_DIR := work_dirs/demo

.PHONY: setup test test-slow demo pipeline wheelhouse clean-venv

setup: $(STAMP)

$(STAMP): tools/setup_env.sh setup.py requirements/*.txt
	bash tools/setup_env.sh
	touch $(STAMP)

test: setup
	$(PY) -m pytest tests -q -m "not slow and not gpu"

test-slow: setup
	$(PY) -m pytest tests -q -m "slow"

$(DATA)/train-images-idx3-ubyte: | setup
	$(PY) tools/dataset_converters/fashion_mnist.py $(DATA)

demo: setup $(DATA)/train-images-idx3-ubyte
	$(PY) tools/train.py $(DEMO_CFG) --work-dir $(DEMO_DIR)
	$(PY) tools/test.py $(DEMO_CFG) $(DEMO_DIR)/epoch_2.pth --work-dir $(DEMO_DIR) \
		--out $(DEMO_DIR)/test_metrics.json

# pretrain a small U-Net, probe it against a random one, heatmap and samples (tools/pipeline_cpu.sh)
pipeline: setup
	PYTHON=$(PY) bash tools/pipeline_cpu.sh

# Fill ./wheelhouse with every wheel (mmcv built for this torch) for an offline install:
#   MMDIFFSSL_WHEELHOUSE=wheelhouse make setup
wheelhouse: setup
	bash tools/setup_env.sh --fill-wheelhouse wheelhouse

clean-venv:
	rm -rf .venv
