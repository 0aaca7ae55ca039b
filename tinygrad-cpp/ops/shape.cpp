// Shape ops: reshape/flatten, permute/transpose, slice, cat, pad.
// None of them computes anything; each moves values, and its backward moves the
// gradient back to where the value came from.
#include <fmt/format.h>

#include <cstring>
#include <numeric>

#include "tinygrad-cpp/ops/helpers.h"

namespace tg {
namespace {

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t a = static_cast<int64_t>(shape.size()) - 2; a >= 0; --a) strides[a] = strides[a + 1] * shape[a + 1];
  return strides;
}

// Copies the box of size `box` starting at `src_start` in src to `dst_start` in dst.
void copy_box(const float* src, const Shape& src_shape, const std::vector<int64_t>& src_start, float* dst,
              const Shape& dst_shape, const std::vector<int64_t>& dst_start, const Shape& box) {
  const int nd = static_cast<int>(box.size());
  if (shape_numel(box) == 0) return;
  if (nd == 0) {
    dst[0] = src[0];
    return;
  }
  const auto ss = contiguous_strides(src_shape), ds = contiguous_strides(dst_shape);
  int64_t s = 0, d = 0;
  for (int a = 0; a < nd; ++a) {
    s += src_start[a] * ss[a];
    d += dst_start[a] * ds[a];
  }
  const int64_t rows = shape_numel(box) / box[nd - 1];
  const size_t row_bytes = static_cast<size_t>(box[nd - 1]) * sizeof(float);
  std::vector<int64_t> index(nd, 0);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + d, src + s, row_bytes);
    for (int a = nd - 2; a >= 0; --a) {
      s += ss[a];
      d += ds[a];
      if (++index[a] < box[a]) break;
      s -= ss[a] * box[a];
      d -= ds[a] * box[a];
      index[a] = 0;
    }
  }
}

std::vector<int64_t> axis_start(int nd, int axis, int64_t at) {
  std::vector<int64_t> start(nd, 0);
  start[axis] = at;
  return start;
}

// permute saves its order; slice its axis and range; cat its axis; pad the amounts.
struct PermuteState : SavedState {
  explicit PermuteState(std::vector<int64_t> order_) : order(std::move(order_)) {}
  std::vector<int64_t> order;  // output axis i is input axis order[i]
  std::string describe() const override { return fmt::format("order={}", shape_str(order)); }
};
struct SliceState : SavedState {
  SliceState(int axis_, int64_t start_, int64_t stop_) : axis(axis_), start(start_), stop(stop_) {}
  int axis;
  int64_t start, stop;
  std::string describe() const override { return fmt::format("axis={} range=[{},{})", axis, start, stop); }
};
struct CatState : SavedState {
  explicit CatState(int axis_) : axis(axis_) {}
  int axis;
  std::string describe() const override { return fmt::format("axis={}", axis); }
};
struct PadState : SavedState {
  PadState(std::vector<int64_t> pads_, float value_) : pads(std::move(pads_)), value(value_) {}
  std::vector<int64_t> pads;  // before and after, per axis
  float value;
  std::string describe() const override { return fmt::format("pads={} value={}", shape_str(pads), value); }
};

}  // namespace

// ---- reshape: a view of the same storage ----
Shape reshape_target(const Shape& from, Shape shape) {
  const int64_t numel = shape_numel(from);
  int infer = -1;
  int64_t known = 1;
  for (size_t a = 0; a < shape.size(); ++a) {
    if (shape[a] == -1) {
      if (infer >= 0) throw Error("reshape: more than one -1 in target shape " + shape_str(shape));
      infer = static_cast<int>(a);
    } else if (shape[a] < 0) {
      throw Error("reshape: negative dimension in target shape " + shape_str(shape));
    } else if (__builtin_mul_overflow(known, shape[a], &known)) {
      throw Error(fmt::format("reshape: target shape {} has more elements than an int64 holds", shape_str(shape)));
    }
  }
  if (infer >= 0 && known > 0 && numel % known == 0) shape[infer] = numel / known;
  if ((infer >= 0 && shape[infer] == -1) || (infer < 0 && known != numel))
    throw Error(fmt::format("reshape: cannot reshape {} ({} elements) to {}", shape_str(from), numel, shape_str(shape)));
  return shape;
}

