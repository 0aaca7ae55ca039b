// Lesson 5: occlusion -- hide part of the image and watch the probability.
//
// The most direct question: if this patch were not there, would the model still
// recognize the object? Slide a gray... here black (the background) square over the
// image and record how much the true class's probability drops (Zeiler & Fergus 2014).
// No gradients at all -- only forward passes.
#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"05_occlusion", "Occlusion sensitivity",
                                     "A 6x6 black square slid over test images (stride 2); the heat map is the drop in "
                                     "the true class's probability when the square covers each pixel."});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const std::vector<int64_t> picks = lesson.smoke() ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 1, 2, 4, 9, 18};
    const int64_t window = 6, stride = 2;
    const float black = -data::kFashionMean / data::kFashionStd;  // pixel value 0 after normalization

    lesson.step(fmt::format("Window {0}x{0}, stride {1}: {2} positions per image, each one forward pass", window, stride,
                            ((28 + stride - 1) / stride) * ((28 + stride - 1) / stride)));
    const int scale = 6;
    std::vector<io::Image> tiles;
    for (int64_t index : picks) {
      const int64_t label = sample.labels[index];
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      const Tensor map = explain::occlusion(model, image, {label}, window, stride, black);
      const float p = softmax(explain::scores(model, image), 1).at({0, label});
      const float biggest = tg::max(map).item();
      lesson.say("image {:>2} ({:<11}): p = {:.4f}; the worst square lowers it by {:.4f}", index, data::kFashionClasses[label], p, biggest);
      const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
      // A fixed scale for every image: a drop of 1 (certain -> impossible) is full red, so a
      // confident prediction that no square can shake stays white.
      const Tensor unit = reshape(map, {1, 28, 28}) * 0.5f + 0.5f;
      const io::Image heat = viz::scale_nearest(viz::colorize(unit, viz::Colormap::Diverging), scale);
      tiles.insert(tiles.end(), {input, heat, viz::overlay(input, heat, 0.5f)});
    }
    lesson.figure("occlusion.png", viz::grid(tiles, 3, 4),
                  "Rows: test images. Columns: input, drop in the true class's probability when a 6x6 black square "
                  "covers the pixel, on one scale for all images (full red: a drop of 1; blue: covering helps; white: no effect), overlay.");
    lesson.say("for confident predictions most squares change nothing: the evidence is spread out, and only");
    lesson.say("covering a distinctive part (a heel, a collar, the gap between trouser legs) matters.");
  });
}
