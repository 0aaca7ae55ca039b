// Gradient checks for every differentiable op: each op alone, on several shapes with
// batch > 1, channels > 1 and non-square inputs; then through a whole small network.
#include <limits>

#include "tests/helpers.h"

using namespace tg;
using test::away_from_zero;
using test::check_gradient;
using test::distinct_values;
using test::random_normal;

TEST_SUITE("ops-elementwise") {
  TEST_CASE("add, sub, mul, div with and without broadcasting") {
    const std::vector<std::pair<Shape, Shape>> shapes = {
        {{2, 3}, {2, 3}}, {{2, 3, 4}, {4}}, {{3, 1, 5}, {1, 4, 1}}, {{2, 3}, {}}, {{1}, {2, 5}}};
    uint64_t seed = 1;
    for (const auto& [sa, sb] : shapes) {
      CAPTURE(shape_str(sa));
      CAPTURE(shape_str(sb));
      Tensor a = random_normal(sa, seed++), b = away_from_zero(sb, seed++);
      check_gradient("add", [](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, {a, b});
      check_gradient("sub", [](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, {a, b});
      check_gradient("mul", [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b});
      Tensor denominator = away_from_zero(sb, seed++);
      for (int64_t i = 0; i < denominator.numel(); ++i) denominator.data()[i] += denominator.data()[i] > 0 ? 1.f : -1.f;
      check_gradient("div", [](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, denominator});
    }
  }

  TEST_CASE("broadcast result values") {
    Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor b = Tensor::from_vector({10, 20, 30}, {3});
    CHECK(add(a, b).to_vector() == std::vector<float>{11, 22, 33, 14, 25, 36});
    Tensor c = Tensor::from_vector({100, 200}, {2, 1});
    CHECK(add(a, c).to_vector() == std::vector<float>{101, 102, 103, 204, 205, 206});
    CHECK((a * 2.f).to_vector() == std::vector<float>{2, 4, 6, 8, 10, 12});
    CHECK((1.f - a).to_vector() == std::vector<float>{0, -1, -2, -3, -4, -5});
  }

  TEST_CASE("unary ops: neg exp log pow sqrt abs clamp") {
    for (const Shape& shape : {Shape{2, 3}, Shape{2, 3, 4, 5}, Shape{7}}) {
      CAPTURE(shape_str(shape));
      Tensor x = away_from_zero(shape, 11);
      Tensor positive = away_from_zero(shape, 12);
      for (int64_t i = 0; i < positive.numel(); ++i) positive.data()[i] = std::fabs(positive.data()[i]) + 0.5f;
      check_gradient("neg", [](const std::vector<Tensor>& in) { return neg(in[0]); }, {x});
      check_gradient("exp", [](const std::vector<Tensor>& in) { return tg::exp(in[0]); }, {x});
      check_gradient("log", [](const std::vector<Tensor>& in) { return tg::log(in[0]); }, {positive});
      check_gradient("pow", [](const std::vector<Tensor>& in) { return tg::pow(in[0], 3.f); }, {x});
      check_gradient("pow", [](const std::vector<Tensor>& in) { return tg::pow(in[0], -1.5f); }, {positive});
      check_gradient("sqrt", [](const std::vector<Tensor>& in) { return tg::sqrt(in[0]); }, {positive});
      check_gradient("abs", [](const std::vector<Tensor>& in) { return tg::abs(in[0]); }, {x});
      // Bounds chosen between the grid of |values| >= 0.1: no value sits within eps of a bound.
      Tensor y = distinct_values(shape, 13);
      check_gradient("clamp", [](const std::vector<Tensor>& in) { return clamp(in[0], -0.375f, 0.425f); }, {y});
    }
  }
}

TEST_SUITE("ops-reduce") {
  TEST_CASE("sum and mean over axes, keepdim or not") {
    Tensor x = random_normal({2, 3, 4}, 21);
    for (const std::vector<int64_t>& axes : {std::vector<int64_t>{}, {0}, {1}, {2}, {0, 2}, {-1}}) {
      for (bool keepdim : {false, true}) {
        CAPTURE(shape_str(axes));
        CAPTURE(keepdim);
        check_gradient("sum", [&](const std::vector<Tensor>& in) { return sum(in[0], axes, keepdim); }, {x});
        check_gradient("mean", [&](const std::vector<Tensor>& in) { return mean(in[0], axes, keepdim); }, {x});
        Tensor d = distinct_values({2, 3, 4}, 22);
        check_gradient("max", [&](const std::vector<Tensor>& in) { return tg::max(in[0], axes, keepdim); }, {d});
      }
    }
  }

  TEST_CASE("reduction values and shapes") {
    Tensor x = Tensor::from_vector({1, 5, 3, 4, 2, 6}, {2, 3});
    CHECK(sum(x).item() == 21.f);
    CHECK(sum(x, {0}).to_vector() == std::vector<float>{5, 7, 9});
    CHECK(mean(x, {1}).to_vector() == std::vector<float>{3, 4});
    CHECK(tg::max(x, {1}).to_vector() == std::vector<float>{5, 6});
    CHECK(sum(x, {1}, true).shape() == Shape{2, 1});
  }
}

TEST_SUITE("ops-matmul-shape") {
  TEST_CASE("matmul") {
    for (auto [m, k, n] : {std::tuple{2, 3, 4}, std::tuple{5, 1, 3}, std::tuple{1, 7, 2}, std::tuple{9, 13, 11}}) {
      CAPTURE(m);
      CAPTURE(k);
      CAPTURE(n);
      Tensor a = random_normal({m, k}, 31), b = random_normal({k, n}, 32);
      check_gradient("matmul", [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b});
    }
    Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor b = Tensor::from_vector({1, 0, 0, 1, 1, 1}, {3, 2});
    CHECK(matmul(a, b).to_vector() == std::vector<float>{4, 5, 10, 11});
  }

  TEST_CASE("reshape, flatten, transpose, permute") {
    Tensor x = random_normal({2, 3, 4, 5}, 41);
    check_gradient("reshape", [](const std::vector<Tensor>& in) { return reshape(in[0], {6, -1}); }, {x});
    check_gradient("flatten", [](const std::vector<Tensor>& in) { return flatten(in[0]); }, {x});
    check_gradient("transpose", [](const std::vector<Tensor>& in) { return transpose(in[0], 1, 3); }, {x});
    check_gradient("permute", [](const std::vector<Tensor>& in) { return permute(in[0], {2, 0, 3, 1}); }, {x});
    // reshape is a view: same storage, same values.
    CHECK(reshape(x, {-1}).data() == x.data());
    Tensor m = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    CHECK(transpose(m, 0, 1).to_vector() == std::vector<float>{1, 4, 2, 5, 3, 6});
  }

  TEST_CASE("slice, cat, pad") {
    Tensor x = random_normal({2, 5, 3}, 42), y = random_normal({2, 2, 3}, 43);
    check_gradient("slice", [](const std::vector<Tensor>& in) { return slice(in[0], 1, 1, 4); }, {x});
    check_gradient("slice", [](const std::vector<Tensor>& in) { return slice(in[0], -1, 2, 3); }, {x});
    check_gradient("cat", [](const std::vector<Tensor>& in) { return cat({in[0], in[1], in[0]}, 1); }, {x, y});
    check_gradient("pad", [](const std::vector<Tensor>& in) { return pad(in[0], {0, 1, 2, 0, 1, 1}, 0.5f); }, {x});
    Tensor m = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
    CHECK(pad(m, {1, 0, 0, 1}).to_vector() == std::vector<float>{0, 0, 0, 1, 2, 0, 3, 4, 0});
    CHECK(cat({m, m}, 0).shape() == Shape{4, 2});
    CHECK(slice(m, 1, 1, 2).to_vector() == std::vector<float>{2, 4});
  }
}

TEST_SUITE("ops-resample") {
  TEST_CASE("affine_resample: identity, whole-pixel shifts and a half turn move values exactly") {
    const Tensor x = reshape(Tensor::arange(0, 12), {1, 1, 3, 4});
    CHECK(affine_resample(x, {}).to_vector() == x.to_vector());
    // Shifted one pixel right: column 0 reads outside the image (0), column 1 reads column 0.
    AffineParams right;
    right.shift_x = 1.f;
    CHECK(affine_resample(x, right).to_vector() == std::vector<float>{0, 0, 1, 2, 0, 4, 5, 6, 0, 8, 9, 10});
    // A half turn about the center reverses both axes.
    AffineParams half_turn;
    half_turn.angle = static_cast<float>(M_PI);
    const std::vector<float> turned = affine_resample(x, half_turn).to_vector();
    for (int i = 0; i < 12; ++i) CHECK(turned[i] == doctest::Approx(11 - i).epsilon(1e-5));
    // Scaling by 2 about the center of a 3x3 image keeps the center and spreads the rest.
    AffineParams zoom;
    zoom.scale = 2.f;
    const Tensor y = reshape(Tensor::arange(0, 9), {1, 1, 3, 3});
    const std::vector<float> zoomed = affine_resample(y, zoom).to_vector();
    CHECK(zoomed[4] == 4.f);
    CHECK(zoomed[0] == doctest::Approx(0.25 * (0 + 1 + 3 + 4)));  // reads (0.5, 0.5)
    CHECK_THROWS_WITH_AS(affine_resample(Tensor::zeros({3, 3}), {}), doctest::Contains("[3,3]"), Error);
    AffineParams bad;
    bad.scale = 0.f;
    CHECK_THROWS_WITH_AS(affine_resample(x, bad), doctest::Contains("scale 0"), Error);
  }

  TEST_CASE("affine_resample gradients: batch, channels, non-square, turned, scaled and shifted") {
    NEEDS_TASKS("tape-reverse-walk");
    for (const auto& [shape, params] : std::vector<std::pair<Shape, AffineParams>>{
             {{2, 3, 5, 7}, {1.2f, 0.3f, 0.7f, -1.3f}},
             {{1, 2, 6, 4}, {0.8f, -0.5f, 0.f, 0.4f}},
             {{3, 1, 4, 4}, {1.f, 0.f, 0.25f, 0.f}}}) {
      const Tensor x = random_normal(shape, 61);
      test::check_rule("affine_resample", [p = params](const std::vector<Tensor>& in) { return affine_resample(in[0], p); }, {x});
      check_gradient("affine_resample", [p = params](const std::vector<Tensor>& in) {
        return mul(affine_resample(in[0], p), affine_resample(in[0], p));
      }, {x});
    }
  }
}

TEST_SUITE("ops-activation") {
  TEST_CASE("sigmoid, tanh") {
    for (const Shape& shape : {Shape{3, 4}, Shape{2, 3, 5, 4}}) {
      Tensor x = random_normal(shape, 51);
      check_gradient("sigmoid", [](const std::vector<Tensor>& in) { return sigmoid(in[0]); }, {x});
      check_gradient("tanh", [](const std::vector<Tensor>& in) { return tg::tanh(in[0]); }, {x});
    }
  }

  TEST_CASE("dropout: gradient through a fixed mask, identity outside training") {
    Tensor x = random_normal({4, 6}, 52);
    check_gradient("dropout", [](const std::vector<Tensor>& in) {
      Generator gen(7);  // the same mask on every evaluation
      return dropout(in[0], 0.4f, true, gen);
    }, {x});
    Generator gen(7);
    Tensor y = dropout(x, 0.4f, true, gen);
    int zeros = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      if (y.data()[i] == 0.f) ++zeros;
      else CHECK(y.data()[i] == doctest::Approx(x.data()[i] / 0.6f));
    }
    CHECK(zeros > 0);
    CHECK(zeros < y.numel());
    CHECK(dropout(x, 0.4f, false, gen).same_as(x));
  }
}

TASK_PROBE("relu") { test::probe_rule([](const Tensor& x) { return relu(x); }, {2}, Op::ReLU.default_rule); }

TEST_SUITE("relu") {
  TEST_CASE("relu forward values and vanilla gradient") {
    Tensor x = Tensor::from_vector({-2, -0.5f, 0.5f, 3}, {2, 2});
    CHECK_VALUES(relu(x).to_vector(), {0, 0, 0.5f, 3});
    for (const Shape& shape : {Shape{3, 4}, Shape{2, 3, 5, 4}}) {
      Tensor xs = away_from_zero(shape, 61);
      test::check_rule("relu", [](const std::vector<Tensor>& in) { return relu(in[0]); }, {xs});
    }
  }

  TEST_CASE("relu6 forward values; its vanilla rule is (0 < x < 6) * g, checked against central differences") {
    Tensor x = Tensor::from_vector({-2, 0, 0.5f, 5.9f, 6, 7.5f}, {2, 3});
    CHECK_VALUES(relu6(x).to_vector(), {0, 0, 0.5f, 5.9f, 6, 6});
    // At the kinks the rule lets nothing through, as PyTorch's hardtanh: 0 at x = 0 and at x = 6.
    Tensor leaf = x.clone().requires_grad_();
    const Entry entry = [&] {
      Tensor y = relu6(leaf);
      Entry copy = *tape().producer(y);
      tape().discard_last();
      return copy;
    }();
    CHECK_VALUES(rules::vanilla_relu(entry, Tensor::full({2, 3}, 2.f)).at(0).to_vector(), {0, 0, 2, 2, 0, 0});
    // Values spread over [-3, 9]: both kinks inside the range, none within eps of a value.
    for (const Shape& shape : {Shape{3, 4}, Shape{2, 3, 5, 4}}) {
      Tensor xs = away_from_zero(shape, 62);
      for (int64_t i = 0; i < xs.numel(); ++i) xs.data()[i] = xs.data()[i] * 6.f + 3.f;
      for (int64_t i = 0; i < xs.numel(); ++i)
        if (std::fabs(xs.data()[i] - 6.f) < 0.05f) xs.data()[i] += 0.1f;
      test::check_rule("relu6", [](const std::vector<Tensor>& in) { return relu6(in[0]); }, {xs});
    }
  }
}

TASK_PROBE("linear-backward") {
  const Tensor w = Tensor::ones({3, 2});
  test::probe_rule([&](const Tensor& x) { return linear(x, w); }, {1, 2}, Op::Linear.default_rule);
}

TEST_SUITE("linear-backward") {
  TEST_CASE("linear gradients for input, weight and bias") {
    for (auto [n, in_f, out_f] : {std::tuple{2, 3, 4}, std::tuple{5, 7, 2}, std::tuple{1, 4, 3}}) {
      Tensor x = random_normal({n, in_f}, 71), w = random_normal({out_f, in_f}, 72), b = random_normal({out_f}, 73);
      test::check_rule("linear", [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }, {x, w, b});
      test::check_rule("linear", [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); }, {x, w});
    }
  }
}

