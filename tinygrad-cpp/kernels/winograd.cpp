// conv3x3_winograd: a 3x3 convolution with stride 1 by Winograd's minimal filtering
// F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
// Same result as conv2d_stride1 (up to rounding); fewer multiplications.
//
// Each 2x2 block of outputs ("tile") of one output channel needs, the direct way, 4 x 9 = 36
// multiply-adds per input channel. Winograd's way moves the tile's 4x4 input patch d and the
// 3x3 kernel g into a 4x4 "transformed" space where the convolution is an elementwise product:
//
//     Y = A^T [ (G g G^T) .* (B^T d B) ] A        with  U = G g G^T,  V = B^T d B
//
//     B^T = | 1  0 -1  0 |     G = | 1    0    0   |     A^T = | 1  1  1  0 |
//           | 0  1  1  0 |         | 1/2  1/2  1/2 |           | 0  1 -1 -1 |
//           | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//           | 0  1  0 -1 |         | 0    0    1   |
//
// Summed over input channels, the product at each of the 16 positions xi of the 4x4 space is
// a matrix product, M_xi [O, tiles] = U_xi [O, C] V_xi [C, tiles]: 16 gemms of 16 multiply-adds
// per tile, against 36 the direct way (2.25 times fewer). The transforms are additions only.
//
// Steps, for one band of tile rows at a time (so its V and M stay in cache):
//   1. U_xi[o][c] for every (o, c): once per call (weights are read through strides, as
//      conv2d_stride1 reads them, so the input gradient's flipped, transposed weight works too);
//   2. V_xi[c][t]: each input row split into its even and odd columns, so that the 4 columns
//      of tile t are even[t], odd[t], even[t+1], odd[t+1] and the transform runs over whole
//      vectors of tiles;
//   3. the 16 gemms;
//   4. Y from M_xi, plus the bias, written where the output has room (an odd last row or
//      column uses half a tile).
#include <algorithm>
#include <vector>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/kernels/vector.h"

