// The vector type the fast kernels are written in: GCC vector extensions, which the
// compiler turns into AVX-512, AVX2 or SSE instructions for the machine the project is
// built on (-march=native). VW is the number of floats in one register.
#pragma once

#include <cstdint>

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

typedef int vindex __attribute__((vector_size(VW * sizeof(int))));                          // lane numbers for shuffles

inline vfloat load_unaligned(const float* p) { return *reinterpret_cast<const vfloat_unaligned*>(p); }
inline void store_unaligned(float* p, vfloat v) { *reinterpret_cast<vfloat_unaligned*>(p) = v; }

}  // namespace tg::kernels
