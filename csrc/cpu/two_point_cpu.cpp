// CPU kernels of two_point.h. Both passes read a halo copy of g = mask * field (accumulation type
// T: float, or double for float64 fields) in which every row is padded so that the inner loops
// need no bounds: (Z + 2kz, Y + 2ky, Xp + 2kx) per (b, c), Xp = X rounded up to 64 bytes, values
// outside the grid wrapped (periodic) or 0. at::parallel_for (OpenMP) runs independent tasks:
//
//   forward   a task per output row (b, p, rz, ry), from the centre row on for an auto pair: for
//             a block of up to 8 rx, sum over the grid rows of a(x) * b(x + rx) with one vector
//             of x per load of a and NX accumulators, flushed to double every ~128 vector adds
//             per lane (so float sums keep ~1e-7 relative error);
//   backward  a task per output row (b, c, z, y): each weight K(r) is broadcast and multiplied
//             into up to 8 vectors of consecutive x of the partner row at y + ry, x + rx.
//
// The row kernels use GCC/Clang vector extensions and are compiled for AVX-512, AVX2+FMA and the
// baseline instruction set; the best one the CPU supports runs, or the one named by the
// environment variable SPATIALSTATS_CPU_ISA (avx512, avx2 or baseline) when the CPU supports it.
// Offsets are int64 throughout.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../two_point.h"

