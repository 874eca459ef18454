# make demo : set up .venv if missing, then run the main job (writes its report under demo_output/)
# make test : set up .venv if missing, then run ruff and the whole test suite
# make bench: pytest-benchmark timings of the backends on this machine

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The extension spatialstats._C: its CUDA part is compiled by the pip cuda-toolkit installed below
# (the same CUDA version as torch; no GPU needed) unless CUDA_HOME names another toolkit, falling
# back to /usr/local/cuda. A failed compile fails the install so that CI reports it; pass
# SPATIALSTATS_REQUIRE_EXTENSION=0 to install without the extension instead.
CUDA_HOME ?=
TORCH_CUDA_ARCH_LIST ?= 9.0
MAX_JOBS ?= 2
SPATIALSTATS_REQUIRE_EXTENSION ?= 1
REQUIREMENTS := torch==2.14.1 torchvision==0.29.1 "cuda-toolkit[nvcc,cccl,crt,nvvm]==13.0.3.0" cupy-cuda13x \
	numpy scipy pybind11 ninja setuptools wheel pytest pytest-benchmark matplotlib pillow tqdm ruff==0.17.5 \
	"dask[array]" distributed scikit-learn

.PHONY: demo test lint bench install clean

$(VENV)/.installed: pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*.h csrc/*/*.h csrc/*/*.cuh)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(REQUIREMENTS)
	cuda_home="$(CUDA_HOME)"; \
	[ -n "$$cuda_home" ] || cuda_home=$$($(PY) -c 'import nvidia.cu13 as kit; print(list(kit.__path__)[0])' 2>/dev/null) \
		|| cuda_home=/usr/local/cuda; \
	CUDA_HOME=$$cuda_home TORCH_CUDA_ARCH_LIST=$(TORCH_CUDA_ARCH_LIST) MAX_JOBS=$(MAX_JOBS) \
		SPATIALSTATS_REQUIRE_EXTENSION=$(SPATIALSTATS_REQUIRE_EXTENSION) $(PIP) install -q --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m model.demo --out demo_output

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m pytest bench -q --benchmark-only

clean:
	rm -rf build *.egg-info spatialstats/_C*.so demo_output
