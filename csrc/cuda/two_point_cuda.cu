// CUDA kernels of two_point.h; accumulation in float (double for float64 fields), int64 offsets
// into global memory, fp16/bf16/fp32/fp64 fields. 2D runs as one z slice, 3D as a loop over slices.
//
// forward   A block owns one rz and a chunk of at most 32 x 32 displacements (ry, rx), and walks
//           its share of the 32 x 32 position tiles (one z slice each): it stages the tile of
//           a = g_i and the tile of b = g_j shifted by the chunk, with a halo as wide as the chunk,
//           in shared memory. Thread (group, ry block, rx) sums QY consecutive ry at one rx over the
//           tile columns of its group, sliding down the rows: one shared load of b and one of a per
//           QY multiply-adds. Its partial sums go out with one atomicAdd per ry.
//           The chunks (forward_chunks.h) have a boundary at ry = 0, so that an auto pair skips
//           every chunk before the window's centre: it computes ky + 1 of the 2 ky + 1 rows of a
//           2D window (ops.cpp mirrors the others).
// backward  A block owns a 32 x 32 tile of output positions of one (b, c); thread (ty, tx) computes
//           rows 4 ty .. 4 ty + 3 of column tx. For each gradient term, rz and chunk of at most
//           32 x 32 kernel weights it stages the partner's halo tile and the weights in shared
//           memory and slides down the partner rows for each rx. No atomics: deterministic.
// The launch configuration (chunking, QY, thread groups, grid) comes from the shape; shared
// memory stays under 48 KiB for every shape (double: 41.5 KiB at most).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "../two_point.h"
#include "forward_chunks.h"

namespace spatialstats {
namespace {

constexpr int kTile = 32;            // positions per tile side
constexpr int kThreads = 256;
constexpr int kMinBlocksPerSM = 2;   // lets ptxas use up to 128 registers: no spills in any kernel
constexpr int kMaxRowsPerThread = 8;  // forward: QY
constexpr int kBackwardRows = 4;     // backward: output rows per thread (kTile * kTile / kThreads)
constexpr int kMaxPairsPerLaunch = 256;
constexpr int kMaxChannelsPerLaunch = 128;
constexpr int kMaxTermsPerLaunch = 256;
constexpr int kMaxGridY = 65535;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int multiprocessors() {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  return count;
}

// The kernels' view of a Geometry.
struct Shape {
  int64_t channels, Z, Y, X, plane;
  int kz, ky, kx;
  bool periodic, mask_batched;

