// The tape: the reverse walk, accumulation, freeing, NoGrad, hooks, retain_graph,
// and the backward-rule overrides (per entry, scoped guards, defaults).
#include <limits>

#include "tests/helpers.h"

using namespace tg;
using test::away_from_zero;
using test::random_normal;

namespace {
// The gradient of sum(relu(x) * g) with respect to x under whatever rule is active.
std::vector<float> relu_gradient(const Tensor& x, const Tensor& g) {
  Tensor leaf = x.clone().requires_grad_();
  relu(leaf).backward(g);
  return leaf.grad().to_vector();
}

// The gradient from `rule` alone, called on a relu tape entry built by hand (input x,
// output max(x, 0), clamp's answer): neither the reverse walk nor relu's own forward pass runs.
std::vector<float> rule_gradient(const BackwardRule& rule, const Tensor& x, const Tensor& g) {
  Entry entry;
  entry.op = &Op::ReLU;
  entry.inputs = {x};
  {
    NoGrad no_grad;
    entry.output = clamp(x, 0.f, std::numeric_limits<float>::infinity());
  }
  return rule(entry, g).at(0).to_vector();
}

const Tensor kX = Tensor::from_vector({-1.f, -2.f, 3.f, 4.f}, {4});
const Tensor kG = Tensor::from_vector({5.f, -6.f, 7.f, -8.f}, {4});
const std::vector<float> kVanilla = {0, 0, 7, -8};     // (x > 0) * g
const std::vector<float> kDeconvnet = {5, 0, 7, 0};    // max(g, 0)
const std::vector<float> kGuided = {0, 0, 7, 0};       // (x > 0) * max(g, 0)
}  // namespace

TASK_PROBE("tape-reverse-walk") {
  Tensor x = Tensor::full({2}, 1.f, true);
  sum(mul(x, x)).backward();
}

