#include "tinygrad-cpp/models/tflite.h"

#include <flatbuffers/flatbuffers.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

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

// What the importer knows about one of the file's tensors.
struct Slot {
  enum class Kind { Unknown, Constant, Activation } kind = Kind::Unknown;
  Shape shape;                  // as the file declares it (NHWC for images)
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

// The format's names of its first builtin operators (the codes of its BuiltinOperator enum).
std::string builtin_name(int code) {
  static const char* const names[] = {
      "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE",
      "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
      "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU",
      "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH",
      "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD",
      "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB",
      "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2",
      "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX"};
  if (code >= 0 && code < static_cast<int>(std::size(names))) return names[code];
  return fmt::format("builtin code {}", code);
}

// An NCHW value in the file's NHWC layout.
Tensor to_nhwc(const Tensor& t) { return permute(t, {0, 2, 3, 1}); }
int64_t nchw_axis(int64_t nhwc_axis) { return nhwc_axis == 0 ? 0 : nhwc_axis == 3 ? 1 : nhwc_axis + 1; }

class Importer {
 public:
  Importer(const uint8_t* data, size_t size, std::string label) : data_(data), size_(size), label_(std::move(label)) {}
  std::shared_ptr<models::Graph> run();

 private:
  [[noreturn]] void fail(const std::string& what) const { throw Error(label_ + ": " + what); }
  const tflite::Tensor& tensor(int index) const;
  Slot& slot(int index, const char* op, const char* role);
  Slot& activation(int index, const char* op, const char* role);
  Slot& constant(int index, const char* op, const char* role);
  std::string layer_name(int output_tensor);
  std::string unique(std::string name);
  // A value in the file's own layout (NHWC, not NCHW).
  int file_layout(int index, const char* op);
  void set_activation(int index, int value, bool nchw);
  int fused(int value, tflite::Activation activation, const std::string& name, bool nchw, int output_tensor);
  void convolution(const tflite::Operator& op, bool depthwise);
  void pool(const tflite::Operator& op, bool max_pool);
  void operation(const tflite::Operator& op, int code);