#define SPATIALSTATS_ALWAYS_INLINE inline __attribute__((always_inline))
// Vectors pass between always-inlined functions only, so the ABI note on vector returns is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace spatialstats {
namespace {

constexpr int64_t kRowPadBytes = 64;        // rows padded to whole vectors of the widest ISA
constexpr int kMaxForwardBlock = 8;          // rx accumulators per forward pass
constexpr int64_t kLaneAddsPerFlush = 128;   // float adds per lane before a flush to double
constexpr int64_t kMinWorkPerChunk = 1 << 16;  // multiply-adds (or copies) per parallel chunk

// Tasks per chunk of at::parallel_for: a small problem runs on the calling thread, where a
// parallel region would cost more than the work (and stall when the CPU is oversubscribed).
int64_t grain_size(int64_t work_per_task) { return std::max<int64_t>(1, kMinWorkPerChunk / std::max<int64_t>(1, work_per_task)); }

template <class T, int W>
struct VectorOf {
  typedef T type __attribute__((vector_size(W * sizeof(T))));
};
template <class T, int W>
using Vec = typename VectorOf<T, W>::type;

template <class T, int W>
SPATIALSTATS_ALWAYS_INLINE Vec<T, W> load(const T* p) {
  Vec<T, W> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Source index of halo index i on an axis of n points: wrapped (periodic) or -1 outside the grid.
int64_t source_index(int64_t i, int64_t n, bool periodic) {
  if (periodic) return ((i % n) + n) % n;
  return i >= 0 && i < n ? i : -1;
}

// The halo copy of every (b, c) and its layout; row(bc, z, y) points at halo column 0 of grid row
// (z, y), which may lie outside the grid in the halo.
template <class T>
struct Halo {
  at::Tensor storage;  // (B * C, HZ, HY, HX)
  const T* data;
  int64_t HY, HX, plane;
  int64_t kz, ky;

  const T* row(int64_t bc, int64_t z, int64_t y) const { return data + bc * plane + ((z + kz) * HY + y + ky) * HX; }
};

template <class scalar_t, class T>
Halo<T> make_halo(const at::Tensor& fields, const at::Tensor& mask, const Geometry& g) {
  const int64_t Xp = (g.X * static_cast<int64_t>(sizeof(T)) + kRowPadBytes - 1) / kRowPadBytes * kRowPadBytes / sizeof(T);
  const int64_t HZ = g.Z + 2 * g.kz, HY = g.Y + 2 * g.ky, HX = Xp + 2 * g.kx;
  at::Tensor storage = at::empty({g.batch * g.channels, HZ, HY, HX}, fields.options().dtype(c10::CppTypeToScalarType<T>::value));
  const scalar_t* f = fields.data_ptr<scalar_t>();
  const T* m = mask.defined() ? mask.data_ptr<T>() : nullptr;
  const bool mask_batched = mask.defined() && mask.size(0) > 1;
  T* h = storage.data_ptr<T>();
  at::parallel_for(0, g.batch * g.channels * HZ * HY, grain_size(HX), [&](int64_t begin, int64_t end) {
    for (int64_t halo_row = begin; halo_row < end; ++halo_row) {
      T* out = h + halo_row * HX;
      const int64_t bc = halo_row / (HZ * HY);
      const int64_t z = source_index(halo_row / HY % HZ - g.kz, g.Z, g.periodic);
      const int64_t y = source_index(halo_row % HY - g.ky, g.Y, g.periodic);
      if (z < 0 || y < 0) {
        std::fill(out, out + HX, T(0));
        continue;
      }
      const scalar_t* f_row = f + ((bc * g.Z + z) * g.Y + y) * g.X;
      const T* m_row = m == nullptr ? nullptr : m + (((mask_batched ? bc / g.channels : 0) * g.Z + z) * g.Y + y) * g.X;
      const auto value = [&](int64_t x) { return static_cast<T>(f_row[x]) * (m_row ? m_row[x] : T(1)); };
      const auto halo_value = [&](int64_t hx) {
        const int64_t x = source_index(hx - g.kx, g.X, g.periodic);
        return x < 0 ? T(0) : value(x);
      };
      for (int64_t hx = 0; hx < g.kx; ++hx) out[hx] = halo_value(hx);
      for (int64_t x = 0; x < g.X; ++x) out[g.kx + x] = value(x);
      for (int64_t hx = g.kx + g.X; hx < HX; ++hx) out[hx] = halo_value(hx);
    }
  });
  return {storage, h, HY, HX, HZ * HY * HX, g.kz, g.ky};
}

// Rows s = (z, y) whose partner s + r lies in the grid along one axis: all when periodic.
struct RowRange {
  int64_t begin, end;
};
RowRange rows_with_partner(int64_t displacement, int64_t n, bool periodic) {
  if (periodic) return {0, n};
  return {std::max<int64_t>(0, -displacement), std::min(n, n - displacement)};
}

// The output rows (rz, ry) a forward pass computes for each pair: all of them, or for an auto pair
// those from the window's centre row on (the others mirror them). Task t is row
// first_row[p] + (t - first_task[p]) of pair p, for b = t / tasks_per_batch.
struct ForwardRows {
  std::vector<int64_t> first_task, first_row;  // per pair, and first_task[P] = tasks_per_batch
  int64_t tasks_per_batch = 0;

  ForwardRows(const std::vector<int64_t>& pairs, const Geometry& g) {
    const int64_t rows = (2 * g.kz + 1) * (2 * g.ky + 1), centre_row = (rows - 1) / 2;
    for (size_t p = 0; p < pairs.size(); p += 2) {
      const int64_t first = pairs[p] == pairs[p + 1] ? centre_row : 0;
      first_task.push_back(tasks_per_batch);
      first_row.push_back(first);
      tasks_per_batch += rows - first;
    }
    first_task.push_back(tasks_per_batch);
  }
};

template <class T>
struct ForwardArgs {
  Halo<T> halo;
  const int64_t* pairs;  // (i0, j0, i1, j1, ...)
  const ForwardRows* rows;
  Geometry g;
  T* sums;  // (B, P, WZ, WY, WX)
};

template <class T>
struct BackwardArgs {
  Halo<T> halo;
  const T* kernels;  // (B, K, WZ, WY, WX)
  int64_t n_kernels;
  const GradientTerms* terms;
  Geometry g;
};

// Forward: for rx = t0 - kx + t, t < NX, the sums over the rows of z_rows x y_rows of
// a(z, y, x) * b(z + rz, y + ry, x + rx), written to out[t0 + t].
template <class T, int W, int NX>
SPATIALSTATS_ALWAYS_INLINE void forward_block(const ForwardArgs<T>& args, int64_t a_bc, int64_t b_bc, int64_t rz,
                                              int64_t ry, RowRange z_rows, RowRange y_rows, int64_t t0, T* out) {
  using V = Vec<T, W>;
  const Geometry& g = args.g;
  const int64_t full_strips = g.X / W, tail = g.X % W;
  V tail_mask{};
  for (int lane = 0; lane < tail; ++lane) tail_mask[lane] = T(1);
  const int64_t rows_per_flush = std::max<int64_t>(1, kLaneAddsPerFlush / (full_strips + 1));
  V acc[NX] = {};
  double total[NX] = {};
  const auto flush = [&] {
    for (int t = 0; t < NX; ++t) {
      for (int lane = 0; lane < W; ++lane) total[t] += acc[t][lane];
      acc[t] = V{};
    }
  };
  int64_t rows = 0;
  for (int64_t z = z_rows.begin; z < z_rows.end; ++z) {
    for (int64_t y = y_rows.begin; y < y_rows.end; ++y) {
      const T* a = args.halo.row(a_bc, z, y) + g.kx;
      const T* b = args.halo.row(b_bc, z + rz, y + ry) + t0;
      int64_t x = 0;
      for (int64_t strip = 0; strip < full_strips; ++strip, x += W) {
        const V av = load<T, W>(a + x);
        for (int t = 0; t < NX; ++t) acc[t] += av * load<T, W>(b + x + t);
      }
      if (tail > 0) {
        const V av = load<T, W>(a + x) * tail_mask;
        for (int t = 0; t < NX; ++t) acc[t] += av * load<T, W>(b + x + t);
      }
      if (++rows == rows_per_flush) {
        flush();
        rows = 0;
      }
    }
  }
  flush();
  for (int t = 0; t < NX; ++t) out[t0 + t] = static_cast<T>(total[t]);
}

// forward_block with NX = width (1 <= width <= NX), chosen at compile time.
template <class T, int W, int NX = kMaxForwardBlock>
SPATIALSTATS_ALWAYS_INLINE void forward_block_of_width(int width, const ForwardArgs<T>& args, int64_t a_bc,
                                                       int64_t b_bc, int64_t rz, int64_t ry, RowRange z_rows,
                                                       RowRange y_rows, int64_t t0, T* out) {
  if constexpr (NX > 1) {
    if (width < NX) return forward_block_of_width<T, W, NX - 1>(width, args, a_bc, b_bc, rz, ry, z_rows, y_rows, t0, out);
  }
  forward_block<T, W, NX>(args, a_bc, b_bc, rz, ry, z_rows, y_rows, t0, out);
}

// Forward task (b, p, rz, ry): the output row sums[b, p, rz, ry, :], in passes of balanced rx blocks.
template <class T, int W>
SPATIALSTATS_ALWAYS_INLINE void forward_task(const ForwardArgs<T>& args, int64_t task) {
  const Geometry& g = args.g;
  const ForwardRows& rows = *args.rows;
  const int64_t WY = 2 * g.ky + 1, WZ = 2 * g.kz + 1, WX = 2 * g.kx + 1;
  const int64_t b = task / rows.tasks_per_batch, batch_task = task % rows.tasks_per_batch;
  const int64_t p = std::upper_bound(rows.first_task.begin(), rows.first_task.end(), batch_task) - rows.first_task.begin() - 1;
  const int64_t row = rows.first_row[p] + batch_task - rows.first_task[p];
  const int64_t ry = row % WY - g.ky, rz = row / WY - g.kz;
  const int64_t a_bc = b * g.channels + args.pairs[2 * p], b_bc = b * g.channels + args.pairs[2 * p + 1];
  const RowRange z_rows = rows_with_partner(rz, g.Z, g.periodic), y_rows = rows_with_partner(ry, g.Y, g.periodic);
  const int64_t n_pairs = static_cast<int64_t>(rows.first_row.size());
  T* out = args.sums + ((b * n_pairs + p) * WZ * WY + row) * WX;
  const int64_t passes = (WX + kMaxForwardBlock - 1) / kMaxForwardBlock;
  for (int64_t pass = 0, t0 = 0; pass < passes; ++pass) {
    const int width = static_cast<int>(WX / passes + (pass < WX % passes ? 1 : 0));
    forward_block_of_width<T, W>(width, args, a_bc, b_bc, rz, ry, z_rows, y_rows, t0, out);
    t0 += width;
  }
}

// Backward: NS vectors of the output row (b, c, z, y) from x0 on, written to out[x0...].
template <class T, int W, int NS>
SPATIALSTATS_ALWAYS_INLINE void backward_block(const BackwardArgs<T>& args, int64_t b, int64_t c, int64_t z,
                                               int64_t y, int64_t x0, T* out) {
  using V = Vec<T, W>;
  const Geometry& g = args.g;
  const int64_t WY = 2 * g.ky + 1, WX = 2 * g.kx + 1, window = g.window_points();
  V acc[NS] = {};
  for (const GradientTerm& term : (*args.terms)[c]) {
    const T* kernel = args.kernels + (b * args.n_kernels + term.kernel) * window;
    const int64_t partner = b * g.channels + term.partner;
    for (int64_t rz = -g.kz; rz <= g.kz; ++rz) {
      if (!g.periodic && (z + rz < 0 || z + rz >= g.Z)) continue;
      for (int64_t ry = -g.ky; ry <= g.ky; ++ry) {
        if (!g.periodic && (y + ry < 0 || y + ry >= g.Y)) continue;
        const T* partner_row = args.halo.row(partner, z + rz, y + ry) + x0;
        const T* weights = kernel + ((rz + g.kz) * WY + ry + g.ky) * WX;
        for (int64_t t = 0; t < WX; ++t) {
          const V weight = V{} + weights[t];
          for (int s = 0; s < NS; ++s) acc[s] += weight * load<T, W>(partner_row + t + s * W);
        }
      }
    }
  }
  std::memcpy(out + x0, acc, sizeof acc);
}

// Backward task: the output row `row` = (b, c, z, y) over Xp columns, into out.
template <class T, int W>
SPATIALSTATS_ALWAYS_INLINE void backward_row(const BackwardArgs<T>& args, int64_t row, T* out) {
  const Geometry& g = args.g;
  const int64_t y = row % g.Y, z = row / g.Y % g.Z, bc = row / (g.Y * g.Z);
  const int64_t b = bc / g.channels, c = bc % g.channels;
  const int64_t Xp = args.halo.HX - 2 * g.kx;
  int64_t x0 = 0;
  for (; x0 + 8 * W <= Xp; x0 += 8 * W) backward_block<T, W, 8>(args, b, c, z, y, x0, out);
  for (; x0 + 4 * W <= Xp; x0 += 4 * W) backward_block<T, W, 4>(args, b, c, z, y, x0, out);
  for (; x0 < Xp; x0 += W) backward_block<T, W, 1>(args, b, c, z, y, x0, out);
}

// The row kernels, one instantiation per instruction set.
template <class T>
void forward_baseline(const ForwardArgs<T>& args, int64_t task) {
  forward_task<T, 16 / sizeof(T)>(args, task);
}
template <class T>
void backward_baseline(const BackwardArgs<T>& args, int64_t row, T* out) {
  backward_row<T, 16 / sizeof(T)>(args, row, out);
}
#if defined(__x86_64__)
template <class T>
__attribute__((target("avx2,fma"))) void forward_avx2(const ForwardArgs<T>& args, int64_t task) {
  forward_task<T, 32 / sizeof(T)>(args, task);
}
template <class T>
__attribute__((target("avx2,fma"))) void backward_avx2(const BackwardArgs<T>& args, int64_t row, T* out) {
  backward_row<T, 32 / sizeof(T)>(args, row, out);
}
template <class T>
__attribute__((target("avx512f"))) void forward_avx512(const ForwardArgs<T>& args, int64_t task) {
  forward_task<T, 64 / sizeof(T)>(args, task);
}
template <class T>
__attribute__((target("avx512f"))) void backward_avx512(const BackwardArgs<T>& args, int64_t row, T* out) {
  backward_row<T, 64 / sizeof(T)>(args, row, out);
}
#endif

enum class Isa { baseline, avx2, avx512 };

// The widest instruction set this CPU runs, capped by SPATIALSTATS_CPU_ISA.
Isa cpu_isa() {
  Isa best = Isa::baseline;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    best = Isa::avx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    best = Isa::avx2;
  }
#endif
  const char* requested = std::getenv("SPATIALSTATS_CPU_ISA");
  if (requested == nullptr || *requested == '\0') return best;
  const std::string name(requested);
  TORCH_CHECK(name == "avx512" || name == "avx2" || name == "baseline",
              "SPATIALSTATS_CPU_ISA must be avx512, avx2 or baseline, got '", name, "'");
  const Isa cap = name == "avx512" ? Isa::avx512 : name == "avx2" ? Isa::avx2 : Isa::baseline;
  return std::min(best, cap);
}

template <class T>
struct RowKernels {
  void (*forward)(const ForwardArgs<T>&, int64_t task);
  void (*backward)(const BackwardArgs<T>&, int64_t row, T* out);
};

template <class T>
RowKernels<T> row_kernels() {
#if defined(__x86_64__)
  switch (cpu_isa()) {
    case Isa::avx512:
      return {forward_avx512<T>, backward_avx512<T>};
    case Isa::avx2:
      return {forward_avx2<T>, backward_avx2<T>};
    case Isa::baseline:
      break;
  }
#else
  cpu_isa();  // still validates SPATIALSTATS_CPU_ISA
#endif
  return {forward_baseline<T>, backward_baseline<T>};
}

template <class scalar_t>
using accumulation_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

}  // namespace

