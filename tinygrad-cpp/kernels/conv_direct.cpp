// conv2d_stride1: the direct convolution of one image, with no column matrix; and below
// it, conv2d_stride1_weight_grad, the weight gradient of the same convolution over a batch.
//
//   out[o][y][x] = bias[o] + sum over (c, i, j) of  w(o,c,i,j) * in[c][y + i - pad_h][x + j - pad_w]
//
// For one image (saliency, gradient ascent) im2col costs as much as the product itself:
// the column matrix of FashionCNN's conv2 is 25 times the image, written, packed, read.
// Here the image is copied once into a buffer with a zero border, so no tap needs a
// bounds check, and the product is computed straight from it:
//
//   - each output row is cut into VW-wide "pieces" (one vector register each; the last
//     piece of a row may be partly used, its spare lanes are never stored);
//   - a tile of the output is R pieces x Q output channels, R*Q vectors in registers
//     while k = (c, i, j) runs over the whole patch; each step loads R input vectors (the
//     pieces shifted by the tap), broadcasts Q weights and does R*Q multiply-adds;
//   - Q is 8, or what is left of the channels, and R grows as Q shrinks (2, 4 or 8), so
//     there are always 8 to 16 independent sums to keep the FMA units busy (with 16 vector
//     registers, not 32, AVX2: Q is 4 and R 3, 12 sums).
// Tiles are independent; each thread takes a contiguous range of them.
//
// The weight is read through strides, w(o,c,i,j) = weight[o*out + c*in + i*row + j*col]:
// the input gradient of a convolution is the same kernel run on dY with the weight
// transposed (o <-> c) and flipped (negative row and col strides), without copying it.
#include <algorithm>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/kernels/vector.h"

namespace tg::kernels {
namespace {

// dst[0:n) = v[0:n), n <= VW
inline void store_first(float* dst, vfloat v, int64_t n) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << n) - 1u), v);
#elif defined(__AVX2__)
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  _mm256_maskstore_ps(dst, mask, v);
#else
  if (n == VW) {
    *reinterpret_cast<vfloat_unaligned*>(dst) = v;
    return;
  }
  for (int64_t lane = 0; lane < n; ++lane) dst[lane] = v[lane];
#endif
}

struct Piece {
  const float* in;  // padded input under tap (0, 0) of the piece's first output, channel 0
  float* out;       // the piece's first output, channel 0
  int64_t lanes;    // outputs in the piece (VW, or fewer at the end of a row)
};

// Everything a tile needs besides its own place.
struct Sweep {
  const int64_t* in_offset;  // per k: where tap k of channel c lies, relative to Piece::in
  const int64_t* w_offset;   // per k: where w(0,c,i,j) lies, relative to the block's weight
  int64_t patch;             // number of k
  int64_t out_stride;        // weight distance between two output channels
  int64_t out_plane;         // output distance between two output channels
};

// Vector registers: 32 with AVX-512, 16 with AVX2 (and SSE).
constexpr int64_t kVectorRegisters = VW == 16 ? 32 : 16;

// Output channels per tile (Q is this, or what is left of the channels), and pieces per
// tile for Q channels: 8 to 16 sums in registers with 32 of them. With 16 (AVX2), 16 sums
// would leave no register for the input and the weight and live on the stack: 4 channels
// x 3 pieces, 12 sums (each step 3 loads and 4 broadcasts for 12 multiply-adds).
constexpr int64_t kBlock = kVectorRegisters >= 32 ? 8 : 4;
constexpr int64_t pieces_for(int64_t Q) {
  if (kVectorRegisters >= 32) return Q >= 5 ? 2 : (Q >= 2 ? 4 : 8);
  return Q >= 4 ? 3 : (Q >= 2 ? 4 : 8);
}
// Every run length divides this (bands are multiples of it).
constexpr int64_t kBandUnit = kVectorRegisters >= 32 ? 8 : 24;

