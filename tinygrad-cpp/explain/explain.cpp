#include "tinygrad-cpp/explain/explain.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "tinygrad-cpp/viz/viz.h"

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

namespace {

// backward(seed) from `root` with `rule` on every rectifier (ReLU and ReLU6) of the model.
void backward_with_rule(const Tensor& root, const Tensor& seed, const BackwardRule& rule) {
  OverrideBackward relu(Op::ReLU, rule), relu6(Op::ReLU6, rule);
  root.backward(seed);
}

void check_input(const Tensor& input, const Targets& targets, const char* method) {
  if (input.ndim() != 4)
    throw Error(fmt::format("{}: input {} must be a batch [N,C,H,W]", method, shape_str(input.shape())));
  if (static_cast<int64_t>(targets.size()) != input.dim(0))
    throw Error(fmt::format("{}: {} targets for a batch of {}", method, targets.size(), input.dim(0)));
}

// The class each image is explained for: its target, or where the target is -1 the
// class with the highest score. Targets must be valid classes of scores [N, classes].
Targets resolve_targets(const nn::Model& model, const Targets& targets, const Tensor& scores, const char* method) {
  if (scores.ndim() != 2) throw Error(std::string(method) + ": the model's output " + shape_str(scores.shape()) + " is not [N, classes]");
  const int64_t classes = scores.dim(1);
  const std::vector<int64_t> predicted = model.predict(scores);
  Targets resolved = targets;
  for (int64_t n = 0; n < scores.dim(0); ++n) {
    if (resolved[n] < 0) resolved[n] = predicted[n];
    if (resolved[n] >= classes)
      throw Error(fmt::format("{}: target {} out of range for {} classes", method, resolved[n], classes));
  }
  return resolved;
}

}  // namespace

Tensor scores(nn::Model& model, const Tensor& input) {
  NoGrad no_grad;
  return model(input);
}

Tensor class_gradient(nn::Model& model, const Tensor& input, const Targets& targets, const BackwardRule& rule,
                      Targets* resolved) {
  check_input(input, targets, "class_gradient");
  FreezeParameters frozen(model);
  // BEGIN SOLUTION(saliency)
  // HINT: make the input a leaf of the tape that requires grad, run the model on it, pick each image's
  // HINT: class (resolve_targets), and walk backward from the scores with a seed that selects only those
  // HINT: classes, using `rule` for every rectifier (backward_with_rule); the answer is the leaf's gradient.
  const Tensor x = input.detach().requires_grad_();
  const Tensor logits = model(x);
  const Targets classes = resolve_targets(model, targets, logits, "class_gradient");
  // The seed is one-hot on each image's target score: d score / d score = 1, others 0.
  backward_with_rule(logits, one_hot(logits.shape(), classes), rule);
  if (resolved) *resolved = classes;
  return x.grad();
  // END SOLUTION
}

Tensor saliency(nn::Model& model, const Tensor& input, const Targets& targets) {
  return class_gradient(model, input, targets, rules::vanilla_relu);
}

Tensor input_x_gradient(nn::Model& model, const Tensor& input, const Targets& targets) {
  const Tensor gradient = saliency(model, input, targets);
  NoGrad no_grad;
  return mul(input, gradient);
}

Tensor guided_backprop(nn::Model& model, const Tensor& input, const Targets& targets) {
  return class_gradient(model, input, targets, rules::guided_relu);
}

Tensor deconvnet(nn::Model& model, const Tensor& input, const Targets& targets) {
  return class_gradient(model, input, targets, rules::deconvnet_relu);
}