  const uint8_t* data_;
  size_t size_;
  std::string label_;
  const tflite::Model* model_ = nullptr;
  const tflite::SubGraph* graph_ = nullptr;
  std::vector<Slot> slots_;
  std::shared_ptr<models::Graph> out_ = std::make_shared<models::Graph>();
  std::vector<std::string> names_;
  int64_t input_height_ = 0;
  std::string cam_layer_;  // the last rectifier whose map keeps at least 1/16 of the input's height
};

const tflite::Tensor& Importer::tensor(int index) const {
  if (index < 0 || static_cast<size_t>(index) >= slots_.size())
    fail(fmt::format("tensor index {} out of range (the graph has {} tensors)", index, slots_.size()));
  return *graph_->tensors()->Get(static_cast<flatbuffers::uoffset_t>(index));
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
  const uint8_t* p = bytes->data();
  if (type == tflite::TensorType::INT32) {
    s.ints.resize(static_cast<size_t>(n));
    std::memcpy(s.ints.data(), p, static_cast<size_t>(n) * 4);
  } else {
    s.constant = Tensor::empty(s.shape);
    for (int64_t i = 0; i < n; ++i) {
      if (type == tflite::TensorType::FLOAT32) {
        std::memcpy(s.constant.data() + i, p + 4 * i, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        s.constant.data()[i] = half_to_float(h);
      }
    }
    s.constant.impl()->requires_grad = false;
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

std::string Importer::unique(std::string name) {
  if (name.empty()) name = "layer";
  std::string candidate = name;
  for (int k = 2; std::find(names_.begin(), names_.end(), candidate) != names_.end(); ++k)
    candidate = fmt::format("{}#{}", name, k);
  names_.push_back(candidate);
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

void Importer::set_activation(int index, int value, bool nchw) {
  if (index < 0 || static_cast<size_t>(index) >= slots_.size()) fail(fmt::format("output tensor {} out of range", index));
  Slot& s = slots_[index];
  if (s.kind != Slot::Kind::Unknown) fail(fmt::format("tensor {} is written twice", index));
  s.kind = Slot::Kind::Activation;
  s.value = value;
  s.nchw = nchw;
}

int Importer::file_layout(int index, const char* op) {
  Slot& s = activation(index, op, "input");
  if (!s.nchw) return s.value;
  return out_->add(unique(layer_name(index) + "/nhwc"), "to_nhwc", {s.value},
                   [](const std::vector<Tensor>& in) { return to_nhwc(in[0]); });
}

int Importer::fused(int value, tflite::Activation activation, const std::string& name, bool nchw, int output_tensor) {
  switch (activation) {
    case tflite::Activation::NONE: return value;
    case tflite::Activation::RELU:
    case tflite::Activation::RELU6: {
      const bool six = activation == tflite::Activation::RELU6;
      const std::string layer = unique(name + (six ? "/relu6" : "/relu"));
      const Shape& shape = slots_[output_tensor].shape;
      if (nchw && shape.size() == 4 && shape[1] * 16 >= input_height_) cam_layer_ = layer;
      return out_->add(layer, six ? "relu6" : "relu", {value},
                       [six](const std::vector<Tensor>& in) { return six ? relu6(in[0]) : relu(in[0]); });
    }
    default:
      fail(fmt::format("tensor {}: fused activation {} is not supported", output_tensor,
                       tflite::EnumNameActivation(activation)));
  }
}

void Importer::convolution(const tflite::Operator& op, bool depthwise) {
  const char* what = depthwise ? "DEPTHWISE_CONV_2D" : "CONV_2D";
  const auto* inputs = op.inputs();
  if (!inputs || inputs->size() < 2 || !op.outputs() || op.outputs()->size() != 1) fail(fmt::format("{}: wrong number of inputs or outputs", what));
  const Slot& x = activation(inputs->Get(0), what, "input");
  const Slot& filter = constant(inputs->Get(1), what, "filter");
  const bool has_bias = inputs->size() > 2 && inputs->Get(2) >= 0;
  const Slot* bias = has_bias ? &constant(inputs->Get(2), what, "bias") : nullptr;
  if (x.shape.size() != 4 || !x.nchw || filter.shape.size() != 4 || filter.constant.numel() == 0)
    fail(fmt::format("{}: input {} and filter {} must both be 4-D", what, shape_str(x.shape), shape_str(filter.shape)));
  tflite::Padding padding;
  int stride_h, stride_w, dilation_h, dilation_w;
  tflite::Activation act;
  int64_t multiplier = 1;
  if (depthwise) {
    const auto* o = op.builtin_options_as_DepthwiseConv2DOptions();
    if (!o) fail("DEPTHWISE_CONV_2D without its options");
    padding = o->padding(), stride_h = o->stride_h(), stride_w = o->stride_w(), act = o->fused_activation_function();
    dilation_h = o->dilation_h_factor(), dilation_w = o->dilation_w_factor();
    multiplier = o->depth_multiplier();
  } else {
    const auto* o = op.builtin_options_as_Conv2DOptions();
    if (!o) fail("CONV_2D without its options");
    padding = o->padding(), stride_h = o->stride_h(), stride_w = o->stride_w(), act = o->fused_activation_function();
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
      if (filter.shape[0] != 1 || filter.shape[3] != channels * std::max<int64_t>(multiplier, 1))
        fail(fmt::format("DEPTHWISE_CONV_2D: filter {} does not fit {} input channels", shape_str(filter.shape), channels));
      weight = permute(filter.constant, {3, 0, 1, 2});
      groups = channels;
    } else {
      if (filter.shape[3] != channels)
        fail(fmt::format("CONV_2D: filter {} expects {} input channels, the input has {}", shape_str(filter.shape),
                         filter.shape[3], channels));
      weight = permute(filter.constant, {0, 3, 1, 2});
    }
  }
  const int64_t out_channels = weight.dim(0);
  Tensor b;
  if (bias) {
    if (bias->shape != Shape{out_channels}) fail(fmt::format("{}: bias {} for {} output channels", what, shape_str(bias->shape), out_channels));
    b = bias->constant;
  }
  const int64_t kh = weight.dim(2), kw = weight.dim(3);
  std::pair<int64_t, int64_t> pad_h{0, 0}, pad_w{0, 0};
  if (padding == tflite::Padding::SAME) {
    pad_h = same_padding(x.shape[1], kh, stride_h, dilation_h);
    pad_w = same_padding(x.shape[2], kw, stride_w, dilation_w);
  }
  const int output = op.outputs()->Get(0);
  const std::string name = unique(layer_name(output));
  out_->add_parameter(name + ".weight", weight);
  if (b.defined()) out_->add_parameter(name + ".bias", b);
  // SAME padding puts the odd row and column after (same_padding: before <= after), which the
  // convolution reads as extra zeros below and to the right: no padded copy of the input.
  const Pair2 stride{stride_h, stride_w}, dilation{dilation_h, dilation_w}, symmetric_pad{pad_h.first, pad_w.first};
  const Pair2 extra_pad{pad_h.second - pad_h.first, pad_w.second - pad_w.first};
  const int value = out_->add(name, depthwise ? "depthwise_conv2d" : "conv2d", {x.value}, [=](const std::vector<Tensor>& in) {
    return conv2d(in[0], weight, b, stride, symmetric_pad, dilation, groups, extra_pad);
  });
  set_activation(output, fused(value, act, name, true, output), true);
}

void Importer::pool(const tflite::Operator& op, bool max_pool) {
  const char* what = max_pool ? "MAX_POOL_2D" : "AVERAGE_POOL_2D";
  const auto* o = op.builtin_options_as_Pool2DOptions();
  if (!o || !op.inputs() || op.inputs()->size() != 1 || !op.outputs() || op.outputs()->size() != 1)
    fail(fmt::format("{}: needs one input, one output and its options", what));
  const Slot& x = activation(op.inputs()->Get(0), what, "input");
  if (x.shape.size() != 4 || !x.nchw) fail(fmt::format("{}: input {} must be 4-D", what, shape_str(x.shape)));
  const int64_t kh = o->filter_height(), kw = o->filter_width(), sh = o->stride_h(), sw = o->stride_w();
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || kh > 4096 || kw > 4096 || sh > 4096 || sw > 4096)
    fail(fmt::format("{}: filter {}x{} stride {}x{} out of range", what, kh, kw, sh, sw));
  std::pair<int64_t, int64_t> ph{0, 0}, pw{0, 0};
  if (o->padding() == tflite::Padding::SAME) {
    ph = same_padding(x.shape[1], kh, sh, 1);
    pw = same_padding(x.shape[2], kw, sw, 1);
  }
  if (!max_pool && (ph.first || ph.second || pw.first || pw.second))
    fail("AVERAGE_POOL_2D with SAME padding that pads is not supported (TensorFlow leaves the padding out of the average)");
  const int output = op.outputs()->Get(0);
  const std::string name = unique(layer_name(output));
  int value = x.value;
  if (ph.first || ph.second || pw.first || pw.second) {  // padding never wins a max
    const std::vector<int64_t> pads = {0, 0, 0, 0, ph.first, ph.second, pw.first, pw.second};
    value = out_->add(unique(name + "/pad"), "pad", {value}, [pads](const std::vector<Tensor>& in) {
      return pad(in[0], pads, -std::numeric_limits<float>::max());
    });
  }
  const Pair2 kernel{kh, kw}, stride{sh, sw};
  value = out_->add(name, max_pool ? "max_pool2d" : "avg_pool2d", {value}, [=](const std::vector<Tensor>& in) {
    return max_pool ? max_pool2d(in[0], kernel, stride) : avg_pool2d(in[0], kernel, stride);
  });
  set_activation(output, fused(value, o->fused_activation_function(), name, true, output), true);
}

void Importer::operation(const tflite::Operator& op, int code) {
  const auto* inputs = op.inputs();
  const auto* outputs = op.outputs();
  if (!inputs || inputs->size() < 1 || !outputs || outputs->size() != 1)
    fail(fmt::format("operator {} must have inputs and one output", builtin_name(code)));
  const int output = outputs->Get(0);
  switch (code) {
    case 3: return convolution(op, false);                  // CONV_2D
    case 4: return convolution(op, true);                   // DEPTHWISE_CONV_2D
    case 1: return pool(op, false);                         // AVERAGE_POOL_2D
    case 17: return pool(op, true);                         // MAX_POOL_2D
    case 6: {                                               // DEQUANTIZE: fp16 weights, read as floats
      if (inputs->size() != 1) fail("DEQUANTIZE: needs one input");
      const Slot& in = constant(inputs->Get(0), "DEQUANTIZE", "input");
      if (!in.constant.defined()) fail("DEQUANTIZE: only float16 constants can be dequantized");
      if (output < 0 || static_cast<size_t>(output) >= slots_.size()) fail("DEQUANTIZE: output out of range");
      Slot& s = slots_[output];
      if (s.kind != Slot::Kind::Unknown) fail(fmt::format("tensor {} is written twice", output));
      if (s.shape != in.shape) fail(fmt::format("DEQUANTIZE: output {} differs from input {}", shape_str(s.shape), shape_str(in.shape)));
      s.kind = Slot::Kind::Constant;
      s.constant = in.constant;
      return;
    }
    case 0: {                                               // ADD
      if (inputs->size() != 2) fail("ADD: needs two inputs");
      const auto* o = op.builtin_options_as_AddOptions();
      const tflite::Activation act = o ? o->fused_activation_function() : tflite::Activation::NONE;
      Slot& a = slot(inputs->Get(0), "ADD", "first input");
      Slot& b = slot(inputs->Get(1), "ADD", "second input");
      if (a.kind != Slot::Kind::Activation || b.kind != Slot::Kind::Activation)
        fail("ADD: adding a constant is not supported; both inputs must be computed");
      if (a.shape != b.shape) fail(fmt::format("ADD: shapes {} and {} differ", shape_str(a.shape), shape_str(b.shape)));
      const bool nchw = a.nchw && b.nchw;
      const int va = nchw ? a.value : file_layout(inputs->Get(0), "ADD");
      const int vb = nchw ? b.value : file_layout(inputs->Get(1), "ADD");
      const std::string name = unique(layer_name(output));
      const int value = out_->add(name, "add", {va, vb}, [](const std::vector<Tensor>& in) { return add(in[0], in[1]); });
      return set_activation(output, fused(value, act, name, nchw, output), nchw);
    }
    case 22: {                                              // RESHAPE
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
      const int value = file_layout(inputs->Get(0), "RESHAPE");
      const std::string name = unique(layer_name(output));
      return set_activation(output, out_->add(name, "reshape", {value}, [target](const std::vector<Tensor>& in) {
        Shape shape = target;
        if (!shape.empty() && in[0].ndim() > 0) shape[0] = shape[0] == 1 ? in[0].dim(0) : shape[0];  // any batch
        return reshape(in[0], shape);
      }), false);
    }
    case 2: {                                               // CONCATENATION
      const auto* o = op.builtin_options_as_ConcatenationOptions();
      if (!o || inputs->size() < 1) fail("CONCATENATION: needs inputs and its options");
      const Slot& first = activation(inputs->Get(0), "CONCATENATION", "input");
      const int64_t rank = static_cast<int64_t>(first.shape.size());
      int64_t axis = o->axis() < 0 ? o->axis() + rank : o->axis();
      if (axis < 0 || axis >= rank) fail(fmt::format("CONCATENATION: axis {} for rank {}", o->axis(), rank));
      bool all_nchw = rank == 4;
      for (int i : *inputs) all_nchw = all_nchw && activation(i, "CONCATENATION", "input").nchw;
      std::vector<int> values;
      for (int i : *inputs) values.push_back(all_nchw ? slots_[i].value : file_layout(i, "CONCATENATION"));
      const int at = static_cast<int>(all_nchw ? nchw_axis(axis) : axis);
      const std::string name = unique(layer_name(output));
      const int value = out_->add(name, "concat", values, [at](const std::vector<Tensor>& in) { return cat(in, at); });
      return set_activation(output, fused(value, o->fused_activation_function(), name, all_nchw, output), all_nchw);
    }
    case 14: case 19: case 21: {                            // LOGISTIC, RELU, RELU6
      const Slot& x = activation(inputs->Get(0), "activation", "input");
      const std::string name = unique(layer_name(output) + (code == 14 ? "" : code == 19 ? "/relu" : "/relu6"));
      const char* kind = code == 14 ? "sigmoid" : code == 19 ? "relu" : "relu6";
      return set_activation(output, out_->add(name, kind, {x.value}, [code](const std::vector<Tensor>& in) {
        return code == 14 ? sigmoid(in[0]) : code == 19 ? relu(in[0]) : relu6(in[0]);
      }), x.nchw);
    }
    case 25: {                                              // SOFTMAX
      const Slot& x = activation(inputs->Get(0), "SOFTMAX", "input");
      const auto* o = op.builtin_options_as_SoftmaxOptions();
      const float beta = o ? o->beta() : 1.f;
      if (!(beta > 0.f) || !std::isfinite(beta)) fail("SOFTMAX: beta must be positive");
      const int axis = x.nchw ? 1 : -1;
      return set_activation(output, out_->add(unique(layer_name(output)), "softmax", {x.value}, [beta, axis](const std::vector<Tensor>& in) {
        return softmax(beta == 1.f ? in[0] : mul(in[0], Tensor::scalar(beta)), axis);
      }), x.nchw);
    }
    case 40: {                                              // MEAN
      if (inputs->size() != 2) fail("MEAN: needs an input and its axes");
      const Slot& axes_slot = constant(inputs->Get(1), "MEAN", "axes");
      const auto* o = op.builtin_options_as_ReducerOptions();
      const bool keep = o && o->keep_dims();
      const Slot& x = activation(inputs->Get(0), "MEAN", "input");
      const int64_t rank = static_cast<int64_t>(x.shape.size());
      std::vector<int64_t> axes;
      for (int32_t a : axes_slot.ints) {
        const int64_t axis = a < 0 ? a + rank : a;
        if (axis < 0 || axis >= rank) fail(fmt::format("MEAN: axis {} for rank {}", a, rank));
        axes.push_back(x.nchw && keep ? nchw_axis(axis) : axis);
      }
      const int value = x.nchw && keep ? x.value : file_layout(inputs->Get(0), "MEAN");
      return set_activation(output, out_->add(unique(layer_name(output)), "mean", {value}, [axes, keep](const std::vector<Tensor>& in) {
        return mean(in[0], axes, keep);
      }), x.nchw && keep);
    }
    case 9: {                                               // FULLY_CONNECTED
      if (inputs->size() < 2) fail("FULLY_CONNECTED: needs an input and weights");
      const Slot& w = constant(inputs->Get(1), "FULLY_CONNECTED", "weights");
      if (w.shape.size() != 2 || !w.constant.defined()) fail("FULLY_CONNECTED: weights must be a 2-D float constant");
      Tensor b;
      if (inputs->size() > 2 && inputs->Get(2) >= 0) {
        b = constant(inputs->Get(2), "FULLY_CONNECTED", "bias").constant;
        if (!b.defined() || b.shape() != Shape{w.shape[0]}) fail("FULLY_CONNECTED: bias does not match the weights");
      }
      const auto* o = op.builtin_options_as_FullyConnectedOptions();
      const tflite::Activation act = o ? o->fused_activation_function() : tflite::Activation::NONE;
      const int value = file_layout(inputs->Get(0), "FULLY_CONNECTED");
      const std::string name = unique(layer_name(output));
      const Tensor weight = w.constant;
      const int64_t in_features = w.shape[1];
      out_->add_parameter(name + ".weight", weight);
      if (b.defined()) out_->add_parameter(name + ".bias", b);
      const int result = out_->add(name, "linear", {value}, [weight, b, in_features](const std::vector<Tensor>& in) {
        return linear(reshape(in[0], {-1, in_features}), weight, b);
      });
      return set_activation(output, fused(result, act, name, false, output), false);
    }
    case 34: {                                              // PAD
      if (inputs->size() != 2) fail("PAD: needs an input and its paddings");
      const Slot& x = activation(inputs->Get(0), "PAD", "input");
      const Slot& p = constant(inputs->Get(1), "PAD", "paddings");
      const size_t rank = x.shape.size();
      if (p.ints.size() != 2 * rank) fail(fmt::format("PAD: {} padding values for rank {}", p.ints.size(), rank));
      std::vector<int64_t> pads(2 * rank);
      for (size_t a = 0; a < rank; ++a) {
        const size_t to = x.nchw ? static_cast<size_t>(nchw_axis(static_cast<int64_t>(a))) : a;
        if (p.ints[2 * a] < 0 || p.ints[2 * a + 1] < 0 || p.ints[2 * a] > 64 || p.ints[2 * a + 1] > 64)
          fail("PAD: paddings must be between 0 and 64");
        pads[2 * to] = p.ints[2 * a];
        pads[2 * to + 1] = p.ints[2 * a + 1];
      }
      return set_activation(output, out_->add(unique(layer_name(output)), "pad", {x.value}, [pads](const std::vector<Tensor>& in) {
        return pad(in[0], pads);
      }), x.nchw);
    }
    default: break;
  }
  fail(fmt::format("operator {} is not supported (supported: CONV_2D, DEPTHWISE_CONV_2D, ADD, RESHAPE, "
                   "CONCATENATION, DEQUANTIZE, LOGISTIC, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, FULLY_CONNECTED, "
                   "SOFTMAX, PAD, RELU, RELU6)", builtin_name(code)));
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
  const Shape& in_shape = slots_[input].shape;
  if (in_shape.size() != 4 || in_shape[0] != 1 || (in_shape[3] != 1 && in_shape[3] != 3) || in_shape[1] < 1 ||
      in_shape[2] < 1 || in_shape[1] > 4096 || in_shape[2] > 4096 || input_tensor.type() != tflite::TensorType::FLOAT32)
    fail(fmt::format("input {} {} is not a float image [1, H, W, 1 or 3]", input, shape_str(in_shape)));
  input_height_ = in_shape[1];
  slots_[input].kind = Slot::Kind::Activation;
  slots_[input].value = 0;
  slots_[input].nchw = true;

  for (const tflite::Operator* op : *graph_->operators()) {
    if (!codes || op->opcode_index() >= codes->size())
      fail(fmt::format("an operator names operator code {}, which does not exist", op->opcode_index()));
    const tflite::OperatorCode* code = codes->Get(op->opcode_index());
    operation(*op, std::max<int>(code->deprecated_builtin_code(), code->builtin_code()));
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
  if (s.shape.back() < 1 || s.shape.back() > 100000)
    fail(fmt::format("the class output {} declares {} classes (1 to 100,000 are read)", shape_str(s.shape), s.shape.back()));
  info.classes.assign(static_cast<size_t>(s.shape.back()), "");
  info.cam_layer = cam_layer_;
  out_->set_info(info);
  return out_;
}

}  // namespace

std::shared_ptr<models::Graph> parse_tflite(const uint8_t* data, size_t size, const std::string& label) {
  return Importer(data, size, label).run();
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
