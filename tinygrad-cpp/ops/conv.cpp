// conv2d: x [N,C,H,W] * weight [O, C/groups, kh, kw] + bias [O] -> [N, O, out_h, out_w]
//
//   y[n,o,i,j] = b[o] + sum over (c, u, v) of w[o,c,u,v] * x[n, g*C/groups + c, i*s + u*d - p, j*s + v*d - p]
//
// x outside the image reads as 0: p rows and columns of it on each side, plus extra_padding
// more below and to the right (TensorFlow's SAME padding; it only adds output positions).
//
// The im2col trick turns that into a matrix product: lay every receptive field of image
// n out as one column of  cols [C*kh*kw, P]  (P = out_h*out_w positions). For each group g
//     forward   Y_g  = W_g cols_g                 ([Og, CgKK] x [CgKK, P])
//     backward  dW_g += dY_g cols_g^T             ([Og, P] x [P, CgKK]), summed over images
//               dcols_g = W_g^T dY_g ; dx = col2im(dcols)   (col2im is im2col's adjoint)
//               db[o] = dY[., o] summed over images and positions
// The forward pass runs on the engine (kernels::conv2d_forward picks direct kernels or
// im2col + gemm); the backward below is the textbook version, with the engine's fast paths
// first.
#include <fmt/format.h>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/ops/helpers.h"

