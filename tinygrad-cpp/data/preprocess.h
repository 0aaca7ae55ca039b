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
#include <string>
#include <vector>

#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/core/tensor.h"

namespace tg::preprocess {

struct InputSpec {
  int64_t channels = 1, height = 28, width = 28;
  std::vector<float> mean = {0.2860f}, std = {0.3530f};  // one per channel, on the 0-1 scale
  bool invert_light_background = false;                   // FashionCNN's photos-on-white rule
};

// A photo as the model's input [1, C, H, W]: gray (luma) or RGB as the spec says (alpha
// composited on white), resized to the spec's size (area averaging; nearest pixel when enlarging), inverted when the
// spec asks and the border is bright, normalized. `inverted` tells whether it was.
Tensor image_to_input(const io::Image& image, const InputSpec& spec, bool* inverted = nullptr);
// The other way, for figures: input [1, C, H, W] (or [C, H, W]) back to 8-bit pixels.
io::Image input_to_image(const Tensor& input, const InputSpec& spec);
// The mean of the border pixels is above half brightness (a product photo on white).
bool light_background(const io::Image& image);

// ---- the intake: a photo file as the student took it, to a model's input ----
// The one way lessons, tgc and the server read a photo: the file's pixels turned upright by
// its EXIF orientation (JPEG), transparency composited on white, then fitted to the model's
// aspect ratio and resized; every step that changes what the model sees is said in a note.

// The pixels turned upright by an EXIF orientation (1 to 8; 1 leaves them as they are).
io::Image orient(const io::Image& image, int orientation);
// Every pixel over a white background (RGBA -> RGB, gray+alpha -> gray); an image without
// alpha comes back as it is. `transparent_share` gets the share of pixels with alpha < 255.
io::Image on_white(const io::Image& image, double* transparent_share = nullptr);

// How a photo of another aspect ratio becomes the model's input size.
enum class Fit {
  Stretch,  // resized to the input's size, whatever its aspect (the SSD was trained on stretched photos)
  Crop,     // the largest centered part of the input's aspect, then resized
  Pad,      // bars of the border's mean colour added to reach the input's aspect, then resized
};
Fit parse_fit(const std::string& name);  // "stretch", "crop" or "pad"; an error names the three
const char* fit_name(Fit fit);
// The image cropped or padded to the aspect ratio width:height (Stretch: as it is).
io::Image fit_to_aspect(const io::Image& image, int64_t width, int64_t height, Fit fit);

// A photo file read, turned upright and composited on white (the notes say when either happened).
struct Photo {
  io::Image image;                 // upright, no alpha
  int stored_width = 0, stored_height = 0;
  std::vector<std::string> notes;  // one sentence each
};
Photo load_photo(const std::string& path);
// The same from the file's bytes already in memory (an upload to the explorer page); `label`
// names them in errors.
Photo decode_photo(const std::vector<uint8_t>& bytes, const std::string& label);

// The photo fitted and made the model's input. `image` is what the input was made from (the
// cropped or padded photo at its own resolution: boxes and figures refer to it); the notes add
// an aspect ratio changed by more than 10% when stretched, and an enlargement of more than 2x.
struct Intake {
  io::Image image;
  Tensor input;  // [1, C, H, W]
  bool inverted = false;
  std::vector<std::string> notes;
};
Intake take_photo(Photo photo, const InputSpec& spec, Fit fit = Fit::Stretch);

}  // namespace tg::preprocess
