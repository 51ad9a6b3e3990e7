# mmdiffssl: the commands of the README, and their parts.
#   make pipeline  set up if needed, then the README's experiment: pretrained U-Net features vs
#                  random init vs pixels on Fashion-MNIST, a heatmap and samples (tools/pipeline.py)
#   make demo      the same, shrunk to a few minutes (tools/pipeline.py --preset demo)
#   make test      set up if needed, then run the CPU test suite (two pytest-xdist workers;
#                  prints its wall time)
#   make test-slow the tests marked slow (minutes each), the same way; CI runs both
PY := .venv/bin/python
STAMP := .venv/.mmdiffssl-ready
DATA := data/fashion_mnist

.PHONY: setup test test-slow demo pipeline wheelhouse clean-venv

setup: $(STAMP)

$(STAMP): tools/setup_env.sh setup.py requirements/*.txt
	bash tools/setup_env.sh
	touch $(STAMP)

# Two workers, one intra-op thread each (tests/conftest.py); a module's tests stay on one
# worker (--dist loadfile: its fixtures are built once). Exit 5 (no test selected) is not a
# failure.
PYTEST := $(PY) -m pytest tests -q -n 2 --dist loadfile --durations=30

define timed_pytest
	@start=$$(date +%s); $(PYTEST) -m $(2); rc=$$?; took=$$(( $$(date +%s) - start )); \
	echo "make $(1): $$((took / 60)) min $$((took % 60)) s wall (pytest exit $$rc)"; \
	[ $$rc -eq 0 ] || [ $$rc -eq 5 ]
endef

test: setup
	$(call timed_pytest,test,"not slow and not gpu")

test-slow: setup
	$(call timed_pytest,test-slow,"slow and not gpu")

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
