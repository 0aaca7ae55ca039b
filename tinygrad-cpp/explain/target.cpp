#include "tinygrad-cpp/explain/target.h"

#include <fmt/format.h>

namespace tg::explain {

FreezeParameters::FreezeParameters(const nn::Module& model) {
  for (Tensor p : model.parameters()) {
    saved_.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
}

FreezeParameters::~FreezeParameters() {
  for (auto& [p, was] : saved_) p.requires_grad_(was);
}

const char* kind_name(Target::Kind kind) {
  switch (kind) {
    case Target::Kind::Class: return "class";
    case Target::Kind::Neuron: return "neuron";
    case Target::Kind::Detection: return "detection";
  }
  return "?";
}

Tensor scores(nn::Model& model, const Tensor& input) {
  NoGrad no_grad;
  return model(input);
}

void backward_with_rule(const Tensor& root, const Tensor& seed, const BackwardRule& rule) {
  OverrideBackward relu(Op::ReLU, rule), relu6(Op::ReLU6, rule);
  root.backward(seed);
}

void check_input(const Tensor& input, const Target& target, const char* method) {
  if (input.ndim() != 4)
    throw Error(fmt::format("{}: input {} must be a batch [N,C,H,W]", method, shape_str(input.shape())));
  if (target.kind == Target::Kind::Neuron) return;
  if (static_cast<int64_t>(target.classes.size()) != input.dim(0))
    throw Error(fmt::format("{}: {} targets for a batch of {}", method, target.classes.size(), input.dim(0)));
  if (target.kind == Target::Kind::Detection && target.anchors.size() != target.classes.size())
    throw Error(fmt::format("{}: {} anchors for {} detection classes", method, target.anchors.size(), target.classes.size()));
}

namespace {

// A detector's per-anchor logits [N, anchors, classes] of the pass just run.
Tensor anchor_logits_of(const nn::Model& model, const char* method) {
  const Tensor a = model.anchor_logits();
  if (!a.defined() || a.ndim() != 3)
    throw Error(fmt::format("{}: a detection target needs a detector (the model has no per-anchor logits)", method));
  return a;
}

// Classes: where -1, the predicted one. Anchors (a detection): where -1, the anchor where
// the class's logit is highest (the first such, the anchor the scores' max reads).
Target resolve_from(const nn::Model& model, const Tensor& logits, const Target& target, const char* method) {
  if (target.kind == Target::Kind::Neuron) return target;
  if (logits.ndim() != 2)
    throw Error(std::string(method) + ": the model's output " + shape_str(logits.shape()) + " is not [N, classes]");
  const int64_t classes = logits.dim(1);
  const std::vector<int64_t> predicted = model.predict(logits);
  Target resolved = target;
  for (int64_t n = 0; n < logits.dim(0); ++n) {
    int64_t& c = resolved.classes[static_cast<size_t>(n)];
    if (c < 0) c = predicted[static_cast<size_t>(n)];
    if (c >= classes) throw Error(fmt::format("{}: target {} out of range for {} classes", method, c, classes));
  }
  if (target.kind != Target::Kind::Detection) return resolved;
  const Tensor a = anchor_logits_of(model, method);
  const int64_t anchors = a.dim(1);
  for (int64_t n = 0; n < a.dim(0); ++n) {
    const int64_t c = resolved.classes[static_cast<size_t>(n)];
    int64_t& anchor = resolved.anchors[static_cast<size_t>(n)];
    if (anchor >= anchors) throw Error(fmt::format("{}: anchor {} out of range for {} anchors", method, anchor, anchors));
    if (anchor >= 0) continue;
    anchor = 0;
    for (int64_t k = 1; k < anchors; ++k)
      if (a.at({n, k, c}) > a.at({n, anchor, c})) anchor = k;
  }
  return resolved;
}

Tensor neuron_seed(const Tensor& activation, const Neuron& neuron, const char* method) {
  Tensor seed = Tensor::zeros(activation.shape());
  const bool spatial = activation.ndim() == 4;
  if ((!spatial && activation.ndim() != 2) || neuron.channel < 0 || neuron.channel >= activation.dim(1) ||
      (spatial && (neuron.y < 0 || neuron.y >= activation.dim(2) || neuron.x < 0 || neuron.x >= activation.dim(3))))
    throw Error(fmt::format("{}: neuron (channel {}, y {}, x {}) is outside layer '{}' of shape {}", method, neuron.channel,
                            neuron.y, neuron.x, neuron.layer, shape_str(activation.shape())));
  for (int64_t n = 0; n < activation.dim(0); ++n) {
    if (spatial) seed.at({n, neuron.channel, neuron.y, neuron.x}) = 1.f;
    else seed.at({n, neuron.channel}) = 1.f;
  }
  return seed;
}

}  // namespace

Target resolve(nn::Model& model, const Tensor& input, const Target& target, const char* method) {
  if (target.kind == Target::Kind::Neuron) return target;
  return resolve_from(model, scores(model, input), target, method);
}

Seeded seed_scores(const nn::Model& model, const Tensor& logits, const Target& target, const char* method) {
  if (target.kind == Target::Kind::Neuron)
    throw Error(fmt::format("{}: explains a class or a detection, not a neuron", method));
  Seeded s{.root = logits, .seed = Tensor(), .resolved = resolve_from(model, logits, target, method)};
  if (target.kind == Target::Kind::Class) {
    // One-hot on each image's target score: d score / d score = 1, others 0.
    s.seed = one_hot(logits.shape(), s.resolved.classes);
    return s;
  }
  s.root = anchor_logits_of(model, method);
  s.seed = Tensor::zeros(s.root.shape());
  for (int64_t n = 0; n < s.root.dim(0); ++n)
    s.seed.at({n, s.resolved.anchors[static_cast<size_t>(n)], s.resolved.classes[static_cast<size_t>(n)]}) = 1.f;
  return s;
}

Seeded reach_target(nn::Model& model, const Tensor& x, const Target& target, const char* method) {
  if (target.kind != Target::Kind::Neuron) return seed_scores(model, model(x), target, method);
  const Tensor activation = model.forward_until(x, target.neuron.layer);
  return {.root = activation, .seed = neuron_seed(activation, target.neuron, method), .resolved = target};
}

std::vector<float> target_values(const nn::Model& model, const Tensor& logits, const Target& resolved, Measure measure) {
  NoGrad no_grad;
  std::vector<float> values;
  if (resolved.kind == Target::Kind::Neuron) throw Error("target_values: a neuron has no score of the model");
  const Tensor p = measure == Measure::Probability && resolved.kind == Target::Kind::Class ? model.probabilities(logits) : logits;
  const Tensor anchors = resolved.kind == Target::Kind::Detection ? anchor_logits_of(model, "target_values") : Tensor();
  for (int64_t n = 0; n < logits.dim(0); ++n) {
    const int64_t c = resolved.classes[static_cast<size_t>(n)];
    if (resolved.kind == Target::Kind::Class) {
      values.push_back(p.at({n, c}));
      continue;
    }
    const float logit = anchors.at({n, resolved.anchors[static_cast<size_t>(n)], c});
    values.push_back(measure == Measure::Probability ? sigmoid(Tensor::scalar(logit)).item() : logit);
  }
  return values;
}

Tensor constant_input(const nn::Model& model, const Shape& shape, float pixel) {
  const preprocess::InputSpec& spec = model.info().input;
  Tensor t = Tensor::empty(shape);
  const int64_t plane = spec.height * spec.width, image = spec.channels * plane;
  if (shape.size() != 4 || shape[1] != spec.channels || shape[2] != spec.height || shape[3] != spec.width)
    throw Error(fmt::format("constant_input: shape {} is not a batch of the model's {}x{}x{} input", shape_str(shape),
                            spec.channels, spec.height, spec.width));
  for (int64_t n = 0; n < shape[0]; ++n)
    for (int64_t c = 0; c < spec.channels; ++c)
      for (int64_t i = 0; i < plane; ++i) t.data()[n * image + c * plane + i] = (pixel - spec.mean[c]) / spec.std[c];
  return t;
}

}  // namespace tg::explain
