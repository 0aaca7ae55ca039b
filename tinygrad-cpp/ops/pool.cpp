// Pooling over [N, C, H, W]: max_pool2d, avg_pool2d, adaptive_avg_pool2d.
// Windows may overlap (kernel 3, stride 2 as in AlexNet): a pixel then collects the
// gradient of every window it belongs to.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/ops/helpers.h"

namespace tg {
namespace {

// What every pooling op saves: its window.
struct PoolState : SavedState {
  PoolState(Pair2 kernel_, Pair2 stride_, Pair2 padding_) : kernel(kernel_), stride(stride_), padding(padding_) {}
  Pair2 kernel, stride, padding;
  std::string describe() const override {
    return fmt::format("kernel=[{},{}] stride=[{},{}] padding=[{},{}]", kernel.h, kernel.w, stride.h, stride.w,
                       padding.h, padding.w);
  }
};

struct PoolPlan {
  int64_t planes, height, width, out_h, out_w;  // planes = N*C
  int64_t kh, kw, sh, sw, ph, pw;
  // The usual pooling layer: 2x2 windows, stride 2, no padding (windows never overlap).
  bool disjoint_2x2() const { return kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0; }
};

PoolState pool_state(Pair2 kernel, Pair2 stride, Pair2 padding) {
  return PoolState(kernel, {stride.h == 0 ? kernel.h : stride.h, stride.w == 0 ? kernel.w : stride.w}, padding);
}

PoolPlan plan_pool(const Tensor& x, const PoolState& s, const char* op) {
  if (x.ndim() != 4) throw Error(fmt::format("{}: input {} must be [N,C,H,W]", op, shape_str(x.shape())));
  PoolPlan plan{x.dim(0) * x.dim(1), x.dim(2), x.dim(3), 0, 0, s.kernel.h, s.kernel.w,
                s.stride.h, s.stride.w, s.padding.h, s.padding.w};
  if (plan.kh < 1 || plan.kw < 1 || plan.sh < 1 || plan.sw < 1 || plan.ph < 0 || plan.pw < 0 ||
      2 * plan.ph > plan.kh || 2 * plan.pw > plan.kw)
    throw Error(fmt::format("{}: kernel [{},{}] stride [{},{}] padding [{},{}] invalid (padding at most half the kernel)",
                            op, plan.kh, plan.kw, plan.sh, plan.sw, plan.ph, plan.pw));
  if (plan.height + 2 * plan.ph < plan.kh || plan.width + 2 * plan.pw < plan.kw)
    throw Error(fmt::format("{}: kernel [{},{}] does not fit input {}", op, plan.kh, plan.kw, shape_str(x.shape())));
  plan.out_h = (plan.height + 2 * plan.ph - plan.kh) / plan.sh + 1;
  plan.out_w = (plan.width + 2 * plan.pw - plan.kw) / plan.sw + 1;
  return plan;
}

// Index (within its plane) of the first maximum of window (oy, ox); padding never wins;
// a NaN beats every number.
int64_t window_argmax(const float* plane, const PoolPlan& p, int64_t oy, int64_t ox) {
  int64_t best = -1;
  float best_value = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < p.kh; ++i) {
    const int64_t y = oy * p.sh - p.ph + i;
    if (y < 0 || y >= p.height) continue;
    for (int64_t j = 0; j < p.kw; ++j) {
      const int64_t x = ox * p.sw - p.pw + j;
      if (x < 0 || x >= p.width) continue;
      const float v = plane[y * p.width + x];
      if (best < 0 || v > best_value || (std::isnan(v) && !std::isnan(best_value))) {  // NaN wins, as in PyTorch
        best = y * p.width + x;
        best_value = v;
      }
    }
  }
  return best;
}

// body(c) for every plane c, planes shared over the threads (at least ~32k input values a
// thread: below that, waking a second thread costs more than it saves).
template <class F>
void for_each_plane(const PoolPlan& p, F body) {
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, p.height * p.width));
  kernels::parallel_for(0, p.planes, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) body(c);
  });
}

}  // namespace

