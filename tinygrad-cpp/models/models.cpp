#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/models/models.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "tinygrad-cpp/models/tflite.h"

namespace tg::models {
namespace {

// The shape of a tensor the state dict must have.
const Tensor& require(const io::NamedTensors& tensors, const std::string& name, size_t rank, const std::string& label) {
  const Tensor* t = tensors.find(name);
  if (!t) throw Error(fmt::format("{}: missing tensor '{}'", label, name));
  if (static_cast<size_t>(t->ndim()) != rank)
    throw Error(fmt::format("{}: tensor '{}' has shape {}, expected {} dimensions", label, name, shape_str(t->shape()), rank));
  return *t;
}

std::vector<float> triple(const std::map<std::string, std::string>& metadata, const char* key,
                          std::vector<float> fallback, const std::string& label) {
  auto it = metadata.find(key);
  if (it == metadata.end()) return fallback;
  std::vector<float> values;
  size_t start = 0;
  while (start <= it->second.size()) {
    const size_t comma = std::min(it->second.find(',', start), it->second.size());
    try {
      size_t used = 0;
      const std::string part = it->second.substr(start, comma - start);
      values.push_back(std::stof(part, &used));
      if (used != part.size()) throw std::invalid_argument(part);
    } catch (const std::exception&) {
      throw Error(fmt::format("{}: metadata {} is not three comma-separated numbers", label, key));
    }
    start = comma + 1;
  }
  if (values.size() != 3) throw Error(fmt::format("{}: metadata {} has {} values, not 3", label, key, values.size()));
  for (float v : values)
    if (!std::isfinite(v) || (std::string(key) == "std" && !(v > 0.f)))
      throw Error(fmt::format("{}: metadata {} holds {}; it must be finite{}", label, key, v,
                              std::string(key) == "std" ? " and positive" : ""));
  return values;
}

}  // namespace

std::shared_ptr<nn::Sequential> torchvision_from_state_dict(const io::NamedTensors& tensors, const std::string& label) {
  auto found = tensors.metadata.find("arch");
  const std::string arch = found == tensors.metadata.end() ? "" : found->second;
  if (arch != "alexnet" && arch != "vgg16") throw Error(label + ": arch '" + arch + "' is neither alexnet nor vgg16");
  // features: (out channels or 0 for a max-pool, kernel, stride, padding), as torchvision builds them
  struct Layer { bool pool; int64_t kernel, stride, padding; };
  std::vector<Layer> features;
  int64_t pool_kernel = 2, pool_stride = 2, pooled = 7;
  if (arch == "alexnet") {
    features = {{false, 11, 4, 2}, {true, 3, 2, 0}, {false, 5, 1, 2}, {true, 3, 2, 0}, {false, 3, 1, 1},
                {false, 3, 1, 1}, {false, 3, 1, 1}, {true, 3, 2, 0}};
    pool_kernel = 3;
    pooled = 6;
  } else {
    for (int convs : {2, 2, 3, 3, 3}) {
      for (int i = 0; i < convs; ++i) features.push_back({false, 3, 1, 1});
      features.push_back({true, 2, 2, 0});
    }
  }
  Generator gen(0);
  auto model = std::make_shared<nn::Sequential>();
  int index = 0;
  int64_t channels = 3, side = 224, forward_bytes = 4 * 3 * side * side;
  // One forward pass holds every layer's output: the widths read from the file are charged
  // to the budget the TFLite importer uses, before any layer exists.
  auto charge = [&](const std::string& layer, int64_t values) {
    forward_bytes += 4 * values;
    if (forward_bytes > ImportLimits{}.forward_bytes)
      throw Error(fmt::format("{}: layer '{}' ({} channels of {}x{}) would bring one forward pass to {} MB of "
                              "activations; the limit is {} MB", label, layer, channels, side, side,
                              forward_bytes >> 20, ImportLimits{}.forward_bytes >> 20));
  };
  for (const Layer& l : features) {
    if (l.pool) {
      side = (side - pool_kernel) / pool_stride + 1;
      charge(fmt::format("features.{}", index), channels * side * side);
      model->add(fmt::format("features.{}", index++), std::make_shared<nn::MaxPool2d>(pool_kernel, pool_stride));
      continue;
    }
    const std::string name = fmt::format("features.{}", index);
    const Tensor& w = require(tensors, name + ".weight", 4, label);
    if (w.dim(1) != channels || w.dim(2) != l.kernel || w.dim(3) != l.kernel)
      throw Error(fmt::format("{}: '{}.weight' has shape {}, expected [out, {}, {}, {}] for {}", label, name,
                              shape_str(w.shape()), channels, l.kernel, l.kernel, arch));
    channels = w.dim(0);
    side = (side + 2 * l.padding - l.kernel) / l.stride + 1;
    charge(name, 2 * channels * side * side);  // the convolution and its ReLU
    model->add(name, std::make_shared<nn::Conv2d>(w.dim(1), channels, l.kernel, gen, l.stride, l.padding));
    model->add(fmt::format("features.{}", index + 1), std::make_shared<nn::ReLU>());
    index += 2;
  }
  model->add("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(pooled));
  model->add("flatten", std::make_shared<nn::Flatten>());
  // classifier: AlexNet Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear;
  //             VGG16   Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
  const std::vector<int> linear_at = arch == "alexnet" ? std::vector<int>{1, 4, 6} : std::vector<int>{0, 3, 6};
  int64_t features_in = channels * pooled * pooled;
  for (int i = 0; i <= 6; ++i) {
    const std::string name = fmt::format("classifier.{}", i);
    if (std::find(linear_at.begin(), linear_at.end(), i) != linear_at.end()) {
      const Tensor& w = require(tensors, name + ".weight", 2, label);
      if (w.dim(1) != features_in)
        throw Error(fmt::format("{}: '{}.weight' has shape {}, expected [out, {}]", label, name, shape_str(w.shape()), features_in));
      model->add(name, std::make_shared<nn::Linear>(features_in, w.dim(0), gen));
      features_in = w.dim(0);
    } else if ((arch == "alexnet" && (i == 0 || i == 3)) || (arch == "vgg16" && (i == 2 || i == 5))) {
      model->add(name, std::make_shared<nn::Dropout>(0.5f));
    } else {
      model->add(name, std::make_shared<nn::ReLU>());
    }
  }
  try {
    nn::load_state_dict(*model, tensors, true);
  } catch (const Error& e) {
    throw Error(label + ": " + e.what());
  }
  model->eval();
  nn::ModelInfo info;
  info.arch = arch;
  info.input = {.channels = 3, .height = 224, .width = 224,
                .mean = triple(tensors.metadata, "mean", {0.485f, 0.456f, 0.406f}, label),
                .std = triple(tensors.metadata, "std", {0.229f, 0.224f, 0.225f}, label)};
  info.classes.assign(static_cast<size_t>(features_in), "");
  if (auto c = tensors.metadata.find("classes"); c != tensors.metadata.end()) {
    size_t start = 0, k = 0;
    while (k < info.classes.size() && start <= c->second.size()) {
      const size_t comma = std::min(c->second.find(',', start), c->second.size());
      info.classes[k++] = c->second.substr(start, comma - start);
      start = comma + 1;
    }
  }
  for (size_t k = 0; k < info.classes.size(); ++k)
    if (info.classes[k].empty()) info.classes[k] = fmt::format("class {}", k);
  model->set_info(info);
  return model;
}

bool is_tflite(const std::string& path) {
  const std::vector<uint8_t> head = io::read_file_head(path, 8);
  return head.size() == 8 && std::memcmp(head.data() + 4, "TFL3", 4) == 0;
}

std::shared_ptr<nn::Model> load_model(const std::string& path) {
  if (is_tflite(path)) return load_tflite(path);  // else safetensors, which starts with a length
  const io::NamedTensors tensors = io::load_safetensors(path);
  auto arch = tensors.metadata.find("arch");
  if (arch != tensors.metadata.end() && (arch->second == "alexnet" || arch->second == "vgg16"))
    return torchvision_from_state_dict(tensors, path);
  return models::load_fashion_cnn(path).model;
}

}  // namespace tg::models
