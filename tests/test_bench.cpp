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
}
