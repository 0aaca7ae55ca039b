// Depthwise convolution (groups = channels): each input channel c is convolved on its own
// with `multiplier` kernels, giving output channels c*multiplier ... c*multiplier + m-1.
// MobileNetV2 is mostly these (3x3, stride 1 and 2) and 1x1 convolutions.
//
//   out[n,o,y,x] = b[o] + sum over (i,j) of w[o,i,j] * x[n, o/m, y*sh + i - pad_top, x*sw + j - pad_left]
//
// The naive versions below are that formula. The fast ones copy one channel into a zeroed,
// padded plane first, so no tap ever tests a border, and split its columns by phase
// (column k goes to plane k % sw at k / sw): with stride 2 the taps of consecutive outputs
// then sit side by side in memory, as they do with stride 1. A run of outputs keeps its
// sums in registers over all taps.
#include <algorithm>
#include <vector>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/kernels/vector.h"

namespace tg::kernels {

// ---- the naive references ----
// The formula's sum read three ways. Every term w[o,i,j] * x[n,c,iy,ix] with the input pixel
// inside the image is visited once, with the indices of its output, weight and input:
//   forward          out[out_at] += w[w_at] * x[x_at]
//   input gradient   dx[x_at]    += w[w_at] * dy[out_at]
//   weight gradient  dw[w_at]    += dy[out_at] * x[x_at]
namespace {
template <class F>
void for_each_term(int64_t batch, const Depthwise& d, F term) {
  const int64_t O = d.channels * d.multiplier, taps = d.kernel_h * d.kernel_w;
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t o = 0; o < O; ++o) {
      const int64_t plane = (n * d.channels + o / d.multiplier) * d.height * d.width;
      for (int64_t y = 0; y < d.out_h; ++y)
        for (int64_t xo = 0; xo < d.out_w; ++xo) {
          const int64_t out_at = ((n * O + o) * d.out_h + y) * d.out_w + xo;
          for (int64_t i = 0; i < d.kernel_h; ++i)
            for (int64_t j = 0; j < d.kernel_w; ++j) {
              const int64_t iy = y * d.stride_h + i - d.pad_top, ix = xo * d.stride_w + j - d.pad_left;
              if (iy >= 0 && iy < d.height && ix >= 0 && ix < d.width)
                term(out_at, o * taps + i * d.kernel_w + j, plane + iy * d.width + ix);
            }
        }
    }
}
}  // namespace

void depthwise_conv2d_naive(const float* x, int64_t batch, const Depthwise& d, const float* weight, const float* bias,
                            float* out) {
  const int64_t O = d.channels * d.multiplier, plane = d.out_h * d.out_w;
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t o = 0; o < O; ++o) std::fill_n(out + (n * O + o) * plane, plane, bias ? bias[o] : 0.f);
  for_each_term(batch, d, [&](int64_t out_at, int64_t w_at, int64_t x_at) { out[out_at] += weight[w_at] * x[x_at]; });
}

void depthwise_conv2d_backward_input_naive(const float* grad_output, int64_t batch, const Depthwise& d,
                                           const float* weight, float* dx) {
  std::fill(dx, dx + batch * d.channels * d.height * d.width, 0.f);
  for_each_term(batch, d, [&](int64_t out_at, int64_t w_at, int64_t x_at) { dx[x_at] += weight[w_at] * grad_output[out_at]; });
}

void depthwise_conv2d_backward_weight_naive(const float* x, const float* grad_output, int64_t batch,
                                            const Depthwise& d, float* dw) {
  for_each_term(batch, d, [&](int64_t out_at, int64_t w_at, int64_t x_at) { dw[w_at] += grad_output[out_at] * x[x_at]; });
}