namespace {
struct ConvCase {
  Shape input, weight;
  Pair2 stride, padding, dilation;
  int64_t groups;
};
// The conv2d-backward task's sub-cases: each test case below is one share of its points.
// Every case has batch > 1 or channels > 1, and non-square images or kernels.
const std::vector<ConvCase> conv_stride_cases = {
    {{2, 3, 5, 7}, {4, 3, 3, 2}, 1, 0, 1, 1},
    {{2, 3, 7, 6}, {2, 3, 3, 3}, 2, 0, 1, 1},
    {{3, 2, 7, 6}, {3, 2, 2, 3}, {2, 1}, 0, 1, 1},
    {{2, 2, 8, 9}, {3, 2, 3, 2}, {1, 3}, 0, 1, 1},
};
const std::vector<ConvCase> conv_padding_cases = {
    {{2, 3, 6, 5}, {2, 3, 3, 3}, 1, 1, 1, 1},
    {{2, 3, 6, 5}, {2, 3, 3, 3}, 2, 1, 1, 1},
    {{3, 2, 7, 6}, {3, 2, 2, 3}, {2, 1}, {1, 2}, 1, 1},
    // One image with stride 1 takes the engine's direct path (kernels::conv2d_stride1): more
    // than 8 output channels (two channel blocks), rows wider than 16 (two pieces), padding up
    // to kernel-1 (dx by the same kernel) and beyond it (dx by im2col again).
    {{1, 3, 6, 17}, {9, 3, 3, 3}, 1, 1, 1, 1},
    {{1, 2, 5, 4}, {3, 2, 2, 3}, 1, {1, 2}, 1, 1},
    {{1, 2, 4, 5}, {2, 2, 2, 2}, 1, 2, 1, 1},
};
const std::vector<ConvCase> conv_dilation_cases = {
    {{2, 2, 7, 8}, {2, 2, 3, 3}, 1, 2, 2, 1},
    {{2, 2, 6, 9}, {3, 2, 2, 3}, 1, 0, {1, 2}, 1},
    {{2, 3, 9, 8}, {2, 3, 3, 2}, 2, 1, {2, 3}, 1},
};
const std::vector<ConvCase> conv_groups_cases = {
    {{2, 4, 5, 6}, {6, 2, 3, 3}, 1, 1, 1, 2},
    {{1, 4, 6, 5}, {4, 1, 3, 3}, 2, 1, {1, 2}, 4},
    // Depthwise (groups = channels, as MobileNet's), batch 2, stride 2, and with a depth
    // multiplier of 2 (two output channels per input channel).
    {{2, 5, 7, 6}, {5, 1, 3, 3}, 2, 1, 1, 5},
    {{2, 3, 6, 7}, {6, 1, 3, 3}, 1, 1, 1, 3},
};
// With a bias: db is dY summed over images and positions (here with stride, padding, groups).
const std::vector<ConvCase> conv_bias_cases = {
    {{2, 3, 5, 7}, {4, 3, 3, 2}, 1, 0, 1, 1},
    {{2, 3, 6, 5}, {2, 3, 3, 3}, 2, 1, 1, 1},
    {{2, 4, 5, 6}, {6, 2, 3, 3}, 1, 1, 1, 2},
    {{1, 3, 6, 17}, {9, 3, 3, 3}, 1, 1, 1, 1},
};

std::vector<ConvCase> all_conv_cases() {
  std::vector<ConvCase> all;
  for (const auto* cases : {&conv_stride_cases, &conv_padding_cases, &conv_dilation_cases, &conv_groups_cases, &conv_bias_cases})
    all.insert(all.end(), cases->begin(), cases->end());
  return all;
}

// Checks conv2d's rule on each case against central differences: dX and dW, and db too
// when with_bias (without it the op has no bias input, so a wrong db cannot fail these).
void check_conv_rule(const std::vector<ConvCase>& cases, bool with_bias, uint64_t seed) {
  for (const ConvCase& c : cases) {
    CAPTURE(shape_str(c.input));
    CAPTURE(shape_str(c.weight));
    Tensor x = random_normal(c.input, seed++), w = random_normal(c.weight, seed++), b = random_normal({c.weight[0]}, seed++);
    if (with_bias)
      test::check_rule("conv2d", [&](const std::vector<Tensor>& in) {
        return conv2d(in[0], in[1], in[2], c.stride, c.padding, c.dilation, c.groups);
      }, {x, w, b});
    else
      test::check_rule("conv2d", [&](const std::vector<Tensor>& in) {
        return conv2d(in[0], in[1], Tensor(), c.stride, c.padding, c.dilation, c.groups);
      }, {x, w});
  }
}
}  // namespace