TEST_SUITE("tape-reverse-walk") {
  TEST_CASE("chain rule through a small expression, with fan-out accumulation") {
    // f = (a*b + a)^2 at a=2, b=3: df/da = 2(ab+a)(b+1) = 2*8*4 = 64, df/db = 2(ab+a)a = 32
    Tensor a = Tensor::full({}, 2.f, true), b = Tensor::full({}, 3.f, true);
    Tensor f = tg::pow(a * b + a, 2.f);
    f.backward();
    CHECK(f.item() == 64.f);
    CHECK(a.grad().item() == 64.f);
    CHECK(b.grad().item() == 32.f);
  }

  TEST_CASE("backward(seed) from one neuron of a feature map") {
    // A 3x3 average pool, stride 1: neuron y[0,1,1,2] averages x[0,1,1..3,2..4].
    Tensor x = random_normal({1, 2, 5, 6}, 3);
    Tensor y = avg_pool2d(x, 3, 1);
    REQUIRE(y.shape() == Shape{1, 2, 3, 4});
    Tensor seed = Tensor::zeros(y.shape());
    seed.at({0, 1, 1, 2}) = 1.f;
    y.backward(seed);
    // d y[0,1,1,2] / d x[0,c,i,j] = 1/9 inside the window, 0 elsewhere (and in channel 0).
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 6; ++j) {
          const bool inside = c == 1 && i >= 1 && i <= 3 && j >= 2 && j <= 4;
          CAPTURE(c);
          CAPTURE(i);
          CAPTURE(j);
          REQUIRE(x.grad().at({0, c, i, j}) == doctest::Approx(inside ? 1.f / 9.f : 0.f));
        }
  }

  TEST_CASE("leaf gradients accumulate across passes; zero_grad resets") {
    Tensor x = Tensor::full({2}, 3.f, true);
    sum(x * x).backward();
    sum(x * x).backward();
    CHECK_VALUES(x.grad().to_vector(), {12, 12});
    x.zero_grad();
    CHECK_FALSE(x.grad().defined());
  }

  TEST_CASE("the tape is empty after backward and keeps entries with retain_graph") {
    tape().clear();
    Tensor x = random_normal({2, 3}, 5);
    Tensor y = sum(tg::tanh(x) * 2.f);
    CHECK(tape().size() == 3);
    y.backward(true);
    CHECK(tape().size() == 3);
    y.backward();
    CHECK(tape().empty());
  }

  TEST_CASE("a backward frees only the entries it walked: another graph on the tape survives") {
    // b's walk must leave a's graph alone: a = sum(x*x) still gives 2x after b.backward().
    Tensor x = Tensor::from_vector({1.f, -2.f, 3.f}, {3}, true);
    Tensor a = sum(x * x);
    Tensor b = sum(3.f * x);
    b.backward();
    CHECK_VALUES(x.grad().to_vector(), {3, 3, 3});
    x.zero_grad();
    a.backward();
    REQUIRE(x.grad().defined());
    CHECK_VALUES(x.grad().to_vector(), {2, -4, 6});
  }

  TEST_CASE("a second backward through a freed graph is an error that names retain_graph") {
    Tensor x = Tensor::full({2}, 2.f, true);
    Tensor a = sum(x * x);
    a.backward();
    const std::string message = test::error_message([&] { a.backward(); });
    CHECK_CONTAINS(message, "freed");
    CHECK_CONTAINS(message, "retain_graph");
    CHECK(message.find('\n') == std::string::npos);
    // Through a shared intermediate: h's graph went with a's walk, so c cannot reach x.
    Tensor h = tg::tanh(x);
    Tensor first = sum(h);
    Tensor c = sum(h * 2.f);
    first.backward();
    const std::string shared = test::error_message([&] { c.backward(); });
    CHECK_CONTAINS(shared, "an input of mul");
    CHECK_CONTAINS(shared, "retain_graph");
  }

  TEST_CASE("two independent graphs interleaved on one tape, walked in either order") {
    Tensor x = Tensor::from_vector({0.5f, -1.f}, {2}, true);
    Tensor y = Tensor::from_vector({2.f, 3.f}, {2}, true);
    // Ops of the two graphs alternate on the tape.
    Tensor x2 = x * x;
    Tensor y3 = y * 3.f;
    Tensor ex = tg::exp(x2);
    Tensor ty = tg::tanh(y3);
    Tensor fx = sum(ex);
    Tensor fy = sum(ty);
    // backward walks its graph and first drops entries nothing can reach (earlier tests' leftovers)
    fx.backward();
    CHECK(tape().size() == 3);  // mul, exp, sum of y's graph, untouched
    CHECK_FALSE(y.grad().defined());
    fy.backward();
    CHECK(tape().size() == 0);
    for (int64_t i = 0; i < 2; ++i) {
      const float xv = x.data()[i], yv = y.data()[i];
      CHECK(x.grad().data()[i] == doctest::Approx(2.f * xv * std::exp(xv * xv)));
      const float t = std::tanh(3.f * yv);
      CHECK(y.grad().data()[i] == doctest::Approx(3.f * (1.f - t * t)));
    }
  }

  TEST_CASE("forward passes that nobody walks do not pile up on the tape") {
    Tensor w = Tensor::full({4}, 0.5f, true);
    for (int i = 0; i < 20000; ++i) {
      Tensor unused = sum(tg::tanh(w * static_cast<float>(i)));  // dropped at once, never walked
    }
    CHECK(tape().size() < 4096);
    // A graph whose result is still held survives the sweeps and walks as usual.
    Tensor kept = sum(w * w);
    for (int i = 0; i < 5000; ++i) Tensor unused = sum(w * 2.f);
    w.zero_grad();
    kept.backward();
    CHECK_VALUES(w.grad().to_vector(), {1, 1, 1, 1});
  }

  TEST_CASE("a hook's replacement gradient is what flows on") {
    Tensor x = Tensor::full({3}, 1.f, true);
    Tensor h = x * 2.f;
    std::vector<float> seen;
    h.register_hook([&](const Tensor& g) {
      seen = g.to_vector();
      return g * 10.f;  // replace
    });
    sum(h * 3.f).backward();
    CHECK_VALUES(seen, {3, 3, 3});                 // the fully accumulated gradient of h
    CHECK_VALUES(x.grad().to_vector(), {60, 60, 60});  // 3 * 10 * 2
    // Hooks on leaves see the gradient of the pass before it is added.
    Tensor leaf = Tensor::full({2}, 1.f, true);
    leaf.register_hook([](const Tensor& g) { return g * 0.5f; });
    sum(leaf * 4.f).backward();
    CHECK_VALUES(leaf.grad().to_vector(), {2, 2});
  }

  TEST_CASE("accumulation checks shapes and names the op") {
    Tensor x = random_normal({2, 3}, 9);
    Tensor y = tg::tanh(x);
    tape().set_rule(y, [](const Entry&, const Tensor&) { return std::vector<Tensor>{Tensor::zeros({3, 2})}; });
    const std::string message = test::error_message([&] { sum(y).backward(); });
    CHECK_CONTAINS(message, "backward of tanh");
    CHECK_CONTAINS(message, "[3,2]");
    CHECK_CONTAINS(message, "[2,3]");
    tape().clear();
  }
}