  __host__ __device__ int64_t window_points() const {
    return int64_t(2 * kz + 1) * (2 * ky + 1) * (2 * kx + 1);
  }
};

Shape make_shape(const Geometry& g, const at::Tensor& mask) {
  return {g.channels, g.Z, g.Y, g.X, g.points(), static_cast<int>(g.kz), static_cast<int>(g.ky),
          static_cast<int>(g.kx), g.periodic, mask.defined() && mask.size(0) > 1};
}

// Index i on an axis of n points: wrapped (periodic) or -1 outside the grid.
__device__ __forceinline__ int64_t wrap_or_outside(int64_t i, int64_t n, bool periodic) {
  if (periodic) {
    i %= n;
    return i < 0 ? i + n : i;
  }
  return i >= 0 && i < n ? i : -1;
}

// tile[row][col] = g(z, y0 + row, x0 + col) for a plane (Z, Y, X) of a field and its mask (or
// nullptr); outside the grid the values wrap when `wrap`, else they are 0. z must be in the grid.
template <class scalar_t, class acc_t>
__device__ void load_tile(acc_t* tile, int rows, int cols, const scalar_t* field, const acc_t* mask, const Shape& s,
                          int64_t z, int64_t y0, int64_t x0, bool wrap) {
  for (int e = threadIdx.x; e < rows * cols; e += blockDim.x) {
    const int64_t y = wrap_or_outside(y0 + e / cols, s.Y, wrap), x = wrap_or_outside(x0 + e % cols, s.X, wrap);
    acc_t value = 0;
    if (y >= 0 && x >= 0) {
      const int64_t offset = (z * s.Y + y) * s.X + x;
      value = static_cast<acc_t>(field[offset]);
      if (mask != nullptr) value *= mask[offset];
    }
    tile[e] = value;
  }
}

// acc[q] += factor(step) * column[(step + q) * stride] for step < steps, q < Q: Q accumulators
// sliding down a column of a shared-memory tile, one new load per step (the rest stay in registers).
template <int Unroll, int Q, class acc_t, class Factor>
__device__ __forceinline__ void accumulate_sliding(acc_t (&acc)[Q], const acc_t* column, int stride, int steps,
                                                   Factor factor) {
  acc_t window[Q];
#pragma unroll
  for (int q = 0; q + 1 < Q; ++q) window[q] = column[q * stride];
#pragma unroll Unroll
  for (int step = 0; step < steps; ++step) {
    window[Q - 1] = column[(step + Q - 1) * stride];
    const acc_t f = factor(step);
#pragma unroll
    for (int q = 0; q < Q; ++q) acc[q] += f * window[q];
#pragma unroll
    for (int q = 0; q + 1 < Q; ++q) window[q] = window[q + 1];
  }
}

// ------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------

struct PairTable {
  int count;       // pairs of this launch
  int first_pair;  // index of its first pair in the output
  int first[kMaxPairsPerLaunch], second[kMaxPairsPerLaunch];
};

struct ForwardLaunch {
  WindowChunks window;
  int row_blocks;               // thread rows per chunk, each summing rows_per_thread (QY) ry
  int rows_per_thread;
  int groups;                   // thread groups that split a tile's columns
  int threads;
  int64_t tiles_y, tiles_x, tiles;  // position tiles (tiles = Z * tiles_y * tiles_x)
  int64_t tile_groups;              // block t of a chunk takes tiles t, t + tile_groups, ...
  int64_t chunks;                   // window.count()
  int64_t total_pairs;              // P of the output
  int shared_bytes;
};

ForwardLaunch forward_launch(const Geometry& g, int64_t total_pairs, int64_t grid_y, int element_bytes) {
  ForwardLaunch L{};
  L.window = window_chunks(static_cast<int>(g.kz), static_cast<int>(g.ky), static_cast<int>(g.kx));
  L.row_blocks = static_cast<int>(ceil_div(L.window.rows, kMaxRowsPerThread));
  L.rows_per_thread = static_cast<int>(ceil_div(L.window.rows, L.row_blocks));
  const int slots = L.row_blocks * L.window.cols;
  L.groups = 1;  // a power of two, so that the groups share the tile's kTile columns evenly
  while (2 * L.groups <= std::min(kTile, kThreads / slots)) L.groups *= 2;
  L.threads = static_cast<int>(ceil_div(L.groups * slots, 32) * 32);
  L.tiles_y = ceil_div(g.Y, kTile);
  L.tiles_x = ceil_div(g.X, kTile);
  L.tiles = g.Z * L.tiles_y * L.tiles_x;
  L.chunks = L.window.count();
  const int64_t target_blocks = 8 * static_cast<int64_t>(multiprocessors());
  L.tile_groups = std::clamp<int64_t>(ceil_div(target_blocks, L.chunks * grid_y), 1, L.tiles);
  L.total_pairs = total_pairs;
  const int b_rows = kTile + L.row_blocks * L.rows_per_thread - 1, b_cols = kTile + L.window.cols - 1;
  L.shared_bytes = (kTile * kTile + b_rows * b_cols) * element_bytes;
  return L;
}

template <class scalar_t, class acc_t, int QY>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
    forward_kernel(const scalar_t* __restrict__ fields, const acc_t* __restrict__ mask, acc_t* __restrict__ sums,
                   Shape s, ForwardLaunch L, PairTable pairs, int64_t batch) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* a_tile = reinterpret_cast<acc_t*>(shared_bytes);  // kTile x kTile
  acc_t* b_tile = a_tile + kTile * kTile;                    // b_rows x b_cols
  const int b_rows = kTile + L.row_blocks * QY - 1, b_cols = kTile + L.window.cols - 1;

  const Chunk chunk = chunk_at(L.window, blockIdx.x % L.chunks);
  const int64_t tile_group = blockIdx.x / L.chunks;
  const int slots = L.row_blocks * L.window.cols;
  const int group = threadIdx.x / slots, slot = threadIdx.x % slots;
  const int first_row = slot / L.window.cols * QY, col = slot % L.window.cols;  // within the chunk
  const bool computes = group < L.groups;
  const bool skip_auto = before_centre(chunk);

