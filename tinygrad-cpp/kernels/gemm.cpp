// gemm: C = alpha * op(A) * op(B) + beta * C.
//
// gemm_naive is the reference: three loops, obviously right, used by the tests.
//
// gemm is the fast path, the classic Goto/BLIS blocking. Each thread runs gemm_serial
// on its share of the problem (see gemm() at the bottom for how it is shared):
//
//   for each panel of K of depth KC:
//     pack op(B)[k0:k0+KC, 0:N] into slivers NR columns wide, k-major
//     for each block of MC rows of op(A):
//       pack op(A)[rows, k0:k0+KC] into slivers MR rows tall, k-major (alpha folded in);
//       with few B slivers to amortize it, whole A slivers are read where they lie instead
//       for each B sliver (stays in L1), for each A sliver of the block (in L2):
//         micro-kernel: an MR x NR block of C lives in registers while k runs 0..KC,
//         each step one broadcast of A per row, NR/VW vector loads of B, MR*NR/VW FMAs.
//
// Packing makes every inner-loop load contiguous and aligned, whatever the
// transposes; slivers are zero-padded at the edges, and edge tiles of C are written
// through a small buffer so the micro-kernel itself never branches.
// The vectors are GCC vector extensions (vector.h).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/kernels/vector.h"

namespace tg::kernels {

void gemm_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) {
        float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        sum += static_cast<double>(a) * b;
      }
      float old = beta == 0.f ? 0.f : beta * C[i * ldc + j];
      C[i * ldc + j] = alpha * static_cast<float>(sum) + old;
    }
  }
}

// Two vector accumulators, so consecutive adds do not wait for each other.
float sum(const float* values, int64_t n) {
  vfloat acc0{}, acc1{};
  int64_t k = 0;
  for (; k + 2 * VW <= n; k += 2 * VW) {
    acc0 += load_unaligned(values + k);
    acc1 += load_unaligned(values + k + VW);
  }
  float total = lane_sum(acc0 + acc1);
  for (; k < n; ++k) total += values[k];
  return total;
}