// Recording, which needs no task: what goes on the tape and what does not.
TEST_SUITE("tape-recording") {
  TEST_CASE("each entry carries its op's saved state under names, shown by tape.print") {
    tape().clear();
    Tensor x = random_normal({2, 3, 4}, 42);
    Tensor p = tg::pow(x, 3.f);
    Tensor s = sum(p, {1}, true);
    Tensor c = clamp(s, -1.f, 2.f);
    Tensor l = slice(c, 2, 1, 3);
    const std::string listing = tape().str();
    CHECK(test::contains(listing, "pow"));
    CHECK(test::contains(listing, "exponent=3"));
    CHECK(test::contains(listing, "axes=[1] keepdim"));
    CHECK(test::contains(listing, "low=-1 high=2"));
    CHECK(test::contains(listing, "axis=2 range=[1,3)"));
    // A rule that reads the wrong kind of state gets a readable error, not garbage.
    const Entry* entry = tape().producer(p);
    REQUIRE(entry);
    struct OtherState : SavedState {};
    const std::string message = test::error_message([&] { entry->saved<OtherState>(); });
    CHECK(test::contains(message, "backward of pow"));
    CHECK(test::contains(message, "saved state"));
    tape().clear();
  }


  TEST_CASE("NoGrad records nothing and restores recording") {
    tape().clear();
    Tensor x = random_normal({3}, 6);
    {
      NoGrad no_grad;
      Tensor y = x * 2.f;
      CHECK_FALSE(y.requires_grad());
      CHECK(tape().empty());
    }
    Tensor z = x * 2.f;
    CHECK(z.requires_grad());
    CHECK(tape().size() == 1);
    tape().clear();
  }

  TEST_CASE("tape.print lists entries with op names and shapes") {
    tape().clear();
    Tensor x = random_normal({1, 1, 6, 6}, 7);
    Tensor w = random_normal({2, 1, 3, 3}, 8);
    Tensor y = max_pool2d(sigmoid(conv2d(x, w, Tensor(), 1, 1)), 2);
    const std::string listing = tape().str();
    CHECK(test::contains(listing, "conv2d"));
    CHECK(test::contains(listing, "[1,1,6,6] [2,1,3,3] - -> [1,2,6,6]"));
    CHECK(test::contains(listing, "padding=[1,1]"));
    CHECK(test::contains(listing, "sigmoid"));
    CHECK(test::contains(listing, "max_pool2d"));
    CHECK(test::contains(listing, "-> [1,2,3,3]"));
    tape().clear();
  }
}

TASK_PROBE("relu-rules") {  // a relu entry by hand: relu's own task need not be done
  rule_gradient(rules::guided_relu, Tensor::ones({2}), Tensor::ones({2}));
  rule_gradient(rules::deconvnet_relu, Tensor::ones({2}), Tensor::ones({2}));
}

