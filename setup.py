"""Builds the optional extension ``spatialstats._C`` from ``csrc/``; by default never fails the install.

Environment:
    SPATIALSTATS_SKIP_CUDA_BUILD=1     build the CPU part only
    SPATIALSTATS_SKIP_EXTENSION=1      build no extension at all (pure-Python package)
    SPATIALSTATS_REQUIRE_EXTENSION=1   fail the install when the extension (with its CUDA part, unless
                                       skipped) cannot be built, so that compile errors surface (CI)
    CUDA_HOME, TORCH_CUDA_ARCH_LIST, MAX_JOBS   as for any torch extension

The CUDA part is built when a toolkit is found (CUDA_HOME, or nvcc on PATH); the pip package
``cuda-toolkit`` works as CUDA_HOME. If the CUDA part fails to build, the CPU part is built alone;
if that fails too, or torch is not importable at build time (pip's isolated build), the package
installs as pure Python and ``spatialstats.available_backends()`` says why the native backend is
missing. Build it with ``pip install --no-build-isolation -e .``.
"""

import glob
import os
import warnings

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


class ExtensionBuildError(RuntimeError):
    """spatialstats._C could not be built and SPATIALSTATS_REQUIRE_EXTENSION=1."""


def _give_up(message, consequence="installing spatialstats without it: the native backend is unavailable"):
    if _flag("SPATIALSTATS_REQUIRE_EXTENSION"):
        raise ExtensionBuildError(f"{message} (SPATIALSTATS_REQUIRE_EXTENSION=1)")
    warnings.warn(f"{message}; {consequence}", stacklevel=2)


def _cudart_link_dir(cuda_home, build_temp):
    """A folder with the libcudart.so the linker needs.

    For a toolkit (the pip one) that only has libcudart.so.<major>.
    """
    for lib in ("lib64", "lib"):
        if glob.glob(os.path.join(cuda_home, lib, "libcudart.so")):
            return None
    versioned = sorted(glob.glob(os.path.join(cuda_home, "lib*", "libcudart.so.*")))
    if not versioned:
        return None
    link_dir = os.path.abspath(os.path.join(build_temp, "cudart"))
    os.makedirs(link_dir, exist_ok=True)
    link = os.path.join(link_dir, "libcudart.so")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(versioned[0], link)
    return link_dir


def _extension(cpp_extension, with_cuda, build_temp):
    """The spatialstats._C extension, with or without its CUDA sources."""
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    openmp = ["-fopenmp"]
    cxx = ["-O3", "-std=c++20"] + openmp
    if not with_cuda:
        return cpp_extension.CppExtension(
            "spatialstats._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=openmp, py_limited_api=False
        )
    defines = ["-DSPATIALSTATS_WITH_CUDA"]
    link_dir = _cudart_link_dir(cpp_extension.CUDA_HOME, build_temp)
    return cpp_extension.CUDAExtension(
        "spatialstats._C",
        sources + sorted(glob.glob("csrc/cuda/*.cu")),
        extra_compile_args={"cxx": cxx + defines, "nvcc": ["-O3", "-std=c++20", "-lineinfo"] + defines},
        extra_link_args=openmp,
        library_dirs=[link_dir] if link_dir else [],
        py_limited_api=False,
    )


def _extensions():
    """(ext_modules, build_ext class) for spatialstats._C, or ([], plain build_ext) when it cannot be built."""
    if _flag("SPATIALSTATS_SKIP_EXTENSION") or not glob.glob("csrc/*.cpp"):
        return [], build_ext
    try:
        from torch.utils import cpp_extension
    except ImportError:
        _give_up("torch is not importable at build time, so spatialstats._C cannot be built")
        return [], build_ext
    want_cuda = bool(glob.glob("csrc/cuda/*.cu")) and not _flag("SPATIALSTATS_SKIP_CUDA_BUILD")
    if want_cuda and cpp_extension.CUDA_HOME is None:
        _give_up("no CUDA toolkit found (set CUDA_HOME)", "building the CPU part of spatialstats._C only")
        want_cuda = False

    class OptionalBuildExt(cpp_extension.BuildExtension):
        """Builds spatialstats._C with its CUDA part, else the CPU part alone; a failure warns (or raises)."""

        def run(self):
            declared, options = self.extensions[0], dict(vars(self))
            for with_cuda in [True, False] if want_cuda else [False]:
                # Each attempt starts from the command's options as they were (a failed run leaves
                # some changed) and reconfigures the declared extension in place (setuptools keeps
                # its bookkeeping on it).
                vars(self).update(options)
                vars(declared).update(vars(_extension(cpp_extension, with_cuda, self.build_temp)))
                try:
                    super().run()
                    return
                except Exception as error:
                    if with_cuda:
                        _give_up(
                            f"building the CUDA part of spatialstats._C failed ({error})", "building the CPU part only"
                        )
                    else:
                        _give_up(f"building spatialstats._C failed ({error})")

    # setuptools needs the extension up front; run() builds it with the CUDA part when it can.
    return [_extension(cpp_extension, False, None)], OptionalBuildExt.with_options(use_ninja=True)


ext_modules, build_ext_class = _extensions()
setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext_class})