namespace {

constexpr int64_t MR = 6;        // rows of the register tile
constexpr int64_t NR = 2 * VW;   // columns of the register tile (two vectors)
constexpr int64_t KC = 256;      // depth of one packed panel
constexpr int64_t MC = 144;      // rows of A packed at once (a multiple of MR; MC x KC floats fit in L2)
constexpr int64_t kAInPlaceSlivers = 8;  // op(A) read in place when it meets at most this many B slivers

struct AlignedBuffer {
  float* data = nullptr;
  size_t capacity = 0;
  ~AlignedBuffer() { std::free(data); }
  float* get(size_t count) {
    if (count > capacity) {
      std::free(data);
      capacity = std::max(count, capacity * 2);
      data = static_cast<float*>(std::aligned_alloc(64, (capacity * sizeof(float) + 63) / 64 * 64));
      if (!data) throw std::bad_alloc();
    }
    return data;
  }
};

// op(A)[row, k] and op(B)[k, col], whatever the storage order.
inline float element_a(const float* A, int64_t lda, bool trans, int64_t row, int64_t k) {
  return trans ? A[k * lda + row] : A[row * lda + k];
}
inline float element_b(const float* B, int64_t ldb, bool trans, int64_t k, int64_t col) {
  return trans ? B[col * ldb + k] : B[k * ldb + col];
}

// Packs rows [row0, row0+MR) of op(A), depth [k0, k0+kc), as packed[k*MR + r], times alpha.
void pack_a_sliver(const float* A, int64_t lda, bool trans, int64_t M, int64_t row0, int64_t k0,
                   int64_t kc, float alpha, float* packed) {
  int64_t rows = std::min(MR, M - row0);
  if (rows == MR && trans) {  // op(A) row r is column row0+r of A: six neighbours in each row of A
    for (int64_t k = 0; k < kc; ++k) {
      const float* __restrict src = A + (k0 + k) * lda + row0;
      for (int64_t r = 0; r < MR; ++r) packed[k * MR + r] = alpha * src[r];
    }
    return;
  }
  if (rows == MR) {  // six rows of A, each read contiguously
    for (int64_t r = 0; r < MR; ++r) {
      const float* __restrict src = A + (row0 + r) * lda + k0;
      for (int64_t k = 0; k < kc; ++k) packed[k * MR + r] = alpha * src[k];
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    for (int64_t r = 0; r < MR; ++r)
      packed[k * MR + r] = r < rows ? alpha * element_a(A, lda, trans, row0 + r, k0 + k) : 0.f;
  }
}

// Packs columns [col0, col0+NR) of op(B), depth [k0, k0+kc), as packed[k*NR + c].
void pack_b_sliver(const float* B, int64_t ldb, bool trans, int64_t N, int64_t col0, int64_t k0,
                   int64_t kc, float* packed) {
  int64_t cols = std::min(NR, N - col0);
  if (!trans && cols == NR) {
    for (int64_t k = 0; k < kc; ++k) std::memcpy(packed + k * NR, B + (k0 + k) * ldb + col0, NR * sizeof(float));
    return;
  }
  if (trans) {  // column c of op(B) is row col0+c of B: read it contiguously
    for (int64_t c = 0; c < cols; ++c) {
      const float* row = B + (col0 + c) * ldb + k0;
      for (int64_t k = 0; k < kc; ++k) packed[k * NR + c] = row[k];
    }
    for (int64_t c = cols; c < NR; ++c)
      for (int64_t k = 0; k < kc; ++k) packed[k * NR + c] = 0.f;
    return;
  }
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t c = 0; c < NR; ++c)
      packed[k * NR + c] = c < cols ? element_b(B, ldb, trans, k0 + k, col0 + c) : 0.f;
}

// Where the micro-kernel reads its MR rows of op(A): a packed sliver (a[k*MR + r]), or A
// itself, with no copy: rows of A (a[r*lda + k]) or, transposed, columns (a[k*lda + r]).
struct PackedA {
  const float* a;
  float at(int64_t k, int64_t r) const { return a[k * MR + r]; }
};
struct RowsOfA {
  const float* a;
  int64_t lda;
  float at(int64_t k, int64_t r) const { return a[r * lda + k]; }
};
struct ColumnsOfA {
  const float* a;
  int64_t lda;
  float at(int64_t k, int64_t r) const { return a[k * lda + r]; }
};

// The micro-kernel: C[0:rows, 0:cols] += sum_k a(k, r) * b[k*NR + c] (or = with
// `store`: the first panel of a gemm with beta = 0 writes C without reading it), plus
// bias[r] when a bias is given (the first panel only).
// The MR x NR block of C lives in 12 vector registers while k runs; full tiles are added
// into C directly, edge tiles go through a small buffer. `Columns::One` is the tile of a
// last sliver of at most VW columns (a 10x10 map's N = 100 is three slivers and 4
// columns): only the first vector of B and the six accumulators it feeds, half the work,
// the same sums.
enum class Columns { Two, One };
template <Columns kColumns = Columns::Two, class AView>
inline void micro_kernel(int64_t kc, AView a, const float* __restrict b, float* __restrict C,
                         int64_t ldc, int64_t rows, int64_t cols, bool store, const float* bias) {
  vfloat c00{}, c01{}, c10{}, c11{}, c20{}, c21{}, c30{}, c31{}, c40{}, c41{}, c50{}, c51{};
  const vfloat negative_zero = -vfloat{};  // x + (-0) == x exactly, so the add folds into a broadcast
  for (int64_t k = 0; k < kc; ++k) {
    const vfloat b0 = *reinterpret_cast<const vfloat*>(b + k * NR);
    const vfloat b1 = *reinterpret_cast<const vfloat*>(b + k * NR + VW);
    constexpr bool two = kColumns == Columns::Two;
    vfloat a0 = negative_zero + a.at(k, 0);
    c00 += a0 * b0; if constexpr (two) c01 += a0 * b1;
    vfloat a1 = negative_zero + a.at(k, 1);
    c10 += a1 * b0; if constexpr (two) c11 += a1 * b1;
    vfloat a2 = negative_zero + a.at(k, 2);
    c20 += a2 * b0; if constexpr (two) c21 += a2 * b1;
    vfloat a3 = negative_zero + a.at(k, 3);
    c30 += a3 * b0; if constexpr (two) c31 += a3 * b1;
    vfloat a4 = negative_zero + a.at(k, 4);
    c40 += a4 * b0; if constexpr (two) c41 += a4 * b1;
    vfloat a5 = negative_zero + a.at(k, 5);
    c50 += a5 * b0; if constexpr (two) c51 += a5 * b1;
  }
  if (bias) {  // rows past `rows` are never written, so their bias is never read
    const vfloat b0 = negative_zero + bias[0], b1 = negative_zero + bias[rows > 1 ? 1 : 0];
    const vfloat b2 = negative_zero + bias[rows > 2 ? 2 : 0], b3 = negative_zero + bias[rows > 3 ? 3 : 0];
    const vfloat b4 = negative_zero + bias[rows > 4 ? 4 : 0], b5 = negative_zero + bias[rows > 5 ? 5 : 0];
    c00 += b0; c01 += b0; c10 += b1; c11 += b1; c20 += b2; c21 += b2;
    c30 += b3; c31 += b3; c40 += b4; c41 += b4; c50 += b5; c51 += b5;
  }
  if (rows == MR && cols == NR) {
    const vfloat sums[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int64_t r = 0; r < MR; ++r) {
      vfloat_unaligned* row = reinterpret_cast<vfloat_unaligned*>(C + r * ldc);
      if (store) {
        row[0] = sums[r][0];
        row[1] = sums[r][1];
      } else {
        row[0] += sums[r][0];
        row[1] += sums[r][1];
      }
    }
    return;
  }
  alignas(64) float tile[MR * NR];
  vfloat* out = reinterpret_cast<vfloat*>(tile);
  out[0] = c00; out[1] = c01; out[2] = c10; out[3] = c11; out[4] = c20; out[5] = c21;
  out[6] = c30; out[7] = c31; out[8] = c40; out[9] = c41; out[10] = c50; out[11] = c51;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) C[r * ldc + j] = (store ? 0.f : C[r * ldc + j]) + tile[r * NR + j];
}

