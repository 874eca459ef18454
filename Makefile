# make demo : set up .venv if missing, then run the main job (writes its report under demo_output/)
# make test : set up .venv if missing, then run ruff and the whole test suite
# make bench: pytest-benchmark timings of the backends on this machine
# make test-triton-versions: the Triton test files against the oldest and newest supported Triton

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

# The Triton range the backend supports (pyproject.toml's "triton" extra): side copies of the oldest
# and newest, installed with pip --target into a git-ignored folder and put first on PYTHONPATH.
# Triton 3.6's interpreter needs a numpy older than 2.3 beside it.
TRITON_OLDEST := 3.6.0
TRITON_NEWEST := 3.9.0
TRITON_SIDE := .triton-versions

.PHONY: demo test lint bench install clean test-triton-versions

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

$(TRITON_SIDE)/%/.installed: | $(VENV)/.installed
	$(PIP) install -q --no-deps --target $(TRITON_SIDE)/$* "triton==$*" $(if $(filter $(TRITON_OLDEST),$*),"numpy<2.3")
	touch $@

test-triton-versions: $(TRITON_SIDE)/$(TRITON_OLDEST)/.installed $(TRITON_SIDE)/$(TRITON_NEWEST)/.installed
	for version in $(TRITON_OLDEST) $(TRITON_NEWEST); do \
		echo "== Triton $$version"; \
		PYTHONPATH=$(CURDIR)/$(TRITON_SIDE)/$$version:$(CURDIR) $(PY) -m pytest -q -p no:cacheprovider \
			-W "ignore:Conversion of an array with ndim:DeprecationWarning" \
			tests/test_triton_correlation.py tests/test_triton_loss.py || exit 1; \
	done

clean:
	rm -rf build *.egg-info spatialstats/_C*.so demo_output $(TRITON_SIDE)
