// conv2d: x [N,C,H,W] * weight [O, C/groups, kh, kw] + bias [O] -> [N, O, out_h, out_w]
//
// The im2col trick: lay every receptive field of a batch chunk out as one column of a
// matrix  cols [C*kh*kw, nb*out_h*out_w]. Then for each group g
//     forward   Y_g  = W_g  cols_g            ([Og, CgKK] x [CgKK, nb*P])
//     backward  dW_g = dY_g cols_g^T          ([Og, nb*P] x [nb*P, CgKK])
//               dcols_g = W_g^T dY_g ; dx = col2im(dcols)
//               db   = dY summed over batch and positions
// where P = out_h*out_w. Batch chunks keep the column matrix within a few MB.
//
// Convolutions with stride 1 and no dilation or groups (all of FashionCNN's) skip the
// column matrix: kernels/conv_direct.cpp computes the forward pass, dx (the same kernel
// on dY with the weight flipped) and dW straight from the images. im2col + gemm is the
// general path and the one the direct kernels are tested against.
#include <fmt/format.h>

#include <algorithm>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/ops/backward_rules.h"

namespace tg {
namespace {

struct ConvPlan {
  kernels::ConvGeometry geometry;
  int64_t batch, out_channels, groups;
  int64_t in_per_group, out_per_group, patch;  // patch = (C/groups)*kh*kw
  int64_t positions;                           // out_h * out_w
  int64_t chunk;                               // images per column matrix
};

ConvPlan plan_conv(const Tensor& x, const Tensor& w, const OpParams& p) {
  auto fail = [&](const std::string& why) {
    return Error(fmt::format("conv2d: input {} and weight {}: {}", shape_str(x.shape()), shape_str(w.shape()), why));
  };
  if (x.ndim() != 4) throw fail("input must be [N,C,H,W]");
  if (w.ndim() != 4) throw fail("weight must be [out, in/groups, kh, kw]");
  if (p.groups < 1) throw fail(fmt::format("groups {} must be at least 1", p.groups));
  if (p.stride[0] < 1 || p.stride[1] < 1 || p.dilation[0] < 1 || p.dilation[1] < 1 || p.padding[0] < 0 || p.padding[1] < 0)
    throw fail("stride and dilation must be >= 1 and padding >= 0");
  ConvPlan plan;
  plan.batch = x.dim(0);
  plan.groups = p.groups;
  plan.out_channels = w.dim(0);
  const int64_t channels = x.dim(1);
  if (channels % p.groups != 0 || plan.out_channels % p.groups != 0)
    throw fail(fmt::format("channels {} and {} must both divide by groups {}", channels, plan.out_channels, p.groups));
  if (w.dim(1) * p.groups != channels)
    throw fail(fmt::format("weight expects {} input channels, input has {} ({} != {})", w.dim(1) * p.groups, channels,
                           w.dim(1) * p.groups, channels));
  plan.geometry = {channels, x.dim(2), x.dim(3), w.dim(2), w.dim(3), p.stride[0], p.stride[1],
                   p.padding[0], p.padding[1], p.dilation[0], p.dilation[1]};
  if (plan.geometry.out_h() < 1 || plan.geometry.out_w() < 1)
    throw fail("the kernel does not fit in the padded input");
  plan.in_per_group = channels / p.groups;
  plan.out_per_group = plan.out_channels / p.groups;
  plan.patch = plan.in_per_group * w.dim(2) * w.dim(3);
  plan.positions = plan.geometry.out_h() * plan.geometry.out_w();
  const int64_t column_floats = channels * w.dim(2) * w.dim(3) * plan.positions;
  plan.chunk = std::clamp<int64_t>((int64_t{1} << 20) / std::max<int64_t>(1, column_floats), 1, std::max<int64_t>(1, plan.batch));
  return plan;
}

// im2col of images [n0, n0+nb) side by side: cols [C*kh*kw, nb*P].
void fill_columns(const Tensor& x, const ConvPlan& plan, int64_t n0, int64_t nb, float* cols) {
  const kernels::ConvGeometry& g = plan.geometry;
  const int64_t image_size = g.channels * g.height * g.width;
  for (int64_t i = 0; i < nb; ++i)
    kernels::im2col(x.data() + (n0 + i) * image_size, g, cols + i * plan.positions, nb * plan.positions);
}

thread_local std::vector<float> columns_buffer, scratch_buffer, dw_transposed_buffer;

// Stride 1, no dilation, no groups (every conv of FashionCNN): computed directly, image by
// image, without a column matrix (kernels/conv_direct.cpp). One image is shared by the
// threads inside the kernel; a batch is shared out image by image.
bool direct(const ConvPlan& plan) {
  const kernels::ConvGeometry& g = plan.geometry;
  return plan.groups == 1 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1;
}
// The forward convolution of one image as the direct kernel sees it.
kernels::DirectConv direct_forward(const ConvPlan& plan) {
  const kernels::ConvGeometry& g = plan.geometry;
  const int64_t taps = g.kernel_h * g.kernel_w;
  return {g.channels, g.height, g.width, plan.out_channels, g.kernel_h, g.kernel_w, g.pad_h, g.pad_w,
          g.channels * taps, taps, g.kernel_w, 1};
}
template <class F>
void for_each_image(int64_t batch, F body) {
  kernels::parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n) body(n);
  });
}

