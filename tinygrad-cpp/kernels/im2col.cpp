// im2col turns a convolution into one matrix product.
//
// Row (c, i, j) of the column matrix holds, for every output position (oy, ox), the
// input pixel that kernel tap (i, j) of channel c sees there:
//     columns[(c*kh + i)*kw + j][oy*out_w + ox] = image[c][oy*sh - ph + i*dh][ox*sw - pw + j*dw]
// (0 outside the image). Then conv(image) = weight[out, C*kh*kw] x columns.
// col2im is its adjoint (the transpose): it adds every column entry back onto the
// pixel it was read from, which is exactly what the input gradient needs.
//
// Speed: both are pure data movement, one short row at a time. With AVX-512, im2col
// copies a row in one or two masked moves (copy_span), and col2im adds all the taps of a
// kernel row into an image row in registers (col2im_rows_at_once); the plain loops below
// them are the general case and the path of every other build.
#include <algorithm>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/kernels/vector.h"

namespace tg::kernels {

namespace {
// im2col's inner loop, for stride 1 along x: one output row of n entries, of which only
// [lo, hi) touch the image. Rows are short (14 or 28 for FashionCNN), so with AVX-512 a
// row is cut into 16-wide pieces, each one masked load and one masked store; the masks
// depend only on the kernel column, so they are computed once for all the rows of a tap.
// Masked-off lanes are never read (they may lie outside the image).
struct RowMasks {
  static constexpr int64_t kMaxPieces = 4;  // rows up to 64 wide take this path
  int64_t pieces = 0;
#if defined(__AVX512F__)
  __mmask16 store[kMaxPieces], image[kMaxPieces];
#endif
  bool usable() const { return pieces > 0; }
};

RowMasks row_masks(int64_t lo, int64_t hi, int64_t n) {
  RowMasks m;
#if defined(__AVX512F__)
  if (n > 16 * RowMasks::kMaxPieces) return m;
  auto lanes = [](int64_t from, int64_t to) {  // lanes [from, to) of 16
    return static_cast<__mmask16>(((1u << to) - 1u) & ~((1u << from) - 1u));
  };
  for (int64_t x = 0; x < n; x += 16, ++m.pieces) {
    const int64_t len = std::min<int64_t>(16, n - x);
    m.store[m.pieces] = lanes(0, len);
    m.image[m.pieces] = lanes(std::clamp<int64_t>(lo - x, 0, len), std::clamp<int64_t>(hi - x, 0, len));
  }
#endif
  return m;
}

// out[k] = k in [lo, hi) ? src[k] : 0 for k in [0, n)
inline void copy_span(float* __restrict out, const float* __restrict src, int64_t lo, int64_t hi, int64_t n,
                      const RowMasks& m) {
#if defined(__AVX512F__)
  if (m.usable()) {
    for (int64_t p = 0; p < m.pieces; ++p)
      _mm512_mask_storeu_ps(out + 16 * p, m.store[p], _mm512_maskz_loadu_ps(m.image[p], src + 16 * p));
    return;
  }
#endif
  std::fill(out, out + lo, 0.f);
  std::copy(src + lo, src + hi, out + lo);
  std::fill(out + hi, out + n, 0.f);
}

// Output columns ox whose input column x0 + ox*stride lies inside [0, width): [lo, hi).
void valid_range(int64_t x0, int64_t stride, int64_t width, int64_t out_w, int64_t& lo, int64_t& hi) {
  lo = x0 >= 0 ? 0 : (-x0 + stride - 1) / stride;
  hi = width - x0 <= 0 ? 0 : (width - x0 + stride - 1) / stride;
  lo = std::min(lo, out_w);
  hi = std::max(lo, std::min(hi, out_w));
}
}  // namespace

void im2col(const float* image, const ConvGeometry& g, float* columns, int64_t row_stride) {
  im2col_rows(image, g, 0, g.out_h(), columns, row_stride);
}

void im2col_rows(const float* image, const ConvGeometry& g, int64_t oy_begin, int64_t oy_end, float* columns,
                 int64_t row_stride) {
  const int64_t out_w = g.out_w();
  for (int64_t c = 0; c < g.channels; ++c) {
    const float* plane = image + c * g.height * g.width;
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        float* row = columns + ((c * g.kernel_h + i) * g.kernel_w + j) * row_stride;
        const int64_t x0 = -g.pad_w + j * g.dilation_w;
        int64_t lo, hi;
        valid_range(x0, g.stride_w, g.width, out_w, lo, hi);
        const RowMasks masks = g.stride_w == 1 ? row_masks(lo, hi, out_w) : RowMasks{};
        for (int64_t oy = oy_begin; oy < oy_end; ++oy) {
          const int64_t y = oy * g.stride_h - g.pad_h + i * g.dilation_h;
          float* __restrict out = row + (oy - oy_begin) * out_w;
          if (y < 0 || y >= g.height) {
            std::fill(out, out + out_w, 0.f);
            continue;
          }
          const float* src = plane + y * g.width + x0;
          if (g.stride_w == 1) {
            copy_span(out, src, lo, hi, out_w, masks);
            continue;
          }
          std::fill(out, out + lo, 0.f);
          int64_t ox = lo;
          if (g.stride_w == 2)  // every other input column: the even lanes of two vectors
            for (; ox + VW <= hi && 2 * (ox + VW) + x0 <= g.width; ox += VW)
              store_unaligned(out + ox, even_lanes(load_unaligned(src + 2 * ox), load_unaligned(src + 2 * ox + VW)));
          for (; ox < hi; ++ox) out[ox] = src[ox * g.stride_w];
          std::fill(out + hi, out + out_w, 0.f);
        }
      }
    }
  }
}

