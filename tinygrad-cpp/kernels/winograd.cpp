// conv3x3_winograd: a 3x3 convolution with stride 1 by Winograd's minimal filtering
// F(m x m, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
// Same result as conv2d_stride1 (up to rounding); fewer multiplications.
//
// Each m x m block of outputs ("tile") of one output channel needs, the direct way, 9 m^2
// multiply-adds per input channel. Winograd's way moves the tile's n x n input patch d
// (n = m + 2) and the 3x3 kernel g into an n x n "transformed" space where the convolution
// is an elementwise product:
//
//     Y = A^T [ (G g G^T) .* (B^T d B) ] A        with  U = G g G^T,  V = B^T d B
//
// Summed over input channels, the product at each of the n^2 positions xi of that space is
// a matrix product, M_xi [O, tiles] = U_xi [O, C] V_xi [C, tiles]: n^2 gemms, n^2 multiply-
// adds per tile against 9 m^2 the direct way. The transforms are additions and a few
// multiplications by small constants. Two tile sizes (the matrices are in Transform<m>):
//
//   F(2x2, 3x3): 16 multiply-adds per 4 outputs, 2.25 times fewer than direct;
//   F(4x4, 3x3): 36 per 16 outputs, 4 times fewer, but its transformed weights are 36 planes
//                of O x C instead of 16, and it rounds more (its constants are not powers of
//                two: up to about 2e-5 of the sums' size on 64 channels, against under 1e-6;
//                the tests bound both): used on large maps, where the weights' transform is
//                paid back over many tiles.
//
// Steps, for one band of tile rows at a time:
//   1. U_xi[o][c] for every (o, c): once per call (weights are read through strides, as
//      conv2d_stride1 reads them, so the input gradient's flipped, transposed weight works too);
//   2. V_xi[c][t]: each input row split into its m phases (columns x with x mod m = p), so
//      that column l of tile t is phase l mod m at t + l / m and every transform runs over
//      whole vectors of tiles;
//   3. the n^2 gemms;
//   4. Y from M_xi, plus the bias, written where the output has room (a last row or column
//      of tiles may be partly outside the output).
#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/kernels/vector.h"

