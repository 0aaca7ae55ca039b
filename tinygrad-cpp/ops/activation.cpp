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
  // HINT: out[i] = max(x[i], 0)
  const float* px = x.data();
  float* po = out.data();
  parallel_elementwise(x.numel(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) po[i] = px[i] > 0.f ? px[i] : 0.f;
  });
  // END SOLUTION
  return tape().record(Op::ReLU, {x}, out);
}

namespace rules {

// dx = (x > 0) * g
std::vector<Tensor> vanilla_relu(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  // BEGIN SOLUTION(relu)
  // HINT: the gradient passes where the input was positive: dx[i] = x[i] > 0 ? g[i] : 0
  const float* x = e.input(0).data();
  const float* pg = g.data();
  float* pd = dx.data();
  parallel_elementwise(g.numel(), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) pd[i] = x[i] > 0.f ? pg[i] : 0.f;
  });
  // END SOLUTION
  return {dx};
}

// dx = max(g, 0)
std::vector<Tensor> deconvnet_relu(const Entry& e, const Tensor& g) {
  (void)e;  // the deconvnet rule ignores the forward input entirely
  Tensor dx = Tensor::empty(g.shape());
  // BEGIN SOLUTION(relu-rules)
  // HINT: deconvnet ignores x and applies a ReLU to the gradient: dx[i] = max(g[i], 0)
  const float* pg = g.data();
  float* pd = dx.data();
  for (int64_t i = 0; i < g.numel(); ++i) pd[i] = pg[i] > 0.f ? pg[i] : 0.f;
  // END SOLUTION
  return {dx};
}

// dx = (x > 0) * max(g, 0)
std::vector<Tensor> guided_relu(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  // BEGIN SOLUTION(relu-rules)
  // HINT: guided backprop keeps a gradient only where both x > 0 and g > 0
  const float* x = e.input(0).data();
  const float* pg = g.data();
  float* pd = dx.data();
  for (int64_t i = 0; i < g.numel(); ++i) pd[i] = (x[i] > 0.f && pg[i] > 0.f) ? pg[i] : 0.f;
  // END SOLUTION
  return {dx};
}

}  // namespace rules

// ---- sigmoid ----
Tensor sigmoid(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) out.data()[i] = 1.f / (1.f + std::exp(-x.data()[i]));
  return tape().record(Op::Sigmoid, {x}, out);
}
// dx = g * y * (1 - y)
std::vector<Tensor> sigmoid_backward(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  const float* y = e.output.data();
  for (int64_t i = 0; i < g.numel(); ++i) dx.data()[i] = g.data()[i] * y[i] * (1.f - y[i]);
  return {dx};
}

// ---- tanh ----
Tensor tanh(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) out.data()[i] = std::tanh(x.data()[i]);
  return tape().record(Op::Tanh, {x}, out);
}
// dx = g * (1 - y^2)
std::vector<Tensor> tanh_backward(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  const float* y = e.output.data();
  for (int64_t i = 0; i < g.numel(); ++i) dx.data()[i] = g.data()[i] * (1.f - y[i] * y[i]);
  return {dx};
}

// ---- dropout ----
Tensor dropout(const Tensor& x, float p, bool training, Generator& gen) {
  if (!(p >= 0.f && p < 1.f)) throw Error(fmt::format("dropout: probability {} is not in [0, 1)", p));
  if (!training || p == 0.f) return x;
  // mask[i] = 0 with probability p, else 1/(1-p), so the expected output equals x.
  Tensor mask = Tensor::empty(x.shape());
  const float keep_scale = 1.f / (1.f - p);
  for (int64_t i = 0; i < x.numel(); ++i) mask.data()[i] = gen.uniform() < p ? 0.f : keep_scale;
  Tensor out = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) out.data()[i] = x.data()[i] * mask.data()[i];
  OpParams params;
  params.scalar = p;
  return tape().record(Op::Dropout, {x}, out, params, {mask});
}
// dx = g * mask
std::vector<Tensor> dropout_backward(const Entry& e, const Tensor& g) {
  Tensor dx = Tensor::empty(g.shape());
  const float* mask = e.saved[0].data();
  for (int64_t i = 0; i < g.numel(); ++i) dx.data()[i] = g.data()[i] * mask[i];
  return {dx};
}

}  // namespace tg
