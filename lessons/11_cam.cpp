// Lesson 11: Grad-CAM -- where in the image the evidence for a class is.
//
// A deep feature map still knows where things are (relu2 is 14x14). Grad-CAM weighs
// its channels by how much the class score's gradient says each one matters (the
// spatial mean of d score / d channel), sums, and keeps the positive part: a coarse map
// of the evidence. Guided Grad-CAM multiplies it into guided backprop for detail.
#include <filesystem>
#include <numeric>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "11_cam", .title = "Grad-CAM and guided Grad-CAM, for right and wrong predictions",
                                     .summary = "Grad-CAM at relu2 (14x14) and guided Grad-CAM for test images the model gets right "
                                     "and ones it gets wrong -- explaining both the predicted and the true class.", .uses_photo = true});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);

    lesson.step("Find test images the model classifies correctly, and some it gets wrong");
    const int wanted = lesson.smoke() ? 1 : 3;
    std::vector<int64_t> right, wrong;
    std::vector<int64_t> order(static_cast<size_t>(sample.size()));
    std::iota(order.begin(), order.end(), 0);
    const data::Batch all = data::make_batch(sample, order, 0, sample.size());
    const Tensor logits = explain::scores(model, all.images);
    const std::vector<int64_t> predicted = argmax(logits);
    for (int64_t i = 0; i < sample.size(); ++i) {
      auto& list = predicted[i] == sample.labels[i] ? right : wrong;
      if (static_cast<int>(list.size()) < wanted) list.push_back(i);
    }
    int64_t errors = 0;
    for (int64_t i = 0; i < sample.size(); ++i) errors += predicted[i] != sample.labels[i];
    lesson.number("errors on the 1,000 sample images", static_cast<double>(errors), "{:.0f}");

    const int scale = 6;
    auto panel_row = [&](int64_t index, int64_t target) {
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      const Tensor map = explain::grad_cam(model, image, {target}, "relu2");
      const Tensor guided = explain::guided_grad_cam(model, image, {target}, "relu2");
      const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
      const Tensor up = upsample(viz::normalize(reshape(map, {1, 14, 14}), viz::Normalize::MinMax), 28, 28, Interpolation::Bilinear);
      const io::Image heat = viz::scale_nearest(viz::colorize(up, viz::Colormap::Viridis), scale);
      const io::Image detail = viz::picture(guided, viz::Normalize::Signed, viz::Colormap::Diverging, scale);
      const std::string target_name = data::kFashionClasses[target];
      const float p = softmax(explain::scores(model, image), 1).at({0, target});
      return std::vector<io::Image>{
          viz::titled(input, fmt::format("#{}, true: {}", index, data::kFashionClasses[sample.labels[index]]), 11),
          viz::titled(viz::overlay(input, heat, 0.55f), fmt::format("Grad-CAM: {} {:.2f}", target_name, p), 11),
          viz::titled(detail, fmt::format("guided: {}", target_name), 11)};
    };

    lesson.step("Correct predictions: Grad-CAM for the predicted (= true) class");
    std::vector<io::Image> tiles;
    for (int64_t i : right) {
      lesson.say("image {}: {} (correct)", i, data::kFashionClasses[sample.labels[i]]);
      for (const io::Image& t : panel_row(i, sample.labels[i])) tiles.push_back(t);
    }
    lesson.figure("correct.png", viz::grid(tiles, 3, 4),
                  "Correct predictions. Columns: input (titled with its index and true class), Grad-CAM at relu2 "
                  "upsampled over the input (titled with the class it explains and its probability; yellow = that "
                  "map's largest value), guided Grad-CAM for the same class (red positive, blue negative).");

    lesson.step("Wrong predictions: what the model saw for its answer, and for the true class");
    tiles.clear();
    for (int64_t i : wrong) {
      lesson.say("image {}: true {}, predicted {}", i, data::kFashionClasses[sample.labels[i]], data::kFashionClasses[predicted[i]]);
      for (const io::Image& t : panel_row(i, predicted[i])) tiles.push_back(t);
      for (const io::Image& t : panel_row(i, sample.labels[i])) tiles.push_back(t);
    }
    lesson.figure("wrong.png", viz::grid(tiles, 6, 4),
                  "Mistakes, one per row. Left three: Grad-CAM and guided Grad-CAM for the predicted (wrong) class; "
                  "right three: for the true class. Each Grad-CAM tile names the class it explains and its "
                  "probability.");

    lesson.step("Photos: Grad-CAM and guided Grad-CAM on the cat and the coffee cup, at two depths");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    // A mid-depth map (38x38, small receptive fields) and a deep one (19x19, the last before
    // the detector's coarse heads); both are ReLU6 outputs, as Grad-CAM wants rectified maps.
    const std::vector<std::string> depths = {"expanded_conv_6/expand/relu6", "expanded_conv_13/expand/relu6"};
    std::vector<io::Image> photo_tiles;
    for (const auto& [file, label] : std::vector<std::pair<std::string, std::string>>{{lesson.image_path(), lesson.photo().target_name},
                                                                                      {"assets/coffee.png", "Coffee cup"}}) {
      const Tensor x = preprocess::image_to_input(io::load_image(file), spec);
      const int64_t target = photo_model.class_index(label);
      const float p = photo_model.probabilities(explain::scores(photo_model, x)).data()[target];
      const io::Image photo = preprocess::input_to_image(x, spec);
      photo_tiles.push_back(viz::titled(photo, fmt::format("{}: p({}) = {:.2f}", std::filesystem::path(file).filename().string(), label, p)));
      for (const std::string& layer : depths) {
        const Tensor cam = explain::grad_cam(photo_model, x, {target}, layer);  // [1, h, w]
        const Tensor up = upsample(cam, spec.height, spec.width, Interpolation::Bilinear);
        const io::Image heat = viz::colorize(viz::normalize(up, viz::Normalize::MinMax), viz::Colormap::Viridis);
        const std::string short_layer = layer.substr(0, layer.find('/'));
        lesson.say("{} {}: Grad-CAM at {} ({}x{}), largest value {:.3g}", std::filesystem::path(file).filename().string(), label, short_layer, cam.dim(1),
                   cam.dim(2), tg::max(cam).item());
        photo_tiles.push_back(viz::titled(viz::overlay(photo, heat, 0.55f),
                                          fmt::format("Grad-CAM {}, {}x{}", short_layer, cam.dim(1), cam.dim(2))));
      }
      const Tensor guided = explain::guided_grad_cam(photo_model, x, {target}, depths[1]);
      photo_tiles.push_back(viz::titled(viz::picture(guided, viz::Normalize::MaxAbs, viz::Colormap::Gray),
                                        "guided Grad-CAM (deep), max |.|"));
    }
    lesson.figure("photos.png",
                  viz::stack({viz::grid(photo_tiles, 4, 6),
                              viz::color_bar(viz::Colormap::Viridis, 300, "0", "Grad-CAM (per map)", "max")}),
                  "Grad-CAM for Cat on chelsea.png and for Coffee cup on coffee.png through the photo model, at a "
                  "mid-depth map (expanded_conv_6, 38x38) and a deep one (expanded_conv_13, 19x19), each upsampled "
                  "over the photo (yellow = that map's largest value); right: guided Grad-CAM at the deep map, "
                  "max |.| over R, G, B. On the cat the mid-depth map peaks at the eyes and the deep one spreads over "
                  "the face. On the coffee cup the mid-depth map follows the rim and the spoon, but the deep map's "
                  "largest values sit in the top-left corner, off the cup, and guided Grad-CAM is dark on the cup: "
                  "the detector scores the cup with one box of its coarse 3x3 head, and Grad-CAM's channel weights "
                  "(spatial means of the gradient) can point away from the object.",
                  "Mopuri 10.1: Grad-CAM and guided Grad-CAM on the cat and the coffee cup at two depths");
  });
}