namespace tg::kernels {
namespace {

// The transform matrices of F(m x m, 3x3), n = m + 2 (Lavin and Gray's, interpolation
// points 0, 1, -1 for m = 2 and 0, 1, -1, 2, -2 for m = 4, and infinity).
template <int m>
struct Transform;
template <>
struct Transform<2> {
  static constexpr int n = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};
template <>
struct Transform<4> {
  static constexpr int n = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float G[6][3] = {{1.f / 4, 0, 0},          {-1.f / 6, -1.f / 6, -1.f / 6}, {-1.f / 6, 1.f / 6, -1.f / 6},
                                    {1.f / 24, 1.f / 12, 1.f / 6}, {1.f / 24, -1.f / 12, 1.f / 6}, {0, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

// f(0), f(1), ..., f(count - 1) with each index a compile-time constant (std::integral_constant).
// Always inlined, as are the lambdas it calls: a call per term would cost more than the term.
#define TG_INLINE __attribute__((always_inline))
template <int count, class F>
TG_INLINE inline void static_for(F f) {
  [&]<int... i>(std::integer_sequence<int, i...>) TG_INLINE { (f(std::integral_constant<int, i>{}), ...); }(
      std::make_integer_sequence<int, count>{});
}

// sum over k of coef[k] * value(k), the zero coefficients skipped (T: float or vfloat). With
// the row of coefficients a constant and k unrolled, the compiler drops the zeros and the
// multiplications by 1 and -1, leaving the transforms' additions; the sum starts from -0,
// which adds nothing (x + -0 == x exactly, so that add is folded away too).
template <int count, class T, class F>
TG_INLINE inline T combine(const float (&coef)[count], F value) {
  T total = -T{};
  static_for<count>([&](auto k) TG_INLINE {
    if (coef[k] != 0.f) total += coef[k] * value(k());
  });
  return total;
}

// Scratch of one thread, reused from call to call (allocating megabytes per call costs
// page faults).
thread_local std::vector<float> transformed_weight_buffer, input_buffer, product_buffer, row_buffer;
float* grow(std::vector<float>& b, int64_t n) {
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

struct Plan {
  const float* image;
  DirectConv d;
  const float* weight;
  const float* bias;
  float* out;
  int64_t out_h, out_w, tiles_h, tiles_w;
  int64_t phase_w;  // columns of one phase of a zero-bordered input row: tiles_w + 1
  const float* U;   // [n*n][O][C]
};

// Step 1: U = G g G^T for output channels [o0, o1), VW input channels at a time.
template <int m>
void transform_weights(const Plan& p, int64_t o0, int64_t o1, float* U) {
  using W = Transform<m>;
  constexpr int n = W::n;
  const DirectConv& d = p.d;
  const int64_t O = d.out_channels, C = d.channels;
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t c0 = 0; c0 < C; c0 += VW) {
      const int64_t lanes = std::min(VW, C - c0);
      vfloat g[3][3], Gg[n][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
          const float* w = p.weight + o * d.out_stride + c0 * d.in_stride + i * d.row_stride + j * d.col_stride;
          g[i][j] = vfloat{};
          for (int64_t lane = 0; lane < lanes; ++lane) g[i][j][lane] = w[lane * d.in_stride];
        }
      for (int a = 0; a < n; ++a)  // G g on the rows
        for (int j = 0; j < 3; ++j) Gg[a][j] = combine<3, vfloat>(W::G[a], [&](int i) TG_INLINE { return g[i][j]; });
      for (int a = 0; a < n; ++a)  // (G g) G^T on the columns
        for (int b = 0; b < n; ++b) {
          const vfloat u = combine<3, vfloat>(W::G[b], [&](int j) TG_INLINE { return Gg[a][j]; });
          float* dst = U + (a * n + b) * O * C + o * C + c0;
          if (lanes == VW) {
            store_unaligned(dst, u);
          } else {
            for (int64_t lane = 0; lane < lanes; ++lane) dst[lane] = u[lane];
          }
        }
    }
}

// even[i] = row[2i], odd[i] = row[2i + 1] for i < count.
void split_even_odd(const float* row, int64_t count, float* even, float* odd) {
  int64_t i = 0;
  for (; i + VW <= count; i += VW) {
    const vfloat a = load_unaligned(row + 2 * i), b = load_unaligned(row + 2 * i + VW);
    store_unaligned(even + i, even_lanes(a, b));
    store_unaligned(odd + i, odd_lanes(a, b));
  }
  for (; i < count; ++i) {
    even[i] = row[2 * i];
    odd[i] = row[2 * i + 1];
  }
}

// phases[p * count + i] = row[m * i + p] for p < m, i < count (row holds m * count floats);
// m = 4 splits in two rounds, through `scratch` (4 * count floats).
template <int m>
void split_phases(const float* row, int64_t count, float* phases, float* scratch) {
  if constexpr (m == 2) {
    split_even_odd(row, count, phases, phases + count);
  } else {
    static_assert(m == 4);
    float* even = scratch;  // row[2i], then row[2i + 1], 2 * count each
    float* odd = scratch + 2 * count;
    split_even_odd(row, 2 * count, even, odd);
    split_even_odd(even, count, phases, phases + 2 * count);          // phases 0 and 2
    split_even_odd(odd, count, phases + count, phases + 3 * count);   // phases 1 and 3
  }
}

// Step 2 for channels [c0, c1) and tile rows [ty0, ty1): V [n*n][C][band tiles].
template <int m>
void transform_input(const Plan& p, int64_t ty0, int64_t ty1, int64_t c0, int64_t c1, float* V) {
  using W = Transform<m>;
  constexpr int n = W::n;
  const DirectConv& d = p.d;
  const int64_t band = (ty1 - ty0) * p.tiles_w, H = p.phase_w, row_floats = m * H;
  // rows[k]: input row m*ty - pad_h + k split into its phases (column x of the zero-bordered
  // row being input column x - pad_w); r[a] = sum_k BT[a][k] rows[k] (B^T d on the rows).
  float* rows = grow(row_buffer, 2 * n * row_floats + 2 * row_floats);
  float* r = rows + n * row_floats;
  float* padded = r + n * row_floats;
  float* scratch = padded + row_floats;
  for (int64_t c = c0; c < c1; ++c) {
    const float* plane = p.image + c * d.height * d.width;
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      for (int k = 0; k < n; ++k) {
        float* phases = rows + k * row_floats;
        const int64_t y = m * ty - d.pad_h + k;
        if (y < 0 || y >= d.height) {
          std::fill(phases, phases + row_floats, 0.f);
          continue;
        }
        std::fill(padded, padded + d.pad_w, 0.f);
        std::copy_n(plane + y * d.width, d.width, padded + d.pad_w);
        std::fill(padded + d.pad_w + d.width, padded + row_floats, 0.f);
        split_phases<m>(padded, H, phases, scratch);
      }
      static_for<n>([&](auto a) TG_INLINE {
        float* __restrict dst = r + a * row_floats;
        for (int64_t x = 0; x < row_floats; ++x)
          dst[x] = combine<n, float>(W::BT[a], [&](int k) TG_INLINE { return rows[k * row_floats + x]; });
      });
      // (B^T d) B on the columns of each tile t: column l is phase l mod m at t + l / m
      const int64_t t0 = (ty - ty0) * p.tiles_w;
      for (int a = 0; a < n; ++a) {
        const float* __restrict ra = r + a * row_floats;
        static_for<n>([&](auto b) TG_INLINE {
          float* __restrict v = V + ((a * n + b) * d.channels + c) * band + t0;
          for (int64_t t = 0; t < p.tiles_w; ++t)
            v[t] = combine<n, float>(W::BT[b], [&](int l) TG_INLINE { return ra[(l % m) * H + t + l / m]; });
        });
      }
    }
  }
}

// y[i][j] = bias + (A^T m A)[i][j] for one tile or VW of them (T: float or vfloat), with
// at(a, b) the products at position (a, b) of the transformed space.
template <int m, class T, class At>
TG_INLINE inline void inverse_transform(At at, float bias, T (&y)[m][m]) {
  using W = Transform<m>;
  constexpr int n = W::n;
  T s[m][n];  // A^T m on the rows
  static_for<m>([&](auto i) TG_INLINE {
    static_for<n>([&](auto b) TG_INLINE { s[i][b] = combine<n, T>(W::AT[i], [&](int a) TG_INLINE { return at(a, b()); }); });
  });
  static_for<m>([&](auto i) TG_INLINE {
    static_for<m>([&](auto j) TG_INLINE { y[i][j] = bias + combine<n, T>(W::AT[j], [&](int b) TG_INLINE { return s[i][b]; }); });
  });
}

// out[0 : m*VW) = y[0][0], y[1][0], ..., y[m-1][0], y[0][1], ...: m vectors of VW tiles'
// columns interleaved into one output row.
template <int m>
inline void store_interleaved(float* out, const vfloat (&y)[m]) {
  if constexpr (m == 2) {
    store_unaligned(out, zip_low(y[0], y[1]));
    store_unaligned(out + VW, zip_high(y[0], y[1]));
  } else {
    static_assert(m == 4);
    const vfloat a = zip_low(y[0], y[2]), b = zip_low(y[1], y[3]), c = zip_high(y[0], y[2]), e = zip_high(y[1], y[3]);
    store_unaligned(out, zip_low(a, b));
    store_unaligned(out + VW, zip_high(a, b));
    store_unaligned(out + 2 * VW, zip_low(c, e));
    store_unaligned(out + 3 * VW, zip_high(c, e));
  }
}

// Step 4 for output channels [o0, o1) and tile rows [ty0, ty1), from M [n*n][O][band tiles].
template <int m>
void transform_output(const Plan& p, int64_t ty0, int64_t ty1, int64_t o0, int64_t o1, const float* M) {
  constexpr int n = Transform<m>::n;
  const DirectConv& d = p.d;
  const int64_t band = (ty1 - ty0) * p.tiles_w, whole = p.out_w / m;  // tiles wholly inside a row
  for (int64_t o = o0; o < o1; ++o) {
    const float bias = p.bias ? p.bias[o] : 0.f;
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      const float* mp[n][n];
      for (int a = 0; a < n; ++a)
        for (int b = 0; b < n; ++b) mp[a][b] = M + ((a * n + b) * d.out_channels + o) * band + (ty - ty0) * p.tiles_w;
      float* __restrict top = p.out + (o * p.out_h + m * ty) * p.out_w;
      const int64_t rows = std::min<int64_t>(m, p.out_h - m * ty);
      int64_t t = 0;
      for (; t + VW <= whole; t += VW) {  // VW tiles at a time, their columns interleaved
        vfloat y[m][m];
        inverse_transform<m>([&](int a, int b) TG_INLINE { return load_unaligned(mp[a][b] + t); }, bias, y);
        for (int64_t i = 0; i < rows; ++i) store_interleaved<m>(top + i * p.out_w + m * t, y[i]);
      }
      for (; t < p.tiles_w; ++t) {
        float y[m][m];
        inverse_transform<m>([&](int a, int b) TG_INLINE { return mp[a][b][t]; }, bias, y);
        const int64_t cols = std::min<int64_t>(m, p.out_w - m * t);
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) top[i * p.out_w + m * t + j] = y[i][j];
      }
    }
  }
}

// Steps 2-4 for tile rows [ty0, ty1). Inside a parallel region every loop runs on the
// calling thread; otherwise each step shares its loop among the threads.
template <int m>
void run_band(const Plan& p, int64_t ty0, int64_t ty1) {
  constexpr int64_t positions = Transform<m>::n * Transform<m>::n;
  const DirectConv& d = p.d;
  const int64_t band = (ty1 - ty0) * p.tiles_w, C = d.channels, O = d.out_channels;
  float* V = grow(input_buffer, positions * C * band);
  float* M = grow(product_buffer, positions * O * band);
  parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) { transform_input<m>(p, ty0, ty1, c0, c1, V); });
  const bool serial = in_parallel_region() || num_threads() == 1;
  if (serial || O * band * C < (int64_t{1} << 21)) {
    parallel_for(0, positions, 1, [&](int64_t x0, int64_t x1) {
      for (int64_t xi = x0; xi < x1; ++xi)
        gemm(false, false, O, band, C, 1.f, p.U + xi * O * C, C, V + xi * C * band, band, 0.f, M + xi * O * band, band);
    });
  } else {
    for (int64_t xi = 0; xi < positions; ++xi)  // each gemm shares itself among the threads
      gemm(false, false, O, band, C, 1.f, p.U + xi * O * C, C, V + xi * C * band, band, 0.f, M + xi * O * band, band);
  }
  parallel_for(0, O, 1, [&](int64_t o0, int64_t o1) { transform_output<m>(p, ty0, ty1, o0, o1, M); });
}

