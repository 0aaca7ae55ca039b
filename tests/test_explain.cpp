// Attribution methods checked by the invariants that define them.
#include "tests/helpers.h"
#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/explain/explain.h"

using namespace tg;
using namespace tg::explain;

namespace {
// A small CNN with every op kind the methods care about: conv, relu, pool, linear.
std::shared_ptr<nn::Sequential> small_cnn(uint64_t seed, bool with_relu = true) {
  Generator gen(seed);
  auto model = std::make_shared<nn::Sequential>();
  model->add("conv1", std::make_shared<nn::Conv2d>(2, 4, 3, gen, 1, 1));
  if (with_relu) model->add("relu1", std::make_shared<nn::ReLU>());
  model->add("pool1", std::make_shared<nn::MaxPool2d>(2))
      .add("flatten", std::make_shared<nn::Flatten>())
      .add("fc1", std::make_shared<nn::Linear>(4 * 4 * 3, 6, gen));
  if (with_relu) model->add("relu2", std::make_shared<nn::ReLU>());
  model->add("fc2", std::make_shared<nn::Linear>(6, 3, gen));
  return model;
}

// Layers made only of ops that are not assignment tasks (avg-pool, matmul, add, tanh), so
// the saliency task's tests need nothing but the tape's reverse walk.
struct Dense : nn::Module {
  Tensor weight, bias;
  Dense(int64_t in, int64_t out, uint64_t seed) {
    weight = test::random_normal({in, out}, seed);
    bias = test::random_normal({out}, seed + 1);
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  }
  Tensor forward(const Tensor& x) override { return add(matmul(x, weight), bias); }
  std::string describe() const override { return "Dense"; }
};
struct Tanh : nn::Module {
  Tensor forward(const Tensor& x) override { return tg::tanh(x); }
  std::string describe() const override { return "Tanh"; }
};
std::shared_ptr<nn::Sequential> task_free_model(uint64_t seed) {
  auto model = std::make_shared<nn::Sequential>();
  model->add("pool", std::make_shared<nn::AvgPool2d>(2))
      .add("flatten", std::make_shared<nn::Flatten>())
      .add("dense1", std::make_shared<Dense>(2 * 4 * 3, 6, seed))
      .add("tanh", std::make_shared<Tanh>())
      .add("dense2", std::make_shared<Dense>(6, 3, seed + 2));
  return model;
}

// The tasks a small_cnn's backward pass runs.
#define CNN_TASKS "tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward"

float score(nn::Sequential& model, const Tensor& x, int64_t n, int64_t c) {
  return explain::scores(model, x).at({n, c});
}
}  // namespace

// The saliency task: its only prerequisite is the tape's reverse walk.
void check_saliency_against_finite_differences(nn::Sequential& model) {
  const Tensor x = test::random_normal({2, 2, 8, 6}, 2, false);
  const Targets targets = {2, 0};
  const Tensor s = saliency(model, x, targets);
  REQUIRE(s.shape() == x.shape());
  const float eps = 1e-2f;
  int checked = 0;
  for (int64_t i = 0; i < x.numel(); i += 7) {
    const int64_t n = i / (x.numel() / 2);
    Tensor plus = x.clone(), minus = x.clone();
    plus.data()[i] += eps;
    minus.data()[i] -= eps;
    const float expected = (score(model, plus, n, targets[n]) - score(model, minus, n, targets[n])) / (2 * eps);
    CAPTURE(i);
    CHECK(s.data()[i] == doctest::Approx(expected).epsilon(0.03).scale(0.05));
    ++checked;
  }
  CHECK(checked > 10);
  // The parameters are left as they were: still trainable, no gradient written into them.
  for (const Tensor& p : model.parameters()) {
    CHECK(p.requires_grad());
    CHECK_FALSE(p.grad().defined());
  }
}

TASK_PROBE("saliency") {
  nn::Sequential model;
  model.add("flatten", std::make_shared<nn::Flatten>());
  saliency(model, Tensor::ones({1, 1, 1, 2}), {0});
}

TEST_SUITE("saliency") {
  TEST_CASE("saliency equals a finite-difference gradient of the class score") {
    auto model = task_free_model(1);
    check_saliency_against_finite_differences(*model);
  }
}

// The smoothgrad task's sub-cases: the averaging on its own, with gradients given as
// functions (no tape, no model).
TASK_PROBE("smoothgrad") { smoothgrad_of([](const Tensor& p) { return p; }, Tensor::ones({2}), 1, 0.f, 0); }

