# make demo : set up .venv if missing, then run the main job (writes its report under demo_output/)
# make test : set up .venv if missing, then run the whole test suite
# make bench: pytest-benchmark timings of the backends on this machine

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# nvcc for the CUDA part of the extension: the system toolkit if present, else the pip one below.
CUDA_HOME ?= $(shell if [ -x /usr/local/cuda/bin/nvcc ]; then echo /usr/local/cuda; else echo $(CURDIR)/$(VENV)/lib/python3.11/site-packages/nvidia/cu13; fi)
TORCH_CUDA_ARCH_LIST ?= 9.0
MAX_JOBS ?= 2
REQUIREMENTS := torch==2.14.1 torchvision==0.29.1 "cuda-toolkit[nvcc,cccl,crt,nvvm]==13.0.3.0" cupy-cuda13x \
	numpy pybind11 ninja setuptools wheel pytest pytest-benchmark matplotlib pillow tqdm

.PHONY: demo test bench install clean

$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*.h csrc/*/*.h csrc/*/*.cuh)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(REQUIREMENTS)
	CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST=$(TORCH_CUDA_ARCH_LIST) MAX_JOBS=$(MAX_JOBS) \
		$(PIP) install -q --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m model.demo --out demo_output

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m pytest bench -q --benchmark-only

clean:
	rm -rf build *.egg-info spatialstats/_C*.so demo_output