// ---- the fast versions ----
namespace {

thread_local std::vector<float> plane_buffer, gradient_plane_buffer, grad_buffer, row_buffer;

void forget_plane_layout();

// Thread-local scratch of at least n floats; `zeroed` also clears it (where the zeros are read).
float* scratch(std::vector<float>& b, int64_t n) {
  if (static_cast<int64_t>(b.size()) < n) {
    b.resize(static_cast<size_t>(n));
    if (&b == &plane_buffer) forget_plane_layout();  // moved: its contents are no plane any more
  }
  return b.data();
}
float* zeroed(std::vector<float>& b, int64_t n) {
  float* p = scratch(b, n);
  std::fill(p, p + n, 0.f);
  return p;
}

int64_t round_up(int64_t n, int64_t k) { return (n + k - 1) / k * k; }

// The padded, phase-split plane of one channel. Padded coordinates (y, k) hold
// x[y - pad_top][k - pad_left] (0 outside the image); phase r = k % sw holds its columns
// at q = k / sw. Phase r, row y starts at r * rows * row_length + y * row_length.
struct SplitPlane {
  int64_t rows, row_length;  // row_length: whole vectors covering every output column plus the kernel's reach
  int64_t slack = 0;         // zeros after the last row (see narrow())
  SplitPlane(const Depthwise& d)
      : rows((d.out_h - 1) * d.stride_h + d.kernel_h),
        row_length(round_up(round_up(d.out_w, VW) + (d.kernel_w - 1) / d.stride_w, VW)) {}
  // Stride 1 only: rows exactly as long as the padded image's, out_w + kernel_w - 1, so that
  // a channel's outputs are one run of vectors over the plane read as a single long row (the
  // columns past out_w computed and thrown away), and the run's last vectors read the slack.
  static SplitPlane narrow(const Depthwise& d) {
    SplitPlane s(d);
    s.row_length = d.out_w + d.kernel_w - 1;
    s.slack = VW + d.kernel_w;
    return s;
  }
  int64_t size(const Depthwise& d) const { return d.stride_w * rows * row_length + slack; }
  // Where tap (i, j) of output row y, column 0 reads.
  int64_t tap(const Depthwise& d, int64_t y, int64_t i, int64_t j) const {
    return (j % d.stride_w) * rows * row_length + (y * d.stride_h + i) * row_length + j / d.stride_w;
  }
  // padded coordinates (y, k) -> index
  int64_t at(const Depthwise& d, int64_t y, int64_t k) const {
    return (k % d.stride_w) * rows * row_length + y * row_length + k / d.stride_w;
  }
};

// For each phase r, the run of its columns q in [q_begin, q_end) that hold image columns
// (k = q*sw + r, image column k - pad_left in [0, width)).
template <class F>
void for_each_column_run(const Depthwise& d, const SplitPlane& s, F f) {
  for (int64_t r = 0; r < d.stride_w; ++r) {
    int64_t q_begin = 0;
    while (q_begin * d.stride_w + r < d.pad_left) ++q_begin;
    int64_t q_end = q_begin;
    while (q_end < s.row_length && q_end * d.stride_w + r - d.pad_left < d.width) ++q_end;
    f(r, q_begin, q_end);
  }
}

// With stride 2 along x, padded row y seen from image row y - pad_top: image column 2m lies
// in one phase at even[m], column 2m + 1 in the other at odd[m] (column k = 2m + t + pad_left
// is in phase k % 2 at k / 2). Usable where the phases' rows are long enough for the image
// row (they are with SAME padding): fill_plane splits an image row this way, the input
// gradient zips it back.
struct ImageColumns {
  float* even;
  float* odd;
};
bool phases_hold_image_rows(const Depthwise& d, const SplitPlane& s) {
  return d.stride_w == 2 && 2 * s.row_length >= d.pad_left + d.width + 1;
}
ImageColumns image_columns(const Depthwise& d, const SplitPlane& s, float* plane, int64_t y) {
  const int64_t e = d.pad_left % 2;
  return {plane + e * s.rows * s.row_length + y * s.row_length + d.pad_left / 2,
          plane + (1 - e) * s.rows * s.row_length + y * s.row_length + (d.pad_left + 1) / 2};
}

// The padded plane of plane_buffer is laid out by the geometry alone, so once its padding
// is zero only the image's pixels change from channel to channel (and call to call): the
// geometry of the last full fill is kept, and a plane of the same geometry gets only them.
struct PlaneLayout {
  int64_t rows = -1, row_length = -1, slack = 0, stride_w = 0, pad_top = 0, pad_left = 0, height = 0, width = 0;
  bool operator==(const PlaneLayout&) const = default;
};
thread_local PlaneLayout plane_layout;  // of plane_buffer's contents (rows = -1: unknown)
void forget_plane_layout() { plane_layout = PlaneLayout{}; }

void fill_image_pixels(const float* image, const Depthwise& d, const SplitPlane& s, float* plane);

void fill_plane(const float* image, const Depthwise& d, const SplitPlane& s, float* plane) {
  const PlaneLayout layout{s.rows, s.row_length, s.slack, d.stride_w, d.pad_top, d.pad_left, d.height, d.width};
  if (plane == plane_buffer.data() && plane_layout == layout) return fill_image_pixels(image, d, s, plane);
  if (plane == plane_buffer.data()) plane_layout = layout;
  std::fill(plane, plane + s.size(d), 0.f);
  fill_image_pixels(image, d, s, plane);
}

// fill_plane's image pixels alone (the padding around them already zero).
void fill_image_pixels(const float* image, const Depthwise& d, const SplitPlane& s, float* plane) {
  const int64_t y_begin = std::max<int64_t>(0, d.pad_top), y_end = std::min(s.rows, d.pad_top + d.height);
  if (d.stride_w == 1) {
    const int64_t left = std::min(d.pad_left, s.row_length), width = std::min(d.width, s.row_length - left);
    for (int64_t y = y_begin; y < y_end; ++y) copy_floats(plane + y * s.row_length + left, image + (y - d.pad_top) * d.width, width);
    return;
  }
  if (phases_hold_image_rows(d, s)) {
    for (int64_t y = y_begin; y < y_end; ++y) {
      const float* __restrict src = image + (y - d.pad_top) * d.width;
      const ImageColumns columns = image_columns(d, s, plane, y);
      float* __restrict even = columns.even;
      float* __restrict odd = columns.odd;
      int64_t m = 0;
      for (; 2 * m + 2 * VW <= d.width; m += VW) {
        const vfloat a = load_unaligned(src + 2 * m), b = load_unaligned(src + 2 * m + VW);
        store_unaligned(even + m, even_lanes(a, b));
        store_unaligned(odd + m, odd_lanes(a, b));
      }
      for (; 2 * m < d.width; ++m) {
        even[m] = src[2 * m];
        if (2 * m + 1 < d.width) odd[m] = src[2 * m + 1];
      }
    }
    return;
  }
  for_each_column_run(d, s, [&](int64_t r, int64_t q_begin, int64_t q_end) {
    for (int64_t y = y_begin; y < y_end; ++y) {
      const float* __restrict src = image + (y - d.pad_top) * d.width + r - d.pad_left;
      float* __restrict dst = plane + s.at(d, y, r);
      for (int64_t q = q_begin; q < q_end; ++q) dst[q] = src[q * d.stride_w];
    }
  });
}

// out[0..width) = start + sum over taps of w[t] * src[t][0..width), where start is `bias`, or
// out's own values when `accumulate`; `width` a multiple of VW, four vectors at a time in registers.
// FixedTaps > 0: `taps` is that many, known when compiling (3x3: 9), so the tap loop unrolls;
// w may then be vectors the caller broadcast once per channel (W = vfloat), not floats.
template <int64_t FixedTaps = 0, class W = float>
inline void sum_of_taps(const float* const* src, const W* w, int64_t taps, float bias, bool accumulate,
                        int64_t width, float* out) {
  if constexpr (FixedTaps > 0) taps = FixedTaps;
  int64_t x = 0;
  auto start = [&](int64_t at) { return accumulate ? load_unaligned(out + at) : vfloat{} + bias; };
  for (; x + 4 * VW <= width; x += 4 * VW) {
    vfloat a0 = start(x), a1 = start(x + VW), a2 = start(x + 2 * VW), a3 = start(x + 3 * VW);
    for (int64_t t = 0; t < taps; ++t) {
      const float* p = src[t] + x;
      const W wt = w[t];
      a0 += wt * load_unaligned(p);
      a1 += wt * load_unaligned(p + VW);
      a2 += wt * load_unaligned(p + 2 * VW);
      a3 += wt * load_unaligned(p + 3 * VW);
    }
    store_unaligned(out + x, a0);
    store_unaligned(out + x + VW, a1);
    store_unaligned(out + x + 2 * VW, a2);
    store_unaligned(out + x + 3 * VW, a3);
  }
  for (; x < width; x += VW) {
    vfloat a = start(x);
    for (int64_t t = 0; t < taps; ++t) a += w[t] * load_unaligned(src[t] + x);
    store_unaligned(out + x, a);
  }
}

constexpr int64_t kMaxTaps = 64;

// One output channel's weights for sum_of_taps from its bias: a 3x3's broadcast to vectors
// once (and its tap loop unrolled), any other kernel's read as floats.
struct ChannelTaps {
  const float* w;
  int64_t taps;
  vfloat w9[9] = {};
  ChannelTaps(const float* weight, int64_t count) : w(weight), taps(count) {
    if (taps == 9)
      for (int t = 0; t < 9; ++t) w9[t] = vfloat{} + w[t];
  }
  void sum(const float* const* src, float bias, int64_t width, float* out) const {
    if (taps == 9) sum_of_taps<9>(src, w9, taps, bias, false, width, out);
    else sum_of_taps(src, w, taps, bias, false, width, out);
  }
};

// Where each tap of output row 0 reads in s's plane; row y reads y * stride_h plane rows
// further down. (Listed once a call: the divisions in SplitPlane::tap cost more than a small
// map's arithmetic.)
void tap_offsets(const Depthwise& d, const SplitPlane& s, int64_t* tap_at) {
  for (int64_t i = 0; i < d.kernel_h; ++i)
    for (int64_t j = 0; j < d.kernel_w; ++j) tap_at[i * d.kernel_w + j] = s.tap(d, 0, i, j);
}

// While one channel is computed, the next one's input is asked for from memory in `parts`
// pieces (the caller's part-th now), so that its turn does not start by waiting for it: the
// kernels read each map once, and a layer's maps are larger than L2.
struct NextChannel {
  const float* next = nullptr;  // null: this thread's last channel
  int64_t count = 0;
  void prefetch(int64_t part, int64_t parts) const {
    if (!next) return;
    for (int64_t i = count * part / parts; i < count * (part + 1) / parts; i += 16) __builtin_prefetch(next + i);
  }
};

// f(plane, n, c, next) for every image n and channel c, the threads sharing them, with `plane`
// the padded plane of channel c of image n of x and `next` the channel after it.
template <class F>
void for_each_plane(const float* x, int64_t batch, const Depthwise& d, const SplitPlane& s, F f) {
  const int64_t size = d.height * d.width;
  parallel_for(0, batch * d.channels, 1, [&](int64_t lo, int64_t hi) {
    float* plane = scratch(plane_buffer, s.size(d));  // fill_plane writes all of it
    for (int64_t nc = lo; nc < hi; ++nc) {
      fill_plane(x + nc * size, d, s, plane);
      f(plane, nc / d.channels, nc % d.channels, NextChannel{nc + 1 < hi ? x + (nc + 1) * size : nullptr, size});
    }
  });
}

// Stride 1 on narrow maps (MobileNet's 38, 19 and 10 wide): rows of whole vectors would leave
// many lanes empty (19 outputs in 32 lanes) and a short row costs its setup; instead each
// channel's outputs are one run over its narrow plane (SplitPlane::narrow), into `flat` with
// the plane's row length, then copied out row by row without the extra columns.
void depthwise_narrow(const float* x, int64_t batch, const Depthwise& d, const float* weight, const float* bias,
                      float* out) {
  const int64_t m = d.multiplier, O = d.channels * m, taps = d.kernel_h * d.kernel_w;
  const SplitPlane s = SplitPlane::narrow(d);
  const int64_t run = round_up(d.out_h * s.row_length, VW);
  int64_t tap_at[kMaxTaps];
  tap_offsets(d, s, tap_at);
  for_each_plane(x, batch, d, s, [&](const float* plane, int64_t n, int64_t c, const NextChannel&) {
    float* flat = scratch(row_buffer, run);
    const float* src[kMaxTaps];
    for (int64_t t = 0; t < taps; ++t) src[t] = plane + tap_at[t];
    for (int64_t o = c * m; o < (c + 1) * m; ++o) {
      ChannelTaps(weight + o * taps, taps).sum(src, bias ? bias[o] : 0.f, run, flat);
      float* dst = out + (n * O + o) * d.out_h * d.out_w;
      for (int64_t y = 0; y < d.out_h; ++y) copy_floats(dst + y * d.out_w, flat + y * s.row_length, d.out_w);
    }
  });
}

}  // namespace

