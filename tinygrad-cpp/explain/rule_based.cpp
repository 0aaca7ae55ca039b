#include "tinygrad-cpp/explain/rule_based.h"

namespace tg::explain {

Tensor guided_backprop(nn::Model& model, const Tensor& input, const Target& target) {
  return gradient(model, input, target, rules::guided_relu);
}

Tensor deconvnet(nn::Model& model, const Tensor& input, const Target& target) {
  return gradient(model, input, target, rules::deconvnet_relu);
}

}  // namespace tg::explain

// ---- this family's entries in the method table ----
namespace tg::explain {

std::vector<Method> rule_based_methods() {
  const TargetKinds any{.classes = true, .neurons = true, .detections = true};
  return {
      {.name = "guided_backprop",
       .description = "the gradient with the guided rule at every rectifier (Springenberg et al. 2014)",
       .targets = any,
       .rule = RectifierRule::Own,
       .run = [](const Call& c) { return guided_backprop(c.model, c.input, c.target); }},
      {.name = "deconvnet",
       .description = "the gradient with the deconvnet rule at every rectifier (Zeiler & Fergus 2014)",
       .targets = any,
       .rule = RectifierRule::Own,
       .run = [](const Call& c) { return deconvnet(c.model, c.input, c.target); }},
  };
}

}  // namespace tg::explain
