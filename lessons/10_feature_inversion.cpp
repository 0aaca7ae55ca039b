// Lesson 10: feature inversion -- what an fc1 code remembers of the image.
//
// fc1 turns an image into 128 numbers. Which images give the same 128 numbers? Start
// from random noise and climb -||fc1(x) - fc1(x0)||^2 (Mahendran & Vedaldi 2015) with
// the gradient-ascent engine; do it from 5 random starts, with and without a
// total-variation regularizer that prefers smooth images.
#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"10_feature_inversion", "Feature inversion: reconstructing an image from its fc1 code",
                                     "Images whose fc1 code matches a test image's, found by gradient ascent from 5 "
                                     "random starts, without and with total-variation regularization."});
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
        std::vector<io::Image> row = {show(image)};
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
          row.push_back(show(x));
        }
        lesson.say("TV weight {:.4f}: worst relative code error over {} starts ||fc1(x)-fc1(x0)||^2/||fc1(x0)||^2 = {:.4f}", tv, starts, worst);
        tiles.insert(tiles.end(), row.begin(), row.end());
      }
    }
    lesson.figure("inversions.png", viz::grid(tiles, starts + 1, 4),
                  "Each row: the target image, then reconstructions from different random starts that all give (nearly) "
                  "the same fc1 code. Rows alternate: no regularization, then total variation 0.0005. The code keeps the "
                  "garment's shape; pixel detail is not determined by it.");
  });
}
