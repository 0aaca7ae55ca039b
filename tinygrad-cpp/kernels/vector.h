// The vector type the fast kernels are written in: GCC vector extensions, which the
// compiler turns into AVX-512, AVX2 or SSE instructions for the machine the project is
// built on (-march=native). VW is the number of floats in one register.
// The library is also built by clang++ (`make fuzz`, which CI runs), so only builtins both
// compilers know belong here: g++'s own __builtin_shuffle is not one of them.
#pragma once

#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace tg::kernels {

#if defined(__AVX512F__)
constexpr int64_t VW = 16;
#elif defined(__AVX__)
constexpr int64_t VW = 8;
#else
constexpr int64_t VW = 4;
#endif
typedef float vfloat __attribute__((vector_size(VW * sizeof(float))));                      // aligned to its size
typedef float vfloat_unaligned __attribute__((vector_size(VW * sizeof(float)), aligned(4)));  // any float address

inline vfloat load_unaligned(const float* p) { return *reinterpret_cast<const vfloat_unaligned*>(p); }
inline void store_unaligned(float* p, vfloat v) { *reinterpret_cast<vfloat_unaligned*>(p) = v; }

// The sum of a vector's lanes, first to last (the same order every run).
inline float lane_sum(vfloat v) {
  float total = 0.f;
  for (int64_t lane = 0; lane < VW; ++lane) total += v[lane];
  return total;
}

// Tells the compiler this value lives in a vector register from here on, so it is used
// there instead of being loaded again from memory for every multiply-add that reads it (g++
// 12 does that in loops with many accumulators, doubling their loads).
inline void keep_in_register(vfloat& v) {
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// dst[0:n) = src[0:n) for the short rows the kernels copy (an image row of 7 to 64 floats):
// whole vectors, then one masked move, where a call to memmove would cost more than the copy.
inline void copy_floats(float* __restrict dst, const float* __restrict src, int64_t n) {
  int64_t i = 0;
  for (; i + VW <= n; i += VW) store_unaligned(dst + i, load_unaligned(src + i));
  if (i == n) return;
#if defined(__AVX512F__)
  const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1u);
  _mm512_mask_storeu_ps(dst + i, mask, _mm512_maskz_loadu_ps(mask, src + i));
#elif defined(__AVX2__)
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  _mm256_maskstore_ps(dst + i, mask, _mm256_maskload_ps(src + i, mask));
#else
  for (; i < n; ++i) dst[i] = src[i];
#endif
}

// Shuffles across the pair (a, b), in the builtin that both g++ (12 and later) and clang++
// know; its lane numbers must be constants, hence one line per register width.
// even_lanes: a0 a2 ... b0 b2 ...   odd_lanes: a1 a3 ... b1 b3 ...
// zip_low: a0 b0 a1 b1 ... (the first halves)   zip_high: the same for the second halves.
#if defined(__AVX512F__)
inline vfloat even_lanes(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30); }
inline vfloat odd_lanes(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31); }
inline vfloat zip_low(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23); }
inline vfloat zip_high(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31); }
#elif defined(__AVX__)
inline vfloat even_lanes(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14); }
inline vfloat odd_lanes(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15); }
inline vfloat zip_low(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11); }
inline vfloat zip_high(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15); }
#else
inline vfloat even_lanes(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 0, 2, 4, 6); }
inline vfloat odd_lanes(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 1, 3, 5, 7); }
inline vfloat zip_low(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 0, 4, 1, 5); }
inline vfloat zip_high(vfloat a, vfloat b) { return __builtin_shufflevector(a, b, 2, 6, 3, 7); }
#endif

}  // namespace tg::kernels
