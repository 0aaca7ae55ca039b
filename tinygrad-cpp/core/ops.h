// The differentiable ops. Each one computes its forward pass, and when recording,
// appends an entry to the tape; its backward rule sits right next to it in ops/*.cpp.
// Each section also names the ops' kinds (tg::Op::ReLU, ...): what an OverrideBackward
// guard swaps the rule of. A kind is defined once, in the op's own file.
// Shapes and weight layouts follow PyTorch: conv weight [out, in/groups, kh, kw],
// linear weight [out, in], images [N, C, H, W].
#pragma once

#include <cstdint>
#include <vector>

#include "tinygrad-cpp/core/tape.h"
#include "tinygrad-cpp/core/tensor.h"

namespace tg {

// A height/width pair that also accepts a single number: conv2d(x, w, b, /*stride=*/2).
struct Pair2 {
  int64_t h, w;
  Pair2(int64_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose
  Pair2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
};

// ---- elementwise, with NumPy/PyTorch broadcasting (ops/elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor clamp(const Tensor& x, float low, float high);
namespace Op {
extern const OpKind Add, Sub, Mul, Div, Neg, Exp, Log, Pow, Sqrt, Abs, Clamp;
}
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Sums a broadcast gradient back down to `shape` (the adjoint of broadcasting).
Tensor sum_to_shape(const Tensor& grad, const Shape& shape);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, float b);
Tensor operator-(const Tensor& a, float b);
Tensor operator*(const Tensor& a, float b);
Tensor operator/(const Tensor& a, float b);
Tensor operator+(float a, const Tensor& b);
Tensor operator-(float a, const Tensor& b);
Tensor operator*(float a, const Tensor& b);
Tensor operator/(float a, const Tensor& b);

// ---- reductions (ops/reduce.cpp); axes {} means every axis ----
Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor max(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
namespace Op {
extern const OpKind Sum, Mean, Max;
}


// ---- shape ops (ops/shape.cpp) ----
Tensor reshape(const Tensor& x, Shape shape);  // one dimension may be -1
// The shape reshape(x of shape `from`, to) gives: its -1 inferred, every product overflow-checked.
Shape reshape_target(const Shape& from, Shape to);
Tensor flatten(const Tensor& x, int start_axis = 1);  // [N,C,H,W] -> [N, C*H*W]
Tensor permute(const Tensor& x, std::vector<int64_t> order);
Tensor transpose(const Tensor& x, int axis0, int axis1);
Tensor slice(const Tensor& x, int axis, int64_t start, int64_t stop);  // [start, stop)
Tensor cat(const std::vector<Tensor>& xs, int axis);
// pads[2*a], pads[2*a+1]: elements added before and after axis a; one pair per axis.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, float value = 0.f);
namespace Op {
extern const OpKind Reshape, Permute, Slice, Cat, Pad;
}

// ---- resampling (ops/resample.cpp) ----
// Turn by `angle` (radians), scale by `scale` about the image's center, then shift by
// (shift_y, shift_x) pixels; bilinear, zero outside. [N,C,H,W] -> the same shape.
struct AffineParams {
  float scale = 1.f, angle = 0.f, shift_y = 0.f, shift_x = 0.f;
};
Tensor affine_resample(const Tensor& x, const AffineParams& params);
namespace Op {
extern const OpKind AffineResample;
}
// A map resized to height x width: [C,h,w], [h,w] or [1,C,h,w] -> [C,height,width]. Nearest
// repeats pixels; bilinear samples pixel centers (as PyTorch's align_corners=False). Not
// recorded (for display and for upsampling a Grad-CAM map, never differentiated).
enum class Interpolation { Nearest, Bilinear };
Tensor upsample(const Tensor& map, int64_t height, int64_t width, Interpolation how);

// ---- activations (ops/activation.cpp) ----
Tensor relu(const Tensor& x);
Tensor relu6(const Tensor& x);  // clamp(x, 0, 6), MobileNet's rectifier
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
// Inverted dropout: in training, zero each element with probability p and scale the
// rest by 1/(1-p); outside training it returns x unchanged.
Tensor dropout(const Tensor& x, float p, bool training, Generator& gen);
namespace Op {
extern const OpKind ReLU, ReLU6, Sigmoid, Tanh, Dropout;
}

// ---- layers (ops/linear.cpp, ops/conv.cpp, ops/pool.cpp) ----
// matmul: [M,K] x [K,N] -> [M,N]; linear: x [N,in] W^T [in,out] + b
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// extra_padding: zeros below and to the right on top of `padding` (TensorFlow's SAME padding
// with stride 2 puts its odd row and column there), read as zeros, never copied.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), Pair2 stride = 1,
              Pair2 padding = 0, Pair2 dilation = 1, int64_t groups = 1, Pair2 extra_padding = 0);
// stride 0 means "equal to the kernel", as in PyTorch.
Tensor max_pool2d(const Tensor& x, Pair2 kernel, Pair2 stride = 0, Pair2 padding = 0);
Tensor avg_pool2d(const Tensor& x, Pair2 kernel, Pair2 stride = 0, Pair2 padding = 0);
Tensor adaptive_avg_pool2d(const Tensor& x, Pair2 output_size);
namespace Op {
extern const OpKind Matmul, Linear, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d;
}

// ---- softmax and losses (ops/loss.cpp); losses are means over the batch ----
Tensor log_softmax(const Tensor& x, int axis = -1);
Tensor softmax(const Tensor& x, int axis = -1);
Tensor cross_entropy(const Tensor& logits, const std::vector<int64_t>& labels);  // logits [N,C]
Tensor nll(const Tensor& log_probs, const std::vector<int64_t>& labels);         // [N,C]
Tensor mse(const Tensor& prediction, const Tensor& target);
namespace Op {
extern const OpKind LogSoftmax, Softmax, CrossEntropy, Nll, Mse;
}

// ---- helpers that are not ops (ops/loss.cpp): nothing is recorded ----
// The index of the largest value in each row of scores [N, C] (the first one on ties).
std::vector<int64_t> argmax(const Tensor& scores);
// A seed for backward: zeros of `shape` with 1 at row n, column targets[n] of each row
// (shape [N, C], one target per row): the gradient of sum_n score[n, target[n]].
Tensor one_hot(const Shape& shape, const std::vector<int64_t>& targets);

// ---- the swappable rectifier backward rules (ops/activation.cpp) ----
// Each is a BackwardRule value: hand one to an OverrideBackward guard or to an explain
// method, or write your own with the same signature. Each serves both rectifiers: the
// forward mask is "x passed through": x > 0 for ReLU, 0 < x < 6 for ReLU6.
namespace rules {
// vanilla:   dx = mask(x) * g            the true gradient (each rectifier's default)
// deconvnet: dx = max(g, 0)              Zeiler & Fergus: a ReLU applied to the signal going back
// guided:    dx = mask(x) * max(g, 0)    Springenberg et al.: both masks at once
std::vector<Tensor> vanilla_relu(const Entry& entry, const Tensor& grad_output);
std::vector<Tensor> deconvnet_relu(const Entry& entry, const Tensor& grad_output);
std::vector<Tensor> guided_relu(const Entry& entry, const Tensor& grad_output);
}  // namespace rules

}  // namespace tg
