// Lesson 2: filters -- what the first layer looks for.
//
// conv1's weights have the shape of the input patch they are matched against (1x5x5),
// so they can be drawn as tiny images. Hand-made filters (Sobel, Gabor) show what
// matching a filter does to a photo. Deeper filters act on 16 feature maps at once,
// so as images they say little -- which is why later lessons look at what excites
// them instead. Last, the photo model's first layer: 3x3 filters on R, G and B, drawn
// in colour as the lecture draws them, each with its response on the photo; each filter's
// norm is measured first, and the 20 whose weights are all 0 are listed with what they output.
#include <algorithm>
#include <cmath>
#include <map>

#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "02_filters", .title = "Filters: what the first layer looks for",
                                     .summary = "conv1's 16 learned 5x5 filters as images; Sobel and Gabor filters and their "
                                     "responses on the cat photo; conv2's filters and why they are hard to read; the photo model's 12 live RGB filters with their "
                                     "responses on the photo, and its 20 all-zero filters explained.", .uses_photo = true});
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
                  "conv1's 16 learned filters (5x5 each; red positive, blue negative, white 0). Learned from small gray "
                  "garments, most look like noisy strokes and only a few hint at an oriented bar; the clean edge "
                  "filters of the lecture's slide come from a network trained on photos (the photo model's first "
                  "layer, at the end of this lesson).");

    lesson.step("Hand-made filters: Sobel (horizontal and vertical edges) and three Gabor filters");
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
        {"Sobel x", sobel_x}, {"Sobel y", sobel_y}, {"Gabor 0 deg", gabor(0)}, {"Gabor 45 deg", gabor(M_PI / 4)},
        {"Gabor 135 deg", gabor(3 * M_PI / 4)}};

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
                  viz::stack({viz::grid(handmade, 5, 3),
                              viz::color_bar(viz::Colormap::Diverging, 300, "-max |w|", "0", "+max |w| (per filter)")}),
                  "Sobel x, Sobel y, Gabor at 0, 45 and 135 degrees, drawn like the learned filters.");
    lesson.figure("responses.png",
                  viz::stack({viz::grid(responses, 3, 4),
                              viz::color_bar(viz::Colormap::Diverging, 300, "-limit", "0", "+limit (in each title)")}),
                  "The cat photo and its responses to Sobel x, Sobel y, Gabor 0, Gabor 45 and Gabor 135 (red: the "
                  "patch matches the filter, blue: it matches its negative; each clipped at the 99th percentile of its "
                  "|response|, the limit in its title). Each filter lights up edges of one orientation: Gabor 45 and "
                  "Gabor 135 pick out opposite diagonals.");

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
    // Measure each filter first: its norm (all 27 weights), its bias, and what it computes on
    // the photo: the layer's output after ReLU6, one 150x150 map per filter (stride 2).
    const Tensor bias = photo_model.parameter(first + ".bias");
    const lesson::Photo photo_in = lesson.photo();
    explain::scores(photo_model, photo_in.input);
    const Tensor response = photo_model.activation(first + "/relu6");  // [1, 32, 150, 150]
    const int64_t count = rgb.dim(0), map_h = response.dim(2), map_w = response.dim(3);
    std::vector<double> norms;
    for (int64_t k = 0; k < count; ++k) norms.push_back(std::sqrt(sum(mul(slice(rgb, 0, k, k + 1), slice(rgb, 0, k, k + 1))).item()));
    const double strongest = *std::max_element(norms.begin(), norms.end());
    // A filter whose weights are all (nearly) zero computes nothing from the pixels: its
    // output is ReLU6(bias), the same number at every pixel. The gap is wide: measured below.
    const double zero_norm = 1e-3 * strongest;
    std::vector<int64_t> live, zero;
    for (int64_t k = 0; k < count; ++k) (norms[static_cast<size_t>(k)] > zero_norm ? live : zero).push_back(k);
    std::sort(live.begin(), live.end(), [&](int64_t a, int64_t b) { return norms[static_cast<size_t>(a)] > norms[static_cast<size_t>(b)]; });
    double largest_zero = 0, smallest_live = strongest;
    for (int64_t k : zero) largest_zero = std::max(largest_zero, norms[static_cast<size_t>(k)]);
    for (int64_t k : live) smallest_live = std::min(smallest_live, norms[static_cast<size_t>(k)]);
    lesson.say("filter  norm      bias   response on {}: min .. max (after ReLU6)", photo_in.name);
    for (int64_t k = 0; k < count; ++k) {
      const Tensor map = slice(response, 1, k, k + 1);
      lesson.say("  #{:<3} {:<9.3g} {:+6.2f}   {:.2f} .. {:.2f}", k, norms[static_cast<size_t>(k)], bias.data()[k],
                 -tg::max(neg(map)).item(), tg::max(map).item());
    }
    lesson.say("{} filters have weights: norms {:.2f} to {:.1f}; the other {} have norm at most {:.1e} (all 27 weights 0):",
               live.size(), smallest_live, strongest, zero.size(), largest_zero);
    lesson.say("the shipped model has them at 0 (switched off); each outputs ReLU6(bias) at every pixel");
    // The strongest filter's share of the photo at ReLU6's ceiling.
    const Tensor strongest_map = slice(response, 1, live.front(), live.front() + 1);
    int64_t at_ceiling = 0;
    for (int64_t i = 0; i < strongest_map.numel(); ++i) at_ceiling += strongest_map.data()[i] >= 6.f;
    const double ceiling_share = static_cast<double>(at_ceiling) / strongest_map.numel();
    lesson.say("the strongest, #{}, is at ReLU6's ceiling on {:.0f}% of the photo", live.front(), 100 * ceiling_share);
    lesson.number("first-layer filters with weights", static_cast<double>(live.size()), "{:.0f}");
    lesson.number("first-layer filters with all weights 0", static_cast<double>(zero.size()), "{:.0f}");

    // What does each live filter's map follow? Its correlation with the photo's brightness
    // (the mean of R, G, B) and with the brightness's edges (|gradient|), both at the map's 150x150.
    Tensor brightness;
    {
      NoGrad no_grad;
      brightness = avg_pool2d(mean(photo_in.input, {1}, /*keepdim=*/true), 2);  // [1,1,150,150]
    }
    const int64_t bh = brightness.dim(2), bw = brightness.dim(3);
    Tensor edges = Tensor::zeros(brightness.shape());
    for (int64_t y = 1; y + 1 < bh; ++y)
      for (int64_t x = 1; x + 1 < bw; ++x) {
        const float dx = brightness.at({0, 0, y, x + 1}) - brightness.at({0, 0, y, x - 1});
        const float dy = brightness.at({0, 0, y + 1, x}) - brightness.at({0, 0, y - 1, x});
        edges.at({0, 0, y, x}) = std::sqrt(dx * dx + dy * dy);
      }
    // And with its colour: each channel minus the brightness (red, green, blue against gray).
    std::vector<Tensor> colour;
    {
      NoGrad no_grad;
      const Tensor pooled = avg_pool2d(photo_in.input, 2);
      for (int64_t c = 0; c < 3; ++c) colour.push_back(sub(slice(pooled, 1, c, c + 1), brightness));
    }
    struct Follows {
      double brightness, edges, red, green, blue;  // correlations of the map with each
    };
    std::map<int64_t, Follows> follows;
    for (int64_t k : live) {
      const Tensor map = slice(response, 1, k, k + 1);
      follows[k] = {lesson::pearson(map, brightness), lesson::pearson(map, edges), lesson::pearson(map, colour[0]),
                    lesson::pearson(map, colour[1]), lesson::pearson(map, colour[2])};
      const Follows& f = follows[k];
      lesson.say("  #{:<3} its map's correlation with the photo's brightness {:+.2f}, edges {:+.2f}; red {:+.2f}, green {:+.2f}, "
                 "blue {:+.2f} (each against gray)", k, f.brightness, f.edges, f.red, f.green, f.blue);
    }

    // Which maps are a copy of the photo's brightness, and which follow a colour: in words for the caption.
    std::string brightness_copies, colour_followers;
    const char* colour_names[] = {"red", "green", "blue"};
    for (int64_t k : live) {
      const Follows& f = follows[k];
      const double by_colour[3] = {f.red, f.green, f.blue};
      const size_t most = static_cast<size_t>(std::max_element(by_colour, by_colour + 3, [](double a, double b) {
                                                return std::fabs(a) < std::fabs(b);
                                              }) - by_colour);
      const size_t least = static_cast<size_t>(std::min_element(by_colour, by_colour + 3) - by_colour);
      const size_t top = static_cast<size_t>(std::max_element(by_colour, by_colour + 3) - by_colour);
      if (f.brightness > 0.9)
        brightness_copies += fmt::format("{}#{} (r = {:.2f})", brightness_copies.empty() ? "" : ", ", k, f.brightness);
      else if (std::fabs(by_colour[most]) > 0.6)
        colour_followers += fmt::format("{}#{} ({} r = {:+.2f}, against {} r = {:+.2f})", colour_followers.empty() ? "" : ", ", k,
                                        colour_names[top], by_colour[top], colour_names[least], by_colour[least]);
    }

    std::string weak_said;  // measured against the photo at the map's 150x150
    if (!brightness_copies.empty())
      weak_said += fmt::format(" Maps that follow the photo's brightness (the mean of R, G and B): a gray copy of the "
                               "photo: {}.", brightness_copies);
    if (!colour_followers.empty())
      weak_said += fmt::format(" Maps that follow a colour against gray (each channel minus the brightness), colour-blob "
                               "detectors: {}.", colour_followers);

    // Each live filter: the filter on its own scale (mid-gray 0, its largest |weight| reaches 0
    // or 255 in some channel), enlarged 24x; below it, its response on the photo on one shared
    // scale, 0 to ReLU6's ceiling 6, at the photo's own aspect ratio.
    std::vector<io::Image> live_tiles;
    int64_t colour_opponent = 0;
    for (int64_t k : live) {
      const float own = tg::max(tg::abs(slice(rgb, 0, k, k + 1))).item();
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
      // colour-opponent: the channels' sums do not all have one sign (e.g. red against green)
      const bool opponent = *std::min_element(channel_sum, channel_sum + 3) < 0.f && *std::max_element(channel_sum, channel_sum + 3) > 0.f;
      colour_opponent += opponent;
      const Tensor map = reshape(slice(response, 1, k, k + 1), {1, map_h, map_w}) * (1.f / 6.f);
      const io::Image shown = photo_in.at_own_aspect(viz::colorize(map, viz::Colormap::Viridis));
      live_tiles.push_back(viz::titled(viz::stack({viz::scale_nearest(tile, 24), shown}, 3),
                                       fmt::format("#{}{}: norm {:.2g}, bias {:+.1f}", k, opponent ? "*" : "",
                                                   norms[static_cast<size_t>(k)], bias.data()[k]), 13));
    }
    // The zero filters, by the constant they output.
    std::string off, constant;
    for (int64_t k : zero) {
      const float value = std::clamp(bias.data()[k], 0.f, 6.f);
      if (value == 0.f) off += fmt::format(" #{}", k);
      else constant += fmt::format(" #{} ({:.2f})", k, value);
    }
    const io::Image words = viz::stack(
        {viz::text(fmt::format("The other {} filters have all 27 weights 0 (norm at most {:.0e}): not drawn, as there is nothing to draw.",
                               zero.size(), largest_zero), 13),
         viz::text(fmt::format("Each outputs ReLU6(bias) at every pixel. 0, switched off:{}.", off), 13),
         viz::text(fmt::format("A constant:{}; the next layer adds it like a bias.", constant), 13)}, 2);
    lesson.say("output 0 everywhere:{}", off);
    lesson.say("a constant everywhere:{}", constant);
    lesson.say("of the {} filters with weights, {} are colour-opponent (their R, G, B sums differ in sign)", live.size(), colour_opponent);
    lesson.figure("photo_first_layer.png",
                  viz::stack({viz::grid(live_tiles, 4, 6),
                              viz::color_bar(viz::Colormap::Viridis, 300, "response 0", "3", "6 (ReLU6's ceiling)"), words}, 6),
                  fmt::format("The photo model's first layer (3x3 on R, G, B, stride 2): its {} filters that have weights, "
                              "strongest first (title: index, norm of the 27 weights, bias; * marks the {} colour-opponent "
                              "ones, whose R, G and B weights sum to different signs). Each filter is drawn as a colour "
                              "picture enlarged 24x on its own scale (mid-gray 0, its largest |weight| at 0 or 255 in some "
                              "channel); under it, what it computes on {}: its output after ReLU6, on one scale from 0 to 6 "
                              "for all, at the photo's own aspect ratio. The strong filters are edge detectors at different "
                              "orientations{}.{} The "
                              "strongest, #{}, is at the ceiling on {:.0f}% of the photo. The other {} filters have all their weights 0 (norm at most {:.0e}, against {:.2f} "
                              "for the weakest live one): they output ReLU6(bias) everywhere, 0 for {} of them and a "
                              "constant for {} (listed under the figure), which the next layer uses as a bias.",
                              live.size(), colour_opponent, photo_in.name,
                              lesson.image_path() == lesson::Lesson::kDefaultPhoto ? " (on the cat they trace the stripes, the eyes and the whiskers)" : "",
                              weak_said, live.front(), 100 * ceiling_share, zero.size(),
                              largest_zero, smallest_live,
                              zero.size() - static_cast<size_t>(std::count(constant.begin(), constant.end(), '(')),
                              std::count(constant.begin(), constant.end(), '(')),
                  "Mopuri 10.1: the first layer's filters as RGB images");
  });
}
