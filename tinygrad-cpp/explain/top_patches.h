// Top patches (Zeiler & Fergus; Girshick et al.): ask the data what a unit responds to. Run
// many images, keep the positions where one channel of a layer fired most, and look at the
// input pixels each of those positions sees: its receptive field. What the patches share is
// what the unit detects. Lesson 4 and `tgc top-patches` both use these.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/nn/nn.h"

namespace tg::explain {

// Input rows [y0, y1) and columns [x0, x1); may reach past the image's border.
struct Window {
  int64_t y0 = 0, x0 = 0, y1 = 0, x1 = 0;
  int64_t height() const { return y1 - y0; }
  int64_t width() const { return x1 - x0; }
};

// Where each position (y, x) of a layer's map looks in the input: window(y, x) is the window
// of the map's centre moved by the stride. Measured, not derived by hand: the input pixels
// that have any path to the centre neuron, found by one backward pass from it with every
// rectifier passing its gradient through and every max-pool spreading it over its window
// (so no path is cut by the input, which is gray). An axis along which the centre's window
// reaches the border is taken as seen whole: stride 0, every position sees all of it (a fully
// connected layer sees the whole image at every position).
struct ReceptiveField {
  Window centre;                      // the window of position (centre_y, centre_x)
  int64_t centre_y = 0, centre_x = 0;
  int64_t stride_y = 0, stride_x = 0;  // input pixels between neighbouring positions
  int64_t channels = 0;                // the layer's
  Window window(int64_t y, int64_t x) const;
};
ReceptiveField receptive_field(nn::Model& model, const std::string& layer);

// One position where a channel fired: which image, where in the layer's map, how strongly.
struct Patch {
  int64_t image = 0, y = 0, x = 0;
  float value = 0.f;
};
// Each image's strongest position of `channel` in activations [N, C, h, w] (or [N, C] for a
// fully connected layer: y = x = 0), one Patch per image, numbered from first_image.
std::vector<Patch> strongest_positions(const Tensor& activations, int64_t channel, int64_t first_image = 0);
// The k strongest of `patches`, strongest first (ties: the lower image number first).
std::vector<Patch> top_patches(std::vector<Patch> patches, int64_t k);
// The pixels of `window` cut from `image`, `fill` where the window is past its border.
io::Image crop(const io::Image& image, const Window& window, uint8_t fill = 0);

}  // namespace tg::explain
