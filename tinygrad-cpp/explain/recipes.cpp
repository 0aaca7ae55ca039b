#include "tinygrad-cpp/explain/recipes.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/models/graph.h"

namespace tg::explain {

// ---- which detection a detector's class climbs ----
const std::vector<ClassDetection>& class_detections() {
  static const std::vector<ClassDetection> table = {{.name = "Cat", .grid = "5x5"},
                                                    {.name = "Car", .grid = "3x3", .boxes = {1}},
                                                    {.name = "Bicycle", .grid = "3x3", .boxes = {1}},
                                                    {.name = "Boot", .grid = "5x5"},
                                                    {.name = "Camera", .grid = "5x5"}};
  return table;
}

ClassDetection class_detection(const std::string& label) {
  for (const ClassDetection& d : class_detections())
    if (d.name == label) return d;
  return {.name = label};  // the default: the 5x5 head's square anchor
}

std::vector<int64_t> centre_anchors(const std::vector<models::Head>& heads, const ClassDetection& detection) {
  const auto head = std::find_if(heads.begin(), heads.end(), [&](const models::Head& h) { return h.grid == detection.grid; });
  if (head == heads.end()) {
    std::string grids;
    for (const models::Head& h : heads) grids += (grids.empty() ? "" : ", ") + h.grid;
    throw Error(fmt::format("visualize: {}: the detector has no '{}' head (its heads: {})", detection.name, detection.grid, grids));
  }
  const std::vector<int64_t> cell = cell_anchors(*head, head->height / 2, head->width / 2);
  if (detection.boxes.empty()) return cell;
  std::vector<int64_t> chosen;
  for (int64_t k : detection.boxes) {
    if (k < 0 || k >= static_cast<int64_t>(cell.size()))
      throw Error(fmt::format("visualize: {}: the {} head has {} anchors a cell, got anchor {}", detection.name,
                              detection.grid, cell.size(), k));
    chosen.push_back(cell[static_cast<size_t>(k)]);
  }
  return chosen;
}

std::string anchor_words(const std::vector<int64_t>& anchors, const std::string& grid, int64_t width, int64_t height) {
  if (anchors.size() != 1) return fmt::format("the {} anchors (summed) of the {} head's centre cell", anchors.size(), grid);
  const models::Anchor a = models::ssd_anchors()[static_cast<size_t>(anchors[0])];
  const double w = a.w * static_cast<double>(width), h = a.h * static_cast<double>(height);
  const double ratio = w / h;
  const std::string shape = std::abs(ratio - 1) < 0.05 ? std::string("square")
                            : ratio > 1               ? fmt::format("{:.0f}:1 wide", ratio)
                                                      : fmt::format("1:{:.0f} tall", 1 / ratio);
  return fmt::format("the {:.0f}x{:.0f} px {} anchor of the {} head's centre cell", w, h, shape, grid);
}

// ---- the recipes' options ----
namespace {
// Lesson 9's decorrelated image: the gain that makes Adam's steps comparable to Lucid's
// Fourier parameterization, and a spectrum of 1/frequency^1.25.
FeatureVisualizationOptions photo_image(int steps) {
  FeatureVisualizationOptions options;
  options.steps = steps;
  options.gain = 60.f;
  options.decay = 1.25f;
  return options;
}
}  // namespace

FeatureVisualizationOptions photo_class_recipe(int steps) {
  FeatureVisualizationOptions options = photo_image(steps);
  options.transforms = kClassTransforms;
  return options;
}

FeatureVisualizationOptions photo_inversion_recipe(int steps, uint64_t seed) {
  FeatureVisualizationOptions options = photo_image(steps);
  options.initial_sd = 0.05f;  // each start is its own random noise image
  options.seed = seed + 10;    // lesson 10's starts when seed is 0
  return options;
}

void clip_to_valid_pixels(AscentOptions& options, const preprocess::InputSpec& spec) {
  options.clip = true;
  options.clip_low = (0.f - spec.mean[0]) / spec.std[0];
  options.clip_high = (1.f - spec.mean[0]) / spec.std[0];
}

AscentOptions gray_class_recipe(const preprocess::InputSpec& spec, int steps, uint64_t seed) {
  AscentOptions options;
  options.steps = steps;
  options.learning_rate = 1.f;
  options.l2 = 1e-3f;
  clip_to_valid_pixels(options, spec);
  options.jitter = 2, options.blur_every = 10, options.blur_sigma = 0.6f;
  options.seed = seed;
  return options;
}

AscentOptions photo_neuron_recipe(int steps) {
  AscentOptions options;
  options.steps = steps;
  options.learning_rate = 0.15f;
  options.normalize_gradient = true;
  return options;
}

AscentOptions gray_neuron_recipe(const preprocess::InputSpec& spec, int steps) {
  AscentOptions options;  // no jitter: a small receptive field would just move away
  options.steps = steps;
  options.learning_rate = 0.5f;
  options.l2 = 1e-2f;
  clip_to_valid_pixels(options, spec);
  return options;
}

Tensor as_saved(const Tensor& x, const preprocess::InputSpec& spec) {
  return preprocess::image_to_input(preprocess::input_to_image(x, spec), spec);
}

// ---- a visualization ----
namespace {
// The neuron checked against its layer's output, its position defaulting to the map's centre.
Neuron placed(nn::Model& model, Neuron n) {
  const preprocess::InputSpec& spec = model.info().input;
  Tensor a;
  {
    NoGrad no_grad;
    a = model.forward_until(Tensor::zeros({1, spec.channels, spec.height, spec.width}), n.layer);
  }
  if (a.ndim() != 4 && a.ndim() != 2)
    throw Error(fmt::format("neuron: layer '{}' gives {}, not a map [1,C,h,w] or a vector [1,C]", n.layer, shape_str(a.shape())));
  if (n.channel < 0 || n.channel >= a.dim(1))
    throw Error(fmt::format("neuron: channel {} of layer '{}', which has {} channels", n.channel, n.layer, a.dim(1)));
  if (a.ndim() == 2 && n.y >= 0)
    throw Error(fmt::format("neuron: layer '{}' is a vector {}: give LAYER:CHANNEL, no Y:X", n.layer, shape_str(a.shape())));
  if (a.ndim() == 4 && n.y < 0) n.y = a.dim(2) / 2, n.x = a.dim(3) / 2;
  if (a.ndim() == 4 && (n.y >= a.dim(2) || n.x < 0 || n.x >= a.dim(3)))
    throw Error(fmt::format("neuron: position {}:{} of layer '{}', whose map is {}x{}", n.y, n.x, n.layer, a.dim(2), a.dim(3)));
  return n;
}
}  // namespace

Visualization plan_visualization(nn::Model& model, const VisualizationTarget& target, uint64_t seed) {
  Visualization plan;
  plan.input = model.info().input;
  const preprocess::InputSpec& spec = plan.input;
  const bool gray = spec.channels == 1;
  if (target.neuron) {
    const Neuron n = placed(model, *target.neuron);
    plan.neuron = n;
    plan.objective = neuron_activation(model, n);
    plan.what = n.y >= 0 ? fmt::format("neuron {}:{}:{}:{}", n.layer, n.channel, n.y, n.x)
                         : fmt::format("neuron {}:{}", n.layer, n.channel);
  } else {
    const int64_t c = target.class_index;
    if (c < 0 || c >= static_cast<int64_t>(model.info().classes.size()))
      throw Error(fmt::format("visualize: class {} of {} classes", c, model.info().classes.size()));
    if (c == model.info().background) throw Error("visualize: the background class has no picture to climb to");
    plan.class_index = c;
    const std::string& label = model.info().classes[static_cast<size_t>(c)];
    plan.what = fmt::format("class {} ({})", label, c);
    if (models::is_detector(model)) {
      scores(model, Tensor::zeros({1, spec.channels, spec.height, spec.width}));  // the heads need a pass
      const ClassDetection chosen = target.detection ? *target.detection : class_detection(label);
      const std::vector<int64_t> anchors =
          centre_anchors(models::detection_heads(dynamic_cast<models::Graph&>(model)), chosen);
      plan.what += ", one detection: " + anchor_words(anchors, chosen.grid, spec.width, spec.height);
      plan.detection = {{c}, {anchors}};
      plan.objective = detection_logits(model, plan.detection);
    } else {
      plan.objective = class_score(model, c);
    }
  }
  plan.seed = seed;
  if (gray) {
    plan.recipe = Visualization::Recipe::PixelAscent;
    plan.recipe_words = "lesson 9's ascent";
    plan.default_steps = 200;
    plan.ascent = plan.neuron ? gray_neuron_recipe(spec, plan.default_steps) : gray_class_recipe(spec, plan.default_steps, seed);
  } else if (plan.neuron) {
    plan.recipe = Visualization::Recipe::DecorrelatedAscent;
    plan.recipe_words = "lesson 4's decorrelated ascent";
    plan.default_steps = 40;
    plan.ascent = photo_neuron_recipe(plan.default_steps);
  } else {
    plan.recipe = Visualization::Recipe::Decorrelated;
    plan.recipe_words = "Olah et al.'s recipe";
    plan.default_steps = 256;
    plan.features = photo_class_recipe(plan.default_steps);
    plan.features.seed = seed;
    plan.features.image_seeds = {seed + static_cast<uint64_t>(plan.class_index)};  // lesson 9's start noise
  }
  return plan;
}

Reading read_target(nn::Model& model, const Visualization& plan, const Tensor& x) {
  Reading r;
  NoGrad no_grad;
  if (plan.neuron) {
    const Tensor a = model.forward_until(x, plan.neuron->layer);
    r.value = a.ndim() == 4 ? a.at({0, plan.neuron->channel, plan.neuron->y, plan.neuron->x}) : a.at({0, plan.neuron->channel});
  } else if (!plan.detection.classes.empty()) {
    const std::vector<AnchorLogit> logits = detection_logit_values(model, x, plan.detection)[0];
    const auto best = std::max_element(logits.begin(), logits.end(), [](const auto& a, const auto& b) { return a.logit < b.logit; });
    r.value = best->logit, r.anchor = best->anchor, r.p = 1.0 / (1.0 + std::exp(-static_cast<double>(best->logit)));
    // The detection's box: its anchor moved by the box encodings of the pass just run.
    const auto& graph = dynamic_cast<const models::Graph&>(model);
    r.box = models::decode_box(graph.box_encodings().data() + best->anchor * 4,
                               models::ssd_anchors()[static_cast<size_t>(best->anchor)]);
  } else {
    const Tensor logits = scores(model, x);
    r.value = logits.at({0, plan.class_index});
    r.p = model.probabilities(logits).at({0, plan.class_index});
  }
  return r;
}

std::string reading_words(const Reading& r) {
  return r.p >= 0 ? fmt::format("p = {:.3f} (logit {:.2f})", r.p, r.value) : fmt::format("activation {:.3f}", r.value);
}

Tensor climb(const Visualization& plan, const Climb& climb) {
  const int steps = climb.steps > 0 ? climb.steps : plan.default_steps;
  const preprocess::InputSpec& spec = plan.input;
  auto wants = [&](int step) { return climb.on_image && (!climb.wants_image || climb.wants_image(step)); };
  if (plan.recipe == Visualization::Recipe::Decorrelated) {
    FeatureVisualizationOptions options = plan.features;
    options.steps = steps;
    options.on_step = climb.on_step;
    if (climb.on_image)
      options.on_images = [&](int step, const Tensor& images) {
        if (wants(step)) climb.on_image(step, images);
      };
    return visualize(plan.objective, 1, spec.height, spec.width, options);
  }
  AscentOptions options = plan.ascent;
  options.steps = steps;
  if (plan.recipe == Visualization::Recipe::PixelAscent) {
    options.on_step = [&](int step, const Tensor& x, float value) {
      if (climb.on_step) climb.on_step(step, value);
      if (wants(step)) climb.on_image(step, x);
    };
    return ascend(Tensor::zeros({1, spec.channels, spec.height, spec.width}), plan.objective, options);
  }
  // DecorrelatedAscent (lesson 4): the decorrelated image seen through 2-pixel shifts.
  const DecorrelatedImage decorrelated(spec.height, spec.width);
  const Objective robust = transformed(plan.objective, kNeuronShifts, plan.seed);
  options.on_step = [&](int step, const Tensor& z, float value) {
    if (climb.on_step) climb.on_step(step, value);
    if (wants(step)) {
      NoGrad no_grad;
      climb.on_image(step, decorrelated(z));
    }
  };
  const Tensor z = ascend(Tensor::zeros({1, 3, spec.height, spec.width}),
                          [&](const Tensor& params) { return robust(decorrelated(params)); }, options);
  NoGrad no_grad;
  return decorrelated(z);
}

// ---- feature inversion ----
double code_error(nn::Model& model, const std::string& layer, const Tensor& code, const Tensor& x) {
  NoGrad no_grad;
  return -feature_match(model, layer, code)(x).item();
}

int default_inversion_steps(const nn::Model& model) { return model.info().input.channels == 1 ? 300 : 128; }

std::vector<Tensor> invert(nn::Model& model, const std::string& layer, const Tensor& input, const InversionOptions& options) {
  const preprocess::InputSpec& spec = model.info().input;
  const bool gray = spec.channels == 1;
  const int steps = options.steps > 0 ? options.steps : default_inversion_steps(model);
  if (options.starts < 1) throw Error(fmt::format("invert: starts {} must be >= 1", options.starts));
  if (options.tv > 0.f && !gray) throw Error("invert: tv: a photo model's recipe has its own image prior; tv is the gray models'");
  Tensor code;
  {
    NoGrad no_grad;
    code = model.forward_until(input, layer).clone();
  }
  const Objective match = feature_match(model, layer, code);  // minus the code error
  auto wants = [&](int step) { return options.on_image && (!options.wants_image || options.wants_image(step)); };
  std::vector<Tensor> images;
  if (gray) {
    for (int s = 0; s < options.starts; ++s) {
      Generator gen(options.seed + 100 + static_cast<uint64_t>(s));  // lesson 10's starts when seed is 0
      AscentOptions ascent;
      ascent.steps = steps;
      ascent.learning_rate = 10.f;
      ascent.tv = options.tv;
      clip_to_valid_pixels(ascent, spec);
      ascent.on_step = [&](int step, const Tensor& x, float value) {
        if (options.on_step) options.on_step(s, step, -value);
        if (wants(step)) options.on_image(s, step, x);
      };
      images.push_back(ascend(Tensor::randn(input.shape(), gen, 0.f, 0.5f), match, ascent));
    }
    return images;
  }
  FeatureVisualizationOptions recipe = photo_inversion_recipe(steps, options.seed);
  recipe.on_step = [&](int step, float value) {
    if (options.on_step) options.on_step(-1, step, -value);
  };
  if (options.on_image)
    recipe.on_images = [&](int step, const Tensor& x) {
      if (wants(step)) options.on_image(-1, step, x);
    };
  const Tensor all = visualize(match, options.starts, spec.height, spec.width, recipe);
  for (int s = 0; s < options.starts; ++s) images.push_back(slice(all, 0, s, s + 1));
  return images;
}

}  // namespace tg::explain
