// Synthesis: image parameterizations for the ascent engine (ascent.h).
#pragma once

#include <cstdint>

#include "tinygrad-cpp/explain/ascent.h"

namespace tg::explain {

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

}  // namespace tg::explain
