// Tensor basics: factories, element access, views, printing, the random generator.
#include <fmt/format.h>

#include "tests/helpers.h"

using namespace tg;

TEST_SUITE("tensor") {
  TEST_CASE("factories fill shapes with the right values") {
    CHECK(Tensor::zeros({2, 3}).to_vector() == std::vector<float>(6, 0.f));
    CHECK(Tensor::ones({4}).to_vector() == std::vector<float>(4, 1.f));
    CHECK(Tensor::full({2}, 7.5f).to_vector() == std::vector<float>{7.5f, 7.5f});
    CHECK(Tensor::arange(0, 5).to_vector() == std::vector<float>{0, 1, 2, 3, 4});
    CHECK(Tensor::arange(1, 2, 0.25f).to_vector() == std::vector<float>{1, 1.25f, 1.5f, 1.75f});
    CHECK(Tensor::scalar(3.f).shape().empty());
    CHECK(Tensor::scalar(3.f).item() == 3.f);
    CHECK(Tensor::zeros({2, 3}, true).requires_grad());
  }

  TEST_CASE("large fills and clones, which the threads share, cover every element exactly") {
    // Sizes around the shared-pass threshold and odd ones, so the chunks' edges are uneven;
    // the storage is dirtied first, so a chunk that was skipped shows.
    for (int64_t n : {int64_t{(1 << 19) - 1}, int64_t{1 << 19}, int64_t{3'000'017}}) {
      CAPTURE(n);
      Tensor dirty = Tensor::full({n}, 5.f);
      dirty = Tensor();  // its block goes back to the cache, and the next tensor of this size takes it
      const Tensor z = Tensor::zeros({n});
      CHECK(std::count(z.data(), z.data() + n, 0.f) == n);
      Tensor source = Tensor::arange(0, static_cast<float>(n));
      const Tensor copy = source.clone();
      int64_t equal = 0;
      for (int64_t i = 0; i < n; ++i) equal += copy.data()[i] == static_cast<float>(i);
      CHECK(equal == n);
      CHECK(copy.data() != source.data());
    }
  }

  TEST_CASE("element access is row-major and bounds-checked") {
    Tensor t = Tensor::arange(0, 24);
    Tensor v = reshape(t, {2, 3, 4});
    CHECK(v.at({1, 2, 3}) == 23.f);
    CHECK(v.at({1, 0, 2}) == 14.f);
    v.at({0, 0, 1}) = -1.f;
    CHECK(t.data()[1] == -1.f);  // a view shares storage
    CHECK(v.dim(-1) == 4);
    CHECK(test::contains(test::error_message([&] { v.at({2, 0, 0}); }), "out of range on axis 0"));
    CHECK(test::contains(test::error_message([&] { v.at({0, 0}); }), "2 indices for a tensor of shape [2,3,4]"));
    CHECK(test::contains(test::error_message([&] { v.item(); }), "24 elements, not 1"));
  }

  TEST_CASE("clone copies, detach shares, neither is tracked") {
    Tensor x = Tensor::ones({3}, true);
    Tensor c = x.clone(), d = x.detach();
    c.data()[0] = 5.f;
    d.data()[1] = 6.f;
    CHECK(x.to_vector() == std::vector<float>{1, 6, 1});
    CHECK_FALSE(c.requires_grad());
    CHECK_FALSE(d.requires_grad());
  }

  TEST_CASE("printing with fmt") {
    Tensor t = Tensor::from_vector({1, 2.5f, -3, 4}, {2, 2}, true);
    const std::string s = fmt::format("{}", t);
    CHECK(test::contains(s, "[[1, 2.5],"));
    CHECK(test::contains(s, "[-3, 4]]"));
    CHECK(test::contains(s, "shape=[2,2], requires_grad"));
    CHECK(test::contains(Tensor::arange(0, 100).str(), "..."));
  }

  TEST_CASE("the generator is deterministic for a seed and roughly standard normal") {
    Generator a(42), b(42), c(43);
    Tensor x = Tensor::randn({10000}, a), y = Tensor::randn({10000}, b), z = Tensor::randn({10000}, c);
    CHECK(x.to_vector() == y.to_vector());
    CHECK(x.to_vector() != z.to_vector());
    CHECK(mean(x).item() == doctest::Approx(0.0).epsilon(0.03).scale(1));
    CHECK(mean(x * x).item() == doctest::Approx(1.0).epsilon(0.05));
    Tensor u = Tensor::uniform({10000}, a, -2.f, 2.f);
    CHECK(tg::max(u).item() < 2.f);
    CHECK(-tg::max(-u).item() >= -2.f);
  }

  TEST_CASE("debug counters follow tensors") {
    const int64_t before = debug::live_tensors(), bytes = debug::live_storage_bytes();
    {
      Tensor t = Tensor::zeros({256});
      CHECK(debug::live_tensors() == before + 1);
      CHECK(debug::live_storage_bytes() == bytes + 1024);
    }
    CHECK(debug::live_tensors() == before);
    CHECK(debug::live_storage_bytes() == bytes);
  }
}