bool depthwise_supported(const Depthwise& d) {
  return d.kernel_h * d.kernel_w <= kMaxTaps && d.stride_h >= 1 && d.stride_w >= 1 && d.out_h >= 1 && d.out_w >= 1;
}

void depthwise_conv2d(const float* x, int64_t batch, const Depthwise& d, const float* weight, const float* bias,
                      float* out) {
  const int64_t m = d.multiplier, O = d.channels * m, taps = d.kernel_h * d.kernel_w;
  if (d.stride_h == 1 && d.stride_w == 1 && d.out_w < 4 * VW) return depthwise_narrow(x, batch, d, weight, bias, out);
  const SplitPlane s(d);
  const int64_t block = round_up(d.out_w, VW);
  int64_t tap_at[kMaxTaps];
  tap_offsets(d, s, tap_at);
  const int64_t row_step = d.stride_h * s.row_length;
  for_each_plane(x, batch, d, s, [&](const float* plane, int64_t n, int64_t c, const NextChannel& next) {
    float* row = scratch(row_buffer, block);
    for (int64_t o = c * m; o < (c + 1) * m; ++o) {
      float* dst = out + (n * O + o) * d.out_h * d.out_w;
      const ChannelTaps channel(weight + o * taps, taps);
      for (int64_t y = 0; y < d.out_h; ++y) {
        if (o == c * m) next.prefetch(y, d.out_h);
        const float* src[kMaxTaps];
        for (int64_t t = 0; t < taps; ++t) src[t] = plane + tap_at[t] + y * row_step;
        // A row's whole vectors may run past its end into the rows after it, which are
        // written later; rows whose vectors would reach past the plane's last row go
        // through the buffer.
        const bool in_place = y * d.out_w + block <= (d.out_h - 1) * d.out_w;
        float* row_out = in_place ? dst + y * d.out_w : row;
        channel.sum(src, bias ? bias[o] : 0.f, block, row_out);
        if (!in_place) copy_floats(dst + y * d.out_w, row, d.out_w);
      }
    }
  });
}