template <int m>
void winograd(const float* image, const DirectConv& d, const float* weight, const float* bias, float* out) {
  constexpr int64_t positions = Transform<m>::n * Transform<m>::n;
  Plan p{image, d, weight, bias, out, d.height + 2 * d.pad_h - 2, d.width + 2 * d.pad_w - 2, 0, 0, 0, nullptr};
  if (p.out_h < 1 || p.out_w < 1 || d.out_channels < 1) return;
  p.tiles_h = (p.out_h + m - 1) / m;
  p.tiles_w = (p.out_w + m - 1) / m;
  p.phase_w = p.tiles_w + 1;
  const int64_t O = d.out_channels, C = d.channels;
  float* U = grow(transformed_weight_buffer, positions * O * C);
  parallel_for(0, O, 1, [&](int64_t o0, int64_t o1) { transform_weights<m>(p, o0, o1, U); });
  p.U = U;
  // Bands of at least 256 tiles (the gemms' long side), whole tile rows.
  const int64_t rows_per_band = std::clamp<int64_t>((256 + p.tiles_w - 1) / p.tiles_w, 1, p.tiles_h);
  const int64_t bands = (p.tiles_h + rows_per_band - 1) / rows_per_band;
  auto band = [&](int64_t b) { run_band<m>(p, b * rows_per_band, std::min(p.tiles_h, (b + 1) * rows_per_band)); };
  if (bands >= 4 * num_threads() && !in_parallel_region()) {
    parallel_for(0, bands, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) band(b);
    });
  } else {
    for (int64_t b = 0; b < bands; ++b) band(b);
  }
}

