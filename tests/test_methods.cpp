// The method table (explain/methods.h): every method callable through it, parameter ranges
// enforced, unknown names refused; and the targets (explain/target.h): a detection is its
// anchor's class logit.
#include "tests/helpers.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/models/fashion_cnn.h"

using namespace tg;
using namespace tg::explain;

namespace {
// Same shape, every element equal (the table adds no arithmetic of its own).
void check_same(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  int64_t differ = 0;
  for (int64_t i = 0; i < a.numel(); ++i) differ += a.data()[i] != b.data()[i];
  CHECK(differ == 0);
}

// A tiny CNN on 1x8x8 inputs with a 4-D layer for Grad-CAM ("relu1") and three classes.
std::shared_ptr<nn::Sequential> tiny_cnn() {
  Generator gen(3);
  auto model = std::make_shared<nn::Sequential>();
  model->add("conv1", std::make_shared<nn::Conv2d>(1, 2, 3, gen, 1, 1))
      .add("relu1", std::make_shared<nn::ReLU>())
      .add("pool1", std::make_shared<nn::AvgPool2d>(2))
      .add("flatten", std::make_shared<nn::Flatten>())
      .add("fc1", std::make_shared<nn::Linear>(2 * 4 * 4, 3, gen));
  nn::ModelInfo info;
  info.input = {.channels = 1, .height = 8, .width = 8, .mean = {0.5f}, .std = {0.25f}};
  info.cam_layer = "relu1";
  model->set_info(info);
  return model;
}

// A tiny detector: the CNN's 6 outputs are 2 anchors x 3 classes; a class's score is its
// best anchor's logit (as the SSD's), and anchor_logits() gives them all.
struct TinyDetector : nn::Sequential {
  Tensor anchors;
  Tensor forward(const Tensor& x) override {
    anchors = reshape(nn::Sequential::forward(x), {x.dim(0), 2, 3});
    return max(anchors, {1});
  }
  Tensor anchor_logits() const override { return anchors; }
};
std::shared_ptr<TinyDetector> tiny_detector() {
  Generator gen(5);
  auto model = std::make_shared<TinyDetector>();
  model->add("conv1", std::make_shared<nn::Conv2d>(1, 2, 3, gen, 1, 1))
      .add("relu1", std::make_shared<nn::ReLU>())
      .add("flatten", std::make_shared<nn::Flatten>())
      .add("fc1", std::make_shared<nn::Linear>(2 * 8 * 8, 6, gen));
  nn::ModelInfo info;
  info.input = {.channels = 1, .height = 8, .width = 8, .mean = {0.5f}, .std = {0.25f}};
  info.probability = nn::ModelInfo::Probability::Sigmoid;
  model->set_info(info);
  return model;
}
}  // namespace

