"""Builds the optional extension ``spatialstats._C`` from ``csrc/``; never fails the install.

Environment:
    SPATIALSTATS_SKIP_CUDA_BUILD=1   build the CPU part only
    SPATIALSTATS_SKIP_EXTENSION=1    build no extension at all (pure-Python package)
    CUDA_HOME, TORCH_CUDA_ARCH_LIST, MAX_JOBS   as for any torch extension

Without torch importable at build time (pip's isolated build), or without sources in ``csrc/``,
the package installs as pure Python and ``spatialstats.available_backends()`` says why the
native backend is missing. Build it with ``pip install --no-build-isolation -e .``.
"""

import glob
import os
import warnings

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _extensions():
    """(ext_modules, build_ext class) for spatialstats._C, or ([], plain build_ext) when it cannot be built."""
    cpu_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    if _flag("SPATIALSTATS_SKIP_EXTENSION") or not cpu_sources:
        return [], build_ext
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        warnings.warn("torch is not importable at build time: installing spatialstats without its native extension")
        return [], build_ext
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    use_cuda = bool(cuda_sources) and not _flag("SPATIALSTATS_SKIP_CUDA_BUILD") and cpp_extension.CUDA_HOME is not None
    if cuda_sources and not use_cuda and not _flag("SPATIALSTATS_SKIP_CUDA_BUILD"):
        warnings.warn("no CUDA toolkit found (set CUDA_HOME): building the CPU part of spatialstats._C only")
    openmp = ["-fopenmp"]
    extra = {"cxx": ["-O3", "-std=c++17"] + openmp + (["-DSPATIALSTATS_WITH_CUDA"] if use_cuda else [])}
    if use_cuda:
        extra["nvcc"] = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo"]
        extension = cpp_extension.CUDAExtension
    else:
        extension = cpp_extension.CppExtension
    module = extension(
        "spatialstats._C",
        cpu_sources + (cuda_sources if use_cuda else []),
        extra_compile_args=extra,
        extra_link_args=openmp,
        py_limited_api=False,
    )

    class OptionalBuildExt(cpp_extension.BuildExtension):
        """A failed compile warns and leaves the pure-Python package installed."""

        def run(self):
            try:
                super().run()
            except Exception as error:  # noqa: BLE001 - any compiler failure must not fail the install
                warnings.warn(f"building spatialstats._C failed ({error}); the native backend is unavailable")

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:  # noqa: BLE001
                warnings.warn(f"building {ext.name} failed ({error}); the native backend is unavailable")

    return [module], OptionalBuildExt.with_options(use_ninja=True)


ext_modules, build_ext_class = _extensions()
setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext_class})
