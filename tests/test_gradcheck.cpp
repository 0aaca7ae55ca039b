// The gradient checker itself: it accepts a right rule and rejects a wrong one with a
// message that says which op, which input, which index, received and expected.
#include "tests/helpers.h"

using namespace tg;

TEST_SUITE("gradcheck") {
  TEST_CASE("the checker rejects a deliberately wrong conv2d rule and says where") {
    NEEDS_TASKS("conv2d-backward");
    Tensor x = test::random_normal({2, 3, 5, 4}, 1), w = test::random_normal({2, 3, 3, 3}, 2);
    auto f = [](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), 1, 1); };
    CHECK(check_gradients("conv2d", f, {x, w}).ok);

    // Wrong on purpose: the weight gradient is 10% too large.
    OverrideBackward wrong(Op::Conv2d, [](const Entry& e, const Tensor& g) {
      std::vector<Tensor> grads = Op::Conv2d.default_rule(e, g);
      for (int64_t i = 0; i < grads[1].numel(); ++i) grads[1].data()[i] *= 1.1f;
      return grads;
    });
    const GradCheckResult r = check_gradients("conv2d", f, {x, w});
    CHECK_FALSE(r.ok);
    INFO(r.message);
    CHECK(test::contains(r.message, "conv2d: gradient of input 1 (shape [2,3,3,3]) at index [0,0,0,0]"));
    CHECK(test::contains(r.message, "backward gave"));
    CHECK(test::contains(r.message, "central difference gave"));
    CHECK(r.max_error > 0.01);
  }

  TEST_CASE("the checker rejects the deconvnet rule as the gradient of relu") {
    NEEDS_TASKS("relu", "relu-rules");
    Tensor x = test::away_from_zero({3, 4}, 3);
    OverrideBackward guard(Op::ReLU, rules::deconvnet_relu);
    const GradCheckResult r = check_gradients("relu", [](const std::vector<Tensor>& in) { return relu(in[0]); }, {x});
    CHECK_FALSE(r.ok);
    CHECK(test::contains(r.message, "relu: gradient of input 0"));
  }

  TEST_CASE("the checker reports a rule that drops a gradient") {
    Tensor a = test::random_normal({2, 2}, 4), b = test::random_normal({2, 2}, 5);
    OverrideBackward guard(Op::Mul, [](const Entry& e, const Tensor& g) {
      return std::vector<Tensor>{mul(g, e.input(1)), Tensor()};
    });
    const GradCheckResult r = check_gradients("mul", [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b});
    CHECK_FALSE(r.ok);
    CHECK(test::contains(r.message, "input 1"));
    CHECK(test::contains(r.message, "backward produced no gradient"));
  }

  TEST_CASE("one op is checked by calling its rule; a composition walks the tape") {
    Tensor a = test::random_normal({2, 3}, 6);
    const size_t entries_before = tape().size();  // earlier tests' graphs that nothing walked
    const GradCheckResult one = check_gradients("tanh", [](const std::vector<Tensor>& in) { return tg::tanh(in[0]); }, {a});
    CHECK(one.ok);
    CHECK_FALSE(one.through_tape);
    CHECK(one.checked == 6);
    CHECK(tape().size() == entries_before);  // the checked entry is not left behind
    // An input used twice by one op gets the sum of both gradients.
    const GradCheckResult twice = check_gradients("cat", [](const std::vector<Tensor>& in) { return cat({in[0], in[0]}, 1); }, {a});
    CHECK(twice.ok);
    CHECK_FALSE(twice.through_tape);
    NEEDS_TASKS("tape-reverse-walk");
    const GradCheckResult composite = check_gradients("tanh * sigmoid", [](const std::vector<Tensor>& in) {
      return mul(tg::tanh(in[0]), sigmoid(in[0]));
    }, {a});
    CHECK(composite.ok);
    CHECK(composite.through_tape);
    CHECK(tape().size() == entries_before);  // the walk freed what it walked
  }

  TEST_CASE("a rule that returns a gradient of the wrong shape is reported by op and input") {
    Tensor a = test::random_normal({2, 3}, 7);
    OverrideBackward guard(Op::Tanh, [](const Entry&, const Tensor&) { return std::vector<Tensor>{Tensor::zeros({3, 2})}; });
    const GradCheckResult r = check_gradients("tanh", [](const std::vector<Tensor>& in) { return tg::tanh(in[0]); }, {a});
    CHECK_FALSE(r.ok);
    CHECK(r.message == "tanh: the backward rule of tanh returned shape [3,2] for input 0 of shape [2,3]");
  }
}