namespace tg {
namespace {

struct Conv2dState : SavedState {
  Conv2dState(kernels::ConvGeometry geometry_, int64_t groups_) : geometry(geometry_), groups(groups_) {}
  kernels::ConvGeometry geometry;  // one image's sizes, kernel, stride, padding, dilation
  int64_t groups;
  std::string describe() const override {
    const std::string extra = geometry.symmetric() ? std::string()
                                                   : fmt::format(" extra_padding=[{},{}]", geometry.extra_bottom, geometry.extra_right);
    return fmt::format("stride=[{},{}] padding=[{},{}]{} dilation=[{},{}] groups={}", geometry.stride_h, geometry.stride_w,
                       geometry.pad_h, geometry.pad_w, extra, geometry.dilation_h, geometry.dilation_w, groups);
  }
};

kernels::ConvGeometry check_conv(const Tensor& x, const Tensor& w, const Tensor& bias, Pair2 stride, Pair2 padding,
                                 Pair2 dilation, int64_t groups, Pair2 extra_padding) {
  auto fail = [&](const std::string& why) {
    return Error(fmt::format("conv2d: input {} and weight {}: {}", shape_str(x.shape()), shape_str(w.shape()), why));
  };
  if (x.ndim() != 4) throw fail("input must be [N,C,H,W]");
  if (w.ndim() != 4) throw fail("weight must be [out, in/groups, kh, kw]");
  if (groups < 1) throw fail(fmt::format("groups {} must be at least 1", groups));
  if (stride.h < 1 || stride.w < 1 || dilation.h < 1 || dilation.w < 1 || padding.h < 0 || padding.w < 0 ||
      extra_padding.h < 0 || extra_padding.w < 0)
    throw fail("stride and dilation must be >= 1 and padding >= 0");
  const int64_t channels = x.dim(1), out_channels = w.dim(0);
  if (channels % groups != 0 || out_channels % groups != 0)
    throw fail(fmt::format("channels {} and {} must both divide by groups {}", channels, out_channels, groups));
  if (w.dim(1) * groups != channels)
    throw fail(fmt::format("weight expects {} input channels, input has {} ({} != {})", w.dim(1) * groups, channels,
                           w.dim(1) * groups, channels));
  const kernels::ConvGeometry g{channels, x.dim(2), x.dim(3), w.dim(2), w.dim(3), stride.h, stride.w,
                                padding.h, padding.w, dilation.h, dilation.w, extra_padding.h, extra_padding.w};
  if (g.out_h() < 1 || g.out_w() < 1) throw fail("the kernel does not fit in the padded input");
  if (bias.defined() && (bias.ndim() != 1 || bias.dim(0) != out_channels))
    throw Error(fmt::format("conv2d: bias {} does not match weight {} (expected [{}])", shape_str(bias.shape()),
                            shape_str(w.shape()), out_channels));
  return g;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Pair2 stride, Pair2 padding, Pair2 dilation,
              int64_t groups, Pair2 extra_padding) {
  const kernels::ConvGeometry g = check_conv(x, weight, bias, stride, padding, dilation, groups, extra_padding);
  Tensor out = Tensor::empty({x.dim(0), weight.dim(0), g.out_h(), g.out_w()});
  kernels::conv2d_forward(x.data(), x.dim(0), g, weight.data(), bias.defined() ? bias.data() : nullptr, weight.dim(0),
                          groups, out.data());
  return tape().record(Op::Conv2d, {x, weight, bias}, out, Conv2dState(g, groups));
}

// dW_g = sum over images of dY_g cols_g^T,  dx = col2im(W_g^T dY_g),  db = dY summed over images and positions
static std::vector<Tensor> conv2d_backward(const Entry& e, const Tensor& grad_output) {
  const Tensor &x = e.input(0), &weight = e.input(1), &bias = e.input(2);
  const Conv2dState& state = e.saved<Conv2dState>();
  const kernels::ConvGeometry& geometry = state.geometry;
  const int64_t batch = x.dim(0), O = weight.dim(0), groups = state.groups;
  const int64_t positions = geometry.out_h() * geometry.out_w();
  const int64_t image_size = geometry.channels * geometry.height * geometry.width;
  const int64_t patch = weight.numel() / O;  // (C/groups)*kh*kw: one group's rows of cols
  const int64_t out_per_group = O / groups;
  const bool want_x = wants_grad(e, 0), want_w = wants_grad(e, 1), want_b = bias.defined() && wants_grad(e, 2);
  Tensor dx, dw, db;  // the gradients asked for, made below; the others stay undefined
  const float* dy = grad_output.data();
  // BEGIN SOLUTION(conv2d-backward)
  // HINT: dx, dW, db start as zeros of x's, the weight's and the bias's shapes (Tensor::zeros), each only
  // HINT: when asked for (want_x, want_w, want_b).
  // HINT: for each image n: cols = im2col(x[n]); per group dW_g += dY_g cols_g^T and dcols_g = W_g^T dY_g;
  // HINT: dx[n] = col2im(dcols); db[o] += dY[n,o] summed over positions. Images may run in parallel
  // HINT: (kernels::parallel_for), but then dW must be summed per thread in partial sums, added at the end.
  // The engine's fast paths first (stride 1, 1x1, depthwise): direct kernels, no column matrix. Their
  // input gradient writes every element of dx, so it needs no zero fill first (a memory pass the size
  // of the layer's input: 3.7 ms of a one-thread photo saliency map); col2im adds, so it does.
  if (want_x) dx = Tensor::empty(x.shape());
  if (want_w) dw = Tensor::zeros(weight.shape());
  if (want_b) db = Tensor::zeros(bias.shape());
  const bool dx_done = want_x && kernels::conv2d_backward_input_fast(dy, batch, geometry, weight.data(), O, groups, dx.data());
  if (want_x && !dx_done) dx = Tensor::zeros(x.shape());
  const bool dw_done = want_w && kernels::conv2d_backward_weight_fast(x.data(), dy, batch, geometry, O, groups, dw.data());
  const bool need_x = want_x && !dx_done, need_w = want_w && !dw_done;
  // Each range of images a thread takes sums its own dW (indexed by its first image), so no
  // two threads ever add into the same memory; the partial sums are added in a fixed order.
  std::vector<std::vector<float>> dw_partial(static_cast<size_t>(batch));
  if (need_x || need_w) kernels::parallel_for(0, batch, 1, [&](int64_t first, int64_t end) {
    const size_t column_floats = static_cast<size_t>(patch * groups * positions);
    std::vector<float> cols(need_w ? column_floats : 0), dcols(need_x ? column_floats : 0);  // only what is wanted
    std::vector<float>& my_dw = dw_partial[first];
    if (need_w) my_dw.assign(static_cast<size_t>(weight.numel()), 0.f);
    for (int64_t n = first; n < end; ++n) {
      const float* dy_n = dy + n * O * positions;
      if (need_w) kernels::im2col(x.data() + n * image_size, geometry, cols.data(), positions);
      for (int64_t g = 0; g < groups; ++g) {
        const float* dy_g = dy_n + g * out_per_group * positions;
        if (need_w)  // dW_g += dY_g cols_g^T
          kernels::gemm(false, true, out_per_group, patch, positions, 1.f, dy_g, positions,
                        cols.data() + g * patch * positions, positions, 1.f, my_dw.data() + g * out_per_group * patch, patch);
        if (need_x)  // dcols_g = W_g^T dY_g
          kernels::gemm(true, false, patch, positions, out_per_group, 1.f, weight.data() + g * out_per_group * patch, patch,
                        dy_g, positions, 0.f, dcols.data() + g * patch * positions, positions);
      }
      if (need_x) kernels::col2im(dcols.data(), geometry, dx.data() + n * image_size, positions);
    }
  });
  for (const std::vector<float>& partial : dw_partial)
    for (size_t i = 0; i < partial.size(); ++i) dw.data()[i] += partial[i];
  if (want_b)
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t o = 0; o < O; ++o) db.data()[o] += kernels::sum(dy + (n * O + o) * positions, positions);
  // END SOLUTION
  return {dx, dw, db};
}
const OpKind Op::Conv2d{"conv2d", conv2d_backward};

}  // namespace tg
