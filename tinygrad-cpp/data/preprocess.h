// Input preprocessing, in one place: how a photo becomes a model's input and back.
//
// Every model says what it expects in an InputSpec: its channels (1 = gray by luma,
// 3 = RGB), its size, and per-channel mean and std on the 0-1 scale, so
//     x[c] = (pixel[c] / 255 - mean[c]) / std[c].
// FashionCNN: 1 x 28 x 28, mean 0.2860, std 0.3530, and photos on a light background
// are inverted (Fashion-MNIST objects are light on black). The SSD-MobileNetV2:
// 3 x 300 x 300, mean 0.5, std 0.5 (x = pixel/127.5 - 1). AlexNet/VGG16: 3 x 224 x 224,
// ImageNet's mean and std.
#pragma once

#include <cstdint>
#include <vector>

#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/core/tensor.h"

namespace tg::preprocess {

struct InputSpec {
  int64_t channels = 1, height = 28, width = 28;
  std::vector<float> mean = {0.2860f}, std = {0.3530f};  // one per channel, on the 0-1 scale
  bool invert_light_background = false;                   // FashionCNN's photos-on-white rule
};

// A photo as the model's input [1, C, H, W]: gray (luma) or RGB as the spec says, resized
// to the spec's size (area averaging; nearest pixel when enlarging), inverted when the
// spec asks and the border is bright, normalized. `inverted` tells whether it was.
Tensor image_to_input(const io::Image& image, const InputSpec& spec, bool* inverted = nullptr);
// The other way, for figures: input [1, C, H, W] (or [C, H, W]) back to 8-bit pixels.
io::Image input_to_image(const Tensor& input, const InputSpec& spec);
// The mean of the border pixels is above half brightness (a product photo on white).
bool light_background(const io::Image& image);

}  // namespace tg::preprocess