TEST_SUITE("smoothgrad") {
  TEST_CASE("with sigma 0 every sample is the input, so the mean is its gradient") {
    const Tensor x = Tensor::from_vector({-1.f, 0.5f, 2.f, 3.f}, {2, 2});
    int calls = 0;
    const Tensor g = smoothgrad_of([&](const Tensor& p) { ++calls; return mul(p, p); }, x, 5, 0.f, 3);
    CHECK(calls == 5);
    CHECK(g.shape() == x.shape());
    CHECK_VALUES(g.to_vector(), {1, 0.25f, 4, 9});
  }

  TEST_CASE("the noise has sigma = fraction of the input's range: the mean of (x + e)^2 is x^2 + sigma^2") {
    const Tensor x = Tensor::from_vector({-1.f, 0.f, 0.5f, 1.f}, {4});  // range 2, so sigma = 0.2 * 2 = 0.4
    const Tensor g = smoothgrad_of([](const Tensor& p) { return mul(p, p); }, x, 4000, 0.2f, 5);
    for (int64_t i = 0; i < x.numel(); ++i) {
      CAPTURE(i);
      CHECK(std::fabs(g.data()[i] - (x.data()[i] * x.data()[i] + 0.16f)) < 0.06f);  // 4000 samples: about 4.5 standard errors
    }
  }

  TEST_CASE("every sample draws new noise for every element, and the average is seeded") {
    const Tensor x = Tensor::from_vector({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {1, 6});
    std::vector<std::vector<float>> points;
    const GradientAt record = [&](const Tensor& p) { points.push_back(p.to_vector()); return p.clone(); };
    const Tensor mean = smoothgrad_of(record, x, 3, 0.1f, 7);
    REQUIRE(points.size() == 3);
    CHECK(points[0] != points[1]);
    CHECK(points[1] != points[2]);
    for (const auto& p : points)
      for (size_t i = 0; i < p.size(); ++i) CHECK(p[i] != x.data()[i]);
    // The identity's gradient is the point itself: the answer is the mean of the points.
    for (size_t i = 0; i < 6; ++i)
      CHECK(mean.data()[i] == doctest::Approx((points[0][i] + points[1][i] + points[2][i]) / 3).epsilon(1e-6));
    points.clear();
    CHECK_VALUES(smoothgrad_of(record, x, 3, 0.1f, 7).to_vector(), mean.to_vector());
    points.clear();
    CHECK(smoothgrad_of(record, x, 3, 0.1f, 8).to_vector() != mean.to_vector());
  }
}

TEST_SUITE("explain") {
  TEST_CASE("saliency through conv, relu, max-pool and linear equals finite differences") {
    NEEDS_TASKS(CNN_TASKS, "saliency");
    auto model = small_cnn(1);
    check_saliency_against_finite_differences(*model);
  }
}

TEST_SUITE("explain") {
  TEST_CASE("target -1 explains the predicted class") {
    NEEDS_TASKS(CNN_TASKS, "saliency");
    auto model = small_cnn(3);
    const Tensor x = test::random_normal({3, 2, 8, 6}, 4, false);
    Targets resolved;
    const Tensor a = class_gradient(*model, x, {-1, -1, -1}, rules::vanilla_relu, &resolved);
    const Tensor logits = scores(*model, x);
    for (int64_t n = 0; n < 3; ++n) {
      const float* row = logits.data() + n * 3;
      CHECK(resolved[n] == std::max_element(row, row + 3) - row);
    }
    CHECK(a.to_vector() == saliency(*model, x, resolved).to_vector());
  }

  TEST_CASE("guided backprop equals the plain gradient on a network without ReLUs") {
    NEEDS_TASKS("tape-reverse-walk", "conv2d-backward", "maxpool-backward", "linear-backward", "relu-rules", "saliency");
    auto model = small_cnn(5, /*with_relu=*/false);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 6, false);
    CHECK(guided_backprop(*model, x, {1, 2}).to_vector() == saliency(*model, x, {1, 2}).to_vector());
    CHECK(deconvnet(*model, x, {1, 2}).to_vector() == saliency(*model, x, {1, 2}).to_vector());
  }

  TEST_CASE("guided and deconvnet gradients at a ReLU's output are never negative") {
    NEEDS_TASKS(CNN_TASKS, "relu-rules", "saliency");
    // Gradient w.r.t. relu1's input (the conv output): the rules clip negative signals there.
    auto model = small_cnn(7);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 8, false);
    for (const bool guided : {true, false}) {
      FreezeParameters frozen(*model);
      Tensor conv_out = model->forward_until(x, "conv1").detach().requires_grad_();
      Tensor h = model->forward_after(conv_out, "conv1");
      Tensor seed = Tensor::zeros(h.shape());
      seed.at({0, 1}) = 1.f;
      seed.at({1, 1}) = 1.f;
      {
        OverrideBackward guard(Op::ReLU, guided ? rules::guided_relu : rules::deconvnet_relu);
        h.backward(seed);
      }
      int positive = 0;
      for (int64_t i = 0; i < conv_out.numel(); ++i) {
        REQUIRE(conv_out.grad().data()[i] >= 0.f);
        positive += conv_out.grad().data()[i] > 0.f;
        if (guided && conv_out.data()[i] <= 0.f) REQUIRE(conv_out.grad().data()[i] == 0.f);
      }
      CHECK(positive > 0);
    }
    // The vanilla gradient there does have negative entries: the rules really changed something.
    CHECK(tg::max(neg(saliency(*model, x, {1, 1}))).item() > 0.f);
  }

  TEST_CASE("SmoothGrad with sigma 0 equals saliency, and noise changes it") {
    NEEDS_TASKS(CNN_TASKS, "saliency", "smoothgrad");
    auto model = small_cnn(9);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 10, false);
    const Tensor plain = saliency(*model, x, {0, 2});
    const Tensor smooth0 = smoothgrad(*model, x, {0, 2}, 4, 0.f, 11);
    for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(smooth0.data()[i] == doctest::Approx(plain.data()[i]));
    const Tensor smooth = smoothgrad(*model, x, {0, 2}, 8, 0.2f, 11);
    CHECK(smooth.to_vector() != plain.to_vector());
    CHECK(smoothgrad(*model, x, {0, 2}, 8, 0.2f, 11).to_vector() == smooth.to_vector());  // seeded
  }

  TEST_CASE("integrated gradients sum to f(x) - f(baseline) within 1%") {
    NEEDS_TASKS(CNN_TASKS, "saliency");
    auto model = small_cnn(12);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 13, false);
    const Tensor baseline = Tensor::zeros(x.shape());
    const Targets targets = {1, 2};
    const Tensor ig = integrated_gradients(*model, x, targets, baseline, 256);
    const Tensor fx = scores(*model, x), fb = scores(*model, baseline);
    const int64_t per_image = x.numel() / 2;
    for (int64_t n = 0; n < 2; ++n) {
      double total = 0;
      for (int64_t i = 0; i < per_image; ++i) total += ig.data()[n * per_image + i];
      const double expected = fx.at({n, targets[n]}) - fb.at({n, targets[n]});
      CAPTURE(n);
      CHECK(std::fabs(total - expected) <= 0.01 * std::fabs(expected));
    }
  }

  TEST_CASE("the gradient of one neuron reaches only its receptive field") {
    NEEDS_TASKS(CNN_TASKS);
    auto model = small_cnn(14);
    const Tensor x = test::random_normal({1, 2, 8, 6}, 15, false);
    const Tensor g = neuron_gradient(*model, x, {"conv1", 3, 4, 2});
    // conv1 is 3x3 with padding 1: the neuron at (4, 2) sees rows 3..5 and columns 1..3.
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < 8; ++i)
        for (int64_t j = 0; j < 6; ++j) {
          const bool inside = i >= 3 && i <= 5 && j >= 1 && j <= 3;
          if (!inside) REQUIRE(g.at({0, c, i, j}) == 0.f);
        }
    CHECK(tg::max(tg::abs(g)).item() > 0.f);
    const Tensor fc = neuron_gradient(*model, x, {"fc1", 4});
    CHECK(fc.shape() == x.shape());
    CHECK(test::contains(test::error_message([&] { neuron_gradient(*model, x, {"conv1", 9, 0, 0}); }),
                         "gradient: neuron (channel 9, y 0, x 0) is outside layer 'conv1' of shape [1,4,8,6]"));
  }

  TEST_CASE("SmoothGrad and integrated gradients of one neuron") {
    NEEDS_TASKS(CNN_TASKS, "smoothgrad");
    auto model = small_cnn(18);
    const Tensor x = test::random_normal({1, 2, 8, 6}, 19, false);
    const Neuron neuron{"fc1", 2};
    const Tensor plain = neuron_gradient(*model, x, neuron);
    const Tensor smooth0 = smoothgrad_neuron(*model, x, neuron, 3, 0.f, 1);
    for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(smooth0.data()[i] == doctest::Approx(plain.data()[i]));
    // Completeness for a neuron: attributions sum to a(x) - a(baseline).
    const Tensor baseline = Tensor::zeros(x.shape());
    const Tensor ig = integrated_gradients_neuron(*model, x, neuron, baseline, 256);
    auto value = [&](const Tensor& point) {
      NoGrad no_grad;
      return model->forward_until(point, "fc1").at({0, 2});
    };
    double total = 0;
    for (int64_t i = 0; i < ig.numel(); ++i) total += ig.data()[i];
    const double expected = value(x) - value(baseline);
    CHECK(std::fabs(total - expected) <= 0.01 * std::fabs(expected) + 1e-6);
  }

  TEST_CASE("input x gradient is the elementwise product") {
    NEEDS_TASKS(CNN_TASKS, "saliency");
    auto model = small_cnn(16);
    const Tensor x = test::random_normal({1, 2, 8, 6}, 17, false);
    const Tensor g = saliency(*model, x, {0}), ixg = input_x_gradient(*model, x, {0});
    for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(ixg.data()[i] == doctest::Approx(x.data()[i] * g.data()[i]));
  }
}

