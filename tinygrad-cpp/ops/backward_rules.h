// The default backward rule of every op kind, one per op, defined next to the op's
// forward in ops/*.cpp. tape.cpp maps each Op to its rule; the ReLU rules are public
// (tg::rules) because lessons swap them.
#pragma once

#include <vector>

#include "tinygrad-cpp/ops.h"

namespace tg {

#define TG_DECLARE_RULE(name) std::vector<Tensor> name(const Entry& entry, const Tensor& grad_output)
TG_DECLARE_RULE(add_backward);
TG_DECLARE_RULE(sub_backward);
TG_DECLARE_RULE(mul_backward);
TG_DECLARE_RULE(div_backward);
TG_DECLARE_RULE(neg_backward);
TG_DECLARE_RULE(exp_backward);
TG_DECLARE_RULE(log_backward);
TG_DECLARE_RULE(pow_backward);
TG_DECLARE_RULE(sqrt_backward);
TG_DECLARE_RULE(abs_backward);
TG_DECLARE_RULE(clamp_backward);
TG_DECLARE_RULE(sum_backward);
TG_DECLARE_RULE(mean_backward);
TG_DECLARE_RULE(max_backward);
TG_DECLARE_RULE(matmul_backward);
TG_DECLARE_RULE(reshape_backward);
TG_DECLARE_RULE(permute_backward);
TG_DECLARE_RULE(slice_backward);
TG_DECLARE_RULE(cat_backward);
TG_DECLARE_RULE(pad_backward);
TG_DECLARE_RULE(sigmoid_backward);
TG_DECLARE_RULE(tanh_backward);
TG_DECLARE_RULE(dropout_backward);
TG_DECLARE_RULE(linear_backward);
TG_DECLARE_RULE(conv2d_backward);
TG_DECLARE_RULE(max_pool2d_backward);
TG_DECLARE_RULE(avg_pool2d_backward);
TG_DECLARE_RULE(adaptive_avg_pool2d_backward);
TG_DECLARE_RULE(log_softmax_backward);
TG_DECLARE_RULE(softmax_backward);
TG_DECLARE_RULE(cross_entropy_backward);
TG_DECLARE_RULE(nll_backward);
TG_DECLARE_RULE(mse_backward);
#undef TG_DECLARE_RULE

// Small helpers shared by the op files.
int normalize_axis(int axis, int ndim, const char* op);  // -1 -> ndim-1, with a range check
void parallel_elementwise(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

// out[i] = f(a[i]) and out[i] = f(a[i], b[i]) for i in [0, n): the loop every elementwise
// op and rule is made of. Big arrays are split over the thread pool; the __restrict
// copies tell the compiler the arrays do not overlap, so the loop is vectorized.
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

}  // namespace tg
