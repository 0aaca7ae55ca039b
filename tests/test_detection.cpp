// The SSD's detections: anchors, the box coder, non-maximum suppression, the heads read
// from the graph, and the boxes on the shipped photos (measured by eye on the PNGs).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "tests/helpers.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;
using models::Box;

namespace {
const char* kPhotoModel = "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";

void check_anchor(const models::Anchor& a, float y, float x, float h, float w) {
  CHECK(a.y == doctest::Approx(y).epsilon(1e-5));
  CHECK(a.x == doctest::Approx(x).epsilon(1e-5));
  CHECK(a.h == doctest::Approx(h).epsilon(1e-5));
  CHECK(a.w == doctest::Approx(w).epsilon(1e-5));
}

void check_box(const Box& b, float x0, float y0, float x1, float y1) {
  CHECK(b.x0 == doctest::Approx(x0).epsilon(1e-5));
  CHECK(b.y0 == doctest::Approx(y0).epsilon(1e-5));
  CHECK(b.x1 == doctest::Approx(x1).epsilon(1e-5));
  CHECK(b.y1 == doctest::Approx(y1).epsilon(1e-5));
}

std::shared_ptr<models::Graph> photo_model() {
  REQUIRE_MESSAGE(io::file_exists(kPhotoModel), "run make setup: it fetches the photo model");
  auto model = std::dynamic_pointer_cast<models::Graph>(models::load_model(kPhotoModel));
  REQUIRE(model);
  return model;
}

std::vector<models::Detection> detect_in(models::Graph& model, const std::string& path, models::DetectOptions options = {}) {
  const io::Image photo = io::load_image(path);
  return models::detect(model, preprocess::image_to_input(photo, model.info().input), photo.width, photo.height, options);
}
}  // namespace

