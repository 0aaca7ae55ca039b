// Perturbation: occlusion sensitivity (Zeiler & Fergus 2014). No gradient at all: the
// model is run on copies of the image with a patch hidden, and each pixel gets how much
// hiding it lowered the target.
#pragma once

#include <cstdint>

#include "tinygrad-cpp/explain/methods.h"

namespace tg::explain {

// The default window for an input of height x width: the lecture's 32x32 on a 300-pixel input
// (side * 32 / 300, rounded; 24 on 224), at least 4 (FashionCNN's 28x28), and a stride of half
// the window (the SSD's 300x300 then takes 19 x 19 = 361 windows, not 22,201 at window 4 stride 2).
struct OcclusionWindow {
  int64_t window = 4, stride = 2;
};
OcclusionWindow occlusion_window(int64_t height, int64_t width);

// Slide a window x window patch of `fill` over the image with the given stride; each pixel
// gets the mean drop in the target's value over the windows that covered it (0 where none
// did). The value is the target's probability (the model's softmax or sigmoid; a detection:
// the sigmoid of its anchor's logit), or with Measure::Score its score (logit): a confident
// prediction (p = 1.0000) can lose several units of score and no visible probability.
// The occluded copies go through the model about 8 at a time, each batch reported as progress
// in "windows" (explain/progress.h). Result [N,1,H,W].
using OcclusionMeasure = Measure;
Tensor occlusion(nn::Model& model, const Tensor& input, const Target& target, int64_t window, int64_t stride, float fill,
                 Measure measure = Measure::Probability);

inline Tensor occlusion(nn::Model& model, const Tensor& input, const Targets& targets, int64_t window, int64_t stride,
                        float fill, Measure measure = Measure::Probability) {
  return occlusion(model, input, Target::of_classes(targets), window, stride, fill, measure);
}

}  // namespace tg::explain
