// Activations: relu (with its three backward rules), sigmoid, tanh, dropout.
//
// ReLU is where the visualization methods differ. Forward is always max(x, 0);
// what changes is the rule that sends the gradient g back through it:
//   vanilla   (x > 0) * g            the chain rule: the true gradient
//   deconvnet max(g, 0)              pass only positive signal, ignore the input
//   guided    (x > 0) * max(g, 0)    both: the forward mask and the backward ReLU
// Swap them with tg::OverrideBackward guard(tg::Op::ReLU, tg::rules::guided_relu);
#include <fmt/format.h>

#include <cmath>

#include "tinygrad-cpp/ops/backward_rules.h"

namespace tg {

// ---- relu ----
Tensor relu(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  // BEGIN SOLUTION(relu)
  // HINT: out[i] = max(x[i], 0); elementwise_unary(n, in, out, f) applies f to every element
  elementwise_unary(x.numel(), x.data(), out.data(), [](float v) { return v > 0.f ? v : 0.f; });
  // END SOLUTION
  return tape().record(Op::ReLU, {x}, out);
}

namespace rules {

// dx = (x > 0) * g
std::vector<Tensor> vanilla_relu(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  // BEGIN SOLUTION(relu)
  // HINT: the gradient passes where the input was positive: dx[i] = x[i] > 0 ? g[i] : 0
  elementwise_binary(g.numel(), e.input(0).data(), g.data(), dx.data(), [](float x, float gi) { return x > 0.f ? gi : 0.f; });
  // END SOLUTION
  return {dx};
}

// dx = max(g, 0)
std::vector<Tensor> deconvnet_relu(const Entry& e, const Tensor& g) {
  (void)e;  // the deconvnet rule ignores the forward input entirely
  Tensor dx = Tensor::empty(g.shape());
  // BEGIN SOLUTION(relu-rules)
  // HINT: deconvnet ignores x and applies a ReLU to the gradient: dx[i] = max(g[i], 0)
  elementwise_unary(g.numel(), g.data(), dx.data(), [](float gi) { return gi > 0.f ? gi : 0.f; });
  // END SOLUTION
  return {dx};
}

// dx = (x > 0) * max(g, 0)
std::vector<Tensor> guided_relu(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  // BEGIN SOLUTION(relu-rules)
  // HINT: guided backprop keeps a gradient only where both x > 0 and g > 0
  elementwise_binary(g.numel(), e.input(0).data(), g.data(), dx.data(),
                     [](float x, float gi) { return (x > 0.f && gi > 0.f) ? gi : 0.f; });
  // END SOLUTION
  return {dx};
}

}  // namespace rules

// ---- sigmoid ----
Tensor sigmoid(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  elementwise_unary(x.numel(), x.data(), out.data(), [](float v) { return 1.f / (1.f + std::exp(-v)); });
  return tape().record(Op::Sigmoid, {x}, out);
}
// dx = g * y * (1 - y)
std::vector<Tensor> sigmoid_backward(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  elementwise_binary(g.numel(), g.data(), e.output.data(), dx.data(), [](float gi, float y) { return gi * y * (1.f - y); });
  return {dx};
}

// ---- tanh ----
Tensor tanh(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  elementwise_unary(x.numel(), x.data(), out.data(), [](float v) { return std::tanh(v); });
  return tape().record(Op::Tanh, {x}, out);
}
// dx = g * (1 - y^2)
std::vector<Tensor> tanh_backward(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  elementwise_binary(g.numel(), g.data(), e.output.data(), dx.data(), [](float gi, float y) { return gi * (1.f - y * y); });
  return {dx};
}

// ---- dropout ----
Tensor dropout(const Tensor& x, float p, bool training, Generator& gen) {
  if (!(p >= 0.f && p < 1.f)) throw Error(fmt::format("dropout: probability {} is not in [0, 1)", p));
  if (!training || p == 0.f) return x;
  // mask[i] = 0 with probability p, else 1/(1-p), so the expected output equals x.
  Tensor mask = Tensor::empty(x.shape());
  const float keep_scale = 1.f / (1.f - p);
  float* m = mask.data();
  for (int64_t i = 0; i < x.numel(); ++i) m[i] = gen.uniform() < p ? 0.f : keep_scale;
  Tensor out = Tensor::empty(x.shape());
  elementwise_binary(x.numel(), x.data(), m, out.data(), [](float v, float keep) { return v * keep; });
  OpParams params;
  params.scalar = p;
  return tape().record(Op::Dropout, {x}, out, params, {mask});
}
// dx = g * mask
std::vector<Tensor> dropout_backward(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  elementwise_binary(g.numel(), g.data(), e.saved[0].data(), dx.data(), [](float gi, float keep) { return gi * keep; });
  return {dx};
}

}  // namespace tg