  for (int64_t bp = blockIdx.y; bp < batch * pairs.count; bp += gridDim.y) {
    const int64_t b = bp / pairs.count;
    const int p = static_cast<int>(bp % pairs.count);
    if (skip_auto && pairs.first[p] == pairs.second[p]) continue;  // the same for the whole block
    const scalar_t* field_i = fields + (b * s.channels + pairs.first[p]) * s.plane;
    const scalar_t* field_j = fields + (b * s.channels + pairs.second[p]) * s.plane;
    const acc_t* m = mask == nullptr ? nullptr : mask + (s.mask_batched ? b * s.plane : 0);
    acc_t acc[QY] = {};
    for (int64_t tile = tile_group; tile < L.tiles; tile += L.tile_groups) {
      const int64_t z = tile / (L.tiles_y * L.tiles_x);
      const int64_t y0 = tile / L.tiles_x % L.tiles_y * kTile, x0 = tile % L.tiles_x * kTile;
      const int64_t partner_z = wrap_or_outside(z + chunk.rz, s.Z, s.periodic);
      if (partner_z < 0) continue;  // the same for the whole block
      __syncthreads();              // the previous tiles are consumed
      load_tile(a_tile, kTile, kTile, field_i, m, s, z, y0, x0, false);
      load_tile(b_tile, b_rows, b_cols, field_j, m, s, partner_z, y0 + chunk.ry0, x0 + chunk.rx0, s.periodic);
      __syncthreads();
      if (!computes) continue;
      for (int x = group; x < kTile; x += L.groups) {
        // Down the tile's rows y: ry = first_row + q pairs a(y, x) with b at tile row y + first_row + q.
        accumulate_sliding<kTile>(acc, b_tile + first_row * b_cols + x + col, b_cols, kTile,
                                  [&](int y) { return a_tile[y * kTile + x]; });
      }
    }
    if (computes && chunk.rx0 + col < chunk.rx_end) {
      const int64_t WY = 2 * s.ky + 1, WX = 2 * s.kx + 1;
      acc_t* out = sums + ((b * L.total_pairs + pairs.first_pair + p) * (2 * s.kz + 1) + chunk.rz + s.kz) * WY * WX +
                   (chunk.rx0 + col + s.kx);
#pragma unroll
      for (int q = 0; q < QY; ++q) {
        const int ry = chunk.ry0 + first_row + q;
        if (ry >= chunk.ry_begin && ry < chunk.ry_end) atomicAdd(out + (ry + s.ky) * WX, acc[q]);
      }
    }
  }
}

// forward_kernel with QY = rows_per_thread (1 <= rows_per_thread <= QY), chosen at compile time.
template <class scalar_t, class acc_t, int QY = kMaxRowsPerThread>
void launch_forward(dim3 grid, cudaStream_t stream, const scalar_t* fields, const acc_t* mask, acc_t* sums,
                    const Shape& s, const ForwardLaunch& L, const PairTable& pairs, int64_t batch) {
  if constexpr (QY > 1) {
    if (L.rows_per_thread < QY) return launch_forward<scalar_t, acc_t, QY - 1>(grid, stream, fields, mask, sums, s, L, pairs, batch);
  }
  forward_kernel<scalar_t, acc_t, QY><<<grid, L.threads, L.shared_bytes, stream>>>(fields, mask, sums, s, L, pairs, batch);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------

struct TermTable {
  int first_channel, channels;           // channels of this launch
  int begin[kMaxChannelsPerLaunch + 1];  // terms of channel first_channel + c: begin[c] .. begin[c + 1] - 1
  int kernel[kMaxTermsPerLaunch], partner[kMaxTermsPerLaunch];
};

struct BackwardLaunch {
  int chunk_rows, chunk_cols, y_chunks, x_chunks;
  int64_t tiles_y, tiles_x;
  int64_t kernels;
  int shared_bytes;
};

BackwardLaunch backward_launch(const Geometry& g, int64_t kernels, int element_bytes) {
  BackwardLaunch L{};
  L.y_chunks = static_cast<int>(ceil_div(2 * g.ky + 1, kMaxChunk));
  L.chunk_rows = static_cast<int>(ceil_div(2 * g.ky + 1, L.y_chunks));
  L.x_chunks = static_cast<int>(ceil_div(2 * g.kx + 1, kMaxChunk));
  L.chunk_cols = static_cast<int>(ceil_div(2 * g.kx + 1, L.x_chunks));
  L.tiles_y = ceil_div(g.Y, kTile);
  L.tiles_x = ceil_div(g.X, kTile);
  L.kernels = kernels;
  L.shared_bytes = ((kTile + L.chunk_rows - 1) * (kTile + L.chunk_cols - 1) + L.chunk_rows * L.chunk_cols) * element_bytes;
  return L;
}

template <class scalar_t, class acc_t>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
    backward_kernel(const acc_t* __restrict__ kernels, const scalar_t* __restrict__ fields,
                    const acc_t* __restrict__ mask, scalar_t* __restrict__ grad, Shape s, BackwardLaunch L,
                    TermTable terms, int64_t batch) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int part_rows = kTile + L.chunk_rows - 1, part_cols = kTile + L.chunk_cols - 1;
  acc_t* partner_tile = reinterpret_cast<acc_t*>(shared_bytes);  // part_rows x part_cols
  acc_t* weight_tile = partner_tile + part_rows * part_cols;      // chunk_rows x chunk_cols

  const int64_t z = blockIdx.x / (L.tiles_y * L.tiles_x);
  const int64_t y0 = blockIdx.x / L.tiles_x % L.tiles_y * kTile, x0 = blockIdx.x % L.tiles_x * kTile;
  const int tx = threadIdx.x % kTile, first_row = threadIdx.x / kTile * kBackwardRows;
  const int WY = 2 * s.ky + 1, WX = 2 * s.kx + 1;

  for (int64_t bc = blockIdx.y; bc < batch * terms.channels; bc += gridDim.y) {
    const int64_t b = bc / terms.channels;
    const int c = static_cast<int>(bc % terms.channels);
    const acc_t* m = mask == nullptr ? nullptr : mask + (s.mask_batched ? b * s.plane : 0);
    acc_t acc[kBackwardRows] = {};
    for (int t = terms.begin[c]; t < terms.begin[c + 1]; ++t) {
      const scalar_t* partner = fields + (b * s.channels + terms.partner[t]) * s.plane;
      const acc_t* kernel = kernels + (b * L.kernels + terms.kernel[t]) * s.window_points();
      for (int rz = -s.kz; rz <= s.kz; ++rz) {
        const int64_t partner_z = wrap_or_outside(z + rz, s.Z, s.periodic);
        if (partner_z < 0) continue;  // the same for the whole block
        for (int chunk = 0; chunk < L.y_chunks * L.x_chunks; ++chunk) {
          const int ry0 = chunk / L.x_chunks * L.chunk_rows - s.ky, rx0 = chunk % L.x_chunks * L.chunk_cols - s.kx;
          const int rows = min(L.chunk_rows, s.ky + 1 - ry0), cols = min(L.chunk_cols, s.kx + 1 - rx0);
          __syncthreads();  // the previous tiles are consumed
          load_tile(partner_tile, part_rows, part_cols, partner, m, s, partner_z, y0 + ry0, x0 + rx0, s.periodic);
          for (int e = threadIdx.x; e < rows * cols; e += blockDim.x)
            weight_tile[e] = kernel[(int64_t(rz + s.kz) * WY + ry0 + e / cols + s.ky) * WX + rx0 + e % cols + s.kx];
          __syncthreads();
          for (int cx = 0; cx < cols; ++cx) {
            // Down the weight rows cy: output row first_row + q takes the partner at tile row first_row + q + cy.
            accumulate_sliding<4>(acc, partner_tile + first_row * part_cols + tx + cx, part_cols, rows,
                                  [&](int cy) { return weight_tile[cy * cols + cx]; });
          }
        }
      }
    }
    const int64_t x = x0 + tx;
#pragma unroll
    for (int q = 0; q < kBackwardRows; ++q) {
      const int64_t y = y0 + first_row + q;
      if (y < s.Y && x < s.X) {
        const int64_t offset = (z * s.Y + y) * s.X + x;
        const acc_t value = m == nullptr ? acc[q] : acc[q] * m[offset];
        grad[(b * s.channels + terms.first_channel + c) * s.plane + offset] = static_cast<scalar_t>(value);
      }
    }
  }
}

// The channels [first, first + channels) whose terms fit one launch, with their terms.
TermTable term_table(const GradientTerms& terms, int first) {
  TermTable table{};
  table.first_channel = first;
  int count = 0;
  for (int c = first; c < static_cast<int>(terms.size()) && table.channels < kMaxChannelsPerLaunch; ++c) {
    if (count + static_cast<int>(terms[c].size()) > kMaxTermsPerLaunch) break;
    table.begin[table.channels] = count;
    for (const GradientTerm& term : terms[c]) {
      table.kernel[count] = static_cast<int>(term.kernel);
      table.partner[count] = static_cast<int>(term.partner);
      ++count;
    }
    ++table.channels;
  }
  table.begin[table.channels] = count;
  TORCH_CHECK(table.channels > 0, "spatialstats::two_point_backward: channel ", first, " is paired with ",
              terms[first].size(), " channels; the CUDA kernel takes at most ", kMaxTermsPerLaunch);
  return table;
}

template <class scalar_t>
using accumulation_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

}  // namespace

