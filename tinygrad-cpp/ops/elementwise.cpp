// Elementwise ops with broadcasting: add sub mul div neg exp log pow sqrt abs clamp.
//
// Broadcasting follows NumPy: shapes are aligned on the right, and an axis of size 1
// stretches to match the other. Its adjoint is a sum: the gradient flowing back to a
// broadcast input is summed over the axes it was stretched along (sum_to_shape).
#include <fmt/format.h>

#include <cmath>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/ops/helpers.h"

namespace tg {

int normalize_axis(int axis, int ndim, const char* op) {
  if (axis < -ndim || axis >= ndim)
    throw Error(fmt::format("{}: axis {} out of range for a tensor with {} axes", op, axis, ndim));
  return axis < 0 ? axis + ndim : axis;
}

void parallel_elementwise(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  kernels::parallel_for(0, n, 1 << 16, fn);
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t da = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t db = i < b.size() ? b[b.size() - 1 - i] : 1;
    if (da != db && da != 1 && db != 1)
      throw Error(fmt::format("{}: shapes {} and {} cannot be broadcast together ({} != {})", op,
                              shape_str(a), shape_str(b), da, db));
    out[out.size() - 1 - i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

// Strides for reading a tensor of `shape` as if broadcast to `out` (0 on stretched axes).
std::vector<int64_t> broadcast_strides(const Shape& shape, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1, j = static_cast<int64_t>(out.size()) - 1; i >= 0; --i, --j) {
    strides[j] = shape[i] == 1 ? 0 : stride;
    stride *= shape[i];
  }
  return strides;
}

// out[i] = f(a[ia], b[ib]) over the broadcast shape.
template <class F>
Tensor broadcast_binary(const Tensor& a, const Tensor& b, const char* op, F f) {
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(out_shape);
  const float* pa = a.data();
  const float* pb = b.data();
  float* po = out.data();
  const int64_t n = out.numel();
  if (a.shape() == b.shape()) {
    elementwise_binary(n, pa, pb, po, f);
    return out;
  }
  if (b.numel() == 1 && a.numel() == n) {
    const float vb = pb[0];
    elementwise_unary(n, pa, po, [=](float v) { return f(v, vb); });
    return out;
  }
  if (a.numel() == 1 && b.numel() == n) {
    const float va = pa[0];
    elementwise_unary(n, pb, po, [=](float v) { return f(va, v); });
    return out;
  }
  // General case: an odometer over every axis but the last, a loop over the last.
  const auto sa = broadcast_strides(a.shape(), out_shape);
  const auto sb = broadcast_strides(b.shape(), out_shape);
  const int nd = static_cast<int>(out_shape.size());
  const int64_t inner = out_shape[nd - 1], inner_sa = sa[nd - 1], inner_sb = sb[nd - 1];
  std::vector<int64_t> index(nd, 0);
  int64_t ia = 0, ib = 0;
  for (int64_t o = 0; o < n; o += inner) {
    for (int64_t k = 0; k < inner; ++k) po[o + k] = f(pa[ia + k * inner_sa], pb[ib + k * inner_sb]);
    for (int axis = nd - 2; axis >= 0; --axis) {
      ia += sa[axis];
      ib += sb[axis];
      if (++index[axis] < out_shape[axis]) break;
      ia -= sa[axis] * out_shape[axis];
      ib -= sb[axis] * out_shape[axis];
      index[axis] = 0;
    }
  }
  return out;
}

}  // namespace

Tensor sum_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int lead = grad.ndim() - static_cast<int>(shape.size());
  std::vector<int64_t> axes;
  for (int a = 0; a < grad.ndim(); ++a)
    if (a < lead || (shape[a - lead] == 1 && grad.shape()[a] != 1)) axes.push_back(a);
  return reshape(sum(grad, axes, true), shape);
}

// ---- add:  d(a+b)/da = 1, d(a+b)/db = 1 ----
Tensor add(const Tensor& a, const Tensor& b) {
  return tape().record(Op::Add, {a, b}, broadcast_binary(a, b, "add", [](float x, float y) { return x + y; }));
}
// da = sum_to(g), db = sum_to(g)
static std::vector<Tensor> add_backward(const Entry& e, const Tensor& g) {
  return {sum_to_shape(g, e.input(0).shape()), sum_to_shape(g, e.input(1).shape())};
}
const OpKind Op::Add{"add", add_backward};

// ---- sub ----
Tensor sub(const Tensor& a, const Tensor& b) {
  return tape().record(Op::Sub, {a, b}, broadcast_binary(a, b, "sub", [](float x, float y) { return x - y; }));
}
// da = g, db = -g
static std::vector<Tensor> sub_backward(const Entry& e, const Tensor& g) {
  return {sum_to_shape(g, e.input(0).shape()), wants_grad(e, 1) ? sum_to_shape(neg(g), e.input(1).shape()) : Tensor()};
}
const OpKind Op::Sub{"sub", sub_backward};

// ---- mul ----
Tensor mul(const Tensor& a, const Tensor& b) {
  return tape().record(Op::Mul, {a, b}, broadcast_binary(a, b, "mul", [](float x, float y) { return x * y; }));
}
// da = g * b, db = g * a
static std::vector<Tensor> mul_backward(const Entry& e, const Tensor& g) {
  const Tensor &a = e.input(0), &b = e.input(1);
  return {wants_grad(e, 0) ? sum_to_shape(mul(g, b), a.shape()) : Tensor(),
          wants_grad(e, 1) ? sum_to_shape(mul(g, a), b.shape()) : Tensor()};
}
const OpKind Op::Mul{"mul", mul_backward};