// ---- max_pool2d: y[window] = the largest x in the window ----
Tensor max_pool2d(const Tensor& x, Pair2 kernel, Pair2 stride, Pair2 padding) {
  const PoolState state = pool_state(kernel, stride, padding);
  const PoolPlan p = plan_pool(x, state, "max_pool2d");
  Tensor out = Tensor::empty({x.dim(0), x.dim(1), p.out_h, p.out_w});
  if (p.disjoint_2x2()) {
    kernels::max_pool2x2(x.data(), p.planes, p.height, p.width, out.data());  // the engine's usual layer
  } else {
    for_each_plane(p, [&](int64_t c) {
      const float* plane = x.data() + c * p.height * p.width;
      float* dst = out.data() + c * p.out_h * p.out_w;
      for (int64_t oy = 0; oy < p.out_h; ++oy)
        for (int64_t ox = 0; ox < p.out_w; ++ox) dst[oy * p.out_w + ox] = plane[window_argmax(plane, p, oy, ox)];
    });
  }
  return tape().record(Op::MaxPool2d, {x}, out, state);
}

// dx[argmax of window] += g[window]   (each window sends its gradient to its maximum)
static std::vector<Tensor> max_pool2d_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const PoolPlan p = plan_pool(x, e.saved<PoolState>(), "max_pool2d");
  Tensor dx = Tensor::zeros(x.shape());
  // BEGIN SOLUTION(maxpool-backward)
  // HINT: for every window of every plane, find its maximum again (window_argmax) and add the
  // HINT: window's gradient to that one input pixel; overlapping windows add up.
  if (p.disjoint_2x2()) {  // the engine's shortcut for the usual 2x2 layer
    kernels::max_pool2x2_backward(x.data(), g.data(), p.planes, p.height, p.width, dx.data());
    return {dx};
  }
  for_each_plane(p, [&](int64_t c) {
    const float* plane = x.data() + c * p.height * p.width;
    const float* grad = g.data() + c * p.out_h * p.out_w;
    float* dplane = dx.data() + c * p.height * p.width;
    for (int64_t oy = 0; oy < p.out_h; ++oy)
      for (int64_t ox = 0; ox < p.out_w; ++ox) dplane[window_argmax(plane, p, oy, ox)] += grad[oy * p.out_w + ox];
  });
  // END SOLUTION
  return {dx};
}
const OpKind Op::MaxPool2d{"max_pool2d", max_pool2d_backward};

// ---- avg_pool2d (padding counts as zeros in the average, as PyTorch's default) ----
Tensor avg_pool2d(const Tensor& x, Pair2 kernel, Pair2 stride, Pair2 padding) {
  const PoolState state = pool_state(kernel, stride, padding);
  const PoolPlan p = plan_pool(x, state, "avg_pool2d");
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
  return tape().record(Op::AvgPool2d, {x}, out, state);
}

// dx[pixel] += g[window] / (kh*kw) for every window containing the pixel
static std::vector<Tensor> avg_pool2d_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const PoolPlan p = plan_pool(x, e.saved<PoolState>(), "avg_pool2d");
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
const OpKind Op::AvgPool2d{"avg_pool2d", avg_pool2d_backward};

// ---- adaptive_avg_pool2d: output cell i averages input rows [floor(i*H/oh), ceil((i+1)*H/oh)) ----
namespace {
int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
struct AdaptivePoolState : SavedState {
  explicit AdaptivePoolState(Pair2 output_size_) : output_size(output_size_) {}
  Pair2 output_size;
  std::string describe() const override { return fmt::format("output=[{},{}]", output_size.h, output_size.w); }
};
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
  return tape().record(Op::AdaptiveAvgPool2d, {x}, out, AdaptivePoolState({oh, ow}));
}

// dx[pixel] += g[cell] / (cell area) for every cell whose bin holds the pixel
static std::vector<Tensor> adaptive_avg_pool2d_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const Pair2 size = e.saved<AdaptivePoolState>().output_size;
  const int64_t H = x.dim(2), W = x.dim(3), oh = size.h, ow = size.w, planes = x.dim(0) * x.dim(1);
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
const OpKind Op::AdaptiveAvgPool2d{"adaptive_avg_pool2d", adaptive_avg_pool2d_backward};

}  // namespace tg
