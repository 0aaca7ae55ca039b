// The CAM family: class activation maps at a layer `layer` (a 4-D activation A [N,K,h,w]),
// results [N,h,w] at the layer's resolution:
//   cam:      sum_k w[c,k] A_k, with w the weights of `linear_layer` (needs a
//             global-average-pool + linear head after `layer`; Zhou et al. 2016)
//   grad_cam: ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of d target / d A_k
//             (Selvaraju et al. 2017); the target is a class or a detection
#pragma once

#include <string>

#include "tinygrad-cpp/explain/methods.h"

namespace tg::explain {

Tensor cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer,
           const std::string& linear_layer);
Tensor grad_cam(nn::Model& model, const Tensor& input, const Target& target, const std::string& layer);
// The Grad-CAM formula on its own: activations A [N,K,h,w] and their gradients dscore/dA
// (same shape) -> ReLU(sum_k alpha[n,k] A[n,k]) [N,h,w], alpha[n,k] = mean of dA[n,k].
Tensor grad_cam_map(const Tensor& activations, const Tensor& gradients);
// Guided backprop times Grad-CAM upsampled (bilinear) to the input: [N,C,H,W].
Tensor guided_grad_cam(nn::Model& model, const Tensor& input, const Target& target, const std::string& layer);

inline Tensor grad_cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer) {
  return grad_cam(model, input, Target::of_classes(targets), layer);
}
inline Tensor guided_grad_cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer) {
  return guided_grad_cam(model, input, Target::of_classes(targets), layer);
}

}  // namespace tg::explain