// dot(a, b) over n floats. Four vector accumulators, so four FMAs are in flight at once
// instead of each waiting for the one before it (an FMA takes 4 cycles, 2 can start each cycle).
inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  auto load = load_unaligned;
  vfloat acc0{}, acc1{}, acc2{}, acc3{};
  int64_t k = 0;
  for (; k + 4 * VW <= n; k += 4 * VW) {
    acc0 += load(a + k) * load(b + k);
    acc1 += load(a + k + VW) * load(b + k + VW);
    acc2 += load(a + k + 2 * VW) * load(b + k + 2 * VW);
    acc3 += load(a + k + 3 * VW) * load(b + k + 3 * VW);
  }
  for (; k + VW <= n; k += VW) acc0 += load(a + k) * load(b + k);
  float sum = lane_sum((acc0 + acc1) + (acc2 + acc3));
  for (; k < n; ++k) sum += a[k] * b[k];
  return sum;
}

// Matrix-vector shaped products (a few rows of C): packing would cost more than the
// arithmetic, so read A and B in place. Rows of op(B) that are contiguous become axpy
// updates of C's row, four rows of B per pass over C; columns of op(B) that are rows of
// B become dot products.
void gemm_few_rows(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* __restrict c = C + i * ldc;
    auto a_at = [&](int64_t k) { return alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]); };
    if (!trans_b) {
      int64_t k = 0;
      for (; k + 4 <= K; k += 4) {
        const float a0 = a_at(k), a1 = a_at(k + 1), a2 = a_at(k + 2), a3 = a_at(k + 3);
        const float* __restrict b0 = B + k * ldb;
        const float* __restrict b1 = b0 + ldb;
        const float* __restrict b2 = b1 + ldb;
        const float* __restrict b3 = b2 + ldb;
        for (int64_t j = 0; j < N; ++j) c[j] += (a0 * b0[j] + a1 * b1[j]) + (a2 * b2[j] + a3 * b3[j]);
      }
      for (; k < K; ++k) {
        const float a = a_at(k);
        const float* __restrict b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      }
    } else if (!trans_a) {
      for (int64_t j = 0; j < N; ++j) c[j] += alpha * dot(A + i * lda, B + j * ldb, K);
    } else {
      for (int64_t j = 0; j < N; ++j) {
        float sum = 0.f;
        for (int64_t k = 0; k < K; ++k) sum += A[k * lda + i] * B[j * ldb + k];
        c[j] += alpha * sum;
      }
    }
  }
}

