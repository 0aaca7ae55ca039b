// tgc bench's floors, counted on models small enough to count by hand (no timing here:
// a benchmark reports, a test checks what it counts).
#include "tests/helpers.h"
#include "tinygrad-cpp/cli/bench.h"
#include "tinygrad-cpp/core/tape.h"
#include "tinygrad-cpp/models/graph.h"

using namespace tg;

namespace {
const ProfileOps::Item* find_item(const ProfileOps& p, const std::string& op, const std::string& phase) {
  for (const auto& item : p.items())
    if (item.op == op && item.phase == phase) return &item;
  return nullptr;
}
}  // namespace

TEST_SUITE("bench") {
  TEST_CASE("layer_output_bytes of a Sequential: every layer's output once, a flatten view not again") {
    NEEDS_TASKS("relu");
    Generator gen(1);
    nn::Sequential model;
    model.add("fc1", std::make_shared<nn::Linear>(4, 3, gen));
    model.add("relu", std::make_shared<nn::ReLU>());
    model.add("flatten", std::make_shared<nn::Flatten>());  // [2,3] -> [2,3], the relu's memory
    model.add("fc2", std::make_shared<nn::Linear>(3, 2, gen));
    model(Tensor::randn({2, 4}, gen));
    // fc1 [2,3] + relu [2,3] + fc2 [2,2] = 16 floats = 64 bytes.
    CHECK(bench::layer_output_bytes(model) == 64);
    CHECK(bench::traffic_bytes(64, bench::Pass::Forward) == 128);          // written once, read once
    CHECK(bench::traffic_bytes(64, bench::Pass::ForwardBackward) == 256);  // and a gradient of each
    // fc1: 2 x 6 outputs x 4 inputs = 48; fc2: 2 x 4 outputs x 3 inputs = 24.
    CHECK(bench::multiply_add_flops(model) == 72);
  }

  TEST_CASE("layer_output_bytes of a Graph with a residual add, from its real forward") {
    NEEDS_TASKS("relu");
    auto graph = std::make_shared<models::Graph>();
    const int a = graph->add("a", "relu", {0}, [](const std::vector<Tensor>& in) { return relu(in[0]); });
    const int b = graph->add("b", "reshape", {a}, [](const std::vector<Tensor>& in) { return reshape(in[0], {1, 18}); });
    const int c = graph->add("c", "add", {a, 0}, [](const std::vector<Tensor>& in) { return add(in[0], in[1]); });
    graph->set_output(c, models::Graph::Head::Identity);
    (void)b;
    Generator gen(2);
    {
      NoGrad no_grad;  // photo_infer_b8 counts a forward that recorded nothing
      graph->forward(Tensor::randn({1, 2, 3, 3}, gen));
    }
    // a: 18 floats, b: a view of a (not counted), c: 18 floats -> 144 bytes.
    CHECK(bench::layer_output_bytes(*graph) == 144);
    CHECK(bench::multiply_add_flops(*graph) == 0);  // no weights
  }

  TEST_CASE("the bandwidth measured is positive, within L2 and beyond") {
    const bench::Bandwidth bw = bench::measure_copy_bandwidth();
    CHECK(bw.within_l2 > 0);
    CHECK(bw.beyond_l2 > 0);
    CHECK(bw.map_sized > 0);
  }

  TEST_CASE("ProfileOps charges each recorded op to its kind, forward and backward") {
    NEEDS_TASKS("tape-reverse-walk", "relu");
    Generator gen(3);
    Tensor x = Tensor::randn({2, 3}, gen).requires_grad_();
    ProfileOps profile;
    CHECK_THROWS_WITH(ProfileOps(), doctest::Contains("ProfileOps: a profile is already running"));
    sum(relu(relu(x))).backward();
    const auto* relu_fwd = find_item(profile, "relu", "forward");
    const auto* relu_bwd = find_item(profile, "relu", "backward");
    REQUIRE(relu_fwd);
    REQUIRE(relu_bwd);
    CHECK(relu_fwd->calls == 2);
    CHECK(relu_bwd->calls == 2);
    CHECK(find_item(profile, "sum", "backward"));
    CHECK(find_item(profile, "walk", "backward"));
    // The gradient is the same as without a profile.
    CHECK(x.grad().defined());
  }

  TEST_CASE("ProfileOps by layer: an item per layer shape, and each one's floor work counted by hand") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward");
    Generator gen(4);
    Tensor x = Tensor::randn({2, 3, 9, 7}, gen).requires_grad_();
    const Tensor w1 = Tensor::randn({4, 3, 3, 3}, gen);                     // frozen: only dx is asked for
    Tensor w2 = Tensor::randn({5, 4, 1, 1}, gen).requires_grad_();          // dW asked for too
    auto run = [&] { sum(relu(conv2d(relu(conv2d(x, w1, Tensor(), 2, 1)), w2))).backward(); };
    {
      ProfileOps by_kind;
      run();
      int conv_items = 0;
      for (const auto& item : by_kind.items()) conv_items += item.op == "conv2d";
      CHECK(conv_items == 2);  // forward and backward, both layers in each
      CHECK(find_item(by_kind, "conv2d", "forward")->calls == 2);
      CHECK(find_item(by_kind, "conv2d", "forward")->inputs.empty());
    }
    ProfileOps by_layer(ProfileOps::Key::Layer);
    run();
    run();
    std::vector<const ProfileOps::Item*> convs, relus;
    for (const auto& item : by_layer.items()) {
      if (item.op == "conv2d") convs.push_back(&item);
      if (item.op == "relu") relus.push_back(&item);
    }
    REQUIRE(convs.size() == 4);  // two layers, forward and backward
    REQUIRE(relus.size() == 4);  // the two relus see different shapes
    const ProfileOps::Item* first = convs[0];  // items in first-seen order: conv1 forward first
    CHECK(first->phase == "forward");
    CHECK(first->calls == 2);
    CHECK(first->inputs == std::vector<Shape>{{2, 3, 9, 7}, {4, 3, 3, 3}, {}});
    CHECK(first->wanted_grad == std::vector<bool>{true, false, false});
    CHECK(first->output == Shape{2, 4, 5, 4});
    CHECK(first->settings.find("stride=[2,2]") != std::string::npos);
    // conv1 forward: writes 2*4*5*4 = 160 floats, read again: 1280 bytes; 2 x 160 x 27 FLOPs.
    CHECK(bench::layer_work(*first).bytes == 1280);
    CHECK(bench::layer_work(*first).flops == 2 * 160 * 27);
    const ProfileOps::Item* conv1_back = nullptr;
    const ProfileOps::Item* conv2_back = nullptr;
    for (const auto* item : convs)
      if (item->phase == "backward") (item->output == Shape{2, 4, 5, 4} ? conv1_back : conv2_back) = item;
    REQUIRE(conv1_back);
    REQUIRE(conv2_back);
    CHECK(conv1_back->calls == 2);
    // conv1's rule writes dx only (2*3*9*7 = 378 floats), one forward's FLOPs.
    CHECK(bench::layer_work(*conv1_back).bytes == 2 * 378 * 4);
    CHECK(bench::layer_work(*conv1_back).flops == 2 * 160 * 27);
    // conv2 (1x1, 4 -> 5 on 5x4): dx (160 floats) and dW (20 floats), two forwards' FLOPs (2 x 200 x 4 each).
    CHECK(conv2_back->wanted_grad == std::vector<bool>{true, true, false});
    CHECK(bench::layer_work(*conv2_back).bytes == 2 * (160 + 20) * 4);
    CHECK(bench::layer_work(*conv2_back).flops == 2 * (2 * 200 * 4));
    CHECK(bench::layer_work(*relus[0]).flops == 0);
    CHECK(bench::layer_work(*relus[0]).bytes == 1280);  // relu after conv1: 160 floats written and read
    CHECK(bench::layer_work(*find_item(by_layer, "walk", "backward")).bytes == 0);
  }
}
