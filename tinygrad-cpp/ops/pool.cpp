// Pooling over [N, C, H, W]: max_pool2d, avg_pool2d, adaptive_avg_pool2d.
// Windows may overlap (kernel 3, stride 2 as in AlexNet): a pixel then collects the
// gradient of every window it belongs to.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/ops/backward_rules.h"

namespace tg {
namespace {

struct PoolPlan {
  int64_t planes, height, width, out_h, out_w;  // planes = N*C
  int64_t kh, kw, sh, sw, ph, pw;
  // The usual pooling layer: 2x2 windows, stride 2, no padding (windows never overlap).
  bool disjoint_2x2() const { return kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0; }
};

PoolPlan plan_pool(const Tensor& x, const OpParams& p, const char* op) {
  if (x.ndim() != 4) throw Error(fmt::format("{}: input {} must be [N,C,H,W]", op, shape_str(x.shape())));
  PoolPlan plan{x.dim(0) * x.dim(1), x.dim(2), x.dim(3), 0, 0, p.kernel[0], p.kernel[1],
                p.stride[0], p.stride[1], p.padding[0], p.padding[1]};
  if (plan.kh < 1 || plan.kw < 1 || plan.sh < 1 || plan.sw < 1 || plan.ph < 0 || plan.pw < 0 ||
      2 * plan.ph > plan.kh || 2 * plan.pw > plan.kw)
    throw Error(fmt::format("{}: kernel [{},{}] stride [{},{}] padding [{},{}] invalid (padding at most half the kernel)",
                            op, plan.kh, plan.kw, plan.sh, plan.sw, plan.ph, plan.pw));
  plan.out_h = (plan.height + 2 * plan.ph - plan.kh) / plan.sh + 1;
  plan.out_w = (plan.width + 2 * plan.pw - plan.kw) / plan.sw + 1;
  if (plan.height + 2 * plan.ph < plan.kh || plan.width + 2 * plan.pw < plan.kw)
    throw Error(fmt::format("{}: kernel [{},{}] does not fit input {}", op, plan.kh, plan.kw, shape_str(x.shape())));
  return plan;
}

// At least ~32k input values a thread: below that, waking a second thread costs more than it saves.
int64_t planes_per_thread(const PoolPlan& p) { return std::max<int64_t>(1, (int64_t{1} << 15) / (p.height * p.width)); }

OpParams pool_params(Pair2 kernel, Pair2 stride, Pair2 padding) {
  OpParams p;
  p.kernel = {kernel.h, kernel.w};
  p.stride = {stride.h == 0 ? kernel.h : stride.h, stride.w == 0 ? kernel.w : stride.w};
  p.padding = {padding.h, padding.w};
  return p;
}

// Index (within its plane) of the first maximum of window (oy, ox); padding never wins.
inline int64_t window_argmax(const float* __restrict plane, const PoolPlan& p, int64_t oy, int64_t ox) {
  const int64_t y0 = oy * p.sh - p.ph, x0 = ox * p.sw - p.pw;
  if (y0 >= 0 && x0 >= 0 && y0 + p.kh <= p.height && x0 + p.kw <= p.width) {  // inside: no bounds checks
    int64_t best = y0 * p.width + x0;
    float best_value = plane[best];
    for (int64_t i = 0; i < p.kh; ++i) {
      const float* row = plane + (y0 + i) * p.width + x0;
      for (int64_t j = 0; j < p.kw; ++j)
        if (row[j] > best_value) {
          best_value = row[j];
          best = (y0 + i) * p.width + x0 + j;
        }
    }
    return best;
  }
  int64_t best = -1;
  float best_value = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < p.kh; ++i) {
    const int64_t y = oy * p.sh - p.ph + i;
    if (y < 0 || y >= p.height) continue;
    for (int64_t j = 0; j < p.kw; ++j) {
      const int64_t x = ox * p.sw - p.pw + j;
      if (x < 0 || x >= p.width) continue;
      const float v = plane[y * p.width + x];
      if (best < 0 || v > best_value) {
        best = y * p.width + x;
        best_value = v;
      }
    }
  }
  return best;
}

// The usual pooling layer, 2x2 windows with stride 2, works on pairs of input rows
// (top, bottom). With AVX-512, 16 windows at a time: two loads per row bring 32 pixels,
// a permute splits them into the windows' left (even) and right (odd) pixels, and the
// row's tail is a masked load, so the 14- and 7-wide rows of FashionCNN need no scalar loop.
#if defined(__AVX512F__)
struct Windows16 {
  __m512 a, b, c, d;        // top-left, top-right, bottom-left, bottom-right of 16 windows
  __mmask16 left, right;    // which of the 32 input lanes exist (first and second load)
  __mmask16 windows;        // which of the 16 windows exist
};
inline __mmask16 first_lanes(int64_t n) { return static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1u); }
inline Windows16 load_windows(const float* top, const float* bottom, int64_t count) {
  static const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  static const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  Windows16 w;
  w.windows = first_lanes(count);
  w.left = first_lanes(2 * count);
  w.right = first_lanes(std::max<int64_t>(0, 2 * count - 16));
  const __m512 t0 = _mm512_maskz_loadu_ps(w.left, top), t1 = _mm512_maskz_loadu_ps(w.right, top + 16);
  const __m512 b0 = _mm512_maskz_loadu_ps(w.left, bottom), b1 = _mm512_maskz_loadu_ps(w.right, bottom + 16);
  w.a = _mm512_permutex2var_ps(t0, even, t1);
  w.b = _mm512_permutex2var_ps(t0, odd, t1);
  w.c = _mm512_permutex2var_ps(b0, even, b1);
  w.d = _mm512_permutex2var_ps(b0, odd, b1);
  return w;
}
// (the masked form of max: GCC 12's plain _mm512_max_ps trips -Wmaybe-uninitialized)
inline __m512 max16(__m512 x, __m512 y) { return _mm512_mask_max_ps(x, 0xffff, x, y); }
inline __m512 window_max(const Windows16& w) { return max16(max16(w.a, w.b), max16(w.c, w.d)); }
#endif