namespace {
// conv -> relu -> global average pool -> linear: the architecture CAM was defined for.
std::shared_ptr<nn::Sequential> gap_cnn(uint64_t seed) {
  Generator gen(seed);
  auto model = std::make_shared<nn::Sequential>();
  model->add("conv", std::make_shared<nn::Conv2d>(1, 5, 3, gen, 1, 1))
      .add("relu", std::make_shared<nn::ReLU>())
      .add("gap", std::make_shared<nn::AdaptiveAvgPool2d>(1))
      .add("flatten", std::make_shared<nn::Flatten>())
      .add("fc", std::make_shared<nn::Linear>(5, 4, gen));
  return model;
}
}  // namespace

TASK_PROBE("gradcam") { grad_cam_map(Tensor::ones({1, 1, 2, 2}), Tensor::ones({1, 1, 2, 2})); }

TEST_SUITE("gradcam") {
  // The Grad-CAM formula on given activations and gradients: no model, no backward pass.
  TEST_CASE("grad_cam_map weights each channel by its mean gradient, sums, and clips at 0") {
    // Two images, two channels of 2x3. Image 0: alpha = (mean 1, mean -0.5).
    const Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6,    2, 2, 2, 0, 0, 0,
                                          -1, 0, 1, 2, 3, -4,  1, 1, 1, 1, 1, 1},
                                         {2, 2, 2, 3});
    const Tensor g = Tensor::from_vector({1, 1, 1, 1, 1, 1,    -3, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 6,    2, 2, 2, 2, 2, 2},
                                         {2, 2, 2, 3});
    const Tensor map = grad_cam_map(a, g);
    REQUIRE(map.shape() == Shape{2, 2, 3});
    // Image 0: 1*A0 - 0.5*A1 = [0, 1, 2, 4, 5, 6]. Image 1: 1*A0 + 2*A1 = [1, 2, 3, 4, 5, -2] -> ReLU.
    const std::vector<float> expected = {0, 1, 2, 4, 5, 6, 1, 2, 3, 4, 5, 0};
    const std::vector<float> got = map.to_vector();
    for (size_t i = 0; i < expected.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i] == doctest::Approx(expected[i]));
    }
  }

  TEST_CASE("grad_cam_map on random inputs equals the formula, element by element") {
    const Tensor a = test::random_normal({3, 4, 5, 7}, 31, false), g = test::random_normal({3, 4, 5, 7}, 32, false);
    const Tensor map = grad_cam_map(a, g);
    REQUIRE(map.shape() == Shape{3, 5, 7});
    int zeros = 0;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 7; ++j) {
          double total = 0;
          for (int64_t k = 0; k < 4; ++k) {
            double alpha = 0;
            for (int64_t y = 0; y < 5; ++y)
              for (int64_t x = 0; x < 7; ++x) alpha += g.at({n, k, y, x});
            total += alpha / 35.0 * a.at({n, k, i, j});
          }
          CAPTURE(n);
          CAPTURE(i);
          CAPTURE(j);
          REQUIRE(map.at({n, i, j}) == doctest::Approx(std::max(0.0, total)).epsilon(1e-4).scale(1e-4));
          zeros += total <= 0;
        }
    CHECK(zeros > 0);        // the ReLU had work to do
    CHECK(zeros < 3 * 5 * 7);
  }
}

