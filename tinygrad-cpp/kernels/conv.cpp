// The engine's convolution of a batch: which fast path runs for which convolution.
// ops/conv.cpp states the op and its textbook backward; this file only makes it fast.
//
//   1x1, stride 1, no padding                    one gemm per image, no columns: Y = W X,
//                                                dX = W^T dY (a batch of expansions: images over
//                                                the threads), dW += dY X^T
//   depthwise (groups = channels)                 depthwise.cpp, forward and both gradients
//   forward, stride 1 (no dilation, no groups)  direct kernels (conv_direct.cpp), image by image;
//                                                3x3 with many channels on large maps (VGG):
//                                                Winograd F(2x2, 3x3), F(4x4, 3x3) on the largest (winograd.cpp)
//   forward, one image otherwise                 bands of output rows over the threads, im2col + gemm;
//                                                with few output rows, one gemm W cols over the threads
//   backward dx, stride or dilation (groups 1)   W^T dY then col2im; one large image: the gemm over
//                                                the threads, a batch: images over the threads
//   forward, a batch otherwise                   chunks of images over the threads, im2col + gemm
//   backward, stride 1                           dx: the forward's kernel on dY with the weight flipped;
//                                                dW: the direct weight-gradient kernel
// conv2d_reference (im2col.cpp) is the seven-loop definition they are all tested against.
#include <algorithm>
#include <optional>
#include <vector>

#include "tinygrad-cpp/kernels/kernels.h"

namespace tg::kernels {
namespace {

// Scratch memory of one thread, reused from call to call (a batch-64 column matrix is
// megabytes: allocating it every step costs page faults).
thread_local std::vector<float> columns_buffer, result_buffer;
float* buffer(std::vector<float>& b, int64_t n) {
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

bool stride1(const ConvGeometry& g, int64_t groups) {
  return groups == 1 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1 && g.symmetric();
}

bool pointwise(const ConvGeometry& g, int64_t groups) {
  return groups == 1 && g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
         g.pad_w == 0 && g.symmetric();
}

// A depthwise convolution as depthwise.cpp sees it, or nothing when it is not one.
std::optional<Depthwise> depthwise(const ConvGeometry& g, int64_t out_channels, int64_t groups) {
  if (groups == 1 || groups != g.channels || out_channels % groups != 0 || g.dilation_h != 1 || g.dilation_w != 1)
    return std::nullopt;
  const Depthwise d{g.channels, g.height, g.width, out_channels / groups, g.kernel_h, g.kernel_w, g.stride_h,
                    g.stride_w, g.pad_h, g.pad_w, g.out_h(), g.out_w()};
  if (!depthwise_supported(d)) return std::nullopt;
  return d;
}

// The forward convolution of one image as the direct kernel sees it.
DirectConv direct_forward(const ConvGeometry& g, int64_t out_channels) {
  const int64_t taps = g.kernel_h * g.kernel_w;
  return {g.channels, g.height, g.width, out_channels, g.kernel_h, g.kernel_w, g.pad_h, g.pad_w,
          g.channels * taps, taps, g.kernel_w, 1};
}

// One image whose convolution is worth sharing between the threads (a batch is shared by images).
bool one_large_image(int64_t batch, int64_t groups, int64_t multiply_adds) {
  return batch == 1 && groups == 1 && multiply_adds >= (int64_t{1} << 20) && num_threads() > 1 && !in_parallel_region();
}

template <class F>
void for_each_image(int64_t batch, F body) {
  parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n) body(n);
  });
}

}  // namespace