// Few columns of C (the convolutions on maps of 5x5 and smaller, N = positions <= 32): a
// weight matrix of up to millions of floats against a handful of columns. Packing it, as the
// blocked path does, would move every weight twice more for a few multiply-adds each, so
// both forms below read the weight once, in place, with vectors along its stored rows:
//   op(A) = A    (each row of A contiguous in k): every element of C is a dot product; four
//                rows of A (two with AVX2) against four columns of op(B), held as rows of bt
//                (N x K), at a time.
//   op(A) = A^T  (A stored K x M, each row contiguous in i): outer products; two vectors of i
//                against up to 12 columns of op(B) (6 with AVX2), rows of bk (K x N), k running
//                down A.
// Each element of C is summed by one thread in one fixed order, however the rows are shared.
// Where they take over: kGemmFewColumns (kernels.h).

// Writes alpha * value (+ bias) into C, or adds it (store: C's old value is never read).
inline void put(float* c, float value, float alpha, const float* bias, bool store) {
  const float v = alpha * value + (bias ? *bias : 0.f);
  *c = store ? v : *c + v;
}

// The register tiles: 16 accumulators with AVX-512's 32 registers, 8 with AVX2's 16.
constexpr int64_t kDotRows = VW >= 16 ? 4 : 2, kDotCols = 4;
constexpr int kOuterCols = VW >= 16 ? 12 : 6;

// The dot form's register tile: s[r][c] += a[r][0:kend] . b[c][0:kend], kend whole vectors.
// Each vector is loaded once and kept in a register, the accumulators in named variables (left
// to itself g++ reloads a vector for every multiply-add that reads it, or keeps an array of
// accumulators in memory, and the loop runs at half the speed or less).
inline void dot_tile(const float* const (&a)[kDotRows], const float* const (&b)[kDotCols], int64_t kend,
                     vfloat (&s)[kDotRows][kDotCols]) {
  vfloat s00 = s[0][0], s01 = s[0][1], s02 = s[0][2], s03 = s[0][3];
  vfloat s10 = s[1][0], s11 = s[1][1], s12 = s[1][2], s13 = s[1][3];
  if constexpr (kDotRows == 4) {
    vfloat s20 = s[2][0], s21 = s[2][1], s22 = s[2][2], s23 = s[2][3];
    vfloat s30 = s[3][0], s31 = s[3][1], s32 = s[3][2], s33 = s[3][3];
    for (int64_t k = 0; k < kend; k += VW) {
      vfloat v0 = load_unaligned(b[0] + k), v1 = load_unaligned(b[1] + k);
      vfloat v2 = load_unaligned(b[2] + k), v3 = load_unaligned(b[3] + k);
      keep_in_register(v0), keep_in_register(v1), keep_in_register(v2), keep_in_register(v3);
      vfloat u0 = load_unaligned(a[0] + k), u1 = load_unaligned(a[1] + k);
      vfloat u2 = load_unaligned(a[2] + k), u3 = load_unaligned(a[3] + k);
      keep_in_register(u0), keep_in_register(u1), keep_in_register(u2), keep_in_register(u3);
      s00 += u0 * v0; s01 += u0 * v1; s02 += u0 * v2; s03 += u0 * v3;
      s10 += u1 * v0; s11 += u1 * v1; s12 += u1 * v2; s13 += u1 * v3;
      s20 += u2 * v0; s21 += u2 * v1; s22 += u2 * v2; s23 += u2 * v3;
      s30 += u3 * v0; s31 += u3 * v1; s32 += u3 * v2; s33 += u3 * v3;
    }
    s[2][0] = s20; s[2][1] = s21; s[2][2] = s22; s[2][3] = s23;
    s[3][0] = s30; s[3][1] = s31; s[3][2] = s32; s[3][3] = s33;
  } else {
    for (int64_t k = 0; k < kend; k += VW) {
      vfloat v0 = load_unaligned(b[0] + k), v1 = load_unaligned(b[1] + k);
      vfloat v2 = load_unaligned(b[2] + k), v3 = load_unaligned(b[3] + k);
      keep_in_register(v0), keep_in_register(v1), keep_in_register(v2), keep_in_register(v3);
      vfloat u0 = load_unaligned(a[0] + k), u1 = load_unaligned(a[1] + k);
      keep_in_register(u0), keep_in_register(u1);
      s00 += u0 * v0; s01 += u0 * v1; s02 += u0 * v2; s03 += u0 * v3;
      s10 += u1 * v0; s11 += u1 * v1; s12 += u1 * v2; s13 += u1 * v3;
    }
  }
  s[0][0] = s00; s[0][1] = s01; s[0][2] = s02; s[0][3] = s03;
  s[1][0] = s10; s[1][1] = s11; s[1][2] = s12; s[1][3] = s13;
}

