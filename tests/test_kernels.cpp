// The fast kernels against their naive references, on sizes that are not multiples
// of any block size; im2col against its adjoint; the thread pool.
#include <atomic>
#include <chrono>
#include <thread>
#include <numeric>
#include <tuple>

#include "tests/helpers.h"

using namespace tg;

namespace {
// The gradients of a convolution by their definition, from the forward reference alone:
// conv2d is linear in x and in w, so dx[i] = <conv(e_i, w), dy> and dw[j] = <conv(x, e_j), dy>
// with e_i the i-th unit tensor. Every index costs one forward pass, so `count` indices are
// checked, spread over the tensor (its first and last included). A null dx or dw is skipped;
// dw_offset is what dw held before the kernel added to it.
struct ConvProblem {
  const std::vector<float>& x;
  int64_t batch;
  kernels::ConvGeometry g;
  const std::vector<float>& w;
  int64_t out_channels, groups;
  const std::vector<float>& dy;
};

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}

void check_conv_gradients_by_definition(const ConvProblem& p, const float* dx, const float* dw, float dw_offset = 0.f,
                                        int count = 40) {
  std::vector<float> out(p.dy.size());
  auto forward = [&](const std::vector<float>& x, const std::vector<float>& w) {
    kernels::conv2d_reference(x.data(), p.batch, p.g, w.data(), nullptr, p.out_channels, p.groups, out.data());
    return dot(out, p.dy);
  };
  auto indices = [count](size_t size) {
    std::vector<size_t> picked;
    for (int k = 0; k < count; ++k) picked.push_back(size * static_cast<size_t>(k) / static_cast<size_t>(count - 1) - (k == count - 1));
    return picked;
  };
  if (dx) {
    std::vector<float> unit(p.x.size(), 0.f);
    for (size_t i : indices(p.x.size())) {
      CAPTURE(i);
      unit[i] = 1.f;
      REQUIRE(dx[i] == doctest::Approx(forward(unit, p.w)).epsilon(1e-4).scale(1.0));
      unit[i] = 0.f;
    }
  }
  if (dw) {
    std::vector<float> unit(p.w.size(), 0.f);
    const double scale = static_cast<double>(p.batch * p.g.out_h() * p.g.out_w()) / 50;
    for (size_t j : indices(p.w.size())) {
      CAPTURE(j);
      unit[j] = 1.f;
      REQUIRE(dw[j] - dw_offset == doctest::Approx(forward(p.x, unit)).epsilon(1e-4).scale(std::max(1.0, scale)));
      unit[j] = 0.f;
    }
  }
}

// conv3x3_winograd on one image of C x H x W channels to O, padding (ph, pw): the forward
// (bias included) against the seven-loop convolution within `epsilon` of the sums' size, then
// the flipped, transposed weight of the input gradient run through strides against the
// definition of dx at `gradient_checks` indices (each costs a reference forward; 0: none).
struct WinogradCase { int64_t C, H, W, O, ph, pw; };
void check_winograd(Generator& gen, const WinogradCase& c, double epsilon, int gradient_checks) {
  CAPTURE(c.C); CAPTURE(c.H); CAPTURE(c.W); CAPTURE(c.O); CAPTURE(c.ph); CAPTURE(c.pw);
  const kernels::ConvGeometry g{c.C, c.H, c.W, 3, 3, 1, 1, c.ph, c.pw, 1, 1};
  std::vector<float> x(c.C * c.H * c.W), w(c.O * c.C * 9), bias(c.O);
  for (std::vector<float>* v : {&x, &w, &bias})
    for (float& e : *v) e = gen.uniform(-1, 1);
  const int64_t out_count = c.O * g.out_h() * g.out_w();
  std::vector<float> expected(out_count), out(out_count, std::nanf(""));
  kernels::conv2d_reference(x.data(), 1, g, w.data(), bias.data(), c.O, 1, expected.data());
  const kernels::DirectConv d{c.C, c.H, c.W, c.O, 3, 3, c.ph, c.pw, c.C * 9, 9, 3, 1};
  kernels::conv3x3_winograd(x.data(), d, w.data(), bias.data(), out.data());
  const double scale = std::sqrt(static_cast<double>(c.C * 9)) / 3;  // sums of C*9 terms of size ~1/3
  for (int64_t i = 0; i < out_count; ++i) REQUIRE(out[i] == doctest::Approx(expected[i]).epsilon(epsilon).scale(scale));
  if (gradient_checks == 0) return;
  std::vector<float> dy(out_count), dx(x.size(), std::nanf(""));
  for (float& v : dy) v = gen.uniform(-1, 1);
  const kernels::DirectConv t{c.O, g.out_h(), g.out_w(), c.C, 3, 3, 2 - c.ph, 2 - c.pw, 9, c.C * 9, -3, -1};
  kernels::conv3x3_winograd(dy.data(), t, w.data() + 8, nullptr, dx.data());
  check_conv_gradients_by_definition({x, 1, g, w, c.O, 1, dy}, dx.data(), nullptr, 0.f, gradient_checks);
}

// One depthwise geometry: images N, channels C, multiplier m, the map H x W, the window, the
// strides, the top and left padding and the output size (given apart: asymmetric padding).
struct DepthwiseCase { int64_t N, C, m, H, W, kh, kw, sh, sw, top, left, out_h, out_w; };

// TensorFlow's SAME padding (the extra row or column after) for a k x k window, stride s.
DepthwiseCase same_padding(int64_t N, int64_t C, int64_t m, int64_t H, int64_t W, int64_t k, int64_t s) {
  const int64_t oh = (H + s - 1) / s, ow = (W + s - 1) / s;
  const int64_t ph = std::max<int64_t>(0, (oh - 1) * s + k - H), pw = std::max<int64_t>(0, (ow - 1) * s + k - W);
  return DepthwiseCase{N, C, m, H, W, k, k, s, s, ph / 2, pw / 2, oh, ow};
}