TASK_PROBE("conv2d-backward") {
  const Tensor w = Tensor::ones({1, 1, 2, 2});
  test::probe_rule([&](const Tensor& x) { return conv2d(x, w); }, {1, 1, 3, 3}, Op::Conv2d.default_rule);
}

TEST_SUITE("conv2d-backward") {
  TEST_CASE("stride: 1, 2, (2,1) and (1,3), no padding, no bias") { check_conv_rule(conv_stride_cases, false, 81); }
  TEST_CASE("padding: 1, (1,2) and beyond the kernel, stride 1 and 2, no bias") { check_conv_rule(conv_padding_cases, false, 181); }
  TEST_CASE("dilation: 2, (1,2) and (2,3), no bias") { check_conv_rule(conv_dilation_cases, false, 281); }
  TEST_CASE("groups: 2, depthwise, depth multiplier 2, no bias") { check_conv_rule(conv_groups_cases, false, 381); }
  TEST_CASE("bias: db with stride, padding and groups") { check_conv_rule(conv_bias_cases, true, 481); }
}

TEST_SUITE("conv2d-backward") {
  TEST_CASE("threads: dW is the same on one thread and on all of them (images summed in parallel do not race)") {
    // A stride-2 convolution takes the im2col + gemm path, images shared over the threads.
    // Threads adding into one dW at once lose updates: whole images' terms go missing. Many
    // images with few output positions each make every image's gemm mostly a read-modify-write
    // of all of dW, so a race shows up whenever both threads run at once.
    Tensor x = random_normal({256, 16, 7, 7}, 71), w = random_normal({64, 16, 3, 3}, 72), b = random_normal({64}, 73);
    const Tensor seed = random_normal({256, 64, 3, 3}, 74, false);
    const int threads = kernels::num_threads();
    auto weight_gradient = [&](int n) {
      kernels::set_num_threads(n);
      const Tensor y = conv2d(x, w, b, 2, 0, 1, 1);
      const Entry entry = *tape().producer(y);
      tape().discard_last();
      return resolve_rule(entry)(entry, seed).at(1);
    };
    // A race needs both threads inside their halves at once, which a busy machine may not
    // allow on every run: up to 50 runs, stopping at the first difference.
    const Tensor one = weight_gradient(1);
    int64_t differing = 0;
    for (int round = 0; round < 50 && differing == 0; ++round) {
      const Tensor many = weight_gradient(threads);
      for (int64_t i = 0; i < one.numel(); ++i)
        differing += !(many.data()[i] == doctest::Approx(one.data()[i]).epsilon(1e-4).scale(1.0));
    }
    kernels::set_num_threads(threads);
    INFO("dW elements that differ between 1 thread and " << threads << ": " << differing);
    CHECK(differing == 0);
    MESSAGE("compared 1 thread with " << threads);
  }
}

