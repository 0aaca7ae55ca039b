// Rule-based methods: the gradient's walk with a different backward rule at every rectifier
// (ReLU and ReLU6), swapped for the walk only by the scoped override.
//   deconvnet       (Zeiler & Fergus 2014): pass the gradient's positive part, whatever the input
//   guided backprop (Springenberg et al. 2014): pass it only where the input and the gradient are positive
#pragma once

#include "tinygrad-cpp/explain/gradients.h"

namespace tg::explain {

Tensor guided_backprop(nn::Model& model, const Tensor& input, const Target& target);
Tensor deconvnet(nn::Model& model, const Tensor& input, const Target& target);

inline Tensor guided_backprop(nn::Model& model, const Tensor& input, const Targets& targets) {
  return guided_backprop(model, input, Target::of_classes(targets));
}
inline Tensor deconvnet(nn::Model& model, const Tensor& input, const Targets& targets) {
  return deconvnet(model, input, Target::of_classes(targets));
}

}  // namespace tg::explain
