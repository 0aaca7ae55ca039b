#include "tinygrad-cpp/explain/feature_visualization.h"

#include <fmt/format.h>

#include <cmath>

#include "tinygrad-cpp/nn/optim.h"

namespace tg::explain {

const std::vector<SsdHead>& ssd_mobilenet_v2_heads() {
  // Scales 0.2 + 0.75 i / 5 of the image side (SSD's linear rule from 0.2 to 0.95); the
  // 19x19 head's square is the smaller 0.1.
  static const std::vector<SsdHead> heads = [] {
    std::vector<SsdHead> h;
    const int64_t cells[] = {19, 10, 5, 3, 2, 1};
    int64_t first = 0;
    for (int i = 0; i < 6; ++i) {
      const int64_t per_cell = i == 0 ? 3 : 6;
      h.push_back({cells[i], per_cell, first, i == 0 ? 0.1f : 0.2f + 0.15f * static_cast<float>(i)});
      first += cells[i] * cells[i] * per_cell;
    }
    return h;
  }();
  return heads;
}

int64_t ssd_anchor_count() {
  const SsdHead& last = ssd_mobilenet_v2_heads().back();
  return last.first + last.cells * last.cells * last.per_cell;
}

int64_t ssd_anchor(int head, int64_t row, int64_t col, int64_t k) {
  const auto& heads = ssd_mobilenet_v2_heads();
  if (head < 0 || head >= static_cast<int>(heads.size()))
    throw Error(fmt::format("ssd_anchor: head {} out of range 0..{}", head, heads.size() - 1));
  const SsdHead& h = heads[static_cast<size_t>(head)];
  if (row < 0 || row >= h.cells || col < 0 || col >= h.cells || k < 0 || k >= h.per_cell)
    throw Error(fmt::format("ssd_anchor: head {} has {}x{} cells of {} anchors, got row {}, col {}, k {}", head, h.cells,
                            h.cells, h.per_cell, row, col, k));
  return h.first + (row * h.cells + col) * h.per_cell + k;
}

PixelBox ssd_square_anchor_box(int head, int64_t row, int64_t col, int64_t size) {
  ssd_anchor(head, row, col, 0);  // checks the arguments
  const SsdHead& h = ssd_mobilenet_v2_heads()[static_cast<size_t>(head)];
  const double cy = (static_cast<double>(row) + 0.5) / static_cast<double>(h.cells);
  const double cx = (static_cast<double>(col) + 0.5) / static_cast<double>(h.cells);
  const double half = h.scale / 2.0, side = static_cast<double>(size);
  auto pixel = [&](double v) { return static_cast<int64_t>(std::lround(std::clamp(v, 0.0, 1.0) * side)); };
  return {pixel(cx - half), pixel(cy - half), pixel(cx + half), pixel(cy + half)};
}

namespace {
// The one-hot weights of the chosen logits, [N, anchors, classes], after checking the shape.
Tensor detection_pick(const Tensor& logits, const DetectionTargets& targets, const char* who) {
  if (!logits.defined() || logits.ndim() != 3)
    throw Error(fmt::format("{}: the model has no per-anchor logits (is it a detector?)", who));
  const int64_t N = logits.dim(0), A = logits.dim(1), C = logits.dim(2);
  if (static_cast<int64_t>(targets.classes.size()) != N || static_cast<int64_t>(targets.anchors.size()) != N)
    throw Error(fmt::format("{}: {} classes and {} anchor lists for a batch of {}", who, targets.classes.size(),
                            targets.anchors.size(), N));
  Tensor pick = Tensor::zeros(logits.shape());
  for (int64_t n = 0; n < N; ++n) {
    const int64_t c = targets.classes[static_cast<size_t>(n)];
    if (c < 0 || c >= C) throw Error(fmt::format("{}: image {}: class {} out of range 0..{}", who, n, c, C - 1));
    for (int64_t a : targets.anchors[static_cast<size_t>(n)]) {
      if (a < 0 || a >= A) throw Error(fmt::format("{}: image {}: anchor {} out of range 0..{}", who, n, a, A - 1));
      pick.data()[(n * A + a) * C + c] = 1.f;
    }
  }
  return pick;
}

// One-hot rows [N, classes] on the images whose anchor list is empty: their class's best anchor.
Tensor best_anchor_pick(const Tensor& scores, const DetectionTargets& targets) {
  Tensor pick = Tensor::zeros(scores.shape());
  for (size_t n = 0; n < targets.anchors.size(); ++n)
    if (targets.anchors[n].empty()) pick.data()[static_cast<int64_t>(n) * scores.dim(1) + targets.classes[n]] = 1.f;
  return pick;
}
}  // namespace

Objective detection_logits(nn::Model& model, const DetectionTargets& targets) {
  return [&model, targets](const Tensor& x) {
    const Tensor scores = model(x);  // [N, classes]: each class's best anchor
    const Tensor logits = model.anchor_logits();
    const Tensor one_anchor = sum(mul(logits, detection_pick(logits, targets, "detection_logits")));
    return add(one_anchor, sum(mul(scores, best_anchor_pick(scores, targets))));
  };
}

std::vector<std::vector<float>> detection_logit_values(nn::Model& model, const Tensor& images,
                                                       const DetectionTargets& targets) {
  NoGrad no_grad;
  const Tensor scores = model(images);
  const Tensor logits = model.anchor_logits();
  detection_pick(logits, targets, "detection_logit_values");  // checks every index
  const int64_t A = logits.dim(1), C = logits.dim(2);
  std::vector<std::vector<float>> values(targets.anchors.size());
  for (size_t n = 0; n < targets.anchors.size(); ++n) {
    if (targets.anchors[n].empty()) values[n].push_back(scores.at({static_cast<int64_t>(n), targets.classes[n]}));
    for (int64_t a : targets.anchors[n])
      values[n].push_back(logits.data()[(static_cast<int64_t>(n) * A + a) * C + targets.classes[n]]);
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
  Generator gen(options.seed);
  Tensor z = Tensor::randn({images, 3, height, width}, gen, 0.f, options.initial_sd).requires_grad_();
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
  }
  NoGrad no_grad;
  return image_of();
}

}  // namespace tg::explain
