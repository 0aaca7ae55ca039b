#include "tinygrad-cpp/models/tflite.h"

#include <flatbuffers/flatbuffers.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "tflite_generated.h"
#include "tinygrad-cpp/data/io.h"

namespace tg::models {

std::pair<int64_t, int64_t> same_padding(int64_t in, int64_t kernel, int64_t stride, int64_t dilation) {
  const int64_t out = (in + stride - 1) / stride;
  const int64_t span = (kernel - 1) * dilation + 1;
  const int64_t total = std::max<int64_t>(0, (out - 1) * stride + span - in);
  return {total / 2, total - total / 2};
}

namespace {

constexpr int64_t kMaxTensorElements = int64_t{1} << 28;  // 1 GB of floats
constexpr int64_t kMaxIntConstant = 64;  // INT32 constants are shapes, axes and paddings

// What the importer knows about one of the file's tensors.
struct Slot {
  enum class Kind { Unknown, Constant, Activation } kind = Kind::Unknown;
  Shape shape;                  // as the file declares it (NHWC for images); an activation's as computed
  Tensor constant;              // Constant: float values in the file's layout
  std::vector<int32_t> ints;    // Constant INT32 (shapes, axes, paddings)
  int value = -1;               // Activation: the graph value
  bool nchw = false;            // Activation: a 4-D NHWC tensor held as NCHW
};

float half_to_float(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float v;
  if (exponent == 0) v = std::ldexp(static_cast<float>(mantissa), -24);
  else if (exponent == 31) v = mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else v = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  return sign ? -v : v;
}

// The format's name of a builtin operator code (tflite.fbs's BuiltinOperator enum).
std::string builtin_name(int code) {
  const char* name = tflite::EnumNameBuiltinOperator(static_cast<tflite::BuiltinOperator>(code));
  return name && *name ? name : fmt::format("builtin code {}", code);
}

// An NCHW value in the file's NHWC layout.
Tensor to_nhwc(const Tensor& t) { return permute(t, {0, 2, 3, 1}); }
int64_t nchw_axis(int64_t nhwc_axis) { return nhwc_axis == 0 ? 0 : nhwc_axis == 3 ? 1 : nhwc_axis + 1; }

// Output length of a window of `span` sliding by `stride` over `in` plus `padding`; 0 when it does not fit.
int64_t windows(int64_t in, int64_t padding, int64_t span, int64_t stride) {
  return in + padding < span ? 0 : (in + padding - span) / stride + 1;
}

class Importer {
 public:
  Importer(const uint8_t* data, size_t size, std::string label, ImportLimits limits)
      : data_(data), size_(size), label_(std::move(label)), limits_(limits) {}
  std::shared_ptr<models::Graph> run();

 private:
  using Handler = void (Importer::*)(const tflite::Operator& op, int output);
  // The supported operators, by the format's code: the one place a handler is named.
  static const std::map<tflite::BuiltinOperator, Handler>& handlers();

  [[noreturn]] void fail(const std::string& what) const { throw Error(label_ + ": " + what); }
  const tflite::Tensor& tensor(int index) const;
  std::string tensor_label(int index) const;
  Slot& slot(int index, const char* op, const char* role);
  Slot& activation(int index, const char* op, const char* role);
  Slot& constant(int index, const char* op, const char* role);
  const Tensor& decoded(uint32_t buffer, const flatbuffers::Vector<uint8_t>& bytes, tflite::TensorType type, int index);
  std::string layer_name(int output_tensor);
  std::string unique(std::string name);
  // A graph node whose output has `shape`, charged to the forward pass's memory budget.
  int node(const std::string& name, const char* kind, std::vector<int> inputs, Graph::Function function, const Shape& shape);
  // A value in the file's own layout (NHWC, not NCHW).
  int file_layout(int index, const char* op);
  // `shape` is what the operator computes, in the file's layout: checked against the declared one.
  void set_activation(int index, int value, bool nchw, const Shape& shape);
  int fused(int value, tflite::Activation activation, const std::string& name, bool nchw, int output_tensor, const Shape& shape);
  void convolution(const tflite::Operator& op, int output, bool depthwise);
  void pool(const tflite::Operator& op, int output, bool max_pool);
  void unary(const tflite::Operator& op, int output, const char* suffix, const char* kind, Tensor (*function)(const Tensor&));
  std::pair<int64_t, int64_t> padding(tflite::Padding padding, const char* op, int64_t in, int64_t kernel, int64_t stride,
                                      int64_t dilation) const;

  void handle_add(const tflite::Operator& op, int output);
  void handle_average_pool_2d(const tflite::Operator& op, int output) { pool(op, output, false); }
  void handle_concatenation(const tflite::Operator& op, int output);
  void handle_conv_2d(const tflite::Operator& op, int output) { convolution(op, output, false); }
  void handle_depthwise_conv_2d(const tflite::Operator& op, int output) { convolution(op, output, true); }
  void handle_dequantize(const tflite::Operator& op, int output);
  void handle_fully_connected(const tflite::Operator& op, int output);
  void handle_logistic(const tflite::Operator& op, int output) { unary(op, output, "", "sigmoid", sigmoid); }
  void handle_max_pool_2d(const tflite::Operator& op, int output) { pool(op, output, true); }
  void handle_mean(const tflite::Operator& op, int output);
  void handle_pad(const tflite::Operator& op, int output);
  void handle_relu(const tflite::Operator& op, int output) { unary(op, output, "/relu", "relu", relu); }
  void handle_relu6(const tflite::Operator& op, int output) { unary(op, output, "/relu6", "relu6", relu6); }
  void handle_reshape(const tflite::Operator& op, int output);
  void handle_softmax(const tflite::Operator& op, int output);