// One tile: pieces[0:count) (count <= R; missing ones repeat the last and are not stored)
// x output channels [o0, o0+Q). bias may be null.
template <int Q>
void tile(const Sweep& s, const Piece* pieces, int64_t count, int64_t o0, const float* weight, const float* bias) {
  constexpr int R = pieces_for(Q);
  weight += o0 * s.out_stride;
  if (bias) bias += o0;
  const int64_t out_shift = o0 * s.out_plane;
  const float* in[R];
  for (int r = 0; r < R; ++r) in[r] = pieces[std::min<int64_t>(r, count - 1)].in;
  const vfloat negative_zero = -vfloat{};  // x + (-0) == x exactly, so the add folds into a broadcast
  vfloat sum[R][Q];
#pragma GCC unroll 8
  for (int q = 0; q < Q; ++q)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) sum[r][q] = negative_zero + (bias ? bias[q] : 0.f);
  for (int64_t k = 0; k < s.patch; ++k) {
    const int64_t offset = s.in_offset[k];
    const float* w = weight + s.w_offset[k];
    vfloat v[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) v[r] = load_unaligned(in[r] + offset);
#pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) {
      const vfloat wq = negative_zero + w[q * s.out_stride];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) sum[r][q] += v[r] * wq;
    }
  }
  for (int r = 0; r < count; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) store_first(pieces[r].out + out_shift + q * s.out_plane, sum[r][q], pieces[r].lanes);
}

void run_tile(int64_t channels, const Sweep& s, const Piece* pieces, int64_t count, int64_t o0, const float* weight,
              const float* bias) {
  switch (channels) {
    case 1: return tile<1>(s, pieces, count, o0, weight, bias);
    case 2: return tile<2>(s, pieces, count, o0, weight, bias);
    case 3: return tile<3>(s, pieces, count, o0, weight, bias);
    case 4: return tile<4>(s, pieces, count, o0, weight, bias);
  }
  if constexpr (kBlock > 4) {
    switch (channels) {
      case 5: return tile<5>(s, pieces, count, o0, weight, bias);
      case 6: return tile<6>(s, pieces, count, o0, weight, bias);
      case 7: return tile<7>(s, pieces, count, o0, weight, bias);
      default: return tile<8>(s, pieces, count, o0, weight, bias);
    }
  }
}

// What one thread works from: its own zero-bordered copy of the image, offset tables and
// pieces. Each thread makes its own (from the image, read once in order) rather than
// reading the caller's: on the machine measured, two threads reading a copy the other core
// had just written took longer than one thread alone (conv2: 31 against 28 us; 16 us with
// a copy each).
struct Workspace {
  std::vector<float> padded;
  std::vector<int64_t> in_offset, w_offset;
  std::vector<Piece> pieces;
  Sweep sweep;

  void prepare(const float* image, const DirectConv& d, float* out) {
    const int64_t padded_h = d.height + 2 * d.pad_h, padded_w = d.width + 2 * d.pad_w;
    const int64_t out_h = padded_h - d.kernel_h + 1, out_w = padded_w - d.kernel_w + 1, plane = padded_h * padded_w;
    // VW spare floats at the end: the last piece may read past the image (into lanes never stored).
    padded.assign(static_cast<size_t>(d.channels * plane + VW), 0.f);
    for (int64_t c = 0; c < d.channels; ++c)
      for (int64_t y = 0; y < d.height; ++y)
        copy_floats(padded.data() + c * plane + (y + d.pad_h) * padded_w + d.pad_w, image + (c * d.height + y) * d.width,
                    d.width);
    const int64_t patch = d.channels * d.kernel_h * d.kernel_w;
    in_offset.resize(static_cast<size_t>(patch));
    w_offset.resize(static_cast<size_t>(patch));
    for (int64_t c = 0, k = 0; c < d.channels; ++c)
      for (int64_t i = 0; i < d.kernel_h; ++i)
        for (int64_t j = 0; j < d.kernel_w; ++j, ++k) {
          in_offset[k] = c * plane + i * padded_w + j;
          w_offset[k] = c * d.in_stride + i * d.row_stride + j * d.col_stride;
        }
    pieces.clear();
    for (int64_t y = 0; y < out_h; ++y)
      for (int64_t x = 0; x < out_w; x += VW)
        pieces.push_back({padded.data() + y * padded_w + x, out + y * out_w + x, std::min(VW, out_w - x)});
    sweep = {in_offset.data(), w_offset.data(), patch, d.out_stride, out_h * out_w};
  }
};
thread_local Workspace workspace;

