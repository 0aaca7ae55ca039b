// matmul and linear: the two matrix-product ops.
//
//   matmul: Y[M,N] = A[M,K] B[K,N]            dA = dY B^T,  dB = A^T dY
//   linear: Y[N,out] = X[N,in] W^T + b        dX = dY W,    dW = dY^T X,  db = sum_n dY
// Both call the gemm kernel, which takes the transposes without copying.
#include <fmt/format.h>

#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/ops/helpers.h"

namespace tg {

// ---- matmul ----
Tensor matmul(const Tensor& a, const Tensor& b) {
  if (a.ndim() != 2 || b.ndim() != 2 || a.dim(1) != b.dim(0))
    throw Error(fmt::format("matmul: shapes {} and {} cannot be multiplied{}", shape_str(a.shape()),
                            shape_str(b.shape()),
                            a.ndim() == 2 && b.ndim() == 2
                                ? fmt::format(" ({} != {})", a.dim(1), b.dim(0))
                                : std::string(" (both must be 2-D)")));
  const int64_t M = a.dim(0), K = a.dim(1), N = b.dim(1);
  Tensor out = Tensor::empty({M, N});
  kernels::gemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, out.data(), N);
  return tape().record(Op::Matmul, {a, b}, out);
}
// dA = dY B^T, dB = A^T dY
static std::vector<Tensor> matmul_backward(const Entry& e, const Tensor& g) {
  const Tensor &a = e.input(0), &b = e.input(1);
  const int64_t M = a.dim(0), K = a.dim(1), N = b.dim(1);
  Tensor da, db;
  if (a.requires_grad()) {
    da = Tensor::empty({M, K});
    kernels::gemm(false, true, M, K, N, 1.f, g.data(), N, b.data(), N, 0.f, da.data(), K);
  }
  if (b.requires_grad()) {
    db = Tensor::empty({K, N});
    kernels::gemm(true, false, K, N, M, 1.f, a.data(), K, g.data(), N, 0.f, db.data(), N);
  }
  return {da, db};
}
const OpKind Op::Matmul{"matmul", matmul_backward};

// ---- linear ----
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (x.ndim() != 2 || weight.ndim() != 2 || x.dim(1) != weight.dim(1))
    throw Error(fmt::format("linear: input {} does not match weight {} (expected input [N,{}])",
                            shape_str(x.shape()), shape_str(weight.shape()),
                            weight.ndim() == 2 ? std::to_string(weight.dim(1)) : "in"));
  const int64_t N = x.dim(0), in = x.dim(1), out_features = weight.dim(0);
  if (bias.defined() && (bias.ndim() != 1 || bias.dim(0) != out_features))
    throw Error(fmt::format("linear: bias {} does not match weight {} (expected [{}])", shape_str(bias.shape()),
                            shape_str(weight.shape()), out_features));
  Tensor out = Tensor::empty({N, out_features});
  if (bias.defined()) {
    for (int64_t n = 0; n < N; ++n) std::copy(bias.data(), bias.data() + out_features, out.data() + n * out_features);
  }
  kernels::gemm(false, true, N, out_features, in, 1.f, x.data(), in, weight.data(), in, bias.defined() ? 1.f : 0.f,
                out.data(), out_features);
  return tape().record(Op::Linear, {x, weight, bias}, out);
}

// dX = dY W, dW = dY^T X, db = sum over the batch of dY
static std::vector<Tensor> linear_backward(const Entry& e, const Tensor& g) {
  // BEGIN SOLUTION(linear-backward)
  // HINT: dX = dY W ([N,out] x [out,in]), dW = dY^T X ([out,N] x [N,in]), db = dY summed over the batch;
  // HINT: use kernels::gemm with the right transposes and skip inputs that do not require grad.
  const Tensor &x = e.input(0), &w = e.input(1), &b = e.input(2);
  const int64_t N = x.dim(0), in = x.dim(1), out_features = w.dim(0);
  Tensor dx, dw, db;
  if (x.requires_grad()) {
    dx = Tensor::empty({N, in});
    kernels::gemm(false, false, N, in, out_features, 1.f, g.data(), out_features, w.data(), in, 0.f, dx.data(), in);
  }
  if (w.requires_grad()) {
    dw = Tensor::empty({out_features, in});
    kernels::gemm(true, false, out_features, in, N, 1.f, g.data(), out_features, x.data(), in, 0.f, dw.data(), in);
  }
  if (b.defined() && b.requires_grad()) {
    db = Tensor::zeros({out_features});
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < out_features; ++o) db.data()[o] += g.data()[n * out_features + o];
  }
  return {dx, dw, db};
  // END SOLUTION
}
const OpKind Op::Linear{"linear", linear_backward};

}  // namespace tg