// dx of a 3x3 with stride 2 (MobileNet's downsampling layers), one channel per kernel, a left
// padding of 0 or 1, any top padding: each dx row straight from the dY rows that reach it,
// with no padded plane to crop. Padded row Y = iy + pad_top gets taps i = Y - 2 oy: from dY
// rows Y/2 (i = 0) and Y/2 - 1 (i = 2) when Y is even, (Y - 1)/2 (i = 1) when odd. Along a row,
// padded column X = ix + pad_left is even (X = 2m: w[i][0] dY[m] + w[i][2] dY[m-1]) or odd
// (X = 2m + 1: w[i][1] dY[m]); with each dY row copied after one zero (at G[r][1 + m], zeros
// beyond the row too) those are runs of contiguous loads, and the even and odd columns are
// zipped together as they are stored.
namespace {
bool stride2_3x3_direct(const Depthwise& d) {
  return d.multiplier == 1 && d.kernel_h == 3 && d.kernel_w == 3 && d.stride_h == 2 && d.stride_w == 2 &&
         (d.pad_left == 0 || d.pad_left == 1) && d.pad_top >= 0;
}

void depthwise_stride2_3x3_backward_input(const float* grad_output, int64_t batch, const Depthwise& d,
                                          const float* weight, float* dx) {
  const int64_t halves = (d.width + 1) / 2;                            // pairs of dx columns
  const int64_t row_length = round_up(std::max(halves, d.out_w) + 2, VW) + VW;  // G's rows: 1 zero, dY's row, zeros
  parallel_for(0, batch * d.channels, 1, [&](int64_t lo, int64_t hi) {
    float* grads = zeroed(grad_buffer, d.out_h * row_length);          // the zeros around each row stay zero
    for (int64_t nc = lo; nc < hi; ++nc) {
      const int64_t c = nc % d.channels;
      const float* dy = grad_output + nc * d.out_h * d.out_w;
      for (int64_t r = 0; r < d.out_h; ++r) copy_floats(grads + r * row_length + 1, dy + r * d.out_w, d.out_w);
      const float* w = weight + c * 9;
      float* out = dx + nc * d.height * d.width;
      const NextChannel next{nc + 1 < hi ? dy + d.out_h * d.out_w : nullptr, d.out_h * d.out_w};
      for (int64_t iy = 0; iy < d.height; ++iy) {
        next.prefetch(iy, d.height);
        // the dY rows reaching this row and their tap rows i, at most two
        const int64_t Y = iy + d.pad_top;
        const float* rows[2];
        const float* taps[2];
        int64_t used = 0;
        for (int64_t i = Y % 2; i < 3; i += 2)
          if (Y >= i && (Y - i) / 2 < d.out_h) rows[used] = grads + (Y - i) / 2 * row_length, taps[used++] = w + 3 * i;
        float* dst = out + iy * d.width;
        if (used == 0) {
          std::fill(dst, dst + d.width, 0.f);
          continue;
        }
        for (int64_t m = 0; 2 * m < d.width; m += VW) {
          // even: the columns X = 2m (pad_left 0) or X = 2m + 1 (pad_left 1) of dx's pairs, odd the next ones
          vfloat first{}, second{};
          for (int64_t k = 0; k < used; ++k) {
            const float* g = rows[k] + m;
            const vfloat w0 = vfloat{} + taps[k][0], w1 = vfloat{} + taps[k][1], w2 = vfloat{} + taps[k][2];
            if (d.pad_left == 0) {
              first += w0 * load_unaligned(g + 1) + w2 * load_unaligned(g);
              second += w1 * load_unaligned(g + 1);
            } else {
              first += w1 * load_unaligned(g + 1);
              second += w0 * load_unaligned(g + 2) + w2 * load_unaligned(g + 1);
            }
          }
          const vfloat low = zip_low(first, second), high = zip_high(first, second);
          const int64_t left = d.width - 2 * m;  // dx columns from 2m on
          if (left >= 2 * VW) {
            store_unaligned(dst + 2 * m, low);
            store_unaligned(dst + 2 * m + VW, high);
          } else {
            alignas(64) float pair[2 * VW];
            store_unaligned(pair, low);
            store_unaligned(pair + VW, high);
            copy_floats(dst + 2 * m, pair, left);
          }
        }
      }
    }
  });
}
}  // namespace

