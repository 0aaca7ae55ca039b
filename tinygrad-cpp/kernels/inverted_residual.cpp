// MobileNetV2's inverted-residual block as one kernel, for forwards that record nothing
// (models/graph.cpp runs it under NoGrad only; a recorded forward runs the block op by op,
// one tape entry per op):
//
//   e = relu6(We x + be)       1x1 expansion to `hidden` channels (absent in the first block: e = x)
//   d = relu6(depthwise(e))    k x k depthwise, stride 1 or 2, padding as in Depthwise
//   y = Wp d + bp (+ x)        1x1 projection, plus the block's input when `residual`
//
// Op by op, e and d are whole maps up to six times wider than x and y, written to memory
// and read back (inverted_residual_naive does exactly that, with the textbook kernels).
// Here each image goes through in bands of output rows. A band's rows of e (the rows its
// depthwise windows reach; those the band before also reached are moved over from it) and
// of d stay in L2 from the expansion's gemm through the depthwise to the projection's gemm,
// so memory sees x read and y written, and nothing in between. Inside a band e and d are
// pixel-major ([rows, W, hidden]), so the depthwise runs VW channels at a time whatever the
// map's width, and the gemms read and write them transposed.
// Every value is summed in the same order as op by op (the blocked gemm's sums do not depend
// on the shape it is called with; the depthwise starts at the bias and adds the taps in order),
// so the two agree to the bit on this machine (tests/test_fused.cpp). That needs op by op on
// the blocked path too: maps of more than kGemmFewColumns positions, in and out (on smaller
// ones gemm reads the weights in place, summing in another order, and models/graph.cpp
// leaves the block op by op).
#include <algorithm>
#include <cstring>
#include <vector>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/kernels/vector.h"

