// Lesson 2: filters -- what the first layer looks for.
//
// conv1's weights have the shape of the input patch they are matched against (1x5x5),
// so they can be drawn as tiny images. Hand-made filters (Sobel, Gabor) show what
// matching a filter does to a photo. Deeper filters act on 16 feature maps at once,
// so as images they say little -- which is why later lessons look at what excites
// them instead. Last, the photo model's first layer: 3x3 filters on R, G and B, drawn
// in colour as the lecture draws them.
#include <algorithm>
#include <cmath>

#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "02_filters", .title = "Filters: what the first layer looks for",
                                     .summary = "conv1's 16 learned 5x5 filters as images; Sobel and Gabor filters and their "
                                     "responses on the cat photo; conv2's filters and why they are hard to read.", .uses_photo = true});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const int scale = 10;
    auto filter_image = [&](const Tensor& w) {  // one k x k filter, 0 = white, red positive, blue negative
      return viz::picture(reshape(w, {w.dim(-2), w.dim(-1)}), viz::Normalize::Signed, viz::Colormap::Diverging, scale);
    };

    lesson.step("conv1.weight has shape [16, 1, 5, 5]: sixteen 5x5 filters");
    const Tensor w1 = dynamic_cast<nn::Conv2d&>(model.layer("conv1")).weight;
    std::vector<io::Image> tiles;
    for (int64_t k = 0; k < 16; ++k) {
      const Tensor f = slice(w1, 0, k, k + 1);
      double norm = 0;
      for (int64_t i = 0; i < f.numel(); ++i) norm += f.data()[i] * f.data()[i];
      lesson.say("filter {:>2}: norm {:.3f}, sum {:+.3f}", k, std::sqrt(norm), sum(f).item());
      tiles.push_back(viz::titled(filter_image(f), fmt::format("#{}", k), 12));
    }
    lesson.figure("conv1_filters.png",
                  viz::stack({viz::grid(tiles, 8, 3),
                              viz::color_bar(viz::Colormap::Diverging, 300, "-max |w|", "0", "+max |w| (per filter)")}),
                  "conv1's 16 learned filters (5x5 each; red positive, blue negative, white 0). Several are edge and "
                  "bar detectors at different orientations.");

    lesson.step("Hand-made filters: Sobel (horizontal and vertical edges) and two Gabor filters");
    const Tensor sobel_x = Tensor::from_vector({-1, 0, 1, -2, 0, 2, -1, 0, 1}, {1, 1, 3, 3});
    const Tensor sobel_y = Tensor::from_vector({-1, -2, -1, 0, 0, 0, 1, 2, 1}, {1, 1, 3, 3});
    auto gabor = [](double theta) {  // a cosine grating under a Gaussian, oriented at theta
      Tensor g = Tensor::empty({1, 1, 9, 9});
      for (int y = -4; y <= 4; ++y)
        for (int x = -4; x <= 4; ++x) {
          const double u = x * std::cos(theta) + y * std::sin(theta), v = -x * std::sin(theta) + y * std::cos(theta);
          g.at({0, 0, y + 4, x + 4}) = static_cast<float>(std::exp(-(u * u + 0.5 * v * v) / 8.0) * std::cos(2 * M_PI * u / 5.0));
        }
      return g - mean(g).item();  // zero mean: a flat patch gives no response
    };
    const std::vector<std::pair<std::string, Tensor>> filters = {
        {"Sobel x", sobel_x}, {"Sobel y", sobel_y}, {"Gabor 0 deg", gabor(0)}, {"Gabor 45 deg", gabor(M_PI / 4)}};

    const int64_t width = 200;
    lesson.step(fmt::format("Their responses on the cat photo (made gray, {} pixels wide; no padding)", width));
    const io::Image photo = lesson.photo().original;
    const int64_t height = width * photo.height / photo.width;
    // Gray, resized by area averaging; image_to_input does both (mean 0, std 1: no normalization).
    Tensor gray = preprocess::image_to_input(photo, {.channels = 1, .height = width, .width = width, .mean = {0.f}, .std = {1.f}});
    gray = reshape(upsample(reshape(gray, {1, width, width}), height, width, Interpolation::Bilinear), {1, 1, height, width});
    std::vector<io::Image> responses = {viz::titled(viz::to_image(reshape(gray, {1, height, width})), "the photo, gray")};
    for (const auto& [name, f] : filters) {
      NoGrad no_grad;
      const Tensor r = conv2d(gray, f);
      lesson.say("{:<13} response range [{:+.2f}, {:+.2f}]", name, -tg::max(neg(r)).item(), tg::max(r).item());
      // Clip at the 99th percentile of |r| so a few strong edges do not wash out the rest.
      std::vector<float> magnitudes;
      for (int64_t i = 0; i < r.numel(); ++i) magnitudes.push_back(std::fabs(r.data()[i]));
      std::sort(magnitudes.begin(), magnitudes.end());
      const float limit = magnitudes[magnitudes.size() * 99 / 100];
      const Tensor shown = clamp(reshape(r, {1, r.dim(2), r.dim(3)}), -limit, limit);
      responses.push_back(viz::titled(viz::colorize(viz::normalize(shown, viz::Normalize::Signed), viz::Colormap::Diverging),
                                      fmt::format("{}: +-{:.2f}", name, limit)));
    }
    std::vector<io::Image> handmade;
    for (const auto& [name, f] : filters) handmade.push_back(viz::titled(filter_image(f), name, 12));
    lesson.figure("handmade_filters.png",
                  viz::stack({viz::grid(handmade, 4, 3),
                              viz::color_bar(viz::Colormap::Diverging, 300, "-max |w|", "0", "+max |w| (per filter)")}),
                  "Sobel x, Sobel y, Gabor at 0 and 45 degrees, drawn like the learned filters.");
    lesson.figure("responses.png",
                  viz::stack({viz::grid(responses, 3, 4),
                              viz::color_bar(viz::Colormap::Diverging, 300, "-limit", "0", "+limit (in each title)")}),
                  "The cat photo and its responses to Sobel x, Sobel y, Gabor 0 and Gabor 45 (red: the patch matches "
                  "the filter, blue: it matches its negative; each clipped at the 99th percentile of its |response|, "
                  "the limit in its title). Each filter lights up edges of one orientation.");

    lesson.step("conv2.weight has shape [32, 16, 5, 5]: each filter spans 16 feature maps, not pixels");
    const Tensor w2 = dynamic_cast<nn::Conv2d&>(model.layer("conv2")).weight;
    std::vector<io::Image> filter_rows;
    for (int64_t k = 0; k < 4; ++k) {
      tiles.clear();
      for (int64_t c = 0; c < 16; ++c) tiles.push_back(filter_image(slice(slice(w2, 0, k, k + 1), 1, c, c + 1)));
      filter_rows.push_back(viz::titled(viz::grid(tiles, 16, 2),
                                        fmt::format("conv2 filter #{}: its slices for conv1 maps 0 to 15, left to right", k), 12));
    }
    lesson.figure("conv2_filters.png",
                  viz::stack({viz::stack(filter_rows),
                              viz::color_bar(viz::Colormap::Diverging, 300, "-max |w|", "0", "+max |w| (per slice)")}),
                  "Four of conv2's 32 filters, one per row, as their 16 slices (one per conv1 feature map). Each slice "
                  "weighs a map of edges, not pixels, so the drawings do not show what the unit detects: lessons 4 and "
                  "9 ask the data and gradient ascent instead.");
    lesson.number("conv2 weights per filter", static_cast<double>(16 * 25), "{:.0f}");

    // The lecture's first-layer filters come from a network trained on photos: colour.
    nn::Model& photo_model = lesson.photo_model();
    const std::string first = "FeatureExtractor/MobilenetV2/Conv";
    const Tensor rgb = photo_model.parameter(first + ".weight");  // [32, 3, 3, 3]
    lesson.step(fmt::format("The photo model's first layer ({}): {} filters of shape {}x{}x{} on R, G, B", first,
                            rgb.dim(0), rgb.dim(1), rgb.dim(2), rgb.dim(3)));
    // Each filter as a colour picture on its own scale (gray = 0, its largest |weight| at 0 or
    // 255 in some channel), with that largest |weight| in its title: one shared scale would
    // leave most of them flat gray next to the strongest.
    const float largest = tg::max(tg::abs(rgb)).item();
    std::vector<io::Image> rgb_tiles;
    int64_t colour_opponent = 0, faint = 0;
    for (int64_t k = 0; k < rgb.dim(0); ++k) {
      const Tensor filter = slice(rgb, 0, k, k + 1);
      const float own = std::max(1e-12f, tg::max(tg::abs(filter)).item());
      io::Image tile{static_cast<int>(rgb.dim(3)), static_cast<int>(rgb.dim(2)), 3, {}};
      tile.pixels.resize(static_cast<size_t>(tile.width * tile.height * 3));
      float channel_sum[3] = {0, 0, 0};
      for (int y = 0; y < tile.height; ++y)
        for (int x = 0; x < tile.width; ++x)
          for (int c = 0; c < 3; ++c) {
            const float w = rgb.at({k, c, y, x});
            channel_sum[c] += w;
            tile.at(y, x, c) = static_cast<uint8_t>(std::clamp(127.5f + 127.5f * w / own, 0.f, 255.f));
          }
      // A faint filter (largest |weight| under 1% of the strongest) is drawn flat gray: its
      // output is its bias alone, nearly the same at every pixel.
      if (own < 0.01f * largest) {
        ++faint;
        std::fill(tile.pixels.begin(), tile.pixels.end(), uint8_t{128});
        rgb_tiles.push_back(viz::titled(viz::scale_nearest(tile, 24), fmt::format("{}: ~0", k)));
        continue;
      }
      // colour-opponent: the channels' sums do not all have one sign (e.g. red against green)
      const bool opponent = *std::min_element(channel_sum, channel_sum + 3) < 0.f && *std::max_element(channel_sum, channel_sum + 3) > 0.f;
      colour_opponent += opponent;
      rgb_tiles.push_back(viz::titled(viz::scale_nearest(tile, 24), fmt::format("{}{}: {:.2g}", k, opponent ? "*" : "", own)));
    }
    lesson.say("largest |weight| {:.3f}; {} of {} filters are faint (largest |weight| under 1% of the strongest's): their",
               largest, faint, rgb.dim(0));
    lesson.say("output is their bias, nearly constant; of the {} others, {} are colour-opponent (R, G, B sums differ in sign)",
               rgb.dim(0) - faint, colour_opponent);
    lesson.figure("photo_first_layer.png", viz::grid(rgb_tiles, 8, 4),
                  fmt::format("The {} first-layer filters of the photo model (3x3 on R, G, B, stride 2), each drawn as a "
                              "colour picture enlarged 24x on its own scale: mid-gray is 0 and the filter's largest |weight| "
                              "(in its title, after the index) reaches 0 or 255 in some channel. {} filters are faint "
                              "(largest |weight| under 1% of the strongest, {:.1f}; titled ~0, drawn flat gray): their "
                              "output is their bias, nearly the same everywhere. A * marks the {} colour-opponent filters, "
                              "whose R, G and B weights sum to different signs. Unlike FashionCNN's gray 5x5 filters, "
                              "these see colour: edges between colours, not only between light and dark.",
                              rgb.dim(0), faint, largest, colour_opponent),
                  "Mopuri 10.1: the first layer's filters as RGB images");
  });
}