TEST_SUITE("ops-conv") {
  TEST_CASE("TensorFlow SAME on stride 2: pad bottom and right, then convolve, checked through the tape") {
    NEEDS_TASKS("tape-reverse-walk", "conv2d-backward");
    // A 3x3 kernel with stride 2: SAME gives ceil(side / 2) outputs and pads what that needs,
    // the odd one at the bottom or right: side 7 pads (1, 1), side 8 and side 6 pad (0, 1).
    // conv2d's extra_padding reads that odd row and column as zeros without a padded copy
    // (the TFLite importer uses it): the same values and the same gradients as pad + conv2d.
    struct Case { Shape input, weight; int64_t groups; std::vector<int64_t> pads; bool gradcheck; };
    for (const Case& c : std::vector<Case>{{{2, 3, 7, 8}, {4, 3, 3, 3}, 1, {0, 0, 0, 0, 1, 1, 0, 1}, true},
                                           {{2, 4, 6, 6}, {4, 1, 3, 3}, 4, {0, 0, 0, 0, 0, 1, 0, 1}, true},
                                           // depthwise with a multiplier of 2, one image (the engine's kernels)
                                           {{1, 3, 9, 10}, {6, 1, 3, 3}, 3, {0, 0, 0, 0, 1, 1, 0, 1}, true},
                                           // one image large enough to be split in bands of output rows
                                           {{1, 8, 48, 49}, {32, 8, 3, 3}, 1, {0, 0, 0, 0, 0, 1, 1, 1}, false}}) {
      CAPTURE(shape_str(c.input));
      Tensor x = random_normal(c.input, 91), w = random_normal(c.weight, 92), b = random_normal({c.weight[0]}, 93);
      const Pair2 before{c.pads[4], c.pads[6]}, extra{c.pads[5] - c.pads[4], c.pads[7] - c.pads[6]};
      if (c.gradcheck) {
        check_gradient("same-padded conv", [&](const std::vector<Tensor>& in) {
          return conv2d(pad(in[0], c.pads), in[1], in[2], 2, 0, 1, c.groups);
        }, {x, w, b});
        check_gradient("conv with extra padding", [&](const std::vector<Tensor>& in) {
          return conv2d(in[0], in[1], in[2], 2, before, 1, c.groups, extra);
        }, {x, w, b});
      }
      const Tensor y = conv2d(pad(x, c.pads), w, b, 2, 0, 1, c.groups);
      const Shape& input = c.input;
      CHECK(y.dim(2) == (input[2] + 1) / 2);  // ceil(in / stride), as SAME promises
      CHECK(y.dim(3) == (input[3] + 1) / 2);
      // Both ways on one seed: outputs and all three gradients agree.
      const Tensor seed = random_normal(y.shape(), 94, false);
      std::vector<std::vector<float>> results[2];
      for (int folded = 0; folded < 2; ++folded) {
        x.zero_grad(), w.zero_grad(), b.zero_grad();
        const Tensor out = folded ? conv2d(x, w, b, 2, before, 1, c.groups, extra) : conv2d(pad(x, c.pads), w, b, 2, 0, 1, c.groups);
        REQUIRE(out.shape() == y.shape());
        out.backward(seed);
        results[folded] = {out.to_vector(), x.grad().to_vector(), w.grad().to_vector(), b.grad().to_vector()};
      }
      for (size_t k = 0; k < 4; ++k) {
        CAPTURE(k);
        REQUIRE(results[0][k].size() == results[1][k].size());
        for (size_t i = 0; i < results[0][k].size(); ++i)
          REQUIRE(results[1][k][i] == doctest::Approx(results[0][k][i]).epsilon(1e-4).scale(1.0));
      }
    }
  }

  TEST_CASE("conv2d forward equals the direct seven-loop convolution") {
    uint64_t seed = 91;
    for (const ConvCase& c : all_conv_cases()) {
      Tensor x = random_normal(c.input, seed++, false), w = random_normal(c.weight, seed++, false);
      Tensor b = random_normal({c.weight[0]}, seed++, false);
      Tensor y = conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups);
      kernels::ConvGeometry g{c.input[1], c.input[2], c.input[3], c.weight[2], c.weight[3], c.stride.h, c.stride.w,
                              c.padding.h, c.padding.w, c.dilation.h, c.dilation.w};
      REQUIRE(y.shape() == Shape{c.input[0], c.weight[0], g.out_h(), g.out_w()});
      std::vector<float> expected(static_cast<size_t>(y.numel()));
      kernels::conv2d_reference(x.data(), c.input[0], g, w.data(), b.data(), c.weight[0], c.groups, expected.data());
      for (int64_t i = 0; i < y.numel(); ++i) REQUIRE(y.data()[i] == doctest::Approx(expected[i]).epsilon(1e-4));
    }
  }

  TEST_CASE("conv2d on a batch that spans several column chunks equals per-image results") {
    Tensor x = random_normal({40, 8, 30, 30}, 95, false), w = random_normal({4, 8, 5, 5}, 96, false);
    Tensor y = conv2d(x, w, Tensor(), 1, 2);
    Tensor last = conv2d(slice(x, 0, 39, 40), w, Tensor(), 1, 2);
    for (int64_t i = 0; i < last.numel(); ++i)
      REQUIRE(y.data()[39 * last.numel() + i] == doctest::Approx(last.data()[i]).epsilon(1e-5));
  }
}

