// Gradient methods: which input pixels a target depends on, read from the chain rule.
//
// Every method here is the gradient of a target (target.h: a class score, one neuron, one
// detection) with respect to the input, with one thing changed: the ReLU rule (vanilla,
// deconvnet, guided, swapped with the scoped override, never by editing the model), or what
// is averaged (SmoothGrad, integrated gradients). Inputs are batches [N,C,H,W]; results
// have the input's shape.
#pragma once

#include <cstdint>
#include <functional>

#include "tinygrad-cpp/explain/methods.h"

namespace tg::explain {

// THE gradient: d target / d input, with `rule` as the backward rule of every rectifier
// (ReLU and ReLU6) of the model: rules::vanilla_relu (the true gradient, Simonyan et al.
// 2013), rules::deconvnet_relu (Zeiler & Fergus 2014), rules::guided_relu (Springenberg et
// al. 2014), or a rule of your own. `resolved` receives the target used (predicted classes,
// best anchors where they were -1). Every method of this family and rule_based.h derives
// from it.
Tensor gradient(nn::Model& model, const Tensor& input, const Target& target,
                const BackwardRule& rule = rules::vanilla_relu, Target* resolved = nullptr);

// The same for a class per image (d score[n, target[n]] / d input[n]) or one neuron.
Tensor class_gradient(nn::Model& model, const Tensor& input, const Targets& targets,
                      const BackwardRule& rule = rules::vanilla_relu, Targets* resolved = nullptr);
Tensor neuron_gradient(nn::Model& model, const Tensor& input, const Neuron& neuron,
                       const BackwardRule& rule = rules::vanilla_relu);

// Saliency (Simonyan et al. 2013): the plain gradient. Input x gradient: its product with
// the input, elementwise.
Tensor saliency(nn::Model& model, const Tensor& input, const Target& target);
Tensor input_x_gradient(nn::Model& model, const Tensor& input, const Target& target);

// SmoothGrad (Smilkov et al. 2017): the mean gradient over `samples` noisy copies of
// the input, noise ~ N(0, (sigma_fraction * (max - min of the input))^2), seeded.
Tensor smoothgrad(nn::Model& model, const Tensor& input, const Target& target, int samples, float sigma_fraction,
                  uint64_t seed);
// What it averages: any gradient of a fixed target as a function of the point.
using GradientAt = std::function<Tensor(const Tensor& point)>;
Tensor smoothgrad_of(const GradientAt& gradient_at, const Tensor& input, int samples, float sigma_fraction, uint64_t seed);

// Integrated gradients (Sundararajan et al. 2017): (x - baseline) times the mean
// gradient along the straight path from the baseline to x (midpoint rule, `steps`
// points). The attributions of an image sum to about f(x) - f(baseline).
Tensor integrated_gradients(nn::Model& model, const Tensor& input, const Target& target, const Tensor& baseline,
                            int steps);

// The class-index and neuron spellings the lessons use (thin wrappers).
inline Tensor saliency(nn::Model& model, const Tensor& input, const Targets& targets) {
  return saliency(model, input, Target::of_classes(targets));
}
inline Tensor input_x_gradient(nn::Model& model, const Tensor& input, const Targets& targets) {
  return input_x_gradient(model, input, Target::of_classes(targets));
}
inline Tensor smoothgrad(nn::Model& model, const Tensor& input, const Targets& targets, int samples,
                         float sigma_fraction, uint64_t seed) {
  return smoothgrad(model, input, Target::of_classes(targets), samples, sigma_fraction, seed);
}
inline Tensor smoothgrad_neuron(nn::Model& model, const Tensor& input, const Neuron& neuron, int samples,
                                float sigma_fraction, uint64_t seed) {
  return smoothgrad(model, input, Target::of_neuron(neuron), samples, sigma_fraction, seed);
}
inline Tensor integrated_gradients(nn::Model& model, const Tensor& input, const Targets& targets,
                                   const Tensor& baseline, int steps) {
  return integrated_gradients(model, input, Target::of_classes(targets), baseline, steps);
}
inline Tensor integrated_gradients_neuron(nn::Model& model, const Tensor& input, const Neuron& neuron,
                                          const Tensor& baseline, int steps) {
  return integrated_gradients(model, input, Target::of_neuron(neuron), baseline, steps);
}

}  // namespace tg::explain
