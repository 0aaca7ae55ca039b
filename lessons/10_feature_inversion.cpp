// Lesson 10: feature inversion -- what an fc1 code remembers of the image.
//
// fc1 turns an image into 128 numbers. Which images give the same 128 numbers? Start
// from random noise and minimize the code error ||fc1(x) - fc1(x0)||^2 / ||fc1(x0)||^2
// (Mahendran & Vedaldi 2015; the gradient-ascent engine climbs its negative); do it from 5
// random starts, with and without a total-variation regularizer that prefers smooth images.
// Then the lecture's own question on the photo model: invert the detector's fc7, the 1x1 map
// the cat's detection is read from, with a stronger image prior.
#include <chrono>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/explain/recipes.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "10_feature_inversion", .title = "Feature inversion: reconstructing an image from its fc1 code",
                                     .summary = "Images whose fc1 code matches a test image's, found by minimizing the code error from 5 "
                                     "random starts, without and with total-variation regularization; the code a detection of the "
                                     "photo model is read from, inverted from 5 random starts.", .uses_photo = true,
                                     .default_steps = 128});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const int starts = lesson.smoke() ? 2 : 5;
    const int steps = lesson.smoke() ? 50 : 300;
    const int scale = 4;
    auto show = [&](const Tensor& x) {
      return viz::picture(x, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
    };

    std::vector<io::Image> tiles;
    for (int64_t index : lesson.smoke() ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 2}) {
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      lesson.step(fmt::format("Target: test image {} ({}); its fc1 code has 128 numbers", index, data::kFashionClasses[sample.labels[index]]));
      Tensor code;
      {
        NoGrad no_grad;
        code = model.forward_until(image, "fc1").clone();
      }
      // TV 0.002 and 0.005 were tried too: code errors of about 0.06 and 0.11, and the boot no
      // more readable than at 0.0005.
      for (float tv : {0.f, 0.0005f}) {
        std::vector<io::Image> row = {viz::titled(show(image), tv > 0 ? "target, TV 5e-4" : "target, no TV", 11)};
        double worst = 0;
        // Descent of the code error from noise, clipped to valid pixels: explain::invert (the
        // recipe tgc invert and the explorer page use).
        const std::vector<Tensor> found = explain::invert(model, "fc1", image, {.starts = starts, .steps = steps, .tv = tv});
        for (int s = 0; s < starts; ++s) {
          const Tensor& x = found[static_cast<size_t>(s)];
          const float relative_error = static_cast<float>(explain::code_error(model, "fc1", code, x));
          worst = std::max(worst, static_cast<double>(relative_error));
          row.push_back(viz::titled(show(x), fmt::format("start {}: error {:.3f}", s + 1, relative_error), 11));
        }
        lesson.say("TV weight {:.4f}: worst relative code error over {} starts ||fc1(x)-fc1(x0)||^2/||fc1(x0)||^2 = {:.4f}", tv, starts, worst);
        tiles.insert(tiles.end(), row.begin(), row.end());
      }
    }
    lesson.figure("inversions.png", viz::grid(tiles, starts + 1, 4),
                  "Each row: the target image, then reconstructions from different random starts, each minimizing "
                  "the relative fc1 code error ||fc1(x) - fc1(x0)||^2 / ||fc1(x0)||^2 (in its title) until it gives nearly "
                  "the same code. Rows alternate: no regularization, then total variation (TV) 0.0005, which costs a "
                  "little code error. Without TV the rows are mostly pixel noise (the trouser's legs show only faintly): noise matches the code as well. With "
                  "TV the trouser's two legs come back from every start, but the boot's row is flat gray blocks in "
                  "which no boot can be read (a larger TV weight does not fix it: at 0.002 and 0.005 the code error "
                  "rises to about 0.06 and 0.11 and still no boot shows). So the code pins down neither the pixels nor, for every garment, the "
                  "shape: what comes back depends on the prior as much as on the code.");

    // The lecture inverts fc7: a code with no spatial layout, from the top of the network.
    // The photo model is a detector; its fc7 is the feature map a detection's head reads. For
    // the cat (a detection of the 1x1 head) that map is 1x1: a vector, like fc7.
    nn::Model& photo_model = lesson.photo_model();
    auto& graph = dynamic_cast<models::Graph&>(photo_model);
    const preprocess::InputSpec& spec = photo_model.info().input;
    const lesson::Photo photo = lesson.photo();
    lesson.step(fmt::format("The photo model: the code of {}'s best {} detection", photo.name, photo.target_name));
    const std::vector<models::Detection> found =
        models::detect(graph, photo.input, photo.original.width, photo.original.height, {.min_score = 0.05f});
    const auto best = std::find_if(found.begin(), found.end(), [&](const models::Detection& d) { return d.class_index == photo.target; });
    if (best == found.end())
      throw Error(fmt::format("lesson 10: no {} detection with p >= 0.05 on {}; try --target with a class the photo shows",
                              photo.target_name, photo.name));
    const models::Detection detection = *best;
    lesson.say("{} p = {:.3f}, box {:.0f},{:.0f},{:.0f},{:.0f} (photo pixels), anchor {} of the {} head, which reads {}",
               detection.label, detection.score, detection.pixels.x0, detection.pixels.y0, detection.pixels.x1,
               detection.pixels.y1, detection.anchor, detection.grid, detection.layer);
    Tensor code;
    {
      NoGrad no_grad;
      code = photo_model.forward_until(photo.input, detection.layer).clone();
    }
    lesson.say("the code: {} channels x {}x{} = {} numbers (the photo as the model sees it: {}){}", code.dim(1), code.dim(2),
               code.dim(3), code.numel(), photo.input.numel(),
               code.dim(2) * code.dim(3) == 1 ? "; a 1x1 map keeps no layout, like fc7" : "");
    const explain::Objective code_error = [&](const Tensor& x) {  // ||phi(x) - phi0||^2 / ||phi0||^2
      return neg(explain::feature_match(photo_model, detection.layer, code)(x));
    };
    // The scale of the error: what two images that are not the photo score.
    const lesson::Photo other = photo.name == "coffee.png" ? lesson.photo(lesson::Lesson::kDefaultPhoto, "Cat")
                                                           : lesson.photo("assets/coffee.png", "Coffee cup");
    double gray_error = 0, other_error = 0;
    {
      NoGrad no_grad;
      gray_error = code_error(Tensor::zeros(photo.input.shape())).item();
      other_error = code_error(other.input).item();
    }
    lesson.say("relative code error ||phi(x) - phi0||^2 / ||phi0||^2 of a gray image: {:.3f}; of {}: {:.3f}", gray_error,
               other.name, other_error);

    const int photo_starts = lesson.smoke() ? 2 : 5;
    const int photo_steps = lesson.smoke() ? 2 : lesson.synthesis_steps();
    lesson.step(fmt::format("Minimize the code error from {} random starts, {} steps", photo_starts, photo_steps));
    lesson.say("x* = argmin ||phi(x) - phi0||^2 / ||phi0||^2 with an image prior: the image is a decorrelated image (smooth,");
    lesson.say("natural colours, valid pixels) seen through random turns, zooms and shifts, and Adam descends the error");
    const auto start = std::chrono::steady_clock::now();
    const std::vector<Tensor> inverted = explain::invert(
        photo_model, detection.layer, photo.input,
        {.starts = photo_starts, .steps = photo_steps,
         .on_step = [&](int, int step, float) { lesson.progress("inversion", step, photo_steps); }});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lesson.say("{} starts x {} steps: {:.1f} s", photo_starts, photo_steps, seconds);

    // Every tile at the photo's own aspect ratio; the detection's box on the original only (an
    // inversion has no box: a 1x1 code keeps no place, and one frame on every tile is clutter).
    auto shown = [&](const Tensor& x) { return photo.at_own_aspect(preprocess::input_to_image(x, spec)); };
    std::vector<io::Image> photo_tiles = {viz::titled(photo.with_box(preprocess::input_to_image(photo.input, spec)),
                                                      fmt::format("{}: {} p {:.2f}", photo.name, detection.label, detection.score))};
    const explain::DetectionTargets same_anchor{{detection.class_index}, {{detection.anchor}}};
    NoGrad no_grad;
    double worst = 0, lowest_p = 1;
    std::string errors;
    for (int s = 0; s < photo_starts; ++s) {
      // As saved: whole 8-bit pixels.
      const Tensor x = explain::as_saved(inverted[static_cast<size_t>(s)], spec);
      const double error = code_error(x).item();
      const float logit = explain::detection_logit_values(photo_model, x, same_anchor)[0][0].logit;
      const double p = 1.0 / (1.0 + std::exp(-logit));
      worst = std::max(worst, error);
      lowest_p = std::min(lowest_p, p);
      errors += fmt::format("{}{:.3f}", s ? ", " : "", error);
      lesson.say("start {}: code error {:.3f}; the same anchor's {} p = {:.3f}", s + 1, error, detection.label, p);
      photo_tiles.push_back(viz::titled(shown(x), fmt::format("start {}: error {:.3f}, p {:.2f}", s + 1, error, p)));
    }
    lesson.number("photo inversion: worst relative code error over the starts", worst, "{:.3f}");
    lesson.number("photo inversion: relative code error of " + other.name, other_error, "{:.3f}");
    lesson.number("photo inversion: lowest p of the detection on an inversion", lowest_p, "{:.3f}");
    lesson.number("photo inversion: seconds", seconds, "{:.1f}");
    lesson.figure("cat_inversion.png", viz::grid(photo_tiles, 3, 6),
                  fmt::format("Feature inversion (lecture 39 (d)) of the code {}'s {} detection is read from (p {:.2f}, "
                              "its box drawn on the original): the {} numbers of {} ({} channels of {}x{}), the map the {} "
                              "head reads, the detector's fc7. Each of {} random starts minimizes the relative code "
                              "error ||phi(x) - phi0||^2 / ||phi0||^2 for {} steps (Adam, descending the error) under an "
                              "image prior: a decorrelated image (smooth, natural colours, valid pixels) seen through "
                              "random turns, zooms and shifts. Errors on the 8-bit images: {} (a gray image scores "
                              "{:.3f}, {} {:.3f}); the titles give each image's error and the same anchor's {} p on it "
                              "(lowest {:.2f}).{}{}",
                              photo.name, detection.label, detection.score, code.numel(), detection.layer, code.dim(1),
                              code.dim(2), code.dim(3), detection.grid, photo_starts, photo_steps, errors, gray_error,
                              other.name, other_error, detection.label, lowest_p,
                              lesson.image_path() == lesson::Lesson::kDefaultPhoto
                                  ? " All five are a pale tangle of fur-like strokes in muted greens, blues, browns and creams, "
                                    "grayer than the photo's orange tabby; in some, small face-like patches (an eye, an ear, a "
                                    "muzzle) appear at different places, none at the cat's size."
                                  : "",
                              code.dim(2) * code.dim(3) == 1
                                  ? " None keeps the photo's layout: a 1x1 code records what is in the box, not where."
                                  : " This code is a map, so some of the layout survives in it."),
                  "Balasubramanian 39 (d): feature inversion from five random starts");
  });
}