// The fast depthwise kernels (forward, input and weight gradients) against the naive ones on
// random values: float sums in another order, so 1e-5 relative (1e-4 for dW's long sums).
void check_depthwise_against_naive(const DepthwiseCase& c, Generator& gen) {
  CAPTURE(c.N); CAPTURE(c.C); CAPTURE(c.m); CAPTURE(c.H); CAPTURE(c.W); CAPTURE(c.kh); CAPTURE(c.kw);
  CAPTURE(c.sh); CAPTURE(c.sw); CAPTURE(c.top); CAPTURE(c.left); CAPTURE(c.out_h); CAPTURE(c.out_w);
  const kernels::Depthwise d{c.C, c.H, c.W, c.m, c.kh, c.kw, c.sh, c.sw, c.top, c.left, c.out_h, c.out_w};
  REQUIRE(kernels::depthwise_supported(d));
  const int64_t O = c.C * c.m, out_count = c.N * O * c.out_h * c.out_w;
  std::vector<float> x(c.N * c.C * c.H * c.W), w(O * c.kh * c.kw), bias(O), dy(out_count);
  for (std::vector<float>* v : {&x, &w, &bias, &dy})
    for (float& e : *v) e = gen.uniform(-1, 1);
  std::vector<float> expected(out_count), out(out_count, std::nanf(""));
  kernels::depthwise_conv2d_naive(x.data(), c.N, d, w.data(), bias.data(), expected.data());
  kernels::depthwise_conv2d(x.data(), c.N, d, w.data(), bias.data(), out.data());
  for (int64_t i = 0; i < out_count; ++i) REQUIRE(out[i] == doctest::Approx(expected[i]).epsilon(1e-5));
  std::vector<float> dx_expected(x.size()), dx(x.size(), std::nanf(""));
  kernels::depthwise_conv2d_backward_input_naive(dy.data(), c.N, d, w.data(), dx_expected.data());
  kernels::depthwise_conv2d_backward_input(dy.data(), c.N, d, w.data(), dx.data());
  for (size_t i = 0; i < dx.size(); ++i) REQUIRE(dx[i] == doctest::Approx(dx_expected[i]).epsilon(1e-5));
  std::vector<float> dw_expected(w.size(), 0.5f), dw(w.size(), 0.5f);  // both add to what is there
  kernels::depthwise_conv2d_backward_weight_naive(x.data(), dy.data(), c.N, d, dw_expected.data());
  kernels::depthwise_conv2d_backward_weight(x.data(), dy.data(), c.N, d, dw.data());
  for (size_t i = 0; i < dw.size(); ++i)
    REQUIRE(dw[i] == doctest::Approx(dw_expected[i]).epsilon(1e-4).scale(static_cast<double>(c.N * c.out_h * c.out_w)));
}
}  // namespace