namespace tg::kernels {
namespace {

constexpr int64_t kPositions = 16;  // the 4x4 transformed space

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
  int64_t half_w;  // columns of the even/odd halves of a zero-bordered input row: tiles_w + 1
  const float* U;  // [16][O][C]
};

// Step 1: U = G g G^T for output channels [o0, o1), VW input channels at a time.
void transform_weights(const Plan& p, int64_t o0, int64_t o1, float* U) {
  const DirectConv& d = p.d;
  const int64_t O = d.out_channels, C = d.channels;
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t c0 = 0; c0 < C; c0 += VW) {
      const int64_t lanes = std::min(VW, C - c0);
      vfloat g[3][3], Gg[4][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
          const float* w = p.weight + o * d.out_stride + c0 * d.in_stride + i * d.row_stride + j * d.col_stride;
          g[i][j] = vfloat{};
          for (int64_t lane = 0; lane < lanes; ++lane) g[i][j][lane] = w[lane * d.in_stride];
        }
      for (int j = 0; j < 3; ++j) {  // G g: rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2
        Gg[0][j] = g[0][j];
        Gg[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        Gg[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        Gg[3][j] = g[2][j];
      }
      for (int a = 0; a < 4; ++a) {  // (G g) G^T: the same on columns
        const vfloat u[4] = {Gg[a][0], 0.5f * (Gg[a][0] + Gg[a][1] + Gg[a][2]), 0.5f * (Gg[a][0] - Gg[a][1] + Gg[a][2]),
                             Gg[a][2]};
        for (int b = 0; b < 4; ++b) {
          float* dst = U + (a * 4 + b) * O * C + o * C + c0;
          if (lanes == VW) {
            store_unaligned(dst, u[b]);
          } else {
            for (int64_t lane = 0; lane < lanes; ++lane) dst[lane] = u[b][lane];
          }
        }
      }
    }
}

// even[i] = row[2i], odd[i] = row[2i + 1] for i < n; row holds 2n + 2VW floats.
void split_even_odd(const float* row, int64_t n, float* even, float* odd) {
  int64_t i = 0;
  for (; i + VW <= n; i += VW) {
    const vfloat a = load_unaligned(row + 2 * i), b = load_unaligned(row + 2 * i + VW);
    store_unaligned(even + i, even_lanes(a, b));
    store_unaligned(odd + i, odd_lanes(a, b));
  }
  for (; i < n; ++i) {
    even[i] = row[2 * i];
    odd[i] = row[2 * i + 1];
  }
}

// Step 2 for channels [c0, c1) and tile rows [ty0, ty1): V [16][C][band tiles].
void transform_input(const Plan& p, int64_t ty0, int64_t ty1, int64_t c0, int64_t c1, float* V) {
  const DirectConv& d = p.d;
  const int64_t band = (ty1 - ty0) * p.tiles_w, H = p.half_w;
  // rows[k] = input row 2ty - pad_h + k as even columns [0, H) then odd ones [H, 2H), the
  // column x of the zero-bordered row being input column x - pad_w.
  float* rows = grow(row_buffer, 4 * 2 * H + 2 * H + 2 * VW);
  float* padded = rows + 4 * 2 * H;
  for (int64_t c = c0; c < c1; ++c) {
    const float* plane = p.image + c * d.height * d.width;
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      for (int k = 0; k < 4; ++k) {
        float* even = rows + k * 2 * H;
        const int64_t y = 2 * ty - d.pad_h + k;
        if (y < 0 || y >= d.height) {
          std::fill(even, even + 2 * H, 0.f);
          continue;
        }
        // the zero-bordered row (column x is input column x - pad_w), then its halves
        std::fill(padded, padded + d.pad_w, 0.f);
        std::copy_n(plane + y * d.width, d.width, padded + d.pad_w);
        std::fill(padded + d.pad_w + d.width, padded + 2 * H + 2 * VW, 0.f);
        split_even_odd(padded, H, even, even + H);
      }
      // B^T d on the rows: r0 = d0 - d2, r1 = d1 + d2, r2 = d2 - d1, r3 = d1 - d3
      float* r[4] = {rows, rows + 2 * H, rows + 4 * H, rows + 6 * H};
      for (int64_t x = 0; x < 2 * H; ++x) {
        const float d0 = r[0][x], d1 = r[1][x], d2 = r[2][x], d3 = r[3][x];
        r[0][x] = d0 - d2;
        r[1][x] = d1 + d2;
        r[2][x] = d2 - d1;
        r[3][x] = d1 - d3;
      }
      // (B^T d) B on the columns of each tile t: e[t] - e[t+1], o[t] + e[t+1], e[t+1] - o[t], o[t] - o[t+1]
      const int64_t t0 = (ty - ty0) * p.tiles_w;
      for (int a = 0; a < 4; ++a) {
        const float* __restrict e = r[a];
        const float* __restrict o = r[a] + H;
        float* __restrict v0 = V + ((a * 4 + 0) * d.channels + c) * band + t0;
        float* __restrict v1 = V + ((a * 4 + 1) * d.channels + c) * band + t0;
        float* __restrict v2 = V + ((a * 4 + 2) * d.channels + c) * band + t0;
        float* __restrict v3 = V + ((a * 4 + 3) * d.channels + c) * band + t0;
        for (int64_t t = 0; t < p.tiles_w; ++t) {
          v0[t] = e[t] - e[t + 1];
          v1[t] = o[t] + e[t + 1];
          v2[t] = e[t + 1] - o[t];
          v3[t] = o[t] - o[t + 1];
        }
      }
    }
  }
}

// Step 4 for output channels [o0, o1) and tile rows [ty0, ty1), from M [16][O][band tiles]:
// A^T m on the rows (s0 = m0 + m1 + m2, s1 = m1 - m2 - m3), then the same on the columns.
void transform_output(const Plan& p, int64_t ty0, int64_t ty1, int64_t o0, int64_t o1, const float* M) {
  const DirectConv& d = p.d;
  const int64_t band = (ty1 - ty0) * p.tiles_w, pairs = p.out_w / 2;
  for (int64_t o = o0; o < o1; ++o) {
    const float bias = p.bias ? p.bias[o] : 0.f;
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      const float* m[4][4];
      for (int a = 0; a < 4; ++a)
        for (int col = 0; col < 4; ++col) m[a][col] = M + ((a * 4 + col) * d.out_channels + o) * band + (ty - ty0) * p.tiles_w;
      float* __restrict top = p.out + (o * p.out_h + 2 * ty) * p.out_w;
      float* __restrict bottom = 2 * ty + 1 < p.out_h ? top + p.out_w : nullptr;
      auto tile = [&](int64_t t, float y[2][2]) {
        float s0[4], s1[4];
        for (int col = 0; col < 4; ++col) {
          s0[col] = m[0][col][t] + m[1][col][t] + m[2][col][t];
          s1[col] = m[1][col][t] - m[2][col][t] - m[3][col][t];
        }
        y[0][0] = bias + s0[0] + s0[1] + s0[2];
        y[0][1] = bias + s0[1] - s0[2] - s0[3];
        y[1][0] = bias + s1[0] + s1[1] + s1[2];
        y[1][1] = bias + s1[1] - s1[2] - s1[3];
      };
      // VW tiles at a time: the same sums on vectors, then even and odd columns interleaved.
      int64_t t = 0;
      for (; t + VW <= pairs; t += VW) {
        vfloat s0[4], s1[4];
        for (int col = 0; col < 4; ++col) {
          const vfloat m1 = load_unaligned(m[1][col] + t), m2 = load_unaligned(m[2][col] + t);
          s0[col] = load_unaligned(m[0][col] + t) + m1 + m2;
          s1[col] = m1 - m2 - load_unaligned(m[3][col] + t);
        }
        const vfloat y00 = bias + s0[0] + s0[1] + s0[2], y01 = bias + s0[1] - s0[2] - s0[3];
        store_unaligned(top + 2 * t, zip_low(y00, y01));
        store_unaligned(top + 2 * t + VW, zip_high(y00, y01));
        if (bottom) {
          const vfloat y10 = bias + s1[0] + s1[1] + s1[2], y11 = bias + s1[1] - s1[2] - s1[3];
          store_unaligned(bottom + 2 * t, zip_low(y10, y11));
          store_unaligned(bottom + 2 * t + VW, zip_high(y10, y11));
        }
      }
      for (; t < pairs; ++t) {
        float y[2][2];
        tile(t, y);
        top[2 * t] = y[0][0];
        top[2 * t + 1] = y[0][1];
        if (bottom) {
          bottom[2 * t] = y[1][0];
          bottom[2 * t + 1] = y[1][1];
        }
      }
      if (p.out_w % 2) {  // the last tile's left column only
        float y[2][2];
        tile(pairs, y);
        top[2 * pairs] = y[0][0];
        if (bottom) bottom[2 * pairs] = y[1][0];
      }
    }
  }
}