// One output row of 2x2 max-pooling: out[ox] = max of the window under (top, bottom).
inline void max_pool_2x2_row(const float* __restrict top, const float* __restrict bottom, float* __restrict out,
                             int64_t out_w) {
  int64_t ox = 0;
#if defined(__AVX512F__)
  for (; ox < out_w; ox += 16) {
    const Windows16 w = load_windows(top + 2 * ox, bottom + 2 * ox, out_w - ox);
    _mm512_mask_storeu_ps(out + ox, w.windows, window_max(w));
  }
#endif
  for (; ox < out_w; ++ox)
    out[ox] = std::max(std::max(top[2 * ox], top[2 * ox + 1]), std::max(bottom[2 * ox], bottom[2 * ox + 1]));
}

}  // namespace

// ---- max_pool2d ----
Tensor max_pool2d(const Tensor& x, Pair2 kernel, Pair2 stride, Pair2 padding) {
  const OpParams params = pool_params(kernel, stride, padding);
  const PoolPlan p = plan_pool(x, params, "max_pool2d");
  Tensor out = Tensor::empty({x.dim(0), x.dim(1), p.out_h, p.out_w});
  const float* src = x.data();
  float* result = out.data();
  kernels::parallel_for(0, p.planes, planes_per_thread(p), [=](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const float* __restrict plane = src + c * p.height * p.width;
      float* __restrict dst = result + c * p.out_h * p.out_w;
      if (p.disjoint_2x2()) {  // the usual pooling layer: the max of four
        for (int64_t oy = 0; oy < p.out_h; ++oy)
          max_pool_2x2_row(plane + 2 * oy * p.width, plane + (2 * oy + 1) * p.width, dst + oy * p.out_w, p.out_w);
        continue;
      }
      for (int64_t oy = 0; oy < p.out_h; ++oy)
        for (int64_t ox = 0; ox < p.out_w; ++ox) dst[oy * p.out_w + ox] = plane[window_argmax(plane, p, oy, ox)];
    }
  });
  return tape().record(Op::MaxPool2d, {x}, out, params);
}

