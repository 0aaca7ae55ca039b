#include "tinygrad-cpp/explain/gradients.h"
#include "tinygrad-cpp/explain/progress.h"

#include <fmt/format.h>

#include <algorithm>

namespace tg::explain {

Tensor gradient(nn::Model& model, const Tensor& input, const Target& target, const BackwardRule& rule, Target* resolved) {
  check_input(input, target, "gradient");
  FreezeParameters frozen(model);
  // BEGIN SOLUTION(saliency)
  // HINT: the input becomes a leaf of the tape that requires grad; reach_target runs the model on that leaf
  // HINT: and returns the tensor the target is read from with the seed that selects it. Walk backward from
  // HINT: there with `rule` on every rectifier (backward_with_rule); the answer is what reached the leaf.
  const Tensor x = input.detach().requires_grad_();
  const Seeded seeded = reach_target(model, x, target, "gradient");
  backward_with_rule(seeded.root, seeded.seed, rule);
  if (resolved) *resolved = seeded.resolved;
  return x.grad();
  // END SOLUTION
}

Tensor class_gradient(nn::Model& model, const Tensor& input, const Targets& targets, const BackwardRule& rule,
                      Targets* resolved) {
  Target used;
  const Tensor g = gradient(model, input, Target::of_classes(targets), rule, &used);
  if (resolved) *resolved = used.classes;
  return g;
}

Tensor neuron_gradient(nn::Model& model, const Tensor& input, const Neuron& neuron, const BackwardRule& rule) {
  return gradient(model, input, Target::of_neuron(neuron), rule);
}

Tensor saliency(nn::Model& model, const Tensor& input, const Target& target) {
  return gradient(model, input, target, rules::vanilla_relu);
}

Tensor input_x_gradient(nn::Model& model, const Tensor& input, const Target& target) {
  const Tensor g = saliency(model, input, target);
  NoGrad no_grad;
  return mul(input, g);
}

namespace {
// The gradient of one fixed target at any point: "the predicted class" (and a detection's
// best anchor) is resolved once, on the clean input, so every point explains the same thing.
GradientAt gradient_at(nn::Model& model, const Tensor& input, const Target& target, const char* method) {
  check_input(input, target, method);
  const Target fixed = resolve(model, input, target, method);
  return [&model, fixed](const Tensor& point) { return gradient(model, point, fixed); };
}

// The gradient function, each call reported as one of `total` (explain/progress.h).
GradientAt counted(GradientAt gradient_at, const char* what, int64_t total) {
  return [gradient_at = std::move(gradient_at), what, total, done = int64_t{0}](const Tensor& point) mutable {
    Tensor g = gradient_at(point);
    progress(what, ++done, total);
    return g;
  };
}

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
  // HINT: element (draw it with gen), and its gradient from gradient_at; the answer is the mean of those
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

Tensor smoothgrad(nn::Model& model, const Tensor& input, const Target& target, int samples, float sigma_fraction,
                  uint64_t seed) {
  return smoothgrad_of(counted(gradient_at(model, input, target, "smoothgrad"), "samples", samples), input, samples,
                       sigma_fraction, seed);
}

Tensor integrated_gradients(nn::Model& model, const Tensor& input, const Target& target, const Tensor& baseline,
                            int steps) {
  return integrated_of(counted(gradient_at(model, input, target, "integrated_gradients"), "steps", steps), input, baseline,
                       steps);
}

}  // namespace tg::explain

// ---- this family's entries in the method table ----
namespace tg::explain {

std::vector<Method> gradient_methods() {
  const TargetKinds any{.classes = true, .neurons = true, .detections = true};
  return {
      {.name = "saliency",
       .description = "the gradient of the target w.r.t. the input (Simonyan et al. 2013)",
       .targets = any,
       .policy = viz::Normalize::MaxAbs,
       .colormap = viz::Colormap::Viridis,
       .run = [](const Call& c) { return saliency(c.model, c.input, c.target); }},
      {.name = "input_x_gradient",
       .description = "the input times the gradient, elementwise",
       .targets = any,
       .run = [](const Call& c) { return input_x_gradient(c.model, c.input, c.target); }},
      {.name = "smoothgrad",
       .description = "the mean gradient over noisy copies of the input (Smilkov et al. 2017)",
       .targets = any,
       .parameters = {{.name = "seed", .default_value = 0, .min = 0, .max = 9007199254740992.0,
                       .help = "seed for smoothgrad's noise", .kind = Parameter::Kind::Whole},
                      {.name = "samples", .default_value = 50, .min = 1, .max = 100000, .help = "smoothgrad samples",
                       .kind = Parameter::Kind::Whole},
                      {.name = "noise", .default_value = 0.15, .min = 0, .max = 10,
                       .help = "smoothgrad noise, as a fraction of the input range"}},
       .policy = viz::Normalize::MaxAbs,
       .colormap = viz::Colormap::Viridis,
       .run = [](const Call& c) {
         return smoothgrad(c.model, c.input, c.target, static_cast<int>(c.whole("samples")), c.real("noise"),
                           static_cast<uint64_t>(c.whole("seed")));
       }},
      {.name = "integrated_gradients",
       .description = "(input - black) times the mean gradient on the path from black (Sundararajan et al. 2017)",
       .targets = any,
       .parameters = {{.name = "steps", .default_value = 64, .min = 1, .max = 100000,
                       .help = "integrated-gradients steps", .kind = Parameter::Kind::Whole}},
       .run = [](const Call& c) {
         return integrated_gradients(c.model, c.input, c.target, constant_input(c.model, c.input.shape(), 0.f),
                                     static_cast<int>(c.whole("steps")));
       }},
  };
}

}  // namespace tg::explain
