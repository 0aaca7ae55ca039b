#include "tinygrad-cpp/data/preprocess.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace tg::preprocess {

namespace {
// The brightness of an RGB pixel (ITU-R BT.601 weights), 0-255.
double luma(const uint8_t* rgb) { return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]; }
// A value 0-255 of a pixel with alpha `alpha`, seen over white.
double over_white(double value, uint8_t alpha) { return (value * alpha + 255.0 * (255 - alpha)) / 255.0; }
bool has_alpha(const io::Image& image) { return image.channels == 2 || image.channels == 4; }
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
// image repeated; alpha is composited on white), each output pixel the mean of the input
// pixels its cell covers (at least one, so enlarging picks the nearest pixel). It reads the
// image one band of rows at a time, so a 40-megapixel photo costs one row of sums, not a
// copy of itself in doubles.
std::vector<double> area_resize(const io::Image& image, int channels, int out_h, int out_w) {
  const int height = image.height, width = image.width;
  std::vector<double> out(static_cast<size_t>(channels) * out_h * out_w);
  std::vector<double> column_sums(static_cast<size_t>(channels) * width);
  const bool alpha = has_alpha(image);
  for (int oy = 0; oy < out_h; ++oy) {
    const int64_t y0 = int64_t{oy} * height / out_h, y1 = std::max(y0 + 1, int64_t{oy + 1} * height / out_h);
    std::fill(column_sums.begin(), column_sums.end(), 0.0);
    for (int64_t y = y0; y < y1; ++y) {
      const uint8_t* row = &image.pixels[static_cast<size_t>(y) * width * image.channels];
      const size_t step = static_cast<size_t>(image.channels);
      for (int c = 0; c < channels; ++c) {
        double* sums = &column_sums[static_cast<size_t>(c) * width];
        const int source = image.channels >= 3 ? c : 0;  // a gray image's one channel, repeated
        // The branches outside the loops: this loop reads every pixel of a 40-megapixel photo.
        if (channels == 1 && image.channels >= 3) {
          for (int x = 0; x < width; ++x) {
            const uint8_t* pixel = row + x * step;
            sums[x] += alpha ? over_white(luma(pixel), pixel[step - 1]) : luma(pixel);
          }
        } else if (alpha) {
          for (int x = 0; x < width; ++x) sums[x] += over_white(row[x * step + source], row[x * step + step - 1]);
        } else {
          for (int x = 0; x < width; ++x) sums[x] += row[x * step + source];
        }
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

// ---- the intake ----

io::Image orient(const io::Image& image, int orientation) {
  if (orientation < 1 || orientation > 8) throw Error(fmt::format("orient: orientation {} is not 1 to 8", orientation));
  if (orientation == 1) return image;
  const int w = image.width, h = image.height;
  const bool turned = orientation >= 5;  // 5 to 8 swap width and height
  io::Image out{turned ? h : w, turned ? w : h, image.channels, {}};
  out.pixels.resize(image.pixels.size());
  for (int oy = 0; oy < out.height; ++oy)
    for (int ox = 0; ox < out.width; ++ox) {
      // The stored pixel shown at (oy, ox), for each of EXIF's eight orientations.
      int sy = oy, sx = ox;
      switch (orientation) {
        case 2: sx = w - 1 - ox; break;                   // mirrored left-right
        case 3: sy = h - 1 - oy, sx = w - 1 - ox; break;  // turned 180 degrees
        case 4: sy = h - 1 - oy; break;                   // mirrored top-bottom
        case 5: sy = ox, sx = oy; break;                  // transposed
        case 6: sy = h - 1 - ox, sx = oy; break;          // to be turned 90 degrees clockwise
        case 7: sy = h - 1 - ox, sx = w - 1 - oy; break;  // transverse
        case 8: sy = ox, sx = w - 1 - oy; break;          // to be turned 90 degrees counterclockwise
      }
      for (int c = 0; c < image.channels; ++c) out.at(oy, ox, c) = image.at(sy, sx, c);
    }
  return out;
}

io::Image on_white(const io::Image& image, double* transparent_share) {
  if (transparent_share) *transparent_share = 0;
  if (!has_alpha(image)) return image;
  const int colors = image.channels - 1;
  io::Image out{image.width, image.height, colors, {}};
  out.pixels.resize(static_cast<size_t>(image.width) * image.height * colors);
  int64_t transparent = 0;
  for (size_t i = 0; i < static_cast<size_t>(image.width) * image.height; ++i) {
    const uint8_t alpha = image.pixels[i * image.channels + colors];
    transparent += alpha < 255;
    for (int c = 0; c < colors; ++c)
      out.pixels[i * colors + c] = static_cast<uint8_t>(std::lround(over_white(image.pixels[i * image.channels + c], alpha)));
  }
  if (transparent_share) *transparent_share = static_cast<double>(transparent) / (static_cast<double>(image.width) * image.height);
  return out;
}

Fit parse_fit(const std::string& name) {
  for (Fit fit : {Fit::Stretch, Fit::Crop, Fit::Pad})
    if (name == fit_name(fit)) return fit;
  throw Error(fmt::format("fit: '{}' is not stretch, crop or pad", name));
}

const char* fit_name(Fit fit) { return fit == Fit::Stretch ? "stretch" : fit == Fit::Crop ? "crop" : "pad"; }

io::Image fit_to_aspect(const io::Image& image, int64_t width, int64_t height, Fit fit) {
  if (width < 1 || height < 1) throw Error(fmt::format("fit_to_aspect: aspect {}:{} is not positive", width, height));
  if (fit == Fit::Stretch) return image;
  // The size of the given aspect that fits inside the image (crop) or holds it (pad).
  const int64_t w = image.width, h = image.height;
  const bool wider = w * height > h * width;  // the image is wider than the aspect
  int64_t out_w = w, out_h = h;
  if ((fit == Fit::Crop) == wider) out_w = std::max<int64_t>(1, std::llround(static_cast<double>(h) * width / height));
  else out_h = std::max<int64_t>(1, std::llround(static_cast<double>(w) * height / width));
  if (out_w == w && out_h == h) return image;
  if (out_w * out_h > io::kMaxImagePixels)
    throw Error(fmt::format("fit: padding a {}x{} image to {}x{} makes more than {} million pixels", w, h, out_w, out_h,
                            io::kMaxImagePixels / 1'000'000));
  io::Image out{static_cast<int>(out_w), static_cast<int>(out_h), image.channels, {}};
  out.pixels.resize(static_cast<size_t>(out_w * out_h) * image.channels);
  if (fit == Fit::Pad) {  // the border's mean colour, so bars look like the photo's edge
    std::vector<double> sum(static_cast<size_t>(image.channels), 0.0);
    int64_t count = 0;
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < image.width; x += (y == 0 || y == image.height - 1 || x == image.width - 1) ? 1 : image.width - 1) {
        for (int c = 0; c < image.channels; ++c) sum[static_cast<size_t>(c)] += image.at(y, x, c);
        ++count;
      }
    for (size_t i = 0; i < out.pixels.size(); ++i)
      out.pixels[i] = static_cast<uint8_t>(std::lround(sum[i % image.channels] / static_cast<double>(count)));
  }
  // Centered: the offset of the image in the output (pad) or of the output in the image (crop).
  const int64_t dx = (out_w - w) / 2, dy = (out_h - h) / 2;
  for (int64_t y = 0; y < out_h; ++y)
    for (int64_t x = 0; x < out_w; ++x) {
      const int64_t sy = y - dy, sx = x - dx;
      if (sy < 0 || sx < 0 || sy >= h || sx >= w) continue;
      for (int c = 0; c < image.channels; ++c)
        out.at(static_cast<int>(y), static_cast<int>(x), c) = image.at(static_cast<int>(sy), static_cast<int>(sx), c);
    }
  return out;
}

Photo load_photo(const std::string& path) { return decode_photo(io::read_file(path, io::kMaxImageFileBytes), path); }

Photo decode_photo(const std::vector<uint8_t>& bytes, const std::string& label) {
  Photo photo;
  photo.image = io::decode_image(bytes, label);
  const int width = photo.image.width, height = photo.image.height;
  photo.stored_width = width, photo.stored_height = height;
  const int orientation = io::jpeg_orientation(bytes.data(), std::min(bytes.size(), io::kJpegOrientationBytes));
  static const char* kTurns[] = {"", "", "mirrored left-right", "turned 180 degrees", "mirrored top-bottom",
                                 "transposed", "turned 90 degrees clockwise", "transposed and turned 180 degrees",
                                 "turned 90 degrees counterclockwise"};
  if (orientation != 1)
    photo.notes.push_back(fmt::format("EXIF orientation {}: {} to stand upright ({}x{} stored, {}x{} shown)", orientation,
                                      kTurns[orientation], width, height, orientation >= 5 ? height : width,
                                      orientation >= 5 ? width : height));
  if (orientation != 1) photo.image = orient(photo.image, orientation);
  double transparent = 0;
  if (has_alpha(photo.image)) photo.image = on_white(photo.image, &transparent);
  if (transparent > 0)
    photo.notes.push_back(fmt::format("{:.0f}% of the pixels are transparent: composited on a white background",
                                      std::max(1.0, 100 * transparent)));
  return photo;
}

Intake take_photo(Photo photo, const InputSpec& spec, Fit fit) {
  check_spec(spec);
  Intake intake;
  intake.notes = std::move(photo.notes);
  const int width = photo.image.width, height = photo.image.height;
  // Stretch keeps the photo as it is: moved, not copied (a 40-megapixel photo is 120 MB).
  intake.image = fit == Fit::Stretch ? std::move(photo.image) : fit_to_aspect(photo.image, spec.width, spec.height, fit);
  const io::Image& image = intake.image;
  if (image.width != width || image.height != height)
    intake.notes.push_back(fmt::format("--fit {}: {}x{} {} to {}x{}, the input's aspect ratio", fit_name(fit), width,
                                       height, fit == Fit::Crop ? "cropped" : "padded", image.width, image.height));
  // How much the aspect ratio changes on the way to the input's size (0.5 = one side 50% longer).
  const double ratio = (static_cast<double>(image.width) / image.height) / (static_cast<double>(spec.width) / spec.height);
  const double change = std::max(ratio, 1 / ratio) - 1;
  if (change > 0.10)
    intake.notes.push_back(fmt::format(
        "stretched {}x{} to {}x{}: its aspect ratio changes by {:.0f}% (stretch is the default because the SSD photo "
        "model was trained on stretched photos; --fit crop or --fit pad keep the aspect)",
        image.width, image.height, spec.width, spec.height, 100 * change));
  const double enlarged = std::max(static_cast<double>(spec.width) / image.width, static_cast<double>(spec.height) / image.height);
  if (enlarged > 2)
    intake.notes.push_back(fmt::format("enlarged {:.1f}x ({}x{} to {}x{}): the model sees blocks of repeated pixels", enlarged,
                                       image.width, image.height, spec.width, spec.height));
  intake.input = image_to_input(image, spec, &intake.inverted);
  return intake;
}

}  // namespace tg::preprocess