// dx[argmax of window] += g[window]   (each window sends its gradient to its maximum)
std::vector<Tensor> max_pool2d_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const PoolPlan p = plan_pool(x, e.params, "max_pool2d");
  Tensor dx = Tensor::zeros(x.shape());
  // BEGIN SOLUTION(maxpool-backward)
  // HINT: for every window, find its maximum again (window_argmax) and add the window's
  // HINT: gradient to that one input pixel; overlapping windows add up.
  // One output row of 2x2 windows: each of a window's four pixels gets the window's
  // gradient if it is the window's first maximum (a, b, c, d in reading order), else 0.
  // Masks, not branches, so the loop runs at the same speed whatever the data.
  auto backward_2x2_row = [](const float* __restrict top, const float* __restrict bottom, const float* __restrict grad,
                              float* __restrict dtop, float* __restrict dbottom, int64_t out_w) {
    int64_t ox = 0;
#if defined(__AVX512F__)
    static const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    static const __m512i high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (; ox < out_w; ox += 16) {
      const Windows16 w = load_windows(top + 2 * ox, bottom + 2 * ox, out_w - ox);
      const __m512 m = window_max(w);
      const __mmask16 a_wins = _mm512_cmp_ps_mask(w.a, m, _CMP_EQ_OQ);
      const __mmask16 b_wins = _mm512_cmp_ps_mask(w.b, m, _CMP_EQ_OQ) & ~a_wins;
      const __mmask16 c_wins = _mm512_cmp_ps_mask(w.c, m, _CMP_EQ_OQ) & ~(a_wins | b_wins);
      const __mmask16 d_wins = ~(a_wins | b_wins | c_wins);
      const __m512 window_grad = _mm512_maskz_loadu_ps(w.windows, grad + ox);
      const __m512 ga = _mm512_maskz_mov_ps(a_wins, window_grad), gb = _mm512_maskz_mov_ps(b_wins, window_grad);
      const __m512 gc = _mm512_maskz_mov_ps(c_wins, window_grad), gd = _mm512_maskz_mov_ps(d_wins, window_grad);
      // interleave back: a0 b0 a1 b1 ... into the top row, c0 d0 ... into the bottom one
      _mm512_mask_storeu_ps(dtop + 2 * ox, w.left, _mm512_permutex2var_ps(ga, low, gb));
      _mm512_mask_storeu_ps(dtop + 2 * ox + 16, w.right, _mm512_permutex2var_ps(ga, high, gb));
      _mm512_mask_storeu_ps(dbottom + 2 * ox, w.left, _mm512_permutex2var_ps(gc, low, gd));
      _mm512_mask_storeu_ps(dbottom + 2 * ox + 16, w.right, _mm512_permutex2var_ps(gc, high, gd));
    }
#endif
    for (; ox < out_w; ++ox) {
      const float a = top[2 * ox], b = top[2 * ox + 1], c = bottom[2 * ox], d = bottom[2 * ox + 1];
      const float m = std::max(std::max(a, b), std::max(c, d));
      const bool a_wins = a == m, b_wins = !a_wins && b == m, c_wins = !a_wins && !b_wins && c == m;
      const bool d_wins = !a_wins && !b_wins && !c_wins;
      dtop[2 * ox] = a_wins ? grad[ox] : 0.f;
      dtop[2 * ox + 1] = b_wins ? grad[ox] : 0.f;
      dbottom[2 * ox] = c_wins ? grad[ox] : 0.f;
      dbottom[2 * ox + 1] = d_wins ? grad[ox] : 0.f;
    }
  };
  const float* input = x.data();
  const float* grad_output = g.data();
  float* grad_input = dx.data();
  kernels::parallel_for(0, p.planes, planes_per_thread(p), [=](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const float* plane = input + c * p.height * p.width;
      const float* grad = grad_output + c * p.out_h * p.out_w;
      float* dst = grad_input + c * p.height * p.width;
      if (p.disjoint_2x2()) {
        for (int64_t oy = 0; oy < p.out_h; ++oy)
          backward_2x2_row(plane + 2 * oy * p.width, plane + (2 * oy + 1) * p.width, grad + oy * p.out_w,
                           dst + 2 * oy * p.width, dst + (2 * oy + 1) * p.width, p.out_w);
        continue;
      }
      for (int64_t oy = 0; oy < p.out_h; ++oy)
        for (int64_t ox = 0; ox < p.out_w; ++ox) dst[window_argmax(plane, p, oy, ox)] += grad[oy * p.out_w + ox];
    }
  });
  // END SOLUTION
  return {dx};
}

