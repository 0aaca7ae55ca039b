// tgc visualize: the image a class or a neuron wants, by gradient ascent with the lessons' recipes.
//   FashionCNN (gray 28x28): lesson 9's: plain ascent from the mean image, clipped to valid pixels;
//     a class with jitter and blur, a neuron with a stronger L2 and no jitter.
//   A photo model, a class: lesson 9's: Olah et al.'s decorrelated image, random turns, zooms and
//     shifts, Adam. On a detector the class is asked of ONE detection: its logit at the anchors of
//     the centre cell of one head (the square anchor, or all of them summed).
//   A photo model, a neuron: lesson 4's: the decorrelated image with small shifts, plain ascent on
//     a normalized gradient.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/cli/questions.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/explain/feature_visualization.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/models/graph.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::cli {

namespace {
// The value a neuron has on x (no recording).
float neuron_value(nn::Model& model, const Tensor& x, const explain::Neuron& n) {
  NoGrad no_grad;
  const Tensor a = model.forward_until(x, n.layer);
  return a.ndim() == 4 ? a.at({0, n.channel, n.y, n.x}) : a.at({0, n.channel});
}

// The neuron checked against its layer's output, its position defaulting to the map's centre.
explain::Neuron placed(const Args& args, nn::Model& model, explain::Neuron n) {
  const preprocess::InputSpec& spec = model.info().input;
  Tensor a;
  {
    NoGrad no_grad;
    a = model.forward_until(Tensor::zeros({1, spec.channels, spec.height, spec.width}), n.layer);
  }
  if (a.ndim() != 4 && a.ndim() != 2)
    args.fail(fmt::format("--neuron: layer '{}' gives {}, not a map [1,C,h,w] or a vector [1,C]", n.layer, shape_str(a.shape())));
  if (n.channel >= a.dim(1))
    args.fail(fmt::format("--neuron: channel {} of layer '{}', which has {} channels", n.channel, n.layer, a.dim(1)));
  if (a.ndim() == 2 && n.y >= 0)
    args.fail(fmt::format("--neuron: layer '{}' is a vector {}: give LAYER:CHANNEL, no Y:X", n.layer, shape_str(a.shape())));
  if (a.ndim() == 4 && n.y < 0) n.y = a.dim(2) / 2, n.x = a.dim(3) / 2;
  if (a.ndim() == 4 && (n.y >= a.dim(2) || n.x >= a.dim(3)))
    args.fail(fmt::format("--neuron: position {}:{} of layer '{}', whose map is {}x{}", n.y, n.x, n.layer, a.dim(2), a.dim(3)));
  return n;
}

std::string neuron_name(const explain::Neuron& n) {
  return n.y >= 0 ? fmt::format("{}:{}:{}:{}", n.layer, n.channel, n.y, n.x) : fmt::format("{}:{}", n.layer, n.channel);
}
}  // namespace

