// Lesson 3: activations -- what each layer computes for one image, and over many.
//
// The feature maps of conv1 and conv2 for one input, then the distribution of every
// layer's activations over 1,000 test images: how many are exactly zero after the
// ReLU, and how many units never fire at all ("dead" units). Then the same questions for
// the photo model on the cat and the coffee cup: maps at three depths, and distributions.
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
                                     "activations over 1,000 test images; the fraction of zeros and of dead units.", .uses_photo = true});
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
      std::vector<double> values;
      int64_t zeros = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        zeros += a.data()[i] == 0.f;
        if (a.data()[i] > 0.f) values.push_back(a.data()[i]);
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
      lesson.chart(layer + "_histogram.svg", viz::histogram(values, 40, layer + ": nonzero activations over " + std::to_string(count) + " images", "activation"),
                   fmt::format("{}: histogram of the nonzero activations ({:.1f}% of all are exactly zero after the ReLU; "
                               "{} of its {} units are dead, zero for every image{}).",
                               layer, 100.0 * zeros / a.numel(), dead, channels,
                               dead > 0 ? ": their weights get no gradient, so training cannot revive them" : ""));
    }

    lesson.step("The photo model: the cat's feature maps at three depths (after ReLU6)");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const std::vector<std::string> depths = {"expanded_conv_1/expand/relu6", "expanded_conv_6/expand/relu6",
                                             "expanded_conv_13/expand/relu6"};
    const lesson::Photo cat_photo = lesson.photo();
    const Tensor cat = cat_photo.input;
    const Tensor coffee = preprocess::image_to_input(io::load_image("assets/coffee.png"), spec);
    // One forward pass of both photos; every layer's output is then read from the model.
    explain::scores(photo_model, tg::cat({cat, coffee}, 0));
    std::vector<io::Image> rows;
    for (const std::string& layer : depths) {
      const Tensor a = slice(photo_model.activation(layer), 0, 0, 1);  // the cat
      const int64_t C = a.dim(1), h = a.dim(2), w = a.dim(3);
      // The six channels with the largest mean on the cat, each map on its own scale.
      std::vector<std::pair<double, int64_t>> means;
      for (int64_t c = 0; c < C; ++c) {
        double total = 0;
        for (int64_t i = 0; i < h * w; ++i) total += a.data()[c * h * w + i];
        means.emplace_back(-total / static_cast<double>(h * w), c);
      }
      std::sort(means.begin(), means.end());
      const std::string short_name = layer.substr(0, layer.find('/'));
      std::vector<io::Image> tiles = {viz::titled(cat_photo.at_own_aspect(preprocess::input_to_image(cat, spec)), cat_photo.name)};
      std::vector<int64_t> shown;
      for (int k = 0; k < 6; ++k) {
        const int64_t c = means[static_cast<size_t>(k)].second;
        shown.push_back(c);
        const Tensor map = upsample(reshape(slice(a, 1, c, c + 1), {1, h, w}), spec.height, spec.width, Interpolation::Nearest);
        tiles.push_back(viz::titled(viz::colorize(viz::normalize(map, viz::Normalize::MinMax), viz::Colormap::Viridis),
                                    fmt::format("{} #{}: mean {:.2f}", short_name, c, -means[static_cast<size_t>(k)].first)));
      }
      std::string names;
      for (int64_t c : shown) names += fmt::format("{}#{}", names.empty() ? "" : ", ", c);
      lesson.say("{}: {} channels of {}x{}; the most active on the cat: {}", layer, C, h, w, names);
      rows.push_back(viz::grid(tiles, 7, 4));
    }
    lesson.figure("photo_maps.png",
                  viz::stack({viz::stack(rows, 8), viz::color_bar(viz::Colormap::Viridis, 300, "each map's min", "",
                                                                    "each map's max")}),
                  "The cat through the photo model (Mopuri 10.1): at each of three depths, the six channels most active "
                  "on chelsea.png (channel number and mean value in the title), each map on its own scale and enlarged "
                  "to the photo's size. Top: expanded_conv_1 (150x150): brightness, color and edges -- the eyes, the "
                  "whiskers, the stripes. Middle: expanded_conv_6 (38x38): the eyes and the nose stand out in several "
                  "maps. Bottom: expanded_conv_13 (19x19): coarse maps, several strongest in the lower left (the white "
                  "fur of cheek and chest); #233 sits near ReLU6's ceiling of 6 almost everywhere.",
                  "Mopuri 10.1: activation maps at several depths");

    lesson.step("Distributions over the two photos: zeros, the ReLU6 ceiling, and the rest");
    for (const std::string& layer : depths) {
      std::vector<double> values;
      int64_t zeros = 0, ceiling = 0;
      const Tensor a = photo_model.activation(layer);  // both photos
      const int64_t total = a.numel();
      for (int64_t i = 0; i < total; ++i) {
        const float v = a.data()[i];
        zeros += v == 0.f;
        ceiling += v == 6.f;
        if (v > 0.f && v < 6.f) values.push_back(v);
      }
      const std::string short_name = layer.substr(0, layer.find('/'));
      lesson.say("{}: {:.1f}% exactly 0, {:.2f}% at the ceiling 6", short_name, 100.0 * zeros / total, 100.0 * ceiling / total);
      lesson.number(short_name + ": fraction of activations that are 0 (two photos)", static_cast<double>(zeros) / total, "{:.3f}");
      lesson.chart("photo_" + short_name + "_histogram.svg",
                   viz::histogram(values, 40, short_name + " (ReLU6): values between 0 and 6, cat and coffee", "activation"),
                   fmt::format("{} of the photo model over chelsea.png and coffee.png: the histogram of the values "
                               "strictly between 0 and 6; {:.1f}% are exactly 0 and {:.2f}% sit at ReLU6's ceiling of 6 "
                               "(where, like at 0, no gradient passes).",
                               short_name, 100.0 * zeros / total, 100.0 * ceiling / total),
                  "Mopuri 10.1: the distribution of activations over a population of samples");
    }
  });
}
