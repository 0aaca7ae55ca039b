// FashionCNN, the reference model this project trains itself (tgc train): two convolutions
// with ReLU and 2x2 max pooling, then two linear layers, on 28x28 Fashion-MNIST images.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "tinygrad-cpp/nn/nn.h"

namespace tg::models {

// conv1 1->16 5x5 pad 2, relu1, pool1, conv2 16->32 5x5 pad 2, relu2, pool2, flatten,
// fc1 1568->128, relu3, fc2 128->10.
std::shared_ptr<nn::Sequential> make_fashion_cnn(Generator& gen);
// Its input (1x28x28, Fashion-MNIST's normalization), class names and Grad-CAM layer.
nn::ModelInfo fashion_cnn_info();
std::map<std::string, std::string> fashion_cnn_metadata();  // arch, mean, std, classes
struct LoadedModel {
  std::shared_ptr<nn::Sequential> model;
  std::map<std::string, std::string> metadata;
};
// Loads a FashionCNN weights file, checking arch (when present), names and shapes.
LoadedModel load_fashion_cnn(const std::string& path);
// The same from tensors already read (`label` names them in errors: the file's path).
LoadedModel fashion_cnn_from_state_dict(const io::NamedTensors& tensors, const std::string& label);

}  // namespace tg::models