// Tiles are numbered band by band: a band is a run of pieces (a multiple of kBandUnit, so
// of every run length), and within it every channel block in turn, each cut into runs of
// pieces_for(its channels) pieces. A large image is cut into bands of kBandUnit pieces, so
// consecutive tiles read the same input rows, which stay in cache while all output
// channels use them (numbered channel block by channel block, a 224x224 image with 64
// channels was read from memory once per block, at a third of the speed). An image that
// fits in L2 is one band: the threads then take whole channel blocks, and each keeps its
// own output planes (bands made FashionCNN's batch-1 maps 20 % slower).
int64_t band_pieces(const DirectConv& d, int64_t pieces) {
  const int64_t padded_bytes = d.channels * (d.height + 2 * d.pad_h) * (d.width + 2 * d.pad_w) * 4;
  return padded_bytes > (int64_t{512} << 10) ? kBandUnit : (pieces + kBandUnit - 1) / kBandUnit * kBandUnit;
}
int64_t tiles_per_band(int64_t out_channels, int64_t band) {
  int64_t tiles = 0;
  for (int64_t o0 = 0; o0 < out_channels; o0 += kBlock)
    tiles += band / pieces_for(std::min<int64_t>(kBlock, out_channels - o0));
  return tiles;
}

// Runs tiles [first, last) of the sweep, on the calling thread.
void run_tiles(const float* image, const DirectConv& d, const float* weight, const float* bias, float* out,
               int64_t first, int64_t last) {
  Workspace& w = workspace;
  w.prepare(image, d, out);
  const int64_t pieces = static_cast<int64_t>(w.pieces.size()), length = band_pieces(d, pieces);
  const int64_t per_band = tiles_per_band(d.out_channels, length);
  for (int64_t band = first / per_band, t = band * per_band; band * length < pieces && t < last; ++band)
    for (int64_t o0 = 0; o0 < d.out_channels && t < last; o0 += kBlock) {
      const int64_t channels = std::min<int64_t>(kBlock, d.out_channels - o0), run = pieces_for(channels);
      for (int64_t p0 = band * length; p0 < (band + 1) * length && t < last; p0 += run, ++t)
        if (t >= first && p0 < pieces)
          run_tile(channels, w.sweep, w.pieces.data() + p0, std::min(run, pieces - p0), o0, weight, bias);
    }
}

}  // namespace

void conv2d_stride1(const float* image, const DirectConv& d, const float* weight, const float* bias, float* out) {
  const int64_t out_h = d.height + 2 * d.pad_h - d.kernel_h + 1, out_w = d.width + 2 * d.pad_w - d.kernel_w + 1;
  if (out_h < 1 || out_w < 1 || d.out_channels < 1) return;
  const int64_t pieces = out_h * ((out_w + VW - 1) / VW);
  const int64_t band = band_pieces(d, pieces), tiles = (pieces + band - 1) / band * tiles_per_band(d.out_channels, band);
  // Below about a million multiply-adds a second thread costs more than it saves.
  const int64_t multiply_adds = d.out_channels * out_h * out_w * d.channels * d.kernel_h * d.kernel_w;
  if (num_threads() == 1 || multiply_adds < (int64_t{1} << 20) || in_parallel_region() || tiles < 2) {
    run_tiles(image, d, weight, bias, out, 0, tiles);
    return;
  }
  // Each thread takes one contiguous range of tiles: a range of whole rows where the
  // count allows, so the threads seldom write the same cache line. A tile's outputs do not
  // depend on the range it is run in, so on the caller alone the padded image is made once.
  parallel_for(0, tiles, 1, [&](int64_t first, int64_t last) { run_tiles(image, d, weight, bias, out, first, last); },
               Split::Free);
}