// Rows [row_begin, row_end) of C = alpha * A bt^T, A rows contiguous (lda), bt rows contiguous
// (ldbt): four rows of A against four rows of bt at a time, over all of K (the four rows of A
// stay in L1 while the column blocks pass over them; bt, at most 32 rows, stays in L2).
void few_columns_dot(int64_t row_begin, int64_t row_end, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* bt, int64_t ldbt, float* C, int64_t ldc, bool store,
                     const float* row_bias) {
  constexpr int64_t R = kDotRows, J = kDotCols;
  const int64_t k_vectors = K / VW * VW;
  for (int64_t i0 = row_begin; i0 < row_end; i0 += R) {
    const int64_t rows = std::min(R, row_end - i0);
    const float* a[R];
    for (int64_t r = 0; r < R; ++r) a[r] = A + (i0 + std::min(r, rows - 1)) * lda;  // extra rows repeat the last
    for (int64_t j0 = 0; j0 < N; j0 += J) {
      const int64_t cols = std::min(J, N - j0);
      const float* b[J];
      for (int64_t c = 0; c < J; ++c) b[c] = bt + (j0 + std::min(c, cols - 1)) * ldbt;  // and columns too
      vfloat sums[R][J] = {};
      dot_tile(a, b, k_vectors, sums);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          float total = lane_sum(sums[r][c]);
          for (int64_t k = k_vectors; k < K; ++k) total += a[r][k] * b[c][k];
          put(C + (i0 + r) * ldc + j0 + c, total, alpha, row_bias ? row_bias + i0 + r : nullptr, store);
        }
    }
  }
}

// acc[j] = op(A)[i0 : i0 + 2 VW, :] times column j0 + j of op(B), for J columns.
template <int J>
void few_columns_outer_tile(int64_t K, const float* A, int64_t lda, int64_t i0, const float* bk, int64_t ldbk,
                            int64_t j0, vfloat (&acc)[kOuterCols][2]) {
  const vfloat negative_zero = -vfloat{};
  vfloat sum[J][2] = {};
  for (int64_t k = 0; k < K; ++k) {
    vfloat a0 = load_unaligned(A + k * lda + i0), a1 = load_unaligned(A + k * lda + i0 + VW);
    keep_in_register(a0);  // see dot_tile
    keep_in_register(a1);
    const float* b = bk + k * ldbk + j0;
#pragma GCC unroll 12
    for (int j = 0; j < J; ++j) {
      const vfloat bj = negative_zero + b[j];
      sum[j][0] += a0 * bj;
      sum[j][1] += a1 * bj;
    }
  }
  for (int j = 0; j < J; ++j) {
    acc[j][0] = sum[j][0];
    acc[j][1] = sum[j][1];
  }
}

// few_columns_outer_tile<cols>, cols from 1 to kOuterCols.
template <int J = 1>
void outer_tile_of_width(int64_t cols, int64_t K, const float* A, int64_t lda, int64_t i0, const float* bk,
                         int64_t ldbk, int64_t j0, vfloat (&acc)[kOuterCols][2]) {
  if constexpr (J < kOuterCols) {
    if (cols > J) return outer_tile_of_width<J + 1>(cols, K, A, lda, i0, bk, ldbk, j0, acc);
  }
  few_columns_outer_tile<J>(K, A, lda, i0, bk, ldbk, j0, acc);
}