TEST_SUITE("methods") {
  TEST_CASE("the table lists the nine methods once each, in a fixed order, each complete") {
    std::vector<std::string> names;
    for (const Method& m : methods()) {
      CAPTURE(m.name);
      names.push_back(m.name);
      CHECK_FALSE(m.description.empty());
      CHECK(m.targets.classes);
      CHECK(m.run);
      for (const Parameter& p : m.parameters) {
        CHECK(p.min <= p.default_value);
        CHECK(p.default_value <= p.max);
      }
    }
    CHECK(names == std::vector<std::string>{"saliency", "input_x_gradient", "smoothgrad", "integrated_gradients",
                                            "guided_backprop", "deconvnet", "occlusion", "gradcam", "guided_gradcam"});
    CHECK(&find_method("gradcam") == &methods()[7]);
    CHECK_THROWS_WITH(find_method("lime"), doctest::Contains("unknown method 'lime' (known: saliency, input_x_gradient"));
  }

  TEST_CASE("a parameter name means one parameter everywhere: tgc's flags come from all_parameters") {
    std::vector<std::string> flags;
    for (const Parameter& p : all_parameters()) flags.push_back(p.name);
    CHECK(flags == std::vector<std::string>{"seed", "samples", "noise", "steps", "window", "stride"});
    for (const Method& m : methods())
      for (const Parameter& p : m.parameters)
        for (const Parameter& q : all_parameters())
          if (q.name == p.name) CHECK((q.default_value == p.default_value && q.min == p.min && q.max == p.max));
    CHECK(defaults(find_method("smoothgrad")) == Settings{{"noise", 0.15}, {"samples", 50}, {"seed", 0}});
  }

  TEST_CASE("every method runs through the table and gives what its function gives") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "linear-backward", "relu-rules", "saliency", "smoothgrad",
                "occlusion", "gradcam");
    auto model = tiny_cnn();
    const Tensor x = test::random_normal({1, 1, 8, 8}, 11, false);
    const Target target = Target::of_classes({-1});
    for (const Method& m : methods()) {
      CAPTURE(m.name);
      const Tensor a = run(m, *model, x, target);
      if (m.name == "gradcam") CHECK(a.shape() == Shape{1, 8, 8});
      else if (m.name == "occlusion") CHECK(a.shape() == Shape{1, 1, 8, 8});
      else CHECK(a.shape() == x.shape());
    }
    check_same(run(find_method("saliency"), *model, x, target), saliency(*model, x, Targets{-1}));
    check_same(run(find_method("guided_gradcam"), *model, x, target, {}, "relu1"),
                      guided_grad_cam(*model, x, Targets{-1}, "relu1"));
    // Parameters reach the function: 3 samples with seed 4 are not 50 with seed 0.
    check_same(run(find_method("smoothgrad"), *model, x, target, {{"samples", 3}, {"seed", 4}}),
                      smoothgrad(*model, x, Targets{-1}, 3, 0.15f, 4));
    // Integrated gradients start from black (pixel 0: (0 - 0.5) / 0.25 = -2 here).
    check_same(run(find_method("integrated_gradients"), *model, x, target, {{"steps", 5}}),
                      integrated_gradients(*model, x, Targets{-1}, Tensor::full(x.shape(), -2.f), 5));
  }

  TEST_CASE("every method gives the same bits when the machine is busy (each parallel call on the caller alone)") {
    // A busy machine makes the thread pool run calls on the caller (a worker was stopped, or
    // another request holds the pool). The shipped model's kernels sum per-chunk partials
    // (the gemm's split K), so this holds only if the caller runs the pool's own chunks.
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward", "relu-rules",
                "saliency", "smoothgrad", "occlusion", "gradcam");
    const models::LoadedModel loaded = models::load_fashion_cnn("assets/fashion_cnn.safetensors");
    nn::Model& model = *loaded.model;
    const Tensor x = preprocess::image_to_input(io::load_image("assets/fashion-png/1_trouser.png"), model.info().input);
    std::vector<Tensor> images;
    for (int i = 0; i < 8; ++i) images.push_back(mul(x, Tensor::scalar(1.f - 0.25f * static_cast<float>(i))));
    const Tensor batch = cat(images, 0);
    INFO("threads: ", kernels::num_threads());
    for (const Method& m : methods()) {
      CAPTURE(m.name);
      // SmoothGrad: one image, its 8 samples one batch; the others: 8 images.
      const bool one = m.name == "smoothgrad";
      const Tensor& input = one ? x : batch;
      const Target target = Target::of_classes(std::vector<int64_t>(static_cast<size_t>(input.dim(0)), 1));
      const Tensor shared = run(m, model, input, target, {{"samples", 8}});
      Tensor alone;
      {
        kernels::CallerOnly caller_only;
        alone = run(m, model, input, target, {{"samples", 8}});
      }
      check_same(shared, alone);
    }
  }

  TEST_CASE("parameter ranges and target kinds are enforced; a map method needs a layer") {
    auto model = tiny_cnn();
    const Tensor x = test::random_normal({1, 1, 8, 8}, 12, false);
    const Target cls = Target::of_classes({0});
    CHECK_THROWS_WITH(run(find_method("smoothgrad"), *model, x, cls, {{"samples", 0}}),
                      "smoothgrad: parameter samples = 0 must be a whole number in [1, 100000]");
    CHECK_THROWS_WITH(run(find_method("smoothgrad"), *model, x, cls, {{"samples", 2.5}}),
                      doctest::Contains("must be a whole number"));
    CHECK_THROWS_WITH(run(find_method("smoothgrad"), *model, x, cls, {{"noise", 11}}),
                      "smoothgrad: parameter noise = 11 must be a number in [0, 10]");
    CHECK_THROWS_WITH(run(find_method("occlusion"), *model, x, Target::of_neuron({.layer = "relu1", .y = 0, .x = 0})),
                      "occlusion: explains targets of kind class, detection, not a neuron");
    nn::ModelInfo info = model->info();
    info.cam_layer = "";
    model->set_info(info);
    CHECK_THROWS_WITH(run(find_method("gradcam"), *model, x, cls), doctest::Contains("names no default layer"));
  }

  TEST_CASE("a neuron target through the table equals neuron_gradient") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "saliency");
    auto model = tiny_cnn();
    const Tensor x = test::random_normal({1, 1, 8, 8}, 13, false);
    const Neuron n{.layer = "relu1", .channel = 1, .y = 3, .x = 4};
    check_same(run(find_method("saliency"), *model, x, Target::of_neuron(n)), neuron_gradient(*model, x, n));
  }
}