TEST_SUITE("kernels") {
  TEST_CASE("fast gemm equals naive gemm on odd sizes, every transpose, alpha and beta") {
    Generator gen(3);
    const std::vector<int64_t> sizes = {1, 3, 17, 63, 65, 257};
    for (int64_t M : sizes)
      for (int64_t N : {int64_t{1}, int64_t{17}, int64_t{65}, int64_t{90}, int64_t{100}})  // last slivers of one and two vectors
        for (int64_t K : {int64_t{1}, int64_t{63}, int64_t{257}, int64_t{300}})
          for (int variant = 0; variant < 4; ++variant) {
            const bool ta = variant & 1, tb = variant & 2;
            const float alpha = variant == 3 ? -0.5f : 1.f, beta = variant == 2 ? 0.75f : (variant == 1 ? 1.f : 0.f);
            // Leading dimensions larger than the matrices, to catch stride mistakes.
            const int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
            std::vector<float> A((ta ? K : M) * lda), B((tb ? N : K) * ldb), C(M * ldc);
            for (float& v : A) v = gen.uniform(-1, 1);
            for (float& v : B) v = gen.uniform(-1, 1);
            for (float& v : C) v = gen.uniform(-1, 1);
            std::vector<float> expected = C, biased = C, bias(M);
            for (float& v : bias) v = gen.uniform(-1, 1);
            kernels::gemm_naive(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, expected.data(), ldc);
            kernels::gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
            // With a row bias: the same product plus bias[i] on row i, nothing outside the rows' N columns.
            kernels::gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, biased.data(), ldc, bias.data());
            for (int64_t i = 0; i < M * ldc; ++i) {
              CAPTURE(M); CAPTURE(N); CAPTURE(K); CAPTURE(variant); CAPTURE(i);
              REQUIRE(C[i] == doctest::Approx(expected[i]).epsilon(1e-4).scale(static_cast<double>(K)));
              const float with_bias = i % ldc < N ? expected[i] + bias[i / ldc] : expected[i];
              REQUIRE(biased[i] == doctest::Approx(with_bias).epsilon(1e-4).scale(static_cast<double>(K)));
            }
          }
  }

  TEST_CASE("every way gemm shares work between threads gives the naive result") {
    // column ranges (wide C), split K (narrow C, long K: weight gradients), row ranges (tall C)
    Generator gen(4);
    struct Case { int64_t M, N, K; bool ta, tb; };
    for (const Case& c : {Case{5, 300, 40, false, false}, Case{17, 3, 2100, false, true}, Case{16, 25, 5000, false, true},
                          Case{300, 5, 40, true, false}, Case{1, 128, 1568, false, true}, Case{2, 1568, 128, false, false},
                          Case{1, 700, 300, true, false}}) {
      CAPTURE(c.M); CAPTURE(c.N); CAPTURE(c.K);
      std::vector<float> A(c.M * c.K), B(c.K * c.N), C(c.M * c.N), expected(c.M * c.N);
      for (float& v : A) v = gen.uniform(-1, 1);
      for (float& v : B) v = gen.uniform(-1, 1);
      const int64_t lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
      kernels::gemm_naive(c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, expected.data(), c.N);
      kernels::gemm(c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), c.N);
      for (size_t i = 0; i < C.size(); ++i) REQUIRE(C[i] == doctest::Approx(expected[i]).epsilon(1e-4).scale(40.0));
      // Inside a parallel region gemm runs serially, with the same result.
      std::vector<float> D(c.M * c.N);
      kernels::parallel_for(0, 2, 1, [&](int64_t lo, int64_t) {
        if (lo == 0) kernels::gemm(c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, D.data(), c.N);
      });
      for (size_t i = 0; i < C.size(); ++i) REQUIRE(D[i] == doctest::Approx(expected[i]).epsilon(1e-4).scale(40.0));
      // Each way adds a row bias once per element (the threads' column and row ranges, split K).
      std::vector<float> bias(c.M), E(c.M * c.N);
      for (float& v : bias) v = gen.uniform(-1, 1);
      kernels::gemm(c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb, 0.f, E.data(), c.N, bias.data());
      for (size_t i = 0; i < C.size(); ++i)
        REQUIRE(E[i] == doctest::Approx(expected[i] + bias[i / c.N]).epsilon(1e-4).scale(40.0));
    }
  }

  TEST_CASE("col2im over ranges of image rows gives col2im's bits, whatever the ranges") {
    // Threads that share an image's col2im take ranges of its C*H rows; each adds only into
    // its own rows, in col2im's order. Stride 1 along x (AVX-512's rows-at-once path), stride
    // 2, dilation, padding on one side, a kernel that is not square.
    Generator gen(9);
    // The photo model's first layer: 3x3, stride 2, TensorFlow's SAME padding (its odd row
    // and column below and right).
    for (const kernels::ConvGeometry& g :
         {kernels::ConvGeometry{.channels = 3, .height = 17, .width = 23, .kernel_h = 3, .kernel_w = 3, .stride_h = 2,
                                .stride_w = 2, .pad_h = 0, .pad_w = 0, .dilation_h = 1, .dilation_w = 1,
                                .extra_bottom = 1, .extra_right = 1},
          kernels::ConvGeometry{.channels = 3, .height = 17, .width = 23, .kernel_h = 3, .kernel_w = 3, .stride_h = 2,
                                .stride_w = 2, .pad_h = 1, .pad_w = 1, .dilation_h = 1, .dilation_w = 1},
          kernels::ConvGeometry{.channels = 2, .height = 9, .width = 30, .kernel_h = 3, .kernel_w = 5, .stride_h = 1,
                                .stride_w = 1, .pad_h = 1, .pad_w = 2, .dilation_h = 1, .dilation_w = 1},
          kernels::ConvGeometry{.channels = 4, .height = 12, .width = 11, .kernel_h = 2, .kernel_w = 3, .stride_h = 2,
                                .stride_w = 1, .pad_h = 0, .pad_w = 1, .dilation_h = 2, .dilation_w = 2},
          kernels::ConvGeometry{.channels = 1, .height = 40, .width = 7, .kernel_h = 5, .kernel_w = 1, .stride_h = 3,
                                .stride_w = 1, .pad_h = 2, .pad_w = 0, .dilation_h = 1, .dilation_w = 1}}) {
      const int64_t P = g.out_h() * g.out_w(), rows = g.channels * g.height;
      CAPTURE(g.height); CAPTURE(g.width); CAPTURE(g.stride_h); CAPTURE(g.stride_w); CAPTURE(g.extra_bottom);
      std::vector<float> columns(g.channels * g.kernel_h * g.kernel_w * P), whole(rows * g.width), split(rows * g.width);
      for (float& v : columns) v = gen.uniform(-1, 1);
      for (size_t i = 0; i < whole.size(); ++i) whole[i] = split[i] = gen.uniform(-1, 1);  // it adds
      kernels::col2im(columns.data(), g, whole.data(), P);
      std::vector<int64_t> cuts = {0, 1, g.height - 1, std::min(rows, g.height + 3), rows - 2, rows};
      std::sort(cuts.begin(), cuts.end());
      for (size_t k = 0; k + 1 < cuts.size(); ++k)
        kernels::col2im_rows(columns.data(), g, cuts[k], cuts[k + 1], split.data(), P);
      for (size_t i = 0; i < whole.size(); ++i) {
        CAPTURE(i);
        REQUIRE(split[i] == whole[i]);
      }
    }
  }

  TEST_CASE("gemm reading op(A) in place (few column slivers) gives the bits of packing it (many slivers)") {
    // With 33..256 columns the blocked path reads whole MR-row slivers of A where they lie;
    // with 1024 more columns it packs them. Each of the first N columns is the same sum in
    // the same order either way: the same bits, and the naive result within rounding.
    Generator gen(8);
    for (const bool ta : {false, true})
      for (const int64_t M : {int64_t{6}, int64_t{13}, int64_t{144}, int64_t{151}})
        for (const int64_t N : {int64_t{33}, int64_t{100}, int64_t{256}})
          for (const int64_t K : {int64_t{7}, int64_t{256}, int64_t{300}, int64_t{1000}}) {
            CAPTURE(ta); CAPTURE(M); CAPTURE(N); CAPTURE(K);
            const int64_t wide = N + 1024, lda = (ta ? M : K) + 3;
            std::vector<float> A((ta ? K : M) * lda), B(K * wide), narrow_b(K * N), bias(M);
            for (float& v : A) v = gen.uniform(-1, 1);
            for (float& v : B) v = gen.uniform(-1, 1);
            for (float& v : bias) v = gen.uniform(-1, 1);
            for (int64_t k = 0; k < K; ++k) std::copy_n(B.data() + k * wide, N, narrow_b.data() + k * N);
            std::vector<float> in_place(M * N), packed(M * wide), expected(M * N);
            kernels::gemm(ta, false, M, N, K, 1.f, A.data(), lda, narrow_b.data(), N, 0.f, in_place.data(), N, bias.data());
            kernels::gemm(ta, false, M, wide, K, 1.f, A.data(), lda, B.data(), wide, 0.f, packed.data(), wide, bias.data());
            kernels::gemm_naive(ta, false, M, N, K, 1.f, A.data(), lda, narrow_b.data(), N, 0.f, expected.data(), N);
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) {
                CAPTURE(i); CAPTURE(j);
                REQUIRE(in_place[i * N + j] == packed[i * wide + j]);
                REQUIRE(in_place[i * N + j] ==
                        doctest::Approx(expected[i * N + j] + bias[i]).epsilon(1e-4).scale(static_cast<double>(K)));
              }
          }
  }

  TEST_CASE("gemm's few-columns path (N <= kGemmFewColumns: the dot form, and the outer form for op(A) = A^T) equals naive gemm") {
    // Both forms on column counts across their limit (kGemmFewColumns: 12 with AVX-512, 6 with
    // AVX2) and the blocked path's beyond it, row counts around their tiles (4 or 2 rows, two
    // vectors of rows) and thread blocks, K in and out of whole vectors, every transpose, alpha,
    // beta and a row bias; rows shared between 2 threads or run by one.
    Generator gen(11);
    for (int64_t N : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, int64_t{6}, int64_t{7}, int64_t{9}, int64_t{12},
                      int64_t{13}, int64_t{24}, int64_t{25}, int64_t{33}})
      for (int64_t M : {int64_t{3}, int64_t{37}, int64_t{70}, int64_t{257}})
        for (int64_t K : {int64_t{16}, int64_t{45}, int64_t{300}})
          for (int variant = 0; variant < 4; ++variant) {
            const bool ta = variant & 1, tb = variant & 2;
            const float alpha = variant == 1 ? -0.5f : 1.f, beta = variant == 3 ? 0.75f : 0.f;
            const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
            std::vector<float> A((ta ? K : M) * lda), B((tb ? N : K) * ldb), C(M * ldc), bias(M);
            for (float& v : A) v = gen.uniform(-1, 1);
            for (float& v : B) v = gen.uniform(-1, 1);
            for (float& v : C) v = gen.uniform(-1, 1);
            for (float& v : bias) v = gen.uniform(-1, 1);
            std::vector<float> expected = C, shared = C, alone = C;
            kernels::gemm_naive(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, expected.data(), ldc);
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) expected[i * ldc + j] += bias[i];
            kernels::gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, shared.data(), ldc, bias.data());
            {
              kernels::CallerOnly one_thread;
              kernels::gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, alone.data(), ldc, bias.data());
            }
            for (int64_t i = 0; i < M * ldc; ++i) {
              CAPTURE(M); CAPTURE(N); CAPTURE(K); CAPTURE(variant); CAPTURE(i);
              REQUIRE(shared[i] == doctest::Approx(expected[i]).epsilon(1e-4).scale(static_cast<double>(K)));
              REQUIRE(alone[i] == shared[i]);  // the same bits however the rows are shared
            }
          }
  }

  TEST_CASE("gemm with beta = 0 overwrites NaN in C") {
    std::vector<float> A = {1, 2}, B = {3, 4}, C = {std::nanf("")};
    kernels::gemm(false, false, 1, 1, 2, 1.f, A.data(), 2, B.data(), 1, 0.f, C.data(), 1);
    CHECK(C[0] == 11.f);
  }

  TEST_CASE("col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>") {
    Generator gen(5);
    for (const kernels::ConvGeometry& g : {kernels::ConvGeometry{2, 5, 7, 3, 2, 1, 1, 0, 0, 1, 1},
                                           kernels::ConvGeometry{3, 6, 5, 3, 3, 2, 1, 1, 2, 1, 1},
                                           kernels::ConvGeometry{1, 9, 8, 3, 3, 1, 2, 2, 1, 2, 2}}) {
      const int64_t rows = g.channels * g.kernel_h * g.kernel_w, cols = g.out_h() * g.out_w();
      std::vector<float> x(g.channels * g.height * g.width), c(rows * cols), im(rows * cols), back(x.size(), 0.f);
      for (float& v : x) v = gen.uniform(-1, 1);
      for (float& v : c) v = gen.uniform(-1, 1);
      kernels::im2col(x.data(), g, im.data(), cols);
      kernels::col2im(c.data(), g, back.data(), cols);
      double left = 0, right = 0;
      for (size_t i = 0; i < c.size(); ++i) left += static_cast<double>(im[i]) * c[i];
      for (size_t i = 0; i < x.size(); ++i) right += static_cast<double>(x[i]) * back[i];
      CHECK(left == doctest::Approx(right).epsilon(1e-5));
    }
  }

  TEST_CASE("im2col, im2col_rows and col2im equal their definitions, on rows narrow and wide") {
    // The fast paths work a row of 16-wide pieces at a time (up to 64 wide); wider rows,
    // strides along x and dilations take the plain loops. All must match the formula.
    Generator gen(6);
    for (const kernels::ConvGeometry& g :
         {kernels::ConvGeometry{16, 14, 14, 5, 5, 1, 1, 2, 2, 1, 1}, kernels::ConvGeometry{1, 28, 28, 5, 5, 1, 1, 2, 2, 1, 1},
          kernels::ConvGeometry{2, 9, 17, 3, 3, 1, 1, 1, 1, 1, 1}, kernels::ConvGeometry{3, 7, 70, 3, 2, 2, 1, 0, 1, 1, 2},
          kernels::ConvGeometry{2, 8, 33, 3, 3, 1, 2, 1, 1, 1, 1}, kernels::ConvGeometry{1, 5, 3, 3, 3, 1, 1, 2, 2, 2, 2},
          // stride 2 on rows several vectors wide (even lanes of two vectors), with SAME's extra column
          kernels::ConvGeometry{3, 9, 101, 3, 3, 2, 2, 1, 1, 1, 1}, kernels::ConvGeometry{2, 6, 96, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1}}) {
      CAPTURE(g.width);
      const int64_t rows = g.channels * g.kernel_h * g.kernel_w, out_h = g.out_h(), out_w = g.out_w(), cols = out_h * out_w;
      std::vector<float> x(g.channels * g.height * g.width), c(rows * cols), im(rows * cols), expected_im(rows * cols, 0.f);
      std::vector<float> back(x.size(), 0.5f), expected_back(x.size(), 0.5f);  // col2im adds to what is there
      for (float& v : x) v = gen.uniform(-1, 1);
      for (float& v : c) v = gen.uniform(-1, 1);
      for (int64_t ch = 0; ch < g.channels; ++ch)
        for (int64_t i = 0; i < g.kernel_h; ++i)
          for (int64_t j = 0; j < g.kernel_w; ++j)
            for (int64_t oy = 0; oy < out_h; ++oy)
              for (int64_t ox = 0; ox < out_w; ++ox) {
                const int64_t row = (ch * g.kernel_h + i) * g.kernel_w + j, col = oy * out_w + ox;
                const int64_t y = oy * g.stride_h - g.pad_h + i * g.dilation_h, xx = ox * g.stride_w - g.pad_w + j * g.dilation_w;
                if (y < 0 || y >= g.height || xx < 0 || xx >= g.width) continue;
                expected_im[row * cols + col] = x[(ch * g.height + y) * g.width + xx];
                expected_back[(ch * g.height + y) * g.width + xx] += c[row * cols + col];
              }
      kernels::im2col(x.data(), g, im.data(), cols);
      CHECK(im == expected_im);
      kernels::col2im(c.data(), g, back.data(), cols);
      for (size_t i = 0; i < back.size(); ++i) REQUIRE(back[i] == doctest::Approx(expected_back[i]).epsilon(1e-5));
      // A band of output rows is the matching slice of the whole.
      const int64_t oy0 = out_h / 3, oy1 = out_h - out_h / 4, width = (oy1 - oy0) * out_w;
      std::vector<float> band(rows * width);
      kernels::im2col_rows(x.data(), g, oy0, oy1, band.data(), width);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < width; ++k) REQUIRE(band[r * width + k] == expected_im[r * cols + oy0 * out_w + k]);
    }
  }

  TEST_CASE("conv2d_stride1 equals the seven-loop convolution, and runs a flipped weight through strides") {
    // Channel counts around the 8- and 4-channel blocks, rows around the 16- and 8-wide pieces, kernels
    // from 1x1 to 5x5 with every padding that fits.
    Generator gen(7);
    struct Case { int64_t C, H, W, O, kh, kw, ph, pw; };
    for (const Case& c : {Case{1, 28, 28, 16, 5, 5, 2, 2}, Case{16, 14, 14, 32, 5, 5, 2, 2}, Case{3, 1, 1, 1, 1, 1, 0, 0},
                          Case{3, 5, 7, 9, 3, 2, 1, 0}, Case{17, 6, 33, 3, 3, 3, 2, 1}, Case{2, 17, 16, 17, 2, 3, 0, 2},
                          Case{5, 4, 65, 8, 1, 1, 0, 0}, Case{4, 3, 3, 7, 3, 3, 1, 1},
                          // past 512 KB padded: bands of pieces, the last one partly outside the image
                          Case{12, 100, 117, 6, 3, 3, 1, 1}}) {
      CAPTURE(c.C); CAPTURE(c.H); CAPTURE(c.W); CAPTURE(c.O); CAPTURE(c.kh); CAPTURE(c.kw);
      const kernels::ConvGeometry g{c.C, c.H, c.W, c.kh, c.kw, 1, 1, c.ph, c.pw, 1, 1};
      std::vector<float> x(c.C * c.H * c.W), w(c.O * c.C * c.kh * c.kw), bias(c.O);
      for (float& v : x) v = gen.uniform(-1, 1);
      for (float& v : w) v = gen.uniform(-1, 1);
      for (float& v : bias) v = gen.uniform(-1, 1);
      const int64_t taps = c.kh * c.kw, out_count = c.O * g.out_h() * g.out_w();
      std::vector<float> expected(out_count), out(out_count, std::nanf(""));
      kernels::conv2d_reference(x.data(), 1, g, w.data(), bias.data(), c.O, 1, expected.data());
      const kernels::DirectConv d{c.C, c.H, c.W, c.O, c.kh, c.kw, c.ph, c.pw, c.C * taps, taps, c.kw, 1};
      kernels::conv2d_stride1(x.data(), d, w.data(), bias.data(), out.data());
      for (int64_t i = 0; i < out_count; ++i) REQUIRE(out[i] == doctest::Approx(expected[i]).epsilon(1e-5));
      // On the caller alone (a busy machine) the tiles run in one piece: the same bits.
      std::vector<float> alone(out_count, std::nanf(""));
      {
        kernels::CallerOnly one_thread;
        kernels::conv2d_stride1(x.data(), d, w.data(), bias.data(), alone.data());
      }
      for (int64_t i = 0; i < out_count; ++i) REQUIRE(alone[i] == out[i]);
      // The same weight read transposed and flipped is the input gradient of the convolution,
      // whenever the padding is below the kernel size: checked against its definition.
      if (c.ph >= c.kh || c.pw >= c.kw) continue;
      std::vector<float> dy(out_count);
      for (float& v : dy) v = gen.uniform(-1, 1);
      std::vector<float> dx(x.size(), std::nanf(""));
      const kernels::DirectConv t{c.O, g.out_h(), g.out_w(), c.C, c.kh, c.kw, c.kh - 1 - c.ph, c.kw - 1 - c.pw,
                                  taps, c.C * taps, -c.kw, -1};
      kernels::conv2d_stride1(dy.data(), t, w.data() + taps - 1, nullptr, dx.data());
      check_conv_gradients_by_definition({x, 1, g, w, c.O, 1, dy}, dx.data(), nullptr);
    }
  }

  TEST_CASE("conv3x3_winograd equals the seven-loop convolution, and runs a flipped weight through strides") {
    // Odd and even output sizes (a half tile at the right or bottom edge), padding 0, 1, 2
    // and (0, 2), channel counts that are not multiples of the vector width; maps of one
    // band, of a few bands in turn, of many bands shared among the threads (2 x 18 x 520), and
    // gemms large enough to share themselves among the threads (96 x 34 x 34).
    Generator gen(9);
    using Case = WinogradCase;
    for (const Case& c : {Case{3, 5, 7, 2, 1, 1}, Case{33, 9, 12, 35, 1, 1}, Case{17, 8, 8, 5, 0, 0},
                          Case{4, 13, 6, 9, 2, 2}, Case{6, 7, 11, 3, 0, 2}, Case{40, 36, 70, 34, 1, 1},
                          Case{2, 3, 3, 2, 0, 0}, Case{2, 18, 520, 3, 1, 1}, Case{96, 34, 34, 96, 1, 1}})
      check_winograd(gen, c, 1e-5, c.C * c.O * c.H * c.W > 2'000'000 ? 0 : 40);
  }

  TEST_CASE("conv2d_stride1_weight_grad equals the definition of dW, summed over images") {
    Generator gen(8);
    struct Case { int64_t N, C, H, W, O, kh, kw, ph, pw; };
    for (const Case& c : {Case{3, 16, 14, 14, 32, 5, 5, 2, 2}, Case{9, 1, 28, 28, 16, 5, 5, 2, 2}, Case{2, 3, 5, 7, 9, 3, 2, 1, 0},
                          Case{1, 2, 17, 33, 5, 3, 3, 2, 1}, Case{10, 4, 3, 3, 3, 1, 1, 0, 0}, Case{2, 3, 6, 40, 6, 2, 7, 0, 3},
                          // batch 8 on a width that is no multiple of any vector width; padding past a 1x1 kernel
                          Case{8, 5, 9, 17, 7, 5, 5, 2, 2}, Case{1, 2, 4, 5, 3, 1, 1, 1, 2}}) {
      CAPTURE(c.N); CAPTURE(c.C); CAPTURE(c.W); CAPTURE(c.O); CAPTURE(c.kw);
      const kernels::ConvGeometry g{c.C, c.H, c.W, c.kh, c.kw, 1, 1, c.ph, c.pw, 1, 1};
      const int64_t P = g.out_h() * g.out_w(), patch = c.C * c.kh * c.kw;
      std::vector<float> x(c.N * c.C * c.H * c.W), dy(c.N * c.O * P), w(c.O * patch, 0.f);
      for (float& v : x) v = gen.uniform(-1, 1);
      for (float& v : dy) v = gen.uniform(-1, 1);
      std::vector<float> dw(c.O * patch, 0.25f);  // it adds to what is there
      const kernels::DirectConv d{c.C, c.H, c.W, c.O, c.kh, c.kw, c.ph, c.pw, patch, c.kh * c.kw, c.kw, 1};
      REQUIRE(kernels::conv2d_stride1_weight_grad(x.data(), dy.data(), c.N, d, dw.data()));  // every case here has it
      check_conv_gradients_by_definition({x, c.N, g, w, c.O, 1, dy}, nullptr, dw.data(), 0.25f);
    }
  }

  TEST_CASE("depthwise convolution: the naive kernels are the seven-loop convolution and its adjoints") {
    // With symmetric padding the naive depthwise forward is conv2d_reference with groups =
    // channels; its gradients satisfy <conv(x), dy> = <x, dx(dy)> = <w, dw(x, dy)> (the
    // convolution is linear in x and in w).
    Generator gen(21);
    struct Case { int64_t N, C, m, H, W, kh, kw, s, p; };
    for (const Case& c : {Case{2, 3, 1, 7, 9, 3, 3, 1, 1}, Case{1, 5, 2, 8, 5, 3, 3, 2, 1}, Case{3, 2, 3, 6, 11, 5, 3, 2, 2}}) {
      CAPTURE(c.C); CAPTURE(c.m); CAPTURE(c.s); CAPTURE(c.W);
      const kernels::ConvGeometry g{c.C, c.H, c.W, c.kh, c.kw, c.s, c.s, c.p, c.p, 1, 1};
      const kernels::Depthwise d{c.C, c.H, c.W, c.m, c.kh, c.kw, c.s, c.s, c.p, c.p, g.out_h(), g.out_w()};
      const int64_t O = c.C * c.m, out_count = c.N * O * d.out_h * d.out_w;
      std::vector<float> x(c.N * c.C * c.H * c.W), w(O * c.kh * c.kw), dy(out_count);
      for (std::vector<float>* v : {&x, &w, &dy})
        for (float& e : *v) e = gen.uniform(-1, 1);
      std::vector<float> expected(out_count), out(out_count);
      kernels::conv2d_reference(x.data(), c.N, g, w.data(), nullptr, O, c.C, expected.data());
      kernels::depthwise_conv2d_naive(x.data(), c.N, d, w.data(), nullptr, out.data());
      for (int64_t i = 0; i < out_count; ++i) REQUIRE(out[i] == doctest::Approx(expected[i]).epsilon(1e-5));
      std::vector<float> dx(x.size()), dw(w.size(), 0.f);
      kernels::depthwise_conv2d_backward_input_naive(dy.data(), c.N, d, w.data(), dx.data());
      kernels::depthwise_conv2d_backward_weight_naive(x.data(), dy.data(), c.N, d, dw.data());
      const double y_dot_dy = std::inner_product(out.begin(), out.end(), dy.begin(), 0.0);
      CHECK(std::inner_product(x.begin(), x.end(), dx.begin(), 0.0) == doctest::Approx(y_dot_dy).epsilon(1e-4));
      CHECK(std::inner_product(w.begin(), w.end(), dw.begin(), 0.0) == doctest::Approx(y_dot_dy).epsilon(1e-4));
    }
  }

  TEST_CASE("depthwise convolution: the fast kernels equal the naive ones (strides, asymmetric padding, odd sizes)") {
    // TensorFlow's SAME padding with stride 2 on an even size pads 0 before and 1 after:
    // pad_top/pad_left and the output size are given separately. Channel counts that are not
    // a multiple of the vector width, widths from 1 to 151, batch 1 and 8, multipliers 1 and 2.
    // (With stride 1 and one kernel per channel, dx runs the forward kernel on dY.)
    Generator gen(22);
    using Case = DepthwiseCase;
    const auto same = same_padding;
    for (const Case& c : {same(1, 17, 1, 150, 150, 3, 2), same(8, 3, 1, 19, 38, 3, 2), same(1, 5, 1, 75, 75, 3, 1),
                          same(8, 19, 2, 10, 7, 3, 1), same(2, 4, 1, 1, 1, 3, 2), same(1, 2, 1, 9, 151, 5, 2),
                          Case{2, 3, 1, 8, 13, 3, 3, 2, 2, 1, 0, 4, 7}, Case{1, 6, 3, 7, 20, 3, 2, 1, 2, 2, 1, 9, 11},
                          Case{3, 1, 1, 5, 33, 1, 1, 1, 1, 0, 0, 5, 33}, Case{1, 9, 1, 12, 12, 3, 3, 3, 3, 1, 1, 4, 4},
                          // stride 2 with an odd left padding on rows wider than two vectors (the
                          // phases split and zipped VW columns at a time), multipliers 1 and 2
                          Case{1, 5, 1, 6, 70, 3, 3, 2, 2, 1, 1, 3, 35}, Case{2, 3, 2, 5, 67, 3, 3, 2, 2, 1, 1, 3, 34},
                          // stride 1 with uneven padding (dx as a forward pass with the kernel turned)
                          Case{2, 3, 1, 8, 13, 3, 3, 1, 1, 0, 2, 6, 13}, Case{1, 17, 1, 7, 9, 3, 2, 1, 1, 2, 1, 7, 9}}) {
      check_depthwise_against_naive(c, gen);
    }
  }

  TEST_CASE("the engine's conv2d paths (1x1 as a gemm, depthwise, stride 1, Winograd, im2col) equal the references") {
    // conv2d_forward against conv2d_reference; the backward fast paths against the
    // definition of dx and dW (from conv2d_reference, one unit tensor at a time).
    Generator gen(23);
    struct Case { int64_t N, C, H, W, O, k, s, p, groups, extra = 0; };  // extra: SAME's bottom/right padding
    for (const Case& c : {Case{1, 19, 9, 13, 21, 1, 1, 0, 1}, Case{8, 32, 10, 10, 17, 1, 1, 0, 1},
                          Case{8, 16, 9, 7, 40, 1, 1, 0, 1},  // a batch of 1x1 expansions: dx image by image
                          Case{8, 17, 11, 6, 17, 3, 2, 1, 17}, Case{1, 16, 15, 15, 32, 3, 1, 1, 16},
                          Case{2, 3, 9, 8, 5, 3, 1, 1, 1}, Case{2, 32, 20, 22, 33, 3, 1, 1, 1},
                          // one large image with stride 2: forward in bands of output rows, or as one
                          // gemm when there are few of them (5 here); dx as one shared gemm + col2im
                          Case{1, 3, 80, 79, 48, 3, 2, 1, 1}, Case{1, 64, 10, 9, 128, 3, 2, 1, 1},
                          // stride 2 with SAME's asymmetric padding (0 above, 1 below, the photo model's
                          // stem), one image and a batch of 8: dx in each thread's column buffer
                          Case{1, 3, 30, 31, 32, 3, 2, 0, 1, 1}, Case{8, 3, 9, 11, 7, 3, 2, 0, 1, 1}}) {
      CAPTURE(c.N); CAPTURE(c.C); CAPTURE(c.O); CAPTURE(c.k); CAPTURE(c.s); CAPTURE(c.groups);
      const kernels::ConvGeometry g{c.C, c.H, c.W, c.k, c.k, c.s, c.s, c.p, c.p, 1, 1, c.extra, c.extra};
      const int64_t P = g.out_h() * g.out_w(), image = c.C * c.H * c.W, patch = c.C / c.groups * c.k * c.k;
      std::vector<float> x(c.N * image), w(c.O * patch), bias(c.O), dy(c.N * c.O * P);
      for (std::vector<float>* v : {&x, &w, &bias, &dy})
        for (float& e : *v) e = gen.uniform(-1, 1);
      std::vector<float> expected(dy.size()), out(dy.size(), std::nanf(""));
      kernels::conv2d_reference(x.data(), c.N, g, w.data(), bias.data(), c.O, c.groups, expected.data());
      kernels::conv2d_forward(x.data(), c.N, g, w.data(), bias.data(), c.O, c.groups, out.data());
      for (size_t i = 0; i < out.size(); ++i) REQUIRE(out[i] == doctest::Approx(expected[i]).epsilon(1e-4));
      std::vector<float> dx(x.size(), std::nanf("")), dw(w.size(), 0.f);
      const bool dx_fast = kernels::conv2d_backward_input_fast(dy.data(), c.N, g, w.data(), c.O, c.groups, dx.data());
      REQUIRE(dx_fast);  // every case here is 1x1, depthwise, stride 1, or groups 1 with a stride
      const bool dw_fast = kernels::conv2d_backward_weight_fast(x.data(), dy.data(), c.N, g, c.O, c.groups, dw.data());
      if (!dw_fast) CHECK((c.groups == 1 && c.k > 1));  // the direct stride-1 weight gradient may decline (no AVX-512), stride 2 has none
      check_conv_gradients_by_definition({x, c.N, g, w, c.O, c.groups, dy}, dx_fast ? dx.data() : nullptr,
                                         dw_fast ? dw.data() : nullptr);
    }
  }

  TEST_CASE("2x2 max-pool: the fast kernels equal the naive ones on odd widths, with ties") {
    // Widths around the 16- and 8-window vectors (AVX-512, AVX2), odd heights and widths (a
    // last row or column that no window covers), values drawn from 3 levels so most windows
    // have ties, and a few NaNs (the first NaN of a window is its maximum).
    Generator gen(17);
    for (const auto& [planes, H, W] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {3, 5, 7}, {2, 4, 30}, {4, 6, 32}, {1, 3, 33}, {5, 28, 28}, {2, 9, 65}, {3, 4, 14}, {2, 5, 17}, {2, 6, 35}}) {
      CAPTURE(planes);
      CAPTURE(H);
      CAPTURE(W);
      std::vector<float> x(planes * H * W), g(planes * (H / 2) * (W / 2));
      for (float& v : x) v = static_cast<float>(gen.next_u64() % 3);
      const bool nans = W == 17 || W == 35;
      if (nans)
        for (size_t i = 5; i < x.size(); i += 23) x[i] = std::nanf("");
      for (float& v : g) v = gen.normal();
      std::vector<float> out_fast(g.size(), -1.f), out_naive(g.size(), -2.f);
      kernels::max_pool2x2(x.data(), planes, H, W, out_fast.data());
      kernels::max_pool2x2_naive(x.data(), planes, H, W, out_naive.data());
      for (size_t i = 0; i < g.size(); ++i)
        REQUIRE(((out_fast[i] == out_naive[i]) || (std::isnan(out_fast[i]) && std::isnan(out_naive[i]))));
      std::vector<float> dx_fast(x.size(), 0.f), dx_naive(x.size(), 0.f);
      kernels::max_pool2x2_backward(x.data(), g.data(), planes, H, W, dx_fast.data());
      kernels::max_pool2x2_backward_naive(x.data(), g.data(), planes, H, W, dx_naive.data());
      CHECK(dx_fast == dx_naive);
      if (nans) continue;  // (the checks below compare values, and a NaN equals nothing)
      // Properties of the answer, window by window: its gradient lands on one pixel, which
      // holds the window's maximum, and every pixel before it in reading order is smaller.
      for (int64_t c = 0; c < planes; ++c)
        for (int64_t oy = 0; oy < H / 2; ++oy)
          for (int64_t ox = 0; ox < W / 2; ++ox) {
            const float* p = x.data() + c * H * W;
            const int64_t at[4] = {2 * oy * W + 2 * ox, 2 * oy * W + 2 * ox + 1, (2 * oy + 1) * W + 2 * ox,
                                   (2 * oy + 1) * W + 2 * ox + 1};
            const float window_grad = g[(c * (H / 2) + oy) * (W / 2) + ox];
            int taken = 0;
            float earlier = -1.f;  // the largest value before the pixel that took the gradient
            for (int k = 0; k < 4; ++k) {
              const float d = dx_naive[c * H * W + at[k]];
              if (d != 0.f) {
                ++taken;
                REQUIRE(d == window_grad);
                REQUIRE(p[at[k]] == out_naive[(c * (H / 2) + oy) * (W / 2) + ox]);
                REQUIRE(earlier < p[at[k]]);
              }
              if (taken == 0) earlier = std::max(earlier, p[at[k]]);
            }
            REQUIRE(taken == 1);
          }
    }
  }

  TEST_CASE("parallel_for covers the range exactly once and rethrows") {
    std::vector<std::atomic<int>> hits(1000);
    kernels::parallel_for(0, 1000, 7, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) hits[i]++;
    });
    for (auto& h : hits) REQUIRE(h.load() == 1);
    // On the caller alone a Fixed body still gets the pool's chunks, one after the other; a
    // Free one gets the whole range in one piece.
    {
      kernels::CallerOnly alone;
      std::vector<std::pair<int64_t, int64_t>> fixed, free;
      kernels::parallel_for(10, 1010, 7, [&](int64_t lo, int64_t hi) { fixed.emplace_back(lo, hi); });
      kernels::parallel_for(10, 1010, 7, [&](int64_t lo, int64_t hi) { free.emplace_back(lo, hi); },
                            kernels::Split::Free);
      REQUIRE(fixed.size() == static_cast<size_t>(kernels::num_threads()));
      CHECK(fixed.front().first == 10);
      CHECK(fixed.back().second == 1010);
      for (size_t k = 1; k < fixed.size(); ++k) CHECK(fixed[k].first == fixed[k - 1].second);
      REQUIRE(free.size() == 1);
      CHECK(free[0] == std::pair<int64_t, int64_t>{10, 1010});
    }
    // Only the chunk holding the last item throws: on a worker or on the caller alike.
    CHECK_THROWS_AS(kernels::parallel_for(0, 100, 1, [](int64_t, int64_t hi) {
      if (hi == 100) throw Error("boom");
    }), Error);
    CHECK(kernels::num_threads() >= 1);
  }

  TEST_CASE("parallel_for's busy-machine spell: a small call that waited long for a worker starts 5 ms of serial calls") {
    using kernels::BusySpells;
    using std::chrono::microseconds;
    using std::chrono::milliseconds;
    BusySpells spells;
    const BusySpells::Clock::time_point t0{};  // the policy never reads a clock: times are given
    // Calls whose workers kept up (a wait up to the stall time) start nothing, whatever their size.
    spells.after_call({.own = microseconds(20), .wait = microseconds(10), .end = t0});
    spells.after_call({.own = milliseconds(30), .wait = microseconds(250), .end = t0});
    CHECK_FALSE(spells.serial(t0));
    // A large call whose workers lagged (own share 2 ms) says nothing about small calls.
    spells.after_call({.own = milliseconds(2), .wait = milliseconds(3), .end = t0});
    CHECK_FALSE(spells.serial(t0));
    // A small call (20 us) that waited 2 ms for a worker: 5 ms of serial calls from its end.
    const auto t = t0 + milliseconds(1);
    spells.after_call({.own = microseconds(20), .wait = milliseconds(2), .end = t});
    CHECK(spells.serial(t));
    CHECK(spells.serial(t + microseconds(4999)));
    CHECK_FALSE(spells.serial(t + milliseconds(5)));
    // A call that kept up does not end a spell early; another stall extends it from its own end.
    spells.after_call({.own = microseconds(20), .wait = microseconds(5), .end = t + milliseconds(1)});
    CHECK(spells.serial(t + milliseconds(4)));
    spells.after_call({.own = microseconds(99), .wait = microseconds(251), .end = t + milliseconds(3)});
    CHECK(spells.serial(t + milliseconds(7)));
    CHECK_FALSE(spells.serial(t + milliseconds(8)));
  }

  TEST_CASE("parallel_for's busy-machine spell: while the process is preempted, small calls run on the caller alone") {
    using kernels::BusySpells;
    using std::chrono::microseconds;
    using std::chrono::milliseconds;
    const BusySpells::Clock::time_point t0{};
    BusySpells small, large;
    for (int i = 0; i < 16; ++i) {  // one has lately made 20 us calls, the other 2 ms ones, all kept up with
      small.after_call({.own = microseconds(20), .wait = microseconds(5), .end = t0});
      large.after_call({.own = milliseconds(2), .wait = microseconds(5), .end = t0});
    }
    // Idle: the count does not move (one preemption in a window is not contention).
    for (BusySpells* s : {&small, &large}) {
      s->preemptions(40, t0);
      s->preemptions(40, t0 + milliseconds(1));
      s->preemptions(41, t0 + milliseconds(2));
      CHECK_FALSE(s->serial(t0 + milliseconds(2)));
    }
    // Two more within 20 ms: contention. Small calls go serial until 20 ms after the last count
    // that showed it; large ones keep sharing.
    const auto t = t0 + milliseconds(10);
    small.preemptions(43, t);
    large.preemptions(43, t);
    CHECK(small.serial(t));
    CHECK(small.serial(t + milliseconds(19)));
    CHECK_FALSE(small.serial(t + milliseconds(20)));
    CHECK_FALSE(large.serial(t));
    // One large call among small ones keeps calls sharing, even contended, for about 20 calls.
    small.after_call({.own = milliseconds(1), .end = t});
    CHECK_FALSE(small.serial(t + milliseconds(1)));
    for (int i = 0; i < 17; ++i) small.after_call({.own = microseconds(20), .end = t});
    CHECK_FALSE(small.serial(t + milliseconds(1)));  // 1 ms x (7/8)^17 = 103 us
    small.after_call({.own = microseconds(20), .end = t});
    CHECK(small.serial(t + milliseconds(1)));  // 90 us
    // Preemptions spread thinner than two in 20 ms start nothing.
    BusySpells sparse;
    for (int i = 0; i < 8; ++i) sparse.after_call({.own = microseconds(20), .end = t0});
    for (int i = 0; i < 10; ++i) sparse.preemptions(i, t0 + milliseconds(25 * i));
    CHECK_FALSE(sparse.serial(t0 + milliseconds(225)));
    // A share during which the process was preempted may hold a neighbour's time slice: it
    // does not count as large (a small call taken for a large one would share, and a worker
    // stopped in its chunk would hold the caller). An unpreempted large share still does.
    BusySpells stretched;
    for (int i = 0; i < 16; ++i) stretched.after_call({.own = microseconds(20), .end = t0});
    CHECK(stretched.preemptions(7, t0) == 0);  // the first count only sets where counting starts
    CHECK(stretched.preemptions(10, t0 + milliseconds(1)) == 3);
    CHECK(stretched.serial(t0 + milliseconds(1)));
    stretched.after_call({.own = milliseconds(3), .end = t0 + milliseconds(4), .preempted = true});
    CHECK(stretched.serial(t0 + milliseconds(4)));
    stretched.after_call({.own = milliseconds(3), .end = t0 + milliseconds(8)});
    CHECK_FALSE(stretched.serial(t0 + milliseconds(8)));
  }


}