TEST_SUITE("detection") {
  TEST_CASE("SSD-MobileNetV2-300's anchors: 19x19x3 + 6 x (10x10 + 5x5 + 3x3 + 2x2 + 1x1) = 1917") {
    const std::vector<models::AnchorGrid> grids = models::anchor_grids();
    REQUIRE(grids.size() == 6);
    const int64_t sides[6] = {19, 10, 5, 3, 2, 1};
    for (size_t i = 0; i < 6; ++i) {
      CHECK(grids[i].height == sides[i]);
      CHECK(grids[i].width == sides[i]);
      CHECK(grids[i].per_cell == (i == 0 ? 3 : 6));
    }
    const std::vector<models::Anchor> a = models::ssd_anchors();
    REQUIRE(a.size() == 1917);
    // The lowest layer: scale 0.1 at ratio 1, then min_scale 0.2 at ratios 2 and 0.5 (h = s / sqrt(r), w = s * sqrt(r)).
    check_anchor(a[0], 0.5f / 19, 0.5f / 19, 0.1f, 0.1f);
    check_anchor(a[1], 0.5f / 19, 0.5f / 19, 0.2f / std::sqrt(2.f), 0.2f * std::sqrt(2.f));
    check_anchor(a[2], 0.5f / 19, 0.5f / 19, 0.2f * std::sqrt(2.f), 0.2f / std::sqrt(2.f));
    check_anchor(a[3], 0.5f / 19, 1.5f / 19, 0.1f, 0.1f);  // the next cell to the right
    check_anchor(a[1082], 18.5f / 19, 18.5f / 19, 0.2f * std::sqrt(2.f), 0.2f / std::sqrt(2.f));
    // 10x10: scale 0.35 at ratios 1 2 0.5 3 0.3333, then sqrt(0.35 * 0.5) at ratio 1.
    check_anchor(a[1083], 0.05f, 0.05f, 0.35f, 0.35f);
    check_anchor(a[1086], 0.05f, 0.05f, 0.35f / std::sqrt(3.f), 0.35f * std::sqrt(3.f));
    check_anchor(a[1087], 0.05f, 0.05f, 0.35f / std::sqrt(0.3333f), 0.35f * std::sqrt(0.3333f));
    check_anchor(a[1088], 0.05f, 0.05f, std::sqrt(0.35f * 0.5f), std::sqrt(0.35f * 0.5f));
    // 1x1: scale 0.95 centred, the last one sqrt(0.95 * 1).
    check_anchor(a[1911], 0.5f, 0.5f, 0.95f, 0.95f);
    check_anchor(a[1916], 0.5f, 0.5f, std::sqrt(0.95f), std::sqrt(0.95f));
  }

  TEST_CASE("the box coder: y, x move by t / 10 of the anchor's size, h, w scale by exp(t / 5)") {
    const models::Anchor anchor{.y = 0.5f, .x = 0.5f, .h = 0.2f, .w = 0.4f};
    const float zero[4] = {0, 0, 0, 0};
    check_box(models::decode_box(zero, anchor), 0.3f, 0.4f, 0.7f, 0.6f);  // the anchor itself
    // ty 1: y + 0.1 * 0.2; tx -2: x - 0.2 * 0.4; th 5 ln 2: h doubles; tw 0
    const float t[4] = {1.f, -2.f, 5.f * std::log(2.f), 0.f};
    check_box(models::decode_box(t, anchor), 0.42f - 0.2f, 0.52f - 0.2f, 0.42f + 0.2f, 0.52f + 0.2f);
  }

  TEST_CASE("IoU and greedy non-maximum suppression on hand-made boxes") {
    CHECK(models::iou({0, 0, 2, 2}, {1, 1, 3, 3}) == doctest::Approx(1.0 / 7));
    CHECK(models::iou({0, 0, 2, 2}, {0, 0, 2, 2}) == doctest::Approx(1.0));
    CHECK(models::iou({0, 0, 1, 1}, {2, 2, 3, 3}) == 0.f);
    CHECK(models::iou({0, 0, 0, 0}, {0, 0, 0, 0}) == 0.f);  // empty boxes: no overlap, no division by zero
    const std::vector<Box> boxes = {{0, 0, 10, 10}, {1, 1, 11, 11}, {20, 20, 30, 30}, {5, 0, 15, 10}};
    const std::vector<float> scores = {0.9f, 0.8f, 0.85f, 0.7f};
    // B overlaps A by 81/119 = 0.68: dropped. D overlaps A by 50/150 = 0.33: kept at 0.5, dropped at 0.3.
    CHECK(models::non_max_suppression(boxes, scores, 0.5f, 100) == std::vector<size_t>{0, 2, 3});
    CHECK(models::non_max_suppression(boxes, scores, 0.3f, 100) == std::vector<size_t>{0, 2});
    CHECK(models::non_max_suppression(boxes, scores, 0.5f, 2) == std::vector<size_t>{0, 2});
    CHECK(models::non_max_suppression(boxes, scores, 1.f, 100) == std::vector<size_t>{0, 2, 1, 3});  // nothing suppressed
    CHECK(test::error_message([&] { models::non_max_suppression(boxes, {0.5f}, 0.5f, 10); }) ==
          "non_max_suppression: 4 boxes but 1 scores");
  }

  TEST_CASE("draw_box outlines the box and writes its label on a tab above it") {
    io::Image image{40, 40, 1, std::vector<uint8_t>(1600, 0)};
    viz::draw_box(image, 10, 20, 30, 35, {.r = 200, .g = 10, .b = 20}, "", 2);
    CHECK(image.channels == 3);  // gray became RGB
    CHECK(image.at(20, 15, 0) == 200);
    CHECK(image.at(34, 15, 1) == 10);
    CHECK(image.at(25, 10, 2) == 20);
    CHECK(image.at(25, 20, 0) == 0);  // inside the box: untouched
    viz::draw_box(image, 10, 20, 30, 35, {.r = 200, .g = 10, .b = 20}, "A\x1b", 2, 12);
    int tab = 0;
    for (int y = 0; y < 20; ++y)
      for (int x = 10; x < 40; ++x) tab += image.at(y, x, 0) >= 200;
    CHECK(tab > 40);  // the tab's color and its white letters above the box
  }
}

