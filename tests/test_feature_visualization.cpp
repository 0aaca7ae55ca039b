// Feature visualization of one detection: the SSD anchor layout, the one-detection
// objective and the recipe's climb.
#include "tests/helpers.h"
#include "tinygrad-cpp/explain/feature_visualization.h"
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
  TEST_CASE("the SSD-MobileNetV2-300 anchors: 1,917 in six heads, indexed by cell and anchor") {
    const auto& heads = ssd_mobilenet_v2_heads();
    REQUIRE(heads.size() == 6);
    const int64_t firsts[] = {0, 1083, 1683, 1833, 1887, 1911};
    for (size_t i = 0; i < heads.size(); ++i) CHECK(heads[i].first == firsts[i]);
    CHECK(ssd_anchor_count() == 1917);
    CHECK(ssd_anchor(0, 0, 0, 0) == 0);
    CHECK(ssd_anchor(0, 18, 18, 2) == 1082);
    CHECK(ssd_anchor(2, 2, 2, 0) == 1683 + 12 * 6);  // the 5x5 head's centre cell
    CHECK(ssd_anchor(5, 0, 0, 5) == 1916);
    CHECK_THROWS_WITH(ssd_anchor(2, 5, 0, 0), doctest::Contains("head 2 has 5x5 cells of 6 anchors, got row 5"));
    CHECK_THROWS_WITH(ssd_anchor(6, 0, 0, 0), doctest::Contains("head 6 out of range 0..5"));
  }

  TEST_CASE("a square anchor's box: the cell's centre, side = the head's scale") {
    const PixelBox centre = ssd_square_anchor_box(2, 2, 2, 300);  // scale 0.5 of 300 pixels
    CHECK(centre.x0 == 75);
    CHECK(centre.y0 == 75);
    CHECK(centre.x1 == 225);
    CHECK(centre.y1 == 225);
    const PixelBox corner = ssd_square_anchor_box(0, 0, 0, 190);  // 0.1 of 190 = 19, centred at 5: clipped at 0
    CHECK(corner.x0 == 0);
    CHECK(corner.x1 == 15);
    const PixelBox whole = ssd_square_anchor_box(5, 0, 0, 300);  // 0.95: 7.5 pixels from each side
    CHECK(whole.x0 >= 7);
    CHECK(whole.x0 <= 8);
    CHECK(whole.x1 == 300 - whole.x0);
  }

  TEST_CASE("one detection's objective is the sum of its anchors' logits, and its gradient reaches only them") {
    NEEDS_TASKS("tape-reverse-walk");
    auto model = tiny_detector();
    const Tensor x = Tensor::from_vector({0.5f, -1.f, 2.f, 0.25f, 1.f, 2.f, 3.f, 4.f}, {2, 1, 2, 2}).requires_grad_();
    // Image 0: class 2 at anchors 1 and 3; image 1: class 1 at anchor 0.
    const DetectionTargets targets{{2, 1}, {{1, 3}, {0}}};
    Tensor value = detection_logits(*model, targets)(x);
    CHECK(value.item() == doctest::Approx(3.f * (-1.f + 0.25f) + -2.f * 1.f));
    value.backward();
    const std::vector<float> expected = {0, 3, 0, 3, -2, 0, 0, 0};
    for (size_t i = 0; i < expected.size(); ++i) CHECK(x.grad().data()[i] == doctest::Approx(expected[i]));
    const auto values = detection_logit_values(*model, x.detach(), targets);
    REQUIRE(values.size() == 2);
    CHECK(values[0] == std::vector<float>{-3.f, 0.75f});
    CHECK(values[1] == std::vector<float>{-2.f});
  }

  TEST_CASE("an empty anchor list is the class's best anchor anywhere") {
    NEEDS_TASKS("tape-reverse-walk");
    auto model = tiny_detector();
    const Tensor x = Tensor::from_vector({0.5f, -1.f, 2.f, 0.25f}, {1, 1, 2, 2}).requires_grad_();
    Tensor value = detection_logits(*model, {{0}, {{}}})(x);
    CHECK(value.item() == doctest::Approx(2.f));  // pixel 2 wins
    value.backward();
    const std::vector<float> expected = {0, 0, 1, 0};
    for (size_t i = 0; i < expected.size(); ++i) CHECK(x.grad().data()[i] == doctest::Approx(expected[i]));
    CHECK(detection_logit_values(*model, x.detach(), {{0}, {{}}})[0] == std::vector<float>{2.f});
  }

  TEST_CASE("bad targets and a classifier give one line naming what is wrong") {
    auto model = tiny_detector();
    const Tensor x = Tensor::zeros({1, 1, 2, 2});
    CHECK_THROWS_WITH(detection_logits(*model, {{0}, {{4}}})(x),
                      doctest::Contains("detection_logits: image 0: anchor 4 out of range 0..3"));
    CHECK_THROWS_WITH(detection_logits(*model, {{3}, {{0}}})(x),
                      doctest::Contains("detection_logits: image 0: class 3 out of range 0..2"));
    CHECK_THROWS_WITH(detection_logits(*model, {{0, 1}, {{0}, {0}}})(x),
                      doctest::Contains("2 classes and 2 anchor lists for a batch of 1"));
    nn::Sequential classifier;
    classifier.add("flatten", std::make_shared<nn::Flatten>());
    CHECK_THROWS_WITH(detection_logit_values(classifier, x, {{0}, {{0}}}),
                      doctest::Contains("no per-anchor logits"));
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
}