TEST_SUITE("relu-rules") {
  // Each rule is called on a relu entry directly, so these tests need no other task.
  TEST_CASE("the deconvnet and guided rules give their formulas") {
    CHECK_VALUES(rule_gradient(rules::deconvnet_relu, kX, kG), kDeconvnet);
    CHECK_VALUES(rule_gradient(rules::guided_relu, kX, kG), kGuided);
  }

  TEST_CASE("guided and deconvnet on random inputs and seeds, element by element") {
    const Tensor x = away_from_zero({3, 5}, 21, false), g = away_from_zero({3, 5}, 22, false);
    const std::vector<float> guided = rule_gradient(rules::guided_relu, x, g);
    const std::vector<float> deconvnet = rule_gradient(rules::deconvnet_relu, x, g);
    int kept = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      CAPTURE(i);
      const float xi = x.data()[i], gi = g.data()[i];
      CHECK(guided[i] == (xi > 0 && gi > 0 ? gi : 0.f));
      CHECK(deconvnet[i] == std::max(gi, 0.f));
      kept += guided[i] != 0.f;
    }
    CHECK(kept > 0);
    CHECK(kept < x.numel());
  }

  TEST_CASE("with a positive seed, guided is the true gradient (x > 0) * g") {
    const Tensor x = away_from_zero({3, 4}, 23, false);
    const Tensor positive_seed = Tensor::full({3, 4}, 1.5f);
    const std::vector<float> guided = rule_gradient(rules::guided_relu, x, positive_seed);
    for (int64_t i = 0; i < x.numel(); ++i) CHECK(guided[i] == (x.data()[i] > 0 ? 1.5f : 0.f));
    // Deconvnet on positive inputs and a positive seed is the true gradient too.
    CHECK_VALUES(rule_gradient(rules::deconvnet_relu, Tensor::full({5}, 0.5f), Tensor::full({5}, 2.f)), {2, 2, 2, 2, 2});
  }
}

TEST_SUITE("relu") {
  // The edge a central difference cannot see: at exactly 0 the ReLU is off (x > 0, not x >= 0).
  TEST_CASE("relu at exactly 0: the output is 0 and the vanilla rule passes no gradient") {
    const Tensor x = Tensor::from_vector({0.f, -0.f, 1e-30f, -1e-30f}, {4});
    CHECK_VALUES(relu(x).to_vector(), {0, 0, 1e-30f, 0});
    CHECK_VALUES(rule_gradient(rules::vanilla_relu, x, Tensor::full({4}, 3.f)), {0, 0, 3, 0});
  }
}

TEST_SUITE("relu-rules") {
  TEST_CASE("the rules at exactly x = 0: guided passes nothing there, deconvnet ignores x") {
    const Tensor x = Tensor::from_vector({0.f, 0.f, -0.f}, {3});
    const Tensor g = Tensor::from_vector({2.f, -2.f, 5.f}, {3});
    CHECK_VALUES(rule_gradient(rules::guided_relu, x, g), {0, 0, 0});
    CHECK_VALUES(rule_gradient(rules::deconvnet_relu, x, g), {2, 0, 5});
  }
}

TEST_SUITE("relu-rules") {
  TEST_CASE("deconvnet on a ReLU6 entry ignores x as on a ReLU") {
    Entry entry;
    entry.op = &Op::ReLU6;
    entry.inputs = {Tensor::from_vector({-1.f, 0.f, 3.f, 6.f, 8.f, 2.f}, {6})};
    entry.output = relu6(entry.inputs[0]);
    const Tensor g = Tensor::from_vector({4.f, 4.f, 4.f, 4.f, 4.f, -5.f}, {6});
    CHECK_VALUES(rules::deconvnet_relu(entry, g).at(0).to_vector(), {4, 4, 4, 4, 4, 0});
  }
}

namespace {
// guided_relu called directly on a ReLU6 entry (no tape walk, no other task needed).
std::vector<float> guided_on_relu6(const Tensor& x, const Tensor& g) {
  Entry entry;
  entry.op = &Op::ReLU6;
  entry.inputs = {x};
  entry.output = relu6(x);
  return rules::guided_relu(entry, g).at(0).to_vector();
}
}  // namespace

TASK_PROBE("relu6-guided") { guided_on_relu6(Tensor::ones({2}), Tensor::ones({2})); }