TEST_SUITE("explain") {
  TEST_CASE("Grad-CAM equals ReLU(CAM) / (h*w) on a global-average-pool + linear head") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "linear-backward", "gradcam");
    auto model = gap_cnn(21);
    const Tensor x = test::random_normal({2, 1, 7, 9}, 22, false);
    const Tensor g = grad_cam(*model, x, {1, 3}, "relu");
    const Tensor c = cam(*model, x, {1, 3}, "relu", "fc");
    REQUIRE(g.shape() == Shape{2, 7, 9});
    REQUIRE(c.shape() == Shape{2, 7, 9});
    int positive = 0;
    for (int64_t i = 0; i < g.numel(); ++i) {
      REQUIRE(g.data()[i] == doctest::Approx(std::max(0.f, c.data()[i]) / 63.f).epsilon(1e-4).scale(1e-3));
      positive += g.data()[i] > 0;
    }
    CHECK(positive > 0);
  }

  TEST_CASE("guided Grad-CAM has the input's shape and is zero where Grad-CAM is") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules", "conv2d-backward", "linear-backward", "gradcam", "saliency");
    auto model = gap_cnn(23);
    const Tensor x = test::random_normal({1, 1, 7, 9}, 24, false);
    const Tensor ggc = guided_grad_cam(*model, x, {2}, "relu");
    CHECK(ggc.shape() == x.shape());
    const Tensor g = grad_cam(*model, x, {2}, "relu");
    if (tg::max(g).item() == 0.f) CHECK(tg::max(tg::abs(ggc)).item() == 0.f);
    CHECK(test::contains(test::error_message([&] { grad_cam(*model, x, {2}, "fc"); }), "a CAM needs a [N,K,h,w] feature map"));
  }
}

