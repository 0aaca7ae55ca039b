// Small helpers the op files share: axis checks and the elementwise loops every
// elementwise op and rule is made of. Nothing here knows any op.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "tinygrad-cpp/core/ops.h"

namespace tg {

int normalize_axis(int axis, int ndim, const char* op);  // -1 -> ndim-1, with a range check
void parallel_elementwise(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

// out[i] = f(a[i]) and out[i] = f(a[i], b[i]) for i in [0, n) on raw arrays. Big arrays
// are split over the thread pool; the __restrict copies tell the compiler the arrays do
// not overlap, so the loop is vectorized.
constexpr int64_t kParallelElements = 1 << 16;
template <class F>
void elementwise_unary(int64_t n, const float* a, float* out, F f) {
  auto body = [=](int64_t lo, int64_t hi) {
    const float* __restrict pa = a;
    float* __restrict po = out;
    for (int64_t i = lo; i < hi; ++i) po[i] = f(pa[i]);
  };
  if (n < kParallelElements) body(0, n);
  else parallel_elementwise(n, body);
}
template <class F>
void elementwise_binary(int64_t n, const float* a, const float* b, float* out, F f) {
  auto body = [=](int64_t lo, int64_t hi) {
    const float* __restrict pa = a;
    const float* __restrict pb = b;
    float* __restrict po = out;
    for (int64_t i = lo; i < hi; ++i) po[i] = f(pa[i], pb[i]);
  };
  if (n < kParallelElements) body(0, n);
  else parallel_elementwise(n, body);
}

// The same on tensors, returning a new tensor of x's shape:
//   map(x, f)    -> f(x[i])            (a forward:  relu is map(x, max(v, 0)))
//   map(g, y, f) -> f(g[i], y[i])      (a rule:     exp's is map(g, y, gi * yi))
// The two tensors of the second form must have the same number of elements.
template <class F>
Tensor map(const Tensor& x, F f) {
  Tensor out = Tensor::empty(x.shape());
  elementwise_unary(x.numel(), x.data(), out.data(), f);
  return out;
}
template <class F>
Tensor map(const Tensor& a, const Tensor& b, F f) {
  Tensor out = Tensor::empty(a.shape());
  elementwise_binary(a.numel(), a.data(), b.data(), out.data(), f);
  return out;
}

// Whether the rule of `entry` needs to compute the gradient of input i.
inline bool wants_grad(const Entry& entry, size_t i) {
  return entry.inputs.at(i).defined() && entry.inputs[i].requires_grad();
}

}  // namespace tg
