// Reductions over axes: sum, mean, max. Axes {} means every axis.
//
// Every reduction visits the input once and sends element i to its output slot: the
// input's multi-index with the reduced axes set to 0 (for_each_reduced walks both).
// Backward goes the other way: each input element reads the gradient of its slot.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "tinygrad-cpp/ops/helpers.h"

namespace tg {
namespace {

struct Reduction {
  std::vector<bool> reduced;  // per input axis
  Shape keepdim_shape;        // the output shape with reduced axes kept as 1
  Shape output_shape;         // what the op returns (keepdim or not)
};

Reduction plan_reduction(const Tensor& x, std::vector<int64_t> axes, bool keepdim, const char* op) {
  Reduction r;
  const int nd = x.ndim();
  r.reduced.assign(nd, axes.empty());
  for (int64_t a : axes) {
    const int axis = normalize_axis(static_cast<int>(a), nd, op);
    if (r.reduced[axis])
      throw Error(fmt::format("{}: axis {} listed twice for shape {}", op, a, shape_str(x.shape())));
    r.reduced[axis] = true;
  }
  for (int a = 0; a < nd; ++a) {
    r.keepdim_shape.push_back(r.reduced[a] ? 1 : x.shape()[a]);
    if (!r.reduced[a] || keepdim) r.output_shape.push_back(r.keepdim_shape.back());
  }
  return r;
}

// Calls visit(input_index, output_index) for every input element.
template <class F>
void for_each_reduced(const Shape& shape, const std::vector<bool>& reduced, F visit) {
  const int nd = static_cast<int>(shape.size());
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  std::vector<int64_t> out_stride(nd, 0);
  int64_t stride = 1;
  for (int a = nd - 1; a >= 0; --a) {
    out_stride[a] = reduced[a] ? 0 : stride;
    if (!reduced[a]) stride *= shape[a];
  }
  std::vector<int64_t> index(nd, 0);
  int64_t out = 0;
  for (int64_t i = 0; i < n; ++i) {
    visit(i, out);
    for (int a = nd - 1; a >= 0; --a) {
      out += out_stride[a];
      if (++index[a] < shape[a]) break;
      out -= out_stride[a] * shape[a];
      index[a] = 0;
    }
  }
}

Tensor sum_kernel(const Tensor& x, const Reduction& r) {
  Tensor out = Tensor::zeros(r.output_shape);
  const float* px = x.data();
  float* po = out.data();
  for_each_reduced(x.shape(), r.reduced, [&](int64_t i, int64_t o) { po[o] += px[i]; });
  return out;
}

// Each input element gets the gradient of the output slot it was reduced into.
Tensor expand_gradient(const Tensor& g, const Shape& input_shape, const std::vector<bool>& reduced, float scale) {
  Tensor out = Tensor::empty(input_shape);
  const float* pg = g.data();
  float* po = out.data();
  for_each_reduced(input_shape, reduced, [&](int64_t i, int64_t o) { po[i] = pg[o] * scale; });
  return out;
}

// What sum, mean and max save: which input axes they reduced (and, for max, where the
// maximum of each slot was).
struct ReductionState : SavedState {
  ReductionState(std::vector<bool> reduced_, bool keepdim_, Tensor first_maximum_ = Tensor())
      : reduced(std::move(reduced_)), keepdim(keepdim_), first_maximum(std::move(first_maximum_)) {}
  std::vector<bool> reduced;  // per input axis
  bool keepdim;
  Tensor first_maximum;       // max only: 1 at the first maximum of each slot, 0 elsewhere
  std::string describe() const override {
    std::vector<int64_t> axes;
    for (size_t a = 0; a < reduced.size(); ++a)
      if (reduced[a]) axes.push_back(static_cast<int64_t>(a));
    return fmt::format("axes={}{}", shape_str(axes), keepdim ? " keepdim" : "");
  }
};

}  // namespace

// ---- sum ----
Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  const Reduction r = plan_reduction(x, axes, keepdim, "sum");
  return tape().record(Op::Sum, {x}, sum_kernel(x, r), ReductionState(r.reduced, keepdim));
}
// dx[i] = g[slot(i)]
static std::vector<Tensor> sum_backward(const Entry& e, const Tensor& g) {
  return {expand_gradient(g, e.input(0).shape(), e.saved<ReductionState>().reduced, 1.f)};
}
const OpKind Op::Sum{"sum", sum_backward};

// ---- mean ----
Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  const Reduction r = plan_reduction(x, axes, keepdim, "mean");
  Tensor out = sum_kernel(x, r);
  const int64_t count = std::max<int64_t>(1, x.numel() / std::max<int64_t>(1, out.numel()));
  for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] /= static_cast<float>(count);
  return tape().record(Op::Mean, {x}, out, ReductionState(r.reduced, keepdim));
}
// dx[i] = g[slot(i)] / (elements per slot)
static std::vector<Tensor> mean_backward(const Entry& e, const Tensor& g) {
  const int64_t count = std::max<int64_t>(1, e.input(0).numel() / std::max<int64_t>(1, g.numel()));
  return {expand_gradient(g, e.input(0).shape(), e.saved<ReductionState>().reduced, 1.f / static_cast<float>(count))};
}
const OpKind Op::Mean{"mean", mean_backward};

// ---- max ----
Tensor max(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  const Reduction r = plan_reduction(x, axes, keepdim, "max");
  if (x.numel() == 0) throw Error("max: cannot reduce an empty tensor of shape " + shape_str(x.shape()));
  Tensor out = Tensor::full(r.output_shape, -std::numeric_limits<float>::infinity());
  std::vector<int64_t> winner(static_cast<size_t>(out.numel()), -1);
  const float* px = x.data();
  float* po = out.data();
  for_each_reduced(x.shape(), r.reduced, [&](int64_t i, int64_t o) {
    // The first maximum wins; a NaN beats every number (PyTorch's max propagates NaN).
    if (winner[o] < 0 || px[i] > po[o] || (std::isnan(px[i]) && !std::isnan(po[o]))) {
      po[o] = px[i];
      winner[o] = i;
    }
  });
  // The mask marks the first maximum of each slot: the one element the gradient flows to.
  Tensor mask = Tensor::zeros(x.shape());
  for (int64_t w : winner) mask.data()[w] = 1.f;
  return tape().record(Op::Max, {x}, out, ReductionState(r.reduced, keepdim, mask));
}
// dx[i] = g[slot(i)] if i is its slot's (first) maximum, else 0
static std::vector<Tensor> max_backward(const Entry& e, const Tensor& g) {
  const ReductionState& state = e.saved<ReductionState>();
  Tensor dx = expand_gradient(g, e.input(0).shape(), state.reduced, 1.f);
  const float* mask = state.first_maximum.data();
  for (int64_t i = 0; i < dx.numel(); ++i) dx.data()[i] *= mask[i];
  return {dx};
}
const OpKind Op::Max{"max", max_backward};

}  // namespace tg