TEST_SUITE("relu6-guided") {
  TEST_CASE("guided ReLU6 by hand: nothing at x = 0, at x = 6, above 6, or for a negative gradient") {
    const Tensor x = Tensor::from_vector({-1.f, 0.f, 3.f, 6.f, 8.f, 2.f, 5.99f}, {7});
    const Tensor g = Tensor::from_vector({4.f, 4.f, 4.f, 4.f, 4.f, -5.f, 1.5f}, {7});
    CHECK_VALUES(guided_on_relu6(x, g), {0, 0, 4, 0, 0, 0, 1.5f});
  }

  TEST_CASE("guided ReLU6 on random inputs in [-3, 9] and seeds of both signs, element by element") {
    Tensor x = away_from_zero({4, 6}, 31, false), g = away_from_zero({4, 6}, 32, false);
    for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = x.data()[i] * 6.f + 3.f;
    const std::vector<float> guided = guided_on_relu6(x, g);
    int kept = 0, above_six = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      CAPTURE(i);
      const float xi = x.data()[i], gi = g.data()[i];
      // The forward's slope: a central difference of relu6 at xi (no tape involved).
      const float slope = (relu6(Tensor::full({1}, xi + 1e-2f)).item() - relu6(Tensor::full({1}, xi - 1e-2f)).item()) / 2e-2f;
      CHECK(guided[i] == doctest::Approx(gi > 0 ? slope * gi : 0.f));
      kept += guided[i] != 0.f;
      above_six += xi > 6.f;
    }
    CHECK(kept > 0);
    CHECK(above_six > 0);  // the ceiling was tested
  }

  TEST_CASE("with a positive seed, guided ReLU6 is the true gradient of clamp(x, 0, 6)") {
    const Tensor x = Tensor::from_vector({-2.f, 0.5f, 3.f, 5.5f, 6.5f, 10.f}, {2, 3});
    CHECK_VALUES(guided_on_relu6(x, Tensor::full({2, 3}, 1.5f)), {0, 1.5f, 1.5f, 1.5f, 0, 0});
  }
}

