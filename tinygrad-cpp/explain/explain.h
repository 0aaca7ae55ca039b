// Attribution: which input pixels a class score (or one neuron) depends on.
//
// Every method here is the chain rule run from one output back to the input, with
// one thing changed: the seed (a class score, or one neuron with the rest of its
// layer zeroed), the ReLU rule (vanilla, deconvnet, guided, swapped with the scoped
// override, never by editing the model), or what is averaged (SmoothGrad, integrated
// gradients). Inputs are batches [N,C,H,W]; results have the input's shape.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tinygrad-cpp/nn/nn.h"
#include "tinygrad-cpp/core/ops.h"

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

// The class each image is explained for; -1 means "the predicted class".
using Targets = std::vector<int64_t>;

// d score[n, target[n]] / d input[n], with `rule` as the backward rule of every rectifier
// (ReLU and ReLU6) of the model: rules::vanilla_relu (the true gradient, Simonyan et al.
// 2013), rules::deconvnet_relu (Zeiler & Fergus 2014), rules::guided_relu (Springenberg et
// al. 2014), or a rule of your own. `resolved` receives the classes used (predictions
// where the target was -1).
Tensor class_gradient(nn::Model& model, const Tensor& input, const Targets& targets,
                      const BackwardRule& rule = rules::vanilla_relu, Targets* resolved = nullptr);

Tensor saliency(nn::Model& model, const Tensor& input, const Targets& targets);
Tensor input_x_gradient(nn::Model& model, const Tensor& input, const Targets& targets);
Tensor guided_backprop(nn::Model& model, const Tensor& input, const Targets& targets);
Tensor deconvnet(nn::Model& model, const Tensor& input, const Targets& targets);

// One neuron: the gradient of layer `layer`'s output at (channel, y, x) -- or
// (feature) for a flat layer, with y = x = -1 -- with every other neuron of that layer
// seeded with zero.
struct Neuron {
  std::string layer;
  int64_t channel = 0, y = -1, x = -1;
};
Tensor neuron_gradient(nn::Model& model, const Tensor& input, const Neuron& neuron,
                       const BackwardRule& rule = rules::vanilla_relu);

// SmoothGrad (Smilkov et al. 2017): the mean gradient over `samples` noisy copies of
// the input, noise ~ N(0, (sigma_fraction * (max - min of the input))^2), seeded.
Tensor smoothgrad(nn::Model& model, const Tensor& input, const Targets& targets, int samples,
                  float sigma_fraction, uint64_t seed);
Tensor smoothgrad_neuron(nn::Model& model, const Tensor& input, const Neuron& neuron, int samples, float sigma_fraction,
                  uint64_t seed);
// What both average: any gradient of a fixed target (a class, a neuron) as a function of the point.
using GradientAt = std::function<Tensor(const Tensor& point)>;
Tensor smoothgrad_of(const GradientAt& gradient_at, const Tensor& input, int samples, float sigma_fraction, uint64_t seed);

// Integrated gradients (Sundararajan et al. 2017): (x - baseline) times the mean
// gradient along the straight path from the baseline to x (midpoint rule, `steps`
// points). The attributions of an image sum to about f(x) - f(baseline).
Tensor integrated_gradients(nn::Model& model, const Tensor& input, const Targets& targets,
                            const Tensor& baseline, int steps);
Tensor integrated_gradients_neuron(nn::Model& model, const Tensor& input, const Neuron& neuron, const Tensor& baseline,
                            int steps);

// The class scores (logits) of a batch, without recording.
Tensor scores(nn::Model& model, const Tensor& input);

// Occlusion sensitivity (Zeiler & Fergus 2014): slide a window x window patch of
// `fill` over the image with the given stride; each pixel gets the mean drop in the
// target's probability (the model's softmax or sigmoid) over the windows that covered it
// (0 where none did). The occluded copies go through the model about 8 at a time.
// Result [N,1,H,W].
// With OcclusionMeasure::Score the drop is in the class score (logit) instead: a confident
// prediction (p = 1.0000) can lose several units of score and no visible probability.
enum class OcclusionMeasure { Probability, Score };
Tensor occlusion(nn::Model& model, const Tensor& input, const Targets& targets, int64_t window, int64_t stride,
                 float fill, OcclusionMeasure measure = OcclusionMeasure::Probability);

// Class activation maps at layer `layer` (a 4-D activation A [N,K,h,w]), result [N,h,w]:
//   cam:      sum_k w[c,k] A_k, with w the weights of `linear_layer` (needs a
//             global-average-pool + linear head after `layer`; Zhou et al. 2016)
//   grad_cam: ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of d score_c / d A_k
//             (Selvaraju et al. 2017)
Tensor cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer,
           const std::string& linear_layer);
