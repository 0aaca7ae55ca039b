#include "tinygrad-cpp/explain/ascent.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tg::explain {

Tensor roll(const Tensor& x, int64_t dy, int64_t dx) {
  if (x.ndim() < 2) throw Error("roll: tensor " + shape_str(x.shape()) + " needs at least two axes");
  const int64_t H = x.dim(-2), W = x.dim(-1), planes = x.numel() / std::max<int64_t>(1, H * W);
  Tensor out = Tensor::empty(x.shape());
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t c = 0; c < W; ++c)
        out.data()[p * H * W + ((y + dy) % H + H) % H * W + ((c + dx) % W + W) % W] = x.data()[p * H * W + y * W + c];
  return out;
}

Tensor gaussian_blur(const Tensor& x, float sigma) {
  if (x.ndim() < 2 || !(sigma > 0.f)) throw Error("gaussian_blur: needs a [...,H,W] tensor and sigma > 0");
  const int radius = std::max(1, static_cast<int>(std::ceil(3.f * sigma)));
  std::vector<float> kernel(2 * radius + 1);
  float total = 0.f;
  for (int i = -radius; i <= radius; ++i) total += kernel[i + radius] = std::exp(-0.5f * i * i / (sigma * sigma));
  for (float& k : kernel) k /= total;
  const int64_t H = x.dim(-2), W = x.dim(-1), planes = x.numel() / std::max<int64_t>(1, H * W);
  Tensor tmp = Tensor::empty(x.shape()), out = Tensor::empty(x.shape());
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = x.data() + p * H * W;
    float* mid = tmp.data() + p * H * W;
    float* dst = out.data() + p * H * W;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t c = 0; c < W; ++c) {
        float sum = 0.f;
        for (int i = -radius; i <= radius; ++i) sum += kernel[i + radius] * src[y * W + std::clamp<int64_t>(c + i, 0, W - 1)];
        mid[y * W + c] = sum;
      }
    for (int64_t y = 0; y < H; ++y)
      for (int64_t c = 0; c < W; ++c) {
        float sum = 0.f;
        for (int i = -radius; i <= radius; ++i) sum += kernel[i + radius] * mid[std::clamp<int64_t>(y + i, 0, H - 1) * W + c];
        dst[y * W + c] = sum;
      }
  }
  return out;
}

Tensor total_variation(const Tensor& x) {
  const int axis_h = x.ndim() - 2, axis_w = x.ndim() - 1;
  const int64_t H = x.dim(-2), W = x.dim(-1);
  const Tensor down = sub(slice(x, axis_h, 1, H), slice(x, axis_h, 0, H - 1));
  const Tensor right = sub(slice(x, axis_w, 1, W), slice(x, axis_w, 0, W - 1));
  return add(sum(tg::abs(down)), sum(tg::abs(right)));
}

Objective class_score(nn::Model& model, int64_t target) {
  return [&model, target](const Tensor& x) {
    const Tensor logits = model(x);
    if (target < 0 || target >= logits.dim(1)) throw Error(fmt::format("class_score: class {} out of range", target));
    return sum(slice(logits, 1, target, target + 1));
  };
}

Objective class_scores(nn::Model& model, const Targets& targets) {
  return [&model, targets](const Tensor& x) {
    const Tensor logits = model(x);
    if (static_cast<int64_t>(targets.size()) != logits.dim(0))
      throw Error(fmt::format("class_scores: {} targets for a batch of {}", targets.size(), logits.dim(0)));
    Tensor pick = Tensor::zeros(logits.shape());  // one-hot rows: score[n, targets[n]]
    for (int64_t n = 0; n < logits.dim(0); ++n) {
      const int64_t c = targets[static_cast<size_t>(n)];
      if (c < 0 || c >= logits.dim(1)) throw Error(fmt::format("class_scores: class {} out of range", c));
      pick.data()[n * logits.dim(1) + c] = 1.f;
    }
    return sum(mul(logits, pick));
  };
}