// dx is the transposed operation. With stride 1 that is a forward depthwise convolution again;
// otherwise padded-split dx at (y, k) gathers w[i][j] * dy[oy][ox] over
// the taps with oy*sh + i = y and ox*sw + j = k. For phase r = k % sw, the taps j = r, r+sw, ...
// reach q = k / sw from ox = q - j / sw, so with dY bordered by `reach` zero columns on the
// left (and rows checked) each phase row is again a sum of shifted contiguous rows.
void depthwise_conv2d_backward_input(const float* grad_output, int64_t batch, const Depthwise& d, const float* weight,
                                     float* dx) {
  const int64_t m = d.multiplier, O = d.channels * m, taps = d.kernel_h * d.kernel_w;
  if (d.stride_h == 1 && d.stride_w == 1 && m == 1 && d.pad_top < d.kernel_h && d.pad_left < d.kernel_w) {
    // Stride 1 (most of MobileNet's): dx[y][x] = sum over (i, j) of w[i][j] * dy[y - i + pad_top][x - j + pad_left]
    // is the forward convolution of dY with the kernel turned half a turn, padded by kernel - 1 - pad.
    std::vector<float> turned(static_cast<size_t>(d.channels * taps));
    for (int64_t c = 0; c < d.channels; ++c)
      for (int64_t t = 0; t < taps; ++t) turned[c * taps + t] = weight[c * taps + taps - 1 - t];
    const Depthwise transposed{d.channels, d.out_h, d.out_w, 1, d.kernel_h, d.kernel_w, 1, 1,
                               d.kernel_h - 1 - d.pad_top, d.kernel_w - 1 - d.pad_left, d.height, d.width};
    depthwise_conv2d(grad_output, batch, transposed, turned.data(), nullptr, dx);
    return;
  }
  if (stride2_3x3_direct(d)) return depthwise_stride2_3x3_backward_input(grad_output, batch, d, weight, dx);
  const SplitPlane s(d);
  const int64_t reach = (d.kernel_w - 1) / d.stride_w;                      // columns of dY left of ox = 0
  const int64_t grad_row = round_up(s.row_length + reach, VW) + VW;        // a bordered dY row
  const int64_t block = s.row_length;                                        // a multiple of VW
  // With stride 2 along x, when the padded plane covers every image row and column (it does
  // with SAME padding), the crop zips the two phases back together row by row.
  const bool two_phases_cover_image = phases_hold_image_rows(d, s) && s.rows >= d.pad_top + d.height;
  // For each phase r and padded row y, the taps that reach it: dY row (y - i) / sh shifted
  // left by j / sw, times w[i][j], over the (i, j) with y - i a multiple of sh inside dY and
  // j = r (mod sw). Listed once here, not for every channel.
  struct Reach { int64_t grads_at, weight_at; };
  std::vector<Reach> reaches;
  std::vector<int64_t> first_reach(static_cast<size_t>(d.stride_w * s.rows + 1));
  for (int64_t r = 0; r < d.stride_w; ++r)
    for (int64_t y = 0; y < s.rows; ++y) {
      first_reach[r * s.rows + y] = static_cast<int64_t>(reaches.size());
      for (int64_t i = 0; i < d.kernel_h; ++i) {
        if ((y - i) % d.stride_h != 0 || y < i || (y - i) / d.stride_h >= d.out_h) continue;
        for (int64_t j = r; j < d.kernel_w; j += d.stride_w)
          reaches.push_back({((y - i) / d.stride_h) * grad_row + reach - j / d.stride_w, i * d.kernel_w + j});
      }
    }
  first_reach.back() = static_cast<int64_t>(reaches.size());
  parallel_for(0, batch * d.channels, 1, [&](int64_t lo, int64_t hi) {
    float* plane = scratch(gradient_plane_buffer, s.size(d));  // each row written by the first o below
    float* grads = zeroed(grad_buffer, d.out_h * grad_row);
    for (int64_t nc = lo; nc < hi; ++nc) {
      const int64_t n = nc / d.channels, c = nc % d.channels;
      for (int64_t o = c * m; o < (c + 1) * m; ++o) {
        const float* dy = grad_output + (n * O + o) * d.out_h * d.out_w;
        for (int64_t y = 0; y < d.out_h; ++y) copy_floats(grads + y * grad_row + reach, dy + y * d.out_w, d.out_w);
        const float* w = weight + o * taps;
        for (int64_t r = 0; r < d.stride_w; ++r)
          for (int64_t y = 0; y < s.rows; ++y) {
            const float* src[kMaxTaps];
            float wt[kMaxTaps];
            int64_t used = 0;
            for (int64_t k = first_reach[r * s.rows + y]; k < first_reach[r * s.rows + y + 1]; ++k, ++used) {
              src[used] = grads + reaches[k].grads_at;
              wt[used] = w[reaches[k].weight_at];
            }
            float* plane_row = plane + r * s.rows * s.row_length + y * s.row_length;
            if (used == 0 && o == c * m) std::fill(plane_row, plane_row + block, 0.f);  // no tap reaches it
            if (used == 0) continue;
            // 3x3 with stride 2 reaches a row with 1, 2 or 4 taps: those counts unrolled
            const bool accumulate = o > c * m;
            if (used == 1) sum_of_taps<1>(src, wt, used, 0.f, accumulate, block, plane_row);
            else if (used == 2) sum_of_taps<2>(src, wt, used, 0.f, accumulate, block, plane_row);
            else if (used == 4) sum_of_taps<4>(src, wt, used, 0.f, accumulate, block, plane_row);
            else sum_of_taps(src, wt, used, 0.f, accumulate, block, plane_row);
          }
      }
      // crop: dx[yy][xx] = the plane at padded (yy + pad_top, xx + pad_left); 0 where no output reached
      float* out = dx + nc * d.height * d.width;
      if (two_phases_cover_image) {  // the inverse of fill_plane's split: even and odd columns zipped
        for (int64_t yy = 0; yy < d.height; ++yy) {
          const ImageColumns columns = image_columns(d, s, plane, yy + d.pad_top);
          const float* __restrict even = columns.even;
          const float* __restrict odd = columns.odd;
          float* __restrict dst = out + yy * d.width;
          int64_t half = 0;
          for (; 2 * half + 2 * VW <= d.width; half += VW) {
            const vfloat a = load_unaligned(even + half), b = load_unaligned(odd + half);
            store_unaligned(dst + 2 * half, zip_low(a, b));
            store_unaligned(dst + 2 * half + VW, zip_high(a, b));
          }
          for (; 2 * half < d.width; ++half) {
            dst[2 * half] = even[half];
            if (2 * half + 1 < d.width) dst[2 * half + 1] = odd[half];
          }
        }
        continue;
      }
      std::fill(out, out + d.height * d.width, 0.f);
      for_each_column_run(d, s, [&](int64_t r, int64_t q_begin, int64_t q_end) {
        for (int64_t y = std::max<int64_t>(0, d.pad_top); y < std::min(s.rows, d.pad_top + d.height); ++y) {
          const float* __restrict src = plane + s.at(d, y, r);
          float* __restrict dst = out + (y - d.pad_top) * d.width + r - d.pad_left;
          for (int64_t q = q_begin; q < q_end; ++q) dst[q * d.stride_w] = src[q];
        }
      });
    }
  });
}

