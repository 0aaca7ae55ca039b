// tgc invert: images whose code at a layer matches an image's (Mahendran & Vedaldi 2015), from
// several random starts, with lesson 10's recipes: on FashionCNN plain descent of the code error
// from noise, clipped to valid pixels (an optional total-variation weight); on a photo model the
// decorrelated image seen through random turns, zooms and shifts, with Adam. Both are
// explain::invert (explain/recipes.h), which lesson 10 and the explorer page call too.
#include <fmt/format.h>

#include <algorithm>

#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/cli/questions.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/explain/recipes.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::cli {

int command_invert(int argc, char** argv) {
  Args args("tgc invert",
            "Feature inversion (lesson 10): what a layer's code keeps of an image. From --starts random\n"
            "starts, find images x whose code phi(x) at --layer matches the image's code phi0, minimizing\n"
            "the relative code error ||phi(x) - phi0||^2 / ||phi0||^2. FashionCNN: descent from noise, clipped\n"
            "to valid pixels, 300 steps (--tv adds a total-variation weight). A photo model: a decorrelated\n"
            "image seen through random turns, zooms and shifts, with Adam, 128 steps. Each start's error is\n"
            "measured on its saved 8-bit image and printed beside a gray image's (the scale: a gray image\n"
            "knows nothing of the photo). The figure: the image, then each reconstruction with its error.\n"
            "On a terminal the steps and the time left are shown.");
  args.option("model", "FILE", "weights (safetensors) or a .tflite model", true)
      .option("image", "IMG", "PNG or JPEG image whose code is inverted", true)
      .option("layer", "NAME", "the layer whose code is matched (tgc info lists a .tflite model's layers; "
                               "FashionCNN: conv1 relu1 pool1 conv2 relu2 pool2 flatten fc1 relu3 fc2)", true)
      .option("starts", "N", "random starts, 1..16", false, "5")
      .option("steps", "N", "steps from each start, 1..10000 (default: 300 on FashionCNN, 128 on a photo model)")
      .option("tv", "X", "FashionCNN: total-variation weight, 0..1", false, "0")
      .option("seed", "S", "seed of the starts (0 repeats lesson 10's)", false, "0")
      .option("png", "OUT.png", "the figure");
  args.parse(argc, argv, 2);
  const int starts = static_cast<int>(args.get_int("starts", 1, 16));
  const uint64_t seed = static_cast<uint64_t>(args.get_int("seed", 0, int64_t{1} << 52));
  const float tv = args.get_float("tv", 0.0, 1.0);
  check_output(args, "png", ".png");
  const std::shared_ptr<nn::Model> loaded = models::load_model(args.get("model"));
  nn::Model& model = *loaded;
  const preprocess::InputSpec& spec = model.info().input;
  const bool gray = spec.channels == 1;
  if (tv > 0.f && !gray) args.fail("--tv: the photo models' recipe has its own image prior; --tv is FashionCNN's");
  const int steps = args.has("steps") ? static_cast<int>(args.get_int("steps", 1, 10000)) : explain::default_inversion_steps(model);
  const std::string layer = args.get("layer");

  const io::Image photo = io::load_image(args.get("image"));
  const Tensor input = preprocess::image_to_input(photo, spec);
  Tensor code;
  {
    NoGrad no_grad;
    code = model.forward_until(input, layer).clone();
  }
  auto code_error = [&](const Tensor& x) { return explain::code_error(model, layer, code, x); };
  const double gray_error = code_error(Tensor::zeros(input.shape()));
  fmt::print("{}: the code at {} is {} ({} numbers); a gray image's relative code error: {:.4f}\n",
             printable(args.get("image")), printable(layer), shape_str(code.shape()), code.numel(), gray_error);
  fmt::print("inverting from {} random starts, {} steps each\n", starts, steps);

  Progress progress("invert");
  const std::vector<Tensor> reconstructions = explain::invert(
      model, layer, input,
      {.starts = starts, .steps = steps, .tv = tv, .seed = seed, .on_step = [&](int start, int step, float error) {
         if (start < 0)  // a photo model's starts climb together
           progress.update(step, steps, fmt::format("summed error {:.4f}", error));
         else
           progress.update(int64_t{start} * steps + step, int64_t{starts} * steps, fmt::format("start {}, error {:.4f}", start + 1, error));
       }});
  const double seconds = progress.seconds(), cpu = progress.cpu_seconds();

  const int scale = figure_scale(spec);
  // Photos at their own aspect ratio (the model saw them stretched to its input size).
  auto picture = [&](const Tensor& x) {
    const io::Image image = viz::scale_nearest(preprocess::input_to_image(x, spec), scale);
    return gray ? image : viz::at_aspect(image, photo.width, photo.height);
  };
  std::vector<io::Image> tiles = {viz::titled(picture(input), "the image", 12)};
  double worst = 0;
  for (int s = 0; s < starts; ++s) {
    const Tensor saved = explain::as_saved(reconstructions[static_cast<size_t>(s)], spec);
    const double error = code_error(saved);
    worst = std::max(worst, error);
    fmt::print("start {}: relative code error {:.4f}\n", s + 1, error);
    tiles.push_back(viz::titled(picture(saved), fmt::format("start {}: error {:.3f}", s + 1, error), 12));
  }
  fmt::print("worst: {:.4f} (a gray image: {:.4f}); {:.1f} s, {:.1f} s of CPU time\n", worst, gray_error, seconds, cpu);
  if (args.has("png")) {
    const io::Image figure = viz::titled(
        viz::grid(tiles, std::min(starts + 1, 6), 4),
        fmt::format("inverting the code at {} ({} numbers): {} starts x {} steps; relative code error "
                    "||phi(x)-phi0||^2/||phi0||^2 on the 8-bit images; a gray image: {:.3f}",
                    printable(layer), code.numel(), starts, steps, gray_error));
    io::write_files_atomic({{args.get("png"), io::encode_png(figure, args.get("png"))}});
    fmt::print("wrote {}\n", printable(args.get("png")));
  } else {
    fmt::print("no --png given: nothing written (add --png OUT.png for the figure)\n");
  }
  return 0;
}

}  // namespace tg::cli
