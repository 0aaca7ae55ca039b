// softmax, log_softmax and the losses. Losses average over the batch, as PyTorch's
// default reduction='mean'.
//
// Every softmax is computed as exp(x - max) / sum exp(x - max): subtracting the max
// changes nothing mathematically and keeps exp() from overflowing.
#include <fmt/format.h>

#include <cmath>

#include "tinygrad-cpp/ops/helpers.h"

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
      // (x - m) - log(total), not x - (m + log(total)): with large logits the second loses
      // the small differences between classes to rounding.
      const float log_total = static_cast<float>(std::log(total));
      for (int64_t k = 0; k < v.length; ++k) dst[k * v.inner] = (src[k * v.inner] - m) - log_total;
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

// softmax and log_softmax save their axis; the losses their labels (and cross_entropy
// the log-probabilities it computed on the way).
struct AxisState : SavedState {
  explicit AxisState(int axis_) : axis(axis_) {}
  int axis;
  std::string describe() const override { return fmt::format("axis={}", axis); }
};
struct LabelsState : SavedState {
  explicit LabelsState(std::vector<int64_t> labels_, Tensor log_probs_ = Tensor())
      : labels(std::move(labels_)), log_probs(std::move(log_probs_)) {}
  std::vector<int64_t> labels;  // one class per row
  Tensor log_probs;             // cross_entropy only: log_softmax of the logits
  std::string describe() const override { return fmt::format("{} labels", labels.size()); }
};

}  // namespace

// ---- log_softmax ----
Tensor log_softmax(const Tensor& x, int axis) {
  const int a = normalize_axis(axis, x.ndim(), "log_softmax");
  return tape().record(Op::LogSoftmax, {x}, log_softmax_kernel(x, a), AxisState(a));
}
// dx = g - softmax(x) * sum(g)   (sums along the axis)
static std::vector<Tensor> log_softmax_backward(const Entry& e, const Tensor& g) {
  const AxisView v = view_around(e.output, e.saved<AxisState>().axis);
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
const OpKind Op::LogSoftmax{"log_softmax", log_softmax_backward};

// ---- softmax ----
Tensor softmax(const Tensor& x, int axis) {
  const int a = normalize_axis(axis, x.ndim(), "softmax");
  Tensor out = log_softmax_kernel(x, a);
  for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] = std::exp(out.data()[i]);
  return tape().record(Op::Softmax, {x}, out, AxisState(a));
}
// dx = y * (g - sum(g * y))   (sums along the axis)
static std::vector<Tensor> softmax_backward(const Entry& e, const Tensor& g) {
  const AxisView v = view_around(e.output, e.saved<AxisState>().axis);
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
const OpKind Op::Softmax{"softmax", softmax_backward};

// ---- cross_entropy = mean_n -log softmax(logits_n)[label_n] ----
Tensor cross_entropy(const Tensor& logits, const std::vector<int64_t>& labels) {
  check_classification(logits, labels, "cross_entropy");
  const Tensor log_probs = log_softmax_kernel(logits, 1);
  const int64_t N = logits.dim(0), C = logits.dim(1);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) total -= log_probs.data()[n * C + labels[n]];
  return tape().record(Op::CrossEntropy, {logits}, Tensor::scalar(static_cast<float>(total / std::max<int64_t>(N, 1))),
                       LabelsState(labels, log_probs));
}
// dlogits = g * (softmax(logits) - onehot(label)) / N
static std::vector<Tensor> cross_entropy_backward(const Entry& e, const Tensor& g) {
  const LabelsState& state = e.saved<LabelsState>();
  const Tensor& log_probs = state.log_probs;
  const int64_t N = log_probs.dim(0), C = log_probs.dim(1);
  const float scale = g.item() / static_cast<float>(std::max<int64_t>(N, 1));
  Tensor dx = Tensor::empty(log_probs.shape());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      dx.data()[n * C + c] = scale * (std::exp(log_probs.data()[n * C + c]) - (c == state.labels[n] ? 1.f : 0.f));
  return {dx};
}
const OpKind Op::CrossEntropy{"cross_entropy", cross_entropy_backward};

// ---- nll = mean_n -log_probs[n, label_n] ----
Tensor nll(const Tensor& log_probs, const std::vector<int64_t>& labels) {
  check_classification(log_probs, labels, "nll");
  const int64_t N = log_probs.dim(0), C = log_probs.dim(1);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) total -= log_probs.data()[n * C + labels[n]];
  return tape().record(Op::Nll, {log_probs}, Tensor::scalar(static_cast<float>(total / std::max<int64_t>(N, 1))),
                       LabelsState(labels));
}
// dlog_probs[n, label_n] = -g / N, 0 elsewhere
static std::vector<Tensor> nll_backward(const Entry& e, const Tensor& g) {
  const std::vector<int64_t>& labels = e.saved<LabelsState>().labels;
  const Tensor& x = e.input(0);
  const int64_t N = x.dim(0), C = x.dim(1);
  Tensor dx = Tensor::zeros(x.shape());
  for (int64_t n = 0; n < N; ++n) dx.data()[n * C + labels[n]] = -g.item() / static_cast<float>(std::max<int64_t>(N, 1));
  return {dx};
}
const OpKind Op::Nll{"nll", nll_backward};

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
static std::vector<Tensor> mse_backward(const Entry& e, const Tensor& g) {
  const Tensor &p = e.input(0), &t = e.input(1);
  const float scale = 2.f * g.item() / static_cast<float>(std::max<int64_t>(p.numel(), 1));
  Tensor dp = Tensor::empty(p.shape());
  for (int64_t i = 0; i < p.numel(); ++i) dp.data()[i] = scale * (p.data()[i] - t.data()[i]);
  Tensor dt;
  if (t.requires_grad()) dt = neg(dp);
  return {dp, dt};
}
const OpKind Op::Mse{"mse", mse_backward};

// ---- helpers that are not ops ----
std::vector<int64_t> argmax(const Tensor& scores) {
  if (scores.ndim() != 2 || scores.dim(1) < 1)
    throw Error(fmt::format("argmax: scores {} must be [N, classes]", shape_str(scores.shape())));
  const int64_t N = scores.dim(0), C = scores.dim(1);
  std::vector<int64_t> best(static_cast<size_t>(N), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 1; c < C; ++c)
      if (scores.data()[n * C + c] > scores.data()[n * C + best[n]]) best[n] = c;
  return best;
}

Tensor one_hot(const Shape& shape, const std::vector<int64_t>& targets) {
  if (shape.size() != 2 || static_cast<int64_t>(targets.size()) != shape[0])
    throw Error(fmt::format("one_hot: {} targets for shape {} (need [N, classes] and one target a row)", targets.size(),
                            shape_str(shape)));
  Tensor seed = Tensor::zeros(shape);
  for (int64_t n = 0; n < shape[0]; ++n) {
    if (targets[n] < 0 || targets[n] >= shape[1])
      throw Error(fmt::format("one_hot: target {} of row {} is not a class of shape {}", targets[n], n, shape_str(shape)));
    seed.data()[n * shape[1] + targets[n]] = 1.f;
  }
  return seed;
}

}  // namespace tg