// The occlusion task's sub-cases. The model is task-free (occlusion runs forward passes only).
TASK_PROBE("occlusion") {
  nn::Sequential model;
  model.add("flatten", std::make_shared<nn::Flatten>());
  occlusion(model, Tensor::ones({1, 1, 1, 2}), {0}, 1, 1, 0.f);
}

TEST_SUITE("occlusion") {
  TEST_CASE("occlusion on scores: one window over the whole image gives the drop in the logit everywhere") {
    auto model = task_free_model(32);
    const Tensor x = test::random_normal({1, 2, 8, 6}, 33, false);
    const Tensor map = occlusion(*model, x, {1}, 8, 8, 0.f, OcclusionMeasure::Score);
    const float expected = scores(*model, x).at({0, 1}) - scores(*model, Tensor::zeros({1, 2, 8, 6})).at({0, 1});
    REQUIRE(map.shape() == Shape{1, 1, 8, 6});
    for (int64_t i = 0; i < map.numel(); ++i) REQUIRE(map.data()[i] == doctest::Approx(expected).epsilon(1e-5));
    // The probability map of the same window is the drop in softmax, a different number.
    const Tensor p_map = occlusion(*model, x, {1}, 8, 8, 0.f);
    const float p_expected = softmax(scores(*model, x), 1).at({0, 1}) - softmax(scores(*model, Tensor::zeros({1, 2, 8, 6})), 1).at({0, 1});
    CHECK(p_map.data()[0] == doctest::Approx(p_expected).epsilon(1e-5));
  }

  TEST_CASE("a fill equal to the image changes nothing; a window only marks what it covered") {
    auto model = task_free_model(25);
    const Tensor flat = Tensor::full({1, 2, 8, 6}, 0.3f);
    const Tensor none = occlusion(*model, flat, {1}, 3, 2, 0.3f);
    REQUIRE(none.shape() == Shape{1, 1, 8, 6});
    for (int64_t i = 0; i < none.numel(); ++i) REQUIRE(none.data()[i] == 0.f);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 26, false);
    const Tensor map = occlusion(*model, x, {0, 2}, 4, 4, 0.f);
    // Windows of 4 with stride 4 tile the image: each pixel's value is its own window's drop.
    const Tensor p = softmax(scores(*model, x), 1);
    Tensor occluded = x.clone();
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t y = 4; y < 8; ++y)
        for (int64_t xx = 0; xx < 4; ++xx) occluded.at({1, c, y, xx}) = 0.f;
    const float drop = p.at({1, 2}) - softmax(scores(*model, occluded), 1).at({1, 2});
    CHECK(map.at({1, 0, 5, 2}) == doctest::Approx(drop));
    CHECK(map.at({1, 0, 7, 0}) == doctest::Approx(drop));
    // Windows of 1 every 3 pixels: pixels no window covered stay exactly 0.
    const Tensor sparse = occlusion(*model, x, {0, 2}, 1, 3, 0.f);
    CHECK(sparse.at({0, 0, 1, 1}) == 0.f);
    CHECK(sparse.at({1, 0, 4, 5}) == 0.f);
    CHECK(tg::max(tg::abs(sparse)).item() > 0.f);
  }

  TEST_CASE("a batch of images: each image's map is the same as alone, its own class explained") {
    auto model = task_free_model(27);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 28, false);
    // 12 windows each: however they are batched through the model, per image the same map.
    const Tensor both = occlusion(*model, x, {0, 2}, 3, 2, 0.f);
    for (int64_t n = 0; n < 2; ++n) {
      const Tensor alone = occlusion(*model, slice(x, 0, n, n + 1), {n == 0 ? 0 : 2}, 3, 2, 0.f);
      for (int64_t i = 0; i < alone.numel(); ++i) {
        CAPTURE(n); CAPTURE(i);
        REQUIRE(both.data()[n * alone.numel() + i] == doctest::Approx(alone.data()[i]).epsilon(1e-5));
      }
    }
  }

  TEST_CASE("overlapping windows: each pixel is the mean drop of the windows that cover it") {
    auto model = task_free_model(29);
    const Tensor x = test::random_normal({1, 2, 8, 6}, 30, false);
    const Tensor map = occlusion(*model, x, {1}, 3, 2, -0.5f, OcclusionMeasure::Score);
    // By the definition, for pixel (4, 3): the windows with corners y0 in {2, 4} and x0 in {2}
    // (corners every 2 from 0; a window of 3 at y0 covers y0..y0+2) cover it.
    const float base = scores(*model, x).at({0, 1});
    auto drop = [&](int64_t y0, int64_t x0) {  // the square [y0, y0+3) x [x0, x0+3), as a mask
      Tensor occluded = x.clone();
      for (int64_t i = 0; i < occluded.numel(); ++i) {
        const int64_t y = i / 6 % 8, column = i % 6;
        if (y - y0 >= 0 && y - y0 < 3 && column - x0 >= 0 && column - x0 < 3) occluded.data()[i] = -0.5f;
      }
      return base - scores(*model, occluded).at({0, 1});
    };
    CHECK(map.at({0, 0, 4, 3}) == doctest::Approx((drop(2, 2) + drop(4, 2)) / 2).epsilon(1e-5));
    // Pixel (4, 4) is covered by the four windows at y0 in {2, 4}, x0 in {2, 4}.
    CHECK(map.at({0, 0, 4, 4}) == doctest::Approx((drop(2, 2) + drop(4, 2) + drop(2, 4) + drop(4, 4)) / 4).epsilon(1e-5));
    // The bottom-right pixel only by the window that hangs over the edge at (6, 4).
    CHECK(map.at({0, 0, 7, 5}) == doctest::Approx(drop(6, 4)).epsilon(1e-5));
  }
}