// Rows [row_begin, row_end) of C = alpha * A^T bk, A stored K x M (lda), bk K x N (ldbk).
void few_columns_outer(int64_t row_begin, int64_t row_end, int64_t N, int64_t K, float alpha, const float* A,
                       int64_t lda, const float* bk, int64_t ldbk, float* C, int64_t ldc, bool store,
                       const float* row_bias) {
  constexpr int64_t I = 2 * VW;
  int64_t i0 = row_begin;
  for (; i0 + I <= row_end; i0 += I) {
    // Columns in as few blocks of at most kOuterCols as there can be, of equal width: each
    // block passes over this slice of A once more (from L1/L2), a narrow last one would waste it.
    const int64_t blocks = (N + kOuterCols - 1) / kOuterCols, width = (N + blocks - 1) / blocks;
    for (int64_t j0 = 0; j0 < N; j0 += width) {
      const int64_t cols = std::min(width, N - j0);
      vfloat acc[kOuterCols][2];
      outer_tile_of_width(cols, K, A, lda, i0, bk, ldbk, j0, acc);
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t i = 0; i < I; ++i)
          put(C + (i0 + i) * ldc + j0 + j, acc[j][i / VW][i % VW], alpha, row_bias ? row_bias + i0 + i : nullptr, store);
    }
  }
  for (; i0 < row_end; ++i0)  // the last rows, fewer than two vectors
    for (int64_t j = 0; j < N; ++j) {
      float total = 0.f;
      for (int64_t k = 0; k < K; ++k) total += A[k * lda + i0] * bk[k * ldbk + j];
      put(C + i0 * ldc + j, total, alpha, row_bias ? row_bias + i0 : nullptr, store);
    }
}

// C = alpha op(A) op(B) (+ bias) for few columns, the rows shared between the threads.
void gemm_few_columns(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                      int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool store,
                      const float* row_bias) {
  // The dot form wants op(B)'s columns contiguous (rows of B when transposed), the outer form
  // its rows (rows of B when not): otherwise op(B) (at most 32 x K floats) is copied once.
  static thread_local AlignedBuffer b_copy;
  const float* b = B;
  int64_t ldb_used = ldb;
  if (!trans_a && !trans_b) {
    float* bt = b_copy.get(static_cast<size_t>(N * K));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) bt[j * K + k] = B[k * ldb + j];
    b = bt;
    ldb_used = K;
  } else if (trans_a && trans_b) {
    float* bk = b_copy.get(static_cast<size_t>(N * K));
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k) bk[k * N + j] = B[j * ldb + k];
    b = bk;
    ldb_used = N;
  }
  auto rows = [&](int64_t begin, int64_t end) {
    if (trans_a)
      few_columns_outer(begin, end, N, K, alpha, A, lda, b, ldb_used, C, ldc, store, row_bias);
    else
      few_columns_dot(begin, end, N, K, alpha, A, lda, b, ldb_used, C, ldc, store, row_bias);
  };
  // Shared by blocks of two vectors of rows when the weight is worth two cores' reading.
  const int64_t block = 2 * VW, blocks = (M + block - 1) / block;
  if (num_threads() > 1 && M * K >= (int64_t{1} << 16) && blocks >= 2 && !in_parallel_region())
    parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) { rows(lo * block, std::min(M, hi * block)); });
  else
    rows(0, M);
}

// C += each partial product of a split-K run, in K order, so the sum is the same every run
// (chunks that got no work left their partial empty).
void add_partials(const std::vector<std::vector<float>>& partials, int64_t M, int64_t N, float* C, int64_t ldc) {
  for (const std::vector<float>& partial : partials) {
    if (partial.empty()) continue;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += partial[i * N + j];
  }
}

