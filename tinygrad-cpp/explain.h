// Attribution: which input pixels a class score (or one neuron) depends on.
//
// Every method here is the chain rule run from one output back to the input, with
// one thing changed: the seed (a class score, or one neuron with the rest of its
// layer zeroed), the ReLU rule (vanilla, deconvnet, guided, swapped with the scoped
// override, never by editing the model), or what is averaged (SmoothGrad, integrated
// gradients). Inputs are batches [N,C,H,W]; results have the input's shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tinygrad-cpp/nn.h"
#include "tinygrad-cpp/ops.h"

namespace tg::explain {

// RAII: the model's parameters stop requiring grad (so backward computes only what
// attribution needs, and never touches the parameters' .grad); restored on scope exit.
class FreezeParameters {
 public:
  explicit FreezeParameters(const nn::Module& model);
  ~FreezeParameters();
  FreezeParameters(const FreezeParameters&) = delete;
  FreezeParameters& operator=(const FreezeParameters&) = delete;

 private:
  std::vector<std::pair<Tensor, bool>> saved_;
};

// Which ReLU backward rule to use for the pass back to the input.
enum class ReluRule { Vanilla, Deconvnet, Guided };

// The class each image is explained for; -1 means "the predicted class".
using Targets = std::vector<int64_t>;

// d score[n, target[n]] / d input[n], under the given ReLU rule (Simonyan et al. 2013
// for Vanilla; Zeiler & Fergus / Springenberg et al. 2014 for Deconvnet / Guided).
// `resolved` receives the classes used (predictions where the target was -1).
Tensor class_gradient(nn::Sequential& model, const Tensor& input, const Targets& targets,
                      ReluRule rule = ReluRule::Vanilla, Targets* resolved = nullptr);

Tensor saliency(nn::Sequential& model, const Tensor& input, const Targets& targets);
Tensor input_x_gradient(nn::Sequential& model, const Tensor& input, const Targets& targets);
Tensor guided_backprop(nn::Sequential& model, const Tensor& input, const Targets& targets);
Tensor deconvnet(nn::Sequential& model, const Tensor& input, const Targets& targets);

// One neuron: the gradient of layer `layer`'s output at (channel, y, x) -- or
// (feature) for a flat layer, with y = x = -1 -- with every other neuron of that layer
// seeded with zero.
struct Neuron {
  std::string layer;
  int64_t channel = 0, y = -1, x = -1;
};
Tensor neuron_gradient(nn::Sequential& model, const Tensor& input, const Neuron& neuron,
                       ReluRule rule = ReluRule::Vanilla);

// SmoothGrad (Smilkov et al. 2017): the mean gradient over `samples` noisy copies of
// the input, noise ~ N(0, (sigma_fraction * (max - min of the input))^2), seeded.
Tensor smoothgrad(nn::Sequential& model, const Tensor& input, const Targets& targets, int samples,
                  float sigma_fraction, uint64_t seed);

// Integrated gradients (Sundararajan et al. 2017): (x - baseline) times the mean
// gradient along the straight path from the baseline to x (midpoint rule, `steps`
// points). The attributions of an image sum to about f(x) - f(baseline).
Tensor integrated_gradients(nn::Sequential& model, const Tensor& input, const Targets& targets,
                            const Tensor& baseline, int steps);

// The class scores (logits) of a batch, without recording.
Tensor scores(nn::Sequential& model, const Tensor& input);

}  // namespace tg::explain
