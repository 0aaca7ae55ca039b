#include "tinygrad-cpp/data/preprocess.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tg::preprocess {

namespace {
// The brightness of an RGB pixel (ITU-R BT.601 weights), 0-255.
double luma(const uint8_t* rgb) { return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]; }
}  // namespace

bool light_background(const io::Image& image) {
  double border = 0;
  int64_t count = 0;
  auto add = [&](int y, int x) {
    const uint8_t* pixel = &image.pixels[(static_cast<size_t>(y) * image.width + x) * image.channels];
    border += image.channels >= 3 ? luma(pixel) : pixel[0];
    ++count;
  };
  for (int y = 0; y < image.height; ++y) {  // the border only: a photo's interior is not read
    const bool edge_row = y == 0 || y == image.height - 1;
    for (int x = 0; x < image.width; x += edge_row || x == image.width - 1 ? 1 : image.width - 1) add(y, x);
  }
  return count > 0 && border / static_cast<double>(count) > 127.5;
}

namespace {

// The image as [C][out_h][out_w] values in 0-1 (`channels` 1 gives luma, 3 gives RGB, a gray
// image repeated; alpha is dropped), each output pixel the mean of the input
// pixels its cell covers (at least one, so enlarging picks the nearest pixel). It reads the
// image one band of rows at a time, so a 40-megapixel photo costs one row of sums, not a
// copy of itself in doubles.
std::vector<double> area_resize(const io::Image& image, int channels, int out_h, int out_w) {
  const int height = image.height, width = image.width;
  std::vector<double> out(static_cast<size_t>(channels) * out_h * out_w);
  std::vector<double> column_sums(static_cast<size_t>(channels) * width);
  for (int oy = 0; oy < out_h; ++oy) {
    const int64_t y0 = int64_t{oy} * height / out_h, y1 = std::max(y0 + 1, int64_t{oy + 1} * height / out_h);
    std::fill(column_sums.begin(), column_sums.end(), 0.0);
    for (int64_t y = y0; y < y1; ++y) {
      const uint8_t* row = &image.pixels[static_cast<size_t>(y) * width * image.channels];
      for (int c = 0; c < channels; ++c) {
        double* sums = &column_sums[static_cast<size_t>(c) * width];
        if (channels == 1 && image.channels >= 3)
          for (int x = 0; x < width; ++x) sums[x] += luma(row + static_cast<size_t>(x) * image.channels);
        else
          for (int x = 0; x < width; ++x) sums[x] += row[static_cast<size_t>(x) * image.channels + (image.channels >= 3 ? c : 0)];
      }
    }
    for (int c = 0; c < channels; ++c)
      for (int ox = 0; ox < out_w; ++ox) {
        const int64_t x0 = int64_t{ox} * width / out_w, x1 = std::max(x0 + 1, int64_t{ox + 1} * width / out_w);
        double sum = 0;
        for (int64_t x = x0; x < x1; ++x) sum += column_sums[static_cast<size_t>(c) * width + x];
        out[(static_cast<size_t>(c) * out_h + oy) * out_w + ox] = sum / (255.0 * static_cast<double>((y1 - y0) * (x1 - x0)));
      }
  }
  return out;
}

}  // namespace

namespace {
void check_spec(const InputSpec& spec) {
  if ((spec.channels != 1 && spec.channels != 3) || spec.height < 1 || spec.width < 1 ||
      spec.mean.size() != static_cast<size_t>(spec.channels) || spec.std.size() != static_cast<size_t>(spec.channels))
    throw Error(fmt::format("preprocess: input spec {}x{}x{} with {} means and {} stds is not valid", spec.channels,
                            spec.height, spec.width, spec.mean.size(), spec.std.size()));
  for (float s : spec.std)
    if (!(s > 0.f)) throw Error("preprocess: every std must be positive");
}
}  // namespace

Tensor image_to_input(const io::Image& image, const InputSpec& spec, bool* inverted) {
  check_spec(spec);
  const bool invert = spec.invert_light_background && light_background(image);
  if (inverted) *inverted = invert;
  const int channels = static_cast<int>(spec.channels), height = static_cast<int>(spec.height);
  const int width = static_cast<int>(spec.width);
  const std::vector<double> sized = area_resize(image, channels, height, width);
  Tensor out = Tensor::empty({1, spec.channels, spec.height, spec.width});
  const size_t plane = static_cast<size_t>(width) * height;
  for (int c = 0; c < channels; ++c)
    for (size_t i = 0; i < plane; ++i) {
      const double v = invert ? 1.0 - sized[c * plane + i] : sized[c * plane + i];
      out.data()[c * plane + i] = static_cast<float>((v - spec.mean[c]) / spec.std[c]);
    }
  return out;
}

io::Image input_to_image(const Tensor& input, const InputSpec& spec) {
  check_spec(spec);
  const Shape expected3 = {spec.channels, spec.height, spec.width};
  const Shape expected4 = {1, spec.channels, spec.height, spec.width};
  if (input.shape() != expected3 && input.shape() != expected4)
    throw Error(fmt::format("input_to_image: input {} is not {}", shape_str(input.shape()), shape_str(expected4)));
  io::Image out;
  out.width = static_cast<int>(spec.width);
  out.height = static_cast<int>(spec.height);
  out.channels = static_cast<int>(spec.channels);
  out.pixels.resize(static_cast<size_t>(input.numel()));
  for (int64_t c = 0; c < spec.channels; ++c)
    for (int64_t y = 0; y < spec.height; ++y)
      for (int64_t x = 0; x < spec.width; ++x) {
        const double v = input.data()[(c * spec.height + y) * spec.width + x] * spec.std[c] + spec.mean[c];
        out.at(static_cast<int>(y), static_cast<int>(x), static_cast<int>(c)) =
            static_cast<uint8_t>(std::clamp(std::lround(v * 255.0), 0L, 255L));
      }
  return out;
}

}  // namespace tg::preprocess