  const uint8_t* data_;
  size_t size_;
  std::string label_;
  ImportLimits limits_;
  const tflite::Model* model_ = nullptr;
  const tflite::SubGraph* graph_ = nullptr;
  std::vector<Slot> slots_;
  std::shared_ptr<models::Graph> out_ = std::make_shared<models::Graph>();
  std::set<std::string> names_;
  std::map<std::string, int> next_suffix_;  // a repeated name's next "#k" to try
  std::map<std::pair<uint32_t, tflite::TensorType>, Tensor> buffers_;  // decoded once, shared by its tensors
  std::map<std::tuple<const float*, Shape, bool>, Tensor> weights_;  // a filter as OIHW, by its values, shape, depthwise
  int64_t forward_bytes_ = 0;  // the activations one forward pass holds
  int64_t input_height_ = 0;
  std::string cam_layer_;  // the last rectifier whose map keeps at least 1/16 of the input's height
};

const std::map<tflite::BuiltinOperator, Importer::Handler>& Importer::handlers() {
  using B = tflite::BuiltinOperator;
  static const std::map<B, Handler> table = {
      {B::ADD, &Importer::handle_add},
      {B::AVERAGE_POOL_2D, &Importer::handle_average_pool_2d},
      {B::CONCATENATION, &Importer::handle_concatenation},
      {B::CONV_2D, &Importer::handle_conv_2d},
      {B::DEPTHWISE_CONV_2D, &Importer::handle_depthwise_conv_2d},
      {B::DEQUANTIZE, &Importer::handle_dequantize},
      {B::FULLY_CONNECTED, &Importer::handle_fully_connected},
      {B::LOGISTIC, &Importer::handle_logistic},
      {B::MAX_POOL_2D, &Importer::handle_max_pool_2d},
      {B::MEAN, &Importer::handle_mean},
      {B::PAD, &Importer::handle_pad},
      {B::RELU, &Importer::handle_relu},
      {B::RELU6, &Importer::handle_relu6},
      {B::RESHAPE, &Importer::handle_reshape},
      {B::SOFTMAX, &Importer::handle_softmax},
  };
  return table;
}

const tflite::Tensor& Importer::tensor(int index) const {
  if (index < 0 || static_cast<size_t>(index) >= slots_.size())
    fail(fmt::format("tensor index {} out of range (the graph has {} tensors)", index, slots_.size()));
  return *graph_->tensors()->Get(static_cast<flatbuffers::uoffset_t>(index));
}

std::string Importer::tensor_label(int index) const {
  const tflite::Tensor& t = tensor(index);
  return t.name() ? fmt::format("tensor {} ('{}')", index, printable(t.name()->str())) : fmt::format("tensor {}", index);
}

// A buffer's values as floats, decoded once however many tensors name it; non-finite values refused.
const Tensor& Importer::decoded(uint32_t buffer, const flatbuffers::Vector<uint8_t>& bytes, tflite::TensorType type, int index) {
  auto [it, inserted] = buffers_.try_emplace({buffer, type});
  if (!inserted) return it->second;
  const size_t element = type == tflite::TensorType::FLOAT16 ? 2 : 4;
  const int64_t n = static_cast<int64_t>(bytes.size() / element);
  Tensor t = Tensor::empty({n});
  const uint8_t* p = bytes.data();
  float* to = t.data();
  for (int64_t i = 0; i < n; ++i) {
    if (type == tflite::TensorType::FLOAT32) {
      std::memcpy(to + i, p + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      to[i] = half_to_float(h);
    }
    if (!std::isfinite(to[i]))
      fail(fmt::format("{} holds a non-finite weight ({}) at element {}", tensor_label(index), to[i], i));
  }
  t.impl()->requires_grad = false;
  return it->second = t;
}

Slot& Importer::slot(int index, const char* op, const char* role) {
  if (index < 0 || static_cast<size_t>(index) >= slots_.size())
    fail(fmt::format("{}: its {} is tensor {}, out of range (the graph has {} tensors)", op, role, index, slots_.size()));
  Slot& s = slots_[index];
  if (s.kind != Slot::Kind::Unknown) return s;
  // A tensor with data in a buffer is a constant: read it now, checking its size.
  const tflite::Tensor& t = tensor(index);
  const uint32_t b = t.buffer();
  const auto* buffers = model_->buffers();
  const flatbuffers::Vector<uint8_t>* bytes = nullptr;
  if (b != 0) {
    if (!buffers || b >= buffers->size()) fail(fmt::format("tensor {} names buffer {}, which does not exist", index, b));
    bytes = buffers->Get(b)->data();
  }
  if (!bytes || bytes->size() == 0)
    fail(fmt::format("{}: its {} (tensor {}) is neither a constant nor made by an earlier operator", op, role, index));
  const int64_t n = shape_numel(s.shape);
  const tflite::TensorType type = t.type();
  const size_t element = type == tflite::TensorType::FLOAT16 ? 2 : 4;
  if (type != tflite::TensorType::FLOAT32 && type != tflite::TensorType::FLOAT16 && type != tflite::TensorType::INT32)
    fail(fmt::format("tensor {} has type {}; only FLOAT32, FLOAT16 and INT32 are read", index,
                     tflite::EnumNameTensorType(type)));
  if (bytes->size() != static_cast<size_t>(n) * element)
    fail(fmt::format("tensor {} {} needs {} bytes, its buffer holds {}", index, shape_str(s.shape), n * element,
                     bytes->size()));
  s.kind = Slot::Kind::Constant;
  if (type == tflite::TensorType::INT32) {
    if (n > kMaxIntConstant)
      fail(fmt::format("{}: its {} ({}) is an INT32 constant of {} values; at most {} are read (shapes, axes, paddings)",
                       op, role, tensor_label(index), n, kMaxIntConstant));
    s.ints.resize(static_cast<size_t>(n));
    std::memcpy(s.ints.data(), bytes->data(), static_cast<size_t>(n) * 4);
  } else {
    NoGrad no_grad;
    s.constant = reshape(decoded(b, *bytes, type, index), s.shape);  // a view: tensors sharing a buffer share it
  }
  s.nchw = false;
  return s;
}

Slot& Importer::activation(int index, const char* op, const char* role) {
  Slot& s = slot(index, op, role);
  if (s.kind != Slot::Kind::Activation)
    fail(fmt::format("{}: its {} (tensor {}) is a constant; only computed values are supported there", op, role, index));
  return s;
}

Slot& Importer::constant(int index, const char* op, const char* role) {
  Slot& s = slot(index, op, role);
  if (s.kind != Slot::Kind::Constant)
    fail(fmt::format("{}: its {} (tensor {}) must be a constant in the file", op, role, index));
  return s;
}

// The first of name, name#2, name#3, ... not taken; each candidate is tried once over the whole import.
std::string Importer::unique(std::string name) {
  if (name.empty()) name = "layer";
  if (names_.insert(name).second) return name;
  int& k = next_suffix_.try_emplace(name, 2).first->second;
  std::string candidate = fmt::format("{}#{}", name, k++);
  while (!names_.insert(candidate).second) candidate = fmt::format("{}#{}", name, k++);
  return candidate;
}

// The tensor's name up to the first ';' (converters join fused names with ';'), without the
// suffixes that name a part of the layer rather than the layer.
std::string Importer::layer_name(int output_tensor) {
  const tflite::Tensor& t = tensor(output_tensor);
  std::string name = t.name() ? t.name()->str() : fmt::format("tensor_{}", output_tensor);
  name = name.substr(0, name.find(';'));
  for (const char* suffix : {"/Relu6", "/Relu", "/BiasAdd", "/BatchNorm/FusedBatchNormV3", "/BatchNorm/FusedBatchNorm"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) name.resize(name.size() - s.size());
  }
  return name;
}

int Importer::node(const std::string& name, const char* kind, std::vector<int> inputs, Graph::Function function,
                   const Shape& shape) {
  const int64_t n = shape_numel(shape);
  if (n > kMaxTensorElements || forward_bytes_ + 4 * n > limits_.forward_bytes)
    fail(fmt::format("layer '{}' ({} {}) would bring one forward pass to {} MB of activations; the limit is {} MB",
                     printable(name), kind, shape_str(shape), (forward_bytes_ + 4 * n) >> 20, limits_.forward_bytes >> 20));
  forward_bytes_ += 4 * n;
  return out_->add(name, kind, std::move(inputs), std::move(function));
}

void Importer::set_activation(int index, int value, bool nchw, const Shape& shape) {
  if (index < 0 || static_cast<size_t>(index) >= slots_.size()) fail(fmt::format("output tensor {} out of range", index));
  Slot& s = slots_[index];
  if (s.kind != Slot::Kind::Unknown) fail(fmt::format("tensor {} is written twice", index));
  if (!s.shape.empty() && s.shape != shape)
    fail(fmt::format("{} is declared {}, but its operator computes {}", tensor_label(index), shape_str(s.shape), shape_str(shape)));
  s.kind = Slot::Kind::Activation;
  s.shape = shape;
  s.value = value;
  s.nchw = nchw;
}

int Importer::file_layout(int index, const char* op) {
  Slot& s = activation(index, op, "input");
  if (!s.nchw) return s.value;
  return node(unique(layer_name(index) + "/nhwc"), "to_nhwc", {s.value},
              [](const std::vector<Tensor>& in) { return to_nhwc(in[0]); }, s.shape);
}

int Importer::fused(int value, tflite::Activation activation, const std::string& name, bool nchw, int output_tensor,
                    const Shape& shape) {
  switch (activation) {
    case tflite::Activation::NONE: return value;
    case tflite::Activation::RELU:
    case tflite::Activation::RELU6: {
      const bool six = activation == tflite::Activation::RELU6;
      const std::string layer = unique(name + (six ? "/relu6" : "/relu"));
      if (nchw && shape.size() == 4 && shape[1] * 16 >= input_height_) cam_layer_ = layer;
      return node(layer, six ? "relu6" : "relu", {value},
                  [six](const std::vector<Tensor>& in) { return six ? relu6(in[0]) : relu(in[0]); }, shape);
    }
    default:
      const char* known = tflite::EnumNameActivation(activation);
      fail(fmt::format("tensor {}: fused activation {} is not supported", output_tensor,
                       *known ? std::string(known) : std::to_string(static_cast<int>(activation))));
  }
}

// The padding {before, after} along one axis; SAME and VALID are the format's only values.
std::pair<int64_t, int64_t> Importer::padding(tflite::Padding padding, const char* op, int64_t in, int64_t kernel,
                                              int64_t stride, int64_t dilation) const {
  if (padding == tflite::Padding::SAME) return same_padding(in, kernel, stride, dilation);
  if (padding == tflite::Padding::VALID) return {0, 0};
  fail(fmt::format("{}: padding {} is neither SAME (0) nor VALID (1)", op, static_cast<int>(padding)));
}

void Importer::convolution(const tflite::Operator& op, int output, bool depthwise) {
  const char* what = depthwise ? "DEPTHWISE_CONV_2D" : "CONV_2D";
  const auto* inputs = op.inputs();
  if (inputs->size() < 2) fail(fmt::format("{}: wrong number of inputs or outputs", what));
  const Slot& x = activation(inputs->Get(0), what, "input");
  const Slot& filter = constant(inputs->Get(1), what, "filter");
  const bool has_bias = inputs->size() > 2 && inputs->Get(2) >= 0;
  const Slot* bias = has_bias ? &constant(inputs->Get(2), what, "bias") : nullptr;
  if (x.shape.size() != 4 || !x.nchw || filter.shape.size() != 4 || filter.constant.numel() == 0)
    fail(fmt::format("{}: input {} and filter {} must both be 4-D", what, shape_str(x.shape), shape_str(filter.shape)));
  tflite::Padding pad_mode;
  int stride_h, stride_w, dilation_h, dilation_w;
  tflite::Activation act;
  int64_t multiplier = 1;
  if (depthwise) {
    const auto* o = op.builtin_options_as_DepthwiseConv2DOptions();
    if (!o) fail("DEPTHWISE_CONV_2D without its options");
    pad_mode = o->padding(), stride_h = o->stride_h(), stride_w = o->stride_w(), act = o->fused_activation_function();
    dilation_h = o->dilation_h_factor(), dilation_w = o->dilation_w_factor();
    multiplier = o->depth_multiplier();
    if (multiplier < 1 || multiplier > 4096) fail(fmt::format("DEPTHWISE_CONV_2D: depth multiplier {} is not 1 to 4096", multiplier));
  } else {
    const auto* o = op.builtin_options_as_Conv2DOptions();
    if (!o) fail("CONV_2D without its options");
    pad_mode = o->padding(), stride_h = o->stride_h(), stride_w = o->stride_w(), act = o->fused_activation_function();
    dilation_h = o->dilation_h_factor(), dilation_w = o->dilation_w_factor();
  }
  if (stride_h < 1 || stride_w < 1 || dilation_h < 1 || dilation_w < 1 || stride_h > 64 || stride_w > 64 ||
      dilation_h > 64 || dilation_w > 64)
    fail(fmt::format("{}: stride {}x{} or dilation {}x{} out of range", what, stride_h, stride_w, dilation_h, dilation_w));
  const int64_t channels = x.shape[3];
  // OHWI -> OIHW; depthwise 1HWC -> C,1,H,W with one group per input channel.
  Tensor weight;
  int64_t groups = 1;
  {
    NoGrad no_grad;
    if (depthwise) {
      if (filter.shape[0] != 1 || filter.shape[3] != channels * multiplier)
        fail(fmt::format("DEPTHWISE_CONV_2D: filter {} does not fit {} input channels", shape_str(filter.shape), channels));
      groups = channels;
    } else if (filter.shape[3] != channels) {
      fail(fmt::format("CONV_2D: filter {} expects {} input channels, the input has {}", shape_str(filter.shape),
                       filter.shape[3], channels));
    }
    // Convolutions reading one buffer in one layout share one permuted copy of it.
    Tensor& permuted = weights_[{filter.constant.data(), filter.shape, depthwise}];
    if (!permuted.defined()) permuted = permute(filter.constant, depthwise ? std::vector<int64_t>{3, 0, 1, 2} : std::vector<int64_t>{0, 3, 1, 2});
    weight = permuted;
  }
  const int64_t out_channels = weight.dim(0);
  Tensor b;
  if (bias) {
    if (bias->shape != Shape{out_channels}) fail(fmt::format("{}: bias {} for {} output channels", what, shape_str(bias->shape), out_channels));
    b = bias->constant;
  }
  const int64_t kh = weight.dim(2), kw = weight.dim(3);
  const auto pad_h = padding(pad_mode, what, x.shape[1], kh, stride_h, dilation_h);
  const auto pad_w = padding(pad_mode, what, x.shape[2], kw, stride_w, dilation_w);
  const Shape shape = {x.shape[0], windows(x.shape[1], pad_h.first + pad_h.second, (kh - 1) * dilation_h + 1, stride_h),
                       windows(x.shape[2], pad_w.first + pad_w.second, (kw - 1) * dilation_w + 1, stride_w), out_channels};
  if (shape[1] < 1 || shape[2] < 1)
    fail(fmt::format("{}: a {}x{} filter does not fit input {}", what, kh, kw, shape_str(x.shape)));
  const std::string name = unique(layer_name(output));
  out_->add_parameter(name + ".weight", weight);
  if (b.defined()) out_->add_parameter(name + ".bias", b);
  // SAME padding puts the odd row and column after (same_padding: before <= after), which the
  // convolution reads as extra zeros below and to the right: no padded copy of the input.
  const Pair2 stride{stride_h, stride_w}, dilation{dilation_h, dilation_w}, symmetric_pad{pad_h.first, pad_w.first};
  const Pair2 extra_pad{pad_h.second - pad_h.first, pad_w.second - pad_w.first};
  const int value = node(name, depthwise ? "depthwise_conv2d" : "conv2d", {x.value}, [=](const std::vector<Tensor>& in) {
    return conv2d(in[0], weight, b, stride, symmetric_pad, dilation, groups, extra_pad);
  }, shape);
  out_->set_convolution(value, {.weight = weight, .bias = b, .stride_h = stride_h, .stride_w = stride_w,
                                .pad_top = pad_h.first, .pad_left = pad_w.first, .pad_bottom = pad_h.second,
                                .pad_right = pad_w.second, .dilation_h = dilation_h, .dilation_w = dilation_w,
                                .groups = groups});
  set_activation(output, fused(value, act, name, true, output, shape), true, shape);
}

void Importer::pool(const tflite::Operator& op, int output, bool max_pool) {
  const char* what = max_pool ? "MAX_POOL_2D" : "AVERAGE_POOL_2D";
  const auto* o = op.builtin_options_as_Pool2DOptions();
  if (!o || op.inputs()->size() != 1) fail(fmt::format("{}: needs one input, one output and its options", what));
  const Slot& x = activation(op.inputs()->Get(0), what, "input");
  if (x.shape.size() != 4 || !x.nchw) fail(fmt::format("{}: input {} must be 4-D", what, shape_str(x.shape)));
  const int64_t kh = o->filter_height(), kw = o->filter_width(), sh = o->stride_h(), sw = o->stride_w();
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || kh > 4096 || kw > 4096 || sh > 4096 || sw > 4096)
    fail(fmt::format("{}: filter {}x{} stride {}x{} out of range", what, kh, kw, sh, sw));
  const auto ph = padding(o->padding(), what, x.shape[1], kh, sh, 1);
  const auto pw = padding(o->padding(), what, x.shape[2], kw, sw, 1);
  if (!max_pool && (ph.first || ph.second || pw.first || pw.second))
    fail("AVERAGE_POOL_2D with SAME padding that pads is not supported (TensorFlow leaves the padding out of the average)");
  const Shape shape = {x.shape[0], windows(x.shape[1], ph.first + ph.second, kh, sh),
                       windows(x.shape[2], pw.first + pw.second, kw, sw), x.shape[3]};
  if (shape[1] < 1 || shape[2] < 1) fail(fmt::format("{}: a {}x{} window does not fit input {}", what, kh, kw, shape_str(x.shape)));
  const std::string name = unique(layer_name(output));
  int value = x.value;
  if (ph.first || ph.second || pw.first || pw.second) {  // padding never wins a max
    const std::vector<int64_t> pads = {0, 0, 0, 0, ph.first, ph.second, pw.first, pw.second};
    const Shape padded = {x.shape[0], x.shape[3], x.shape[1] + ph.first + ph.second, x.shape[2] + pw.first + pw.second};
    value = node(unique(name + "/pad"), "pad", {value}, [pads](const std::vector<Tensor>& in) {
      return pad(in[0], pads, -std::numeric_limits<float>::max());
    }, padded);
  }
  const Pair2 kernel{kh, kw}, stride{sh, sw};
  value = node(name, max_pool ? "max_pool2d" : "avg_pool2d", {value}, [=](const std::vector<Tensor>& in) {
    return max_pool ? max_pool2d(in[0], kernel, stride) : avg_pool2d(in[0], kernel, stride);
  }, shape);
  set_activation(output, fused(value, o->fused_activation_function(), name, true, output, shape), true, shape);
}

// LOGISTIC, RELU, RELU6: one input, the same shape out.
void Importer::unary(const tflite::Operator& op, int output, const char* suffix, const char* kind,
                     Tensor (*function)(const Tensor&)) {
  const Slot& x = activation(op.inputs()->Get(0), kind, "input");
  return set_activation(output, node(unique(layer_name(output) + suffix), kind, {x.value}, [function](const std::vector<Tensor>& in) {
    return function(in[0]);
  }, x.shape), x.nchw, x.shape);
}

// fp16 weights, read as floats.
void Importer::handle_dequantize(const tflite::Operator& op, int output) {
  const auto* inputs = op.inputs();
  if (inputs->size() != 1) fail("DEQUANTIZE: needs one input");
  const Slot& in = constant(inputs->Get(0), "DEQUANTIZE", "input");
  if (!in.constant.defined()) fail("DEQUANTIZE: only float16 constants can be dequantized");
  if (output < 0 || static_cast<size_t>(output) >= slots_.size()) fail("DEQUANTIZE: output out of range");
  Slot& s = slots_[output];
  if (s.kind != Slot::Kind::Unknown) fail(fmt::format("tensor {} is written twice", output));
  if (s.shape != in.shape) fail(fmt::format("DEQUANTIZE: output {} differs from input {}", shape_str(s.shape), shape_str(in.shape)));
  s.kind = Slot::Kind::Constant;
  s.constant = in.constant;
}

void Importer::handle_add(const tflite::Operator& op, int output) {
  const auto* inputs = op.inputs();
  if (inputs->size() != 2) fail("ADD: needs two inputs");
  const auto* o = op.builtin_options_as_AddOptions();
  const tflite::Activation act = o ? o->fused_activation_function() : tflite::Activation::NONE;
  Slot& a = slot(inputs->Get(0), "ADD", "first input");
  Slot& b = slot(inputs->Get(1), "ADD", "second input");
  if (a.kind != Slot::Kind::Activation || b.kind != Slot::Kind::Activation)
    fail("ADD: adding a constant is not supported; both inputs must be computed");
  if (a.shape != b.shape) fail(fmt::format("ADD: shapes {} and {} differ", shape_str(a.shape), shape_str(b.shape)));
  const bool nchw = a.nchw && b.nchw;
  const Shape shape = a.shape;
  const int va = nchw ? a.value : file_layout(inputs->Get(0), "ADD");
  const int vb = nchw ? b.value : file_layout(inputs->Get(1), "ADD");
  const std::string name = unique(layer_name(output));
  const int value = node(name, "add", {va, vb}, [](const std::vector<Tensor>& in) { return add(in[0], in[1]); }, shape);
  return set_activation(output, fused(value, act, name, nchw, output, shape), nchw, shape);
}

void Importer::handle_reshape(const tflite::Operator& op, int output) {
  const auto* inputs = op.inputs();
  Shape target;
  if (inputs->size() >= 2 && inputs->Get(1) >= 0) {
    const Slot& shape = constant(inputs->Get(1), "RESHAPE", "shape");
    target.assign(shape.ints.begin(), shape.ints.end());
  } else if (const auto* o = op.builtin_options_as_ReshapeOptions(); o && o->new_shape()) {
    target.assign(o->new_shape()->begin(), o->new_shape()->end());
  } else {
    target = tensor(output).shape() ? Shape(tensor(output).shape()->begin(), tensor(output).shape()->end()) : Shape{};
  }
  if (target.empty() || target.size() > 8) fail("RESHAPE: no usable target shape");
  const Slot& x = activation(inputs->Get(0), "RESHAPE", "input");
  // The target as reshape() resolves it (batch 1 read as the input's batch, one -1 inferred), checked here.
  Shape shape = target;
  if (x.shape.size() > 0 && shape[0] == 1) shape[0] = x.shape[0];
  try {
    shape = reshape_target(x.shape, shape);
  } catch (const Error& e) {
    fail(fmt::format("RESHAPE of {}: {}", tensor_label(inputs->Get(0)), e.what()));
  }
  const int value = file_layout(inputs->Get(0), "RESHAPE");
  const std::string name = unique(layer_name(output));
  return set_activation(output, node(name, "reshape", {value}, [target](const std::vector<Tensor>& in) {
    Shape batched = target;
    if (in[0].ndim() > 0 && batched[0] == 1) batched[0] = in[0].dim(0);  // any batch
    return reshape(in[0], batched);
  }, shape), false, shape);
}

void Importer::handle_concatenation(const tflite::Operator& op, int output) {
  const auto* inputs = op.inputs();
  const auto* o = op.builtin_options_as_ConcatenationOptions();
  if (!o) fail("CONCATENATION: needs inputs and its options");
  const Slot& first = activation(inputs->Get(0), "CONCATENATION", "input");
  const int64_t rank = static_cast<int64_t>(first.shape.size());
  int64_t axis = o->axis() < 0 ? o->axis() + rank : o->axis();
  if (axis < 0 || axis >= rank) fail(fmt::format("CONCATENATION: axis {} for rank {}", o->axis(), rank));
  Shape shape = first.shape;
  shape[axis] = 0;
  const Shape first_without_axis = shape;
  bool all_nchw = rank == 4;
  for (size_t k = 0; k < inputs->size(); ++k) {
    const Slot& x = activation(inputs->Get(static_cast<flatbuffers::uoffset_t>(k)), "CONCATENATION", "input");
    Shape other = x.shape;
    if (other.size() == shape.size()) other[axis] = 0;
    if (other != first_without_axis)
      fail(fmt::format("CONCATENATION: input {} {} does not fit {} along axis {}", k, shape_str(x.shape), shape_str(first.shape), axis));
    shape[axis] += x.shape[axis];
    all_nchw = all_nchw && x.nchw;
  }
  std::vector<int> values;
  for (int i : *inputs) values.push_back(all_nchw ? slots_[i].value : file_layout(i, "CONCATENATION"));
  const int at = static_cast<int>(all_nchw ? nchw_axis(axis) : axis);
  const std::string name = unique(layer_name(output));
  const int value = node(name, "concat", values, [at](const std::vector<Tensor>& in) { return cat(in, at); }, shape);
  return set_activation(output, fused(value, o->fused_activation_function(), name, all_nchw, output, shape), all_nchw, shape);
}

void Importer::handle_softmax(const tflite::Operator& op, int output) {
  const Slot& x = activation(op.inputs()->Get(0), "SOFTMAX", "input");
  if (x.shape.empty()) fail("SOFTMAX: its input is a scalar");
  const auto* o = op.builtin_options_as_SoftmaxOptions();
  const float beta = o ? o->beta() : 1.f;
  if (!(beta > 0.f) || !std::isfinite(beta)) fail("SOFTMAX: beta must be positive");
  const int axis = x.nchw ? 1 : -1;
  return set_activation(output, node(unique(layer_name(output)), "softmax", {x.value}, [beta, axis](const std::vector<Tensor>& in) {
    return softmax(beta == 1.f ? in[0] : mul(in[0], Tensor::scalar(beta)), axis);
  }, x.shape), x.nchw, x.shape);
}

void Importer::handle_mean(const tflite::Operator& op, int output) {
  const auto* inputs = op.inputs();
  if (inputs->size() != 2) fail("MEAN: needs an input and its axes");
  const Slot& axes_slot = constant(inputs->Get(1), "MEAN", "axes");
  const auto* o = op.builtin_options_as_ReducerOptions();
  const bool keep = o && o->keep_dims();
  const Slot& x = activation(inputs->Get(0), "MEAN", "input");
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  std::vector<int64_t> axes;
  std::vector<bool> reduced(static_cast<size_t>(rank), false);
  for (int32_t a : axes_slot.ints) {
    const int64_t axis = a < 0 ? a + rank : a;
    if (axis < 0 || axis >= rank || reduced[static_cast<size_t>(axis)]) fail(fmt::format("MEAN: axis {} for rank {} (or repeated)", a, rank));
    reduced[static_cast<size_t>(axis)] = true;
    axes.push_back(x.nchw && keep ? nchw_axis(axis) : axis);
  }
  Shape shape;
  for (int64_t a = 0; a < rank; ++a) {
    if (!reduced[static_cast<size_t>(a)]) shape.push_back(x.shape[a]);
    else if (keep) shape.push_back(1);
  }
  const int value = x.nchw && keep ? x.value : file_layout(inputs->Get(0), "MEAN");
  return set_activation(output, node(unique(layer_name(output)), "mean", {value}, [axes, keep](const std::vector<Tensor>& in) {
    return mean(in[0], axes, keep);
  }, shape), x.nchw && keep, shape);
}

void Importer::handle_fully_connected(const tflite::Operator& op, int output) {
  const auto* inputs = op.inputs();
  if (inputs->size() < 2) fail("FULLY_CONNECTED: needs an input and weights");
  const Slot& w = constant(inputs->Get(1), "FULLY_CONNECTED", "weights");
  if (w.shape.size() != 2 || !w.constant.defined() || w.shape[1] < 1) fail("FULLY_CONNECTED: weights must be a 2-D float constant");
  Tensor b;
  if (inputs->size() > 2 && inputs->Get(2) >= 0) {
    b = constant(inputs->Get(2), "FULLY_CONNECTED", "bias").constant;
    if (!b.defined() || b.shape() != Shape{w.shape[0]}) fail("FULLY_CONNECTED: bias does not match the weights");
  }
  const auto* o = op.builtin_options_as_FullyConnectedOptions();
  const tflite::Activation act = o ? o->fused_activation_function() : tflite::Activation::NONE;
  const Slot& x = activation(inputs->Get(0), "FULLY_CONNECTED", "input");
  const int64_t in_features = w.shape[1], n = shape_numel(x.shape);
  if (n % in_features != 0)
    fail(fmt::format("FULLY_CONNECTED: input {} does not split into rows of {} features", shape_str(x.shape), in_features));
  const Shape shape = {n / in_features, w.shape[0]};
  const int value = file_layout(inputs->Get(0), "FULLY_CONNECTED");
  const std::string name = unique(layer_name(output));
  const Tensor weight = w.constant;
  out_->add_parameter(name + ".weight", weight);
  if (b.defined()) out_->add_parameter(name + ".bias", b);
  const int result = node(name, "linear", {value}, [weight, b, in_features](const std::vector<Tensor>& in) {
    return linear(reshape(in[0], {-1, in_features}), weight, b);
  }, shape);
  return set_activation(output, fused(result, act, name, false, output, shape), false, shape);
}

void Importer::handle_pad(const tflite::Operator& op, int output) {
  const auto* inputs = op.inputs();
  if (inputs->size() != 2) fail("PAD: needs an input and its paddings");
  const Slot& x = activation(inputs->Get(0), "PAD", "input");
  const Slot& p = constant(inputs->Get(1), "PAD", "paddings");
  const size_t rank = x.shape.size();
  if (p.ints.size() != 2 * rank) fail(fmt::format("PAD: {} padding values for rank {}", p.ints.size(), rank));
  std::vector<int64_t> pads(2 * rank);
  Shape shape = x.shape;
  for (size_t a = 0; a < rank; ++a) {
    const size_t to = x.nchw ? static_cast<size_t>(nchw_axis(static_cast<int64_t>(a))) : a;
    if (p.ints[2 * a] < 0 || p.ints[2 * a + 1] < 0 || p.ints[2 * a] > 64 || p.ints[2 * a + 1] > 64)
      fail("PAD: paddings must be between 0 and 64");
    pads[2 * to] = p.ints[2 * a];
    pads[2 * to + 1] = p.ints[2 * a + 1];
    shape[a] += p.ints[2 * a] + p.ints[2 * a + 1];
  }
  return set_activation(output, node(unique(layer_name(output)), "pad", {x.value}, [pads](const std::vector<Tensor>& in) {
    return pad(in[0], pads);
  }, shape), x.nchw, shape);
}

std::shared_ptr<models::Graph> Importer::run() {
  // Every offset and length is checked against the buffer before anything is read.
  if (size_ < 8 || !tflite::ModelBufferHasIdentifier(data_))
    fail("not a TFLite model (no \"TFL3\" identifier at byte 4)");
  if (size_ >= FLATBUFFERS_MAX_BUFFER_SIZE) fail("file too large for a FlatBuffer");
  flatbuffers::Verifier verifier(data_, size_, /*max_depth=*/64, /*max_tables=*/1'000'000);
  if (!tflite::VerifyModelBuffer(verifier)) fail("corrupt TFLite file (an offset or length points outside the file)");
  model_ = tflite::GetModel(data_);
  if (!model_->subgraphs() || model_->subgraphs()->size() < 1) fail("the model has no subgraph");
  graph_ = model_->subgraphs()->Get(0);
  if (!graph_->tensors() || !graph_->operators() || !graph_->inputs() || !graph_->outputs())
    fail("the main subgraph lacks tensors, operators, inputs or outputs");
  const auto* codes = model_->operator_codes();
  slots_.resize(graph_->tensors()->size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    const tflite::Tensor& t = *graph_->tensors()->Get(static_cast<flatbuffers::uoffset_t>(i));
    if (t.shape()) {
      int64_t n = 1;
      for (int32_t d : *t.shape()) {
        if (d < 0) fail(fmt::format("tensor {} has a negative dimension", i));
        slots_[i].shape.push_back(d);
        if (d > 0 && n > kMaxTensorElements / d) fail(fmt::format("tensor {} is too large", i));
        n *= d;
      }
    }
  }
  // The input: one float image [1, H, W, C].
  if (graph_->inputs()->size() != 1) fail(fmt::format("the model has {} inputs; one image input is supported", graph_->inputs()->size()));
  const int input = graph_->inputs()->Get(0);
  const tflite::Tensor& input_tensor = tensor(input);
  const Shape in_shape = slots_[input].shape;
  if (in_shape.size() != 4 || in_shape[0] != 1 || (in_shape[3] != 1 && in_shape[3] != 3) || in_shape[1] < 1 ||
      in_shape[2] < 1 || in_shape[1] > 4096 || in_shape[2] > 4096 || input_tensor.type() != tflite::TensorType::FLOAT32)
    fail(fmt::format("input {} {} is not a float image [1, H, W, 1 or 3]", input, shape_str(in_shape)));
  input_height_ = in_shape[1];
  forward_bytes_ = 4 * shape_numel(in_shape);
  slots_[input].kind = Slot::Kind::Activation;
  slots_[input].value = 0;
  slots_[input].nchw = true;

  for (const tflite::Operator* op : *graph_->operators()) {
    if (!codes || op->opcode_index() >= codes->size())
      fail(fmt::format("an operator names operator code {}, which does not exist", op->opcode_index()));
    const tflite::OperatorCode* code = codes->Get(op->opcode_index());
    const int builtin = std::max<int>(code->deprecated_builtin_code(), code->builtin_code());
    const auto handler = handlers().find(static_cast<tflite::BuiltinOperator>(builtin));
    if (handler == handlers().end()) {
      std::string supported;
      for (const auto& [known, unused] : handlers()) supported += (supported.empty() ? "" : ", ") + builtin_name(static_cast<int>(known));
      fail(fmt::format("operator {} is not supported (supported: {})", builtin_name(builtin), supported));
    }
    if (!op->inputs() || op->inputs()->size() < 1 || !op->outputs() || op->outputs()->size() != 1)
      fail(fmt::format("operator {} must have inputs and one output", builtin_name(builtin)));
    (this->*handler->second)(*op, op->outputs()->Get(0));
  }

  // The scores: the output named like class predictions, or the only one.
  const auto* outputs = graph_->outputs();
  int scores = -1;
  for (int o : *outputs) {
    const tflite::Tensor& t = tensor(o);
    const std::string name = t.name() ? t.name()->str() : "";
    if (name.find("class") != std::string::npos) scores = o;
  }
  if (scores < 0 && outputs->size() == 1) scores = outputs->Get(0);
  if (scores < 0) fail("cannot tell which output holds the class scores (none is named like \"class\")");
  const Slot& s = activation(scores, "the model", "class output");
  nn::ModelInfo info;
  info.arch = "tflite";
  info.input = {.channels = in_shape[3], .height = in_shape[1], .width = in_shape[2], .mean = std::vector<float>(in_shape[3], 0.5f),
                .std = std::vector<float>(in_shape[3], 0.5f)};
  int value = s.value;
  if (s.shape.size() == 3) {
    out_->set_output(file_layout(scores, "the model"), models::Graph::Head::MaxOverAnchors);
    for (int o : *outputs)  // a detector's box encodings: the output named like "box", [N, anchors, 4]
      if (tensor(o).name() && tensor(o).name()->str().find("box") != std::string::npos)
        out_->set_box_output(file_layout(o, "the model"));
    info.probability = nn::ModelInfo::Probability::Sigmoid;
    info.background = 0;
  } else if (s.shape.size() == 2) {
    out_->set_output(value, models::Graph::Head::Identity);
    info.probability = nn::ModelInfo::Probability::Softmax;
  } else {
    fail(fmt::format("the class output {} is neither [N, classes] nor [N, anchors, classes]", shape_str(s.shape)));
  }
  // s.shape is the computed shape (set_activation refused a declared one that differs), so
  // the class names and probabilities have as many entries as the forward pass gives scores.
  if (s.shape.back() < 1 || s.shape.back() > 100000)
    fail(fmt::format("the class output {} computes {} classes (1 to 100,000 are read)", shape_str(s.shape), s.shape.back()));
  info.classes.assign(static_cast<size_t>(s.shape.back()), "");
  info.cam_layer = cam_layer_;
  out_->set_info(info);
  return out_;
}

}  // namespace

std::shared_ptr<models::Graph> parse_tflite(const uint8_t* data, size_t size, const std::string& label,
                                            const ImportLimits& limits) {
  return Importer(data, size, label, limits).run();
}

namespace {
// One label a line, from the first of the candidate files that exists.
std::vector<std::string> read_labels(const std::string& model_path) {
  namespace fs = std::filesystem;
  const fs::path path(model_path);
  const std::string stem = path.stem().string();
  std::vector<fs::path> candidates = {path.parent_path() / (stem + "_labels.txt")};
  if (stem.rfind('_') != std::string::npos)
    candidates.push_back(path.parent_path() / (stem.substr(0, stem.rfind('_')) + "_labels.txt"));
  candidates.push_back(path.parent_path() / "labels.txt");
  for (const fs::path& candidate : candidates) {
    if (!io::file_exists(candidate.string())) continue;
    const std::vector<uint8_t> bytes = io::read_file(candidate.string(), 1 << 20);
    std::vector<std::string> labels(1);
    for (uint8_t c : bytes) {
      if (c == '\n') labels.emplace_back();
      else if (c != '\r') labels.back() += static_cast<char>(c);
    }
    if (labels.back().empty()) labels.pop_back();
    return labels;
  }
  return {};
}
}  // namespace

std::shared_ptr<models::Graph> load_tflite(const std::string& path) {
  const std::vector<uint8_t> bytes = io::read_file(path, uint64_t{1} << 30);
  std::shared_ptr<models::Graph> graph = parse_tflite(bytes.data(), bytes.size(), path);
  nn::ModelInfo info = graph->info();
  const std::vector<std::string> labels = read_labels(path);
  // A detector's class 0 is the background; its label file says "???" there.
  for (size_t i = 0; i < info.classes.size(); ++i) {
    if (i < labels.size()) info.classes[i] = labels[i];
    if (info.classes[i] == "???" || info.classes[i].empty()) info.classes[i] = i == 0 ? "background" : fmt::format("class {}", i);
  }
  graph->set_info(info);
  return graph;
}

}  // namespace tg::models