namespace {
struct PoolCase {
  Shape input;
  Pair2 kernel, stride, padding;
};
// The max-pool rule against central differences (distinct values: every maximum is unique).
void check_pool_rule(const std::vector<PoolCase>& cases, uint64_t seed) {
  for (const PoolCase& c : cases) {
    CAPTURE(shape_str(c.input));
    Tensor x = distinct_values(c.input, seed++);
    test::check_rule("max_pool2d", [&](const std::vector<Tensor>& in) {
      return max_pool2d(in[0], c.kernel, c.stride, c.padding);
    }, {x});
  }
}
}  // namespace

TASK_PROBE("maxpool-backward") {
  test::probe_rule([](const Tensor& x) { return max_pool2d(x, 2); }, {1, 1, 2, 2}, Op::MaxPool2d.default_rule);
}

// The maxpool-backward task's sub-cases: each test case is one share of its points.
TEST_SUITE("maxpool-backward") {
  TEST_CASE("disjoint windows: 2x2 stride 2 and 3x2 stride (3,2), odd sizes with rows no window covers") {
    check_pool_rule({PoolCase{{2, 3, 6, 8}, 2, 2, 0}, PoolCase{{1, 2, 7, 9}, 2, 2, 0}, PoolCase{{2, 2, 7, 5}, {3, 2}, {3, 2}, 0}}, 101);
  }

  TEST_CASE("overlapping windows: a maximum shared by two windows gets both gradients") {
    check_pool_rule({PoolCase{{2, 2, 7, 9}, 3, 2, 0}, PoolCase{{2, 3, 6, 7}, {3, 2}, 1, 0}}, 111);
    // By hand, one row of 5: windows [0..2] and [2..4] (kernel 3, stride 2) share pixel 2, the max of both.
    Tensor x = Tensor::from_vector({1, 2, 9, 3, 4}, {1, 1, 1, 5}, true);
    Tensor y = max_pool2d(x, {1, 3}, {1, 2});
    CHECK_VALUES(y.to_vector(), {9, 9});
    const std::vector<Tensor> grads = test::call_rule_directly(y, Tensor::from_vector({0.5f, 2.f}, {1, 1, 1, 2}));
    REQUIRE(grads.size() == 1);
    CHECK_VALUES(grads[0].to_vector(), {0, 0, 2.5f, 0, 0});
  }

  TEST_CASE("padding: windows that hang over the edge, never sending gradient to the padding") {
    check_pool_rule({PoolCase{{2, 3, 7, 6}, 3, 2, 1}, PoolCase{{1, 2, 5, 8}, {2, 3}, {1, 2}, {1, 1}}}, 121);
    // By hand: all values negative, so the zero-free padding must never win a window.
    Tensor x = Tensor::from_vector({-4, -1, -3, -2}, {1, 1, 2, 2}, true);
    Tensor y = max_pool2d(x, 2, 1, 1);  // 3x3 windows' outputs, each over the pixels it covers
    CHECK_VALUES(y.to_vector(), {-4, -1, -1, -3, -1, -1, -3, -2, -2});
    const std::vector<Tensor> grads = test::call_rule_directly(y, Tensor::ones(y.shape()));
    REQUIRE(grads.size() == 1);
    CHECK_VALUES(grads[0].to_vector(), {1, 4, 2, 2});
  }

  TEST_CASE("ties: the first maximum in reading order takes the gradient, as in PyTorch") {
    // By hand: window 1 is all 2s, window 2 has its 1s at (0,1) and (1,0).
    Tensor x = Tensor::from_vector({2, 2, 0, 1, 2, 2, 1, 0}, {1, 1, 2, 4}, true);
    const std::vector<Tensor> hand = test::call_rule_directly(max_pool2d(x, 2), Tensor::from_vector({3, 5}, {1, 1, 1, 2}));
    REQUIRE(hand.size() == 1);
    CHECK_VALUES(hand[0].to_vector(), {3, 0, 0, 5, 0, 0, 0, 0});
    // A 3x3 window with its 2 three times: the first in reading order, (0, 1), takes it all.
    Tensor x3 = Tensor::from_vector({0, 2, 2, 2, 1, 2, 0, 0, 1}, {1, 1, 3, 3}, true);
    const std::vector<Tensor> three = test::call_rule_directly(max_pool2d(x3, 3), Tensor::from_vector({7}, {1, 1, 1, 1}));
    REQUIRE(three.size() == 1);
    CHECK_VALUES(three[0].to_vector(), {0, 7, 0, 0, 0, 0, 0, 0, 0});
    // Values from {0, 1, 2}, so most windows hold a tie; shapes cover the engine's vectorized
    // rows (widths 8, 9, 70) and odd sizes. Checked by properties, window by window: all of
    // its gradient lands on one pixel, that pixel holds the window's maximum, and every pixel
    // before it in reading order is smaller.
    for (const Shape& shape : {Shape{2, 3, 6, 8}, Shape{1, 2, 7, 9}, Shape{2, 1, 4, 70}, Shape{1, 1, 2, 2}}) {
      CAPTURE(shape_str(shape));
      Generator gen(9);
      Tensor xs = Tensor::empty(shape);
      for (int64_t i = 0; i < xs.numel(); ++i) xs.data()[i] = static_cast<float>(gen.next_u64() % 3);
      xs.requires_grad_();
      const Tensor y = max_pool2d(xs, 2);
      Tensor g = test::random_normal(y.shape(), 10, false);
      for (int64_t i = 0; i < g.numel(); ++i) g.data()[i] += g.data()[i] >= 0 ? 0.5f : -0.5f;  // never near 0
      const std::vector<Tensor> grads = test::call_rule_directly(y, g);
      REQUIRE(grads.size() == 1);
      const int64_t planes = shape[0] * shape[1], H = shape[2], W = shape[3], oh = H / 2, ow = W / 2;
      int64_t nonzero = 0;
      for (int64_t i = 0; i < grads[0].numel(); ++i) nonzero += grads[0].data()[i] != 0.f;
      CHECK(nonzero == planes * oh * ow);  // one pixel per window (disjoint windows)
      for (int64_t plane = 0; plane < planes; ++plane)
        for (int64_t oy = 0; oy < oh; ++oy)
          for (int64_t ox = 0; ox < ow; ++ox) {
            const float window_grad = g.data()[(plane * oh + oy) * ow + ox];
            int taken = 0;
            bool earlier_smaller = true;
            float earlier_max = -1.f;
            for (int64_t k = 0; k < 4; ++k) {
              const int64_t at = plane * H * W + (2 * oy + k / 2) * W + 2 * ox + k % 2;
              if (grads[0].data()[at] == window_grad) {
                ++taken;
                CHECK(xs.data()[at] == y.data()[(plane * oh + oy) * ow + ox]);
                earlier_smaller = earlier_max < xs.data()[at];
              }
              earlier_max = std::max(earlier_max, xs.data()[at]);
            }
            REQUIRE(taken == 1);
            REQUIRE(earlier_smaller);
          }
    }
  }
}

