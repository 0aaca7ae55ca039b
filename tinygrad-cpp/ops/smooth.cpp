// The smooth activations sigmoid and tanh, and dropout: each a forward and its one backward
// rule (the rectifiers, whose rules the visualization methods swap, are in activation.cpp).
#include <fmt/format.h>

#include <cmath>

#include "tinygrad-cpp/ops/helpers.h"

namespace tg {

// ---- sigmoid: y = 1 / (1 + exp(-x)) ----
Tensor sigmoid(const Tensor& x) {
  return tape().record(Op::Sigmoid, {x}, map(x, [](float v) { return 1.f / (1.f + std::exp(-v)); }));
}
// dx = g * y * (1 - y)
static std::vector<Tensor> sigmoid_backward(const Entry& e, const Tensor& g) {
  return {map(g, e.output, [](float gi, float y) { return gi * y * (1.f - y); })};
}
const OpKind Op::Sigmoid{"sigmoid", sigmoid_backward};

// ---- tanh ----
Tensor tanh(const Tensor& x) {
  return tape().record(Op::Tanh, {x}, map(x, [](float v) { return std::tanh(v); }));
}
// dx = g * (1 - y^2)
static std::vector<Tensor> tanh_backward(const Entry& e, const Tensor& g) {
  return {map(g, e.output, [](float gi, float y) { return gi * (1.f - y * y); })};
}
const OpKind Op::Tanh{"tanh", tanh_backward};

// ---- dropout ----
namespace {
struct DropoutState : SavedState {
  DropoutState(float p_, Tensor keep_) : p(p_), keep(std::move(keep_)) {}
  float p;       // the probability of dropping an element
  Tensor keep;   // per element: 0 where dropped, 1/(1-p) where kept
  std::string describe() const override { return fmt::format("p={}", p); }
};
}  // namespace

Tensor dropout(const Tensor& x, float p, bool training, Generator& gen) {
  if (!(p >= 0.f && p < 1.f)) throw Error(fmt::format("dropout: probability {} is not in [0, 1)", p));
  if (!training || p == 0.f) return x;
  // keep[i] = 0 with probability p, else 1/(1-p), so the expected output equals x.
  Tensor keep = Tensor::empty(x.shape());
  const float keep_scale = 1.f / (1.f - p);
  float* k = keep.data();
  for (int64_t i = 0; i < x.numel(); ++i) k[i] = gen.uniform() < p ? 0.f : keep_scale;
  Tensor out = map(x, keep, [](float v, float scale) { return v * scale; });
  return tape().record(Op::Dropout, {x}, out, DropoutState(p, keep));
}
// dx = g * keep
static std::vector<Tensor> dropout_backward(const Entry& e, const Tensor& g) {
  return {map(g, e.saved<DropoutState>().keep, [](float gi, float scale) { return gi * scale; })};
}
const OpKind Op::Dropout{"dropout", dropout_backward};

}  // namespace tg
