// Activations: relu and relu6 (each with three backward rules), sigmoid, tanh, dropout.
//
// The rectifiers are where the visualization methods differ. Forward is always the same;
// what changes is the rule that sends the gradient g back through it:
//   vanilla   (x > 0) * g            the chain rule: the true gradient
//   deconvnet max(g, 0)              pass only positive signal, ignore the input
//   guided    (x > 0) * max(g, 0)    both: the forward mask and the backward ReLU
// For ReLU6 = clamp(x, 0, 6) the forward mask is (0 < x < 6) instead of (x > 0); the
// same three rules serve it, so one guard value switches every rectifier of a model.
// Swap them with  tg::OverrideBackward guard(tg::Op::ReLU, tg::rules::guided_relu);
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "tinygrad-cpp/ops/helpers.h"

namespace tg {

// ---- relu: y = max(x, 0) (NaN stays NaN, as in PyTorch: a NaN must not be hidden) ----
Tensor relu(const Tensor& x) {
  // BEGIN SOLUTION(relu)
  // HINT: keep the positive values and zero the rest (a NaN input stays NaN); map(x, f) applies f to every
  // HINT: element; record the result on the tape as Op::ReLU
  return tape().record(Op::ReLU, {x}, map(x, [](float v) { return v < 0.f ? 0.f : v; }));
  // END SOLUTION
}

// ---- relu6: y = min(max(x, 0), 6) ----
Tensor relu6(const Tensor& x) {
  return tape().record(Op::ReLU6, {x}, map(x, [](float v) { return v < 0.f ? 0.f : (v > 6.f ? 6.f : v); }));
}

// The rules serve both rectifiers: x passed through where 0 < x < upper_limit. (The masks
// below use & rather than &&: with no branch in it, the loop is vectorized.)
static float upper_limit(const Entry& e) {
  return e.op == &Op::ReLU6 ? 6.f : std::numeric_limits<float>::infinity();
}

namespace rules {

// dx = (0 < x < upper) * g
std::vector<Tensor> vanilla_relu(const Entry& e, const Tensor& g) {
  const float upper = upper_limit(e);
  // BEGIN SOLUTION(relu)
  // HINT: the gradient passes only where the forward input passed: above 0 and below `upper`
  return {map(e.input(0), g, [upper](float x, float gi) { return ((x > 0.f) & (x < upper)) ? gi : 0.f; })};
  // END SOLUTION
}

// dx = max(g, 0)
std::vector<Tensor> deconvnet_relu(const Entry&, const Tensor& g) {
  // BEGIN SOLUTION(relu-rules)
  // HINT: deconvnet ignores the forward input and applies a ReLU to the gradient itself
  return {map(g, [](float gi) { return gi > 0.f ? gi : 0.f; })};
  // END SOLUTION
}

// dx = (0 < x < 6) * max(g, 0): guided backprop through ReLU6, MobileNet's rectifier
static std::vector<Tensor> guided_relu6(const Entry& e, const Tensor& g) {
  // BEGIN SOLUTION(relu6-guided)
  // HINT: as guided ReLU, but ReLU6's forward passes x only strictly between 0 and 6: above 6 the output
  // HINT: is the constant 6 and nothing flows back, whatever the gradient's sign
  return {map(e.input(0), g, [](float x, float gi) { return ((x > 0.f) & (x < 6.f) & (gi > 0.f)) ? gi : 0.f; })};
  // END SOLUTION
}

// dx = (x > 0) * max(g, 0)
std::vector<Tensor> guided_relu(const Entry& e, const Tensor& g) {
  if (e.op == &Op::ReLU6) return guided_relu6(e, g);  // one rule serves both rectifiers
  // BEGIN SOLUTION(relu-rules)
  // HINT: guided backprop keeps a gradient only where both the forward mask and the gradient's sign allow it
  return {map(e.input(0), g, [](float x, float gi) { return ((x > 0.f) & (gi > 0.f)) ? gi : 0.f; })};
  // END SOLUTION
}

}  // namespace rules
const OpKind Op::ReLU{"relu", rules::vanilla_relu};
const OpKind Op::ReLU6{"relu6", rules::vanilla_relu};

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
