#include "tinygrad-cpp/models/fashion_cnn.h"

#include <fmt/format.h>

#include "tinygrad-cpp/data/data.h"

namespace tg::models {

std::shared_ptr<nn::Sequential> make_fashion_cnn(Generator& gen) {
  auto model = std::make_shared<nn::Sequential>();
  model->add("conv1", std::make_shared<nn::Conv2d>(1, 16, 5, gen, 1, 2))
      .add("relu1", std::make_shared<nn::ReLU>())
      .add("pool1", std::make_shared<nn::MaxPool2d>(2))
      .add("conv2", std::make_shared<nn::Conv2d>(16, 32, 5, gen, 1, 2))
      .add("relu2", std::make_shared<nn::ReLU>())
      .add("pool2", std::make_shared<nn::MaxPool2d>(2))
      .add("flatten", std::make_shared<nn::Flatten>())
      .add("fc1", std::make_shared<nn::Linear>(32 * 7 * 7, 128, gen))
      .add("relu3", std::make_shared<nn::ReLU>())
      .add("fc2", std::make_shared<nn::Linear>(128, 10, gen));
  model->set_info(fashion_cnn_info());
  return model;
}

nn::ModelInfo fashion_cnn_info() {
  nn::ModelInfo info;
  info.arch = "FashionCNN";
  info.input = {.channels = 1, .height = data::kImageSide, .width = data::kImageSide, .mean = {data::kFashionMean},
                .std = {data::kFashionStd}, .invert_light_background = true};
  info.classes.assign(data::kFashionClasses.begin(), data::kFashionClasses.end());
  info.cam_layer = "relu2";
  return info;
}

std::map<std::string, std::string> fashion_cnn_metadata() {
  std::string classes;
  for (const char* c : data::kFashionClasses) {
    if (!classes.empty()) classes += ',';
    classes += c;
  }
  return {{"arch", "FashionCNN"},
          {"mean", fmt::format("{}", data::kFashionMean)},
          {"std", fmt::format("{}", data::kFashionStd)},
          {"classes", classes}};
}

LoadedModel fashion_cnn_from_state_dict(const io::NamedTensors& tensors, const std::string& label) {
  auto arch = tensors.metadata.find("arch");
  if (arch != tensors.metadata.end() && arch->second != "FashionCNN")
    throw Error(label + ": arch is '" + printable(arch->second) + "', not FashionCNN");
  Generator gen(0);
  LoadedModel loaded{make_fashion_cnn(gen), tensors.metadata};
  try {
    nn::load_state_dict(*loaded.model, tensors, true);
  } catch (const Error& e) {
    throw Error(label + ": " + e.what());
  }
  loaded.model->eval();
  return loaded;
}

LoadedModel load_fashion_cnn(const std::string& path) { return fashion_cnn_from_state_dict(io::load_safetensors(path), path); }

}  // namespace tg::models