// The depthwise kernels' two direct paths (depthwise.cpp): the stride-2 3x3 input gradient
// read straight from dY's rows, and stride-1 maps narrower than four vectors run as one long
// row over a plane of exact row length. Each against the naive kernels (the formula), over
// every width up to past three vectors (a multiple of no vector width and of every one),
// both left paddings and three top paddings, outputs larger and smaller than SAME's, odd
// heights, batch 1 and 8, and on one and two threads.
TEST_SUITE("kernels-depthwise-direct") {
  // The pool's thread count for one scope, restored when the scope ends (a failed REQUIRE too).
  struct ThreadCount {
    int saved = kernels::num_threads();
    explicit ThreadCount(int n) { kernels::set_num_threads(n); }
    ~ThreadCount() { kernels::set_num_threads(saved); }
  };

  constexpr int64_t kWidestVector = 16;  // AVX-512's floats; every narrower width divides it
  using Case = DepthwiseCase;
  constexpr auto same = same_padding;

  TEST_CASE("stride-2 3x3 input gradient from dY's rows equals the naive kernel") {
    Generator gen(28);
    const auto check = [&](const Case& c) { check_depthwise_against_naive(c, gen); };
    for (const int threads : {1, 2}) {
      const ThreadCount use(threads);
      for (int64_t W = 1; W <= 3 * kWidestVector + 5; ++W) {
        check(same(1, 3, 1, 2 * (W % 5) + 1, W, 3, 2));  // odd heights, SAME
        check(Case{1, 2, 1, 5, W, 3, 3, 2, 2, 1, 1, 3, (W + 1) / 2});  // left 1
        check(Case{1, 2, 1, 4, W, 3, 3, 2, 2, 0, 0, 2, (W - 1) / 2 + 1});  // left 0
      }
      for (const int64_t top : {0, 1, 2})
        for (const int64_t left : {0, 1}) {
          // outputs past SAME's (dY columns and rows that reach no pixel) and fewer than SAME's
          check(Case{2, 3, 1, 7, 9, 3, 3, 2, 2, top, left, 6, 8});
          check(Case{1, 3, 1, 9, 21, 3, 3, 2, 2, top, left, 2, 3});
        }
      check(same(8, 5, 1, 38, 38, 3, 2));  // batch 8, the photo model's sizes
      check(same(1, 7, 1, 150, 150, 3, 2));
      check(same(1, 4, 1, 19, 19, 3, 2));
      check(same(2, 3, 2, 11, 17, 3, 2));  // a multiplier: the padded-plane path
    }
  }

  TEST_CASE("stride-1 narrow maps as one run over the plane equal the naive kernel") {
    Generator gen(29);
    const auto check = [&](const Case& c) { check_depthwise_against_naive(c, gen); };
    for (const int threads : {1, 2}) {
      const ThreadCount use(threads);
      for (int64_t W = 1; W < 4 * kWidestVector + 2; ++W) {
        check(same(1, 3, 1, W % 7 + 1, W, 3, 1));
        check(Case{1, 2, 1, 3, W, 3, 2, 1, 1, 2, 1, 4, W + 1});  // asymmetric, 3x2
      }
      check(same(8, 19, 1, 19, 19, 3, 1));  // batch 8, the photo model's narrow maps
      check(same(1, 9, 1, 10, 10, 3, 1));
      check(same(1, 5, 3, 13, 38, 5, 1));  // 5x5, multiplier 3
      check(Case{2, 3, 2, 6, 11, 3, 3, 1, 1, 0, 0, 4, 9});  // no padding
      check(Case{1, 4, 1, 6, 11, 3, 3, 1, 1, 1, 2, 5, 6});  // fewer outputs than the map's
      check(Case{1, 4, 1, 6, 11, 3, 3, 1, 1, 2, 2, 9, 14});  // more: pad 2 on every side
    }
  }
}

