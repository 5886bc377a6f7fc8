# The two quickstart commands: `make smoke` (the smoke sweep end to end) and `make test` (the test suite).
# Each sets up its own virtual environment first, once (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xfer-setup
# This machine's torch; on a GPU cluster pass your own, e.g. make setup TORCH="torch torchvision"
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup bytecode slurm-packages smoke smoke-coco test test-fast lint

setup: $(STAMP)

# xfer's own modules byte-compiled, as pip compiles what it installs (an editable install is not): every
# launch, trial and SLURM job imports them, and where PYTHONDONTWRITEBYTECODE is set Python would compile them
# anew in each process (about 0.36 s of CPU for all of xfer). Only what changed is compiled again.
bytecode: setup
	$(PY) -m compileall -q xfer hydra_plugins

$(STAMP): pyproject.toml scripts/install_detectron2.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[d2,test]'
	$(PY) -m pip install -q -e '.[coco]' || echo "hotcoco did not install: COCO evaluates on xfer's NumPy engine (same numbers, slower)"
	$(PY) scripts/install_detectron2.py
	touch $@

# Debian's SLURM, for the SLURM tests (they skip without it, except in CI); needs root.
slurm-packages:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq munge slurmctld slurmd slurm-client

smoke: bytecode
	$(PY) launch.py -m benchmark=smoke pretrain=scratch,densecl,regioncl seed=0-4 cluster.devices=2 cluster.gpus_per_trial=1

# The COCO smoke that learns: Mask R-CNN C4 and FPN, smoke pretraining vs scratch, 5 seeds (the suite's COCO tier
# runs C4's seeds 0-2 and one FPN trial)
smoke-coco: bytecode
	$(PY) launch.py -m benchmark=coco_smoke_c4,coco_smoke_fpn pretrain=scratch,densecl seed=0-4 cluster.devices=2 cluster.gpus_per_trial=1

# One pytest-xdist worker per core; tests that share a session's sweep run on one worker (tests/xdist_groups.py).
XDIST := -n auto --dist loadgroup

test: bytecode
	$(PY) -m pytest $(XDIST)

test-fast: bytecode
	$(PY) -m pytest $(XDIST) -m "not slow and not launch"

lint: setup
	$(VENV)/bin/ruff check .
