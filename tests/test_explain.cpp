// Attribution methods checked by the invariants that define them.
#include "tests/helpers.h"
#include "tinygrad-cpp/explain.h"

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

float score(nn::Sequential& model, const Tensor& x, int64_t n, int64_t c) {
  return explain::scores(model, x).at({n, c});
}
}  // namespace

TEST_SUITE("saliency") {
  TEST_CASE("saliency equals a finite-difference gradient of the class score") {
    auto model = small_cnn(1);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 2, false);
    const Targets targets = {2, 0};
    const Tensor s = saliency(*model, x, targets);
    REQUIRE(s.shape() == x.shape());
    const float eps = 1e-2f;
    int checked = 0;
    for (int64_t i = 0; i < x.numel(); i += 7) {
      const int64_t n = i / (x.numel() / 2);
      Tensor plus = x.clone(), minus = x.clone();
      plus.data()[i] += eps;
      minus.data()[i] -= eps;
      const float expected = (score(*model, plus, n, targets[n]) - score(*model, minus, n, targets[n])) / (2 * eps);
      CAPTURE(i);
      CHECK(s.data()[i] == doctest::Approx(expected).epsilon(0.03).scale(0.05));
      ++checked;
    }
    CHECK(checked > 10);
    // The parameters are left as they were: still trainable, no gradient written into them.
    for (const Tensor& p : model->parameters()) {
      CHECK(p.requires_grad());
      CHECK_FALSE(p.grad().defined());
    }
  }
}

TEST_SUITE("explain") {
  TEST_CASE("target -1 explains the predicted class") {
    auto model = small_cnn(3);
    const Tensor x = test::random_normal({3, 2, 8, 6}, 4, false);
    Targets resolved;
    const Tensor a = class_gradient(*model, x, {-1, -1, -1}, ReluRule::Vanilla, &resolved);
    const Tensor logits = scores(*model, x);
    for (int64_t n = 0; n < 3; ++n) {
      const float* row = logits.data() + n * 3;
      CHECK(resolved[n] == std::max_element(row, row + 3) - row);
    }
    CHECK(a.to_vector() == saliency(*model, x, resolved).to_vector());
  }

  TEST_CASE("guided backprop equals the plain gradient on a network without ReLUs") {
    auto model = small_cnn(5, /*with_relu=*/false);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 6, false);
    CHECK(guided_backprop(*model, x, {1, 2}).to_vector() == saliency(*model, x, {1, 2}).to_vector());
    CHECK(deconvnet(*model, x, {1, 2}).to_vector() == saliency(*model, x, {1, 2}).to_vector());
  }

  TEST_CASE("guided and deconvnet gradients at a ReLU's output are never negative") {
    // Gradient w.r.t. relu1's input (the conv output): the rules clip negative signals there.
    auto model = small_cnn(7);
    const Tensor x = test::random_normal({2, 2, 8, 6}, 8, false);
    for (ReluRule rule : {ReluRule::Guided, ReluRule::Deconvnet}) {
      FreezeParameters frozen(*model);
      Tensor conv_out = model->forward_until(x, "conv1").detach().requires_grad_();
      Tensor h = model->forward_after(conv_out, "conv1");
      Tensor seed = Tensor::zeros(h.shape());
      seed.at({0, 1}) = 1.f;
      seed.at({1, 1}) = 1.f;
      {
        OverrideBackward guard(Op::ReLU, rule == ReluRule::Guided ? BackwardRule(rules::guided_relu) : BackwardRule(rules::deconvnet_relu));
        h.backward(seed);
      }
      int positive = 0;
      for (int64_t i = 0; i < conv_out.numel(); ++i) {
        REQUIRE(conv_out.grad().data()[i] >= 0.f);
        positive += conv_out.grad().data()[i] > 0.f;
        if (rule == ReluRule::Guided && conv_out.data()[i] <= 0.f) REQUIRE(conv_out.grad().data()[i] == 0.f);
      }
      CHECK(positive > 0);
    }
    // The vanilla gradient there does have negative entries: the rules really changed something.
    CHECK(tg::max(neg(saliency(*model, x, {1, 1}))).item() > 0.f);
  }

  TEST_CASE("SmoothGrad with sigma 0 equals saliency, and noise changes it") {
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
                         "neuron_gradient: neuron (channel 9, y 0, x 0) is outside layer 'conv1' of shape [1,4,8,6]"));
  }

  TEST_CASE("SmoothGrad and integrated gradients of one neuron") {
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

TEST_SUITE("gradcam") {
  TEST_CASE("Grad-CAM equals ReLU(CAM) / (h*w) on a global-average-pool + linear head") {
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
    auto model = gap_cnn(23);
    const Tensor x = test::random_normal({1, 1, 7, 9}, 24, false);
    const Tensor ggc = guided_grad_cam(*model, x, {2}, "relu");
    CHECK(ggc.shape() == x.shape());
    const Tensor g = grad_cam(*model, x, {2}, "relu");
    if (tg::max(g).item() == 0.f) CHECK(tg::max(tg::abs(ggc)).item() == 0.f);
    CHECK(test::contains(test::error_message([&] { grad_cam(*model, x, {2}, "fc"); }), "a CAM needs a [N,K,h,w] feature map"));
  }
}

TEST_SUITE("explain") {
  TEST_CASE("occlusion: a fill equal to the image changes nothing; a window only marks what it covered") {
    auto model = small_cnn(25);
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
}

TEST_SUITE("ascent-step") {
  TEST_CASE("the ascent engine increases a smooth objective monotonically") {
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
    const nn::LoadedModel loaded = nn::load_fashion_cnn("assets/fashion_cnn.safetensors");
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

  TEST_CASE("feature inversion moves a random start toward the target's features") {
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
