#include "tinygrad-cpp/explain.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

namespace tg::explain {

FreezeParameters::FreezeParameters(const nn::Module& model) {
  for (Tensor p : model.parameters()) {
    saved_.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
}

FreezeParameters::~FreezeParameters() {
  for (auto& [p, was] : saved_) p.requires_grad_(was);
}

namespace {

// The scoped override for a rule (none for the vanilla rule).
std::unique_ptr<OverrideBackward> relu_override(ReluRule rule) {
  switch (rule) {
    case ReluRule::Deconvnet: return std::make_unique<OverrideBackward>(Op::ReLU, rules::deconvnet_relu);
    case ReluRule::Guided: return std::make_unique<OverrideBackward>(Op::ReLU, rules::guided_relu);
    case ReluRule::Vanilla: break;
  }
  return nullptr;
}

void check_input(const Tensor& input, const Targets& targets, const char* method) {
  if (input.ndim() != 4)
    throw Error(fmt::format("{}: input {} must be a batch [N,C,H,W]", method, shape_str(input.shape())));
  if (static_cast<int64_t>(targets.size()) != input.dim(0))
    throw Error(fmt::format("{}: {} targets for a batch of {}", method, targets.size(), input.dim(0)));
}

// Predicted class of each row of scores [N, classes].
Targets argmax_rows(const Tensor& scores) {
  Targets out;
  const int64_t classes = scores.dim(1);
  for (int64_t n = 0; n < scores.dim(0); ++n) {
    const float* row = scores.data() + n * classes;
    out.push_back(std::max_element(row, row + classes) - row);
  }
  return out;
}

}  // namespace

Tensor scores(nn::Sequential& model, const Tensor& input) {
  NoGrad no_grad;
  return model(input);
}

Tensor class_gradient(nn::Sequential& model, const Tensor& input, const Targets& targets, ReluRule rule,
                      Targets* resolved) {
  check_input(input, targets, "class_gradient");
  FreezeParameters frozen(model);
  const Tensor x = input.detach().requires_grad_();
  const Tensor logits = model(x);
  if (logits.ndim() != 2) throw Error("class_gradient: the model's output " + shape_str(logits.shape()) + " is not [N, classes]");
  Targets classes = targets;
  const Targets predicted = argmax_rows(logits);
  // The seed is one-hot on each image's target score: d score / d score = 1, others 0.
  Tensor seed = Tensor::zeros(logits.shape());
  for (int64_t n = 0; n < logits.dim(0); ++n) {
    if (classes[n] < 0) classes[n] = predicted[n];
    if (classes[n] >= logits.dim(1))
      throw Error(fmt::format("class_gradient: target {} out of range for {} classes", classes[n], logits.dim(1)));
    seed.at({n, classes[n]}) = 1.f;
  }
  {
    const auto guard = relu_override(rule);
    logits.backward(seed);
  }
  if (resolved) *resolved = classes;
  return x.grad();
}

Tensor saliency(nn::Sequential& model, const Tensor& input, const Targets& targets) {
  // BEGIN SOLUTION(saliency)
  // HINT: the gradient of each image's target score with respect to its pixels (class_gradient, vanilla rule)
  return class_gradient(model, input, targets, ReluRule::Vanilla);
  // END SOLUTION
}

Tensor input_x_gradient(nn::Sequential& model, const Tensor& input, const Targets& targets) {
  const Tensor gradient = class_gradient(model, input, targets, ReluRule::Vanilla);
  NoGrad no_grad;
  return mul(input, gradient);
}

Tensor guided_backprop(nn::Sequential& model, const Tensor& input, const Targets& targets) {
  return class_gradient(model, input, targets, ReluRule::Guided);
}

Tensor deconvnet(nn::Sequential& model, const Tensor& input, const Targets& targets) {
  return class_gradient(model, input, targets, ReluRule::Deconvnet);
}

Tensor neuron_gradient(nn::Sequential& model, const Tensor& input, const Neuron& neuron, ReluRule rule) {
  if (input.ndim() != 4) throw Error("neuron_gradient: input " + shape_str(input.shape()) + " must be a batch [N,C,H,W]");
  FreezeParameters frozen(model);
  const Tensor x = input.detach().requires_grad_();
  const Tensor activation = model.forward_until(x, neuron.layer);
  Tensor seed = Tensor::zeros(activation.shape());
  const bool spatial = activation.ndim() == 4;
  const int64_t channels = activation.dim(1);
  if (neuron.channel < 0 || neuron.channel >= channels ||
      (spatial && (neuron.y < 0 || neuron.y >= activation.dim(2) || neuron.x < 0 || neuron.x >= activation.dim(3))) ||
      (!spatial && activation.ndim() != 2))
    throw Error(fmt::format("neuron_gradient: neuron (channel {}, y {}, x {}) is outside layer '{}' of shape {}", neuron.channel,
                            neuron.y, neuron.x, neuron.layer, shape_str(activation.shape())));
  for (int64_t n = 0; n < activation.dim(0); ++n) {
    if (spatial) seed.at({n, neuron.channel, neuron.y, neuron.x}) = 1.f;
    else seed.at({n, neuron.channel}) = 1.f;
  }
  {
    const auto guard = relu_override(rule);
    activation.backward(seed);
  }
  return x.grad();
}

Tensor smoothgrad(nn::Sequential& model, const Tensor& input, const Targets& targets, int samples, float sigma_fraction,
                  uint64_t seed) {
  check_input(input, targets, "smoothgrad");
  if (samples < 1 || !(sigma_fraction >= 0.f))
    throw Error(fmt::format("smoothgrad: samples {} must be >= 1 and sigma {} >= 0", samples, sigma_fraction));
  // Resolve "predicted class" once, on the clean input, so every sample explains the same class.
  Targets classes = targets;
  const Targets predicted = argmax_rows(scores(model, input));
  for (size_t n = 0; n < classes.size(); ++n)
    if (classes[n] < 0) classes[n] = predicted[n];
  const float* in = input.data();
  const auto [lo, hi] = std::minmax_element(in, in + input.numel());
  const float sigma = sigma_fraction * (*hi - *lo);
  Generator gen(seed);
  Tensor total = Tensor::zeros(input.shape());
  for (int s = 0; s < samples; ++s) {
    Tensor noisy = input.clone();
    for (int64_t i = 0; i < noisy.numel(); ++i) noisy.data()[i] += gen.normal(0.f, sigma);
    const Tensor g = class_gradient(model, noisy, classes);
    for (int64_t i = 0; i < total.numel(); ++i) total.data()[i] += g.data()[i];
  }
  for (int64_t i = 0; i < total.numel(); ++i) total.data()[i] /= static_cast<float>(samples);
  return total;
}

Tensor integrated_gradients(nn::Sequential& model, const Tensor& input, const Targets& targets, const Tensor& baseline,
                            int steps) {
  check_input(input, targets, "integrated_gradients");
  if (baseline.shape() != input.shape())
    throw Error(fmt::format("integrated_gradients: baseline {} and input {} differ in shape", shape_str(baseline.shape()),
                            shape_str(input.shape())));
  if (steps < 1) throw Error(fmt::format("integrated_gradients: steps {} must be >= 1", steps));
  Targets classes = targets;
  const Targets predicted = argmax_rows(scores(model, input));
  for (size_t n = 0; n < classes.size(); ++n)
    if (classes[n] < 0) classes[n] = predicted[n];
  Tensor mean_gradient = Tensor::zeros(input.shape());
  for (int s = 0; s < steps; ++s) {
    const float alpha = (static_cast<float>(s) + 0.5f) / static_cast<float>(steps);  // midpoint rule
    Tensor point = Tensor::empty(input.shape());
    for (int64_t i = 0; i < point.numel(); ++i)
      point.data()[i] = baseline.data()[i] + alpha * (input.data()[i] - baseline.data()[i]);
    const Tensor g = class_gradient(model, point, classes);
    for (int64_t i = 0; i < g.numel(); ++i) mean_gradient.data()[i] += g.data()[i] / static_cast<float>(steps);
  }
  Tensor attribution = Tensor::empty(input.shape());
  for (int64_t i = 0; i < attribution.numel(); ++i)
    attribution.data()[i] = (input.data()[i] - baseline.data()[i]) * mean_gradient.data()[i];
  return attribution;
}

}  // namespace tg::explain
