// tgc visualize: the image a class or a neuron wants, by gradient ascent with the lessons' recipes,
// as explain::plan_visualization (explain/recipes.h) chooses them for the model and the target:
//   FashionCNN (gray 28x28): lesson 9's plain ascent from the mean image, clipped to valid pixels.
//   A photo model, a class: lesson 9's: Olah et al.'s decorrelated image, random turns, zooms and
//     shifts, Adam. On a detector the class is asked of ONE detection: lesson 9's table says which
//     head and anchors of its centre cell (Car and Bicycle: the 3x3 head's wide anchor; others: the
//     5x5 head's square anchor); --head and --all-anchors choose others.
//   A photo model, a neuron: lesson 4's: the decorrelated image with small shifts, plain ascent on
//     a normalized gradient.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/cli/questions.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/explain/recipes.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/models/graph.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::cli {

int command_visualize(int argc, char** argv) {
  Args args("tgc visualize",
            "The image a class or a neuron wants: gradient ascent on the input, with the lessons' recipes.\n"
            "FashionCNN (lesson 9): from the mean image, clipped to valid pixels; a class with jitter and blur,\n"
            "200 steps. A photo model, a class (lesson 9): Olah et al.'s recipe, a decorrelated image seen\n"
            "through random turns, zooms and shifts, climbed with Adam, 256 steps; on a detector the target is\n"
            "ONE detection, the class's logit at anchors of the centre cell of one head: lesson 9's table\n"
            "(Car, Bicycle: the 3x3 head's 2:1 wide anchor; any other class: the 5x5 head's square anchor),\n"
            "or --head (its square anchor; --all-anchors: all of the cell's, summed); the figure draws its\n"
            "box. A photo model, a neuron (lesson 4): the decorrelated image with 2-pixel shifts, 40 steps. The figure's title gives the target, the steps\n"
            "and what it reached: p (a class) or the activation (a neuron), measured on the saved 8-bit image.\n"
            "On a terminal the steps and the time left are shown as it climbs.");
  args.option("model", "FILE", "weights (safetensors) or a .tflite model", true)
      .option("target", "K", "the class: a number or a label (Cat, Trouser)")
      .option("neuron", "LAYER:CHANNEL[:Y:X]", "a neuron instead (default Y:X: the centre of the layer's map)")
      .option("steps", "N", "ascent steps, 1..10000 (default: 200 on FashionCNN; on a photo model 256 for a class, "
                            "40 for a neuron)")
      .option("head", "GRID", "a detector's class: the head whose centre cell climbs (tgc predict --details names them; "
                              "default: lesson 9's table)")
      .toggle("all-anchors", "a detector's class: climb all the centre cell's anchors (summed), not only its square one")
      .option("seed", "S", "seed of the start and the random transforms (0: lesson 9's)", false, "0")
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
  const bool detector = models::is_detector(model);
  if ((args.on("all-anchors") || args.has("head")) && !(detector && args.has("target")))
    args.fail("--head and --all-anchors choose a detector's detection; they go with --target on a detector");
  const bool neuron_target = args.has("neuron");
  const int scale = figure_scale(spec);

  // ---- the objective and the recipe: the lessons' (explain/recipes.h) ----
  explain::VisualizationTarget target;
  if (neuron_target) {
    target.neuron = cli::neuron(args, "neuron");
  } else {
    target.class_index = model.class_index(args.get("target"));
    if (target.class_index == model.info().background) args.fail("--target: the background class has no picture to climb to");
    if (detector && (args.has("head") || args.on("all-anchors"))) {
      explain::ClassDetection chosen = explain::class_detection(model.info().classes[static_cast<size_t>(target.class_index)]);
      if (args.has("head")) chosen.grid = args.get("head"), chosen.boxes = {0};
      if (args.on("all-anchors")) chosen.boxes = {};  // all of them
      target.detection = chosen;
    }
  }
  explain::Visualization plan;
  try {
    plan = explain::plan_visualization(model, target, seed);
  } catch (const Error& e) {
    // The library's words: "neuron: channel 32 of layer ..." or "visualize: Cat: the detector has no ...".
    args.fail(neuron_target ? "--" + std::string(e.what()) : fmt::format("--{}: {}", detector ? "head" : "target", e.what()));
  }
  const int steps = args.has("steps") ? static_cast<int>(args.get_int("steps", 1, 10000)) : plan.default_steps;
  const std::string what = printable(plan.what);

  // ---- the climb ----
  const Tensor gray_start = Tensor::zeros({1, spec.channels, spec.height, spec.width});  // the mean image
  const explain::Reading before = explain::read_target(model, plan, gray_start);
  fmt::print("visualizing {}: {} steps; on a gray image {}\n", what, steps, explain::reading_words(before));
  std::vector<int> frame_steps = {1, 2};  // Fibonacci steps, and the last
  while (frame_steps.back() < steps) frame_steps.push_back(frame_steps[frame_steps.size() - 1] + frame_steps[frame_steps.size() - 2]);
  frame_steps.back() = steps;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> frames;
  Progress progress("visualize");
  explain::Climb climb{.steps = steps,
                       .on_step = [&](int step, float value) { progress.update(step, steps, fmt::format("objective {:.3f}", value)); }};
  if (args.has("frames")) {
    climb.wants_image = [&](int step) { return std::find(frame_steps.begin(), frame_steps.end(), step) != frame_steps.end(); };
    climb.on_image = [&](int step, const Tensor& x) {
      const std::string path = fmt::format("{}/step_{:04d}.png", args.get("frames"), step);
      io::Image picture = viz::scale_nearest(preprocess::input_to_image(slice(x, 0, 0, 1), spec), scale);
      frames.emplace_back(path, io::encode_png(viz::titled(picture, fmt::format("step {}", step)), path));
    };
  }
  const Tensor x = explain::climb(plan, climb);
  const double seconds = progress.seconds(), cpu = progress.cpu_seconds();
  const Tensor saved = explain::as_saved(x, spec);
  const explain::Reading after = explain::read_target(model, plan, saved);
  fmt::print("after {} steps: {} (on the 8-bit image); {:.1f} s, {:.1f} s of CPU time\n", steps,
             explain::reading_words(after), seconds, cpu);

  // ---- the figure ----
  std::vector<std::pair<std::string, std::vector<uint8_t>>> outputs = frames;
  if (args.has("png")) {
    io::Image picture = viz::scale_nearest(preprocess::input_to_image(saved, spec), scale);
    if (after.box) {  // the detection's box: its anchor moved by the box encodings of the 8-bit image's pass
      const models::Box& box = *after.box;
      const float w = static_cast<float>(picture.width), h = static_cast<float>(picture.height);
      viz::draw_box(picture, box.x0 * w, box.y0 * h, box.x1 * w, box.y1 * h, {230, 20, 20});
      fmt::print("the detection's box (anchor {}): {:.0f},{:.0f},{:.0f},{:.0f} of the {}x{} input\n", after.anchor,
                 box.x0 * static_cast<float>(spec.width), box.y0 * static_cast<float>(spec.height),
                 box.x1 * static_cast<float>(spec.width), box.y1 * static_cast<float>(spec.height), spec.width, spec.height);
    }
    std::vector<io::Image> panels = {picture};
    std::string boxed = after.box ? " (red: the detection's box)" : "";
    if (plan.neuron && plan.neuron->y >= 0) {
      const explain::Neuron& neuron = *plan.neuron;
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
    const io::Image figure = viz::titled(
        viz::titled(viz::grid(panels, static_cast<int>(panels.size()), 8),
                    fmt::format("{} steps of {}: {}; a gray image: {}{}", steps, plan.recipe_words,
                                explain::reading_words(after), explain::reading_words(before), boxed),
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