Tensor grad_cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer);
// The Grad-CAM formula on its own: activations A [N,K,h,w] and their gradients dscore/dA
// (same shape) -> ReLU(sum_k alpha[n,k] A[n,k]) [N,h,w], alpha[n,k] = mean of dA[n,k].
Tensor grad_cam_map(const Tensor& activations, const Tensor& gradients);
// Guided backprop times Grad-CAM upsampled (bilinear) to the input: [N,C,H,W].
Tensor guided_grad_cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer);

// ---- the gradient-ascent engine ----
// Maximizes objective(x) - l2 * ||x||^2 - tv * TV(x) by gradient ascent from `start`.
// The objective is built from ops (so the tape can differentiate it) and returns one
// number. Regularizers, in the order they act on each step:
//   jitter      roll x by a random shift in [-jitter, jitter] before the forward pass
//               and roll the gradient back (seeded);
//   l2, tv      penalties added to the objective (weight decay; total variation);
//   blur        a Gaussian blur of x every blur_every steps;
//   clip        pixel values kept within [clip_low, clip_high].
struct AscentOptions {
  int steps = 200;
  float learning_rate = 1.f;
  float l2 = 0.f;
  float tv = 0.f;
  int jitter = 0;
  int blur_every = 0;
  float blur_sigma = 0.5f;
  bool clip = false;
  float clip_low = 0.f, clip_high = 1.f;
  // Divide each step's gradient by its mean |value| first (each image of the batch by its
  // own), so the learning rate is a step size in x's own units whatever the objective's
  // scale (as DeepDream does), and one image's large gradient cannot drown another's.
  bool normalize_gradient = false;
  uint64_t seed = 0;
  // Called after each step with the step number (from 1), the image and the objective.
  std::function<void(int step, const Tensor& x, float objective)> on_step;
};
using Objective = std::function<Tensor(const Tensor& x)>;
Tensor ascend(const Tensor& start, const Objective& objective, const AscentOptions& options);
// One step of the engine, in place: uphill on objective - l2 * ||x||^2, given the
// objective's gradient at x (same shape as x).
void ascent_step(Tensor& x, const Tensor& gradient, float learning_rate, float l2);

// Objectives for the engine.
Objective class_score(nn::Model& model, int64_t target);       // score_c(x)
// A batch that climbs toward a class per image: sum over n of score[n, targets[n]].
Objective class_scores(nn::Model& model, const Targets& targets);
Objective neuron_activation(nn::Model& model, const Neuron& n);  // one neuron's value
// -||phi(x) - phi0||^2 / ||phi0||^2 at `layer`: maximizing it inverts the representation.
Objective feature_match(nn::Model& model, const std::string& layer, const Tensor& target_features);

// ---- making ascent produce pictures (Olah, Mordvintsev & Schubert 2017, "Feature
// Visualization"): climb in a better-conditioned space, and demand robustness ----
// The image as a function of a parameter tensor z of the same shape [N,3,H,W]: z holds
// DCT coefficients scaled by 1/frequency (natural images have about that spectrum, so one
// step moves coarse structure as easily as fine detail, instead of mostly pixel noise), the
// colors are mixed by the square root of ImageNet's RGB covariance (so channels move the
// way real colors co-vary), and tanh keeps every pixel in (-1, 1): the photo model's input
// range. All of it is recorded ops, so the tape carries the gradient to z. z = 0 is gray.
class DecorrelatedImage {
 public:
  DecorrelatedImage(int64_t height, int64_t width, float decay = 1.f);
  Tensor operator()(const Tensor& z) const;

 private:
  int64_t height_, width_;
  Tensor dct_h_, dct_w_, frequency_scale_, color_;
};
// Transformation robustness: before each evaluation the image is turned, scaled and shifted
// at random (uniform in +-degrees, 1 +- scale, +-shift pixels; seeded), so only what
// survives small changes of view can raise the objective.
struct RandomTransforms {
  float degrees = 10.f, scale = 0.1f, shift = 8.f;
};
Objective transformed(const Objective& objective, const RandomTransforms& transforms, uint64_t seed);

// Building blocks the engine uses, exposed for lessons and tests.
Tensor roll(const Tensor& x, int64_t dy, int64_t dx);  // circular shift of the last two axes
Tensor gaussian_blur(const Tensor& x, float sigma);   // separable, per channel, edges clamped
Tensor total_variation(const Tensor& x);              // sum |x[i+1,j]-x[i,j]| + |x[i,j+1]-x[i,j]|, recorded

}  // namespace tg::explain
