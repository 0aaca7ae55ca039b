#include "tinygrad-cpp/core/gradcheck.h"

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

  // The rules' answer: dL/dx for each input, from the rule alone or from a whole backward pass.
  for (Tensor t : inputs)
    if (t.defined() && t.requires_grad()) t.zero_grad();
  Tape& tape = tg::tape();
  const size_t entries_before = tape.size();
  Tensor y = f(inputs);
  if (!y.requires_grad()) {
    result.ok = false;
    result.message = name + ": the output does not require grad, so no rule ran";
    return result;
  }
  const Tensor weights = Tensor::randn(y.shape(), gen);
  std::vector<Tensor> analytic(inputs.size());
  const Entry* entry = tape.producer(y);
  bool single_op = entry && entry == tape.newest() && tape.size() == entries_before + 1;
  for (const Tensor& x : inputs) {
    if (!x.defined() || !x.requires_grad()) continue;
    bool among_inputs = false;
    if (single_op)
      for (const Tensor& used : entry->inputs) among_inputs |= used.defined() && used.same_as(x);
    single_op &= among_inputs;
  }
  if (single_op) {
    std::vector<Tensor> grads;
    try {
      NoGrad no_grad;
      grads = resolve_rule(*entry)(*entry, weights);
    } catch (...) {
      tape.discard_last();
      throw;
    }
    const Entry checked_entry = *entry;
    tape.discard_last();
    if (grads.size() != checked_entry.inputs.size()) {
      result.ok = false;
      result.message = fmt::format("{}: the backward rule of {} returned {} gradients for {} inputs", name,
                                   checked_entry.name(), grads.size(), checked_entry.inputs.size());
      return result;
    }
    // An input used twice (cat({x, y, x})) receives the sum of its gradients.
    for (size_t k = 0; k < inputs.size(); ++k) {
      for (size_t j = 0; j < grads.size(); ++j) {
        if (!inputs[k].defined() || !checked_entry.inputs[j].same_as(inputs[k]) || !grads[j].defined()) continue;
        if (grads[j].shape() != inputs[k].shape()) {
          result.ok = false;
          result.message = fmt::format("{}: the backward rule of {} returned shape {} for input {} of shape {}", name,
                                       checked_entry.name(), shape_str(grads[j].shape()), k,
                                       shape_str(inputs[k].shape()));
          return result;
        }
        analytic[k] = analytic[k].defined() ? add(analytic[k], grads[j]) : grads[j].clone();
      }
    }
  } else {
    result.through_tape = true;
    y.backward(weights);
    for (size_t k = 0; k < inputs.size(); ++k)
      if (inputs[k].defined() && inputs[k].requires_grad()) analytic[k] = inputs[k].grad();
  }

  // The estimate: central differences, one element at a time.
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    for (int64_t i = 0; i < x.numel(); ++i) {
      float& value = x.data()[i];
      const float original = value;
      value = original + options.eps;
      const double plus = weighted_sum(f, inputs, weights);
      value = original - options.eps;
      const double minus = weighted_sum(f, inputs, weights);
      value = original;
      const double expected = (plus - minus) / (2.0 * options.eps);
      const double received = analytic[k].defined() ? analytic[k].data()[i] : 0.0;
      const double error = std::fabs(received - expected);
      result.max_error = std::max(result.max_error, error);
      ++result.checked;
      if (result.ok && !(error <= options.atol + options.rtol * std::fabs(expected))) {
        result.ok = false;
        result.message = fmt::format("{}: gradient of input {} (shape {}) at index {}: backward gave {:.6g}, "
                                     "central difference gave {:.6g}{}",
                                     name, k, shape_str(x.shape()), index_str(x.shape(), i), received, expected,
                                     analytic[k].defined() ? "" : " (backward produced no gradient)");
      }
    }
  }
  return result;
}

}  // namespace tg
