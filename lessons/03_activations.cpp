// Lesson 3: activations -- what each layer computes for one image, and over many.
//
// The feature maps of conv1 and conv2 for one input, then the distribution of every
// layer's activations over 1,000 test images: how many are exactly zero after the
// ReLU, and how many units never fire at all ("dead" units).
#include <numeric>

#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"03_activations", "Activations: feature maps and their statistics",
                                     "conv1 and conv2 feature maps for one test image; histograms of each layer's "
                                     "activations over 1,000 test images; the fraction of zeros and of dead units."});
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
        tiles.push_back(viz::picture(m, viz::Normalize::MinMax, viz::Colormap::Viridis, scale));
      }
      return viz::grid(tiles, 8, 2);
    };
    lesson.figure("relu1_maps.png", maps("relu1", 4), "The 16 feature maps of relu1 (conv1 after ReLU, 28x28) for test image 0, "
                                                      "an ankle boot; each map scaled to its own range (viridis).");
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
      lesson.chart(layer + "_histogram.svg", viz::histogram(values, 40, layer + ": nonzero activations over " + std::to_string(count) + " images", "activation"),
                   fmt::format("{}: histogram of the nonzero activations ({:.1f}% of all are exactly zero after the ReLU).", layer,
                               100.0 * zeros / a.numel()));
    }
  });
}
