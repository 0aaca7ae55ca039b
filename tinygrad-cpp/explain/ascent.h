// Synthesis: the gradient-ascent engine and its objectives. Instead of explaining an image,
// make one: climb an objective of the input (a class score, a neuron, the distance to an
// image's features: feature inversion) with regularizers that keep the image natural.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "tinygrad-cpp/explain/target.h"

namespace tg::explain {

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

// Building blocks the engine uses, exposed for lessons and tests.
Tensor roll(const Tensor& x, int64_t dy, int64_t dx);  // circular shift of the last two axes
Tensor gaussian_blur(const Tensor& x, float sigma);   // separable, per channel, edges clamped
Tensor total_variation(const Tensor& x);              // sum |x[i+1,j]-x[i,j]| + |x[i,j+1]-x[i,j]|, recorded

}  // namespace tg::explain
