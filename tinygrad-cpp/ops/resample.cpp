// Geometric resampling: the image turned, scaled and shifted about its center, read with
// bilinear interpolation (zero outside the image). Gradient ascent draws a random one each
// step ("transformation robustness"), so the picture it makes must survive small turns,
// zooms and shifts instead of exploiting one exact pixel grid.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "tinygrad-cpp/ops/helpers.h"

namespace tg {
namespace {

struct AffineState : SavedState {
  explicit AffineState(AffineParams p_) : p(p_) {}
  AffineParams p;
  std::string describe() const override {
    return fmt::format("scale={} angle={}rad shift=[{},{}]", p.scale, p.angle, p.shift_y, p.shift_x);
  }
};

// Visits every bilinear tap of every output pixel of one [H,W] plane: fn(out_index,
// in_index, weight). Output pixel (y,x) reads the input at
//   center + R(angle) (p - center - shift) / scale,
// so the content is turned by `angle`, scaled by `scale` and then moved by `shift`.
template <class F>
void for_each_tap(int64_t H, int64_t W, const AffineParams& p, F fn) {
  const double cy = 0.5 * static_cast<double>(H - 1), cx = 0.5 * static_cast<double>(W - 1);
  const double c = std::cos(p.angle) / p.scale, s = std::sin(p.angle) / p.scale;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const double dy = static_cast<double>(y) - cy - p.shift_y, dx = static_cast<double>(x) - cx - p.shift_x;
      const double sy = cy + c * dy + s * dx, sx = cx - s * dy + c * dx;
      const double fy = std::floor(sy), fx = std::floor(sx);
      const double wy = sy - fy, wx = sx - fx;
      const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
          const int64_t iy = y0 + i, ix = x0 + j;
          if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
          const double w = (i ? wy : 1 - wy) * (j ? wx : 1 - wx);
          if (w != 0) fn(y * W + x, iy * W + ix, static_cast<float>(w));
        }
    }
}

}  // namespace

Tensor affine_resample(const Tensor& x, const AffineParams& params) {
  if (x.ndim() != 4) throw Error(fmt::format("affine_resample: input {} must be [N,C,H,W]", shape_str(x.shape())));
  if (!(params.scale > 0.f) || !std::isfinite(params.scale) || !std::isfinite(params.angle) ||
      !std::isfinite(params.shift_y) || !std::isfinite(params.shift_x))
    throw Error(fmt::format("affine_resample: scale {} must be > 0 and angle {}, shift [{},{}] finite", params.scale,
                            params.angle, params.shift_y, params.shift_x));
  const int64_t planes = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor out = Tensor::zeros(x.shape());
  for (int64_t k = 0; k < planes; ++k) {
    const float* in = x.data() + k * H * W;
    float* o = out.data() + k * H * W;
    for_each_tap(H, W, params, [&](int64_t oi, int64_t ii, float w) { o[oi] += w * in[ii]; });
  }
  return tape().record(Op::AffineResample, {x}, out, AffineState(params));
}
// dx[tap] += weight * g[out]: each output's gradient goes back to the four pixels it read
static std::vector<Tensor> affine_resample_backward(const Entry& e, const Tensor& g) {
  const Tensor& x = e.input(0);
  const AffineParams& p = e.saved<AffineState>().p;
  const int64_t planes = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  Tensor dx = Tensor::zeros(x.shape());
  for (int64_t k = 0; k < planes; ++k) {
    const float* go = g.data() + k * H * W;
    float* d = dx.data() + k * H * W;
    for_each_tap(H, W, p, [&](int64_t oi, int64_t ii, float w) { d[ii] += w * go[oi]; });
  }
  return {dx};
}
const OpKind Op::AffineResample{"affine_resample", affine_resample_backward};

// ---- upsample (not recorded) ----
Tensor upsample(const Tensor& map, int64_t height, int64_t width, Interpolation how) {
  const bool flat = map.ndim() == 2, batched = map.ndim() == 4 && map.dim(0) == 1;
  if (!flat && map.ndim() != 3 && !batched)
    throw Error("upsample: map " + shape_str(map.shape()) + " must be [C,H,W], [H,W] or [1,C,H,W]");
  const int64_t C = flat ? 1 : map.dim(-3), h = map.dim(-2), w = map.dim(-1);
  if (height < 1 || width < 1) throw Error(fmt::format("upsample: target size {}x{} must be positive", height, width));
  Tensor out = Tensor::empty({C, height, width});
  const float sy = static_cast<float>(h) / static_cast<float>(height);
  const float sx = static_cast<float>(w) / static_cast<float>(width);
  for (int64_t c = 0; c < C; ++c) {
    const float* src = map.data() + c * h * w;
    float* dst = out.data() + c * height * width;
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) {
        if (how == Interpolation::Nearest) {
          const int64_t yy = std::min(h - 1, static_cast<int64_t>((static_cast<float>(y) + 0.5f) * sy));
          const int64_t xx = std::min(w - 1, static_cast<int64_t>((static_cast<float>(x) + 0.5f) * sx));
          dst[y * width + x] = src[yy * w + xx];
          continue;
        }
        const float fy = std::max(0.f, (static_cast<float>(y) + 0.5f) * sy - 0.5f);
        const float fx = std::max(0.f, (static_cast<float>(x) + 0.5f) * sx - 0.5f);
        const int64_t y0 = std::min(h - 1, static_cast<int64_t>(fy)), x0 = std::min(w - 1, static_cast<int64_t>(fx));
        const int64_t y1 = std::min(h - 1, y0 + 1), x1 = std::min(w - 1, x0 + 1);
        const float ty = fy - static_cast<float>(y0), tx = fx - static_cast<float>(x0);
        dst[y * width + x] = (1 - ty) * ((1 - tx) * src[y0 * w + x0] + tx * src[y0 * w + x1]) +
                             ty * ((1 - tx) * src[y1 * w + x0] + tx * src[y1 * w + x1]);
      }
  }
  return out;
}

}  // namespace tg