Objective neuron_activation(nn::Model& model, const Neuron& n) {
  return [&model, n](const Tensor& x) {
    const Tensor a = model.forward_until(x, n.layer);
    if (a.ndim() == 4) return sum(slice(slice(slice(a, 1, n.channel, n.channel + 1), 2, n.y, n.y + 1), 3, n.x, n.x + 1));
    return sum(slice(a, 1, n.channel, n.channel + 1));
  };
}

Objective feature_match(nn::Model& model, const std::string& layer, const Tensor& target_features) {
  double norm = 0;
  for (int64_t i = 0; i < target_features.numel(); ++i) norm += static_cast<double>(target_features.data()[i]) * target_features.data()[i];
  const float scale = 1.f / static_cast<float>(std::max(norm, 1e-12));
  return [&model, layer, target_features, scale](const Tensor& x) {
    const Tensor diff = sub(model.forward_until(x, layer), target_features);
    return mul(sum(mul(diff, diff)), Tensor::scalar(-scale));
  };
}

Tensor ascend(const Tensor& start, const Objective& objective, const AscentOptions& options) {
  if (options.steps < 0 || options.jitter < 0 || options.blur_every < 0)
    throw Error("ascend: steps, jitter and blur_every must be >= 0");
  Generator gen(options.seed);
  Tensor x = start.clone();
  for (int step = 1; step <= options.steps; ++step) {
    int64_t dy = 0, dx = 0;
    if (options.jitter > 0) {
      dy = static_cast<int64_t>(gen.next_u64() % (2 * options.jitter + 1)) - options.jitter;
      dx = static_cast<int64_t>(gen.next_u64() % (2 * options.jitter + 1)) - options.jitter;
    }
    const Tensor shifted = (dy || dx) ? roll(x, dy, dx) : x;
    const Tensor leaf = shifted.detach().requires_grad_();
    Tensor value = objective(leaf);
    if (value.numel() != 1) throw Error("ascend: the objective must return one number, got " + shape_str(value.shape()));
    if (options.tv > 0.f) value = sub(value, mul(total_variation(leaf), Tensor::scalar(options.tv)));
    const float objective_value = value.item();
    value.backward();
    Tensor gradient = (dy || dx) ? roll(leaf.grad(), -dy, -dx) : leaf.grad();
    if (options.normalize_gradient && gradient.numel() > 0) {  // each image of the batch on its own
      if (!(dy || dx)) gradient = gradient.clone();  // scaled below: leave leaf.grad() as it is
      const int64_t images = gradient.ndim() > 0 ? gradient.dim(0) : 1, per_image = gradient.numel() / images;
      for (int64_t n = 0; n < images; ++n) {
        float* g = gradient.data() + n * per_image;
        double mean_abs = 0;
        for (int64_t i = 0; i < per_image; ++i) mean_abs += std::fabs(g[i]);
        mean_abs /= static_cast<double>(std::max<int64_t>(1, per_image));
        const float inverse = mean_abs > 0 ? static_cast<float>(1.0 / mean_abs) : 0.f;
        for (int64_t i = 0; i < per_image; ++i) g[i] *= inverse;
      }
    }
    ascent_step(x, gradient, options.learning_rate, options.l2);
    if (options.blur_every > 0 && step % options.blur_every == 0) x = gaussian_blur(x, options.blur_sigma);
    if (options.clip)
      for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = std::clamp(x.data()[i], options.clip_low, options.clip_high);
    if (options.on_step) options.on_step(step, x, objective_value);
  }
  return x;
}

void ascent_step(Tensor& x, const Tensor& gradient, float learning_rate, float l2) {
  if (!gradient.defined() || gradient.shape() != x.shape())
    throw Error("ascent_step: gradient of shape " + (gradient.defined() ? shape_str(gradient.shape()) : "(none)") +
                " for an image of shape " + shape_str(x.shape()));
  // BEGIN SOLUTION(ascent-step)
  // HINT: one step uphill on objective - l2 * ||x||^2, in place: differentiate the penalty yourself, combine
  // HINT: it with the objective's gradient you are given, and move every element by learning_rate along it
  float* px = x.data();
  const float* g = gradient.data();
  for (int64_t i = 0; i < x.numel(); ++i) px[i] += learning_rate * (g[i] - 2.f * l2 * px[i]);
  // END SOLUTION
}

}  // namespace tg::explain
