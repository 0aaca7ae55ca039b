// The gradient checker itself: it accepts a right rule and rejects a wrong one with a
// message that says which op, which input, which index, received and expected.
#include "tests/helpers.h"

using namespace tg;

TEST_SUITE("gradcheck") {
  TEST_CASE("the checker rejects a deliberately wrong conv2d rule and says where") {
    Tensor x = test::random_normal({2, 3, 5, 4}, 1), w = test::random_normal({2, 3, 3, 3}, 2);
    auto f = [](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), 1, 1); };
    CHECK(check_gradients("conv2d", f, {x, w}).ok);

    // Wrong on purpose: the weight gradient is 10% too large.
    OverrideBackward wrong(Op::Conv2d, [](const Entry& e, const Tensor& g) {
      std::vector<Tensor> grads = default_rule(Op::Conv2d)(e, g);
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
}
