// im2col turns a convolution into one matrix product.
//
// Row (c, i, j) of the column matrix holds, for every output position (oy, ox), the
// input pixel that kernel tap (i, j) of channel c sees there:
//     columns[(c*kh + i)*kw + j][oy*out_w + ox] = image[c][oy*sh - ph + i*dh][ox*sw - pw + j*dw]
// (0 outside the image). Then conv(image) = weight[out, C*kh*kw] x columns.
// col2im is its adjoint (the transpose): it adds every column entry back onto the
// pixel it was read from, which is exactly what the input gradient needs.
#include <algorithm>

#include "tinygrad-cpp/kernels/kernels.h"

namespace tg::kernels {

namespace {
// Output columns ox whose input column x0 + ox*stride lies inside [0, width): [lo, hi).
void valid_range(int64_t x0, int64_t stride, int64_t width, int64_t out_w, int64_t& lo, int64_t& hi) {
  lo = x0 >= 0 ? 0 : (-x0 + stride - 1) / stride;
  hi = width - x0 <= 0 ? 0 : (width - x0 + stride - 1) / stride;
  lo = std::min(lo, out_w);
  hi = std::max(lo, std::min(hi, out_w));
}
}  // namespace

void im2col(const float* image, const ConvGeometry& g, float* columns, int64_t row_stride) {
  const int64_t out_h = g.out_h(), out_w = g.out_w();
  for (int64_t c = 0; c < g.channels; ++c) {
    const float* plane = image + c * g.height * g.width;
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        float* row = columns + ((c * g.kernel_h + i) * g.kernel_w + j) * row_stride;
        const int64_t x0 = -g.pad_w + j * g.dilation_w;
        int64_t lo, hi;
        valid_range(x0, g.stride_w, g.width, out_w, lo, hi);
        for (int64_t oy = 0; oy < out_h; ++oy) {
          const int64_t y = oy * g.stride_h - g.pad_h + i * g.dilation_h;
          float* __restrict out = row + oy * out_w;
          if (y < 0 || y >= g.height) {
            std::fill(out, out + out_w, 0.f);
            continue;
          }
          const float* __restrict src = plane + y * g.width + x0;
          std::fill(out, out + lo, 0.f);
          if (g.stride_w == 1) std::copy(src + lo, src + hi, out + lo);
          else for (int64_t ox = lo; ox < hi; ++ox) out[ox] = src[ox * g.stride_w];
          std::fill(out + hi, out + out_w, 0.f);
        }
      }
    }
  }
}

void col2im(const float* columns, const ConvGeometry& g, float* image, int64_t row_stride) {
  const int64_t out_h = g.out_h(), out_w = g.out_w();
  for (int64_t c = 0; c < g.channels; ++c) {
    float* plane = image + c * g.height * g.width;
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const float* row = columns + ((c * g.kernel_h + i) * g.kernel_w + j) * row_stride;
        const int64_t x0 = -g.pad_w + j * g.dilation_w;
        int64_t lo, hi;
        valid_range(x0, g.stride_w, g.width, out_w, lo, hi);
        for (int64_t oy = 0; oy < out_h; ++oy) {
          const int64_t y = oy * g.stride_h - g.pad_h + i * g.dilation_h;
          if (y < 0 || y >= g.height) continue;
          float* __restrict dst = plane + y * g.width + x0;
          const float* __restrict in = row + oy * out_w;
          if (g.stride_w == 1) for (int64_t ox = lo; ox < hi; ++ox) dst[ox] += in[ox];
          else for (int64_t ox = lo; ox < hi; ++ox) dst[ox * g.stride_w] += in[ox];
        }
      }
    }
  }
}

void conv2d_direct(const float* x, int64_t batch, const ConvGeometry& g, const float* weight,
                   const float* bias, int64_t out_channels, int64_t groups, float* out) {
  const int64_t out_h = g.out_h(), out_w = g.out_w();
  const int64_t in_per_group = g.channels / groups, out_per_group = out_channels / groups;
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t o = 0; o < out_channels; ++o)
      for (int64_t oy = 0; oy < out_h; ++oy)
        for (int64_t ox = 0; ox < out_w; ++ox) {
          double sum = bias ? bias[o] : 0.0;
          const int64_t group = o / out_per_group;
          for (int64_t c = 0; c < in_per_group; ++c)
            for (int64_t i = 0; i < g.kernel_h; ++i)
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                const int64_t y = oy * g.stride_h - g.pad_h + i * g.dilation_h;
                const int64_t xx = ox * g.stride_w - g.pad_w + j * g.dilation_w;
                if (y < 0 || y >= g.height || xx < 0 || xx >= g.width) continue;
                const int64_t channel = group * in_per_group + c;
                sum += static_cast<double>(x[((n * g.channels + channel) * g.height + y) * g.width + xx]) *
                       weight[((o * in_per_group + c) * g.kernel_h + i) * g.kernel_w + j];
              }
          out[((n * out_channels + o) * out_h + oy) * out_w + ox] = static_cast<float>(sum);
        }
}

}  // namespace tg::kernels