TEST_SUITE("ops-pool") {
  TEST_CASE("avg_pool2d and adaptive_avg_pool2d gradients") {
    Tensor x = random_normal({2, 3, 7, 6}, 111);
    check_gradient("avg_pool2d", [](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 2); }, {x});
    check_gradient("avg_pool2d", [](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 3, 2, 1); }, {x});
    check_gradient("adaptive_avg_pool2d", [](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], {3, 4}); }, {x});
    check_gradient("adaptive_avg_pool2d", [](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], 1); }, {x});
    Tensor m = Tensor::from_vector({1, 2, 3, 4}, {1, 1, 2, 2});
    CHECK(adaptive_avg_pool2d(m, 1).item() == 2.5f);
    CHECK(avg_pool2d(m, 2).item() == 2.5f);
  }
}

TEST_SUITE("ops-loss") {
  TEST_CASE("softmax, log_softmax along any axis") {
    Tensor x = random_normal({3, 4, 2}, 121);
    for (int axis : {0, 1, -1}) {
      check_gradient("softmax", [=](const std::vector<Tensor>& in) { return softmax(in[0], axis); }, {x});
      check_gradient("log_softmax", [=](const std::vector<Tensor>& in) { return log_softmax(in[0], axis); }, {x});
    }
    Tensor s = softmax(Tensor::from_vector({1000, 1000}, {1, 2}));
    CHECK(s.at({0, 0}) == doctest::Approx(0.5f));
    CHECK(s.at({0, 1}) == doctest::Approx(0.5f));
  }

  TEST_CASE("cross_entropy, nll, mse") {
    Tensor logits = random_normal({4, 5}, 131);
    const std::vector<int64_t> labels = {0, 3, 4, 3};
    check_gradient("cross_entropy", [&](const std::vector<Tensor>& in) { return cross_entropy(in[0], labels); }, {logits});
    Tensor log_probabilities = log_softmax(logits).detach().requires_grad_();
    check_gradient("nll", [&](const std::vector<Tensor>& in) { return nll(in[0], labels); }, {log_probabilities});
    Tensor p = random_normal({3, 4}, 132), t = random_normal({3, 4}, 133);
    check_gradient("mse", [](const std::vector<Tensor>& in) { return mse(in[0], in[1]); }, {p, t});
    // Uniform logits over 5 classes: the loss is log 5.
    CHECK(cross_entropy(Tensor::zeros({2, 5}), {1, 2}).item() == doctest::Approx(std::log(5.f)));
    CHECK(mse(Tensor::from_vector({1, 2}, {2}), Tensor::from_vector({3, 2}, {2})).item() == 2.f);
    // nll after log_softmax is cross_entropy, through the tape.
    NEEDS_TASKS("tape-reverse-walk");
    check_gradient("nll(log_softmax)", [&](const std::vector<Tensor>& in) { return nll(log_softmax(in[0]), labels); }, {logits});
  }
}

