// Lesson 10: feature inversion -- what an fc1 code remembers of the image.
//
// fc1 turns an image into 128 numbers. Which images give the same 128 numbers? Start
// from random noise and climb -||fc1(x) - fc1(x0)||^2 (Mahendran & Vedaldi 2015) with
// the gradient-ascent engine; do it from 5 random starts, with and without a
// total-variation regularizer that prefers smooth images. Then the same on the cat photo
// through the photo model, from a deep layer, with a stronger image prior.
#include <chrono>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "10_feature_inversion", .title = "Feature inversion: reconstructing an image from its fc1 code",
                                     .summary = "Images whose fc1 code matches a test image's, found by gradient ascent from 5 "
                                     "random starts, without and with total-variation regularization; the cat photo inverted "
                                     "from a deep layer of the photo model from 5 random starts.", .uses_photo = true});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const int starts = lesson.smoke() ? 2 : 5;
    const int steps = lesson.smoke() ? 50 : 300;
    const int scale = 4;
    auto show = [&](const Tensor& x) {
      return viz::picture(x, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
    };

    std::vector<io::Image> tiles;
    for (int64_t index : lesson.smoke() ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 2}) {
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      lesson.step(fmt::format("Target: test image {} ({}); its fc1 code has 128 numbers", index, data::kFashionClasses[sample.labels[index]]));
      Tensor code;
      {
        NoGrad no_grad;
        code = model.forward_until(image, "fc1").clone();
      }
      for (float tv : {0.f, 0.0005f}) {
        std::vector<io::Image> row = {viz::titled(show(image), tv > 0 ? "target, TV 5e-4" : "target, no TV", 11)};
        double worst = 0;
        for (int s = 0; s < starts; ++s) {
          Generator gen(100 + static_cast<uint64_t>(s));
          const Tensor start = Tensor::randn({1, 1, 28, 28}, gen, 0.f, 0.5f);
          explain::AscentOptions options;
          options.steps = steps;
          options.learning_rate = 10.f;
          options.tv = tv;
          options.clip = true;  // stay within the valid pixel range
          options.clip_low = -data::kFashionMean / data::kFashionStd;
          options.clip_high = (1.f - data::kFashionMean) / data::kFashionStd;
          const Tensor x = explain::ascend(start, explain::feature_match(model, "fc1", code), options);
          NoGrad no_grad;
          const float relative_error = -explain::feature_match(model, "fc1", code)(x).item();
          worst = std::max(worst, static_cast<double>(relative_error));
          row.push_back(viz::titled(show(x), fmt::format("start {}: error {:.3f}", s + 1, relative_error), 11));
        }
        lesson.say("TV weight {:.4f}: worst relative code error over {} starts ||fc1(x)-fc1(x0)||^2/||fc1(x0)||^2 = {:.4f}", tv, starts, worst);
        tiles.insert(tiles.end(), row.begin(), row.end());
      }
    }
    lesson.figure("inversions.png", viz::grid(tiles, starts + 1, 4),
                  "Each row: the target image, then reconstructions from different random starts that all give (nearly) "
                  "the same fc1 code. Rows alternate: no regularization, then total variation 0.0005. The code keeps the "
                  "garment's shape; pixel detail is not determined by it.");

    lesson.step("The cat through the photo model: invert a deep layer from 5 random starts, with an image prior");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const Tensor cat = lesson.photo().input;
    const std::string layer = "expanded_conv_9/add";  // 64 channels of 19x19, a stride of 16
    Tensor cat_code;
    {
      NoGrad no_grad;
      cat_code = photo_model.forward_until(cat, layer).clone();
    }
    lesson.say("{}: {} numbers (the photo has {})", layer, cat_code.numel(), cat.numel());
    // The prior: the image is made by the decorrelated parameterization (smooth, natural
    // colors, pixels in range) and must match from slightly shifted views too.
    const explain::DecorrelatedImage decorrelated(spec.height, spec.width);
    const int photo_starts = lesson.smoke() ? 2 : 5;
    Generator gen(21);
    // Random starts: colored noise of every frequency (z of standard deviation 20).
    const Tensor z0 = Tensor::randn({photo_starts, 3, spec.height, spec.width}, gen, 0.f, 20.f);
    const explain::Objective match = explain::transformed(explain::feature_match(photo_model, layer, cat_code),
                                                          {0.f, 0.f, 4.f}, 22);
    explain::AscentOptions options;
    options.steps = lesson.smoke() ? 2 : 40;
    options.learning_rate = 0.1f;
    options.normalize_gradient = true;
    options.on_step = [&](int step, const Tensor&, float) { lesson.progress("inversion", step, options.steps); };
    const auto start = std::chrono::steady_clock::now();
    const Tensor z = explain::ascend(z0, [&](const Tensor& params) { return match(decorrelated(params)); }, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::vector<io::Image> cat_tiles = {viz::titled(preprocess::input_to_image(cat, spec), "chelsea.png")};
    std::vector<io::Image> start_tiles = {viz::titled(preprocess::input_to_image(cat, spec), "the same")};
    NoGrad no_grad;
    const Tensor starts_images = decorrelated(z0), inverted = decorrelated(z);
    const explain::Objective exact = explain::feature_match(photo_model, layer, cat_code);
    double worst = 0;
    for (int s = 0; s < photo_starts; ++s) {
      const Tensor x = slice(inverted, 0, s, s + 1);
      const float error = -exact(x).item();
      const float start_error = -exact(slice(starts_images, 0, s, s + 1)).item();
      worst = std::max(worst, static_cast<double>(error));
      lesson.say("start {}: relative code error {:.3f} at the start, {:.3f} after {} steps", s + 1, start_error, error, options.steps);
      start_tiles.push_back(viz::titled(preprocess::input_to_image(slice(starts_images, 0, s, s + 1), spec),
                                        fmt::format("start {}: error {:.2f}", s + 1, start_error)));
      cat_tiles.push_back(viz::titled(preprocess::input_to_image(x, spec), fmt::format("inverted: error {:.3f}", error)));
    }
    lesson.say("{} starts x {} steps: {:.1f} s", photo_starts, options.steps, seconds);
    lesson.number("cat inversion: worst relative code error over the starts", worst, "{:.3f}");
    std::vector<io::Image> rows = start_tiles;
    rows.insert(rows.end(), cat_tiles.begin(), cat_tiles.end());
    lesson.figure("cat_inversion.png", viz::grid(rows, photo_starts + 1, 6),
                  fmt::format("Feature inversion of the cat (lecture 39 (d)): images whose {} code ({} numbers) matches "
                              "chelsea.png's, from {} random starts (top row, with each start's relative code error "
                              "||phi(x) - phi(x0)||^2 / ||phi(x0)||^2) after {} steps of gradient ascent (bottom row; the "
                              "worst error is {:.3f}). The prior is the decorrelated image (smooth, natural colors, valid "
                              "pixels) seen through random shifts of up to 4 pixels. Every start brings back the eyes, "
                              "the nose and the stripes of the fur at their places; colors and fine texture differ from "
                              "start to start: the code fixes where the parts are, not the exact pixels.",
                              layer, cat_code.numel(), photo_starts, options.steps, worst),
                  "Balasubramanian 39 (d): feature inversion from five random starts");
  });
}
