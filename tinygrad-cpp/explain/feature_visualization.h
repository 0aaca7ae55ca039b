// Feature visualization of one detection: the image a detector's anchor wants to call a class.
//
// A detector scores a class at each of its anchors (boxes at fixed places and sizes). Asking
// for "the class anywhere" (the best of all anchors) lets any anchor win, so ascent fills the
// frame with the class's texture. Asking one anchor near the centre makes one object form
// where that anchor's box is. The climb follows Olah, Mordvintsev & Schubert (2017, "Feature
// Visualization"): a decorrelated image (DecorrelatedImage), random turns, zooms and shifts
// (transformed), and Adam on the image's parameters.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/models/detection.h"

namespace tg::explain {

// ---- the objective ----
// The anchors of one cell of a detector's head (models/detection.h: detection_heads() gives
// the heads, their grids and their first anchor): first_anchor + (row * width + col) *
// per_cell + k for every k; errors name the head's grid and the cell asked for.
std::vector<int64_t> cell_anchors(const models::Head& head, int64_t row, int64_t col);

// Image n climbs class classes[n] at the anchors anchors[n]: the sum of those anchors'
// logits, each read as explain/target.h reads one detection (Target::of_detections). An
// anchor of -1 is the class's best anchor at each step ("the class anywhere", what a
// classifier's score would be), kept to show why it misleads.
struct DetectionTargets {
  std::vector<int64_t> classes;
  std::vector<std::vector<int64_t>> anchors;
};
Objective detection_logits(nn::Model& model, const DetectionTargets& targets);
// Each image's logits of the targets above, without recording, from one forward pass of
// `images`: [N][anchors of image n], each with the anchor it was read at (a -1 resolved to
// that pass's best anchor).
struct AnchorLogit {
  int64_t anchor = 0;
  float logit = 0.f;
};
std::vector<std::vector<AnchorLogit>> detection_logit_values(nn::Model& model, const Tensor& images,
                                                             const DetectionTargets& targets);

// ---- the climb ----
struct FeatureVisualizationOptions {
  int steps = 256;
  float learning_rate = 0.05f;  // Adam, on the parameters z of the image
  // DecorrelatedImage's z is multiplied by `gain` first: with 1, a step of Adam moves pixels
  // by far less than in Lucid's Fourier parameterization; `gain` makes them comparable.
  float gain = 60.f;
  float decay = 1.f;         // the spectrum's 1/frequency^decay
  float initial_sd = 0.01f;  // z starts as N(0, initial_sd^2): a gray image with faint noise
  RandomTransforms transforms;
  uint64_t seed = 0;  // the starting noise (unless image_seeds) and the transforms
  // When given (one per image), image n starts from the noise of its own seed, so an image
  // does not change when the others of the batch do (the transforms, one per step for the
  // whole batch, come from `seed` alone).
  std::vector<uint64_t> image_seeds;
  // Called after each step with the step number (from 1) and the objective's value.
  std::function<void(int step, float objective)> on_step;
  // When set, also called after each step with the images as they now are ([N,3,H,W], one
  // pass of the parameterization without recording): frames of the climb.
  std::function<void(int step, const Tensor& images)> on_images;
};
// Climbs objective(image) for a batch of `images` images of height x width, starting from
// faint noise; returns the images in [-1, 1] (tanh's range, the photo model's input range), [N,3,H,W].
Tensor visualize(const Objective& objective, int64_t images, int64_t height, int64_t width,
                 const FeatureVisualizationOptions& options);

}  // namespace tg::explain