TASK_PROBE("ascent-step") {
  Tensor x = Tensor::zeros({2});
  ascent_step(x, Tensor::ones({2}), 0.1f, 0.f);
}

TEST_SUITE("ascent-step") {
  // One step of the engine on a given gradient: no model, no backward pass.
  TEST_CASE("ascent_step moves x by learning_rate * (gradient - 2 * l2 * x)") {
    Tensor x = Tensor::from_vector({1, -2, 0.5f, 0}, {1, 1, 2, 2});
    const Tensor g = Tensor::from_vector({0.5f, 1, -1, 2}, {1, 1, 2, 2});
    ascent_step(x, g, 0.1f, 0.f);  // plain gradient step
    const std::vector<float> plain = {1.05f, -1.9f, 0.4f, 0.2f};
    for (size_t i = 0; i < plain.size(); ++i) CHECK(x.to_vector()[i] == doctest::Approx(plain[i]));
    ascent_step(x, g, 0.1f, 0.5f);  // with L2: the step also pulls x toward 0 by lr * 2 * l2 * x = 0.1 * x
    for (size_t i = 0; i < plain.size(); ++i) {
      CAPTURE(i);
      CHECK(x.to_vector()[i] == doctest::Approx(plain[i] + 0.1f * (g.to_vector()[i] - plain[i])));
    }
  }

  TEST_CASE("with a zero gradient the L2 term alone shrinks x geometrically") {
    Tensor x = test::random_normal({2, 3, 4, 5}, 33, false);
    const std::vector<float> start = x.to_vector();
    for (int step = 0; step < 10; ++step) ascent_step(x, Tensor::zeros(x.shape()), 0.5f, 0.1f);
    const double factor = std::pow(1.0 - 2 * 0.5 * 0.1, 10);  // each step multiplies by (1 - 2 lr l2)
    for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(x.data()[i] == doctest::Approx(start[i] * factor));
    CHECK_CONTAINS(test::error_message([&] { ascent_step(x, Tensor::zeros({3}), 0.1f, 0.f); }),
                   "ascent_step: gradient of shape [3] for an image of shape [2,3,4,5]");
  }
}