int command_visualize(int argc, char** argv) {
  Args args("tgc visualize",
            "The image a class or a neuron wants: gradient ascent on the input, with the lessons' recipes.\n"
            "FashionCNN (lesson 9): from the mean image, clipped to valid pixels; a class with jitter and blur,\n"
            "200 steps. A photo model, a class (lesson 9): Olah et al.'s recipe, a decorrelated image seen\n"
            "through random turns, zooms and shifts, climbed with Adam, 256 steps; on a detector the target is\n"
            "ONE detection, the class's logit at the centre cell of one head (--head; the square anchor, or\n"
            "--all-anchors summed), and the figure draws its box. A photo model, a neuron (lesson 4): the\n"
            "decorrelated image with 2-pixel shifts, 40 steps. The figure's title gives the target, the steps\n"
            "and what it reached: p (a class) or the activation (a neuron), measured on the saved 8-bit image.\n"
            "On a terminal the steps and the time left are shown as it climbs.");
  args.option("model", "FILE", "weights (safetensors) or a .tflite model", true)
      .option("target", "K", "the class: a number or a label (Cat, Trouser)")
      .option("neuron", "LAYER:CHANNEL[:Y:X]", "a neuron instead (default Y:X: the centre of the layer's map)")
      .option("steps", "N", "ascent steps, 1..10000 (default: 200 on FashionCNN; on a photo model 256 for a class, "
                            "40 for a neuron)")
      .option("head", "GRID", "a detector's class: the head whose centre cell climbs (tgc predict --details names them)",
              false, "5x5")
      .toggle("all-anchors", "a detector's class: climb all the centre cell's anchors (summed), not only its square one")
      .option("seed", "S", "seed of the start and the random transforms", false, "0")
      .option("png", "OUT.png", "the figure")
      .option("frames", "DIR", "also write the image at steps 1, 2, 3, 5, 8, 13, ... and the last, as DIR/step_NNNN.png");
  args.parse(argc, argv, 2);
  if (args.has("target") == args.has("neuron")) args.fail("give one of --target and --neuron");
  const uint64_t seed = static_cast<uint64_t>(args.get_int("seed", 0, int64_t{1} << 52));
  check_output(args, "png", ".png");
  check_output_folder(args, "frames");
  const std::shared_ptr<nn::Model> loaded = models::load_model(args.get("model"));
  nn::Model& model = *loaded;
  const preprocess::InputSpec& spec = model.info().input;
  const bool gray = spec.channels == 1;  // FashionCNN's recipes; RGB: the photo recipes
  const bool detector = models::is_detector(model);
  if ((args.on("all-anchors") || args.on("head")) && !(detector && args.has("target")))
    args.fail("--head and --all-anchors choose a detector's detection; they go with --target on a detector");
  const bool neuron_target = args.has("neuron");
  const int default_steps = gray ? 200 : neuron_target ? 40 : 256;
  const int steps = args.has("steps") ? static_cast<int>(args.get_int("steps", 1, 10000)) : default_steps;
  const int scale = figure_scale(spec);

  // ---- the objective, and how its value reads ----
  explain::Objective objective;
  explain::Neuron neuron;
  int64_t target = -1;
  explain::DetectionTargets detection;  // a detector's class: one detection's anchors
  std::string what;                     // "class Cat (3), the 5x5 head's centre cell, square anchor"
  if (neuron_target) {
    neuron = placed(args, model, cli::neuron(args, "neuron"));
    objective = explain::neuron_activation(model, neuron);
    what = "neuron " + printable(neuron_name(neuron));
  } else {
    target = model.class_index(args.get("target"));
    if (target == model.info().background) args.fail("--target: the background class has no picture to climb to");
    what = fmt::format("class {} ({})", printable(model.info().classes[static_cast<size_t>(target)]), target);
    if (detector) {
      auto& graph = dynamic_cast<models::Graph&>(model);
      explain::scores(model, Tensor::zeros({1, spec.channels, spec.height, spec.width}));  // the heads need a pass
      const std::vector<models::Head> heads = models::detection_heads(graph);
      const auto head = std::find_if(heads.begin(), heads.end(), [&](const models::Head& h) { return h.grid == args.get("head"); });
      if (head == heads.end()) {
        std::string grids;
        for (const models::Head& h : heads) grids += (grids.empty() ? "" : ", ") + h.grid;
        args.fail(fmt::format("--head: the detector has no '{}' head (its heads: {})", args.get("head"), grids));
      }
      std::vector<int64_t> cell = explain::cell_anchors(*head, head->height / 2, head->width / 2);
      if (!args.on("all-anchors")) cell.resize(1);  // anchor 0 of a cell is its square box
      what += fmt::format(", one detection: the {} head's centre cell, {}", head->grid,
                          args.on("all-anchors") ? fmt::format("all {} anchors summed", cell.size()) : "square anchor");
      detection = {{target}, {cell}};
      objective = explain::detection_logits(model, detection);
    } else {
      objective = explain::class_score(model, target);
    }
  }
  // What the target reaches on an image, with its words: p for a class, the value for a neuron.
  struct Reading {
    float value = 0.f;      // the logit (class) or the activation (neuron)
    double p = -1;          // a class's probability
    int64_t anchor = -1;    // a detection's anchor (the best of the cell's)
  };
  auto read = [&](const Tensor& x) {
    Reading r;
    NoGrad no_grad;
    if (neuron_target) {
      r.value = neuron_value(model, x, neuron);
    } else if (detector) {
      const std::vector<explain::AnchorLogit> logits = explain::detection_logit_values(model, x, detection)[0];
      const auto best = std::max_element(logits.begin(), logits.end(), [](const auto& a, const auto& b) { return a.logit < b.logit; });
      r.value = best->logit, r.anchor = best->anchor, r.p = 1.0 / (1.0 + std::exp(-static_cast<double>(best->logit)));
    } else {
      const Tensor logits = explain::scores(model, x);
      r.value = logits.at({0, target});
      r.p = model.probabilities(logits).at({0, target});
    }
    return r;
  };
  auto reading_text = [&](const Reading& r) {
    return r.p >= 0 ? fmt::format("p = {:.3f} (logit {:.2f})", r.p, r.value) : fmt::format("activation {:.3f}", r.value);
  };

  // ---- the climb ----
  const Tensor gray_start = Tensor::zeros({1, spec.channels, spec.height, spec.width});  // the mean image
  const Reading before = read(gray_start);
  fmt::print("visualizing {}: {} steps; on a gray image {}\n", what, steps, reading_text(before));
  std::vector<int> frame_steps = {1, 2};  // Fibonacci steps, and the last
  while (frame_steps.back() < steps) frame_steps.push_back(frame_steps[frame_steps.size() - 1] + frame_steps[frame_steps.size() - 2]);
  frame_steps.back() = steps;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> frames;
  auto keep_frame = [&](int step, const Tensor& x) {
    if (!args.has("frames") || std::find(frame_steps.begin(), frame_steps.end(), step) == frame_steps.end()) return;
    const std::string path = fmt::format("{}/step_{:04d}.png", args.get("frames"), step);
    io::Image picture = viz::scale_nearest(preprocess::input_to_image(slice(x, 0, 0, 1), spec), scale);
    frames.emplace_back(path, io::encode_png(viz::titled(picture, fmt::format("step {}", step)), path));
  };
  Progress progress("visualize");
  auto show = [&](int step, float value) { progress.update(step, steps, fmt::format("objective {:.3f}", value)); };
  Tensor x;
  if (gray) {
    explain::AscentOptions options;  // lesson 9: plain ascent from the mean image, valid pixels only
    options.steps = steps;
    options.learning_rate = neuron_target ? 0.5f : 1.f;
    options.l2 = neuron_target ? 1e-2f : 1e-3f;
    clip_to_valid_pixels(options, spec);
    if (!neuron_target) options.jitter = 2, options.blur_every = 10, options.blur_sigma = 0.6f;
    options.seed = seed;
    options.on_step = [&](int step, const Tensor& image, float value) {
      show(step, value);
      keep_frame(step, image);
    };
    x = explain::ascend(gray_start, objective, options);
  } else if (neuron_target) {
    const explain::DecorrelatedImage decorrelated(spec.height, spec.width);  // lesson 4
    const explain::Objective robust = explain::transformed(objective, {.degrees = 0.f, .scale = 0.f, .shift = 2.f}, seed);
    explain::AscentOptions options;
    options.steps = steps;
    options.learning_rate = 0.15f;
    options.normalize_gradient = true;
    options.on_step = [&](int step, const Tensor& z, float value) {
      show(step, value);
      if (args.has("frames")) {
        NoGrad no_grad;
        keep_frame(step, decorrelated(z));
      }
    };
    const Tensor z = explain::ascend(Tensor::zeros({1, 3, spec.height, spec.width}),
                                     [&](const Tensor& params) { return robust(decorrelated(params)); }, options);
    NoGrad no_grad;
    x = decorrelated(z);
  } else {
    explain::FeatureVisualizationOptions options = photo_recipe(steps, seed);
    options.on_step = show;
    if (args.has("frames")) options.on_images = keep_frame;
    x = explain::visualize(objective, 1, spec.height, spec.width, options);
  }
  const double seconds = progress.seconds(), cpu = progress.cpu_seconds();
  const Tensor saved = as_saved(x, spec);
  const Reading after = read(saved);
  fmt::print("after {} steps: {} (on the 8-bit image); {:.1f} s, {:.1f} s of CPU time\n", steps, reading_text(after), seconds, cpu);

  // ---- the figure ----
  std::vector<std::pair<std::string, std::vector<uint8_t>>> outputs = frames;
  if (args.has("png")) {
    io::Image picture = viz::scale_nearest(preprocess::input_to_image(saved, spec), scale);
    if (after.anchor >= 0) {  // the detection's box: its anchor moved by this pass's box encodings
      auto& graph = dynamic_cast<models::Graph&>(model);
      {
        NoGrad no_grad;
        model(saved);
      }
      const models::Box box = models::decode_box(graph.box_encodings().data() + after.anchor * 4,
                                                 models::ssd_anchors()[static_cast<size_t>(after.anchor)]);
      const float w = static_cast<float>(picture.width), h = static_cast<float>(picture.height);
      viz::draw_box(picture, box.x0 * w, box.y0 * h, box.x1 * w, box.y1 * h, {230, 20, 20});
      fmt::print("the detection's box (anchor {}): {:.0f},{:.0f},{:.0f},{:.0f} of the {}x{} input\n", after.anchor,
                 box.x0 * static_cast<float>(spec.width), box.y0 * static_cast<float>(spec.height),
                 box.x1 * static_cast<float>(spec.width), box.y1 * static_cast<float>(spec.height), spec.width, spec.height);
    }
    std::vector<io::Image> panels = {picture};
    std::string boxed = after.anchor >= 0 ? " (red: the detection's box)" : "";
    if (neuron_target && neuron.y >= 0) {
      // A neuron of a map sees only its receptive field: framed, and beside it enlarged.
      const explain::Window w = explain::receptive_field(model, neuron.layer).window(neuron.y, neuron.x);
      if (w.height() * w.width() * 4 <= spec.height * spec.width) {
        const io::Image field = explain::crop(preprocess::input_to_image(saved, spec), w);
        const int enlarge = std::max(1, static_cast<int>(picture.height / std::max(field.height, field.width)));
        viz::draw_box(panels[0], static_cast<float>(w.x0 * scale), static_cast<float>(w.y0 * scale),
                      static_cast<float>(w.x1 * scale), static_cast<float>(w.y1 * scale), {230, 20, 20});
        panels.push_back(viz::scale_nearest(field, enlarge));
        boxed = fmt::format(" (red: its {}x{} receptive field, right: enlarged {}x)", w.height(), w.width(), enlarge);
      }
    }
    const std::string recipe = gray ? "lesson 9's ascent" : neuron_target ? "lesson 4's decorrelated ascent" : "Olah et al.'s recipe";
    const io::Image figure = viz::titled(
        viz::titled(viz::grid(panels, static_cast<int>(panels.size()), 8),
                    fmt::format("{} steps of {}: {}; a gray image: {}{}", steps, recipe, reading_text(after),
                                reading_text(before), boxed),
                    12),
        "visualize " + what);
    outputs.emplace_back(args.get("png"), io::encode_png(figure, args.get("png")));
  }
  if (!outputs.empty()) io::write_files_atomic(outputs);
  if (!frames.empty()) fmt::print("wrote {} frames to {}\n", frames.size(), printable(args.get("frames")));
  if (args.has("png")) fmt::print("wrote {}\n", printable(args.get("png")));
  if (!args.has("png") && !args.has("frames")) fmt::print("no --png given: nothing written (add --png OUT.png for the figure)\n");
  return 0;
}

}  // namespace tg::cli
