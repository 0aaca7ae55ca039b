// Every model by its file: the one place tgc, the lessons and the tests load a model.
//
//   *.tflite (or a file with the "TFL3" identifier)       a TFLite graph (models/tflite.h)
//   safetensors, __metadata__ arch = alexnet | vgg16      torchvision's network, its state_dict names
//   safetensors, arch = FashionCNN or no arch             FashionCNN (models/fashion_cnn.h)
#pragma once

#include <memory>
#include <string>

#include "tinygrad-cpp/nn/nn.h"

namespace tg::models {

std::shared_ptr<nn::Model> load_model(const std::string& path);
// Whether the file is a TFLite FlatBuffer ("TFL3" at byte 4), whatever its name.
bool is_tflite(const std::string& path);

// torchvision's AlexNet and VGG16, layer for layer ("features.0" ... "classifier.6"),
// built from a state dict: the architecture fixes kernels, strides and pools, and the
// widths (channels, hidden units, classes) are read from the tensors' shapes, so a small
// state dict with the same names makes a small network of the same shape. Input 224x224
// RGB normalized by `mean`/`std` from the metadata (comma-separated triples; ImageNet's
// by default); the class score is the last layer's logit.
std::shared_ptr<nn::Sequential> torchvision_from_state_dict(const io::NamedTensors& tensors, const std::string& label);

}  // namespace tg::models