// Whether one image of a conv the direct kernels do not take (a stride, a dilation) is split
// over the threads: only from about a million multiply-adds up, where the split pays.
bool share_one_image(const ConvPlan& plan, int64_t multiply_adds) {
  return plan.batch == 1 && plan.groups == 1 && multiply_adds >= (int64_t{1} << 20) && kernels::num_threads() > 1 &&
         !kernels::in_parallel_region();
}
float* buffer(std::vector<float>& b, int64_t n) {
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

// Runs body(n0, nb, slot) over the batch in chunks of at most plan.chunk images.
// With a batch to share, each thread takes a range of images and works on them alone
// (its own buffers; `slot`, the first image of its range, names its partial sums), so
// there is one synchronization per op; with a single image the gemms use the threads.
template <class F>
void for_each_chunk(const ConvPlan& plan, F body) {
  kernels::parallel_for(0, plan.batch, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n0 = lo; n0 < hi; n0 += plan.chunk) body(n0, std::min(plan.chunk, hi - n0), lo);
  });
}

// sum += each partial in slot order (the order is fixed, so results repeat run to run).
void add_partials(const std::vector<std::vector<float>>& partials, Tensor& sum) {
  if (!sum.defined()) return;
  float* dst = sum.data();
  for (const std::vector<float>& partial : partials)
    for (size_t i = 0; i < partial.size(); ++i) dst[i] += partial[i];
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Pair2 stride, Pair2 padding, Pair2 dilation,
              int64_t groups) {
  OpParams params;
  params.stride = {stride.h, stride.w};
  params.padding = {padding.h, padding.w};
  params.dilation = {dilation.h, dilation.w};
  params.groups = groups;
  params.kernel = {weight.ndim() == 4 ? weight.dim(2) : 0, weight.ndim() == 4 ? weight.dim(3) : 0};
  const ConvPlan plan = plan_conv(x, weight, params);
  if (bias.defined() && (bias.ndim() != 1 || bias.dim(0) != plan.out_channels))
    throw Error(fmt::format("conv2d: bias {} does not match weight {} (expected [{}])", shape_str(bias.shape()),
                            shape_str(weight.shape()), plan.out_channels));
  const int64_t O = plan.out_channels, P = plan.positions;
  Tensor out = Tensor::empty({plan.batch, O, plan.geometry.out_h(), plan.geometry.out_w()});
  const int64_t rows = plan.geometry.channels * weight.dim(2) * weight.dim(3);
  if (direct(plan)) {
    const kernels::DirectConv d = direct_forward(plan);
    const int64_t image_size = d.channels * d.height * d.width;
    for_each_image(plan.batch, [&](int64_t n) {
      kernels::conv2d_stride1(x.data() + n * image_size, d, weight.data(), bias.defined() ? bias.data() : nullptr,
                              out.data() + n * O * P);
    });
    return tape().record(Op::Conv2d, {x, weight, bias}, out, params);
  }
  if (share_one_image(plan, O * P * rows)) {
    // One image with a stride or dilation: the threads take bands of output rows, each
    // with its own columns, product and bias, so the whole op is shared, not just the gemm.
    // The product is taken transposed, result^T [positions, O] = cols^T W^T: the band's
    // positions become the gemm's long side and the few output channels its short one (a
    // whole 32-wide sliver for 32 channels), which wastes less of the micro-kernel.
    const int64_t out_w = plan.geometry.out_w();
    kernels::parallel_for(0, plan.geometry.out_h(), 1, [&](int64_t oy0, int64_t oy1) {
      const int64_t width = (oy1 - oy0) * out_w;
      float* cols = buffer(columns_buffer, rows * width);
      float* result = buffer(scratch_buffer, O * width);
      kernels::im2col_rows(x.data(), plan.geometry, oy0, oy1, cols, width);
      kernels::gemm(true, true, width, O, plan.patch, 1.f, cols, width, weight.data(), plan.patch, 0.f, result, O);
      for (int64_t o = 0; o < O; ++o) {
        const float b = bias.defined() ? bias.data()[o] : 0.f;
        float* __restrict dst = out.data() + o * P + oy0 * out_w;
        for (int64_t k = 0; k < width; ++k) dst[k] = result[k * O + o] + b;
      }
    });
    return tape().record(Op::Conv2d, {x, weight, bias}, out, params);
  }
  for_each_chunk(plan, [&](int64_t n0, int64_t nb, int64_t) {
    const int64_t width = nb * P;
    float* cols = buffer(columns_buffer, rows * width);
    float* result = buffer(scratch_buffer, O * width);
    fill_columns(x, plan, n0, nb, cols);
    for (int64_t g = 0; g < plan.groups; ++g)
      kernels::gemm(false, false, plan.out_per_group, width, plan.patch, 1.f, weight.data() + g * plan.out_per_group * plan.patch,
                    plan.patch, cols + g * plan.patch * width, width, 0.f, result + g * plan.out_per_group * width, width);
    // result is [O, nb*P]; out wants [nb, O, P]: scatter and add the bias.
    for (int64_t i = 0; i < nb; ++i)
      for (int64_t o = 0; o < O; ++o) {
        const float b = bias.defined() ? bias.data()[o] : 0.f;
        const float* __restrict src = result + o * width + i * P;
        float* __restrict dst = out.data() + ((n0 + i) * O + o) * P;
        for (int64_t p = 0; p < P; ++p) dst[p] = src[p] + b;
      }
  });
  return tape().record(Op::Conv2d, {x, weight, bias}, out, params);
}