Tensor neuron_gradient(nn::Model& model, const Tensor& input, const Neuron& neuron, const BackwardRule& rule) {
  if (input.ndim() != 4) throw Error("neuron_gradient: input " + shape_str(input.shape()) + " must be a batch [N,C,H,W]");
  FreezeParameters frozen(model);
  const Tensor x = input.detach().requires_grad_();
  const Tensor activation = model.forward_until(x, neuron.layer);
  Tensor seed = Tensor::zeros(activation.shape());
  const bool spatial = activation.ndim() == 4;
  const int64_t channels = activation.dim(1);
  if (neuron.channel < 0 || neuron.channel >= channels ||
      (spatial && (neuron.y < 0 || neuron.y >= activation.dim(2) || neuron.x < 0 || neuron.x >= activation.dim(3))) ||
      (!spatial && activation.ndim() != 2))
    throw Error(fmt::format("neuron_gradient: neuron (channel {}, y {}, x {}) is outside layer '{}' of shape {}", neuron.channel,
                            neuron.y, neuron.x, neuron.layer, shape_str(activation.shape())));
  for (int64_t n = 0; n < activation.dim(0); ++n) {
    if (spatial) seed.at({n, neuron.channel, neuron.y, neuron.x}) = 1.f;
    else seed.at({n, neuron.channel}) = 1.f;
  }
  backward_with_rule(activation, seed, rule);
  return x.grad();
}

namespace {
GradientAt class_gradient_at(nn::Model& model, const Tensor& input, const Targets& targets) {
  // "The predicted class" is resolved once, on the clean input, so every point explains the same class.
  const Targets classes = resolve_targets(model, targets, scores(model, input), "class_gradient");
  return [&model, classes](const Tensor& point) { return class_gradient(model, point, classes); };
}
}  // namespace

Tensor smoothgrad_of(const GradientAt& gradient_at, const Tensor& input, int samples, float sigma_fraction, uint64_t seed) {
  if (samples < 1 || !(sigma_fraction >= 0.f))
    throw Error(fmt::format("smoothgrad: samples {} must be >= 1 and sigma {} >= 0", samples, sigma_fraction));
  const float* in = input.data();
  const auto [lo, hi] = std::minmax_element(in, in + input.numel());
  const float sigma = sigma_fraction * (*hi - *lo);
  Generator gen(seed);
  Tensor total = Tensor::zeros(input.shape());
  // BEGIN SOLUTION(smoothgrad)
  // HINT: `samples` times: a copy of the input with fresh Gaussian noise of standard deviation sigma on every
  // HINT: element (gen.normal draws it), and its gradient from gradient_at; the answer is the mean of those
  // HINT: gradients.
  for (int s = 0; s < samples; ++s) {
    Tensor noisy = input.clone();
    for (int64_t i = 0; i < noisy.numel(); ++i) noisy.data()[i] += gen.normal(0.f, sigma);
    const Tensor g = gradient_at(noisy);
    for (int64_t i = 0; i < total.numel(); ++i) total.data()[i] += g.data()[i];
  }
  for (int64_t i = 0; i < total.numel(); ++i) total.data()[i] /= static_cast<float>(samples);
  // END SOLUTION
  return total;
}

namespace {
Tensor integrated_of(const GradientAt& gradient_at, const Tensor& input, const Tensor& baseline, int steps) {
  if (baseline.shape() != input.shape())
    throw Error(fmt::format("integrated_gradients: baseline {} and input {} differ in shape", shape_str(baseline.shape()),
                            shape_str(input.shape())));
  if (steps < 1) throw Error(fmt::format("integrated_gradients: steps {} must be >= 1", steps));
  Tensor mean_gradient = Tensor::zeros(input.shape());
  for (int s = 0; s < steps; ++s) {
    const float alpha = (static_cast<float>(s) + 0.5f) / static_cast<float>(steps);  // midpoint rule
    Tensor point = Tensor::empty(input.shape());
    for (int64_t i = 0; i < point.numel(); ++i)
      point.data()[i] = baseline.data()[i] + alpha * (input.data()[i] - baseline.data()[i]);
    const Tensor g = gradient_at(point);
    for (int64_t i = 0; i < g.numel(); ++i) mean_gradient.data()[i] += g.data()[i] / static_cast<float>(steps);
  }
  Tensor attribution = Tensor::empty(input.shape());
  for (int64_t i = 0; i < attribution.numel(); ++i)
    attribution.data()[i] = (input.data()[i] - baseline.data()[i]) * mean_gradient.data()[i];
  return attribution;
}
}  // namespace

