// The usual pooling layer, 2x2 windows with stride 2 and no padding (windows never
// overlap), over planes [planes, H, W] -> [planes, H/2, W/2]: a naive reference and a
// fast path that works on pairs of input rows, 16 windows at a time with AVX-512 (8 with
// AVX2).
// ops/pool.cpp takes these for that one case and its own window loops for every other.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "tinygrad-cpp/kernels/kernels.h"

namespace tg::kernels {
namespace {

// One window (a, b / c, d in reading order): which pixel is its first maximum. A NaN is
// larger than everything (PyTorch's max-pool propagates NaN): the first NaN wins.
inline int first_maximum(float a, float b, float c, float d) {
  if (std::isnan(a) || std::isnan(b) || std::isnan(c) || std::isnan(d))
    return std::isnan(a) ? 0 : std::isnan(b) ? 1 : std::isnan(c) ? 2 : 3;
  const float m = std::max(std::max(a, b), std::max(c, d));
  return a == m ? 0 : b == m ? 1 : c == m ? 2 : 3;
}

void forward_row_naive(const float* top, const float* bottom, float* out, int64_t out_w) {
  for (int64_t ox = 0; ox < out_w; ++ox) {
    const float window[4] = {top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]};
    out[ox] = window[first_maximum(window[0], window[1], window[2], window[3])];
  }
}

void backward_row_naive(const float* top, const float* bottom, const float* grad, float* dtop, float* dbottom,
                        int64_t out_w) {
  for (int64_t ox = 0; ox < out_w; ++ox) {
    const int winner = first_maximum(top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]);
    dtop[2 * ox] = winner == 0 ? grad[ox] : 0.f;
    dtop[2 * ox + 1] = winner == 1 ? grad[ox] : 0.f;
    dbottom[2 * ox] = winner == 2 ? grad[ox] : 0.f;
    dbottom[2 * ox + 1] = winner == 3 ? grad[ox] : 0.f;
  }
}

#if defined(__AVX512F__)
// Two loads per row bring 32 pixels; a permute splits them into the windows' left (even)
// and right (odd) pixels; the row's tail is a masked load, so 14- and 7-wide rows need no
// scalar loop.
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
inline __mmask16 is_nan(__m512 x) { return _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q); }
// The window's maximum; a window holding a NaN gives NaN (vmaxps alone would drop some).
inline __m512 window_max(const Windows16& w) {
  const __m512 m = max16(max16(w.a, w.b), max16(w.c, w.d));
  const __mmask16 nan = is_nan(w.a) | is_nan(w.b) | is_nan(w.c) | is_nan(w.d);
  return _mm512_mask_mov_ps(m, nan, _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
}

void forward_row_fast(const float* top, const float* bottom, float* out, int64_t out_w) {
  for (int64_t ox = 0; ox < out_w; ox += 16) {
    const Windows16 w = load_windows(top + 2 * ox, bottom + 2 * ox, out_w - ox);
    _mm512_mask_storeu_ps(out + ox, w.windows, window_max(w));
  }
}

// Each of a window's four pixels gets the window's gradient if it is the first maximum;
// masks, not branches, so the loop runs at the same speed whatever the data.
void backward_row_fast(const float* top, const float* bottom, const float* grad, float* dtop, float* dbottom,
                       int64_t out_w) {
  static const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  static const __m512i high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t ox = 0; ox < out_w; ox += 16) {
    const Windows16 w = load_windows(top + 2 * ox, bottom + 2 * ox, out_w - ox);
    const __m512 m = window_max(w);
    // Equal to the maximum, or a NaN (which is the maximum of its window): the first one wins.
    const __mmask16 a_wins = _mm512_cmp_ps_mask(w.a, m, _CMP_EQ_OQ) | is_nan(w.a);
    const __mmask16 b_wins = (_mm512_cmp_ps_mask(w.b, m, _CMP_EQ_OQ) | is_nan(w.b)) & ~a_wins;
    const __mmask16 c_wins = (_mm512_cmp_ps_mask(w.c, m, _CMP_EQ_OQ) | is_nan(w.c)) & ~(a_wins | b_wins);
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
}
#elif defined(__AVX2__)
// The same with AVX2, 8 windows at a time; masks are vectors (all bits set where true).
struct Windows8 {
  __m256 a, b, c, d;  // top-left, top-right, bottom-left, bottom-right of 8 windows
};
// 16 pixels of a row -> the left (even) and right (odd) pixels of its 8 windows, in order.
inline void split_pairs(const float* row, __m256& left, __m256& right) {
  const __m256 p0 = _mm256_loadu_ps(row), p1 = _mm256_loadu_ps(row + 8);
  // per 128-bit half: p0[0] p0[2] p1[0] p1[2]; then the 64-bit quarters reordered 0 2 1 3
  left = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0x88)), 0xd8));
  right = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0xdd)), 0xd8));
}
// left and right pixels -> 16 pixels of a row (the inverse of split_pairs).
inline void join_pairs(__m256 left, __m256 right, float* row) {
  const __m256 low = _mm256_unpacklo_ps(left, right), high = _mm256_unpackhi_ps(left, right);
  _mm256_storeu_ps(row, _mm256_permute2f128_ps(low, high, 0x20));
  _mm256_storeu_ps(row + 8, _mm256_permute2f128_ps(low, high, 0x31));
}
inline Windows8 load_windows(const float* top, const float* bottom) {
  Windows8 w;
  split_pairs(top, w.a, w.b);
  split_pairs(bottom, w.c, w.d);
  return w;
}
inline __m256 is_nan(__m256 x) { return _mm256_cmp_ps(x, x, _CMP_UNORD_Q); }
// The window's maximum; a window holding a NaN gives NaN (vmaxps alone would drop some).
inline __m256 window_max(const Windows8& w) {
  const __m256 m = _mm256_max_ps(_mm256_max_ps(w.a, w.b), _mm256_max_ps(w.c, w.d));
  const __m256 nan = _mm256_or_ps(_mm256_or_ps(is_nan(w.a), is_nan(w.b)), _mm256_or_ps(is_nan(w.c), is_nan(w.d)));
  return _mm256_blendv_ps(m, _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN()), nan);
}