Tensor reshape(const Tensor& x, Shape shape) {
  shape = reshape_target(x.shape(), std::move(shape));
  auto view = std::make_shared<TensorImpl>();
  view->shape = shape;
  view->numel = x.numel();
  view->storage = x.impl()->storage;
  view->offset = x.impl()->offset;
  return tape().record(Op::Reshape, {x}, Tensor(std::move(view)));
}
// dx = g viewed in x's shape
static std::vector<Tensor> reshape_backward(const Entry& e, const Tensor& g) { return {reshape(g, e.input(0).shape())}; }
const OpKind Op::Reshape{"reshape", reshape_backward};

Tensor flatten(const Tensor& x, int start_axis) {
  const int nd = x.ndim();
  if (nd == 0) return reshape(x, {1});
  const int start = normalize_axis(start_axis, nd, "flatten");
  Shape shape(x.shape().begin(), x.shape().begin() + start);
  shape.push_back(-1);
  if (x.numel() == 0) shape.back() = shape_numel(Shape(x.shape().begin() + start, x.shape().end()));
  return reshape(x, shape);
}

// ---- permute: out axis i is input axis order[i] ----
Tensor permute(const Tensor& x, std::vector<int64_t> order) {
  const int nd = x.ndim();
  std::vector<bool> seen(nd, false);
  if (static_cast<int>(order.size()) != nd)
    throw Error(fmt::format("permute: order {} does not list the {} axes of {}", shape_str(order), nd, shape_str(x.shape())));
  for (auto& a : order) {
    a = normalize_axis(static_cast<int>(a), nd, "permute");
    if (seen[a]) throw Error(fmt::format("permute: order {} repeats axis {}", shape_str(order), a));
    seen[a] = true;
  }
  Shape out_shape(nd);
  const auto in_strides = contiguous_strides(x.shape());
  std::vector<int64_t> read_stride(nd);
  for (int i = 0; i < nd; ++i) {
    out_shape[i] = x.shape()[order[i]];
    read_stride[i] = in_strides[order[i]];
  }
  Tensor out = Tensor::empty(out_shape);
  const float* src = x.data();
  float* dst = out.data();
  std::vector<int64_t> index(nd, 0);
  int64_t s = 0;
  for (int64_t o = 0; o < out.numel(); ++o) {
    dst[o] = src[s];
    for (int a = nd - 1; a >= 0; --a) {
      s += read_stride[a];
      if (++index[a] < out_shape[a]) break;
      s -= read_stride[a] * out_shape[a];
      index[a] = 0;
    }
  }
  return tape().record(Op::Permute, {x}, out, PermuteState(order));
}
// dx = permute(g, inverse order)
static std::vector<Tensor> permute_backward(const Entry& e, const Tensor& g) {
  const std::vector<int64_t>& order = e.saved<PermuteState>().order;
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < inverse.size(); ++i) inverse[order[i]] = static_cast<int64_t>(i);
  return {permute(g, inverse)};
}
const OpKind Op::Permute{"permute", permute_backward};

Tensor transpose(const Tensor& x, int axis0, int axis1) {
  std::vector<int64_t> order(x.ndim());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order.at(normalize_axis(axis0, x.ndim(), "transpose")), order.at(normalize_axis(axis1, x.ndim(), "transpose")));
  return permute(x, order);
}

