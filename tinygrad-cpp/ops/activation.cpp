// The rectifiers relu and relu6, each with three backward rules (sigmoid, tanh and dropout are in smooth.cpp).
//
// The rectifiers are where the visualization methods differ. Forward is always the same;
// what changes is the rule that sends the gradient g back through it:
//   vanilla   (x > 0) * g            the chain rule: the true gradient
//   deconvnet max(g, 0)              pass only positive signal, ignore the input
//   guided    (x > 0) * max(g, 0)    both: the forward mask and the backward ReLU
// For ReLU6 = clamp(x, 0, 6) the forward mask is (0 < x < 6) instead of (x > 0); the
// same three rules serve it, so one guard value switches every rectifier of a model.
// Swap them with  tg::OverrideBackward guard(tg::Op::ReLU, tg::rules::guided_relu);
#include <limits>

#include "tinygrad-cpp/ops/helpers.h"

namespace tg {

// ---- relu: y = max(x, 0) (NaN stays NaN, as in PyTorch: a NaN must not be hidden) ----
Tensor relu(const Tensor& x) {
  // BEGIN SOLUTION(relu)
  // HINT: max(v, 0) for every element, except that a NaN comes out NaN; the output goes on the tape as this
  // HINT: op's kind, or backward will never find its rule
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
  // HINT: one gradient per input: g where the entry's input lay strictly inside (0, upper), 0 elsewhere
  return {map(e.input(0), g, [upper](float x, float gi) { return ((x > 0.f) & (x < upper)) ? gi : 0.f; })};
  // END SOLUTION
}

// dx = max(g, 0)
std::vector<Tensor> deconvnet_relu(const Entry&, const Tensor& g) {
  // BEGIN SOLUTION(relu-rules)
  // HINT: the forward input plays no part: rectify the incoming gradient itself
  return {map(g, [](float gi) { return gi > 0.f ? gi : 0.f; })};
  // END SOLUTION
}

// dx = (0 < x < 6) * max(g, 0): guided backprop through ReLU6, MobileNet's rectifier
static std::vector<Tensor> guided_relu6(const Entry& e, const Tensor& g) {
  // BEGIN SOLUTION(relu6-guided)
  // HINT: the guided rule with ReLU6's open range (0, 6): above 6 the output is constant, so nothing flows
  // HINT: back there whatever the gradient's sign
  return {map(e.input(0), g, [](float x, float gi) { return ((x > 0.f) & (x < 6.f) & (gi > 0.f)) ? gi : 0.f; })};
  // END SOLUTION
}

// dx = (x > 0) * max(g, 0)
std::vector<Tensor> guided_relu(const Entry& e, const Tensor& g) {
  if (e.op == &Op::ReLU6) return guided_relu6(e, g);  // one rule serves both rectifiers
  // BEGIN SOLUTION(relu-rules)
  // HINT: both rules above at once: vanilla's forward mask and deconvnet's rectified gradient
  return {map(e.input(0), g, [](float x, float gi) { return ((x > 0.f) & (gi > 0.f)) ? gi : 0.f; })};
  // END SOLUTION
}

}  // namespace rules
const OpKind Op::ReLU{"relu", rules::vanilla_relu};
const OpKind Op::ReLU6{"relu6", rules::vanilla_relu};

}  // namespace tg
