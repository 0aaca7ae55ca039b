// Lesson 13: fooling images -- tiny changes, a different answer.
//
// The gradient-ascent engine of lesson 9, started from a real, correctly classified
// image instead of a blank one, climbing a wrong class's score. A few steps with a
// small learning rate change the pixels by little -- and the prediction completely. Every
// step stays a valid image (pixels within 0..255), and the result is judged as it would be
// saved: rounded to whole 8-bit pixel values.
#include <numeric>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "13_fooling", .title = "Fooling images: tiny changes, a different answer",
                                     .summary = "Correctly classified images pushed to a wrong class by gradient ascent on its "
                                     "score: the image, the change (amplified), the result, and the probabilities."});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const std::vector<std::pair<int64_t, int64_t>> cases =
        lesson.smoke() ? std::vector<std::pair<int64_t, int64_t>>{{0, 5}}
                       : std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {1, 4}, {2, 3}, {9, 8}};  // (image, wrong class)
    const int scale = 6;
    std::vector<io::Image> tiles;
    std::vector<std::string> labels;
    std::vector<double> changes;
    int fooled_count = 0;
    for (const auto& [index, wrong] : cases) {
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      const int64_t label = sample.labels[index];
      lesson.step(fmt::format("Image {} ({}), pushed toward {}", index, data::kFashionClasses[label], data::kFashionClasses[wrong]));
      const Tensor before = softmax(explain::scores(model, image), 1);
      lesson.say("before: p({}) = {:.4f}, p({}) = {:.4f}", data::kFashionClasses[label], before.at({0, label}),
                 data::kFashionClasses[wrong], before.at({0, wrong}));
      // Small steps on the wrong class's score (one engine step at a time), each clipped to
      // the valid pixel range, stopping as soon as the image rounded to 8 bits is the wrong
      // class with p > 0.9.
      explain::AscentOptions one_step;
      one_step.steps = 1;
      one_step.learning_rate = 0.02f;
      one_step.clip = true;
      one_step.clip_low = -data::kFashionMean / data::kFashionStd;  // pixel 0
      one_step.clip_high = (1.f - data::kFashionMean) / data::kFashionStd;  // pixel 255
      // As saved: to whole 8-bit pixels and back (the spec's photo rule of inverting light
      // backgrounds is for photos, not for an image that already is the model's input).
      preprocess::InputSpec as_is = model.info().input;
      as_is.invert_light_background = false;
      auto rounded = [&](const Tensor& x) { return preprocess::image_to_input(preprocess::input_to_image(x, as_is), as_is); };
      const int max_steps = 300;
      int used = 0;
      Tensor fooled = image.clone();
      while (used < max_steps && softmax(explain::scores(model, rounded(fooled)), 1).at({0, wrong}) <= 0.9f) {
        fooled = explain::ascend(fooled, explain::class_score(model, wrong), one_step);
        ++used;
      }
      fooled = rounded(fooled);
      const Tensor after = softmax(explain::scores(model, fooled), 1);
      fooled_count += after.at({0, wrong}) > 0.9f;
      double largest = 0, mean_abs = 0;
      Tensor change = Tensor::empty(image.shape());
      for (int64_t i = 0; i < image.numel(); ++i) {
        change.data()[i] = fooled.data()[i] - image.data()[i];
        largest = std::max(largest, std::fabs(change.data()[i] * data::kFashionStd * 255.0));
        mean_abs += std::fabs(change.data()[i] * data::kFashionStd * 255.0) / image.numel();
      }
      lesson.say("after {} steps, rounded to 8 bits: p({}) = {:.4f}, p({}) = {:.4f}", used, data::kFashionClasses[label], after.at({0, label}),
                 data::kFashionClasses[wrong], after.at({0, wrong}));
      lesson.say("pixel change (0-255 scale): mean {:.1f}, largest {:.1f}", mean_abs, largest);
      changes.push_back(mean_abs);
      auto as_pixels = [&](const Tensor& x) {  // black 0, white 255, never rescaled
        return viz::scale_nearest(preprocess::input_to_image(x, as_is), scale);
      };
      const io::Image a = viz::titled(as_pixels(image), fmt::format("{}: p {:.3f}", data::kFashionClasses[label],
                                                                    before.at({0, label})), 12);
      const io::Image d = viz::titled(viz::picture(change, viz::Normalize::Signed, viz::Colormap::Diverging, scale),
                                      fmt::format("change, largest {:.0f}/255", largest), 12);
      const io::Image b = viz::titled(as_pixels(fooled), fmt::format("{}: p {:.3f}", data::kFashionClasses[wrong],
                                                                     after.at({0, wrong})), 12);
      tiles.insert(tiles.end(), {a, d, b});
      labels.push_back(fmt::format("{}->{}", index, wrong));
    }
    lesson.number("mean pixel change over the cases (0-255)", std::accumulate(changes.begin(), changes.end(), 0.0) / changes.size(), "{:.2f}");
    lesson.figure("fooling.png", viz::grid(tiles, 3, 4),
                  fmt::format("Rows: cases. Columns: the original, correctly classified (title: its class and "
                              "probability); the change (amplified to full scale; red brighter, blue darker; title: the "
                              "largest change in pixel levels); the result as saved, every pixel a whole value in 0..255 "
                              "(title: the wrong class and its probability on that 8-bit image, above 0.9 in {} of {} "
                              "rows). Both images are drawn as pixels, not rescaled.",
                              fooled_count, cases.size()));
    lesson.chart("change.svg", viz::bar_chart(labels, changes, "How much the pixels had to change", "mean |change| (0-255)"),
                 "Mean absolute pixel change needed to fool the model, per case (image -> wrong class).");
  });
}