// ---- slice [start, stop) along one axis ----
Tensor slice(const Tensor& x, int axis, int64_t start, int64_t stop) {
  const int a = normalize_axis(axis, x.ndim(), "slice");
  if (start < 0 || stop > x.shape()[a] || start > stop)
    throw Error(fmt::format("slice: range [{},{}) is outside axis {} of shape {}", start, stop, a, shape_str(x.shape())));
  Shape out_shape = x.shape();
  out_shape[a] = stop - start;
  Tensor out = Tensor::empty(out_shape);
  copy_box(x.data(), x.shape(), axis_start(x.ndim(), a, start), out.data(), out_shape, axis_start(x.ndim(), a, 0), out_shape);
  return tape().record(Op::Slice, {x}, out, SliceState(a, start, stop));
}
// dx = zeros with g placed back at [start, stop)
static std::vector<Tensor> slice_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const SliceState& s = e.saved<SliceState>();
  Tensor dx = Tensor::zeros(x.shape());
  copy_box(g.data(), g.shape(), axis_start(x.ndim(), s.axis, 0), dx.data(), x.shape(), axis_start(x.ndim(), s.axis, s.start),
           g.shape());
  return {dx};
}
const OpKind Op::Slice{"slice", slice_backward};

// ---- cat along one axis ----
Tensor cat(const std::vector<Tensor>& xs, int axis) {
  if (xs.empty()) throw Error("cat: no tensors to concatenate");
  const int nd = xs[0].ndim();
  const int a = normalize_axis(axis, nd, "cat");
  Shape out_shape = xs[0].shape();
  out_shape[a] = 0;
  for (const Tensor& t : xs) {
    bool ok = t.ndim() == nd;
    for (int i = 0; ok && i < nd; ++i) ok = i == a || t.shape()[i] == xs[0].shape()[i];
    if (!ok)
      throw Error(fmt::format("cat: shapes {} and {} differ outside axis {}", shape_str(xs[0].shape()), shape_str(t.shape()), a));
    out_shape[a] += t.shape()[a];
  }
  Tensor out = Tensor::empty(out_shape);
  int64_t at = 0;
  for (const Tensor& t : xs) {
    copy_box(t.data(), t.shape(), axis_start(nd, a, 0), out.data(), out_shape, axis_start(nd, a, at), t.shape());
    at += t.shape()[a];
  }
  return tape().record(Op::Cat, xs, out, CatState(a));
}
// dx_i = the slice of g that x_i filled
static std::vector<Tensor> cat_backward(const Entry& e, const Tensor& g) {
  const int a = e.saved<CatState>().axis;
  std::vector<Tensor> grads;
  int64_t at = 0;
  for (const Tensor& x : e.inputs) {
    Tensor dx = Tensor::empty(x.shape());
    copy_box(g.data(), g.shape(), axis_start(x.ndim(), a, at), dx.data(), x.shape(), axis_start(x.ndim(), a, 0), x.shape());
    at += x.shape()[a];
    grads.push_back(dx);
  }
  return grads;
}
const OpKind Op::Cat{"cat", cat_backward};

// ---- pad with a constant ----
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, float value) {
  const int nd = x.ndim();
  if (static_cast<int>(pads.size()) != 2 * nd)
    throw Error(fmt::format("pad: {} pad values for shape {} (need 2 per axis: {})", pads.size(), shape_str(x.shape()), 2 * nd));
  Shape out_shape = x.shape();
  std::vector<int64_t> start(nd);
  for (int a = 0; a < nd; ++a) {
    if (pads[2 * a] < 0 || pads[2 * a + 1] < 0)
      throw Error(fmt::format("pad: negative padding {} for shape {}", shape_str(pads), shape_str(x.shape())));
    out_shape[a] += pads[2 * a] + pads[2 * a + 1];
    start[a] = pads[2 * a];
  }
  Tensor out = Tensor::full(out_shape, value);
  copy_box(x.data(), x.shape(), std::vector<int64_t>(nd, 0), out.data(), out_shape, start, x.shape());
  return tape().record(Op::Pad, {x}, out, PadState(pads, value));
}
// dx = g cropped back to x's box
static std::vector<Tensor> pad_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const std::vector<int64_t>& pads = e.saved<PadState>().pads;
  std::vector<int64_t> start(x.ndim());
  for (int a = 0; a < x.ndim(); ++a) start[a] = pads[2 * a];
  Tensor dx = Tensor::empty(x.shape());
  copy_box(g.data(), g.shape(), start, dx.data(), x.shape(), std::vector<int64_t>(x.ndim(), 0), x.shape());
  return {dx};
}
const OpKind Op::Pad{"pad", pad_backward};

}  // namespace tg
