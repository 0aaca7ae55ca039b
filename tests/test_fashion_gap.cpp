// FashionGAP, the global-average-pooling network lesson 11 trains for CAM: its shape, the
// identity CAM = Grad-CAM that makes it worth having, and its training from FashionCNN's
// convolutions.
#include <algorithm>
#include <cmath>

#include "tests/helpers.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/models/fashion_gap.h"
#include "tinygrad-cpp/models/train.h"

using namespace tg;

namespace {
#define TRAINING_TASKS "tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward"

// Two classes a GAP head can only tell apart by what the convolutions find: horizontal
// stripes (label 0) and vertical stripes (label 1), at a random phase, with a little noise.
data::Dataset stripes(int64_t count, uint64_t seed) {
  Generator gen(seed);
  data::Dataset d;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t label = i % 2, phase = static_cast<int64_t>(gen.uniform() * 4);
    for (int64_t y = 0; y < 28; ++y)
      for (int64_t x = 0; x < 28; ++x) {
        const int64_t along = label == 0 ? y : x;
        const float value = ((along + phase) / 2) % 2 == 0 ? 220.f : 30.f;
        d.pixels.push_back(static_cast<uint8_t>(std::clamp(value + 20.f * (gen.uniform() - 0.5f), 0.f, 255.f)));
      }
    d.labels.push_back(label);
  }
  return d;
}
}  // namespace

TEST_SUITE("models-fashion-gap") {
  TEST_CASE("FashionGAP: 64 maps of 14x14 at relu3, averaged, then 10 scores") {
    NEEDS_TASKS("relu");
    Generator gen(1);
    auto model = models::make_fashion_gap_cnn(gen);
    NoGrad no_grad;
    const Tensor scores = model->forward(test::random_normal({2, 1, 28, 28}, 2, false));
    CHECK(scores.shape() == Shape{2, 10});
    CHECK(model->activation("relu3").shape() == Shape{2, 64, 14, 14});
    CHECK(model->activation("gap").shape() == Shape{2, 64, 1, 1});
    CHECK(model->info().cam_layer == "relu3");
    CHECK(model->info().classes.size() == 10);
    CHECK(model->parameter("fc.weight").shape() == Shape{10, 64});
  }

  TEST_CASE("CAM equals Grad-CAM at the layer before global average pooling: Grad-CAM = ReLU(CAM) / (h*w)") {
    NEEDS_TASKS("relu", "linear-backward", "tape-reverse-walk", "gradcam");
    Generator gen(3);
    auto model = models::make_fashion_gap_cnn(gen);
    const Tensor x = test::random_normal({1, 1, 28, 28}, 4, false);
    double largest = 0;
    int64_t positive = 0;
    for (int64_t c = 0; c < 10; ++c) {
      const Tensor cam = explain::cam(*model, x, {c}, "relu3", "fc");
      const Tensor grad_cam = explain::grad_cam(*model, x, {c}, "relu3");
      REQUIRE(cam.shape() == Shape{1, 14, 14});
      REQUIRE(grad_cam.shape() == Shape{1, 14, 14});
      for (int64_t i = 0; i < cam.numel(); ++i) {
        const float expected = std::max(0.f, cam.data()[i]) / 196.f;
        CHECK(grad_cam.data()[i] == doctest::Approx(expected).epsilon(1e-4).scale(1e-3));
        largest = std::max(largest, static_cast<double>(expected));
        positive += expected > 0;
      }
    }
    CHECK(largest > 1e-4);   // the maps are not all zero, so the check says something
    CHECK(positive > 100);
  }

  TEST_CASE("training starts from FashionCNN's conv1 and conv2 and learns a task only the convolutions can see") {
    NEEDS_TASKS(TRAINING_TASKS);
    Generator gen(5);
    auto fashion_cnn = models::make_fashion_cnn(gen);
    const data::Dataset train = stripes(128, 6);
    // A step this small leaves the copied weights as they were: they came from fashion_cnn.
    const auto copied = models::train_fashion_gap_cnn(*fashion_cnn, train, {.steps = 1, .lr = 1e-9f});
    for (const char* name : {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"}) {
      const Tensor a = copied->parameter(name), b = fashion_cnn->parameter(name);
      REQUIRE(a.shape() == b.shape());
      float moved = 0;  // Adam moves each weight by about lr on its first step
      for (int64_t i = 0; i < a.numel(); ++i) moved = std::max(moved, std::fabs(a.data()[i] - b.data()[i]));
      CHECK(moved < 1e-7f);
    }
    int64_t steps_seen = 0;
    double first_loss = 0, last_loss = 0;
    const auto trained = models::train_fashion_gap_cnn(*fashion_cnn, train, {.steps = 60, .batch = 32, .lr = 5e-3f},
                                                       [&](int64_t step, double loss) {
                                                         ++steps_seen;
                                                         if (step == 1) first_loss = loss;
                                                         last_loss = loss;
                                                       });
    CHECK(steps_seen == 60);
    CHECK(last_loss < first_loss);
    CHECK(!trained->is_training());
    const data::Dataset test = stripes(64, 7);
    CHECK(train::evaluate(*trained, test).accuracy() >= 0.9);
  }

  TEST_CASE("bad training options are one error naming the function") {
    Generator gen(8);
    auto fashion_cnn = models::make_fashion_cnn(gen);
    const data::Dataset train = stripes(4, 9);
    CHECK_THROWS_WITH_AS(models::train_fashion_gap_cnn(*fashion_cnn, train, {.steps = 0}),
                         doctest::Contains("train_fashion_gap_cnn: steps 0"), Error);
    CHECK_THROWS_WITH_AS(models::train_fashion_gap_cnn(*fashion_cnn, train, {.lr = 0.f}),
                         doctest::Contains("lr 0 greater than 0"), Error);
    CHECK_THROWS_WITH_AS(models::train_fashion_gap_cnn(*fashion_cnn, data::Dataset{}, {}),
                         doctest::Contains("the training set is empty"), Error);
  }
}