// The serial engine: C[M,N] += op(A) op(B) for one block of the problem (C = with
// `overwrite`: C's old values are never read), blocked for the caches: MC rows of A in L2,
// one KC x NR sliver of B in L1 across them. Each sliver of B is packed just before its
// first use, while it is in L1; when all of op(A) is one block (the 1x1 convolutions:
// few rows, very many columns) one sliver's buffer is all there is, so the packed panel
// never makes a round trip through memory.
void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool overwrite,
                 const float* row_bias = nullptr) {
  static thread_local AlignedBuffer a_buffer, b_buffer;
  const int64_t b_slivers = (N + NR - 1) / NR;
  const bool one_block = M <= MC;
  // Packing op(A) pays when each A sliver meets many B slivers; with few (a 1x1 convolution
  // on a 10x10 map: N = 100, four slivers) the micro-kernel reads whole A slivers where
  // they lie. The same products are added in the same order, so the bits are the same.
  const bool a_in_place = alpha == 1.f && b_slivers <= kAInPlaceSlivers;
  auto read_in_place = [&](int64_t row0) { return a_in_place && row0 + MR <= M; };  // edge slivers are packed
  float* packed_b = b_buffer.get(static_cast<size_t>((one_block ? 1 : b_slivers) * NR * KC));
  float* packed_a = a_buffer.get(static_cast<size_t>(MC * KC));
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    const bool store = overwrite && k0 == 0;
    const bool first_panel = k0 == 0;
    for (int64_t i0 = 0; i0 < M; i0 += MC) {
      const int64_t mc = std::min(MC, M - i0);
      const int64_t a_slivers = (mc + MR - 1) / MR;
      for (int64_t s = 0; s < a_slivers; ++s)
        if (!read_in_place(i0 + s * MR))
          pack_a_sliver(A, lda, trans_a, M, i0 + s * MR, k0, kc, alpha, packed_a + s * MR * kc);
      for (int64_t bs = 0; bs < b_slivers; ++bs) {
        const int64_t col0 = bs * NR, cols = std::min(NR, N - col0);
        float* sliver = one_block ? packed_b : packed_b + bs * NR * kc;
        if (i0 == 0) pack_b_sliver(B, ldb, trans_b, N, col0, k0, kc, sliver);
        for (int64_t as = 0; as < a_slivers; ++as) {
          const int64_t row0 = i0 + as * MR, rows = std::min(MR, M - row0);
          float* c = C + row0 * ldc + col0;
          const float* bias = row_bias && first_panel ? row_bias + row0 : nullptr;
          auto tile = [&](auto a_view) {
            if (cols <= VW) micro_kernel<Columns::One>(kc, a_view, sliver, c, ldc, rows, cols, store, bias);
            else micro_kernel(kc, a_view, sliver, c, ldc, rows, cols, store, bias);
          };
          if (read_in_place(row0) && trans_a) tile(ColumnsOfA{A + k0 * lda + row0, lda});
          else if (read_in_place(row0)) tile(RowsOfA{A + row0 * lda + k0, lda});
          else tile(PackedA{packed_a + as * MR * kc});
        }
      }
    }
  }
}

}  // namespace

