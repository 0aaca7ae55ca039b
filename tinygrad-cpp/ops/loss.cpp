// softmax, log_softmax and the losses. Losses average over the batch, as PyTorch's
// default reduction='mean'.
//
// Every softmax is computed as exp(x - max) / sum exp(x - max): subtracting the max
// changes nothing mathematically and keeps exp() from overflowing.
#include <fmt/format.h>

#include <cmath>

#include "tinygrad-cpp/ops/backward_rules.h"

namespace tg {
namespace {

// A tensor seen as [outer, length, inner] around `axis`.
struct AxisView {
  int64_t outer = 1, length = 1, inner = 1;
};

AxisView view_around(const Tensor& x, int axis) {
  AxisView v;
  for (int a = 0; a < x.ndim(); ++a) {
    if (a < axis) v.outer *= x.shape()[a];
    else if (a == axis) v.length = x.shape()[a];
    else v.inner *= x.shape()[a];
  }
  return v;
}

// out = log_softmax(x) along the axis.
Tensor log_softmax_kernel(const Tensor& x, int axis) {
  const AxisView v = view_around(x, axis);
  Tensor out = Tensor::empty(x.shape());
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t i = 0; i < v.inner; ++i) {
      const float* src = x.data() + o * v.length * v.inner + i;
      float* dst = out.data() + o * v.length * v.inner + i;
      float m = src[0];
      for (int64_t k = 1; k < v.length; ++k) m = std::max(m, src[k * v.inner]);
      double total = 0;
      for (int64_t k = 0; k < v.length; ++k) total += std::exp(static_cast<double>(src[k * v.inner]) - m);
      const float log_total = m + static_cast<float>(std::log(total));
      for (int64_t k = 0; k < v.length; ++k) dst[k * v.inner] = src[k * v.inner] - log_total;
    }
  return out;
}

void check_classification(const Tensor& scores, const std::vector<int64_t>& labels, const char* op) {
  if (scores.ndim() != 2)
    throw Error(fmt::format("{}: scores {} must be [N, classes]", op, shape_str(scores.shape())));
  if (static_cast<int64_t>(labels.size()) != scores.dim(0))
    throw Error(fmt::format("{}: {} labels for scores {}", op, labels.size(), shape_str(scores.shape())));
  for (int64_t label : labels)
    if (label < 0 || label >= scores.dim(1))
      throw Error(fmt::format("{}: label {} out of range for scores {}", op, label, shape_str(scores.shape())));
}

OpParams axis_params(int axis) {
  OpParams p;
  p.axes = {axis};
  return p;
}

}  // namespace

// ---- log_softmax ----
Tensor log_softmax(const Tensor& x, int axis) {
  const int a = normalize_axis(axis, x.ndim(), "log_softmax");
  return tape().record(Op::LogSoftmax, {x}, log_softmax_kernel(x, a), axis_params(a));
}
// dx = g - softmax(x) * sum(g)   (sums along the axis)
std::vector<Tensor> log_softmax_backward(const Entry& e, const Tensor& g) {
  const AxisView v = view_around(e.output, static_cast<int>(e.params.axes[0]));
  Tensor dx = Tensor::empty(g.shape());
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t i = 0; i < v.inner; ++i) {
      const int64_t base = o * v.length * v.inner + i;
      double total = 0;
      for (int64_t k = 0; k < v.length; ++k) total += g.data()[base + k * v.inner];
      for (int64_t k = 0; k < v.length; ++k) {
        const int64_t at = base + k * v.inner;
        dx.data()[at] = g.data()[at] - std::exp(e.output.data()[at]) * static_cast<float>(total);
      }
    }
  return {dx};
}

