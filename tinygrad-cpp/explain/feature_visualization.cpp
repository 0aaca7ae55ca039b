#include "tinygrad-cpp/explain/feature_visualization.h"

#include <fmt/format.h>

#include <cmath>

#include "tinygrad-cpp/nn/optim.h"

namespace tg::explain {

std::vector<int64_t> cell_anchors(const models::Head& head, int64_t row, int64_t col) {
  if (row < 0 || row >= head.height || col < 0 || col >= head.width)
    throw Error(fmt::format("cell_anchors: head {} has {}x{} cells, got row {}, col {}", head.grid, head.height,
                            head.width, row, col));
  std::vector<int64_t> anchors;
  for (int64_t k = 0; k < head.per_cell; ++k)
    anchors.push_back(head.first_anchor + (row * head.width + col) * head.per_cell + k);
  return anchors;
}

namespace {
// The targets as one detection target per anchor slot: slot k holds image n's k-th anchor,
// or its last one when it has fewer (those images are masked out of slot k by `counts`).
struct Slots {
  std::vector<Target> targets;
  std::vector<std::vector<bool>> counts;  // [slot][image]: this image has a k-th anchor
};
Slots slots_of(const DetectionTargets& targets, int64_t batch, const char* who) {
  if (static_cast<int64_t>(targets.classes.size()) != batch || static_cast<int64_t>(targets.anchors.size()) != batch)
    throw Error(fmt::format("{}: {} classes and {} anchor lists for a batch of {}", who, targets.classes.size(),
                            targets.anchors.size(), batch));
  size_t most = 0;
  for (size_t n = 0; n < targets.anchors.size(); ++n) {
    if (targets.anchors[n].empty()) throw Error(fmt::format("{}: image {}: no anchor (-1 = the best one)", who, n));
    for (int64_t a : targets.anchors[n])
      if (a < -1) throw Error(fmt::format("{}: image {}: anchor {} is not an index (>= 0) or -1 (the best)", who, n, a));
    most = std::max(most, targets.anchors[n].size());
  }
  Slots slots;
  for (size_t k = 0; k < most; ++k) {
    Targets anchors;
    std::vector<bool> counts;
    for (const std::vector<int64_t>& list : targets.anchors) {
      anchors.push_back(list[std::min(k, list.size() - 1)]);
      counts.push_back(k < list.size());
    }
    slots.targets.push_back(Target::of_detections(targets.classes, std::move(anchors)));
    slots.counts.push_back(std::move(counts));
  }
  return slots;
}
}  // namespace

Objective detection_logits(nn::Model& model, const DetectionTargets& targets) {
  return [&model, targets](const Tensor& x) {
    const Tensor scores = model(x);
    const Slots slots = slots_of(targets, x.dim(0), "detection_logits");
    Tensor root, seed;  // the anchor logits, and the sum of every counted slot's one-hot seed
    for (size_t k = 0; k < slots.targets.size(); ++k) {
      const Seeded s = seed_scores(model, scores, slots.targets[k], "detection_logits");
      const int64_t per_image = s.seed.numel() / s.seed.dim(0);
      if (!seed.defined()) root = s.root, seed = Tensor::zeros(s.seed.shape());
      for (int64_t n = 0; n < s.seed.dim(0); ++n)
        if (slots.counts[k][static_cast<size_t>(n)])
          for (int64_t i = n * per_image; i < (n + 1) * per_image; ++i) seed.data()[i] += s.seed.data()[i];
    }
    return sum(mul(root, seed));
  };
}

std::vector<std::vector<AnchorLogit>> detection_logit_values(nn::Model& model, const Tensor& images,
                                                             const DetectionTargets& targets) {
  const Tensor logits = scores(model, images);
  const Slots slots = slots_of(targets, images.dim(0), "detection_logit_values");
  std::vector<std::vector<AnchorLogit>> values(targets.anchors.size());
  for (size_t k = 0; k < slots.targets.size(); ++k) {
    const Target resolved = seed_scores(model, logits, slots.targets[k], "detection_logit_values").resolved;
    const std::vector<float> v = target_values(model, logits, resolved, Measure::Score);
    for (size_t n = 0; n < values.size(); ++n)
      if (slots.counts[k][n]) values[n].push_back({.anchor = resolved.anchors[n], .logit = v[n]});
  }
  return values;
}

Tensor visualize(const Objective& objective, int64_t images, int64_t height, int64_t width,
                 const FeatureVisualizationOptions& options) {
  if (images < 1 || options.steps < 0 || !(options.learning_rate > 0.f) || !(options.gain > 0.f) ||
      !(options.initial_sd >= 0.f))
    throw Error(fmt::format("visualize: images {} must be >= 1, steps {} >= 0, learning_rate {} and gain {} > 0, "
                            "initial_sd {} >= 0",
                            images, options.steps, options.learning_rate, options.gain, options.initial_sd));
  const DecorrelatedImage decorrelated(height, width, options.decay);
  if (!options.image_seeds.empty() && static_cast<int64_t>(options.image_seeds.size()) != images)
    throw Error(fmt::format("visualize: {} image_seeds for {} images (give one per image, or none)",
                            options.image_seeds.size(), images));
  Tensor z;
  if (options.image_seeds.empty()) {
    Generator gen(options.seed);
    z = Tensor::randn({images, 3, height, width}, gen, 0.f, options.initial_sd);
  } else {
    std::vector<Tensor> starts;
    for (uint64_t seed : options.image_seeds) {
      Generator gen(seed);
      starts.push_back(Tensor::randn({1, 3, height, width}, gen, 0.f, options.initial_sd));
    }
    z = cat(starts, 0).detach();
  }
  z.requires_grad_();
  const Tensor gain = Tensor::scalar(options.gain);
  auto image_of = [&] { return decorrelated(mul(z, gain)); };
  const Objective robust = transformed(objective, options.transforms, options.seed + 1);
  optim::Adam adam({{"z", z}}, options.learning_rate);
  for (int step = 1; step <= options.steps; ++step) {
    adam.zero_grad();
    const Tensor value = robust(image_of());
    if (value.numel() != 1) throw Error("visualize: the objective must return one number, got " + shape_str(value.shape()));
    const float objective_value = value.item();
    neg(value).backward();  // Adam descends: climb the objective by descending its negative
    adam.step();
    if (options.on_step) options.on_step(step, objective_value);
    if (options.on_images) {
      NoGrad no_grad;
      options.on_images(step, image_of());
    }
  }
  NoGrad no_grad;
  return image_of();
}

}  // namespace tg::explain