// dw[o][i][j] += sum over images and outputs of dy[oy][ox] * padded x at (oy*sh + i, ox*sw + j):
// one dot product per tap between a dY row and a shifted plane row.
void depthwise_conv2d_backward_weight(const float* x, const float* grad_output, int64_t batch, const Depthwise& d,
                                      float* dw) {
  const int64_t m = d.multiplier, O = d.channels * m, taps = d.kernel_h * d.kernel_w;
  const SplitPlane s(d);
  const int64_t block = round_up(d.out_w, VW);
  parallel_for(0, d.channels, 1, [&](int64_t lo, int64_t hi) {
    float* plane = scratch(plane_buffer, s.size(d));  // fill_plane writes all of it
    float* row = zeroed(row_buffer, block);  // one dY row, zero past out_w
    for (int64_t c = lo; c < hi; ++c)
      for (int64_t n = 0; n < batch; ++n) {
        fill_plane(x + (n * d.channels + c) * d.height * d.width, d, s, plane);
        for (int64_t o = c * m; o < (c + 1) * m; ++o) {
          vfloat sums[kMaxTaps] = {};
          const float* dy = grad_output + (n * O + o) * d.out_h * d.out_w;
          for (int64_t y = 0; y < d.out_h; ++y) {
            std::copy(dy + y * d.out_w, dy + (y + 1) * d.out_w, row);
            for (int64_t i = 0; i < d.kernel_h; ++i)
              for (int64_t j = 0; j < d.kernel_w; ++j) {
                const float* p = plane + s.tap(d, y, i, j);
                vfloat acc = sums[i * d.kernel_w + j];
                for (int64_t xo = 0; xo < block; xo += VW) acc += load_unaligned(row + xo) * load_unaligned(p + xo);
                sums[i * d.kernel_w + j] = acc;
              }
          }
          for (int64_t t = 0; t < taps; ++t) {
            float total = 0.f;
            for (int64_t l = 0; l < VW; ++l) total += sums[t][l];
            dw[o * taps + t] += total;
          }
        }
      }
  });
}

}  // namespace tg::kernels