Tensor smoothgrad(nn::Model& model, const Tensor& input, const Targets& targets, int samples, float sigma_fraction,
                  uint64_t seed) {
  check_input(input, targets, "smoothgrad");
  return smoothgrad_of(class_gradient_at(model, input, targets), input, samples, sigma_fraction, seed);
}

Tensor smoothgrad_neuron(nn::Model& model, const Tensor& input, const Neuron& neuron, int samples, float sigma_fraction,
                  uint64_t seed) {
  return smoothgrad_of([&](const Tensor& point) { return neuron_gradient(model, point, neuron); }, input, samples,
                       sigma_fraction, seed);
}

Tensor integrated_gradients(nn::Model& model, const Tensor& input, const Targets& targets, const Tensor& baseline,
                            int steps) {
  check_input(input, targets, "integrated_gradients");
  return integrated_of(class_gradient_at(model, input, targets), input, baseline, steps);
}

Tensor integrated_gradients_neuron(nn::Model& model, const Tensor& input, const Neuron& neuron, const Tensor& baseline,
                            int steps) {
  return integrated_of([&](const Tensor& point) { return neuron_gradient(model, point, neuron); }, input, baseline, steps);
}

// ---------------------------------------------------------------------------------
// Occlusion
Tensor occlusion(nn::Model& model, const Tensor& input, const Targets& targets, int64_t window, int64_t stride,
                 float fill, OcclusionMeasure measure) {
  check_input(input, targets, "occlusion");
  if (window < 1 || stride < 1) throw Error(fmt::format("occlusion: window {} and stride {} must be >= 1", window, stride));
  const int64_t N = input.dim(0), C = input.dim(1), H = input.dim(2), W = input.dim(3), image = C * H * W;
  NoGrad no_grad;
  auto measured = [&](const Tensor& batch) {
    const Tensor s = scores(model, batch);
    return measure == OcclusionMeasure::Probability ? model.probabilities(s) : s;
  };
  const Tensor base = measured(input);
  const Targets classes = resolve_targets(model, targets, base, "occlusion");
  Tensor total = Tensor::zeros({N, 1, H, W});
  // BEGIN SOLUTION(occlusion)
  // HINT: put a window x window square of `fill` (over every channel, clipped at the edges) at every corner
  // HINT: (y0, x0) on the stride grid from (0, 0); measure each occluded image and add the drop of its class,
  // HINT: base - occluded, to every pixel the square covered; each pixel's answer is the mean over the squares
  // HINT: that covered it. measured() takes a whole batch: a few occluded images per call is much faster.
  std::vector<std::pair<int64_t, int64_t>> corners;  // every window position
  for (int64_t y0 = 0; y0 < H; y0 += stride)
    for (int64_t x0 = 0; x0 < W; x0 += stride) corners.emplace_back(y0, x0);
  // The windows go through the model in batches of about 8 occluded images (a batched
  // forward pass uses the threads and the gemm far better than one image at a time).
  const int64_t per_pass = std::max<int64_t>(1, 8 / N);
  Tensor count = Tensor::zeros({N, 1, H, W});
  for (size_t first = 0; first < corners.size(); first += static_cast<size_t>(per_pass)) {
    const int64_t B = std::min<int64_t>(per_pass, static_cast<int64_t>(corners.size() - first));
    Tensor occluded = Tensor::empty({N * B, C, H, W});  // image n with window b is row n*B + b
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < B; ++b) {
        float* dst = occluded.data() + (n * B + b) * image;
        std::copy(input.data() + n * image, input.data() + (n + 1) * image, dst);
        const auto [y0, x0] = corners[first + static_cast<size_t>(b)];
        for (int64_t c = 0; c < C; ++c)
          for (int64_t y = y0; y < std::min(H, y0 + window); ++y)
            std::fill(dst + (c * H + y) * W + x0, dst + (c * H + y) * W + std::min(W, x0 + window), fill);
      }
    const Tensor p = measured(occluded);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < B; ++b) {
        const float drop = base.at({n, classes[n]}) - p.at({n * B + b, classes[n]});
        const auto [y0, x0] = corners[first + static_cast<size_t>(b)];
        for (int64_t y = y0; y < std::min(H, y0 + window); ++y)
          for (int64_t x = x0; x < std::min(W, x0 + window); ++x) {
            total.at({n, 0, y, x}) += drop;
            count.at({n, 0, y, x}) += 1.f;
          }
      }
  }
  for (int64_t i = 0; i < total.numel(); ++i)
    if (count.data()[i] > 0) total.data()[i] /= count.data()[i];
  // END SOLUTION
  return total;
}

