// Shape and argument errors in every op family throw tg::Error naming the op and shapes.
#include "tests/helpers.h"

using namespace tg;
using test::contains;
using test::error_message;

TEST_SUITE("errors") {
  TEST_CASE("elementwise: shapes that do not broadcast") {
    const std::string m = error_message([] { add(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); });
    CHECK(contains(m, "add: shapes [2,3] and [4,5] cannot be broadcast"));
    CHECK(contains(error_message([] { mul(Tensor::zeros({3}), Tensor::zeros({2})); }), "mul: shapes [3] and [2]"));
    CHECK(contains(error_message([] { clamp(Tensor::zeros({3}), 1.f, 0.f); }), "clamp: low 1 is greater than high 0"));
  }

  TEST_CASE("matmul and linear") {
    CHECK(error_message([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); }) ==
          "matmul: shapes [2,3] and [4,5] cannot be multiplied (3 != 4)");
    CHECK(contains(error_message([] { matmul(Tensor::zeros({2, 3, 1}), Tensor::zeros({3, 5})); }), "matmul: shapes [2,3,1] and [3,5]"));
    const std::string m = error_message([] { linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); });
    CHECK(contains(m, "linear: input [2,3] does not match weight [4,5]"));
    CHECK(contains(error_message([] { linear(Tensor::zeros({2, 5}), Tensor::zeros({4, 5}), Tensor::zeros({3})); }),
                   "linear: bias [3] does not match weight [4,5]"));
  }

  TEST_CASE("conv2d") {
    const std::string m = error_message([] { conv2d(Tensor::zeros({1, 3, 8, 8}), Tensor::zeros({4, 2, 3, 3})); });
    CHECK(contains(m, "conv2d: input [1,3,8,8] and weight [4,2,3,3]"));
    CHECK(contains(m, "3 input channels") == false);
    CHECK(contains(m, "weight expects 2 input channels, input has 3"));
    CHECK(contains(error_message([] { conv2d(Tensor::zeros({3, 8, 8}), Tensor::zeros({4, 3, 3, 3})); }), "input must be [N,C,H,W]"));
    CHECK(contains(error_message([] { conv2d(Tensor::zeros({1, 3, 2, 2}), Tensor::zeros({4, 3, 3, 3})); }), "does not fit"));
    CHECK(contains(error_message([] { conv2d(Tensor::zeros({1, 3, 8, 8}), Tensor::zeros({4, 1, 3, 3}), Tensor(), 1, 0, 1, 2); }),
                   "must both divide by groups 2"));
    CHECK(contains(error_message([] { conv2d(Tensor::zeros({1, 3, 8, 8}), Tensor::zeros({4, 3, 3, 3}), Tensor(), 0); }), "stride"));
  }

  TEST_CASE("pooling") {
    CHECK(contains(error_message([] { max_pool2d(Tensor::zeros({3, 8}), 2); }), "max_pool2d: input [3,8] must be [N,C,H,W]"));
    CHECK(contains(error_message([] { max_pool2d(Tensor::zeros({1, 1, 8, 8}), 2, 2, 2); }), "max_pool2d: kernel [2,2]"));
    CHECK(contains(error_message([] { avg_pool2d(Tensor::zeros({1, 1, 2, 2}), 3); }), "avg_pool2d: kernel [3,3] does not fit input [1,1,2,2]"));
    CHECK(contains(error_message([] { adaptive_avg_pool2d(Tensor::zeros({2, 2}), 1); }), "adaptive_avg_pool2d: input [2,2]"));
  }

  TEST_CASE("shape ops") {
    CHECK(contains(error_message([] { reshape(Tensor::zeros({2, 3}), {4, 2}); }), "reshape: cannot reshape [2,3] (6 elements) to [4,2]"));
    CHECK(contains(error_message([] { cat({Tensor::zeros({2, 3}), Tensor::zeros({3, 3})}, 1); }), "cat: shapes [2,3] and [3,3] differ outside axis 1"));
    CHECK(contains(error_message([] { slice(Tensor::zeros({2, 3}), 1, 2, 5); }), "slice: range [2,5) is outside axis 1 of shape [2,3]"));
    CHECK(contains(error_message([] { permute(Tensor::zeros({2, 3}), {0, 0}); }), "permute: order [0,0] repeats axis 0"));
    CHECK(contains(error_message([] { pad(Tensor::zeros({2, 3}), {1, 1}); }), "pad: 2 pad values for shape [2,3]"));
  }

  TEST_CASE("reductions and losses") {
    CHECK(contains(error_message([] { sum(Tensor::zeros({2, 3}), {2}); }), "sum: axis 2 out of range"));
    CHECK(contains(error_message([] { mean(Tensor::zeros({2, 3}), {1, -1}); }), "mean: axis -1 listed twice for shape [2,3]"));
    CHECK(contains(error_message([] { cross_entropy(Tensor::zeros({2, 3}), {0}); }), "cross_entropy: 1 labels for scores [2,3]"));
    CHECK(contains(error_message([] { cross_entropy(Tensor::zeros({2, 3}), {0, 3}); }), "cross_entropy: label 3 out of range for scores [2,3]"));
    CHECK(contains(error_message([] { mse(Tensor::zeros({2, 3}), Tensor::zeros({3, 2})); }), "mse: prediction [2,3] and target [3,2]"));
  }

  TEST_CASE("backward misuse") {
    Tensor x = Tensor::ones({2}, true);
    Tensor y = x * 2.f;
    CHECK(contains(error_message([&] { y.backward(); }), "backward: called without a seed on a tensor of shape [2]"));
    CHECK(contains(error_message([&] { y.backward(Tensor::ones({3})); }), "backward: seed of shape [3] for a tensor of shape [2]"));
    CHECK(contains(error_message([] { Tensor::ones({1}).backward(); }), "does not require grad"));
    tape().clear();
  }
}

TEST_SUITE("errors") {
  TEST_CASE("a failed check on vectors prints their values, as a student reading make grade needs") {
    CHECK(std::string(doctest::toString(std::vector<float>{0.f, 0.5f, -2.f}).c_str()) == "{0, 0.5, -2}");
    std::vector<int64_t> many(20);
    std::iota(many.begin(), many.end(), 0);
    CHECK(std::string(doctest::toString(many).c_str()) == "{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (20 values)}");
  }
}