TEST_SUITE("tape-overrides") {
  TEST_CASE("one guard per kind switches ReLU and ReLU6 entries alike, and counts what ran") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules");
    Tensor x = random_normal({2, 8}, 41);
    int relu_calls = 0, relu6_calls = 0;
    const BackwardRule counting = [&](const Entry& e, const Tensor& g) {
      (e.op == &Op::ReLU6 ? relu6_calls : relu_calls) += 1;
      return rules::guided_relu(e, g);
    };
    Tensor h = relu6(relu(x * 3.f) - 1.f);
    h = relu6(h * 4.f);
    {
      OverrideBackward a(Op::ReLU, counting), b(Op::ReLU6, counting);
      sum(h).backward();
    }
    CHECK(relu_calls == 1);
    CHECK(relu6_calls == 2);
  }


  TEST_CASE("the default rule comes back after the guard's scope") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules");
    {
      OverrideBackward guard(Op::ReLU, rules::guided_relu);
      CHECK(relu_gradient(kX, kG) == kGuided);
    }
    CHECK(relu_gradient(kX, kG) == kVanilla);
  }

  TEST_CASE("the default rule comes back after an exception") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules");
    try {
      OverrideBackward guard(Op::ReLU, rules::guided_relu);
      throw std::runtime_error("leaving the scope by an exception");
    } catch (const std::runtime_error&) {
    }
    CHECK(relu_gradient(kX, kG) == kVanilla);
  }

  TEST_CASE("nested guards: innermost wins, outer restored") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules");
    OverrideBackward outer(Op::ReLU, rules::deconvnet_relu);
    {
      OverrideBackward inner(Op::ReLU, rules::guided_relu);
      CHECK(relu_gradient(kX, kG) == kGuided);
    }
    CHECK(relu_gradient(kX, kG) == kDeconvnet);
  }

  TEST_CASE("rules are resolved when backward runs, not when the forward ran") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules");
    Tensor x = kX.clone().requires_grad_();
    Tensor y = relu(x);  // forward under the default rule
    {
      OverrideBackward guard(Op::ReLU, rules::guided_relu);
      y.backward(kG);  // backward under the guided rule
    }
    CHECK(x.grad().to_vector() == kGuided);
  }

  TEST_CASE("a per-entry override beats a guard") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules");
    Tensor x = kX.clone().requires_grad_();
    Tensor y = relu(x);
    tape().set_rule(y, rules::deconvnet_relu);
    OverrideBackward guard(Op::ReLU, rules::guided_relu);
    y.backward(kG);
    CHECK(x.grad().to_vector() == kDeconvnet);
  }

  TEST_CASE("a guard on one op kind leaves the others alone") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules");
    OverrideBackward guard(Op::Conv2d, [](const Entry&, const Tensor&) -> std::vector<Tensor> {
      throw Error("conv rule must not run");
    });
    CHECK(relu_gradient(kX, kG) == kVanilla);
  }

  TEST_CASE("retain_graph: vanilla and guided gradients from one forward pass") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules", "conv2d-backward", "maxpool-backward", "linear-backward");
    Tensor x = random_normal({1, 1, 6, 5}, 31);
    Tensor w1 = random_normal({3, 1, 3, 3}, 32, false), w2 = random_normal({4, 3 * 3 * 2}, 33, false);
    Tensor score = slice(linear(flatten(max_pool2d(relu(conv2d(x, w1, Tensor(), 1, 1)), 2)), w2), 1, 2, 3);
    score.backward(true);
    const std::vector<float> vanilla = x.grad().to_vector();
    x.zero_grad();
    {
      OverrideBackward guard(Op::ReLU, rules::guided_relu);
      score.backward();
    }
    const std::vector<float> guided = x.grad().to_vector();
    CHECK(tape().empty());
    // A fresh forward pass must give the same two answers.
    Tensor x2 = x.detach().requires_grad_();
    slice(linear(flatten(max_pool2d(relu(conv2d(x2, w1, Tensor(), 1, 1)), 2)), w2), 1, 2, 3).backward();
    CHECK(x2.grad().to_vector() == vanilla);
    x2.zero_grad();
    {
      OverrideBackward guard(Op::ReLU, rules::guided_relu);
      slice(linear(flatten(max_pool2d(relu(conv2d(x2, w1, Tensor(), 1, 1)), 2)), w2), 1, 2, 3).backward();
    }
    CHECK(x2.grad().to_vector() == guided);
    CHECK(vanilla != guided);
  }
}

TEST_SUITE("tape-memory") {
  TEST_CASE("memory does not grow over 1,000 forward/backward iterations of a small CNN") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "conv2d-backward", "maxpool-backward", "linear-backward");
    tape().clear();
    Generator gen(41);
    Tensor w1 = Tensor::randn({4, 1, 3, 3}, gen).requires_grad_(), b1 = Tensor::zeros({4}, true);
    Tensor w2 = Tensor::randn({3, 4 * 4 * 4}, gen).requires_grad_(), b2 = Tensor::zeros({3}, true);
    Tensor x = Tensor::randn({2, 1, 8, 8}, gen);
    int64_t tensors_at_10 = 0, bytes_at_10 = 0, tensors_at_1000 = 0, bytes_at_1000 = 0;
    for (int it = 1; it <= 1000; ++it) {
      Tensor h = max_pool2d(relu(conv2d(x, w1, b1, 1, 1)), 2);
      Tensor loss = cross_entropy(linear(flatten(h), w2, b2), {0, 2});
      loss.backward();
      {
        NoGrad no_grad;
        for (Tensor p : {w1, b1, w2, b2}) {
          for (int64_t i = 0; i < p.numel(); ++i) p.data()[i] -= 0.01f * p.grad().data()[i];
          p.zero_grad();
        }
      }
      REQUIRE(tape().empty());
      if (it == 10) {
        tensors_at_10 = debug::live_tensors();
        bytes_at_10 = debug::live_storage_bytes();
      }
      if (it == 1000) {
        tensors_at_1000 = debug::live_tensors();
        bytes_at_1000 = debug::live_storage_bytes();
      }
    }
    CHECK(tensors_at_10 > 0);
    CHECK(tensors_at_1000 == tensors_at_10);
    CHECK(bytes_at_1000 == bytes_at_10);
  }
}
