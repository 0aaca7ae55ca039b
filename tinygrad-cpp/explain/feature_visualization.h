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

namespace tg::explain {

// ---- where an SSD-MobileNetV2-300 anchor sits ----
// Six heads read maps of 19x19, 10x10, 5x5, 3x3, 2x2 and 1x1 cells; the 19x19 head has 3
// anchors a cell, the others 6; 1,917 in all. Within a head the index is
// first + (row * cols + col) * per_cell + k. Anchor k = 0 is the head's square box of side
// `scale` (of the image side); on the 19x19 head it is a small square of 0.1.
struct SsdHead {
  int64_t cells = 0, per_cell = 0, first = 0;  // cells x cells
  float scale = 0.f;
};
const std::vector<SsdHead>& ssd_mobilenet_v2_heads();
int64_t ssd_anchor_count();  // 1917
// Anchor k of the cell (row, col) of head `head` (0 = 19x19 ... 5 = 1x1); errors name the range.
int64_t ssd_anchor(int head, int64_t row, int64_t col, int64_t k);
// The square anchor (k = 0) of a cell as pixels of an image of side `size`: x0, y0, x1, y1.
struct PixelBox {
  int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};
PixelBox ssd_square_anchor_box(int head, int64_t row, int64_t col, int64_t size);

// ---- the objective ----
// Image n climbs class classes[n] at the anchors anchors[n]: sum over n and over those anchors
// of the recorded logit[n, anchor, class] (model.anchor_logits() after the forward pass). An
// empty list means "the class anywhere": the best anchor's logit (forward()'s score), kept to
// show why it misleads.
struct DetectionTargets {
  std::vector<int64_t> classes;
  std::vector<std::vector<int64_t>> anchors;
};
Objective detection_logits(nn::Model& model, const DetectionTargets& targets);
// The logit of every (image, anchor, class) above without recording: [N, anchors of image n]
// (the best anchor's logit for an empty list), read from one forward pass of `images`.
std::vector<std::vector<float>> detection_logit_values(nn::Model& model, const Tensor& images,
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
  uint64_t seed = 0;
  // Called after each step with the step number (from 1) and the objective's value.
  std::function<void(int step, float objective)> on_step;
};
// Climbs objective(image) for a batch of `images` images of height x width, starting from
// faint noise; returns the images in [-1, 1] (tanh's range, the photo model's input range), [N,3,H,W].
Tensor visualize(const Objective& objective, int64_t images, int64_t height, int64_t width,
                 const FeatureVisualizationOptions& options);

}  // namespace tg::explain