namespace {
// col2im with stride 1 along x and AVX-512: for one image row y, all kw taps of a kernel
// row add into it at once, in a register per 16-wide piece, so the row is loaded and
// stored once instead of kw times with overlapping (store-forwarding-stalling) accesses.
bool col2im_rows_at_once(const float* columns, const ConvGeometry& g, int64_t row_begin, int64_t row_end, float* image,
                         int64_t row_stride) {
#if defined(__AVX512F__)
  const int64_t out_h = g.out_h(), out_w = g.out_w();
  const int64_t pieces = (g.width + 15) / 16;
  if (g.stride_w != 1 || pieces > 4 || g.kernel_w * pieces > 64) return false;
  __mmask16 row_mask[4], tap_mask[64];
  for (int64_t p = 0; p < pieces; ++p) {
    row_mask[p] = static_cast<__mmask16>((1u << std::min<int64_t>(16, g.width - 16 * p)) - 1u);
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      const int64_t x0 = -g.pad_w + j * g.dilation_w;  // image column x reads entry x - x0 of the tap's row
      unsigned bits = 0;
      for (int64_t lane = 0; lane < 16; ++lane) {
        const int64_t x = 16 * p + lane, ox = x - x0;
        if (x < g.width && ox >= 0 && ox < out_w) bits |= 1u << lane;
      }
      tap_mask[j * pieces + p] = static_cast<__mmask16>(bits);
    }
  }
  for (int64_t c = row_begin / g.height; c < g.channels && c * g.height < row_end; ++c) {
    float* plane = image + c * g.height * g.width;
    const int64_t y_begin = std::max<int64_t>(0, row_begin - c * g.height);
    const int64_t y_end = std::min(g.height, row_end - c * g.height);
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      const float* taps = columns + (c * g.kernel_h + i) * g.kernel_w * row_stride;
      for (int64_t oy = 0; oy < out_h; ++oy) {
        const int64_t y = oy * g.stride_h - g.pad_h + i * g.dilation_h;
        if (y < y_begin || y >= y_end) continue;
        float* dst = plane + y * g.width;
        for (int64_t p = 0; p < pieces; ++p) {
          __m512 sum = _mm512_maskz_loadu_ps(row_mask[p], dst + 16 * p);
          for (int64_t j = 0; j < g.kernel_w; ++j) {
            const float* in = taps + j * row_stride + oy * out_w + 16 * p - (-g.pad_w + j * g.dilation_w);
            sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(tap_mask[j * pieces + p], in));
          }
          _mm512_mask_storeu_ps(dst + 16 * p, row_mask[p], sum);
        }
      }
    }
  }
  return true;
#else
  return false;
#endif
}
}  // namespace

void col2im(const float* columns, const ConvGeometry& g, float* image, int64_t row_stride) {
  col2im_rows(columns, g, 0, g.channels * g.height, image, row_stride);
}

void col2im_rows(const float* columns, const ConvGeometry& g, int64_t row_begin, int64_t row_end, float* image,
                 int64_t row_stride) {
  if (col2im_rows_at_once(columns, g, row_begin, row_end, image, row_stride)) return;
  const int64_t out_h = g.out_h(), out_w = g.out_w();
  for (int64_t c = row_begin / g.height; c < g.channels && c * g.height < row_end; ++c) {
    float* plane = image + c * g.height * g.width;
    const int64_t y_begin = std::max<int64_t>(0, row_begin - c * g.height);
    const int64_t y_end = std::min(g.height, row_end - c * g.height);
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const float* row = columns + ((c * g.kernel_h + i) * g.kernel_w + j) * row_stride;
        const int64_t x0 = -g.pad_w + j * g.dilation_w;
        int64_t lo, hi;
        valid_range(x0, g.stride_w, g.width, out_w, lo, hi);
        for (int64_t oy = 0; oy < out_h; ++oy) {
          const int64_t y = oy * g.stride_h - g.pad_h + i * g.dilation_h;
          if (y < y_begin || y >= y_end) continue;
          float* __restrict dst = plane + y * g.width + x0;
          const float* __restrict in = row + oy * out_w;
          if (g.stride_w == 1) for (int64_t ox = lo; ox < hi; ++ox) dst[ox] += in[ox];
          else for (int64_t ox = lo; ox < hi; ++ox) dst[ox * g.stride_w] += in[ox];
        }
      }
    }
  }
}

void conv2d_reference(const float* x, int64_t batch, const ConvGeometry& g, const float* weight,
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
