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

}  // namespace tg
