// Feature visualization of one detection: a cell's anchors, the one-detection objective
// (read through explain/target.h) and the recipe's climb.
#include "tests/helpers.h"
#include "tinygrad-cpp/explain/feature_visualization.h"
#include "tinygrad-cpp/explain/recipes.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/models/graph.h"

using namespace tg;
using namespace tg::explain;

namespace {
// A detector small enough to differentiate by hand: the input [N,1,2,2] has 4 pixels, one
// anchor per pixel, and logit[n, a, c] = pixel a of image n times w[c], w = (1, -2, 3).
std::shared_ptr<models::Graph> tiny_detector() {
  auto graph = std::make_shared<models::Graph>();
  const Tensor w = Tensor::from_vector({1.f, -2.f, 3.f}, {1, 1, 3});
  const int out = graph->add("logits", "test", {0}, [w](const std::vector<Tensor>& in) {
    return mul(reshape(in[0], {in[0].dim(0), 4, 1}), w);
  });
  graph->set_output(out, models::Graph::Head::MaxOverAnchors);
  return graph;
}
}  // namespace

TEST_SUITE("feature visualization") {
  TEST_CASE("a cell's anchors: first_anchor + (row * width + col) * per_cell + k") {
    // The 5x5 head of SSD-MobileNetV2-300: 19x19x3 + 10x10x6 = 1,683 anchors come before it.
    const models::Head head{.grid = "5x5", .height = 5, .width = 5, .per_cell = 6, .first_anchor = 1683, .anchors = 150};
    const std::vector<int64_t> centre = cell_anchors(head, 2, 2);
    REQUIRE(centre.size() == 6);
    for (int64_t k = 0; k < 6; ++k) CHECK(centre[static_cast<size_t>(k)] == 1683 + 12 * 6 + k);
    CHECK(cell_anchors(head, 4, 4).back() == 1683 + 150 - 1);
    // Anchor 0 of that cell is its square box: centre (0.5, 0.5), side 0.2 + 0.75 * 2 / 5 = 0.5.
    const models::Anchor square = models::ssd_anchors()[static_cast<size_t>(centre[0])];
    CHECK(square.x == doctest::Approx(0.5f));
    CHECK(square.y == doctest::Approx(0.5f));
    CHECK(square.w == doctest::Approx(0.5f));
    CHECK(square.h == doctest::Approx(0.5f));
    CHECK_THROWS_WITH(cell_anchors(head, 5, 0), doctest::Contains("cell_anchors: head 5x5 has 5x5 cells, got row 5, col 0"));
  }

  TEST_CASE("one detection's objective is the sum of its anchors' logits, and its gradient reaches only them") {
    NEEDS_TASKS("tape-reverse-walk");
    auto model = tiny_detector();
    const Tensor x = Tensor::from_vector({0.5f, -1.f, 2.f, 0.25f, 1.f, 2.f, 3.f, 4.f}, {2, 1, 2, 2}).requires_grad_();
    // Image 0: class 2 at anchors 1 and 3; image 1: class 1 at anchor 0 (one anchor fewer).
    const DetectionTargets targets{{2, 1}, {{1, 3}, {0}}};
    Tensor value = detection_logits(*model, targets)(x);
    CHECK(value.item() == doctest::Approx(3.f * (-1.f + 0.25f) + -2.f * 1.f));
    value.backward();
    const std::vector<float> expected = {0, 3, 0, 3, -2, 0, 0, 0};
    for (size_t i = 0; i < expected.size(); ++i) CHECK(x.grad().data()[i] == doctest::Approx(expected[i]));
    const auto values = detection_logit_values(*model, x.detach(), targets);
    REQUIRE(values.size() == 2);
    REQUIRE(values[0].size() == 2);
    CHECK(values[0][0].anchor == 1);
    CHECK(values[0][0].logit == doctest::Approx(-3.f));
    CHECK(values[0][1].anchor == 3);
    CHECK(values[0][1].logit == doctest::Approx(0.75f));
    REQUIRE(values[1].size() == 1);
    CHECK(values[1][0].anchor == 0);
    CHECK(values[1][0].logit == doctest::Approx(-2.f));
  }

  TEST_CASE("anchor -1 is the class's best anchor anywhere") {
    NEEDS_TASKS("tape-reverse-walk");
    auto model = tiny_detector();
    const Tensor x = Tensor::from_vector({0.5f, -1.f, 2.f, 0.25f}, {1, 1, 2, 2}).requires_grad_();
    Tensor value = detection_logits(*model, {{0}, {{-1}}})(x);
    CHECK(value.item() == doctest::Approx(2.f));  // pixel 2 wins
    value.backward();
    const std::vector<float> expected = {0, 0, 1, 0};
    for (size_t i = 0; i < expected.size(); ++i) CHECK(x.grad().data()[i] == doctest::Approx(expected[i]));
    const auto values = detection_logit_values(*model, x.detach(), {{0}, {{-1}}});
    CHECK(values[0][0].anchor == 2);
    CHECK(values[0][0].logit == doctest::Approx(2.f));
  }

  TEST_CASE("bad targets and a classifier give one line naming what is wrong") {
    auto model = tiny_detector();
    const Tensor x = Tensor::zeros({1, 1, 2, 2});
    CHECK_THROWS_WITH(detection_logits(*model, {{0}, {{4}}})(x),
                      doctest::Contains("detection_logits: anchor 4 out of range for 4 anchors"));
    CHECK_THROWS_WITH(detection_logits(*model, {{3}, {{0}}})(x),
                      doctest::Contains("detection_logits: target 3 out of range for 3 classes"));
    CHECK_THROWS_WITH(detection_logits(*model, {{0, 1}, {{0}, {0}}})(x),
                      doctest::Contains("2 classes and 2 anchor lists for a batch of 1"));
    CHECK_THROWS_WITH(detection_logits(*model, {{0}, {{}}})(x), doctest::Contains("image 0: no anchor (-1 = the best one)"));
    CHECK_THROWS_WITH(detection_logits(*model, {{0}, {{-2}}})(x),
                      doctest::Contains("image 0: anchor -2 is not an index (>= 0) or -1 (the best)"));
    nn::Sequential classifier;
    classifier.add("flatten", std::make_shared<nn::Flatten>());
    CHECK_THROWS_WITH(detection_logit_values(classifier, x, {{0}, {{0}}}), doctest::Contains("needs a detector"));
  }

  TEST_CASE("visualize climbs the objective, keeps pixels inside [-1, 1] and is seeded") {
    NEEDS_TASKS("tape-reverse-walk");
    // Objective: the mean red minus the mean blue of an 8x8 image; no transforms, so each
    // step sees the image itself.
    const Objective redder = [](const Tensor& image) {
      return sub(mean(slice(image, 1, 0, 1)), mean(slice(image, 1, 2, 3)));
    };
    FeatureVisualizationOptions options;
    options.steps = 30;
    options.transforms = {.degrees = 0.f, .scale = 0.f, .shift = 0.f};
    options.seed = 3;
    std::vector<float> trace;
    options.on_step = [&](int, float value) { trace.push_back(value); };
    const Tensor image = visualize(redder, 2, 8, 8, options);
    REQUIRE(image.shape() == Shape{2, 3, 8, 8});
    REQUIRE(trace.size() == 30);
    CHECK(trace.back() > trace.front() + 0.5f);
    CHECK(redder(image).item() > 0.5f);
    for (int64_t i = 0; i < image.numel(); ++i) {
      CHECK(image.data()[i] >= -1.f);
      CHECK(image.data()[i] <= 1.f);
    }
    const Tensor again = visualize(redder, 2, 8, 8, options);
    for (int64_t i = 0; i < image.numel(); ++i) CHECK(again.data()[i] == image.data()[i]);
    options.steps = -1;
    CHECK_THROWS_WITH(visualize(redder, 2, 8, 8, options), doctest::Contains("visualize: images 2 must be >= 1, steps -1"));
  }

  TEST_CASE("visualize: with image_seeds an image does not depend on its place in the batch") {
    NEEDS_TASKS("tape-reverse-walk");
    // A sum over the batch, so each image's gradient is its own whatever the batch holds.
    const Objective redder = [](const Tensor& image) {
      return sub(sum(slice(image, 1, 0, 1)), sum(slice(image, 1, 2, 3)));
    };
    FeatureVisualizationOptions options;
    options.steps = 5;
    options.initial_sd = 0.5f;  // noise large enough to tell two seeds apart
    options.transforms = {.degrees = 0.f, .scale = 0.f, .shift = 0.f};
    options.image_seeds = {11, 7};
    const Tensor pair = visualize(redder, 2, 8, 8, options);
    options.image_seeds = {7};
    const Tensor alone = visualize(redder, 1, 8, 8, options);
    const int64_t per_image = alone.numel();
    float largest_gap = 0.f, seeds_gap = 0.f;
    for (int64_t i = 0; i < per_image; ++i) {
      largest_gap = std::max(largest_gap, std::abs(pair.data()[per_image + i] - alone.data()[i]));
      seeds_gap = std::max(seeds_gap, std::abs(pair.data()[i] - alone.data()[i]));
    }
    CHECK(largest_gap < 1e-6f);  // seed 7's image, second in a pair or alone
    CHECK(seeds_gap > 0.1f);     // seed 11's image is another one
    options.image_seeds = {1, 2, 3};
    CHECK_THROWS_WITH(visualize(redder, 2, 8, 8, options), doctest::Contains("visualize: 3 image_seeds for 2 images"));
  }

  TEST_CASE("lesson 9's table: Car and Bicycle at the 3x3 head's wide anchor, any other class at the 5x5 head's square one") {
    REQUIRE(class_detections().size() == 5);
    CHECK(class_detections().front().name == "Cat");
    CHECK(class_detection("Car").grid == "3x3");
    CHECK(class_detection("Car").boxes == std::vector<int64_t>{1});
    CHECK(class_detection("Bicycle").boxes == std::vector<int64_t>{1});
    CHECK(class_detection("Dog").grid == "5x5");  // not in the table: the default
    CHECK(class_detection("Dog").boxes == std::vector<int64_t>{0});
    // SSD-MobileNetV2-300's 5x5 and 3x3 heads (19x19x3 + 10x10x6 anchors come first, then 5x5x6).
    const std::vector<models::Head> heads = {
        {.grid = "5x5", .height = 5, .width = 5, .per_cell = 6, .first_anchor = 1683, .anchors = 150},
        {.grid = "3x3", .height = 3, .width = 3, .per_cell = 6, .first_anchor = 1833, .anchors = 54}};
    CHECK(centre_anchors(heads, class_detection("Cat")) == std::vector<int64_t>{1755});
    CHECK(centre_anchors(heads, class_detection("Car")) == std::vector<int64_t>{1858});
    CHECK(centre_anchors(heads, {.name = "Cat", .boxes = {}}).size() == 6);  // all of the cell's
    CHECK(anchor_words({1755}, "5x5", 300, 300) == "the 150x150 px square anchor of the 5x5 head's centre cell");
    CHECK(anchor_words({1858}, "3x3", 300, 300) == "the 276x138 px 2:1 wide anchor of the 3x3 head's centre cell");
    CHECK_THROWS_WITH(centre_anchors(heads, {.name = "Cat", .grid = "4x4"}),
                      doctest::Contains("the detector has no '4x4' head (its heads: 5x5, 3x3)"));
    CHECK_THROWS_WITH(centre_anchors(heads, {.name = "Cat", .boxes = {6}}), doctest::Contains("has 6 anchors a cell, got anchor 6"));
  }

  TEST_CASE("the recipes: lesson 9's transforms for a class, lesson 10's starts for an inversion") {
    const FeatureVisualizationOptions cls = photo_class_recipe(256);
    CHECK(cls.steps == 256);
    CHECK(cls.gain == 60.f);
    CHECK(cls.decay == 1.25f);
    CHECK(cls.transforms.degrees == 20.f);
    CHECK(cls.transforms.scale == 0.3f);
    CHECK(cls.transforms.shift == 16.f);
    const FeatureVisualizationOptions inversion = photo_inversion_recipe(128, 0);
    CHECK(inversion.seed == 10);
    CHECK(inversion.initial_sd == 0.05f);
    CHECK(inversion.transforms.degrees == RandomTransforms{}.degrees);
  }
}