// ---------------------------------------------------------------------------------
// CAM family
namespace {
Tensor activation_4d(nn::Model& model, const std::string& layer, const char* method) {
  const Tensor a = model.activation(layer);
  if (a.ndim() != 4) throw Error(fmt::format("{}: layer '{}' has shape {}; a CAM needs a [N,K,h,w] feature map", method, layer, shape_str(a.shape())));
  return a;
}
}  // namespace

Tensor cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer,
           const std::string& linear_layer) {
  check_input(input, targets, "cam");
  const Tensor logits = scores(model, input);
  const Tensor a = activation_4d(model, layer, "cam");
  const Tensor head = model.parameter(linear_layer + ".weight");
  const int64_t N = a.dim(0), K = a.dim(1), h = a.dim(2), w = a.dim(3);
  if (head.ndim() != 2 || head.dim(1) != K)
    throw Error(fmt::format("cam: '{}' has weight {}, not [classes, {}] for the {} channels of '{}'", linear_layer,
                            shape_str(head.shape()), K, K, layer));
  const Targets classes = resolve_targets(model, targets, logits, "cam");
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

Tensor grad_cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer) {
  check_input(input, targets, "grad_cam");
  FreezeParameters frozen(model);
  // The features A as a leaf, and the rest of the network run from them: backward
  // then stops at A and leaves d score / d A in a.grad().
  const Tensor features = model.forward_until(input, layer);
  if (features.ndim() != 4)
    throw Error(fmt::format("grad_cam: layer '{}' has shape {}; a CAM needs a [N,K,h,w] feature map", layer,
                            shape_str(features.shape())));
  const Tensor a = features.detach().requires_grad_();
  const Tensor logits = model.forward_after(a, layer);
  const Targets classes = resolve_targets(model, targets, logits, "grad_cam");
  logits.backward(one_hot(logits.shape(), classes));
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
  // HINT: alpha[n,k] = mean over (y,x) of grad_a[n,k]; map = ReLU(sum_k alpha[n,k] * a[n,k])
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

Tensor guided_grad_cam(nn::Model& model, const Tensor& input, const Targets& targets, const std::string& layer) {
  const Tensor guided = guided_backprop(model, input, targets);
  const Tensor maps = grad_cam(model, input, targets, layer);
  const int64_t N = input.dim(0), C = input.dim(1), H = input.dim(2), W = input.dim(3);
  const int64_t h = maps.dim(1), w = maps.dim(2);
  Tensor out = Tensor::empty(input.shape());
  for (int64_t n = 0; n < N; ++n) {
    const Tensor up = viz::upsample(reshape(slice(maps, 0, n, n + 1), {1, h, w}), H, W, /*bilinear=*/true);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H * W; ++i)
        out.data()[(n * C + c) * H * W + i] = guided.data()[(n * C + c) * H * W + i] * up.data()[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Gradient ascent
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

// ---------------------------------------------------------------------------------
// A decorrelated image parameterization and random transforms
namespace {
// Rows k of the orthonormal DCT-II basis of length n: D D^T = I, so D^T is its inverse.
Tensor dct_matrix(int64_t n) {
  Tensor d = Tensor::empty({n, n});
  for (int64_t k = 0; k < n; ++k)
    for (int64_t i = 0; i < n; ++i)
      d.data()[k * n + i] = static_cast<float>((k == 0 ? std::sqrt(1.0 / static_cast<double>(n)) : std::sqrt(2.0 / static_cast<double>(n))) *
                                               std::cos(M_PI * (static_cast<double>(i) + 0.5) * static_cast<double>(k) / static_cast<double>(n)));
  return d;
}
}  // namespace

DecorrelatedImage::DecorrelatedImage(int64_t height, int64_t width, float decay)
    : height_(height), width_(width), dct_h_(dct_matrix(height)), dct_w_(dct_matrix(width)) {
  if (height < 1 || width < 1 || height > 4096 || width > 4096)
    throw Error(fmt::format("DecorrelatedImage: size {}x{} must be 1..4096 on each side", height, width));
  // Coefficient (u, v) has frequency sqrt((u/H)^2 + (v/W)^2) cycles per pixel (times 2);
  // its scale is 1 / max(f, 1/max(H, W))^decay, divided by sqrt(H W) so that z of order 1
  // gives pixels of order 1.
  frequency_scale_ = Tensor::empty({1, 1, height, width});
  const double floor = 1.0 / static_cast<double>(std::max(height, width));
  for (int64_t u = 0; u < height; ++u)
    for (int64_t v = 0; v < width; ++v) {
      const double fu = static_cast<double>(u) / static_cast<double>(height), fv = static_cast<double>(v) / static_cast<double>(width);
      const double f = std::max(std::sqrt(fu * fu + fv * fv), floor);
      frequency_scale_.data()[u * width + v] =
          static_cast<float>(std::pow(f, -static_cast<double>(decay)) / std::sqrt(static_cast<double>(height * width)));
    }
  // The square root of ImageNet's RGB covariance (the matrix Lucid publishes), divided by
  // its largest column norm (0.4629): row = output channel R, G, B.
  const float n = 1.f / 0.4629f;
  color_ = Tensor::from_vector({0.26f * n, 0.09f * n, 0.02f * n, 0.27f * n, 0.00f * n, -0.05f * n, 0.27f * n, -0.09f * n, 0.03f * n},
                               {3, 3});
}

Tensor DecorrelatedImage::operator()(const Tensor& z) const {
  if (z.ndim() != 4 || z.dim(1) != 3 || z.dim(2) != height_ || z.dim(3) != width_)
    throw Error(fmt::format("DecorrelatedImage: parameters {} must be [N,3,{},{}]", shape_str(z.shape()), height_, width_));
  const int64_t N = z.dim(0), H = height_, W = width_;
  // Each plane Z -> D_H^T (s * Z) D_W: the inverse 2-D DCT of the scaled coefficients.
  Tensor a = reshape(matmul(reshape(mul(z, frequency_scale_), {N * 3 * H, W}), dct_w_), {N * 3, H, W});
  a = permute(a, {0, 2, 1});
  a = permute(reshape(matmul(reshape(a, {N * 3 * W, H}), dct_h_), {N * 3, W, H}), {0, 2, 1});
  // Colors: every pixel's (r, g, b) times the color matrix.
  a = reshape(permute(reshape(a, {N, 3, H * W}), {0, 2, 1}), {N * H * W, 3});
  a = permute(reshape(matmul(a, transpose(color_, 0, 1)), {N, H * W, 3}), {0, 2, 1});
  return tanh(reshape(a, {N, 3, H, W}));
}

Objective transformed(const Objective& objective, const RandomTransforms& transforms, uint64_t seed) {
  if (!(transforms.degrees >= 0 && transforms.scale >= 0 && transforms.scale < 1 && transforms.shift >= 0))
    throw Error(fmt::format("transformed: degrees {}, scale {} (below 1) and shift {} must be >= 0", transforms.degrees,
                            transforms.scale, transforms.shift));
  auto gen = std::make_shared<Generator>(seed);
  return [objective, transforms, gen](const Tensor& x) {
    auto uniform = [&](float half_width) { return half_width * (2.f * gen->uniform() - 1.f); };
    AffineParams p;
    p.angle = uniform(transforms.degrees) * static_cast<float>(M_PI / 180.0);
    p.scale = 1.f + uniform(transforms.scale);
    p.shift_y = uniform(transforms.shift);
    p.shift_x = uniform(transforms.shift);
    return objective(affine_resample(x, p));
  };
}

}  // namespace tg::explain