// ---- the weight gradient of the same convolution, over a batch ----
//
//   dw[o][c][i][j] += sum over images n, output rows y, columns x of
//                     dY[n][o][y][x] * in[n][c][y + i - pad_h][x + j - pad_w]
//
// A tile is (Q output channels) x (one kernel row (c, i): its KW taps), KW*Q vectors of
// partial sums in registers while the tile runs over output rows and VW-wide pieces:
// each step loads Q pieces of dY and KW shifted pieces of the input row, and does KW*Q
// multiply-adds (KW = 5 with AVX-512: 4 channels, 20 sums, 9 loads for 20 FMAs; with 16
// registers, AVX2: 2 channels, 10 sums). Images go in blocks of 8, each copied first into
// rows with pad_w zeros before and zeros after, as wide as the pieces plus the kernel
// (input) and as the pieces (dY), so every load is a plain unaligned load and the spare
// lanes add zeros; the block's dY planes of the tile's channels stay in L1 across the
// C*kh tiles that reuse them. The vector sums wait in memory between blocks and are added
// up across their lanes once, at the end. Threads take whole blocks of output channels.
namespace {
constexpr int64_t kImagesPerBlock = 8;
constexpr int weight_grad_channels(int KW) {
  return std::min(8, std::max(1, static_cast<int>(kVectorRegisters * 5 / 8) / KW));
}

struct WeightGradJob {
  const float* images;
  const float* grads;
  DirectConv d;
  int64_t out_h, out_w, pieces;
  int64_t row_width;  // floats in a copied input row: pieces*VW + kernel_w - 1 (pad_w zeros first)
};

// Left alone, g++ folds the shifted input's load into each of the Q multiply-adds that use
// it (Q loads, most of them across two cache lines, instead of one): this empty asm says
// the value lives in a register.
inline void keep_in_register(vfloat& v) {
#if defined(__x86_64__)
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

// The copies one block of images needs: input rows [n][c][y] of job.row_width floats and
// dY rows [n][o][y] of pieces*VW floats for channels [o0, o1), zeros around them.
struct WeightGradBlock {
  std::vector<float> input, grad;
  void copy(const WeightGradJob& job, int64_t n0, int64_t n1, int64_t o0, int64_t o1) {
    const DirectConv& d = job.d;
    const int64_t grad_w = job.pieces * VW, images = n1 - n0, channels = o1 - o0;
    input.assign(static_cast<size_t>(images * d.channels * d.height * job.row_width), 0.f);
    for (int64_t r = 0; r < images * d.channels * d.height; ++r)
      copy_floats(input.data() + r * job.row_width + d.pad_w, job.images + n0 * d.channels * d.height * d.width + r * d.width,
                  d.width);
    grad.assign(static_cast<size_t>(images * channels * job.out_h * grad_w), 0.f);
    for (int64_t n = 0; n < images; ++n)
      for (int64_t o = 0; o < channels; ++o)
        for (int64_t y = 0; y < job.out_h; ++y)
          copy_floats(grad.data() + ((n * channels + o) * job.out_h + y) * grad_w,
                      job.grads + (((n0 + n) * d.out_channels + o0 + o) * job.out_h + y) * job.out_w, job.out_w);
  }
};

// Adds the block's images into sums [KW][Q] for channels o0.. (count of them real; the
// others repeat the last and are discarded) and kernel row (c, i).
// `first` is the tile's first channel within the block's copied dY channels (`channels` of them).
template <int KW>
void weight_grad_tile(const WeightGradJob& job, const WeightGradBlock& block, int64_t images, int64_t channels,
                      int64_t first, int64_t count, int64_t c, int64_t i, vfloat* sums) {
  constexpr int Q = weight_grad_channels(KW);
  const DirectConv& d = job.d;
  vfloat sum[KW][Q];
#pragma GCC unroll 8
  for (int j = 0; j < KW; ++j)
#pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) sum[j][q] = sums[j * Q + q];
  const int64_t y0 = std::max<int64_t>(0, d.pad_h - i), y1 = std::min(job.out_h, d.height + d.pad_h - i);
  const int64_t grad_w = job.pieces * VW;
  for (int64_t n = 0; n < images; ++n) {
    const float* image = block.input.data() + (n * d.channels + c) * d.height * job.row_width;
    const float* grad[Q];
#pragma GCC unroll 8
    for (int q = 0; q < Q; ++q)
      grad[q] = block.grad.data() + (n * channels + first + std::min<int64_t>(q, count - 1)) * job.out_h * grad_w;
    for (int64_t y = y0; y < y1; ++y) {
      const float* row = image + (y + i - d.pad_h) * job.row_width;  // + x + j: the input under output x, tap j
      for (int64_t p = 0; p < job.pieces; ++p) {
        vfloat dy[Q];
#pragma GCC unroll 8
        for (int q = 0; q < Q; ++q) dy[q] = load_unaligned(grad[q] + y * grad_w + VW * p);
#pragma GCC unroll 8
        for (int j = 0; j < KW; ++j) {
          vfloat in = load_unaligned(row + VW * p + j);
          keep_in_register(in);
#pragma GCC unroll 8
          for (int q = 0; q < Q; ++q) sum[j][q] += in * dy[q];
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < KW; ++j)
#pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) sums[j * Q + q] = sum[j][q];
}

// All of it for the channel blocks [block0, block1) of Q channels: each block of images is
// copied once, then every channel block adds it into its own sums.
template <int KW>
void weight_grad_blocks(const WeightGradJob& job, int64_t block0, int64_t block1, int64_t batch, float* dw) {
  constexpr int Q = weight_grad_channels(KW);
  const DirectConv& d = job.d;
  const int64_t rows = d.channels * d.kernel_h;  // kernel rows (c, i)
  const int64_t o_begin = block0 * Q, o_end = std::min(d.out_channels, block1 * Q);
  static thread_local std::vector<vfloat> sums;
  static thread_local WeightGradBlock copies;
  const int64_t per_block = rows * KW * Q;
  sums.assign(static_cast<size_t>((block1 - block0) * per_block), vfloat{});
  for (int64_t n0 = 0; n0 < batch; n0 += kImagesPerBlock) {
    const int64_t n1 = std::min(batch, n0 + kImagesPerBlock);
    copies.copy(job, n0, n1, o_begin, o_end);
    for (int64_t block = block0; block < block1; ++block) {
      const int64_t o0 = block * Q, count = std::min<int64_t>(Q, d.out_channels - o0);
      for (int64_t r = 0; r < rows; ++r)
        weight_grad_tile<KW>(job, copies, n1 - n0, o_end - o_begin, o0 - o_begin, count, r / d.kernel_h, r % d.kernel_h,
                             sums.data() + (block - block0) * per_block + r * KW * Q);
    }
  }
  for (int64_t block = block0; block < block1; ++block) {
    const int64_t o0 = block * Q, count = std::min<int64_t>(Q, d.out_channels - o0);
    const vfloat* block_sums = sums.data() + (block - block0) * per_block;
    for (int64_t r = 0; r < rows; ++r)
      for (int j = 0; j < KW; ++j)
        for (int64_t q = 0; q < count; ++q)
          dw[(o0 + q) * d.out_stride + (r / d.kernel_h) * d.in_stride + (r % d.kernel_h) * d.row_stride + j * d.col_stride] +=
              lane_sum(block_sums[(r * KW + j) * Q + q]);
  }
}

template <int KW>
void weight_grad(const WeightGradJob& job, int64_t batch, float* dw) {
  constexpr int Q = weight_grad_channels(KW);
  const int64_t blocks = (job.d.out_channels + Q - 1) / Q;
  parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) { weight_grad_blocks<KW>(job, b0, b1, batch, dw); });
}
}  // namespace

bool conv2d_stride1_weight_grad(const float* images, const float* grads, int64_t batch, const DirectConv& d, float* dw) {
  constexpr int64_t kMaxPieces = 64 / VW;  // rows up to 64 outputs wide
  WeightGradJob job{images, grads, d, d.height + 2 * d.pad_h - d.kernel_h + 1, d.width + 2 * d.pad_w - d.kernel_w + 1, 0, 0};
  job.pieces = (job.out_w + VW - 1) / VW;
  job.row_width = job.pieces * VW + d.kernel_w - 1;
  if (d.kernel_w < 1 || d.kernel_w > 7 || job.pieces > kMaxPieces || job.out_h < 1 || job.out_w < 1)
    return false;
  switch (d.kernel_w) {
    case 1: weight_grad<1>(job, batch, dw); break;
    case 2: weight_grad<2>(job, batch, dw); break;
    case 3: weight_grad<3>(job, batch, dw); break;
    case 4: weight_grad<4>(job, batch, dw); break;
    case 5: weight_grad<5>(job, batch, dw); break;
    case 6: weight_grad<6>(job, batch, dw); break;
    default: weight_grad<7>(job, batch, dw); break;
  }
  return true;
}

}  // namespace tg::kernels