namespace tg::kernels {
namespace {

// Band scratch per thread: at most about this many bytes of e and d together, to stay in a
// core's L2 (1 to 2 MiB on the machines measured; 384 KiB to 1.5 MiB measured the same).
constexpr int64_t kBandBytes = 512 << 10;

thread_local std::vector<float> expanded_buffer, depthwise_buffer;
float* scratch(std::vector<float>& b, int64_t n) {
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

inline float relu6(float v) { return v < 0.f ? 0.f : (v > 6.f ? 6.f : v); }  // as ops/activation.cpp
inline vfloat relu6(vfloat v) {
  const vfloat zero{}, six = zero + 6.f;
  return v < zero ? zero : (v > six ? six : v);
}

int64_t hidden_channels(const InvertedResidual& b) { return b.depthwise.channels; }

// The image rows [first, last) that output rows [oy0, oy1) of the depthwise reach, clipped to the image.
struct Rows {
  int64_t first, last;
};
Rows reach(const Depthwise& d, int64_t oy0, int64_t oy1) {
  const int64_t top = oy0 * d.stride_h - d.pad_top, bottom = (oy1 - 1) * d.stride_h - d.pad_top + d.kernel_h;
  return {std::max<int64_t>(0, top), std::min(d.height, bottom)};
}

// The depthwise's weights tap-major, [taps, hidden], as the pixel-major band reads them.
struct Weights {
  std::vector<float> taps;
};

// The rows of e a thread made for its last band: the next band of the same image moves the
// rows both reach to the front instead of computing them again.
struct Expanded {
  const float* image = nullptr;
  Rows rows{0, 0};
};

// e's image rows r of one image (x [in_channels, H, W]) into the thread's buffer, [rows, W, hidden].
float* expand_rows(const float* x, const InvertedResidual& b, Rows r, Expanded& last) {
  const Depthwise& d = b.depthwise;
  const int64_t hidden = hidden_channels(b), plane = d.height * d.width, pixel_row = d.width * hidden;
  float* e = scratch(expanded_buffer, (r.last - r.first) * pixel_row);
  int64_t kept = 0;
  if (last.image == x && last.rows.first <= r.first && r.first < last.rows.last && last.rows.last <= r.last) {
    kept = last.rows.last - r.first;
    std::memmove(e, e + (r.first - last.rows.first) * pixel_row, sizeof(float) * kept * pixel_row);
  }
  last = {x, r};
  const int64_t pixels = (r.last - r.first - kept) * d.width;
  float* fresh = e + kept * pixel_row;
  const float* src = x + (r.first + kept) * d.width;  // channel c's pixels at src + c * plane
  if (!b.expand_weight) {  // e = x, turned pixel-major
    for (int64_t c = 0; c < hidden; ++c)
      for (int64_t p = 0; p < pixels; ++p) fresh[p * hidden + c] = src[c * plane + p];
    return e;
  }
  // e^T = x^T We^T (the same sums as We x, in the same order), then the bias and relu6.
  gemm_blocked(true, true, pixels, hidden, b.in_channels, 1.f, src, plane, b.expand_weight, b.in_channels, 0.f, fresh,
               hidden);
  for (int64_t p = 0; p < pixels; ++p) {
    float* v = fresh + p * hidden;
    int64_t c = 0;
    for (; c + VW <= hidden; c += VW)
      store_unaligned(v + c, relu6(load_unaligned(v + c) + (b.expand_bias ? load_unaligned(b.expand_bias + c) : vfloat{})));
    for (; c < hidden; ++c) v[c] = relu6(v[c] + (b.expand_bias ? b.expand_bias[c] : 0.f));
  }
  return e;
}

// d = relu6(depthwise(e)) at P neighbouring output pixels of one row (ox, ox+1, ...), whose
// windows all cover tap rows [i0, i1) and columns [j0, j1) (the rest lie in the padding,
// which adds 0 op by op). Each sum starts at the bias and adds the taps in order; P sums at
// once, so each FMA need not wait for the one before it.
template <int P>
void depthwise_pixels(const float* e, const InvertedResidual& b, const Weights& w, int64_t top, int64_t i0, int64_t i1,
                      int64_t ox, float* dst) {
  const Depthwise& d = b.depthwise;
  const int64_t hidden = hidden_channels(b), left = ox * d.stride_w - d.pad_left, step = d.stride_w * hidden;
  const int64_t j0 = std::max<int64_t>(0, -left), j1 = std::min(d.kernel_w, d.width - left);
  const float* bias = b.depthwise_bias;
  int64_t c = 0;
  for (; c + VW <= hidden; c += VW) {
    vfloat acc[P];
    for (int p = 0; p < P; ++p) acc[p] = bias ? load_unaligned(bias + c) : vfloat{};
    for (int64_t i = i0; i < i1; ++i) {
      const float* row = e + ((top + i) * d.width + left) * hidden + c;
      const float* wt = w.taps.data() + i * d.kernel_w * hidden + c;
      for (int64_t j = j0; j < j1; ++j) {
        const vfloat wj = load_unaligned(wt + j * hidden);
        for (int p = 0; p < P; ++p) acc[p] += wj * load_unaligned(row + j * hidden + p * step);
      }
    }
    for (int p = 0; p < P; ++p) store_unaligned(dst + p * hidden + c, relu6(acc[p]));
  }
  for (; c < hidden; ++c)
    for (int p = 0; p < P; ++p) {
      float acc = bias ? bias[c] : 0.f;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j)
          acc += w.taps[(i * d.kernel_w + j) * hidden + c] * e[((top + i) * d.width + left + j) * hidden + p * step + c];
      dst[p * hidden + c] = relu6(acc);
    }
}

// d = relu6(depthwise(e)) for output rows [oy0, oy1), pixel-major; e holds image rows r.
void depthwise_rows(const float* e, const InvertedResidual& b, const Weights& w, Rows r, int64_t oy0, int64_t oy1,
                    float* out) {
  const Depthwise& d = b.depthwise;
  const int64_t hidden = hidden_channels(b), rows = r.last - r.first;
  // The output columns whose windows lie inside the image, four at a time; the others one by one.
  const int64_t inner_first = (d.pad_left + d.stride_w - 1) / d.stride_w;
  const int64_t inner_end = d.width + d.pad_left >= d.kernel_w ? (d.width + d.pad_left - d.kernel_w) / d.stride_w + 1 : 0;
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    const int64_t top = oy * d.stride_h - d.pad_top - r.first;  // tap row i reads band row top + i
    const int64_t i0 = std::max<int64_t>(0, -top), i1 = std::min(d.kernel_h, rows - top);
    float* dst = out + (oy - oy0) * d.out_w * hidden;
    for (int64_t ox = 0; ox < d.out_w;) {
      if (ox >= inner_first && ox + 4 <= std::min(inner_end, d.out_w)) {
        depthwise_pixels<4>(e, b, w, top, i0, i1, ox, dst + ox * hidden);
        ox += 4;
      } else {
        depthwise_pixels<1>(e, b, w, top, i0, i1, ox, dst + ox * hidden);
        ox += 1;
      }
    }
  }
}

// Output rows [oy0, oy1) of one image: x [in_channels, H, W] -> y [out_channels, out_h, out_w].
void band(const float* x, const InvertedResidual& b, const Weights& w, int64_t oy0, int64_t oy1, Expanded& last,
          float* y) {
  const Depthwise& d = b.depthwise;
  const int64_t hidden = hidden_channels(b), plane = d.height * d.width;
  const Rows r = reach(d, oy0, oy1);
  const int64_t band_outputs = (oy1 - oy0) * d.out_w;
  const float* e = expand_rows(x, b, r, last);
  float* dd = scratch(depthwise_buffer, hidden * band_outputs);
  depthwise_rows(e, b, w, r, oy0, oy1, dd);
  // y = Wp d + bp, d read as its transpose, written straight into the band's rows of y.
  const int64_t out_plane = d.out_h * d.out_w;
  float* yb = y + oy0 * d.out_w;
  gemm_blocked(false, true, b.out_channels, band_outputs, hidden, 1.f, b.project_weight, hidden, dd, hidden, 0.f, yb,
               out_plane, b.project_bias);
  if (b.residual)  // stride 1 and out_channels == in_channels: output row oy is input row oy
    for (int64_t c = 0; c < b.out_channels; ++c) {
      float* __restrict dst = yb + c * out_plane;
      const float* __restrict src = x + c * plane + oy0 * d.width;
      for (int64_t i = 0; i < band_outputs; ++i) dst[i] += src[i];
    }
}

}  // namespace