// How the threads share the work, with one parallel_for per call:
//   - one or two rows of C (gemm_few_rows) and few columns (gemm_few_columns): above, each
//     reads the large operand in place, shared by its stored rows;
//   - many column slivers (and no more rows than columns, or one block of rows): each
//     thread takes a range of columns of C;
//   - few columns but a long K (weight gradients: K = batch x positions): each thread
//     takes a range of K into a private C, and the partial products are summed;
//   - otherwise: each thread takes a range of rows of C.
namespace {
// Whether gemm takes the few-columns path (kernels.h: where each form stops winning).
bool gemm_takes_few_columns(int64_t N, int64_t K) { return N <= kGemmFewColumns && K >= VW; }

// Which paths gemm_any may take: any, or the blocked one whatever the shape (gemm_blocked).
enum class Paths { Any, BlockedOnly };

void gemm_any(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* row_bias,
              Paths paths) {
  if (M <= 0 || N <= 0) return;
  // The paths that do not take the bias into their tiles add it afterwards.
  auto add_row_bias = [&] {
    if (row_bias)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += row_bias[i];
  };
  // With beta = 0 the blocked paths write C on their first panel, never reading it; the
  // others need C cleared first. Any other beta scales C once; the blocks add into it.
  const bool overwrite = beta == 0.f && K > 0 && alpha != 0.f;
  auto clear_c = [&] {
    for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.f);
  };
  if (beta == 0.f && !overwrite) clear_c();
  if (beta != 0.f && beta != 1.f)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] *= beta;
  if (K <= 0 || alpha == 0.f) {
    add_row_bias();
    return;
  }

  const int64_t threads = num_threads();
  if (M <= 2) {
    if (overwrite) clear_c();
    // One or two rows (a linear layer on one image) only stream B through once: memory
    // bound, so a big B is worth splitting between the threads, each reading its own part.
    // B is split by its stored rows either way (columns of op(B) when transposed, the K
    // range when not), so a weight matrix W used as W^T forward and as W backward is read
    // in the same halves by the same threads and can stay in each core's cache.
    if (threads > 1 && N * K >= (int64_t{1} << 17) && !in_parallel_region()) {
      if (trans_b && N >= 128) {
        parallel_for(0, (N + 63) / 64, 1, [&](int64_t lo, int64_t hi) {
          const int64_t col0 = lo * 64, cols = std::min(N, hi * 64) - col0;
          gemm_few_rows(trans_a, trans_b, M, cols, K, alpha, A, lda, B + col0 * ldb, ldb, C + col0, ldc);
        });
        add_row_bias();
        return;
      }
      if (!trans_b && K >= 128) {
        const int64_t blocks = (K + 63) / 64;
        std::vector<std::vector<float>> partials(static_cast<size_t>(blocks));  // one per chunk, at its first block
        parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
          const int64_t k0 = lo * 64, kc = std::min(K, hi * 64) - k0;
          std::vector<float>& partial = partials[static_cast<size_t>(lo)];
          partial.assign(static_cast<size_t>(M * N), 0.f);
          gemm_few_rows(trans_a, false, M, N, kc, alpha, trans_a ? A + k0 * lda : A + k0, lda, B + k0 * ldb, ldb,
                        partial.data(), N);
        });
        add_partials(partials, M, N, C, ldc);
        add_row_bias();
        return;
      }
    }
    gemm_few_rows(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, C, ldc);
    add_row_bias();
    return;
  }
  if (paths == Paths::Any && gemm_takes_few_columns(N, K)) {
    gemm_few_columns(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, C, ldc, overwrite, row_bias);
    return;
  }
  const int64_t flops = M * N * K;
  const int64_t b_slivers = (N + NR - 1) / NR, a_slivers = (M + MR - 1) / MR;
  // Below a few million multiply-adds a second thread costs more than it saves.
  if (threads == 1 || flops < (int64_t{1} << 22) || in_parallel_region()) {
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, C, ldc, overwrite, row_bias);
    return;
  }
  // Sharing columns makes every thread pack all of op(A), sharing rows all of op(B): with
  // more rows than columns (1x1 convolutions on small maps: 960 x 100) rows pack less,
  // unless op(A) is a single block anyway.
  const bool rows_pack_less = M > N && M > MC && a_slivers >= 2 * threads;
  if (!rows_pack_less && (b_slivers >= 2 * threads || (b_slivers >= threads && b_slivers >= a_slivers))) {
    parallel_for(0, b_slivers, 1, [&](int64_t lo, int64_t hi) {
      const int64_t col0 = lo * NR, cols = std::min(N, hi * NR) - col0;
      gemm_serial(trans_a, trans_b, M, cols, K, alpha, A, lda, trans_b ? B + col0 * ldb : B + col0, ldb, C + col0, ldc,
                  overwrite, row_bias);
    });
    return;
  }
  if (K >= 8 * KC && K >= 4 * std::max(M, N)) {
    if (overwrite) clear_c();
    const int64_t panels = (K + KC - 1) / KC;
    std::vector<std::vector<float>> partials(static_cast<size_t>(panels));  // one per chunk, at its first panel
    parallel_for(0, panels, 1, [&](int64_t lo, int64_t hi) {
      const int64_t k0 = lo * KC, kc = std::min(K, hi * KC) - k0;
      std::vector<float>& partial = partials[static_cast<size_t>(lo)];
      partial.assign(static_cast<size_t>(M * N), 0.f);
      gemm_serial(trans_a, trans_b, M, N, kc, alpha, trans_a ? A + k0 * lda : A + k0, lda,
                  trans_b ? B + k0 : B + k0 * ldb, ldb, partial.data(), N, false);
    });
    add_partials(partials, M, N, C, ldc);
    add_row_bias();
    return;
  }
  parallel_for(0, a_slivers, 1, [&](int64_t lo, int64_t hi) {
    const int64_t row0 = lo * MR, rows = std::min(M, hi * MR) - row0;
    gemm_serial(trans_a, trans_b, rows, N, K, alpha, trans_a ? A + row0 : A + row0 * lda, lda, B, ldb, C + row0 * ldc, ldc,
                overwrite, row_bias ? row_bias + row0 : nullptr);
  });
}
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* row_bias) {
  gemm_any(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, row_bias, Paths::Any);
}

void gemm_blocked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* row_bias) {
  gemm_any(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, row_bias, Paths::BlockedOnly);
}

}  // namespace tg::kernels
