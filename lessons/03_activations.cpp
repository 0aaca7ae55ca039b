// Lesson 3: activations -- what each layer computes for one image, and over many.
//
// The feature maps of conv1 and conv2 for one input, then the distribution of every
// layer's activations over 1,000 test images: how many are exactly zero after the
// ReLU, and how many units never fire at all ("dead" units). Then the same questions for
// the photo model: the photo's maps at three depths (the channels whose maps vary most, not
// the most active, which can be stuck at ReLU6's ceiling, nor ones lit only by the zero padding
// at the map's edge), and distributions over 24 views of the cat and the coffee cup (whole and
// cropped, each also mirrored), the zeros and ReLU6's 6s drawn as their own bars.
#include <algorithm>
#include <array>
#include <map>
#include <numeric>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "03_activations", .title = "Activations: feature maps and their statistics",
                                     .summary = "conv1 and conv2 feature maps for one test image; histograms of each layer's "
                                     "activations over 1,000 test images, zeros as their own bar; the fraction of zeros and of dead units; "
                                     "the photo model's maps at three depths and its activations over 24 views of two "
                                     "photos, the zeros and ReLU6's ceiling drawn apart.", .uses_photo = true});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);

    lesson.step("One image through the network: feature maps after each ReLU");
    const Tensor image = data::normalize_pixels(sample.pixels.data());
    explain::scores(model, image);
    auto maps = [&](const std::string& layer, int scale) {
      const Tensor a = model.activation(layer);
      lesson.say("{}: {} channels of {}x{}", layer, a.dim(1), a.dim(2), a.dim(3));
      std::vector<io::Image> tiles;
      for (int64_t c = 0; c < a.dim(1); ++c) {
        const Tensor m = reshape(slice(a, 1, c, c + 1), {1, a.dim(2), a.dim(3)});
        tiles.push_back(viz::titled(viz::picture(m, viz::Normalize::MinMax, viz::Colormap::Viridis, scale),
                                    fmt::format("#{}: max {:.1f}", c, tg::max(m).item()), 11));
      }
      return viz::stack({viz::grid(tiles, 8, 2), viz::color_bar(viz::Colormap::Viridis, 300, "each map's min", "",
                                                               "each map's max (in its title)")});
    };
    lesson.figure("relu1_maps.png", maps("relu1", 4), "The 16 feature maps of relu1 (conv1 after ReLU, 28x28) for test image 0, "
                                                      "an ankle boot; each map scaled to its own range (viridis), titled with its channel and largest "
                                                      "value (0 is a map that is off everywhere).");
    lesson.figure("relu2_maps.png", maps("relu2", 6), "The 32 feature maps of relu2 (14x14): coarser, each responding to a "
                                                      "combination of conv1's edges.");

    lesson.step("Every layer over the 1,000 sample images");
    const int64_t count = lesson.smoke() ? 100 : sample.size();
    std::vector<int64_t> order(static_cast<size_t>(count));
    std::iota(order.begin(), order.end(), 0);
    const data::Batch batch = data::make_batch(sample, order, 0, count);
    explain::scores(model, batch.images);
    for (const std::string layer : {"relu1", "relu2", "relu3"}) {
      const Tensor a = model.activation(layer);
      // Every value counts, the zeros as their own bar at 0 (labelled with their share).
      viz::Histogram histogram(0, std::max(1e-6f, *std::max_element(a.data(), a.data() + a.numel())), 40, {0});
      int64_t zeros = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        zeros += a.data()[i] == 0.f;
        histogram.add(a.data()[i]);
      }
      // A unit (channel) is dead if it is zero for every image and position.
      const int64_t channels = a.dim(1), per_channel = a.numel() / (a.dim(0) * channels);
      int64_t dead = 0;
      for (int64_t c = 0; c < channels; ++c) {
        bool fired = false;
        for (int64_t n = 0; n < a.dim(0) && !fired; ++n)
          for (int64_t i = 0; i < per_channel && !fired; ++i) fired = a.data()[(n * channels + c) * per_channel + i] > 0.f;
        dead += !fired;
      }
      lesson.number(layer + ": fraction of activations that are 0", static_cast<double>(zeros) / a.numel(), "{:.3f}");
      lesson.number(layer + ": dead units", static_cast<double>(dead), "{:.0f}");
      if (dead > 0)
        lesson.say("{} of {}'s {} units are 0 for every one of these {} images: their pre-activation is negative "
                   "everywhere, so the ReLU passes them no gradient and training cannot bring them back; the next layer "
                   "gets {} useful inputs, not {}.",
                   dead, layer, channels, count, channels - dead, channels);
      lesson.chart(layer + "_histogram.svg", histogram.svg(layer + ": every activation over " + std::to_string(count) + " images", "activation"),
                   fmt::format("{}: histogram of every activation, as a share of all of them; the orange bar at 0 holds "
                               "the {:.1f}% that are exactly zero after the ReLU (cut when taller than the rest; its "
                               "share is written on it). "
                               "{} of its {} units are dead, zero for every image{}.",
                               layer, 100.0 * zeros / a.numel(), dead, channels,
                               dead > 0 ? ": their weights get no gradient, so training cannot revive them" : ""));
    }

    lesson.step("The photo model: the photo's feature maps at three depths (after ReLU6)");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const std::vector<std::string> depths = {"expanded_conv_1/expand/relu6", "expanded_conv_6/expand/relu6",
                                             "expanded_conv_13/expand/relu6"};
    const lesson::Photo photo = lesson.photo();
    // Some channels light up along the image's edges whatever the photo: every conv pads its
    // input with zeros (TensorFlow's SAME padding), and those zeros are a pattern of their own.
    // On a flat gray image (input 0 everywhere) the only structure a map can have is the
    // padding's. A channel whose edge row or column (one side of the map) is brighter than its
    // interior by more than 1, on the photo and on the flat image alike, is lit there by the
    // padding: its tile would show a bright frame, not the photo.
    struct Edges {
      std::array<double, 4> sides;  // the mean of the top row, bottom row, left column, right column
      double interior;              // the mean of the rest
    };
    auto edges_of = [](const Tensor& a, int64_t c) {
      const int64_t h = a.dim(2), w = a.dim(3);
      const float* m = a.data() + c * h * w;
      Edges e{{0, 0, 0, 0}, 0};
      for (int64_t x = 0; x < w; ++x) e.sides[0] += m[x] / static_cast<double>(w), e.sides[1] += m[(h - 1) * w + x] / static_cast<double>(w);
      for (int64_t y = 0; y < h; ++y) e.sides[2] += m[y * w] / static_cast<double>(h), e.sides[3] += m[y * w + w - 1] / static_cast<double>(h);
      for (int64_t y = 1; y < h - 1; ++y)
        for (int64_t x = 1; x < w - 1; ++x) e.interior += m[y * w + x] / static_cast<double>((h - 2) * (w - 2));
      return e;
    };
    explain::scores(photo_model, Tensor::zeros(photo.input.shape()));
    std::map<std::string, std::vector<Edges>> on_flat;
    for (const std::string& layer : depths)
      for (int64_t c = 0; c < photo_model.activation(layer).dim(1); ++c) on_flat[layer].push_back(edges_of(photo_model.activation(layer), c));
    explain::scores(photo_model, photo.input);
    auto lit_by_padding = [&](const std::string& layer, int64_t c) {
      const Edges photo_edges = edges_of(photo_model.activation(layer), c), flat = on_flat[layer][static_cast<size_t>(c)];
      for (size_t side = 0; side < 4; ++side)
        if (photo_edges.sides[side] > photo_edges.interior + 1 && flat.sides[side] > flat.interior + 1) return true;
      return false;
    };
    // The tile the last review saw framed on the cat: expanded_conv_13 #409's top row.
    const Edges framed = on_flat[depths.back()][409];
    lesson.say("{} #409 on a flat gray image: top row {:.2f}, bottom row {:.2f}, interior {:.2f} -- the padding lights it",
               depths.back(), framed.sides[0], framed.sides[1], framed.interior);
    std::vector<io::Image> rows;
    for (const std::string& layer : depths) {
      const Tensor a = photo_model.activation(layer);  // [1, C, h, w]
      const int64_t C = a.dim(1), h = a.dim(2), w = a.dim(3);
      const std::string short_name = layer.substr(0, layer.find('/'));
      // Which channels to show? Ranking by the mean picks channels that sit at ReLU6's ceiling
      // everywhere: a uniform tile. Rank by the spatial variance of each map instead: it is
      // large only where the map has structure, and 0 for a constant map (at 0 or at 6). Channels
      // lit by the padding are left out: their variance is the frame's.
      std::vector<std::pair<double, int64_t>> by_variance;
      int64_t constant = 0, at_ceiling = 0, padding = 0;
      for (int64_t c = 0; c < C; ++c) {
        const float* m = a.data() + c * h * w;
        double total = 0, squares = 0;
        bool all_six = true;
        for (int64_t i = 0; i < h * w; ++i) total += m[i], squares += static_cast<double>(m[i]) * m[i], all_six &= m[i] == 6.f;
        const double mean_value = total / static_cast<double>(h * w);
        const double variance = std::max(0.0, squares / static_cast<double>(h * w) - mean_value * mean_value);
        constant += variance < 1e-6;
        at_ceiling += all_six;
        const bool framed_by_padding = lit_by_padding(layer, c);
        padding += framed_by_padding;
        if (!framed_by_padding) by_variance.emplace_back(-variance, c);
      }
      std::sort(by_variance.begin(), by_variance.end());
      // Tiles at half the input's size (150 pixels high), at the photo's own aspect ratio.
      const int64_t tile_size = spec.height / 2;
      const io::Image small_photo =
          viz::to_image(upsample(viz::from_image(preprocess::input_to_image(photo.input, spec)), tile_size, tile_size, Interpolation::Bilinear));
      std::vector<io::Image> tiles = {viz::titled(photo.at_own_aspect(small_photo), fmt::format("{}, {}x{}", short_name, h, w))};
      std::string names;
      for (int k = 0; k < 6; ++k) {
        const int64_t c = by_variance[static_cast<size_t>(k)].second;
        const Tensor raw = reshape(slice(a, 1, c, c + 1), {1, h, w});
        const Tensor map = upsample(raw, tile_size, tile_size, Interpolation::Nearest);
        tiles.push_back(viz::titled(
            photo.at_own_aspect(viz::colorize(viz::normalize(map, viz::Normalize::MinMax), viz::Colormap::Viridis)),
            fmt::format("#{}: {:.1f}-{:.1f}, std {:.2f}", c, -tg::max(neg(raw)).item(), tg::max(raw).item(),
                        std::sqrt(-by_variance[static_cast<size_t>(k)].first))));
        names += fmt::format("{}#{}", names.empty() ? "" : ", ", c);
      }
      lesson.say("{}: {} channels of {}x{}; largest spatial variance on {}: {}", layer, C, h, w, photo.name, names);
      lesson.say("  {} of its {} maps are constant on {} ({} of them at ReLU6's ceiling 6 everywhere); none is shown",
                 constant, C, photo.name, at_ceiling);
      lesson.say("  {} of its {} channels have an edge lit by the zero padding (an edge row or column above the interior by "
                 "more than 1 on {} and on a flat gray image); none is shown", padding, C, photo.name);
      lesson.number(short_name + ": constant maps on the photo", static_cast<double>(constant), "{:.0f}");
      lesson.number(short_name + ": channels lit by the padding", static_cast<double>(padding), "{:.0f}");
      rows.push_back(viz::grid(tiles, 7, 4));
    }
    lesson.figure("photo_maps.png",
                  viz::stack({viz::stack(rows, 8), viz::color_bar(viz::Colormap::Viridis, 300, "each map's min", "",
                                                                    "each map's max (both in its title)")}),
                  fmt::format("The photo through the photo model (Mopuri 10.1): at each of three depths, the six channels "
                              "whose maps vary most over {} (largest spatial variance: channel number, range and standard "
                              "deviation in the title; the row's first tile names the layer), each map on its own scale, "
                              "enlarged at the photo's own aspect ratio. Ranking by variance rather than by mean keeps out maps that are constant -- at "
                              "0 or at ReLU6's ceiling of 6 everywhere (the counts are printed; ranked by mean, a map at 6 "
                              "everywhere came first at expanded_conv_13 on the cat) -- and channels lit by the zero padding "
                              "are left out too: an edge row or column brighter than the interior by more than 1 on the photo "
                              "and on a flat gray image alike, whose only structure is the zero padding's "
                              "(expanded_conv_13 #409 on the flat image: top row {:.1f}, bottom row {:.1f}, interior "
                              "{:.1f}; on the cat its tile was a bright frame, the padding's, not the photo's). Top: expanded_conv_1 (150x150): "
                              "brightness, colour and edges. Middle: expanded_conv_6 (38x38): {}. Bottom: expanded_conv_13 "
                              "(19x19): coarse regions, harder to name.",
                              photo.name, framed.sides[0], framed.sides[1], framed.interior,
                              lesson.image_path() == lesson::Lesson::kDefaultPhoto ? "the eyes and the nose stand out in several maps"
                                                                                   : "finer parts and outlines"),
                  "Mopuri 10.1: activation maps at several depths");

    // The population: the lesson's photo and the coffee cup, each whole and cropped five ways
    // (four corners and the centre, 60% of each side; each crop is resized to the model's input,
    // so the model sees other scales and other parts), and each of those mirrored: 24 views,
    // through the model a few at a time, counted into the histograms as they go.
    const lesson::Photo coffee = lesson.photo("assets/coffee.png", "Coffee cup");
    auto crop = [](const io::Image& whole, double left, double top, double width, double height) {
      const int x0 = static_cast<int>(left * whole.width), y0 = static_cast<int>(top * whole.height);
      io::Image out{static_cast<int>(width * whole.width), static_cast<int>(height * whole.height), whole.channels, {}};
      out.pixels.resize(static_cast<size_t>(out.width) * out.height * out.channels);
      for (int y = 0; y < out.height; ++y)
        for (int x = 0; x < out.width; ++x)
          for (int c = 0; c < out.channels; ++c) out.at(y, x, c) = whole.at(y0 + y, x0 + x, c);
      return out;
    };
    auto mirror = [](const io::Image& whole) {
      io::Image out = whole;
      for (int y = 0; y < whole.height; ++y)
        for (int x = 0; x < whole.width; ++x)
          for (int c = 0; c < whole.channels; ++c) out.at(y, x, c) = whole.at(y, whole.width - 1 - x, c);
      return out;
    };
    std::vector<Tensor> views;
    for (const lesson::Photo* p : {&photo, &coffee}) {
      std::vector<io::Image> of_photo = {p->original};
      if (!lesson.smoke())  // the fast run for the tests: the two photos whole
        for (const auto& [left, top] : std::vector<std::pair<double, double>>{{0, 0}, {0.4, 0}, {0, 0.4}, {0.4, 0.4}, {0.2, 0.2}})
          of_photo.push_back(crop(p->original, left, top, 0.6, 0.6));
      for (size_t k = 0, n = of_photo.size(); k < n && !lesson.smoke(); ++k) of_photo.push_back(mirror(of_photo[k]));
      for (const io::Image& view : of_photo) views.push_back(preprocess::image_to_input(view, spec));
    }
    const int64_t view_count = static_cast<int64_t>(views.size());
    lesson.step(fmt::format("Distributions over {} views of two photos ({} and coffee.png: whole, the four corners and "
                            "the centre cropped, each also mirrored): zeros, the ReLU6 ceiling, and the rest",
                            view_count, photo.name));
    std::vector<viz::Histogram> histograms;
    for (size_t d = 0; d < depths.size(); ++d) histograms.emplace_back(0, 6, 48, std::vector<double>{0, 6});
    std::vector<double> fewest(depths.size(), 1), most(depths.size(), 0);  // the share of zeros in one view
    const int64_t views_at_once = 4;
    for (int64_t first = 0; first < view_count; first += views_at_once) {
      const int64_t last = std::min(view_count, first + views_at_once);
      lesson.progress("views", static_cast<int>(first), static_cast<int>(view_count));
      explain::scores(photo_model, tg::cat(std::vector<Tensor>(views.begin() + first, views.begin() + last), 0));
      for (size_t d = 0; d < depths.size(); ++d) {
        const Tensor a = photo_model.activation(depths[d]);  // these views
        const int64_t per_view = a.numel() / (last - first);
        for (int64_t n = 0; n < last - first; ++n) {
          int64_t view_zeros = 0;
          for (int64_t i = n * per_view; i < (n + 1) * per_view; ++i) {
            view_zeros += a.data()[i] == 0.f;
            histograms[d].add(a.data()[i]);
          }
          fewest[d] = std::min(fewest[d], static_cast<double>(view_zeros) / static_cast<double>(per_view));
          most[d] = std::max(most[d], static_cast<double>(view_zeros) / static_cast<double>(per_view));
        }
      }
    }
    lesson.progress("views", static_cast<int>(view_count), static_cast<int>(view_count));
    for (size_t d = 0; d < depths.size(); ++d) {
      const std::string short_name = depths[d].substr(0, depths[d].find('/'));
      const double zeros = histograms[d].share_exact(0), ceiling = histograms[d].share_exact(6);
      lesson.say("{}: {:.1f}% exactly 0 ({:.1f}% to {:.1f}% in one view), {:.2f}% at the ceiling 6 ({} values)", short_name,
                 100 * zeros, 100 * fewest[d], 100 * most[d], 100 * ceiling, histograms[d].count());
      lesson.number(short_name + ": fraction of activations that are 0 (" + std::to_string(view_count) + " views)", zeros, "{:.3f}");
      lesson.number(short_name + ": fraction at ReLU6's ceiling 6 (" + std::to_string(view_count) + " views)", ceiling, "{:.4f}");
      lesson.chart("photo_" + short_name + "_histogram.svg",
                   histograms[d].svg(fmt::format("{} (ReLU6): every activation over {} views of 2 photos", short_name, view_count),
                                     "activation"),
                   fmt::format("{} of the photo model over {} views of two photos, {} and coffee.png (each whole and "
                               "cropped at its four corners and centre, and each of those mirrored): every activation, "
                               "as a share of all {} of them. The orange bars are the values exactly at 0 ({:.1f}%; "
                               "{:.1f}% to {:.1f}% in a single view) and at ReLU6's ceiling of 6 ({:.2f}%), where no "
                               "gradient passes; a bar taller than the rest is cut, its share written on it. Two "
                               "photos are a small population: the shares move by the ranges given from view to view.",
                               short_name, view_count, photo.name, histograms[d].count(), 100 * zeros, 100 * fewest[d],
                               100 * most[d], 100 * ceiling),
                   "Mopuri 10.1: the distribution of activations over a population of samples");
    }
  });
}
