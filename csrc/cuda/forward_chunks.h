// The displacement chunks of the CUDA forward kernel (two_point_cuda.cu). Plain C++ (no CUDA
// types), so that a host compiler checks the index logic too (tests/test_cuda_chunks.py).
//
// The window |rz| <= kz, |ry| <= ky, |rx| <= kx is cut into chunks: one rz each; ry in chunks of
// `rows` with a boundary at ry = 0 (`below` chunks under it, `above` from it on; the lowest chunk
// may reach under -ky, and those rows are not written); rx in `x_chunks` chunks of `cols`. An
// auto pair (S(-r) = S(r)) skips every chunk whose displacements all come before the window's
// centre in row-major order: the planes rz < 0 and, in the plane rz = 0, the chunks under ry = 0.
// It so computes the rows (rz, ry) from the centre row on, which ops.cpp keeps (it mirrors the
// others): ky + 1 of 2 ky + 1 rows in 2D, about half of the window in 3D.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SPATIALSTATS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SPATIALSTATS_HOST_DEVICE inline
#endif

namespace spatialstats {

constexpr int kMaxChunk = 32;  // displacements per chunk side

SPATIALSTATS_HOST_DEVICE int ceil_div_int(int a, int b) { return (a + b - 1) / b; }

struct WindowChunks {
  int kz, ky, kx;
  int rows, below, above;  // ry per chunk; chunks with ry < 0 and with ry >= 0
  int cols, x_chunks;      // rx per chunk; chunks along rx

  SPATIALSTATS_HOST_DEVICE int y_chunks() const { return below + above; }
  SPATIALSTATS_HOST_DEVICE int64_t count() const { return int64_t(2 * kz + 1) * y_chunks() * x_chunks; }
};

SPATIALSTATS_HOST_DEVICE WindowChunks window_chunks(int kz, int ky, int kx) {
  WindowChunks w{};
  w.kz = kz;
  w.ky = ky;
  w.kx = kx;
  w.above = ceil_div_int(ky + 1, kMaxChunk);
  w.rows = ceil_div_int(ky + 1, w.above);
  w.below = ceil_div_int(ky, w.rows);
  w.x_chunks = ceil_div_int(2 * kx + 1, kMaxChunk);
  w.cols = ceil_div_int(2 * kx + 1, w.x_chunks);
  return w;
}

// Chunk `index` of a window: rows ry0 .. ry0 + rows - 1, of which ry_begin .. ry_end - 1 lie in the
// window; columns rx0 .. rx_end - 1.
struct Chunk {
  int rz, ry0, ry_begin, ry_end, rx0, rx_end;
};

SPATIALSTATS_HOST_DEVICE Chunk chunk_at(const WindowChunks& w, int64_t index) {
  const int per_plane = w.y_chunks() * w.x_chunks;
  const int rz = static_cast<int>(index / per_plane) - w.kz;
  const int cy = static_cast<int>(index % per_plane) / w.x_chunks, cx = static_cast<int>(index % w.x_chunks);
  const int ry0 = (cy - w.below) * w.rows, rx0 = cx * w.cols - w.kx;
  const int ry_end = ry0 + w.rows < w.ky + 1 ? ry0 + w.rows : w.ky + 1;
  const int rx_end = rx0 + w.cols < w.kx + 1 ? rx0 + w.cols : w.kx + 1;
  return {rz, ry0, ry0 > -w.ky ? ry0 : -w.ky, ry_end, rx0, rx_end};
}

// Whether an auto pair skips the chunk: every displacement in it comes before the centre.
SPATIALSTATS_HOST_DEVICE bool before_centre(const Chunk& c) { return c.rz < 0 || (c.rz == 0 && c.ry_end <= 0); }

}  // namespace spatialstats