// ---- softmax ----
Tensor softmax(const Tensor& x, int axis) {
  const int a = normalize_axis(axis, x.ndim(), "softmax");
  Tensor out = log_softmax_kernel(x, a);
  for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] = std::exp(out.data()[i]);
  return tape().record(Op::Softmax, {x}, out, axis_params(a));
}
// dx = y * (g - sum(g * y))   (sums along the axis)
std::vector<Tensor> softmax_backward(const Entry& e, const Tensor& g) {
  const AxisView v = view_around(e.output, static_cast<int>(e.params.axes[0]));
  const float* y = e.output.data();
  Tensor dx = Tensor::empty(g.shape());
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t i = 0; i < v.inner; ++i) {
      const int64_t base = o * v.length * v.inner + i;
      double dot = 0;
      for (int64_t k = 0; k < v.length; ++k) dot += g.data()[base + k * v.inner] * y[base + k * v.inner];
      for (int64_t k = 0; k < v.length; ++k) {
        const int64_t at = base + k * v.inner;
        dx.data()[at] = y[at] * (g.data()[at] - static_cast<float>(dot));
      }
    }
  return {dx};
}

// ---- cross_entropy = mean_n -log softmax(logits_n)[label_n] ----
Tensor cross_entropy(const Tensor& logits, const std::vector<int64_t>& labels) {
  check_classification(logits, labels, "cross_entropy");
  const Tensor log_probs = log_softmax_kernel(logits, 1);
  const int64_t N = logits.dim(0), C = logits.dim(1);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) total -= log_probs.data()[n * C + labels[n]];
  OpParams params;
  params.ints = labels;
  return tape().record(Op::CrossEntropy, {logits}, Tensor::scalar(static_cast<float>(total / std::max<int64_t>(N, 1))),
                       params, {log_probs});
}
// dlogits = g * (softmax(logits) - onehot(label)) / N
std::vector<Tensor> cross_entropy_backward(const Entry& e, const Tensor& g) {
  const Tensor& log_probs = e.saved[0];
  const int64_t N = log_probs.dim(0), C = log_probs.dim(1);
  const float scale = g.item() / static_cast<float>(std::max<int64_t>(N, 1));
  Tensor dx = Tensor::empty(log_probs.shape());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      dx.data()[n * C + c] = scale * (std::exp(log_probs.data()[n * C + c]) - (c == e.params.ints[n] ? 1.f : 0.f));
  return {dx};
}

// ---- nll = mean_n -log_probs[n, label_n] ----
Tensor nll(const Tensor& log_probs, const std::vector<int64_t>& labels) {
  check_classification(log_probs, labels, "nll");
  const int64_t N = log_probs.dim(0), C = log_probs.dim(1);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) total -= log_probs.data()[n * C + labels[n]];
  OpParams params;
  params.ints = labels;
  return tape().record(Op::Nll, {log_probs}, Tensor::scalar(static_cast<float>(total / std::max<int64_t>(N, 1))), params);
}
// dlog_probs[n, label_n] = -g / N, 0 elsewhere
std::vector<Tensor> nll_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const int64_t N = x.dim(0), C = x.dim(1);
  Tensor dx = Tensor::zeros(x.shape());
  for (int64_t n = 0; n < N; ++n) dx.data()[n * C + e.params.ints[n]] = -g.item() / static_cast<float>(std::max<int64_t>(N, 1));
  return {dx};
}

// ---- mse = mean (prediction - target)^2 ----
Tensor mse(const Tensor& prediction, const Tensor& target) {
  if (prediction.shape() != target.shape())
    throw Error(fmt::format("mse: prediction {} and target {} differ in shape", shape_str(prediction.shape()),
                            shape_str(target.shape())));
  double total = 0;
  for (int64_t i = 0; i < prediction.numel(); ++i) {
    const double d = prediction.data()[i] - target.data()[i];
    total += d * d;
  }
  return tape().record(Op::Mse, {prediction, target},
                       Tensor::scalar(static_cast<float>(total / std::max<int64_t>(prediction.numel(), 1))));
}
// dprediction = g * 2 (prediction - target) / numel, dtarget = -dprediction
std::vector<Tensor> mse_backward(const Entry& e, const Tensor& g) {
  const Tensor &p = e.input(0), &t = e.input(1);
  const float scale = 2.f * g.item() / static_cast<float>(std::max<int64_t>(p.numel(), 1));
  Tensor dp = Tensor::empty(p.shape());
  for (int64_t i = 0; i < p.numel(); ++i) dp.data()[i] = scale * (p.data()[i] - t.data()[i]);
  Tensor dt;
  if (t.requires_grad()) dt = neg(dp);
  return {dp, dt};
}

}  // namespace tg
