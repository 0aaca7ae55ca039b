#include "tinygrad-cpp/gradcheck.h"

#include <fmt/format.h>

#include <cmath>

namespace tg {
namespace {

std::string index_str(const Shape& shape, int64_t flat) {
  Shape index(shape.size());
  for (int64_t a = static_cast<int64_t>(shape.size()) - 1; a >= 0; --a) {
    index[a] = flat % shape[a];
    flat /= shape[a];
  }
  return shape_str(index);
}

// L = sum(f(x) * R), accumulated in double, without recording.
double weighted_sum(const TensorFunction& f, const std::vector<Tensor>& inputs, const Tensor& weights) {
  NoGrad no_grad;
  const Tensor y = f(inputs);
  double total = 0;
  for (int64_t i = 0; i < y.numel(); ++i) total += static_cast<double>(y.data()[i]) * weights.data()[i];
  return total;
}

}  // namespace

GradCheckResult check_gradients(const std::string& name, const TensorFunction& f, const std::vector<Tensor>& inputs,
                                const GradCheckOptions& options) {
  GradCheckResult result;
  Generator gen(options.seed);

  // The rules' answer: one backward pass seeded with R.
  for (Tensor t : inputs)
    if (t.defined() && t.requires_grad()) t.zero_grad();
  Tensor y = f(inputs);
  const Tensor weights = Tensor::randn(y.shape(), gen);
  if (!y.requires_grad()) {
    result.ok = false;
    result.message = name + ": the output does not require grad, so no rule ran";
    return result;
  }
  y.backward(weights);

  // The estimate: central differences, one element at a time.
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    const Tensor analytic = x.grad();
    for (int64_t i = 0; i < x.numel(); ++i) {
      float& value = x.data()[i];
      const float original = value;
      value = original + options.eps;
      const double plus = weighted_sum(f, inputs, weights);
      value = original - options.eps;
      const double minus = weighted_sum(f, inputs, weights);
      value = original;
      const double expected = (plus - minus) / (2.0 * options.eps);
      const double received = analytic.defined() ? analytic.data()[i] : 0.0;
      const double error = std::fabs(received - expected);
      result.max_error = std::max(result.max_error, error);
      ++result.checked;
      if (result.ok && !(error <= options.atol + options.rtol * std::fabs(expected))) {
        result.ok = false;
        result.message = fmt::format("{}: gradient of input {} (shape {}) at index {}: backward gave {:.6g}, "
                                     "central difference gave {:.6g}{}",
                                     name, k, shape_str(x.shape()), index_str(x.shape(), i), received, expected,
                                     analytic.defined() ? "" : " (backward produced no gradient)");
      }
    }
  }
  return result;
}

}  // namespace tg