TEST_SUITE("targets") {
  TEST_CASE("a detection resolves to the class's best anchor, and its gradient is the anchor logit's") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "linear-backward", "saliency");
    auto model = tiny_detector();
    const Tensor x = test::random_normal({2, 1, 8, 8}, 21, false);
    const Target best = resolve(*model, x, Target::of_detections({1, 2}, {-1, -1}), "test");
    const Tensor a = (scores(*model, x), model->anchor_logits());
    for (int64_t n = 0; n < 2; ++n) {
      const int64_t c = best.classes[n], k = best.anchors[n];
      CHECK(a.at({n, k, c}) >= a.at({n, 1 - k, c}));
    }
    // The best anchor's gradient is the class score's (the max passes its gradient there) ...
    check_same(saliency(*model, x, best), saliency(*model, x, Targets{1, 2}));
    // ... and the other anchor's is the gradient of its own logit, by finite differences.
    const Target other = Target::of_detections({1, 2}, {1 - best.anchors[0], 1 - best.anchors[1]});
    const Tensor g = saliency(*model, x, other);
    const float eps = 1e-2f;
    for (int64_t i : {3, 17, 40}) {
      Tensor plus = x.clone(), minus = x.clone();
      plus.data()[i] += eps, minus.data()[i] -= eps;
      scores(*model, plus);
      const float up = model->anchor_logits().at({0, other.anchors[0], 1});
      scores(*model, minus);
      const float down = model->anchor_logits().at({0, other.anchors[0], 1});
      CHECK(g.data()[i] == doctest::Approx((up - down) / (2 * eps)).epsilon(0.03).scale(0.05));
    }
  }

  TEST_CASE("occlusion of a detection measures the sigmoid of its anchor's logit") {
    NEEDS_TASKS("relu", "occlusion", "saliency");
    auto model = tiny_detector();
    const Tensor x = test::random_normal({1, 1, 8, 8}, 22, false);
    const Target det = Target::of_detections({0}, {1});
    const Tensor map = occlusion(*model, x, det, 8, 8, 0.f);  // one window over everything
    scores(*model, x);
    const float before = 1.f / (1.f + std::exp(-model->anchor_logits().at({0, 1, 0})));
    scores(*model, Tensor::zeros(x.shape()));
    const float after = 1.f / (1.f + std::exp(-model->anchor_logits().at({0, 1, 0})));
    CHECK(map.at({0, 0, 5, 2}) == doctest::Approx(before - after));
    CHECK_THROWS_WITH(saliency(*model, x, Target::of_detections({0}, {2})), "gradient: anchor 2 out of range for 2 anchors");
    CHECK_THROWS_WITH(saliency(*tiny_cnn(), x, Target::of_detections({0}, {0})), doctest::Contains("needs a detector"));
  }
}