TEST_SUITE("detection-photo") {
  TEST_CASE("the photo model's heads, read from its graph: grid, boxes a cell, and the layer each reads") {
    auto model = photo_model();
    {
      NoGrad no_grad;
      model->forward(Tensor::zeros({1, 3, 300, 300}));
    }
    CHECK(model->box_encodings().shape() == Shape{1, 1917, 4});
    const std::vector<models::Head> heads = models::detection_heads(*model);
    REQUIRE(heads.size() == 6);
    const char* grids[6] = {"19x19", "10x10", "5x5", "3x3", "2x2", "1x1"};
    const int64_t first[6] = {0, 1083, 1683, 1833, 1887, 1911};
    const char* layers[6] = {"expanded_conv_13/expand/relu6", "Conv_1/relu6", "layer_19_2_Conv2d_2_3x3_s2_512/relu6",
                             "layer_19_2_Conv2d_3_3x3_s2_256/relu6", "layer_19_2_Conv2d_4_3x3_s2_256/relu6",
                             "layer_19_2_Conv2d_5_3x3_s2_128/relu6"};
    for (size_t i = 0; i < 6; ++i) {
      CHECK(heads[i].grid == grids[i]);
      CHECK(heads[i].first_anchor == first[i]);
      CHECK(heads[i].layer == std::string("FeatureExtractor/MobilenetV2/") + layers[i]);
      CHECK(heads[i].predictor == fmt::format("BoxPredictor_{}/BoxEncodingPredictor", i));
    }
  }

  TEST_CASE("the Cat on chelsea.png: the 1x1 head's box, most of the frame") {
    auto model = photo_model();
    const std::vector<models::Detection> found = detect_in(*model, "assets/chelsea.png");
    REQUIRE(found.size() == 1);  // the only detection with p >= 0.5
    const models::Detection& cat = found[0];
    CHECK(cat.label == "Cat");
    CHECK(cat.score == doctest::Approx(0.855).epsilon(0.01));
    CHECK(cat.score == doctest::Approx(1 / (1 + std::exp(-cat.logit))));
    CHECK(cat.grid == "1x1");
    CHECK(cat.anchor == 1911);
    CHECK(cat.layer == "FeatureExtractor/MobilenetV2/layer_19_2_Conv2d_5_3x3_s2_128/relu6");
    // The photo is 451x300 and the cat fills it: the box is (3, 0, 424, 300) in its pixels.
    CHECK(cat.pixels.x0 < 20);
    CHECK(cat.pixels.y0 < 10);
    CHECK(cat.pixels.x1 > 400);
    CHECK(cat.pixels.y1 > 290);
    CHECK(cat.pixels.area() > 0.85f * 451 * 300);
    CHECK(cat.pixels.x1 == doctest::Approx(cat.box.x1 * 451));
    // The scores of forward() are unchanged: the best anchor's logit per class.
    const Tensor logits = model->anchor_logits();
    CHECK(logits.data()[cat.anchor * 24 + 8] == cat.logit);
    // best_detection: the same Cat; and a class that is not there (Dog) still gets its best
    // anchor, as a detection below the threshold, with that anchor's box and score.
    const models::Detection best_cat = models::best_detection(*model, 8, 451, 300);
    CHECK(best_cat.anchor == cat.anchor);
    CHECK(best_cat.pixels.x1 == cat.pixels.x1);
    const int64_t dog = model->class_index("Dog");
    const models::Detection best_dog = models::best_detection(*model, dog, 451, 300);
    int64_t argmax = 0;
    for (int64_t a = 1; a < 1917; ++a)
      if (logits.data()[a * 24 + dog] > logits.data()[argmax * 24 + dog]) argmax = a;
    CHECK(best_dog.anchor == argmax);
    CHECK(best_dog.class_index == dog);
    CHECK(best_dog.score < 0.5f);
    CHECK(best_dog.score == doctest::Approx(1 / (1 + std::exp(-logits.data()[argmax * 24 + dog]))));
    CHECK_THROWS_WITH_AS(models::best_detection(*model, 24, 451, 300), doctest::Contains("class 24"), tg::Error);
  }

  TEST_CASE("the Coffee cup on coffee.png: the box on the cup, as measured by eye") {
    auto model = photo_model();
    const std::vector<models::Detection> found = detect_in(*model, "assets/coffee.png", {.min_score = 0.2f});
    REQUIRE(found.size() >= 1);
    const models::Detection& cup = found[0];
    CHECK(cup.label == "Coffee cup");
    CHECK(cup.score > 0.5f);
    CHECK(cup.grid == "3x3");
    // On the 600x400 photo the cup (rim, body and handle; not the saucer) spans x 176..412,
    // y 22..300 (read off the PNG). The detection's box is (174, 23, 421, 323).
    const float overlap = models::iou(cup.pixels, {176, 22, 412, 300});
    CHECK(overlap > 0.8f);
    MESSAGE("Coffee cup box IoU with the cup measured by eye: " << overlap);
    // A lower threshold lists the same box as a Mug too: suppression is per class.
    bool mug = false;
    for (const models::Detection& d : found) mug |= d.label == "Mug" && d.anchor == cup.anchor;
    CHECK(mug);
    // Running on from a layer recomputes the boxes as well as the scores.
    const Tensor boxes = model->box_encodings().detach().clone();
    const Tensor input = preprocess::image_to_input(io::load_image("assets/coffee.png"), model->info().input);
    NoGrad no_grad;
    const Tensor h = model->forward_until(input, "Conv_1/relu6");
    model->forward_after(h, "Conv_1/relu6");
    REQUIRE(model->box_encodings().defined());
    const Tensor again = model->box_encodings();
    REQUIRE(again.shape() == boxes.shape());
    float largest = 0;
    for (int64_t i = 0; i < boxes.numel(); ++i) largest = std::max(largest, std::abs(again.data()[i] - boxes.data()[i]));
    CHECK(largest == 0.f);
  }

  TEST_CASE("a classifier has no detections; a detector's detections need a forward pass") {
    auto model = photo_model();
    CHECK(models::is_detector(*model));
    CHECK(test::error_message([&] { models::detections(*model, 10, 10); }) ==
          "detection: run the detector forward first (no class logits or box encodings yet)");
    const auto fashion = models::load_model("assets/fashion_cnn.safetensors");
    CHECK_FALSE(models::is_detector(*fashion));
  }
}