// F(4x4) where its 36 planes of transformed weights (38 MB for 512 x 512 channels) and its
// larger transforms are paid back: one thread's time per call, F(4x4) / F(2x2), on VGG16's
// layers at 224, 112, 56 and 28 (min of alternating runs): 0.70, 0.70, 0.74, 1.30 with 8
// lanes (AVX2); 0.79, 1.03-1.06, 1.01-1.02, 1.23 with 16 (AVX-512, where the gemms are twice
// as fast and the transforms weigh more). So from 196 tiles of 4x4 per output channel (56x56)
// with 8 lanes, from 3136 (224x224) with 16.
bool large_tiles_pay(const DirectConv& d) {
  const int64_t out_h = d.height + 2 * d.pad_h - 2, out_w = d.width + 2 * d.pad_w - 2;
  return ((out_h + 3) / 4) * ((out_w + 3) / 4) >= (VW >= 16 ? 3136 : 196);
}

}  // namespace

bool winograd_pays(const DirectConv& d) {
  const int64_t out_h = d.height + 2 * d.pad_h - 2, out_w = d.width + 2 * d.pad_w - 2;
  // Measured on VGG16's layers (2 threads): 0.6-0.85 of the direct kernel's time from 64
  // channels at 224x224 down to 512 at 28x28; 1.35 at 14x14, where transforming 512x512
  // kernels costs more than 49 tiles save. Below 32 channels the gemms are too thin.
  return d.kernel_h == 3 && d.kernel_w == 3 && d.channels >= 32 && d.out_channels >= 32 &&
         ((out_h + 1) / 2) * ((out_w + 1) / 2) >= 100;
}

void conv3x3_winograd(const float* image, const DirectConv& d, const float* weight, const float* bias, float* out) {
  if (large_tiles_pay(d))
    winograd<4>(image, d, weight, bias, out);
  else
    winograd<2>(image, d, weight, bias, out);
}

}  // namespace tg::kernels
