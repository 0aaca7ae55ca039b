// Lesson 5: occlusion -- hide part of the image and watch the probability.
//
// The most direct question: if this patch were not there, would the model still
// recognize the object? Slide a square over the image -- black on Fashion-MNIST, whose
// background is black -- and record how much the true class's probability drops (Zeiler &
// Fergus 2014). Then the lecture's version: a 32x32 gray patch over the cat photo,
// through the photo model. No gradients at all -- only forward passes.
#include <chrono>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "05_occlusion", .title = "Occlusion sensitivity",
                                     .summary = "A 6x6 black square slid over test images (stride 2), then a 32x32 gray patch over "
                                     "the cat photo; the heat map is the drop in the class's probability when the patch "
                                     "covers each pixel.", .uses_photo = true});
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
    int blank = 0;
    for (int64_t index : picks) {
      const int64_t label = sample.labels[index];
      const std::string name = data::kFashionClasses[label];
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      const Tensor map = explain::occlusion(model, image, {label}, window, stride, black);
      const Tensor score_map = explain::occlusion(model, image, {label}, window, stride, black, explain::OcclusionMeasure::Score);
      const Tensor logits = explain::scores(model, image);
      const float p = softmax(logits, 1).at({0, label});
      // How far the class leads the runner-up, in score: p stays near 1 until a square
      // takes most of that lead away.
      float runner_up = -1e30f;
      for (int64_t c = 0; c < 10; ++c)
        if (c != label) runner_up = std::max(runner_up, logits.at({0, c}));
      const float lead = logits.at({0, label}) - runner_up;
      const float biggest = tg::max(map).item(), biggest_score = tg::max(score_map).item();
      blank += biggest < 0.01f;
      lesson.say("image {:>2} ({:<11}): p = {:.4f}, score lead {:5.1f}; covering drops p by up to {:.4f}, the score by up to {:.1f}",
                 index, name, p, lead, biggest, biggest_score);
      const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
      // The probability drop on a fixed scale for every image: a drop of 1 (certain ->
      // impossible) is full red, so a prediction that no square can shake stays white.
      const Tensor unit = reshape(map, {1, 28, 28}) * 0.5f + 0.5f;
      const io::Image heat = viz::scale_nearest(viz::colorize(unit, viz::Colormap::Diverging), scale);
      // The score drop, each map on its own symmetric scale.
      const io::Image score_heat = viz::picture(reshape(score_map, {1, 28, 28}), viz::Normalize::Signed,
                                                viz::Colormap::Diverging, scale);
      tiles.push_back(viz::titled(input, fmt::format("{}: p {:.4f}", name, p), 12));
      tiles.push_back(viz::titled(heat, fmt::format("p drop, max {:.4f}", biggest), 12));
      tiles.push_back(viz::titled(score_heat, fmt::format("score drop, max {:.1f}", biggest_score), 12));
      tiles.push_back(viz::titled(viz::overlay(input, score_heat, 0.5f), fmt::format("score lead {:.1f}", lead), 12));
    }
    lesson.figure("occlusion.png",
                  viz::stack({viz::grid(tiles, 4, 4),
                              viz::color_bar(viz::Colormap::Diverging, 300, "covering helps", "no effect", "covering hurts")}),
                  fmt::format("Rows: test images. Columns: the input with p(true class); the drop in that probability when "
                              "a 6x6 black square covers the pixel, on one scale for all images (full red: a drop of 1); "
                              "the drop in the class score (logit), each map on its own scale (red: covering hurts, blue: "
                              "it helps); that map over the input, titled with how far the class's score leads the "
                              "runner-up. A pixel's value is the mean drop over the squares that cover it. {} of the {} "
                              "probability maps are blank (no pixel reaches a drop of 0.01): the class "
                              "leads by so much that p stays 1.0000 even when a square takes away part of the lead. The "
                              "score maps show where the evidence is in every image.",
                              blank, picks.size()));
    lesson.say("a probability map can be blank although the model uses the pixels: p = softmax saturates. The");
    lesson.say("score drop does not saturate, so it shows where the evidence is even for a certain prediction.");

    // The lecture's version: a 32x32 gray patch over a photo, through the photo model.
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const int64_t patch = 32, photo_stride = lesson.smoke() ? 100 : 20;
    const int64_t positions = ((spec.height + photo_stride - 1) / photo_stride) * ((spec.width + photo_stride - 1) / photo_stride);
    lesson.step(fmt::format("The cat photo: a {0}x{0} mid-gray patch, stride {1}: {2} positions, 8 occluded copies per "
                            "forward pass", patch, photo_stride, positions));
    const lesson::Photo photo = lesson.photo();
    const Tensor& cat_input = photo.input;
    const int64_t cat = photo.target;
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
    const io::Image cat_photo = photo.at_own_aspect(preprocess::input_to_image(cat_input, spec));
    const Tensor unit = reshape(cat_map, {1, spec.height, spec.width}) * (0.5f / std::max(1e-6f, std::max(worst, -best))) + 0.5f;
    const io::Image cat_heat = photo.at_own_aspect(viz::colorize(unit, viz::Colormap::Diverging));
    lesson.figure("cat_occlusion.png",
                  viz::stack({viz::grid({viz::titled(cat_photo, fmt::format("{}: p({}) = {:.2f}", photo.name, photo.target_name, p_cat)),
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