TEST_SUITE("kernels-winograd-4x4") {
  TEST_CASE("conv3x3_winograd's F(4x4) tiles (large maps) equal the seven-loop convolution, also through the engine") {
    // Maps of 196 tiles of 4x4 and more take F(4x4, 3x3) with 8 lanes (AVX2), of 3136 and
    // more with 16 (AVX-512: the last two maps here): output sizes that are no multiple of 4
    // (a last row or column of tiles partly outside), widths that are no multiple of 8 or 16
    // (the vectors of tiles and the scalar tail), padding 0, 1, 2 and (0, 2), 1 to 67
    // channels, maps of one band and of many bands shared among the threads; the flipped,
    // transposed weight of the input gradient; batches of 1 and 8 through conv2d_forward and
    // the stride-1 input gradient. Tolerance: 1e-4 of the sums' size (sqrt(C*9)/3 for values
    // in [-1, 1]): F(4x4)'s constants (1/6, 1/24, 5, 8) round more than F(2x2)'s halves;
    // measured up to about 2e-5 here.
    Generator gen(41);
    using Case = WinogradCase;
    for (const Case& c : {Case{1, 56, 56, 1, 1, 1}, Case{3, 57, 61, 5, 1, 1}, Case{9, 58, 59, 7, 0, 0},
                          Case{5, 60, 67, 3, 2, 2}, Case{4, 61, 62, 9, 0, 2}, Case{67, 56, 57, 33, 1, 1},
                          Case{2, 20, 530, 3, 1, 1}, Case{8, 113, 115, 6, 1, 1}, Case{3, 225, 229, 2, 1, 1},
                          Case{1, 230, 227, 4, 0, 2}})
      check_winograd(gen, c, 1e-4, 12);
    for (const int64_t N : {1, 8}) {  // the engine's path: winograd_pays, images over the threads
      CAPTURE(N);
      const kernels::ConvGeometry g{32, 57, 58, 3, 3, 1, 1, 1, 1, 1, 1};
      const int64_t O = 33, P = g.out_h() * g.out_w();
      std::vector<float> x(N * 32 * 57 * 58), w(O * 32 * 9), bias(O), dy(N * O * P);
      for (std::vector<float>* v : {&x, &w, &bias, &dy})
        for (float& e : *v) e = gen.uniform(-1, 1);
      std::vector<float> expected(dy.size()), out(dy.size(), std::nanf(""));
      kernels::conv2d_reference(x.data(), N, g, w.data(), bias.data(), O, 1, expected.data());
      kernels::conv2d_forward(x.data(), N, g, w.data(), bias.data(), O, 1, out.data());
      for (size_t i = 0; i < out.size(); ++i) REQUIRE(out[i] == doctest::Approx(expected[i]).epsilon(1e-4).scale(4.0));
      std::vector<float> dx(x.size(), std::nanf(""));
      REQUIRE(kernels::conv2d_backward_input_fast(dy.data(), N, g, w.data(), O, 1, dx.data()));
      check_conv_gradients_by_definition({x, N, g, w, O, 1, dy}, dx.data(), nullptr, 0.f, 12);
    }
  }
}