TEST_SUITE("ops-network") {
  TEST_CASE("the whole tape: a small CNN's gradients for input and every parameter") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward");
    Tensor x = random_normal({2, 2, 8, 7}, 141);
    Tensor w1 = random_normal({3, 2, 3, 3}, 142), b1 = random_normal({3}, 143);
    Tensor w2 = random_normal({5, 3 * 3 * 3}, 144), b2 = random_normal({5}, 145);
    check_gradient("small cnn", [](const std::vector<Tensor>& in) {
      Tensor h = relu(conv2d(in[0], in[1], in[2], 1, 1));
      h = max_pool2d(h, 3, 2);
      return cross_entropy(linear(flatten(h), in[3], in[4]), {1, 4});
    }, {x, w1, b1, w2, b2});
  }
}

TEST_SUITE("ops-numerics") {
  TEST_CASE("max-pool sends a NaN window's gradient to its NaN, as PyTorch's argmax does") {
    NEEDS_TASKS("maxpool-backward");
    for (int position = 0; position < 4; ++position) {
      Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {1, 1, 4, 4}, true);
      const int64_t at = (position / 2) * 4 + position % 2;  // inside the top-left window
      x.data()[at] = std::numeric_limits<float>::quiet_NaN();
      const Tensor y = max_pool2d(x, 2);
      const Entry entry = *tape().producer(y);
      tape().discard_last();
      const Tensor dx = resolve_rule(entry)(entry, Tensor::ones({1, 1, 2, 2})).at(0);
      CAPTURE(position);
      CHECK(dx.data()[at] == 1.f);
      CHECK(dx.data()[15] == 1.f);
    }
  }

  // Values PyTorch 1.13 gives for the same calls (float32).
  TEST_CASE("softmax and cross-entropy with large logits keep their small differences") {
    const Tensor p = softmax(Tensor::from_vector({1000.f, 1000.f, 1000.f}, {1, 3}), 1);
    for (int64_t c = 0; c < 3; ++c) CHECK(p.data()[c] == doctest::Approx(1.f / 3.f).epsilon(1e-6));
    CHECK(log_softmax(Tensor::from_vector({1000.f, 1000.f, 1000.f}, {1, 3}), 1).data()[0] ==
          doctest::Approx(-1.0986123f).epsilon(1e-6));
    // cross_entropy([1e4, 9988], class 0) = log(1 + e^-12) = 6.144e-6, not 0.
    Tensor logits = Tensor::from_vector({1e4f, 9988.f}, {1, 2}, true);
    const Tensor loss = cross_entropy(logits, {0});
    CHECK(loss.item() == doctest::Approx(6.144e-6).epsilon(0.02));
    NEEDS_TASKS("tape-reverse-walk");
    loss.backward();
    CHECK(logits.grad().data()[0] == doctest::Approx(-6.144e-6).epsilon(0.02));  // softmax - 1, not 0
    CHECK(logits.grad().data()[1] == doctest::Approx(6.144e-6).epsilon(0.02));
  }

  TEST_CASE("d/dx x^0 is 0, also at x = 0") {
    Tensor x = Tensor::from_vector({0.f, 2.f}, {2}, true);
    const Tensor y = tg::pow(x, 0.f);
    CHECK(y.to_vector() == std::vector<float>{1.f, 1.f});
    const Entry entry = *tape().producer(y);
    tape().discard_last();
    CHECK(resolve_rule(entry)(entry, Tensor::ones({2})).at(0).to_vector() == std::vector<float>{0.f, 0.f});
  }

  TEST_CASE("NaN is never hidden: relu, relu6 and max give NaN where PyTorch does") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(relu6(Tensor::from_vector({nan}, {1})).item()));
    CHECK(std::isnan(tg::max(Tensor::from_vector({1.f, nan, 3.f}, {3})).item()));
    CHECK(std::isnan(tg::max(Tensor::from_vector({nan, 1.f, 3.f}, {3})).item()));
    CHECK(tg::max(Tensor::from_vector({1.f, 5.f, 3.f}, {3})).item() == 5.f);
    // max_pool2d: the usual 2x2 layer (fast kernel) and overlapping 3x3 windows (general loop)
    // both give NaN for a window with a NaN in any position, and send its gradient there.
    for (int position = 0; position < 4; ++position) {
      Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {1, 1, 4, 4});
      const int64_t at = (position / 2) * 4 + position % 2;  // inside the top-left window
      x.data()[at] = nan;
      const Tensor pooled = max_pool2d(x, 2);
      CAPTURE(position);
      CHECK(std::isnan(pooled.data()[0]));
      CHECK(pooled.data()[3] == 16.f);
      CHECK(std::isnan(max_pool2d(x, 3, 1).data()[0]));
    }
    NEEDS_TASKS("relu");
    const Tensor r = relu(Tensor::from_vector({nan, -1.f, 2.f}, {3}));
    CHECK(std::isnan(r.data()[0]));
    CHECK(r.data()[1] == 0.f);
    CHECK(r.data()[2] == 2.f);
  }
}
