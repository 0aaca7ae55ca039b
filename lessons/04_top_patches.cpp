// Lesson 4: top patches -- ask the data what a unit responds to.
//
// A conv2 unit at position (y, x) sees a 14x14 window of the input: its receptive
// field. Run all 1,000 sample images, and for a few conv2 channels keep the 9 windows
// where the channel fired most. What they share is what the unit detects.
#include <numeric>

#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"04_top_patches", "Top patches: the receptive fields that excite a unit most",
                                     "For six conv2 channels, the 9 input patches (their 14x14 receptive fields) from "
                                     "1,000 test images with the highest activation."});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const int64_t count = lesson.smoke() ? 100 : sample.size();

    lesson.step("Receptive field of relu2[c, y, x]: conv1 (5x5, pad 2), pool (2), conv2 (5x5, pad 2) -> 14x14 input pixels");
    lesson.say("relu2 position (y, x) covers input rows 2y-6 .. 2y+7 and columns 2x-6 .. 2x+7 (clipped at the border)");

    lesson.step(fmt::format("Run {} test images and record relu2", count));
    std::vector<int64_t> order(static_cast<size_t>(count));
    std::iota(order.begin(), order.end(), 0);
    const data::Batch batch = data::make_batch(sample, order, 0, count);
    explain::scores(model, batch.images);
    const Tensor a = model.activation("relu2");  // [N, 32, 14, 14]

    const std::vector<int64_t> channels = {0, 5, 9, 12, 20, 31};
    const int scale = 4;
    std::vector<io::Image> rows;
    for (int64_t c : channels) {
      // The 9 strongest (image, y, x), at most one per image so the patches are not all alike.
      std::vector<std::tuple<float, int64_t, int64_t, int64_t>> best;  // value, image, y, x
      for (int64_t n = 0; n < count; ++n) {
        float top = -1.f;
        int64_t ty = 0, tx = 0;
        for (int64_t y = 0; y < 14; ++y)
          for (int64_t x = 0; x < 14; ++x)
            if (a.at({n, c, y, x}) > top) top = a.at({n, c, y, x}), ty = y, tx = x;
        best.emplace_back(top, n, ty, tx);
      }
      std::sort(best.begin(), best.end(), [](const auto& p, const auto& q) { return std::get<0>(p) > std::get<0>(q); });
      best.resize(9);
      std::vector<io::Image> patches;
      std::string labels;
      for (const auto& [value, n, y, x] : best) {
        io::Image patch{14, 14, 1, std::vector<uint8_t>(14 * 14, 0)};
        for (int64_t i = 0; i < 14; ++i)
          for (int64_t j = 0; j < 14; ++j) {
            const int64_t iy = 2 * y - 6 + i, ix = 2 * x - 6 + j;
            if (iy >= 0 && iy < 28 && ix >= 0 && ix < 28) patch.at(static_cast<int>(i), static_cast<int>(j), 0) = sample.pixels[n * 784 + iy * 28 + ix];
          }
        patches.push_back(viz::scale_nearest(patch, scale));
        labels += fmt::format(" {}", data::kFashionClasses[sample.labels[n]]);
      }
      lesson.say("channel {:>2}: top activation {:.2f}; from:{}", c, std::get<0>(best.front()), labels);
      rows.push_back(viz::grid(patches, 9, 2, 128));
    }
    lesson.figure("top_patches.png", viz::grid(rows, 1, 6),
                  "One row per conv2 channel (0, 5, 9, 12, 20, 31): the 14x14 input patches where it fired most, "
                  "strongest first, one per image. Shared edges and textures are what the unit detects.");
  });
}