// ---- avg_pool2d (padding counts as zeros in the average, as PyTorch's default) ----
Tensor avg_pool2d(const Tensor& x, Pair2 kernel, Pair2 stride, Pair2 padding) {
  const OpParams params = pool_params(kernel, stride, padding);
  const PoolPlan p = plan_pool(x, params, "avg_pool2d");
  Tensor out = Tensor::empty({x.dim(0), x.dim(1), p.out_h, p.out_w});
  const float scale = 1.f / static_cast<float>(p.kh * p.kw);
  for (int64_t c = 0; c < p.planes; ++c) {
    const float* plane = x.data() + c * p.height * p.width;
    for (int64_t oy = 0; oy < p.out_h; ++oy)
      for (int64_t ox = 0; ox < p.out_w; ++ox) {
        float sum = 0.f;
        for (int64_t i = 0; i < p.kh; ++i)
          for (int64_t j = 0; j < p.kw; ++j) {
            const int64_t y = oy * p.sh - p.ph + i, xx = ox * p.sw - p.pw + j;
            if (y >= 0 && y < p.height && xx >= 0 && xx < p.width) sum += plane[y * p.width + xx];
          }
        out.data()[(c * p.out_h + oy) * p.out_w + ox] = sum * scale;
      }
  }
  return tape().record(Op::AvgPool2d, {x}, out, params);
}

// dx[pixel] += g[window] / (kh*kw) for every window containing the pixel
std::vector<Tensor> avg_pool2d_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const PoolPlan p = plan_pool(x, e.params, "avg_pool2d");
  Tensor dx = Tensor::zeros(x.shape());
  const float scale = 1.f / static_cast<float>(p.kh * p.kw);
  for (int64_t c = 0; c < p.planes; ++c) {
    float* plane = dx.data() + c * p.height * p.width;
    for (int64_t oy = 0; oy < p.out_h; ++oy)
      for (int64_t ox = 0; ox < p.out_w; ++ox) {
        const float share = g.data()[(c * p.out_h + oy) * p.out_w + ox] * scale;
        for (int64_t i = 0; i < p.kh; ++i)
          for (int64_t j = 0; j < p.kw; ++j) {
            const int64_t y = oy * p.sh - p.ph + i, xx = ox * p.sw - p.pw + j;
            if (y >= 0 && y < p.height && xx >= 0 && xx < p.width) plane[y * p.width + xx] += share;
          }
      }
  }
  return {dx};
}

// ---- adaptive_avg_pool2d: output cell i averages input rows [floor(i*H/oh), ceil((i+1)*H/oh)) ----
namespace {
int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
}  // namespace

Tensor adaptive_avg_pool2d(const Tensor& x, Pair2 output_size) {
  if (x.ndim() != 4 || output_size.h < 1 || output_size.w < 1)
    throw Error(fmt::format("adaptive_avg_pool2d: input {} must be [N,C,H,W] and output size [{},{}] positive",
                            shape_str(x.shape()), output_size.h, output_size.w));
  const int64_t H = x.dim(2), W = x.dim(3), oh = output_size.h, ow = output_size.w, planes = x.dim(0) * x.dim(1);
  Tensor out = Tensor::empty({x.dim(0), x.dim(1), oh, ow});
  for (int64_t c = 0; c < planes; ++c)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t y0 = bin_start(i, H, oh), y1 = bin_end(i, H, oh), x0 = bin_start(j, W, ow), x1 = bin_end(j, W, ow);
        float sum = 0.f;
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t xx = x0; xx < x1; ++xx) sum += x.data()[(c * H + y) * W + xx];
        out.data()[(c * oh + i) * ow + j] = sum / static_cast<float>((y1 - y0) * (x1 - x0));
      }
  OpParams params;
  params.kernel = {oh, ow};  // the output size
  return tape().record(Op::AdaptiveAvgPool2d, {x}, out, params);
}

// dx[pixel] += g[cell] / (cell area) for every cell whose bin holds the pixel
std::vector<Tensor> adaptive_avg_pool2d_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const int64_t H = x.dim(2), W = x.dim(3), oh = e.params.kernel[0], ow = e.params.kernel[1], planes = x.dim(0) * x.dim(1);
  Tensor dx = Tensor::zeros(x.shape());
  for (int64_t c = 0; c < planes; ++c)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t y0 = bin_start(i, H, oh), y1 = bin_end(i, H, oh), x0 = bin_start(j, W, ow), x1 = bin_end(j, W, ow);
        const float share = g.data()[(c * oh + i) * ow + j] / static_cast<float>((y1 - y0) * (x1 - x0));
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t xx = x0; xx < x1; ++xx) dx.data()[(c * H + y) * W + xx] += share;
      }
  return {dx};
}

}  // namespace tg
