// Models beyond FashionCNN: the TFLite importer (on files built here and on the shipped
// photo model), TensorFlow's SAME padding, the graph model, and torchvision AlexNet/VGG16
// built from small state dicts.
#include <flatbuffers/flatbuffers.h>

#include <cstring>
#include <filesystem>
#include <limits>

#include "tests/helpers.h"
#include "tflite_generated.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/models/tflite.h"
#include "tinygrad-cpp/data/preprocess.h"

using namespace tg;

namespace {

const char* kPhotoModel = "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";

// A tiny TFLite file: input [1,4,4,1] -> CONV_2D 3x3 of ones, bias 0.5, stride 2, SAME
// -> [1,2,2,1] -> RESHAPE -> scores [1,4]. The knobs make the hostile variants.
struct Tiny {
  int first_op_code = 3;  // CONV_2D
  tflite::TensorType filter_type = tflite::TensorType::FLOAT32;
  tflite::Padding padding = tflite::Padding::SAME;
  int stride = 2;
  int side = 4;                                   // the input is [1, side, side, 1]
  int out_channels = 1;
  float filter_value = 1.f;
  int depth_multiplier = -1;                      // >= 0: a DEPTHWISE_CONV_2D with this multiplier
  std::vector<int32_t> conv_out = {1, 2, 2, 1};   // the declared shapes
  std::vector<int32_t> reshape_to = {1, 4};
  std::vector<int32_t> scores = {1, 4};
  bool bias_shares_filter_buffer = false;         // a second tensor naming the filter's buffer
};

std::vector<uint8_t> tiny_tflite(const Tiny& o) {
  flatbuffers::FlatBufferBuilder b;
  auto bytes_of = [](const void* p, size_t n) {
    const auto* u = static_cast<const uint8_t*>(p);
    return std::vector<uint8_t>(u, u + n);
  };
  const std::vector<float> filter(static_cast<size_t>(9 * o.out_channels), o.filter_value),
      bias(static_cast<size_t>(o.out_channels), 0.5f);
  const std::vector<int32_t>& shape = o.reshape_to;
  const std::vector<uint8_t> filter_bytes = bytes_of(filter.data(), 4 * filter.size()),
                             bias_bytes = bytes_of(bias.data(), 4 * bias.size()),
                             shape_bytes = bytes_of(shape.data(), 4 * shape.size());
  std::vector<flatbuffers::Offset<tflite::Buffer>> buffers = {
      tflite::CreateBuffer(b), tflite::CreateBufferDirect(b, &filter_bytes), tflite::CreateBufferDirect(b, &bias_bytes),
      tflite::CreateBufferDirect(b, &shape_bytes)};
  auto tensor = [&](std::vector<int32_t> dims, tflite::TensorType type, uint32_t buffer, const char* name) {
    return tflite::CreateTensor(b, b.CreateVector(dims), type, buffer, b.CreateString(name));
  };
  std::vector<flatbuffers::Offset<tflite::Tensor>> tensors = {
      tensor({1, o.side, o.side, 1}, tflite::TensorType::FLOAT32, 0, "input"),
      o.depth_multiplier >= 0 ? tensor({1, 3, 3, o.out_channels}, o.filter_type, 1, "conv/filter")
                              : tensor({o.out_channels, 3, 3, 1}, o.filter_type, 1, "conv/filter"),
      o.bias_shares_filter_buffer ? tensor({9 * o.out_channels}, tflite::TensorType::FLOAT32, 1, "conv/bias")
                                  : tensor({o.out_channels}, tflite::TensorType::FLOAT32, 2, "conv/bias"),
      tensor(o.conv_out, tflite::TensorType::FLOAT32, 0, "conv/Conv2D"),
      tensor({static_cast<int32_t>(shape.size())}, tflite::TensorType::INT32, 3, "reshape/shape"),
      tensor(o.scores, tflite::TensorType::FLOAT32, 0, "scores")};
  auto conv = o.depth_multiplier >= 0
                  ? tflite::CreateOperator(b, 0, b.CreateVector<int32_t>({0, 1, 2}), b.CreateVector<int32_t>({3}),
                                           tflite::BuiltinOptions::DepthwiseConv2DOptions,
                                           tflite::CreateDepthwiseConv2DOptions(b, o.padding, o.stride, o.stride,
                                                                                o.depth_multiplier).Union())
                  : tflite::CreateOperator(b, 0, b.CreateVector<int32_t>({0, 1, 2}), b.CreateVector<int32_t>({3}),
                                           tflite::BuiltinOptions::Conv2DOptions,
                                           tflite::CreateConv2DOptions(b, o.padding, o.stride, o.stride).Union());
  std::vector<flatbuffers::Offset<tflite::Operator>> operators = {
      conv,
      tflite::CreateOperator(b, 1, b.CreateVector<int32_t>({3, 4}), b.CreateVector<int32_t>({5}))};
  std::vector<flatbuffers::Offset<tflite::OperatorCode>> codes = {
      tflite::CreateOperatorCode(b, static_cast<int8_t>(o.depth_multiplier >= 0 ? 4 : o.first_op_code), 0, 1,
                                 o.depth_multiplier >= 0 ? 4 : o.first_op_code),
      tflite::CreateOperatorCode(b, 22, 0, 1, 22)};
  auto graph = tflite::CreateSubGraph(b, b.CreateVector(tensors), b.CreateVector<int32_t>({0}), b.CreateVector<int32_t>({5}),
                                      b.CreateVector(operators));
  auto model = tflite::CreateModel(b, 3, b.CreateVector(codes), b.CreateVector(std::vector{graph}), 0, b.CreateVector(buffers));
  tflite::FinishModelBuffer(b, model);
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

// A chain of `count` RELU operators after the input, every output tensor named `name`.
std::vector<uint8_t> relu_chain(int count, const std::string& name) {
  flatbuffers::FlatBufferBuilder b;
  std::vector<flatbuffers::Offset<tflite::Tensor>> tensors = {
      tflite::CreateTensor(b, b.CreateVector<int32_t>({1, 2, 2, 1}), tflite::TensorType::FLOAT32, 0, b.CreateString("input"))};
  std::vector<flatbuffers::Offset<tflite::Operator>> operators;
  for (int i = 0; i < count; ++i) {
    tensors.push_back(tflite::CreateTensor(b, b.CreateVector<int32_t>({1, 2, 2, 1}), tflite::TensorType::FLOAT32, 0,
                                           b.CreateString(name)));
    operators.push_back(tflite::CreateOperator(b, 0, b.CreateVector<int32_t>({i}), b.CreateVector<int32_t>({i + 1})));
  }
  tensors.push_back(tflite::CreateTensor(b, b.CreateVector<int32_t>({1, 4}), tflite::TensorType::FLOAT32, 0, b.CreateString("scores")));
  const std::vector<int32_t> shape = {1, 4};
  const auto* p = reinterpret_cast<const uint8_t*>(shape.data());
  const std::vector<uint8_t> shape_bytes(p, p + 8);
  tensors.push_back(tflite::CreateTensor(b, b.CreateVector<int32_t>({2}), tflite::TensorType::INT32, 1, b.CreateString("shape")));
  operators.push_back(tflite::CreateOperator(b, 1, b.CreateVector<int32_t>({count, count + 2}), b.CreateVector<int32_t>({count + 1})));
  std::vector<flatbuffers::Offset<tflite::Buffer>> buffers = {tflite::CreateBuffer(b), tflite::CreateBufferDirect(b, &shape_bytes)};
  std::vector<flatbuffers::Offset<tflite::OperatorCode>> codes = {tflite::CreateOperatorCode(b, 19, 0, 1, 19),
                                                                  tflite::CreateOperatorCode(b, 22, 0, 1, 22)};
  auto graph = tflite::CreateSubGraph(b, b.CreateVector(tensors), b.CreateVector<int32_t>({0}),
                                      b.CreateVector<int32_t>({count + 1}), b.CreateVector(operators));
  auto model = tflite::CreateModel(b, 3, b.CreateVector(codes), b.CreateVector(std::vector{graph}), 0, b.CreateVector(buffers));
  tflite::FinishModelBuffer(b, model);
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

std::string import_error(const std::vector<uint8_t>& bytes) {
  return test::error_message([&] { models::parse_tflite(bytes.data(), bytes.size(), "bad.tflite"); });
}

}  // namespace

TEST_SUITE("models-tflite") {
  TEST_CASE("TensorFlow's SAME padding, by hand: the odd row and column go after") {
    using models::same_padding;
    CHECK(same_padding(300, 3, 2, 1) == std::pair<int64_t, int64_t>{0, 1});  // out 150: (149*2 + 3) - 300 = 1
    CHECK(same_padding(150, 3, 1, 1) == std::pair<int64_t, int64_t>{1, 1});
    CHECK(same_padding(19, 3, 2, 1) == std::pair<int64_t, int64_t>{1, 1});   // out 10: 9*2 + 3 - 19 = 2
    CHECK(same_padding(4, 3, 2, 1) == std::pair<int64_t, int64_t>{0, 1});    // out 2: 1*2 + 3 - 4 = 1
    CHECK(same_padding(10, 1, 1, 1) == std::pair<int64_t, int64_t>{0, 0});
    CHECK(same_padding(7, 3, 1, 2) == std::pair<int64_t, int64_t>{2, 2});    // span 5
    CHECK(same_padding(3, 5, 4, 1) == std::pair<int64_t, int64_t>{1, 1});    // out 1: 5 - 3 = 2
  }

  TEST_CASE("a stride-2 SAME convolution pads bottom and right, as the hand computation says") {
    const std::vector<uint8_t> bytes = tiny_tflite({});
    const auto model = models::parse_tflite(bytes.data(), bytes.size(), "tiny.tflite");
    const Tensor x = reshape(Tensor::arange(1, 17), {1, 1, 4, 4});
    NoGrad no_grad;
    const Tensor scores = model->forward(x);
    // Windows: rows 0-2 x cols 0-2; rows 0-2 x cols 2-3 (+pad); rows 2-3 (+pad) x cols 0-2; rows 2-3 x cols 2-3.
    CHECK(scores.to_vector() == std::vector<float>{54.5f, 45.5f, 72.5f, 54.5f});
    // Symmetric padding would have started the first window at (-1, -1): 1+2+5+6 = 14.
    // The odd row and column are the convolution's own extra padding, not a padded copy.
    CHECK(model->layers_of_kind("pad").empty());
    CHECK(model->layers_of_kind("conv2d").size() == 1);
    // VALID with stride 1: no padding, windows at rows and columns 0-2 and 1-3.
    Tiny valid;
    valid.padding = tflite::Padding::VALID;
    valid.stride = 1;
    const std::vector<uint8_t> v = tiny_tflite(valid);
    const auto model_valid = models::parse_tflite(v.data(), v.size(), "valid.tflite");
    CHECK(model_valid->forward(x).to_vector() == std::vector<float>{54.5f, 63.5f, 90.5f, 99.5f});
    CHECK(model_valid->layers_of_kind("pad").empty());
  }

  TEST_CASE("hostile files: each is one line naming the file and what is wrong") {
    const std::vector<uint8_t> good = tiny_tflite({});
    std::vector<uint8_t> truncated(good.begin(), good.begin() + static_cast<long>(good.size() / 2));
    std::vector<uint8_t> bad_offset = good;
    const uint32_t far = 0x7ffffff0u;
    std::memcpy(bad_offset.data(), &far, 4);  // the root table "at" 2 GB
    Tiny mul;
    mul.first_op_code = 18;
    Tiny int8;
    int8.filter_type = tflite::TensorType::INT8;
    const std::vector<std::pair<std::vector<uint8_t>, std::vector<const char*>>> cases = {
        {truncated, {"bad.tflite:", "corrupt"}},
        {bad_offset, {"bad.tflite:", "corrupt"}},
        {tiny_tflite(mul), {"bad.tflite:", "MUL", "not supported"}},
        {tiny_tflite(int8), {"bad.tflite:", "INT8"}},
        {std::vector<uint8_t>(good.begin(), good.begin() + 6), {"bad.tflite:", "not a TFLite model"}},
    };
    for (const auto& [bytes, words] : cases) {
      const std::string message = import_error(bytes);
      CAPTURE(message);
      for (const char* w : words) CHECK(test::contains(message, w));
      CHECK(message.find('\n') == std::string::npos);
    }
    // Every prefix of the file, and every single-byte change in its first 256 bytes, gives a
    // model or an error, never a crash (run under SANITIZE=1 too).
    for (size_t n = 0; n < good.size(); n += 7) {
      std::vector<uint8_t> prefix(good.begin(), good.begin() + static_cast<long>(n));
      try { models::parse_tflite(prefix.data(), prefix.size(), "p"); } catch (const Error&) {}
    }
    for (size_t i = 0; i < std::min<size_t>(256, good.size()); ++i) {
      std::vector<uint8_t> flipped = good;
      flipped[i] ^= 0xA5;
      try {
        auto m = models::parse_tflite(flipped.data(), flipped.size(), "f");
        NoGrad no_grad;
        m->forward(Tensor::zeros({1, 1, 4, 4}));
      } catch (const Error&) {
      }
    }
  }
}

TEST_SUITE("models-tflite") {
  TEST_CASE("hostile files, round 3: shapes computed at import, the memory budget, non-finite weights, bad enums") {
    auto refused = [](const Tiny& o, std::vector<const char*> words) {
      const std::string message = import_error(tiny_tflite(o));
      CAPTURE(message);
      CHECK(test::contains(message, "bad.tflite: "));
      for (const char* w : words) CHECK(test::contains(message, w));
      CHECK(message.find('\n') == std::string::npos);
    };
    // Declares [1,4] for scores its operators compute as [1,144]: refused, naming the tensor
    // (it used to size the class names from the declaration and read past them).
    Tiny lies;
    lies.side = 24, lies.conv_out = {1, 12, 12, 1}, lies.reshape_to = {1, -1};
    refused(lies, {"tensor 5 ('scores')", "declared [1,4]", "computes [1,144]"});
    // Told the truth, the class names follow the computed output.
    Tiny honest = lies;
    honest.scores = {1, 144};
    const std::vector<uint8_t> bytes = tiny_tflite(honest);
    const auto model = models::parse_tflite(bytes.data(), bytes.size(), "honest.tflite");
    CHECK(model->info().classes.size() == 144);
    NoGrad no_grad;
    CHECK(model->forward(Tensor::zeros({1, 1, 24, 24})).shape() == Shape{1, 144});
    // A 4096x4096 input and 16 output channels: 1 GB for the convolution's output, refused at import.
    Tiny big;
    big.side = 4096, big.out_channels = 16, big.stride = 1, big.conv_out = {1, 4096, 4096, 16}, big.reshape_to = {1, -1};
    big.scores = {1, 4096 * 4096 * 16 / 1024};
    refused(big, {"layer 'conv/Conv2D' (conv2d [1,4096,4096,16])", "to 1088 MB of activations", "limit is 1024 MB"});
    // The budget is the caller's: the tiny model's input, convolution, NHWC copy and reshape take 112 bytes.
    const std::vector<uint8_t> tiny = tiny_tflite({});
    CHECK(test::contains(test::error_message([&] { models::parse_tflite(tiny.data(), tiny.size(), "t", {.forward_bytes = 111}); }),
                         "t: layer 'scores' (reshape [1,4]) would bring one forward pass to 0 MB"));
    CHECK(models::parse_tflite(tiny.data(), tiny.size(), "t", {.forward_bytes = 112})->size() == 3);
    // NaN and infinite weights.
    Tiny nan;
    nan.filter_value = std::numeric_limits<float>::quiet_NaN();
    refused(nan, {"tensor 1 ('conv/filter')", "non-finite weight (nan) at element 0"});
    Tiny inf;
    inf.filter_value = std::numeric_limits<float>::infinity();
    refused(inf, {"non-finite weight (inf)"});
    // A depthwise multiplier of 0 (it was read as 1) and a padding enum of 7 (read as VALID).
    Tiny zero;
    zero.depth_multiplier = 0;
    refused(zero, {"DEPTHWISE_CONV_2D", "depth multiplier 0"});
    Tiny one = zero;
    one.depth_multiplier = 1;
    const std::vector<uint8_t> depthwise = tiny_tflite(one);
    CHECK(models::parse_tflite(depthwise.data(), depthwise.size(), "d")->layers_of_kind("depthwise_conv2d").size() == 1);
    Tiny padding;
    padding.padding = static_cast<tflite::Padding>(7);
    refused(padding, {"CONV_2D", "padding 7 is neither SAME (0) nor VALID (1)"});
    // A RESHAPE whose target's product overflows int64 (signed overflow before): an error.
    Tiny overflow;
    overflow.reshape_to = {1, 1 << 30, 1 << 30, 1 << 30, 4};
    refused(overflow, {"RESHAPE", "more elements than an int64 holds"});
    // A bias naming the filter's buffer (decoded once, shared) is still checked by its own shape.
    Tiny shared;
    shared.bias_shares_filter_buffer = true;
    refused(shared, {"bias [9] for 1 output channels"});
  }

  // Writes round 3's hostile files into tests/fuzz/regressions/tflite (run with --no-skip).
  TEST_CASE("write the round-3 TFLite regression files" * doctest::skip()) {
    Tiny lies;
    lies.side = 24, lies.conv_out = {1, 12, 12, 1}, lies.reshape_to = {1, -1};
    Tiny big;
    big.side = 4096, big.out_channels = 16, big.stride = 1, big.conv_out = {1, 4096, 4096, 16}, big.reshape_to = {1, -1};
    big.scores = {1, 4096 * 4096 * 16 / 1024};
    Tiny nan, zero, padding, overflow;
    nan.filter_value = std::numeric_limits<float>::quiet_NaN();
    zero.depth_multiplier = 0;
    padding.padding = static_cast<tflite::Padding>(7);
    overflow.reshape_to = {1, 1 << 30, 1 << 30, 1 << 30, 4};
    for (const auto& [name, o] : std::vector<std::pair<std::string, Tiny>>{
             {"declares-4-computes-144-classes", lies}, {"4096-input-1gb-conv", big}, {"nan-weight", nan},
             {"depth-multiplier-0", zero}, {"padding-7", padding}, {"reshape-overflows-int64", overflow}}) {
      const std::vector<uint8_t> bytes = tiny_tflite(o);
      io::write_file_atomic("tests/fuzz/regressions/tflite/" + name + ".tflite", bytes.data(), bytes.size());
    }
  }

  TEST_CASE("many operators with one name: numbered in order, one lookup each") {
    const std::vector<uint8_t> bytes = relu_chain(3000, "block/Relu");
    const auto model = models::parse_tflite(bytes.data(), bytes.size(), "chain.tflite");
    const std::vector<std::string> names = model->layer_names();
    REQUIRE(names.size() == 3002);  // and the final reshape's NHWC copy and the reshape
    CHECK(names[0] == "block/relu");
    CHECK(names[1] == "block/relu#2");
    CHECK(names[2999] == "block/relu#3000");
    CHECK(model->node_index("block/relu#1500") == 1499);
  }

  TEST_CASE("the fuzzer's TFLite findings under tests/fuzz/regressions are refused in one line") {
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator("tests/fuzz/regressions/tflite")) {
      const std::vector<uint8_t> bytes = io::read_file(entry.path().string());
      const std::string message = import_error(bytes);
      CAPTURE(entry.path().string());
      CHECK(test::contains(message, "bad.tflite: "));
      CHECK(message.find('\n') == std::string::npos);
      ++files;
    }
    CHECK(files >= 2);
  }
}

TEST_SUITE("models-photo") {
  TEST_CASE("the shipped SSD-MobileNetV2: operators, shapes, and a cat on chelsea.png") {
    REQUIRE_MESSAGE(io::file_exists(kPhotoModel), "run make setup: it fetches the photo model");
    const auto model = std::dynamic_pointer_cast<models::Graph>(models::load_model(kPhotoModel));
    REQUIRE(model);
    // The file's 55 CONV_2D and 17 DEPTHWISE_CONV_2D, 10 ADD, 13 RESHAPE, 2 CONCATENATION;
    // its fused ReLU6 become layers of their own.
    CHECK(model->layers_of_kind("conv2d").size() == 55);
    CHECK(model->layers_of_kind("depthwise_conv2d").size() == 17);
    CHECK(model->layers_of_kind("add").size() == 10);
    CHECK(model->layers_of_kind("reshape").size() == 13);
    CHECK(model->layers_of_kind("concat").size() == 2);
    CHECK(model->layers_of_kind("relu6").size() > 40);
    const nn::ModelInfo& info = model->info();
    CHECK(info.classes.size() == 24);
    CHECK(info.classes[8] == "Cat");
    CHECK(info.classes[13] == "Coffee cup");
    CHECK(info.input.height == 300);
    CHECK(info.input.channels == 3);
    const Tensor x = preprocess::image_to_input(io::load_image("assets/chelsea.png"), info.input);
    CHECK(x.shape() == Shape{1, 3, 300, 300});
    NoGrad no_grad;
    const Tensor scores = model->forward(x);
    CHECK(scores.shape() == Shape{1, 24});
    CHECK(model->activation("raw_outputs/class_predictions").shape() == Shape{1, 1917, 24});  // every anchor's class logits
    CHECK(model->activation("concat").shape() == Shape{1, 1917, 1, 4});  // the box encodings
    const Tensor p = model->probabilities(scores);
    CHECK(model->predict(scores)[0] == 8);
    CHECK(p.data()[8] >= 0.8f);
    MESSAGE("Cat on chelsea.png: p = " << p.data()[8]);
  }

  TEST_CASE("one guard on ReLU and ReLU6 reaches every rectifier of the imported graph") {
    NEEDS_TASKS("tape-reverse-walk", "relu", "relu-rules", "relu6-guided", "conv2d-backward");
    REQUIRE(io::file_exists(kPhotoModel));
    const auto model = std::dynamic_pointer_cast<models::Graph>(models::load_model(kPhotoModel));
    const size_t relu6_layers = model->layers_of_kind("relu6").size();
    Tensor x = Tensor::zeros({1, 3, 300, 300});
    for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>((i * 7919) % 255) / 127.5f - 1.f;
    x.requires_grad_();
    explain::FreezeParameters frozen(*model);
    const Tensor scores = model->forward(x);
    int guided_calls = 0;
    {
      OverrideBackward guard(Op::ReLU6, [&](const Entry& e, const Tensor& g) {
        ++guided_calls;
        return rules::guided_relu(e, g);
      });
      // Every anchor and class: a seed of ones reaches every rectifier of the backbone and heads.
      scores.backward(Tensor::ones(scores.shape()));
    }
    CHECK(guided_calls == static_cast<int>(relu6_layers));
    // The guided map of the input differs from the plain gradient.
    const Tensor guided = x.grad();
    x.zero_grad();
    model->forward(x).backward(Tensor::ones({1, 24}));
    CHECK(guided.to_vector() != x.grad().to_vector());
  }
}

TEST_SUITE("models-torchvision") {
  // A state dict with torchvision's names and small widths: the same network, narrower.
  io::NamedTensors small_state_dict(const std::string& arch, const std::vector<int64_t>& widths, int64_t hidden, int64_t classes) {
    Generator gen(3);
    io::NamedTensors t;
    t.metadata = {{"arch", arch}};
    const bool alexnet = arch == "alexnet";
    const std::vector<int64_t> kernels = alexnet ? std::vector<int64_t>{11, 5, 3, 3, 3} : std::vector<int64_t>(13, 3);
    const std::vector<int> conv_at = alexnet ? std::vector<int>{0, 3, 6, 8, 10}
                                             : std::vector<int>{0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
    int64_t in = 3;
    for (size_t k = 0; k < conv_at.size(); ++k) {
      const std::string name = "features." + std::to_string(conv_at[k]);
      t.tensors.emplace_back(name + ".weight", Tensor::randn({widths[k], in, kernels[k], kernels[k]}, gen, 0.f, 0.05f));
      t.tensors.emplace_back(name + ".bias", Tensor::randn({widths[k]}, gen, 0.f, 0.05f));
      in = widths[k];
    }
    const int64_t pooled = alexnet ? 6 : 7;
    const std::vector<int> linear_at = alexnet ? std::vector<int>{1, 4, 6} : std::vector<int>{0, 3, 6};
    const std::vector<int64_t> sizes = {in * pooled * pooled, hidden, hidden, classes};
    for (size_t k = 0; k < 3; ++k) {
      const std::string name = "classifier." + std::to_string(linear_at[k]);
      t.tensors.emplace_back(name + ".weight", Tensor::randn({sizes[k + 1], sizes[k]}, gen, 0.f, 0.05f));
      t.tensors.emplace_back(name + ".bias", Tensor::randn({sizes[k + 1]}, gen, 0.f, 0.05f));
    }
    std::sort(t.tensors.begin(), t.tensors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return t;
  }

  TEST_CASE("AlexNet and VGG16 from state dicts with torchvision's names") {
    NEEDS_TASKS("relu");
    for (const std::string arch : {"alexnet", "vgg16"}) {
      CAPTURE(arch);
      const std::vector<int64_t> widths = arch == "alexnet" ? std::vector<int64_t>{4, 6, 8, 8, 6}
                                                            : std::vector<int64_t>{2, 2, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5, 5};
      const io::NamedTensors dict = small_state_dict(arch, widths, 16, 7);
      const auto model = models::torchvision_from_state_dict(dict, arch + ".safetensors");
      // Every tensor landed under its own name.
      for (const auto& [name, t] : dict.tensors) CHECK(model->parameter(name).to_vector() == t.to_vector());
      const std::vector<std::string> names = model->layer_names();
      CHECK(names.front() == "features.0");
      CHECK(names.back() == "classifier.6");
      CHECK(std::find(names.begin(), names.end(), "avgpool") != names.end());
      CHECK(model->info().input.height == 224);
      CHECK(model->info().input.mean == std::vector<float>{0.485f, 0.456f, 0.406f});
      NoGrad no_grad;
      const Tensor scores = model->forward(Tensor::zeros({2, 3, 224, 224}));
      CHECK(scores.shape() == Shape{2, 7});
      CHECK(model->activation("avgpool").shape() == Shape{2, widths.back(), arch == "alexnet" ? 6 : 7, arch == "alexnet" ? 6 : 7});
    }
    // A tensor of the wrong shape is named.
    io::NamedTensors wrong = small_state_dict("alexnet", {4, 6, 8, 8, 6}, 16, 7);
    for (auto& [name, t] : wrong.tensors)
      if (name == "features.3.weight") t = Tensor::zeros({6, 5, 5, 5});
    const std::string message = test::error_message([&] { models::torchvision_from_state_dict(wrong, "w.safetensors"); });
    CHECK(test::contains(message, "w.safetensors"));
    CHECK(test::contains(message, "features.3.weight"));
  }

  TEST_CASE("hostile state dicts: absurd widths refused before any layer exists, non-finite metadata refused") {
    // A first convolution 4,000 channels wide: 1.6 GB of activations at 224x224, refused by name.
    const io::NamedTensors wide = small_state_dict("vgg16", {4000, 2, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5, 5}, 16, 7);
    std::string message = test::error_message([&] { models::torchvision_from_state_dict(wide, "wide.safetensors"); });
    CHECK(test::contains(message, "wide.safetensors: layer 'features.0' (4000 channels of 224x224)"));
    CHECK(test::contains(message, "limit is 1024 MB"));
    for (const char* bad : {"nan,0.5,0.5", "0.5,inf,0.5"}) {
      io::NamedTensors dict = small_state_dict("alexnet", {4, 6, 8, 8, 6}, 16, 7);
      dict.metadata["mean"] = bad;
      message = test::error_message([&] { models::torchvision_from_state_dict(dict, "m.safetensors"); });
      CHECK(test::contains(message, "m.safetensors: metadata mean holds"));
      CHECK(test::contains(message, "must be finite"));
      dict.metadata.erase("mean");
      dict.metadata["std"] = "0.2,0,0.2";
      message = test::error_message([&] { models::torchvision_from_state_dict(dict, "s.safetensors"); });
      CHECK(test::contains(message, "metadata std holds 0; it must be finite and positive"));
    }
  }
}
