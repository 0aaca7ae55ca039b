// FashionGAP: FashionCNN's two convolutions, a third, and a global-average-pooling head:
// the architecture class activation maps (CAM, Zhou et al. 2016) need.
//   conv1, relu1, pool1, conv2, relu2, conv3 3x3 32->64 pad 1, relu3 (64 maps of 14x14),
//   gap (the mean of each map), flatten, fc 64->10.
// A class's score is then sum_k w[c,k] * mean(A_k), so CAM_c = sum_k w[c,k] A_k says where
// the score comes from. It is trained in seconds from the shipped FashionCNN's first two
// convolutions (transfer: conv3 and fc are new), so a lesson can build it itself.
#pragma once

#include <functional>
#include <memory>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/nn/nn.h"

namespace tg::models {

std::shared_ptr<nn::Sequential> make_fashion_gap_cnn(Generator& gen);

// Accuracy on the 1,000 sample test images (FashionCNN itself: 0.923): 600 steps of 32 images
// reach 0.823. Measured with an earlier initialization (differing only in its random draws):
// 600 of 32 reached 0.815, 600 of 64 (twice the work) 0.843, and without conv3 (GAP over
// relu2's 32 maps) 600 of 64 reached 0.80.
struct GapTraining {
  int64_t steps = 600;  // Adam steps of `batch` images, cosine-decayed
  int64_t batch = 32;
  float lr = 5e-3f;     // 2e-3 reached 0.75 where 5e-3 reached 0.80 (without conv3)
  uint64_t seed = 0;
};
// A FashionGAP whose conv1 and conv2 start from `fashion_cnn` (a trained FashionCNN), then
// all of it trained on `train` with cross-entropy. on_step(step, running loss) after each step.
std::shared_ptr<nn::Sequential> train_fashion_gap_cnn(const nn::Sequential& fashion_cnn, const data::Dataset& train,
                                                      const GapTraining& options,
                                                      const std::function<void(int64_t, double)>& on_step = {});

}  // namespace tg::models
