// Device kernels of the windowed two-point correlation and their gradient; ops.cpp builds the
// registered ops from them. With g_c = m * f_c (field times mask) and a pair p = (i, j):
//
//   forward   sums[b, p, r] = sum_s g_i(s) g_j(s + r)            for every r of the window
//   backward  grad_f_c(s)   = m(s) * sum_{terms (k, d) of c} sum_r kernels[b, k, r] g_d(s + r)
//
// Periodic grids wrap s + r; otherwise a partner outside the grid contributes nothing. For an auto
// pair (i == j) sums(-r) = sums(r): the forward kernels may leave the displacements before the
// centre (in row-major order of the window) uncomputed, and ops.cpp mirrors them. ops.cpp also
// normalises by the pair counts and builds the gradient kernels: one per (channel c, partner d),
// the weights of the pairs (c, d) plus those of the pairs (d, c) mirrored through the centre.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace spatialstats {

// A field (B, C, *spatial) with 1 to 3 spatial axes seen as (B, C, Z, Y, X), and the half-widths
// (kz, ky, kx) of the window the kernels compute. ops.cpp reduces every window to one without
// repeated displacements: k <= n / 2 periodic, k <= n - 1 otherwise, so a halo wraps at most once.
struct Geometry {
  int64_t batch, channels, Z, Y, X;
  int64_t kz, ky, kx;
  bool periodic;

  int64_t points() const { return Z * Y * X; }
  int64_t window_points() const { return (2 * kz + 1) * (2 * ky + 1) * (2 * kx + 1); }
  // Row-major index of r = 0 in the window: an auto pair's r before it mirror those after it.
  int64_t window_centre() const { return (window_points() - 1) / 2; }
};

// One term of a channel's gradient: kernel `kernel` correlated with channel `partner`.
struct GradientTerm {
  int64_t kernel;
  int64_t partner;
};
using GradientTerms = std::vector<std::vector<GradientTerm>>;  // the terms of each channel

// fields (B, C, Z, Y, X) contiguous floating; mask (Bm, Z, Y, X) contiguous in the accumulation
// dtype (float64 for float64 fields, else float32) with Bm in {1, B}, or undefined for none.
// Returns sums (B, P, 2kz + 1, 2ky + 1, 2kx + 1) in the accumulation dtype.
at::Tensor correlate_cpu(const at::Tensor& fields, const at::Tensor& mask, const std::vector<int64_t>& pairs,
                         const Geometry& geometry);
// kernels (B, K, 2kz + 1, 2ky + 1, 2kx + 1) contiguous in the accumulation dtype, terms naming them
// for every channel. Returns the gradient with respect to fields, in the fields' dtype.
at::Tensor correlate_backward_cpu(const at::Tensor& kernels, const at::Tensor& fields, const at::Tensor& mask,
                                  const GradientTerms& terms, const Geometry& geometry);

#ifdef SPATIALSTATS_WITH_CUDA
at::Tensor correlate_cuda(const at::Tensor& fields, const at::Tensor& mask, const std::vector<int64_t>& pairs,
                          const Geometry& geometry);
at::Tensor correlate_backward_cuda(const at::Tensor& kernels, const at::Tensor& fields, const at::Tensor& mask,
                                   const GradientTerms& terms, const Geometry& geometry);
#endif

}  // namespace spatialstats