// dW_g = dY_g cols_g^T,  dx = col2im(W_g^T dY_g),  db = sum of dY over batch and positions
std::vector<Tensor> conv2d_backward(const Entry& e, const Tensor& grad_output) {
  const Tensor &x = e.input(0), &weight = e.input(1), &bias = e.input(2);
  const ConvPlan plan = plan_conv(x, weight, e.params);
  const int64_t O = plan.out_channels, P = plan.positions;
  const int64_t rows = plan.geometry.channels * weight.dim(2) * weight.dim(3);
  const int64_t image_size = plan.geometry.channels * plan.geometry.height * plan.geometry.width;
  const bool want_x = x.requires_grad(), want_w = weight.requires_grad();
  const bool want_b = bias.defined() && bias.requires_grad();
  Tensor dx = want_x ? Tensor::zeros(x.shape()) : Tensor();
  Tensor dw = want_w ? Tensor::zeros(weight.shape()) : Tensor();
  Tensor db = want_b ? Tensor::zeros(bias.shape()) : Tensor();
  // BEGIN SOLUTION(conv2d-backward)
  // HINT: per chunk of images: gather dY into [O, nb*P]; dW_g += dY_g cols_g^T (gemm, beta = 1);
  // HINT: dcols_g = W_g^T dY_g, then kernels::col2im each image's columns into dx; db sums dY.
  bool dx_done = false;
  const kernels::ConvGeometry& geo = plan.geometry;
  if (want_x && direct(plan) && geo.pad_h < geo.kernel_h && geo.pad_w < geo.kernel_w) {
    // dx is the convolution of dY (bordered by kernel-1-pad) with the weight transposed
    // (out <-> in channels) and flipped (taps read backwards):
    //     dx[c][y][x] = sum over (o, i, j) of w[o][c][kh-1-i][kw-1-j] * dYpadded[o][y+i][x+j]
    const int64_t taps = geo.kernel_h * geo.kernel_w;
    const kernels::DirectConv d{O, geo.out_h(), geo.out_w(), geo.channels, geo.kernel_h, geo.kernel_w,
                                geo.kernel_h - 1 - geo.pad_h, geo.kernel_w - 1 - geo.pad_w,
                                taps, geo.channels * taps, -geo.kernel_w, -1};
    for_each_image(plan.batch, [&](int64_t n) {
      kernels::conv2d_stride1(grad_output.data() + n * O * P, d, weight.data() + taps - 1, nullptr,
                              dx.data() + n * image_size);
    });
    dx_done = true;
  }
  if (want_x && !dx_done && plan.geometry.channels > 1 && share_one_image(plan, O * P * rows)) {
    // One image (not direct): the threads take bands of input channels. The rows of dcols
    // for channels [c0, c1) need only those columns of W, and col2im of them touches only
    // those planes.
    const int64_t taps = weight.dim(2) * weight.dim(3), plane = plan.geometry.height * plan.geometry.width;
    kernels::parallel_for(0, plan.geometry.channels, 1, [&](int64_t c0, int64_t c1) {
      float* dcols = buffer(columns_buffer, (c1 - c0) * taps * P);
      kernels::gemm(true, false, (c1 - c0) * taps, P, O, 1.f, weight.data() + c0 * taps, plan.patch,
                    grad_output.data(), P, 0.f, dcols, P);
      kernels::ConvGeometry band = plan.geometry;
      band.channels = c1 - c0;
      kernels::col2im(dcols, band, dx.data() + c0 * plane, P);
    });
    dx_done = true;
  }
  // db[o] = sum of dY[n][o][p] over images and positions
  if (want_b)
    for (int64_t n = 0; n < plan.batch; ++n)
      for (int64_t o = 0; o < O; ++o) db.data()[o] += kernels::sum(grad_output.data() + (n * O + o) * P, P);
  bool dw_done = false;
  if (want_w && direct(plan))
    dw_done = kernels::conv2d_stride1_weight_grad(x.data(), grad_output.data(), plan.batch, direct_forward(plan), dw.data());
  std::vector<std::vector<float>> dw_partials(static_cast<size_t>(plan.batch));
  if ((want_w && !dw_done) || (want_x && !dx_done)) for_each_chunk(plan, [&](int64_t n0, int64_t nb, int64_t slot) {
    const int64_t width = nb * P;
    // dY for this chunk as [O, nb*P], matching the column layout of the forward pass.
    float* grad = buffer(scratch_buffer, O * width);
    for (int64_t i = 0; i < nb; ++i)
      for (int64_t o = 0; o < O; ++o)
        std::copy_n(grad_output.data() + ((n0 + i) * O + o) * P, P, grad + o * width + i * P);
    float* cols = buffer(columns_buffer, rows * width);
    if (want_w && !dw_done) {
      std::vector<float>& partial = dw_partials[slot];
      partial.resize(static_cast<size_t>(weight.numel()), 0.f);
      fill_columns(x, plan, n0, nb, cols);
      // Computed transposed, dW_g^T [patch, Og] = cols_g dY_g^T, then added back in place:
      // the long side of the product is then the patch (400 for conv2), not the few channels.
      float* transposed = buffer(dw_transposed_buffer, plan.patch * plan.out_per_group);
      for (int64_t g = 0; g < plan.groups; ++g) {
        kernels::gemm(false, true, plan.patch, plan.out_per_group, width, 1.f, cols + g * plan.patch * width, width,
                      grad + g * plan.out_per_group * width, width, 0.f, transposed, plan.out_per_group);
        float* dw_g = partial.data() + g * plan.out_per_group * plan.patch;
        for (int64_t o = 0; o < plan.out_per_group; ++o)
          for (int64_t k = 0; k < plan.patch; ++k) dw_g[o * plan.patch + k] += transposed[k * plan.out_per_group + o];
      }
    }
    if (want_x && !dx_done) {
      for (int64_t g = 0; g < plan.groups; ++g)
        kernels::gemm(true, false, plan.patch, width, plan.out_per_group, 1.f, weight.data() + g * plan.out_per_group * plan.patch,
                      plan.patch, grad + g * plan.out_per_group * width, width, 0.f, cols + g * plan.patch * width, width);
      for (int64_t i = 0; i < nb; ++i)
        kernels::col2im(cols + i * P, plan.geometry, dx.data() + (n0 + i) * image_size, width);
    }
  });
  add_partials(dw_partials, dw);
  // END SOLUTION
  return {dx, dw, db};
}

}  // namespace tg