void conv2d_forward(const float* x, int64_t batch, const ConvGeometry& g, const float* weight, const float* bias,
                    int64_t out_channels, int64_t groups, float* out) {
  const int64_t O = out_channels, P = g.out_h() * g.out_w();
  const int64_t image_size = g.channels * g.height * g.width;
  const int64_t rows = g.channels * g.kernel_h * g.kernel_w;         // the column matrix's height
  const int64_t patch = rows / groups, out_per_group = O / groups;
  // Y_n = W X_n + b as one gemm (the bias added as each tile is written), projections and
  // expansions alike: on MobileNet's 1x1 expansions the gemm beat the direct kernel (the
  // speed benchmarks in tests/ measure it; numbers belong there, not in a comment).
  if (pointwise(g, groups)) {
    for (int64_t n = 0; n < batch; ++n) {
      gemm(false, false, O, P, g.channels, 1.f, weight, g.channels, x + n * image_size, P, 0.f, out + n * O * P, P, bias);
    }
    return;
  }
  if (const auto d = depthwise(g, O, groups)) {
    depthwise_conv2d(x, batch, *d, weight, bias, out);
    return;
  }
  if (stride1(g, groups)) {
    const DirectConv d = direct_forward(g, O);
    const auto kernel = winograd_pays(d) ? conv3x3_winograd : conv2d_stride1;
    for_each_image(batch, [&](int64_t n) { kernel(x + n * image_size, d, weight, bias, out + n * O * P); });
    return;
  }
  if (one_large_image(batch, groups, O * P * rows) && g.out_h() < 4 * num_threads()) {
    // One image with a few output rows (the detector's last layers: 5x5 down to 1x1): one
    // gemm Y = W cols, which the threads share by rows of W, with the bias added in it.
    float* cols = buffer(columns_buffer, rows * P);
    im2col(x, g, cols, P);
    gemm(false, false, O, P, rows, 1.f, weight, rows, cols, P, 0.f, out, P, bias);
    return;
  }
  if (one_large_image(batch, groups, O * P * rows)) {
    // One image with a stride or dilation: the threads take bands of output rows, each
    // with its own columns, and write Y_band = W cols_band + b straight into the band's
    // rows of every output plane (C's rows are ldc = P apart).
    const int64_t out_w = g.out_w();
    parallel_for(0, g.out_h(), 1, [&](int64_t oy0, int64_t oy1) {
      const int64_t width = (oy1 - oy0) * out_w;
      float* cols = buffer(columns_buffer, rows * width);
      im2col_rows(x, g, oy0, oy1, cols, width);
      gemm(false, false, O, width, rows, 1.f, weight, rows, cols, width, 0.f, out + oy0 * out_w, P, bias);
    });
    return;
  }
  // A batch: each thread takes a range of images, in chunks whose column matrix stays
  // within about 4 MB: cols [C*kh*kw, nb*P], then Y_g = W_g cols_g for each group.
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 20) / std::max<int64_t>(1, rows * P), 1, std::max<int64_t>(1, batch));
  parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n0 = lo; n0 < hi; n0 += chunk) {
      const int64_t nb = std::min(chunk, hi - n0), width = nb * P;
      float* cols = buffer(columns_buffer, rows * width);
      float* result = buffer(result_buffer, O * width);
      for (int64_t i = 0; i < nb; ++i) im2col(x + (n0 + i) * image_size, g, cols + i * P, width);
      for (int64_t grp = 0; grp < groups; ++grp)
        gemm(false, false, out_per_group, width, patch, 1.f, weight + grp * out_per_group * patch, patch,
             cols + grp * patch * width, width, 0.f, result + grp * out_per_group * width, width);
      // result is [O, nb*P]; out wants [nb, O, P]: scatter and add the bias.
      for (int64_t i = 0; i < nb; ++i)
        for (int64_t o = 0; o < O; ++o) {
          const float b = bias ? bias[o] : 0.f;
          const float* __restrict src = result + o * width + i * P;
          float* __restrict dst = out + ((n0 + i) * O + o) * P;
          for (int64_t p = 0; p < P; ++p) dst[p] = src[p] + b;
        }
    }
  });
}

