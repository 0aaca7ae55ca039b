#include "tinygrad-cpp/explain/cam.h"

#include <fmt/format.h>

#include <algorithm>

#include "tinygrad-cpp/explain/rule_based.h"

namespace tg::explain {

namespace {
Tensor check_feature_map(const Tensor& a, const std::string& layer, const char* method) {
  if (a.ndim() != 4)
    throw Error(fmt::format("{}: layer '{}' has shape {}; a CAM needs a [N,K,h,w] feature map", method, layer,
                            shape_str(a.shape())));
  return a;
}
}  // namespace

Tensor cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer,
           const std::string& linear_layer) {
  const Target target = Target::of_classes(targets);
  check_input(input, target, "cam");
  const Tensor logits = scores(model, input);
  const Tensor a = check_feature_map(model.activation(layer), layer, "cam");
  const Tensor head = model.parameter(linear_layer + ".weight");
  const int64_t N = a.dim(0), K = a.dim(1), h = a.dim(2), w = a.dim(3);
  if (head.ndim() != 2 || head.dim(1) != K)
    throw Error(fmt::format("cam: '{}' has weight {}, not [classes, {}] for the {} channels of '{}'", linear_layer,
                            shape_str(head.shape()), K, K, layer));
  const Targets classes = seed_scores(model, logits, target, "cam").resolved.classes;
  Tensor out = Tensor::zeros({N, h, w});
  for (int64_t n = 0; n < N; ++n) {
    const int64_t c = classes[n];
    for (int64_t k = 0; k < K; ++k) {
      const float weight = head.at({c, k});
      for (int64_t i = 0; i < h * w; ++i) out.data()[n * h * w + i] += weight * a.data()[(n * K + k) * h * w + i];
    }
  }
  return out;
}

Tensor grad_cam(nn::Model& model, const Tensor& input, const Target& target, const std::string& layer) {
  check_input(input, target, "grad_cam");
  FreezeParameters frozen(model);
  // The features A as a leaf, and the rest of the network run from them: backward
  // then stops at A and leaves d target / d A in a.grad().
  const Tensor features = check_feature_map(model.forward_until(input, layer), layer, "grad_cam");
  const Tensor a = features.detach().requires_grad_();
  const Seeded seeded = seed_scores(model, model.forward_after(a, layer), target, "grad_cam");
  seeded.root.backward(seeded.seed);
  return grad_cam_map(a, a.grad());
}

Tensor grad_cam_map(const Tensor& activations, const Tensor& gradients) {
  if (activations.ndim() != 4 || !gradients.defined() || gradients.shape() != activations.shape())
    throw Error(fmt::format("grad_cam_map: activations {} and gradients {} must both be [N,K,h,w] of one shape",
                            shape_str(activations.shape()),
                            gradients.defined() ? shape_str(gradients.shape()) : std::string("(none)")));
  const Tensor& a = activations;
  const Tensor& grad_a = gradients;
  const int64_t N = a.dim(0), K = a.dim(1), h = a.dim(2), w = a.dim(3);
  Tensor out = Tensor::zeros({N, h, w});
  // BEGIN SOLUTION(gradcam)
  // HINT: each channel's weight is the spatial mean of its gradient; the map is the weighted sum of the
  // HINT: channels, with its negative values set to 0 (cam.h gives the formula)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const float* g = grad_a.data() + (n * K + k) * h * w;
      const float* act = a.data() + (n * K + k) * h * w;
      float alpha = 0.f;
      for (int64_t i = 0; i < h * w; ++i) alpha += g[i];
      alpha /= static_cast<float>(h * w);
      for (int64_t i = 0; i < h * w; ++i) out.data()[n * h * w + i] += alpha * act[i];
    }
  }
  for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] = std::max(0.f, out.data()[i]);
  // END SOLUTION
  return out;
}

Tensor guided_grad_cam(nn::Model& model, const Tensor& input, const Target& target, const std::string& layer) {
  const Tensor guided = guided_backprop(model, input, target);
  const Tensor maps = grad_cam(model, input, target, layer);
  const int64_t N = input.dim(0), C = input.dim(1), H = input.dim(2), W = input.dim(3);
  const int64_t h = maps.dim(1), w = maps.dim(2);
  Tensor out = Tensor::empty(input.shape());
  for (int64_t n = 0; n < N; ++n) {
    const Tensor up = upsample(reshape(slice(maps, 0, n, n + 1), {1, h, w}), H, W, Interpolation::Bilinear);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H * W; ++i)
        out.data()[(n * C + c) * H * W + i] = guided.data()[(n * C + c) * H * W + i] * up.data()[i];
  }
  return out;
}

}  // namespace tg::explain

// ---- this family's entries in the method table ----
namespace tg::explain {

std::vector<Method> cam_methods() {
  const TargetKinds scores{.classes = true, .detections = true};
  return {
      {.name = "gradcam",
       .description = "ReLU of the layer's channels weighted by their mean gradient (Selvaraju et al. 2017)",
       .targets = scores,
       .layer = UsesLayer::FeatureMap,
       .policy = viz::Normalize::MinMax,
       .colormap = viz::Colormap::Viridis,
       .run = [](const Call& c) { return grad_cam(c.model, c.input, c.target, c.layer); }},
      {.name = "guided_gradcam",
       .description = "guided backprop times Grad-CAM upsampled to the input",
       .targets = scores,
       .layer = UsesLayer::FeatureMap,
       .rule = RectifierRule::Own,
       .run = [](const Call& c) { return guided_grad_cam(c.model, c.input, c.target, c.layer); }},
  };
}

}  // namespace tg::explain
