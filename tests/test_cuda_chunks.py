"""The displacement chunks of the CUDA forward kernel (csrc/cuda/forward_chunks.h), compiled with the
host C++ compiler: every displacement is computed exactly once for a cross pair, and an auto pair
computes exactly the rows from the window's centre row on (ops.cpp mirrors the others), which is
about half of the work. The kernels themselves need a GPU (tests/test_native.py runs them there)."""

import os
import shutil
import subprocess

import numpy as np
import pytest

HEADER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "cuda")
COMPILER = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")

# For each window "kz ky kx" on stdin and each of cross (0) and auto (1): the number of times each
# displacement of the window (row-major) is computed, and the displacement slots the chunks hold.
DRIVER = r"""
#include <cstdio>
#include <vector>
#include "forward_chunks.h"
using namespace spatialstats;
int main() {
  int kz, ky, kx;
  while (std::scanf("%d %d %d", &kz, &ky, &kx) == 3) {
    const WindowChunks w = window_chunks(kz, ky, kx);
    const int WY = 2 * ky + 1, WX = 2 * kx + 1;
    for (int is_auto = 0; is_auto < 2; ++is_auto) {
      std::vector<int> computed((2 * kz + 1) * WY * WX, 0);
      long slots = 0;
      for (long index = 0; index < w.count(); ++index) {
        const Chunk c = chunk_at(w, index);
        if (is_auto && before_centre(c)) continue;
        slots += long(w.rows) * w.cols;
        for (int ry = c.ry_begin; ry < c.ry_end; ++ry)
          for (int rx = c.rx0; rx < c.rx_end; ++rx) {
            if (c.rz < -kz || c.rz > kz || ry < -ky || ry > ky || rx < -kx || rx > kx) return 1;
            ++computed[((c.rz + kz) * WY + ry + ky) * WX + rx + kx];
          }
      }
      std::printf("%d %ld", is_auto, slots);
      for (int n : computed) std::printf(" %d", n);
      std::printf("\n");
    }
  }
  return 0;
}
"""

WINDOWS = [
    (0, 0, 0),
    (0, 0, 5),
    (0, 1, 1),
    (0, 4, 4),
    (0, 8, 8),
    (0, 16, 16),
    (0, 31, 2),
    (0, 32, 40),
    (0, 63, 63),
    (0, 100, 3),
    (2, 3, 1),
    (4, 4, 4),
    (8, 8, 8),
    (16, 20, 33),
]


@pytest.fixture(scope="module")
def chunk_coverage(tmp_path_factory):
    """{(window, is_auto): (slots, computed counts of shape (2kz + 1, 2ky + 1, 2kx + 1))}."""
    if COMPILER is None:
        pytest.skip("no host C++ compiler (c++, g++ or clang++)")
    folder = tmp_path_factory.mktemp("chunks")
    source, binary = folder / "driver.cpp", folder / "driver"
    source.write_text(DRIVER)
    subprocess.run([COMPILER, "-std=c++17", "-O1", "-I", HEADER_DIR, str(source), "-o", str(binary)], check=True)
    stdin = "".join(f"{kz} {ky} {kx}\n" for kz, ky, kx in WINDOWS)
    lines = subprocess.run([str(binary)], input=stdin, capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(lines) == 2 * len(WINDOWS)
    coverage = {}
    for line, (window, is_auto) in zip(lines, ((w, a) for w in WINDOWS for a in (False, True))):
        values = [int(v) for v in line.split()]
        assert values[0] == is_auto
        shape = tuple(2 * k + 1 for k in window)
        coverage[window, is_auto] = (values[1], np.array(values[2:]).reshape(shape))
    return coverage


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: "x".join(map(str, w)))
def test_cross_pairs_compute_every_displacement_once(chunk_coverage, window):
    _, computed = chunk_coverage[window, False]
    assert (computed == 1).all()


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: "x".join(map(str, w)))
def test_auto_pairs_compute_the_rows_from_the_centre_on(chunk_coverage, window):
    """Rows (rz, ry) at or after the centre row (row-major): once each; rows before it: never."""
    kz, ky, _ = window
    _, computed = chunk_coverage[window, True]
    rz, ry = np.meshgrid(np.arange(-kz, kz + 1), np.arange(-ky, ky + 1), indexing="ij")
    from_centre_row = (rz > 0) | ((rz == 0) & (ry >= 0))
    assert (computed[from_centre_row] == 1).all()
    assert (computed[~from_centre_row] == 0).all()


@pytest.mark.parametrize("window", [w for w in WINDOWS if w[1] >= 4], ids=lambda w: "x".join(map(str, w)))
def test_auto_pairs_do_about_half_the_work(chunk_coverage, window):
    """Displacement slots (padding included) of an auto pair against a cross pair: about (ky + 1) /
    (2 ky + 1) of the rows in 2D, under (kz + 1) / (2 kz + 1) of the planes in 3D."""
    kz = window[0]
    auto_slots, _ = chunk_coverage[window, True]
    cross_slots, _ = chunk_coverage[window, False]
    bound = 0.6 if kz == 0 else (kz + 1) / (2 * kz + 1)
    assert auto_slots / cross_slots <= bound