at::Tensor correlate_cpu(const at::Tensor& fields, const at::Tensor& mask, const std::vector<int64_t>& pairs,
                         const Geometry& g) {
  const int64_t n_pairs = static_cast<int64_t>(pairs.size()) / 2;
  const ForwardRows rows(pairs, g);
  at::Tensor sums;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fields.scalar_type(), "spatialstats_correlate_cpu", [&] {
    using T = accumulation_t<scalar_t>;
    sums = at::empty({g.batch, n_pairs, 2 * g.kz + 1, 2 * g.ky + 1, 2 * g.kx + 1},
                     fields.options().dtype(c10::CppTypeToScalarType<T>::value));
    const ForwardArgs<T> args{make_halo<scalar_t, T>(fields, mask, g), pairs.data(), &rows, g, sums.data_ptr<T>()};
    const auto forward = row_kernels<T>().forward;
    const int64_t work_per_task = g.points() * (2 * g.kx + 1);
    at::parallel_for(0, g.batch * rows.tasks_per_batch, grain_size(work_per_task), [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) forward(args, task);
    });
  });
  return sums;
}

at::Tensor correlate_backward_cpu(const at::Tensor& kernels, const at::Tensor& fields, const at::Tensor& mask,
                                  const GradientTerms& terms, const Geometry& g) {
  at::Tensor grad = at::empty_like(fields);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fields.scalar_type(), "spatialstats_correlate_backward_cpu", [&] {
    using T = accumulation_t<scalar_t>;
    const BackwardArgs<T> args{make_halo<scalar_t, T>(fields, mask, g), kernels.data_ptr<T>(), kernels.size(1), &terms, g};
    const auto backward = row_kernels<T>().backward;
    const T* m = mask.defined() ? mask.data_ptr<T>() : nullptr;
    const bool mask_batched = mask.defined() && mask.size(0) > 1;
    scalar_t* out = grad.data_ptr<scalar_t>();
    const int64_t work_per_row = g.X * g.window_points() * static_cast<int64_t>(kernels.size(1)) / g.channels;
    at::parallel_for(0, g.batch * g.channels * g.Z * g.Y, grain_size(work_per_row), [&](int64_t begin, int64_t end) {
      std::vector<T> row_values(args.halo.HX - 2 * g.kx);
      for (int64_t row = begin; row < end; ++row) {
        backward(args, row, row_values.data());
        const int64_t zy = row % (g.Z * g.Y), b = row / (g.Z * g.Y * g.channels);
        const T* m_row = m == nullptr ? nullptr : m + ((mask_batched ? b : 0) * g.Z * g.Y + zy) * g.X;
        scalar_t* out_row = out + row * g.X;
        for (int64_t x = 0; x < g.X; ++x)
          out_row[x] = static_cast<scalar_t>(m_row ? row_values[x] * m_row[x] : row_values[x]);
      }
    });
  });
  return grad;
}

}  // namespace spatialstats