// ---- div ----
Tensor div(const Tensor& a, const Tensor& b) {
  return tape().record(Op::Div, {a, b}, broadcast_binary(a, b, "div", [](float x, float y) { return x / y; }));
}
// da = g / b, db = -g * a / b^2
static std::vector<Tensor> div_backward(const Entry& e, const Tensor& g) {
  const Tensor &a = e.input(0), &b = e.input(1);
  return {wants_grad(e, 0) ? sum_to_shape(div(g, b), a.shape()) : Tensor(),
          wants_grad(e, 1) ? sum_to_shape(neg(div(mul(g, a), mul(b, b))), b.shape()) : Tensor()};
}
const OpKind Op::Div{"div", div_backward};

// ---- neg ----
Tensor neg(const Tensor& x) {
  return tape().record(Op::Neg, {x}, map(x, [](float v) { return -v; }));
}
// dx = -g
static std::vector<Tensor> neg_backward(const Entry&, const Tensor& g) { return {neg(g)}; }
const OpKind Op::Neg{"neg", neg_backward};

// ---- exp ----
Tensor exp(const Tensor& x) {
  return tape().record(Op::Exp, {x}, map(x, [](float v) { return std::exp(v); }));
}
// dx = g * exp(x) = g * y
static std::vector<Tensor> exp_backward(const Entry& e, const Tensor& g) {
  return {map(g, e.output, [](float gi, float y) { return gi * y; })};
}
const OpKind Op::Exp{"exp", exp_backward};

// ---- log ----
Tensor log(const Tensor& x) {
  return tape().record(Op::Log, {x}, map(x, [](float v) { return std::log(v); }));
}
// dx = g / x
static std::vector<Tensor> log_backward(const Entry& e, const Tensor& g) {
  return {map(g, e.input(0), [](float gi, float x) { return gi / x; })};
}
const OpKind Op::Log{"log", log_backward};

// ---- pow (by a constant exponent) ----
namespace {
struct PowState : SavedState {
  explicit PowState(float exponent_) : exponent(exponent_) {}
  float exponent;
  std::string describe() const override { return fmt::format("exponent={}", exponent); }
};
}  // namespace
Tensor pow(const Tensor& x, float exponent) {
  return tape().record(Op::Pow, {x}, map(x, [exponent](float v) { return std::pow(v, exponent); }), PowState(exponent));
}
// dx = g * p * x^(p-1)
static std::vector<Tensor> pow_backward(const Entry& e, const Tensor& g) {
  const float p = e.saved<PowState>().exponent;
  // p = 0: x^0 is constant, so the gradient is 0 everywhere (0 * 0^-1 would be NaN at x = 0).
  if (p == 0.f) return {Tensor::zeros(g.shape())};
  return {map(g, e.input(0), [p](float gi, float x) { return gi * p * std::pow(x, p - 1.f); })};
}
const OpKind Op::Pow{"pow", pow_backward};

// ---- sqrt ----
Tensor sqrt(const Tensor& x) {
  return tape().record(Op::Sqrt, {x}, map(x, [](float v) { return std::sqrt(v); }));
}
// dx = g / (2 sqrt(x)) = g / (2y)
static std::vector<Tensor> sqrt_backward(const Entry& e, const Tensor& g) {
  return {map(g, e.output, [](float gi, float y) { return gi / (2.f * y); })};
}
const OpKind Op::Sqrt{"sqrt", sqrt_backward};

// ---- abs ----
Tensor abs(const Tensor& x) {
  return tape().record(Op::Abs, {x}, map(x, [](float v) { return std::fabs(v); }));
}
// dx = g * sign(x)   (0 at x = 0, as PyTorch)
static std::vector<Tensor> abs_backward(const Entry& e, const Tensor& g) {
  return {map(g, e.input(0), [](float gi, float x) { return x > 0 ? gi : (x < 0 ? -gi : 0.f); })};
}
const OpKind Op::Abs{"abs", abs_backward};

// ---- clamp ----
namespace {
struct ClampState : SavedState {
  ClampState(float low_, float high_) : low(low_), high(high_) {}
  float low, high;
  std::string describe() const override { return fmt::format("low={} high={}", low, high); }
};
}  // namespace
Tensor clamp(const Tensor& x, float low, float high) {
  if (!(low <= high)) throw Error(fmt::format("clamp: low {} is greater than high {}", low, high));
  return tape().record(Op::Clamp, {x}, map(x, [=](float v) { return std::min(std::max(v, low), high); }),
                       ClampState(low, high));
}
// dx = g where low <= x <= high, else 0
static std::vector<Tensor> clamp_backward(const Entry& e, const Tensor& g) {
  const float low = e.saved<ClampState>().low, high = e.saved<ClampState>().high;
  return {map(g, e.input(0), [=](float gi, float x) { return (x >= low && x <= high) ? gi : 0.f; })};
}
const OpKind Op::Clamp{"clamp", clamp_backward};

// ---- operators ----
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, float b) { return add(a, Tensor::scalar(b)); }
Tensor operator-(const Tensor& a, float b) { return sub(a, Tensor::scalar(b)); }
Tensor operator*(const Tensor& a, float b) { return mul(a, Tensor::scalar(b)); }
Tensor operator/(const Tensor& a, float b) { return div(a, Tensor::scalar(b)); }
Tensor operator+(float a, const Tensor& b) { return add(Tensor::scalar(a), b); }
Tensor operator-(float a, const Tensor& b) { return sub(Tensor::scalar(a), b); }
Tensor operator*(float a, const Tensor& b) { return mul(Tensor::scalar(a), b); }
Tensor operator/(float a, const Tensor& b) { return div(Tensor::scalar(a), b); }

}  // namespace tg