// Steps 2-4 for tile rows [ty0, ty1). Inside a parallel region every loop runs on the
// calling thread; otherwise each step shares its loop among the threads.
void run_band(const Plan& p, int64_t ty0, int64_t ty1) {
  const DirectConv& d = p.d;
  const int64_t band = (ty1 - ty0) * p.tiles_w, C = d.channels, O = d.out_channels;
  float* V = grow(input_buffer, kPositions * C * band);
  float* M = grow(product_buffer, kPositions * O * band);
  parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) { transform_input(p, ty0, ty1, c0, c1, V); });
  const bool serial = in_parallel_region() || num_threads() == 1;
  if (serial || O * band * C < (int64_t{1} << 21)) {
    parallel_for(0, kPositions, 1, [&](int64_t x0, int64_t x1) {
      for (int64_t xi = x0; xi < x1; ++xi)
        gemm(false, false, O, band, C, 1.f, p.U + xi * O * C, C, V + xi * C * band, band, 0.f, M + xi * O * band, band);
    });
  } else {
    for (int64_t xi = 0; xi < kPositions; ++xi)  // each gemm shares itself among the threads
      gemm(false, false, O, band, C, 1.f, p.U + xi * O * C, C, V + xi * C * band, band, 0.f, M + xi * O * band, band);
  }
  parallel_for(0, O, 1, [&](int64_t o0, int64_t o1) { transform_output(p, ty0, ty1, o0, o1, M); });
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
  Plan p{image, d, weight, bias, out, d.height + 2 * d.pad_h - 2, d.width + 2 * d.pad_w - 2, 0, 0, 0, nullptr};
  if (p.out_h < 1 || p.out_w < 1 || d.out_channels < 1) return;
  p.tiles_h = (p.out_h + 1) / 2;
  p.tiles_w = (p.out_w + 1) / 2;
  p.half_w = p.tiles_w + 1;
  const int64_t O = d.out_channels, C = d.channels;
  float* U = grow(transformed_weight_buffer, kPositions * O * C);
  parallel_for(0, O, 1, [&](int64_t o0, int64_t o1) { transform_weights(p, o0, o1, U); });
  p.U = U;
  // Bands of at least 256 tiles (the gemms' long side), whole tile rows.
  const int64_t rows_per_band = std::clamp<int64_t>((256 + p.tiles_w - 1) / p.tiles_w, 1, p.tiles_h);
  const int64_t bands = (p.tiles_h + rows_per_band - 1) / rows_per_band;
  auto band = [&](int64_t b) { run_band(p, b * rows_per_band, std::min(p.tiles_h, (b + 1) * rows_per_band)); };
  if (bands >= 4 * num_threads() && !in_parallel_region()) {
    parallel_for(0, bands, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) band(b);
    });
  } else {
    for (int64_t b = 0; b < bands; ++b) band(b);
  }
}

}  // namespace tg::kernels