bool inverted_residual_supported(const InvertedResidual& b) {
  const Depthwise& d = b.depthwise;
  const bool shapes = b.in_channels >= 1 && b.out_channels >= 1 && d.multiplier == 1 && depthwise_supported(d) &&
                      (b.expand_weight || d.channels == b.in_channels) && b.depthwise_weight && b.project_weight;
  // Every output row reaches at least one image row (a band is never all padding).
  const bool rows = d.pad_top < d.kernel_h && (d.out_h - 1) * d.stride_h - d.pad_top < d.height;
  const bool residual = !b.residual || (d.stride_h == 1 && d.stride_w == 1 && d.out_h == d.height &&
                                        d.out_w == d.width && b.out_channels == b.in_channels);
  return shapes && rows && residual;
}

// Op by op, the 1x1 convolutions' gemms take the blocked path (as the bands do) only on maps
// of more than kGemmFewColumns positions.
bool inverted_residual_agrees_to_the_bit(const InvertedResidual& b) {
  const Depthwise& d = b.depthwise;
  return d.height * d.width > kGemmFewColumns && d.out_h * d.out_w > kGemmFewColumns;
}

void inverted_residual(const float* x, int64_t batch, const InvertedResidual& b, float* out) {
  const Depthwise& d = b.depthwise;
  const int64_t hidden = hidden_channels(b);
  // Output rows per band: as many as keep the band's e and d within kBandBytes, then evened out.
  const int64_t row_bytes = static_cast<int64_t>(sizeof(float)) * hidden * (d.stride_h * d.width + d.out_w);
  int64_t per_band = std::clamp<int64_t>(kBandBytes / std::max<int64_t>(1, row_bytes), 1, d.out_h);
  int64_t bands = (d.out_h + per_band - 1) / per_band;
  while (batch * bands < num_threads() && bands < d.out_h) ++bands;  // one image: the threads share its rows
  per_band = (d.out_h + bands - 1) / bands;
  bands = (d.out_h + per_band - 1) / per_band;
  const int64_t in_image = b.in_channels * d.height * d.width, out_image = b.out_channels * d.out_h * d.out_w;
  const int64_t taps = d.kernel_h * d.kernel_w;
  Weights w{std::vector<float>(static_cast<size_t>(taps * hidden))};
  for (int64_t c = 0; c < hidden; ++c)
    for (int64_t t = 0; t < taps; ++t) w.taps[t * hidden + c] = b.depthwise_weight[c * taps + t];
  parallel_for(0, batch * bands, 1, [&](int64_t lo, int64_t hi) {
    Expanded last;  // a chunk's bands of one image come in order
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t n = item / bands, oy0 = item % bands * per_band;
      band(x + n * in_image, b, w, oy0, std::min(d.out_h, oy0 + per_band), last, out + n * out_image);
    }
  });
}

void inverted_residual_naive(const float* x, int64_t batch, const InvertedResidual& b, float* out) {
  const Depthwise& d = b.depthwise;
  const int64_t hidden = hidden_channels(b), plane = d.height * d.width, out_plane = d.out_h * d.out_w;
  std::vector<float> e(static_cast<size_t>(batch * hidden * plane)), dd(static_cast<size_t>(batch * hidden * out_plane));
  auto pointwise = [](int64_t channels, int64_t height, int64_t width) {
    return ConvGeometry{channels, height, width, 1, 1, 1, 1, 0, 0, 1, 1};
  };
  if (b.expand_weight) {
    conv2d_reference(x, batch, pointwise(b.in_channels, d.height, d.width), b.expand_weight, b.expand_bias, hidden, 1,
                     e.data());
    for (float& v : e) v = relu6(v);
  } else {
    std::copy(x, x + batch * hidden * plane, e.begin());
  }
  depthwise_conv2d_naive(e.data(), batch, d, b.depthwise_weight, b.depthwise_bias, dd.data());
  for (float& v : dd) v = relu6(v);
  conv2d_reference(dd.data(), batch, pointwise(hidden, d.out_h, d.out_w), b.project_weight, b.project_bias,
                   b.out_channels, 1, out);
  if (b.residual)
    for (int64_t i = 0; i < batch * b.out_channels * out_plane; ++i) out[i] += x[i];
}

}  // namespace tg::kernels
