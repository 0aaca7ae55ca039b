// Lesson 9: gradient ascent -- the image a class (or a neuron) wants.
//
// Backward gives d score / d image. Instead of looking at it, follow it: start from a
// blank image and repeatedly step uphill, x += lr * (d score/dx - 2 lambda x). The L2
// term keeps the image from growing without bound (Simonyan et al.'s class model
// visualization). Jitter and blur keep it from exploiting high-frequency patterns. On the
// photo model the difference is stark: the plain objective gives colored noise that the
// network scores as its class; a decorrelated image seen through random turns, zooms and
// shifts gives parts of the class a person can find.
#include <chrono>
#include <numeric>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "09_gradient_ascent", .title = "Gradient ascent: the image a class or a neuron wants",
                                     .summary = "Class model visualization for every class from a zero image, with L2 only and "
                                     "with jitter and blur; frames of one ascent; the same for neurons of conv1, "
                                     "conv2 and fc1; then the photo model's classes (Cat, Dog, Coffee cup, Bicycle, "
                                     "Car), with Simonyan's objective and with a recipe that makes them recognizable."});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const int steps = lesson.smoke() ? 40 : 200;
    const int scale = 4;
    auto show = [&](const Tensor& x) {  // as pixels: black is 0, white 255 (never rescaled)
      return viz::scale_nearest(preprocess::input_to_image(x, model.info().input), scale);
    };
    auto probability = [&](const Tensor& x, int64_t c) { return softmax(explain::scores(model, x), 1).at({0, c}); };

    lesson.step(fmt::format("Class model visualization: maximize score_c(x) - 1e-3 ||x||^2 from x = 0, {} steps", steps));
    explain::AscentOptions plain;
    plain.steps = steps;
    plain.learning_rate = 1.f;
    plain.l2 = 1e-3f;
    // Every step ends inside the valid range: pixel 0 and 255 after normalization.
    plain.clip = true;
    plain.clip_low = (0.f - data::kFashionMean) / data::kFashionStd;
    plain.clip_high = (1.f - data::kFashionMean) / data::kFashionStd;
    std::vector<io::Image> plain_tiles, smooth_tiles;
    double lowest_p = 1.0;
    for (int64_t c = 0; c < 10; ++c) {
      const Tensor x = explain::ascend(Tensor::zeros({1, 1, 28, 28}), explain::class_score(model, c), plain);
      const float p = probability(x, c);
      lowest_p = std::min(lowest_p, static_cast<double>(p));
      lesson.say("{:<12} score {:8.2f}   p = {:.4f}", data::kFashionClasses[c], explain::scores(model, x).at({0, c}), p);
      plain_tiles.push_back(viz::titled(show(x), fmt::format("{} {:.2f}", data::kFashionClasses[c], p), 11));
    }
    lesson.number("lowest p(class) over the ten images", lowest_p, "{:.4f}");
    lesson.figure("classes_l2.png", viz::grid(plain_tiles, 5, 4),
                  fmt::format("The image each class wants (L2 only), titled with the class and the probability it "
                              "reaches (at least {:.4f}): gradient ascent from the mean image, every step clipped to "
                              "the valid pixel range 0..255 and drawn as pixels. They are not garments: a 28x28 net "
                              "that only ever saw centered garments on black is satisfied by strokes at the places its "
                              "filters look. Lesson 9's photo figures below show what the same method does on a "
                              "network trained on photos.",
                              lowest_p));

    lesson.step("The same with jitter (random shifts of up to 2 pixels) and a Gaussian blur every 10 steps");
    explain::AscentOptions regularized = plain;
    regularized.jitter = 2;
    regularized.blur_every = 10;
    regularized.blur_sigma = 0.6f;
    regularized.seed = 1;
    for (int64_t c = 0; c < 10; ++c) {
      const Tensor x = explain::ascend(Tensor::zeros({1, 1, 28, 28}), explain::class_score(model, c), regularized);
      const float p = probability(x, c);
      smooth_tiles.push_back(viz::titled(show(x), fmt::format("{} {:.2f}", data::kFashionClasses[c], p), 11));
      lesson.say("{:<12} p = {:.4f}", data::kFashionClasses[c], p);
    }
    lesson.figure("classes_jitter_blur.png", viz::grid(smooth_tiles, 5, 4),
                  "The same with jitter (shifts of up to 2 pixels) and a blur every 10 steps, in the valid range, "
                  "titled with class and probability: smoother strokes, still not garments. At 28x28 there is too "
                  "little room for the regularizers to help; the photo model below is where they matter.");

    lesson.step("Frames of one ascent (Trouser) at steps 1, 2, 3, 5, 8, 13, 21, 34, 55 and the last");
    std::vector<io::Image> frames;
    explain::AscentOptions framed = regularized;
    framed.on_step = [&](int step, const Tensor& x, float objective) {
      const std::vector<int> keep = {1, 2, 3, 5, 8, 13, 21, 34, 55, steps};
      if (std::find(keep.begin(), keep.end(), step) != keep.end()) {
        frames.push_back(viz::titled(show(x), fmt::format("step {}", step), 11));
        lesson.say("step {:>3}: objective {:8.2f}", step, objective);
      }
    };
    explain::ascend(Tensor::zeros({1, 1, 28, 28}), explain::class_score(model, 1), framed);
    lesson.figure("frames.png", viz::grid(frames, 5, 4),
                  "The Trouser ascent (jitter and blur) at steps 1, 2, 3, 5, 8, 13, 21, 34, 55 and the last, left to "
                  "right, top to bottom: the strokes appear in the first few steps and then sharpen.");

    lesson.step("Single neurons of conv1, conv2 and fc1 (before their ReLU, so a neuron that starts off still has a gradient)");
    std::vector<io::Image> neuron_tiles;
    explain::AscentOptions neuron_options = plain;  // no jitter: a small receptive field would just move away
    neuron_options.learning_rate = 0.5f;
    neuron_options.l2 = 1e-2f;
    for (const explain::Neuron& n : std::vector<explain::Neuron>{{"conv1", 0, 14, 14}, {"conv1", 3, 14, 14}, {"conv1", 7, 14, 14},
                                                                 {"conv1", 11, 14, 14}, {"conv1", 15, 14, 14}, {"conv2", 0, 7, 7},
                                                                 {"conv2", 5, 7, 7}, {"conv2", 12, 7, 7}, {"conv2", 20, 7, 7},
                                                                 {"conv2", 31, 7, 7}, {"fc1", 0}, {"fc1", 17},
                                                                 {"fc1", 42}, {"fc1", 77}, {"fc1", 101}}) {
      const Tensor x = explain::ascend(Tensor::zeros({1, 1, 28, 28}), explain::neuron_activation(model, n), neuron_options);
      Tensor a;
      {
        NoGrad no_grad;
        a = model.forward_until(x, n.layer);
      }
      const float value = a.ndim() == 4 ? a.at({0, n.channel, n.y, n.x}) : a.at({0, n.channel});
      lesson.say("{} channel {:>3}: activation {:.2f}", n.layer, n.channel, value);
      neuron_tiles.push_back(viz::titled(show(x), fmt::format("{} #{}: {:.1f}", n.layer, n.channel, value), 11));
    }
    lesson.figure("neurons.png", viz::grid(neuron_tiles, 5, 4),
                  "Each tile titled with the layer, the channel and the activation reached. Rows: five conv1 "
                  "channels at the center (their receptive field is 5x5, so only a small patch changes), five conv2 "
                  "channels (14x14), five fc1 units (the whole image).");

    lesson.step("The photo model: Simonyan et al.'s objective score_c(x) - lambda ||x||^2 from a gray image");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const std::vector<std::string> names = lesson.smoke() ? std::vector<std::string>{"Cat", "Bicycle"}
                                                          : std::vector<std::string>{"Cat", "Dog", "Coffee cup", "Bicycle", "Car"};
    explain::Targets targets;
    for (const std::string& name : names) targets.push_back(photo_model.class_index(name));
    const int64_t count = static_cast<int64_t>(names.size());
    // Every class climbs in one batch (one image per class): one forward and backward a step.
    const Tensor gray = Tensor::zeros({count, 3, spec.height, spec.width});
    // What a class gets from an image is measured on the image as saved: 8-bit pixels.
    auto as_saved = [&](const Tensor& batch, int64_t n) {
      return preprocess::image_to_input(preprocess::input_to_image(slice(batch, 0, n, n + 1), spec), spec);
    };
    std::vector<io::Image> photo_tiles;
    std::vector<double> paper_p, recipe_p;
    auto report = [&](const Tensor& batch, const std::string& how, std::vector<double>& reached) {
      for (int64_t n = 0; n < count; ++n) {
        const Tensor saved = as_saved(batch, n);
        const float p = photo_model.probabilities(explain::scores(photo_model, saved)).data()[targets[n]];
        reached.push_back(p);
        lesson.say("{:<11} p = {:.3f} ({}, as an 8-bit image)", names[n], p, how);
        photo_tiles.push_back(viz::titled(preprocess::input_to_image(saved, spec), fmt::format("{}: p = {:.2f}", names[n], p)));
      }
    };
    explain::AscentOptions paper;
    paper.steps = lesson.smoke() ? 2 : 20;
    paper.learning_rate = 0.02f;  // each step moves pixels by 0.02 on average (normalized gradient)
    paper.normalize_gradient = true;
    paper.l2 = 0.05f;
    paper.clip = true;  // the input range of the photo model: pixel 0..255 is -1..1
    paper.clip_low = -1.f;
    paper.clip_high = 1.f;
    paper.on_step = [&](int step, const Tensor&, float) { lesson.progress("ascent, L2 only", step, paper.steps); };
    auto start = std::chrono::steady_clock::now();
    const Tensor paper_images = explain::ascend(gray, explain::class_scores(photo_model, targets), paper);
    const double paper_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lesson.say("{} classes x {} steps in {:.1f} s", count, paper.steps, paper_seconds);
    report(paper_images, "L2 only", paper_p);

    lesson.step("A recipe that makes them recognizable: a decorrelated image, and robustness to turns, zooms and shifts");
    lesson.say("the image is tanh(colors x inverse DCT(z / frequency)): climbing in z moves coarse shapes as easily as");
    lesson.say("pixel noise, and the 1/frequency scale does what a blur does; each step sees the image turned by up to");
    lesson.say("10 degrees, zoomed by up to 10% and shifted by up to 8 pixels, so only robust features pay off.");
    const explain::DecorrelatedImage decorrelated(spec.height, spec.width);
    const explain::Objective robust = explain::transformed(explain::class_scores(photo_model, targets), {}, 5);
    explain::AscentOptions recipe;
    recipe.steps = lesson.smoke() ? 2 : 30;
    recipe.learning_rate = 0.15f;
    recipe.normalize_gradient = true;
    recipe.on_step = [&](int step, const Tensor&, float) { lesson.progress("ascent, recipe", step, recipe.steps); };
    start = std::chrono::steady_clock::now();
    const Tensor z = explain::ascend(gray, [&](const Tensor& params) { return robust(decorrelated(params)); }, recipe);
    const Tensor recipe_images = [&] {
      NoGrad no_grad;
      return decorrelated(z);
    }();
    const double recipe_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lesson.say("{} classes x {} steps in {:.1f} s", count, recipe.steps, recipe_seconds);
    report(recipe_images, "recipe", recipe_p);
    lesson.number("photo class visualizations, L2 only: lowest p", *std::min_element(paper_p.begin(), paper_p.end()), "{:.3f}");
    lesson.number("photo class visualizations, recipe: lowest p", *std::min_element(recipe_p.begin(), recipe_p.end()), "{:.3f}");
    lesson.figure("photo_classes.png", viz::grid(photo_tiles, static_cast<int>(count), 6),
                  fmt::format("Class model visualizations of the photo model (lecture 39 (a)), each titled with the "
                              "probability the class reaches on the image saved as 8-bit pixels. Top: Simonyan et al.'s "
                              "objective, score - lambda ||x||^2 from a gray image, {} steps clipped to the valid range "
                              "({:.1f} s for all {}): high-frequency patterns a person cannot read, which the network "
                              "scores as its class. Bottom: the recipe, {} steps ({:.1f} s): the decorrelated 1/frequency "
                              "parameterization with random turns, zooms and shifts: smooth images in which parts of a "
                              "class can be found (a bicycle's two wheels, an eye in the dog's image), but no whole "
                              "object after only {} steps (published renders take hundreds). Mean probability: "
                              "{:.2f} on top, {:.2f} below.",
                              paper.steps, paper_seconds, count, recipe.steps, recipe_seconds, recipe.steps,
                              std::accumulate(paper_p.begin(), paper_p.end(), 0.0) / static_cast<double>(count),
                              std::accumulate(recipe_p.begin(), recipe_p.end(), 0.0) / static_cast<double>(count)),
                  "Balasubramanian 39 (a): class model visualizations, plain and with a recipe");
  });
}