at::Tensor correlate_cuda(const at::Tensor& fields, const at::Tensor& mask, const std::vector<int64_t>& pairs,
                          const Geometry& g) {
  const c10::cuda::OptionalCUDAGuard device_guard(fields.device());
  const int64_t n_pairs = static_cast<int64_t>(pairs.size()) / 2;
  const at::ScalarType sum_dtype = fields.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor sums = at::zeros({g.batch, n_pairs, 2 * g.kz + 1, 2 * g.ky + 1, 2 * g.kx + 1}, fields.options().dtype(sum_dtype));
  if (g.batch == 0) return sums;
  const Shape s = make_shape(g, mask);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fields.scalar_type(), "spatialstats_correlate_cuda", [&] {
    using acc_t = accumulation_t<scalar_t>;
    for (int64_t first = 0; first < n_pairs; first += kMaxPairsPerLaunch) {
      PairTable table{};
      table.count = static_cast<int>(std::min<int64_t>(kMaxPairsPerLaunch, n_pairs - first));
      table.first_pair = static_cast<int>(first);
      for (int p = 0; p < table.count; ++p) {
        table.first[p] = static_cast<int>(pairs[2 * (first + p)]);
        table.second[p] = static_cast<int>(pairs[2 * (first + p) + 1]);
      }
      const int64_t grid_y = std::min<int64_t>(g.batch * table.count, kMaxGridY);
      const ForwardLaunch L = forward_launch(g, n_pairs, grid_y, sizeof(acc_t));
      TORCH_CHECK(L.chunks * L.tile_groups < (int64_t(1) << 31), "spatialstats::two_point: window too large for the CUDA grid");
      const dim3 grid(static_cast<unsigned>(L.chunks * L.tile_groups), static_cast<unsigned>(grid_y));
      launch_forward<scalar_t, acc_t>(grid, stream, fields.data_ptr<scalar_t>(),
                                      mask.defined() ? mask.data_ptr<acc_t>() : nullptr, sums.data_ptr<acc_t>(), s, L,
                                      table, g.batch);
    }
  });
  return sums;
}

