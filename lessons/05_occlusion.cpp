// Lesson 5: occlusion -- hide part of the image and watch the probability.
//
// The most direct question: if this patch were not there, would the model still
// recognize the object? Slide a square over the image -- black on Fashion-MNIST, whose
// background is black -- and record how much the true class's probability drops (Zeiler &
// Fergus 2014). Then the lecture's version: a 32x32 gray patch over the cat photo,
// through the photo model. No gradients at all -- only forward passes.
#include <chrono>

#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/preprocess.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"05_occlusion", "Occlusion sensitivity",
                                     "A 6x6 black square slid over test images (stride 2), then a 32x32 gray patch over "
                                     "the cat photo; the heat map is the drop in the class's probability when the patch "
                                     "covers each pixel."});
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

    // The lecture's version: a 32x32 gray patch over a photo, through the photo model.
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const int64_t patch = 32, photo_stride = lesson.smoke() ? 100 : 20;
    const int64_t positions = ((spec.height + photo_stride - 1) / photo_stride) * ((spec.width + photo_stride - 1) / photo_stride);
    lesson.step(fmt::format("The cat photo: a {0}x{0} mid-gray patch, stride {1}: {2} positions, 8 occluded copies per "
                            "forward pass", patch, photo_stride, positions));
    const Tensor cat_input = preprocess::image_to_input(io::load_image("assets/chelsea.png"), spec);
    const int64_t cat = photo_model.class_index("Cat");
    const float gray = (0.5f - spec.mean[0]) / spec.std[0];  // pixel 127.5 after the model's normalization
    const auto start = std::chrono::steady_clock::now();
    const Tensor cat_map = explain::occlusion(photo_model, cat_input, {cat}, patch, photo_stride, gray);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const float p_cat = photo_model.probabilities(explain::scores(photo_model, cat_input)).data()[cat];
    const float worst = tg::max(cat_map).item(), best = -tg::max(neg(cat_map)).item();
    lesson.say("p(Cat) = {:.4f}; {} forward passes in {:.1f} s", p_cat, positions, seconds);
    const int64_t at = tg::argmax(reshape(cat_map, {1, cat_map.numel()}))[0];
    const int64_t drop_x = at % spec.width, drop_y = at / spec.width;
    int64_t raised = 0;
    for (int64_t i = 0; i < cat_map.numel(); ++i) raised += cat_map.data()[i] < 0.f;
    lesson.say("the largest mean drop over a pixel's windows is {:.4f}, at (x {}, y {}); the largest rise {:.4f}", worst,
               drop_x, drop_y, -best);
    lesson.say("{:.0f}% of the pixels: covering them raises p(Cat). A 32x32 patch hides 1% of the photo; no single",
               100.0 * static_cast<double>(raised) / static_cast<double>(cat_map.numel()));
    lesson.say("window takes away more than a few hundredths of a confident p(Cat).");
    const io::Image cat_photo = preprocess::input_to_image(cat_input, spec);
    const Tensor unit = reshape(cat_map, {1, spec.height, spec.width}) * (0.5f / std::max(1e-6f, std::max(worst, -best))) + 0.5f;
    const io::Image cat_heat = viz::colorize(unit, viz::Colormap::Diverging);
    lesson.figure("cat_occlusion.png",
                  viz::stack({viz::grid({viz::titled(cat_photo, fmt::format("chelsea.png: p(Cat) = {:.2f}", p_cat)),
                                         viz::titled(cat_heat, "drop in p(Cat), 32x32 gray patch"),
                                         viz::titled(viz::overlay(cat_photo, cat_heat, 0.5f), "overlay")}, 3, 4),
                              viz::color_bar(viz::Colormap::Diverging, 300, fmt::format("{:+.2f}", best), "0 (no effect)",
                                             fmt::format("{:+.2f}", worst))}),
                  fmt::format("The cat photo through the photo model, a 32x32 mid-gray patch slid with stride {}: each pixel "
                              "shows the mean drop in p(Cat) = {:.2f} over the windows that covered it (red: covering it "
                              "lowers p(Cat), at most by {:.3f}, most at x {}, y {}; blue: covering it raises p(Cat), at "
                              "most by {:.3f}; {:.0f}% of the pixels are blue). No window changes p(Cat) by more than a few "
                              "hundredths: the patch hides 1% of the photo. The color scale is symmetric about 0, set by the larger extreme.",
                              photo_stride, p_cat, worst, drop_x, drop_y, -best,
                              100.0 * static_cast<double>(raised) / static_cast<double>(cat_map.numel())),
                  "Mopuri 10.1: occlusion sensitivity, a 32x32 gray patch");
  });
}
