// The spatialstats ops: schemas, argument checks, and the device-independent steps around the
// kernels of two_point.h (window reduction, normalisation by the pair counts). Every op has one
// implementation registered for CPU and, when built with CUDA, the same one for CUDA.
//
//   pair_counts(mask (Bm, *spatial), window, periodic)               -> N (Bm, *window) float64
//   two_point(fields (B, C, *spatial), mask, counts, pairs, window, periodic) -> S (B, P, *window)
//   two_point_backward(grad (B, P, *window), fields, mask, counts, pairs, window, periodic)
//                                                                    -> dL/dfields (B, C, *spatial)
//
// S_ij(r) = sum_s g_i(s) g_j(s + r) / N(r) with g = mask * field, 0 where N(r) = 0; pairs is the
// flat list (i0, j0, i1, j1, ...); 1 to 3 spatial axes; any half-width k >= 0 per axis (output axis
// a holds r_a at index k_a + r_a). S is float64 for float64 fields and float32 otherwise.
#include <Python.h>

#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <map>
#include <tuple>

#include "two_point.h"

namespace spatialstats {

namespace {

using Axes3 = std::array<int64_t, 3>;

at::ScalarType accumulation_dtype(const at::Tensor& fields) {
  return fields.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// A list of one entry per spatial axis, as (z, y, x) with missing leading axes set to `fill`.
Axes3 as_zyx(at::IntArrayRef values, int64_t fill) {
  Axes3 zyx{fill, fill, fill};
  std::copy(values.begin(), values.end(), zyx.end() - values.size());
  return zyx;
}

// The problem of one call: the requested window and the geometry the kernels compute.
struct Problem {
  std::vector<int64_t> spatial;  // spatial shape, 1 to 3 axes
  std::vector<int64_t> window;   // requested half-widths, one per spatial axis
  Axes3 requested;               // the same as (kz, ky, kx)
  Geometry geometry;             // window reduced to distinct displacements

  std::vector<int64_t> shape_with_window(int64_t batch, int64_t pairs) const {
    std::vector<int64_t> shape{batch, pairs};
    for (int64_t k : window) shape.push_back(2 * k + 1);
    return shape;
  }
  std::vector<int64_t> zyx_window_shape(int64_t batch, int64_t pairs) const {
    return {batch, pairs, 2 * requested[0] + 1, 2 * requested[1] + 1, 2 * requested[2] + 1};
  }
  std::vector<int64_t> zyx_shape(int64_t batch, int64_t channels) const {
    const Axes3 n = as_zyx(spatial, 1);
    return {batch, channels, n[0], n[1], n[2]};
  }
};

Problem make_problem(const char* op, int64_t batch, int64_t channels, at::IntArrayRef spatial, at::IntArrayRef window,
                     bool periodic) {
  TORCH_CHECK(window.size() == spatial.size(), op, ": window must have one half-width per spatial axis (",
              spatial.size(), "), got ", window.size());
  for (int64_t k : window) TORCH_CHECK(k >= 0, op, ": window half-widths must be >= 0, got ", window);
  for (int64_t n : spatial) TORCH_CHECK(n > 0, op, ": every spatial axis needs at least one entry, got ", spatial);
  Problem problem{spatial.vec(), window.vec(), as_zyx(window, 0), {}};
  const Axes3 n = as_zyx(spatial, 1);
  Axes3 computed;
  for (int a = 0; a < 3; ++a) computed[a] = std::min(problem.requested[a], periodic ? n[a] / 2 : n[a] - 1);
  problem.geometry = {batch, channels, n[0], n[1], n[2], computed[0], computed[1], computed[2], periodic};
  return problem;
}

void check_fields(const char* op, const at::Tensor& fields) {
  TORCH_CHECK(fields.dim() >= 3 && fields.dim() <= 5, op,
              ": fields must have shape (B, C, *spatial) with 1 to 3 spatial axes, got shape ", fields.sizes());
  TORCH_CHECK(at::isFloatingType(fields.scalar_type()), op,
              ": fields must be float16, bfloat16, float32 or float64, got ", fields.scalar_type());
}

void check_pairs(const char* op, at::IntArrayRef pairs, int64_t channels) {
  TORCH_CHECK(!pairs.empty() && pairs.size() % 2 == 0, op,
              ": pairs must be a flat list (i0, j0, i1, j1, ...) of channel pairs, got ", pairs.size(), " entries");
  for (int64_t c : pairs)
    TORCH_CHECK(c >= 0 && c < channels, op, ": pairs names channel ", c, " but fields has ", channels, " channels");
}

void check_same_device(const char* op, const at::Tensor& t, const char* name, const at::Tensor& fields) {
  TORCH_CHECK(t.device() == fields.device(), op, ": ", name, " is on ", t.device(), " but fields is on ",
              fields.device());
}

void check_mask(const char* op, const at::Tensor& mask, int64_t batch, at::IntArrayRef spatial) {
  TORCH_CHECK(mask.scalar_type() == at::kBool || at::isFloatingType(mask.scalar_type()), op,
              ": mask must be bool or floating ([0, 1] weights), got ", mask.scalar_type());
  TORCH_CHECK(mask.dim() == static_cast<int64_t>(spatial.size()) + 1 && mask.sizes().slice(1) == spatial, op,
              ": mask must have shape (Bm, ", spatial, ") with Bm 1 or the batch size, got ", mask.sizes());
  TORCH_CHECK(mask.size(0) == 1 || mask.size(0) == batch, op, ": mask batch size must be 1 or ", batch, ", got ",
              mask.size(0));
}

// Periodic displacements repeat with period n: index of each requested r in the computed window.
at::Tensor wrapped_index(int64_t requested, int64_t computed, int64_t n, const at::Device& device) {
  return at::remainder(at::arange(-requested, requested + 1, at::TensorOptions(at::kLong).device(device)) + computed, n);
}

// Values over the computed window (dims 2, 3, 4) -> over the requested one: periodic displacements
// repeat, non-periodic ones with |r| >= n have no pairs (0).
at::Tensor expand_window(at::Tensor values, const Problem& problem) {
  const Geometry& g = problem.geometry;
  const Axes3 computed{g.kz, g.ky, g.kx}, n{g.Z, g.Y, g.X};
  if (problem.requested == computed) return values;
  if (!g.periodic) {
    const Axes3& k = problem.requested;
    return at::constant_pad_nd(values, {k[2] - g.kx, k[2] - g.kx, k[1] - g.ky, k[1] - g.ky, k[0] - g.kz, k[0] - g.kz});
  }
  for (int a = 0; a < 3; ++a)
    if (problem.requested[a] != computed[a])
      values = values.index_select(2 + a, wrapped_index(problem.requested[a], computed[a], n[a], values.device()));
  return values;
}

// The adjoint of expand_window: a gradient over the requested window -> over the computed one.
at::Tensor fold_window(at::Tensor grad, const Problem& problem) {
  const Geometry& g = problem.geometry;
  const Axes3 computed{g.kz, g.ky, g.kx}, n{g.Z, g.Y, g.X};
  for (int a = 0; a < 3; ++a) {
    const int64_t k = problem.requested[a], dim = 2 + a;
    if (k == computed[a]) continue;
    if (!g.periodic) {
      grad = grad.narrow(dim, k - computed[a], 2 * computed[a] + 1);
      continue;
    }
    std::vector<int64_t> shape = grad.sizes().vec();
    shape[dim] = 2 * computed[a] + 1;
    grad = at::zeros(shape, grad.options()).index_add_(dim, wrapped_index(k, computed[a], n[a], grad.device()), grad);
  }
  return grad;
}

// An auto pair's sums(r) for r before the window's centre, which the kernels may skip: sums(-r).
at::Tensor mirror_auto_pairs(at::Tensor sums, const std::vector<int64_t>& pairs, const Geometry& g) {
  bool any_auto = false;
  for (size_t p = 0; p < pairs.size(); p += 2) any_auto = any_auto || pairs[p] == pairs[p + 1];
  if (!any_auto) return sums;
  const int64_t window = g.window_points();
  const at::Tensor before_centre =
      (at::arange(window, sums.options().dtype(at::kLong)) < g.window_centre()).view(sums.sizes().slice(2));
  const at::Tensor mirrored = sums.flip({2, 3, 4});
  for (int64_t p = 0; p < sums.size(1); ++p) {
    if (pairs[2 * p] != pairs[2 * p + 1]) continue;
    sums.select(1, p).copy_(at::where(before_centre, mirrored.select(1, p), sums.select(1, p)));
  }
  return sums;
}

at::Tensor correlate(const at::Tensor& fields, const at::Tensor& mask, const std::vector<int64_t>& pairs,
                     const Geometry& geometry) {
#ifdef SPATIALSTATS_WITH_CUDA
  if (fields.is_cuda()) return mirror_auto_pairs(correlate_cuda(fields, mask, pairs, geometry), pairs, geometry);
#endif
  return mirror_auto_pairs(correlate_cpu(fields, mask, pairs, geometry), pairs, geometry);
}

// The gradient kernels, one per (channel c, partner d): the weights (B, P, *window) of the pairs
// (c, d) plus those of the pairs (d, c) mirrored through the centre; an auto pair makes one kernel.
struct GradientPlan {
  GradientTerms terms;  // per channel: (kernel, partner)
  at::Tensor kernels;   // (B, K, WZ, WY, WX)
};

GradientPlan gradient_plan(const at::Tensor& weights, const std::vector<int64_t>& pairs, int64_t channels) {
  GradientPlan plan{GradientTerms(channels), at::Tensor()};
  std::map<std::pair<int64_t, int64_t>, int64_t> kernel_of;  // (c, d) -> kernel
  std::vector<std::tuple<int64_t, int64_t, bool>> contributions;  // (kernel, pair, mirrored)
  const auto add = [&](int64_t c, int64_t d, int64_t pair, bool mirrored) {
    const auto [entry, added] = kernel_of.try_emplace({c, d}, static_cast<int64_t>(kernel_of.size()));
    if (added) plan.terms[c].push_back({entry->second, d});
    contributions.emplace_back(entry->second, pair, mirrored);
  };
  for (int64_t p = 0; p < static_cast<int64_t>(pairs.size()) / 2; ++p) {
    add(pairs[2 * p], pairs[2 * p + 1], p, false);
    add(pairs[2 * p + 1], pairs[2 * p], p, true);
  }
  std::vector<int64_t> shape = weights.sizes().vec();
  shape[1] = static_cast<int64_t>(kernel_of.size());
  plan.kernels = at::zeros(shape, weights.options());
  const at::Tensor mirrored = weights.flip({2, 3, 4});
  for (const auto& [kernel, pair, is_mirrored] : contributions)
    plan.kernels.select(1, kernel).add_((is_mirrored ? mirrored : weights).select(1, pair));
  return plan;
}

at::Tensor correlate_backward(const at::Tensor& weights, const at::Tensor& fields, const at::Tensor& mask,
                              const std::vector<int64_t>& pairs, const Geometry& geometry) {
  const GradientPlan plan = gradient_plan(weights, pairs, geometry.channels);
#ifdef SPATIALSTATS_WITH_CUDA
  if (fields.is_cuda()) return correlate_backward_cuda(plan.kernels, fields, mask, plan.terms, geometry);
#endif
  return correlate_backward_cpu(plan.kernels, fields, mask, plan.terms, geometry);
}

// N(r) over the requested window, (Bm, 1, WZ, WY, WX) float64, for a checked mask (Bm, *spatial).
at::Tensor masked_counts(const at::Tensor& mask, const Problem& problem) {
  Problem counting = problem;
  counting.geometry.batch = mask.size(0);
  counting.geometry.channels = 1;
  const at::Tensor weights = mask.to(at::kDouble).contiguous().view(counting.zyx_shape(mask.size(0), 1));
  return expand_window(correlate(weights, at::Tensor(), {0, 0}, counting.geometry), counting);
}

// N(r) without a mask: prod_a n_a (periodic) or prod_a max(n_a - |r_a|, 0), (1, 1, WZ, WY, WX) float64.
at::Tensor analytic_counts(const Problem& problem, const at::Device& device) {
  const Axes3 n = as_zyx(problem.spatial, 1);
  at::Tensor counts = at::ones({1, 1, 1, 1, 1}, at::TensorOptions(at::kDouble).device(device));
  for (int a = 0; a < 3; ++a) {
    const int64_t k = problem.requested[a];
    at::Tensor r = at::arange(-k, k + 1, counts.options());
    at::Tensor per_axis = problem.geometry.periodic ? at::full_like(r, static_cast<double>(n[a]))
                                                    : (static_cast<double>(n[a]) - r.abs()).clamp_min(0);
    std::vector<int64_t> shape{1, 1, 1, 1, 1};
    shape[2 + a] = 2 * k + 1;
    counts = counts * per_axis.view(shape);
  }
  return counts;
}

// N(r) as (Bm, 1, WZ, WY, WX) in the accumulation dtype: the given counts, else from the mask.
at::Tensor counts_for(const char* op, const at::Tensor& fields, const std::optional<at::Tensor>& mask,
                      const std::optional<at::Tensor>& counts, const Problem& problem) {
  const int64_t batch = fields.size(0);
  at::Tensor result;
  if (counts.has_value()) {
    check_same_device(op, *counts, "counts", fields);
    const std::vector<int64_t> window_shape = problem.shape_with_window(1, 1);
    TORCH_CHECK(counts->dim() == static_cast<int64_t>(problem.window.size()) + 1 &&
                    (counts->size(0) == 1 || counts->size(0) == batch) &&
                    counts->sizes().slice(1) == at::IntArrayRef(window_shape).slice(2),
                op, ": counts must have shape (1 or B, *window) as pair_counts returns, got ", counts->sizes());
    result = counts->reshape(problem.zyx_window_shape(counts->size(0), 1));
  } else if (mask.has_value()) {
    result = masked_counts(*mask, problem);
  } else {
    result = analytic_counts(problem, fields.device());
  }
  return result.to(accumulation_dtype(fields));
}

// Checked arguments of two_point and two_point_backward, with fields and mask as the kernels take them.
struct Arguments {
  Problem problem;
  std::vector<int64_t> pairs;
  at::Tensor fields;  // (B, C, Z, Y, X) contiguous
  at::Tensor mask;    // (Bm, Z, Y, X) contiguous in the accumulation dtype, or undefined
  at::Tensor counts;  // (Bm, 1, WZ, WY, WX) in the accumulation dtype
};

Arguments check_arguments(const char* op, const at::Tensor& fields, const std::optional<at::Tensor>& mask,
                          const std::optional<at::Tensor>& counts, at::IntArrayRef pairs, at::IntArrayRef window,
                          bool periodic) {
  check_fields(op, fields);
  const int64_t batch = fields.size(0), channels = fields.size(1);
  check_pairs(op, pairs, channels);
  Problem problem = make_problem(op, batch, channels, fields.sizes().slice(2), window, periodic);
  at::Tensor kernel_mask;
  if (mask.has_value()) {
    check_same_device(op, *mask, "mask", fields);
    check_mask(op, *mask, batch, problem.spatial);
    const std::vector<int64_t> shape = problem.zyx_shape(mask->size(0), 1);
    kernel_mask = mask->to(accumulation_dtype(fields)).contiguous().view({shape[0], shape[2], shape[3], shape[4]});
  }
  at::Tensor kernel_counts = counts_for(op, fields, mask, counts, problem);
  at::Tensor kernel_fields = fields.contiguous().view(problem.zyx_shape(batch, channels));
  return {std::move(problem), pairs.vec(), kernel_fields, kernel_mask, kernel_counts};
}

at::Tensor divide_by_counts(const at::Tensor& values, const at::Tensor& counts) {
  const at::Tensor has_pairs = counts > 0;
  return at::where(has_pairs, values / at::where(has_pairs, counts, at::ones_like(counts)), 0);
}

at::Tensor pair_counts(const at::Tensor& mask, at::IntArrayRef window, bool periodic) {
  const char* op = "spatialstats::pair_counts";
  TORCH_CHECK(mask.dim() >= 2 && mask.dim() <= 4, op,
              ": mask must have shape (Bm, *spatial) with 1 to 3 spatial axes, got shape ", mask.sizes());
  Problem problem = make_problem(op, mask.size(0), 1, mask.sizes().slice(1), window, periodic);
  check_mask(op, mask, mask.size(0), problem.spatial);
  return masked_counts(mask, problem).view(problem.shape_with_window(mask.size(0), 1)).squeeze(1);
}

at::Tensor two_point(const at::Tensor& fields, const std::optional<at::Tensor>& mask,
                     const std::optional<at::Tensor>& counts, at::IntArrayRef pairs, at::IntArrayRef window,
                     bool periodic) {
  const Arguments args =
      check_arguments("spatialstats::two_point", fields, mask, counts, pairs, window, periodic);
  const at::Tensor sums = expand_window(correlate(args.fields, args.mask, args.pairs, args.problem.geometry), args.problem);
  const int64_t n_pairs = static_cast<int64_t>(pairs.size()) / 2;
  return divide_by_counts(sums, args.counts).view(args.problem.shape_with_window(fields.size(0), n_pairs));
}

at::Tensor two_point_backward(const at::Tensor& grad, const at::Tensor& fields, const std::optional<at::Tensor>& mask,
                              const std::optional<at::Tensor>& counts, at::IntArrayRef pairs, at::IntArrayRef window,
                              bool periodic) {
  const char* op = "spatialstats::two_point_backward";
  const Arguments args = check_arguments(op, fields, mask, counts, pairs, window, periodic);
  const int64_t n_pairs = static_cast<int64_t>(pairs.size()) / 2;
  check_same_device(op, grad, "grad", fields);
  const std::vector<int64_t> expected = args.problem.shape_with_window(fields.size(0), n_pairs);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(expected), op, ": grad must have the shape of two_point's result ",
              at::IntArrayRef(expected), ", got ", grad.sizes());
  TORCH_CHECK(at::isFloatingType(grad.scalar_type()), op, ": grad must be floating, got ", grad.scalar_type());
  const at::Tensor per_displacement =
      grad.to(accumulation_dtype(fields)).reshape(args.problem.zyx_window_shape(fields.size(0), n_pairs));
  const at::Tensor weights = fold_window(divide_by_counts(per_displacement, args.counts), args.problem).contiguous();
  return correlate_backward(weights, args.fields, args.mask, args.pairs, args.problem.geometry).view(fields.sizes());
}

}  // namespace

TORCH_LIBRARY(spatialstats, m) {
  m.def("pair_counts(Tensor mask, int[] window, bool periodic) -> Tensor");
  m.def("two_point(Tensor fields, Tensor? mask, Tensor? counts, int[] pairs, int[] window, bool periodic) -> Tensor");
  m.def(
      "two_point_backward(Tensor grad, Tensor fields, Tensor? mask, Tensor? counts, int[] pairs, int[] window, "
      "bool periodic) -> Tensor");
}

TORCH_LIBRARY_IMPL(spatialstats, CPU, m) {
  m.impl("pair_counts", &pair_counts);
  m.impl("two_point", &two_point);
  m.impl("two_point_backward", &two_point_backward);
}

#ifdef SPATIALSTATS_WITH_CUDA
TORCH_LIBRARY_IMPL(spatialstats, CUDA, m) {
  m.impl("pair_counts", &pair_counts);
  m.impl("two_point", &two_point);
  m.impl("two_point_backward", &two_point_backward);
}
#endif

}  // namespace spatialstats

// Importing spatialstats._C loads this library and so registers the ops; WITH_CUDA says whether
// the CUDA implementations were compiled in.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "spatialstats native ops (torch.ops.spatialstats)", -1,
                                   nullptr};
  PyObject* module = PyModule_Create(&module_def);
#ifdef SPATIALSTATS_WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (module != nullptr && PyModule_AddIntConstant(module, "WITH_CUDA", with_cuda) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