at::Tensor correlate_backward_cuda(const at::Tensor& kernels, const at::Tensor& fields, const at::Tensor& mask,
                                   const GradientTerms& terms, const Geometry& g) {
  const c10::cuda::OptionalCUDAGuard device_guard(fields.device());
  at::Tensor grad = at::empty_like(fields);
  if (g.batch == 0) return grad;
  const Shape s = make_shape(g, mask);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fields.scalar_type(), "spatialstats_correlate_backward_cuda", [&] {
    using acc_t = accumulation_t<scalar_t>;
    const BackwardLaunch L = backward_launch(g, kernels.size(1), sizeof(acc_t));
    const int64_t tiles = g.Z * L.tiles_y * L.tiles_x;
    TORCH_CHECK(tiles < (int64_t(1) << 31), "spatialstats::two_point_backward: fields too large for the CUDA grid");
    for (int first = 0; first < g.channels;) {
      const TermTable table = term_table(terms, first);
      const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min<int64_t>(g.batch * table.channels, kMaxGridY)));
      backward_kernel<scalar_t, acc_t><<<grid, kThreads, L.shared_bytes, stream>>>(
          kernels.data_ptr<acc_t>(), fields.data_ptr<scalar_t>(), mask.defined() ? mask.data_ptr<acc_t>() : nullptr,
          grad.data_ptr<scalar_t>(), s, L, table, g.batch);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      first += table.channels;
    }
  });
  return grad;
}

}  // namespace spatialstats