TEST_SUITE("explain") {
  TEST_CASE("the ascent engine increases a smooth objective monotonically") {
    NEEDS_TASKS("tape-reverse-walk", "ascent-step");
    // objective(x) = -sum((x - 0.7)^2): concave, maximized at x = 0.7.
    const Objective bowl = [](const Tensor& x) {
      const Tensor d = x - 0.7f;
      return neg(sum(d * d));
    };
    AscentOptions options;
    options.steps = 50;
    options.learning_rate = 0.1f;
    std::vector<float> values;
    options.on_step = [&](int, const Tensor&, float v) { values.push_back(v); };
    const Tensor x = ascend(Tensor::zeros({1, 1, 4, 5}), bowl, options);
    REQUIRE(values.size() == 50);
    for (size_t i = 1; i < values.size(); ++i) REQUIRE(values[i] >= values[i - 1]);
    for (int64_t i = 0; i < x.numel(); ++i) CHECK(x.data()[i] == doctest::Approx(0.7f).epsilon(1e-3));
    // With weight decay the optimum moves toward 0: x* = 0.7 / (1 + l2).
    options.l2 = 1.f;
    options.steps = 200;
    options.on_step = nullptr;
    const Tensor shrunk = ascend(Tensor::zeros({1, 1, 4, 5}), bowl, options);
    CHECK(shrunk.data()[0] == doctest::Approx(0.35f).epsilon(1e-3));
  }

  TEST_CASE("regularizers: roll, blur, total variation, clipping, determinism") {
    NEEDS_TASKS(CNN_TASKS, "ascent-step");
    const Tensor x = Tensor::arange(0, 12);
    const Tensor grid = reshape(x, {1, 3, 4});
    const Tensor rolled = roll(grid, 1, -1);
    CHECK(rolled.at({0, 1, 0}) == grid.at({0, 0, 1}));
    CHECK(roll(rolled, -1, 1).to_vector() == grid.to_vector());
    const Tensor blurred = explain::gaussian_blur(Tensor::full({1, 5, 5}, 2.f), 1.f);
    for (int64_t i = 0; i < blurred.numel(); ++i) REQUIRE(blurred.data()[i] == doctest::Approx(2.f));
    CHECK(total_variation(grid).item() == doctest::Approx(2 * 4 * 4 + 3 * 3 * 1));  // vertical steps of 4, horizontal of 1
    AscentOptions options;
    options.steps = 20;
    options.jitter = 2;
    options.blur_every = 5;
    options.clip = true;
    options.clip_low = -0.5f;
    options.clip_high = 0.5f;
    options.seed = 9;
    auto model = small_cnn(27);
    const Tensor a = ascend(Tensor::zeros({1, 2, 8, 6}), class_score(*model, 1), options);
    const Tensor b = ascend(Tensor::zeros({1, 2, 8, 6}), class_score(*model, 1), options);
    CHECK(a.to_vector() == b.to_vector());
    CHECK(tg::max(a).item() <= 0.5f);
    CHECK(tg::max(neg(a)).item() <= 0.5f);
    CHECK(tg::max(tg::abs(a)).item() > 0.f);
  }

  TEST_CASE("a class visualization of the shipped model is classified as its class with p > 0.99") {
    NEEDS_TASKS(CNN_TASKS, "ascent-step");
    const models::LoadedModel loaded = models::load_fashion_cnn("assets/fashion_cnn.safetensors");
    for (int64_t c : {1, 7, 9}) {
      AscentOptions options;
      options.steps = 200;
      options.learning_rate = 1.f;
      options.l2 = 1e-3f;
      const Tensor image = ascend(Tensor::zeros({1, 1, 28, 28}), class_score(*loaded.model, c), options);
      const Tensor p = softmax(scores(*loaded.model, image), 1);
      CAPTURE(c);
      CHECK(p.at({0, c}) > 0.99f);
    }
  }

  TEST_CASE("the decorrelated image: zero is gray, one DC coefficient is one flat color, pixels stay in (-1, 1)") {
    const DecorrelatedImage image(6, 5);
    CHECK(tg::max(tg::abs(image(Tensor::zeros({2, 3, 6, 5})))).item() == 0.f);
    Tensor z = Tensor::zeros({1, 3, 6, 5});
    z.data()[0] = 2.f;  // channel 0's DC coefficient
    const Tensor x = image(z);
    for (int c = 0; c < 3; ++c)
      for (int i = 1; i < 30; ++i) REQUIRE(x.data()[c * 30 + i] == doctest::Approx(x.data()[c * 30]).epsilon(1e-5));
    CHECK(x.data()[0] > 0.f);  // the first color direction is bright in R, G and B alike
    CHECK(x.data()[0] == doctest::Approx(x.data()[30]).epsilon(0.05));
    const Tensor big = image(mul(test::random_normal({1, 3, 6, 5}, 71, false), Tensor::scalar(100.f)));
    CHECK(tg::max(tg::abs(big)).item() <= 1.f);
    CHECK_THROWS_WITH_AS(image(Tensor::zeros({1, 3, 5, 6})), doctest::Contains("[N,3,6,5]"), Error);
  }

  TEST_CASE("the decorrelated image and random transforms carry gradients (through the tape)") {
    NEEDS_TASKS("tape-reverse-walk");
    const DecorrelatedImage image(5, 7);
    test::check_gradient("decorrelated image", [&](const std::vector<Tensor>& in) { return image(in[0]); },
                   {test::random_normal({2, 3, 5, 7}, 72)});
    // A transformed objective with no freedom is the objective itself.
    const Objective total = [](const Tensor& x) { return sum(mul(x, x)); };
    const Tensor x = test::random_normal({1, 3, 5, 7}, 73, false);
    CHECK(transformed(total, {0.f, 0.f, 0.f}, 1)(x).item() == doctest::Approx(total(x).item()));
    // With freedom, each call draws a new transform (seeded: two wrappers with one seed agree).
    const Objective a = transformed(total, {}, 5), b = transformed(total, {}, 5);
    const float first = a(x).item();
    CHECK(b(x).item() == first);
    CHECK(a(x).item() != first);
    CHECK_THROWS_WITH_AS(transformed(total, {10.f, 1.5f, 0.f}, 1), doctest::Contains("scale 1.5"), Error);
  }

  TEST_CASE("class_scores: each image of the batch climbs toward its own class") {
    NEEDS_TASKS(CNN_TASKS);
    auto model = small_cnn(31);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 74, false);
    const Tensor logits = scores(*model, x);
    const float expected = logits.at({0, 1}) + logits.at({1, 2});
    NoGrad no_grad;
    CHECK(class_scores(*model, {1, 2})(x).item() == doctest::Approx(expected));
    CHECK_THROWS_WITH_AS(class_scores(*model, {1})(x), doctest::Contains("1 targets for a batch of 2"), Error);
  }

  TEST_CASE("feature inversion moves a random start toward the target's features") {
    NEEDS_TASKS(CNN_TASKS, "ascent-step");
    auto model = small_cnn(28);
    const Tensor target = test::random_normal({1, 2, 8, 6}, 29, false);
    const Tensor features = [&] { NoGrad no_grad; return model->forward_until(target, "fc1").clone(); }();
    const Objective match = feature_match(*model, "fc1", features);
    const Tensor start = test::random_normal({1, 2, 8, 6}, 30, false);
    const float before = [&] { NoGrad ng; return match(start).item(); }();
    AscentOptions options;
    options.steps = 100;
    options.learning_rate = 0.05f;
    const Tensor x = ascend(start, match, options);
    const float after = [&] { NoGrad ng; return match(x).item(); }();
    CHECK(after > before);
    CHECK(after > -0.1f);
  }
}