bool conv2d_backward_input_fast(const float* grad_output, int64_t batch, const ConvGeometry& g, const float* weight,
                                int64_t out_channels, int64_t groups, float* dx) {
  const int64_t O = out_channels, P = g.out_h() * g.out_w(), taps = g.kernel_h * g.kernel_w;
  const int64_t image_size = g.channels * g.height * g.width;
  if (pointwise(g, groups)) {  // dX_n = W^T dY_n, straight into dx (a 1x1's columns are the image)
    auto one_image = [&](int64_t n) {
      gemm(true, false, g.channels, P, O, 1.f, weight, g.channels, grad_output + n * O * P, P, 0.f, dx + n * image_size, P);
    };
    // Projections' gradients (O <= C) and one image: the threads share each gemm; an
    // expansion's (few rows of dX, e.g. 16 x P from 96 channels) over a batch: images.
    if (O <= g.channels || batch == 1)
      for (int64_t n = 0; n < batch; ++n) one_image(n);
    else
      for_each_image(batch, one_image);
    return true;
  }
  if (const auto d = depthwise(g, O, groups)) {
    depthwise_conv2d_backward_input(grad_output, batch, *d, weight, dx);
    return true;
  }
  const int64_t rows = g.channels * taps;
  if (!stride1(g, groups) && groups == 1) {
    // A stride (the photo model's first layer) or dilation: dcols = W^T dY, then col2im adds
    // the columns back into the image, in the thread's reused column buffer (a fresh one
    // costs a page fault per 4 KB). One large image: the threads share its gemm, then its
    // rows (cleared and added into by the thread that owns them); a batch: they take images.
    const bool shared = one_large_image(batch, groups, O * P * rows);
    auto one_image = [&](int64_t n) {
      float* dcols = buffer(columns_buffer, rows * P);
      gemm(true, false, rows, P, O, 1.f, weight, rows, grad_output + n * O * P, P, 0.f, dcols, P);
      float* image = dx + n * image_size;
      auto add_rows = [&](int64_t row_begin, int64_t row_end) {
        std::fill(image + row_begin * g.width, image + row_end * g.width, 0.f);
        col2im_rows(dcols, g, row_begin, row_end, image, P);
      };
      if (shared) parallel_for(0, g.channels * g.height, 8, add_rows);
      else add_rows(0, g.channels * g.height);
    };
    if (shared) one_image(0);
    else for_each_image(batch, one_image);
    return true;
  }
  if (!stride1(g, groups) || g.pad_h >= g.kernel_h || g.pad_w >= g.kernel_w) return false;
  // dx is the convolution of dY (bordered by kernel-1-pad) with the weight transposed
  // (out <-> in channels) and flipped (taps read backwards):
  //     dx[c][y][x] = sum over (o, i, j) of w[o][c][kh-1-i][kw-1-j] * dYpadded[o][y+i][x+j]
  const DirectConv d{O, g.out_h(), g.out_w(), g.channels, g.kernel_h, g.kernel_w, g.kernel_h - 1 - g.pad_h,
                     g.kernel_w - 1 - g.pad_w, taps, g.channels * taps, -g.kernel_w, -1};
  const auto kernel = winograd_pays(d) ? conv3x3_winograd : conv2d_stride1;
  for_each_image(batch, [&](int64_t n) { kernel(grad_output + n * O * P, d, weight + taps - 1, nullptr, dx + n * image_size); });
  return true;
}

bool conv2d_backward_weight_fast(const float* x, const float* grad_output, int64_t batch, const ConvGeometry& g,
                                 int64_t out_channels, int64_t groups, float* dw) {
  const int64_t O = out_channels, P = g.out_h() * g.out_w();
  if (pointwise(g, groups) && (O <= g.channels || batch == 1)) {  // dW += dY_n X_n^T
    for (int64_t n = 0; n < batch; ++n)
      gemm(false, true, O, g.channels, P, 1.f, grad_output + n * O * P, P, x + n * g.channels * P, P, 1.f, dw, g.channels);
    return true;
  }
  if (const auto d = depthwise(g, O, groups)) {
    depthwise_conv2d_backward_weight(x, grad_output, batch, *d, dw);
    return true;
  }
  if (!stride1(g, groups)) return false;
  return conv2d_stride1_weight_grad(x, grad_output, batch, direct_forward(g, out_channels), dw);
}

}  // namespace tg::kernels