// Runs body(top, bottom, ox) over a row's windows 8 at a time, from window ox on; the last
// 8 overlap the ones before when out_w is no multiple of 8 (their results are the same
// values written again). Rows of fewer than 8 windows take the naive loop.
template <class Body>
void in_eights(const float* top, const float* bottom, int64_t out_w, Body body) {
  for (int64_t ox = 0;; ox += 8) {
    ox = std::min(ox, out_w - 8);
    body(top + 2 * ox, bottom + 2 * ox, ox);
    if (ox + 8 == out_w) return;
  }
}

void forward_row_fast(const float* top, const float* bottom, float* out, int64_t out_w) {
  if (out_w < 8) return forward_row_naive(top, bottom, out, out_w);
  in_eights(top, bottom, out_w, [&](const float* t, const float* b, int64_t ox) {
    _mm256_storeu_ps(out + ox, window_max(load_windows(t, b)));
  });
}

// Each of a window's four pixels gets the window's gradient if it is the first maximum.
void backward_row_fast(const float* top, const float* bottom, const float* grad, float* dtop, float* dbottom,
                       int64_t out_w) {
  if (out_w < 8) return backward_row_naive(top, bottom, grad, dtop, dbottom, out_w);
  in_eights(top, bottom, out_w, [&](const float* t, const float* b, int64_t ox) {
    const Windows8 w = load_windows(t, b);
    const __m256 m = window_max(w);
    // Equal to the maximum, or a NaN (which is the maximum of its window): the first one wins.
    const __m256 a_wins = _mm256_or_ps(_mm256_cmp_ps(w.a, m, _CMP_EQ_OQ), is_nan(w.a));
    const __m256 b_wins = _mm256_andnot_ps(a_wins, _mm256_or_ps(_mm256_cmp_ps(w.b, m, _CMP_EQ_OQ), is_nan(w.b)));
    const __m256 ab_wins = _mm256_or_ps(a_wins, b_wins);
    const __m256 c_wins = _mm256_andnot_ps(ab_wins, _mm256_or_ps(_mm256_cmp_ps(w.c, m, _CMP_EQ_OQ), is_nan(w.c)));
    const __m256 g = _mm256_loadu_ps(grad + ox);
    const __m256 ga = _mm256_and_ps(a_wins, g), gb = _mm256_and_ps(b_wins, g), gc = _mm256_and_ps(c_wins, g);
    const __m256 gd = _mm256_andnot_ps(_mm256_or_ps(ab_wins, c_wins), g);
    join_pairs(ga, gb, dtop + 2 * ox);
    join_pairs(gc, gd, dbottom + 2 * ox);
  });
}
#else
constexpr auto forward_row_fast = forward_row_naive;
constexpr auto backward_row_fast = backward_row_naive;
#endif

// Planes over the threads, at least ~32k input values a thread: below that, waking a
// second thread costs more than it saves.
template <class F>
void for_each_plane(int64_t planes, int64_t height, int64_t width, F body) {
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, height * width));
  parallel_for(0, planes, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) body(c);
  });
}

template <class Row>
void forward(const float* x, int64_t planes, int64_t height, int64_t width, float* out, Row row) {
  const int64_t out_h = height / 2, out_w = width / 2;
  for_each_plane(planes, height, width, [&](int64_t c) {
    const float* plane = x + c * height * width;
    for (int64_t oy = 0; oy < out_h; ++oy)
      row(plane + 2 * oy * width, plane + (2 * oy + 1) * width, out + (c * out_h + oy) * out_w, out_w);
  });
}

template <class Row>
void backward(const float* x, const float* grad_output, int64_t planes, int64_t height, int64_t width, float* dx, Row row) {
  const int64_t out_h = height / 2, out_w = width / 2;
  for_each_plane(planes, height, width, [&](int64_t c) {
    const float* plane = x + c * height * width;
    float* dplane = dx + c * height * width;
    for (int64_t oy = 0; oy < out_h; ++oy)
      row(plane + 2 * oy * width, plane + (2 * oy + 1) * width, grad_output + (c * out_h + oy) * out_w,
          dplane + 2 * oy * width, dplane + (2 * oy + 1) * width, out_w);
  });
}

}  // namespace

void max_pool2x2_naive(const float* x, int64_t planes, int64_t height, int64_t width, float* out) {
  forward(x, planes, height, width, out, forward_row_naive);
}
void max_pool2x2(const float* x, int64_t planes, int64_t height, int64_t width, float* out) {
  forward(x, planes, height, width, out, forward_row_fast);
}
void max_pool2x2_backward_naive(const float* x, const float* grad_output, int64_t planes, int64_t height, int64_t width,
                                float* dx) {
  backward(x, grad_output, planes, height, width, dx, backward_row_naive);
}
void max_pool2x2_backward(const float* x, const float* grad_output, int64_t planes, int64_t height, int64_t width,
                          float* dx) {
  backward(x, grad_output, planes, height, width, dx, backward_row_fast);
}

}  // namespace tg::kernels
