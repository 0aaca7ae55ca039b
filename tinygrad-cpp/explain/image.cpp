#include "tinygrad-cpp/explain/image.h"

#include <fmt/format.h>

#include <cmath>
#include <memory>

namespace tg::explain {

namespace {
// Rows k of the orthonormal DCT-II basis of length n: D D^T = I, so D^T is its inverse.
Tensor dct_matrix(int64_t n) {
  Tensor d = Tensor::empty({n, n});
  for (int64_t k = 0; k < n; ++k)
    for (int64_t i = 0; i < n; ++i)
      d.data()[k * n + i] = static_cast<float>((k == 0 ? std::sqrt(1.0 / static_cast<double>(n)) : std::sqrt(2.0 / static_cast<double>(n))) *
                                               std::cos(M_PI * (static_cast<double>(i) + 0.5) * static_cast<double>(k) / static_cast<double>(n)));
  return d;
}
}  // namespace

DecorrelatedImage::DecorrelatedImage(int64_t height, int64_t width, float decay)
    : height_(height), width_(width), dct_h_(dct_matrix(height)), dct_w_(dct_matrix(width)) {
  if (height < 1 || width < 1 || height > 4096 || width > 4096)
    throw Error(fmt::format("DecorrelatedImage: size {}x{} must be 1..4096 on each side", height, width));
  // Coefficient (u, v) has frequency sqrt((u/H)^2 + (v/W)^2) cycles per pixel (times 2);
  // its scale is 1 / max(f, 1/max(H, W))^decay, divided by sqrt(H W) so that z of order 1
  // gives pixels of order 1.
  frequency_scale_ = Tensor::empty({1, 1, height, width});
  const double floor = 1.0 / static_cast<double>(std::max(height, width));
  for (int64_t u = 0; u < height; ++u)
    for (int64_t v = 0; v < width; ++v) {
      const double fu = static_cast<double>(u) / static_cast<double>(height), fv = static_cast<double>(v) / static_cast<double>(width);
      const double f = std::max(std::sqrt(fu * fu + fv * fv), floor);
      frequency_scale_.data()[u * width + v] =
          static_cast<float>(std::pow(f, -static_cast<double>(decay)) / std::sqrt(static_cast<double>(height * width)));
    }
  // The square root of ImageNet's RGB covariance (the matrix Lucid publishes), divided by
  // its largest column norm (0.4629): row = output channel R, G, B.
  const float n = 1.f / 0.4629f;
  color_ = Tensor::from_vector({0.26f * n, 0.09f * n, 0.02f * n, 0.27f * n, 0.00f * n, -0.05f * n, 0.27f * n, -0.09f * n, 0.03f * n},
                               {3, 3});
}

Tensor DecorrelatedImage::operator()(const Tensor& z) const {
  if (z.ndim() != 4 || z.dim(1) != 3 || z.dim(2) != height_ || z.dim(3) != width_)
    throw Error(fmt::format("DecorrelatedImage: parameters {} must be [N,3,{},{}]", shape_str(z.shape()), height_, width_));
  const int64_t N = z.dim(0), H = height_, W = width_;
  // Each plane Z -> D_H^T (s * Z) D_W: the inverse 2-D DCT of the scaled coefficients.
  Tensor a = reshape(matmul(reshape(mul(z, frequency_scale_), {N * 3 * H, W}), dct_w_), {N * 3, H, W});
  a = permute(a, {0, 2, 1});
  a = permute(reshape(matmul(reshape(a, {N * 3 * W, H}), dct_h_), {N * 3, W, H}), {0, 2, 1});
  // Colors: every pixel's (r, g, b) times the color matrix.
  a = reshape(permute(reshape(a, {N, 3, H * W}), {0, 2, 1}), {N * H * W, 3});
  a = permute(reshape(matmul(a, transpose(color_, 0, 1)), {N, H * W, 3}), {0, 2, 1});
  return tanh(reshape(a, {N, 3, H, W}));
}

Objective transformed(const Objective& objective, const RandomTransforms& transforms, uint64_t seed) {
  if (!(transforms.degrees >= 0 && transforms.scale >= 0 && transforms.scale < 1 && transforms.shift >= 0))
    throw Error(fmt::format("transformed: degrees {}, scale {} (below 1) and shift {} must be >= 0", transforms.degrees,
                            transforms.scale, transforms.shift));
  auto gen = std::make_shared<Generator>(seed);
  return [objective, transforms, gen](const Tensor& x) {
    auto uniform = [&](float half_width) { return half_width * (2.f * gen->uniform() - 1.f); };
    AffineParams p;
    p.angle = uniform(transforms.degrees) * static_cast<float>(M_PI / 180.0);
    p.scale = 1.f + uniform(transforms.scale);
    p.shift_y = uniform(transforms.shift);
    p.shift_x = uniform(transforms.shift);
    return objective(affine_resample(x, p));
  };
}

}  // namespace tg::explain
