// Lesson 9: gradient ascent -- the image a class (or a neuron) wants.
//
// Backward gives d score / d image. Instead of looking at it, follow it: start from a
// blank image and repeatedly step uphill, x += lr * (d score/dx - 2 lambda x). The L2
// term keeps the image from growing without bound (Simonyan et al.'s class model
// visualization). Jitter and blur keep it from exploiting high-frequency patterns. On the
// photo model the difference is stark: the plain objective gives colored noise that the
// network scores as its class (a fooling image). The photo model is a detector, so the
// class is asked of ONE detection -- its logit at one anchor of a head's centre cell, a box
// of the object's usual shape (wide for a car) -- with both objectives for the same steps:
// Simonyan's plain ascent on the pixels, and Olah et al.'s recipe (a decorrelated image
// seen through random turns, zooms and shifts, Adam, a few hundred steps), where one object
// forms in that detection's box. The caption says which ones read without their titles.
#include <algorithm>
#include <ctime>
#include <numeric>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/explain/recipes.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

namespace {
// The photo step's classes and the detection each climbs come from the library's table
// (explain::class_detections(), explain/recipes.h), where the classes tried and not kept are
// listed too; the recipe is explain::photo_class_recipe, the one `tgc visualize` and the
// explorer page use.
constexpr const char* kNotShown = "Dog (a small shaggy animal on its back: dog-like, but not named without the title)";
constexpr int kDefaultSteps = 256;
// What the default run shows (every image's start noise is seeded by its class, so it repeats),
// looked at without the titles.
constexpr const char* kSeenDefault =
    "Looked at without the titles, bottom row: a curled-up, sleeping ginger tabby cat (body, fur and tail; its head is not "
    "clear); a rounded car body, a curved arch along its left end and dark wheel shapes below it, the least clear of the "
    "five; a bicycle, two spoked wheels, frame and handlebars, with a rider's arm above it; a dark boot standing upright "
    "(shaft and foot, toe to the right); a camera body with a round lens and dials. Around each box the frame fills with the class's textures. "
    "The top row is noise, at most a faint outline where the box is. ";
constexpr const char* kSeenAnywhere = "cat fur and cat parts spread over the whole frame, with no single object";
constexpr const char* kSeenOne = ": one curled-up tabby cat forms, inside that detection's box";

}  // namespace

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv,
                        {.id = "09_gradient_ascent",
                         .title = "Gradient ascent: the image a class or a neuron wants",
                         .summary = "Class model visualization for every class from a zero image, with L2 only and "
                                    "with jitter and blur; frames of one ascent; the same for neurons of conv1, conv2 "
                                    "and fc1; then the photo model's classes, each as ONE detection (a class's logit at "
                                    "one anchor of a head's centre cell, shaped like the object) climbed for the same "
                                    "steps by Simonyan's plain ascent (noise: a fooling image) and by Olah et al.'s "
                                    "recipe (Cat, Car, Bicycle, Boot, Camera), the caption saying which read without their titles; "
                                    "one detection versus the best anchor anywhere for --target's class, below --image's "
                                    "own detection (--steps sets both ascents' steps; CPU time printed).",
                         .uses_photo = true,
                         .default_steps = kDefaultSteps});
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

    nn::Model& photo_model = lesson.photo_model();
    auto& detector = dynamic_cast<models::Graph&>(photo_model);
    const preprocess::InputSpec& spec = photo_model.info().input;
    explain::scores(photo_model, Tensor::zeros({1, spec.channels, spec.height, spec.width}));  // the heads need a pass
    const std::vector<models::Head> heads = models::detection_heads(detector);
    const std::vector<models::Anchor> anchor_boxes = models::ssd_anchors();
    const int64_t anchor_count = static_cast<int64_t>(anchor_boxes.size());
    const int photo_steps = lesson.smoke() ? 2 : lesson.synthesis_steps();
    const std::vector<explain::ClassDetection> classes =
        lesson.smoke() ? std::vector<explain::ClassDetection>{explain::class_detections().front()} : explain::class_detections();
    // The photo's detection (--image, --target): its class is the one the contrast below climbs.
    const lesson::Photo photo = lesson.photo();
    const std::vector<models::Detection> found = models::detect(detector, photo.input, photo.original.width,
                                                                photo.original.height, {.min_score = 0.f});
    const auto photo_detection = std::find_if(found.begin(), found.end(), [&](const models::Detection& d) {
      return d.class_index == photo.target;
    });
    if (photo_detection == found.end()) throw Error(fmt::format("09: {} has no {} detection", photo.name, photo.target_name));

    // What every image climbs: one detection, the class's logit at anchors of one cell at the
    // centre of a head, so one object forms there. Images 0..count-1 are the classes; then the
    // photo's class at the 5x5 head's square anchor when it is not one of them; last, the photo's
    // class at its best anchor anywhere (-1), the contrast. Every image starts from noise seeded
    // by its class, so a class's picture does not change when the list does.
    std::vector<std::string> climbed;
    explain::DetectionTargets detection;
    std::vector<uint64_t> seeds;
    std::vector<std::string> climbs;  // in words: which anchors image n climbs
    auto add = [&](const explain::ClassDetection& c, std::vector<int64_t> anchors) {
      climbed.push_back(c.name);
      detection.classes.push_back(photo_model.class_index(c.name));
      climbs.push_back(anchors[0] < 0 ? fmt::format("its best anchor of {}", anchor_count)
                                      : explain::anchor_words(anchors, c.grid, spec.width, spec.height));
      detection.anchors.push_back(std::move(anchors));
      seeds.push_back(static_cast<uint64_t>(detection.classes.back()));
    };
    for (const explain::ClassDetection& c : classes) add(c, explain::centre_anchors(heads, c));
    const int64_t count = static_cast<int64_t>(classes.size());
    const auto listed = std::find(climbed.begin(), climbed.end(), photo.target_name);
    const int64_t contrast_one = listed - climbed.begin();
    if (listed == climbed.end()) {
      const explain::ClassDetection extra = explain::class_detection(photo.target_name);
      add(extra, explain::centre_anchors(heads, extra));
    }
    const int64_t contrast_any = static_cast<int64_t>(climbed.size());
    add({.name = photo.target_name}, {-1});

    // What a class gets from an image is measured on the image as saved: 8-bit pixels.
    auto as_saved = [&](const Tensor& batch, int64_t n) { return explain::as_saved(slice(batch, 0, n, n + 1), spec); };
    auto cpu_seconds_since = [](std::clock_t start) { return static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC; };
    // Image n as saved: its detection's probability (sigmoid of the logit; the best of its
    // anchors), that anchor, its head, and the picture with the box the detector decodes there.
    struct Result {
      double p = 0;
      int64_t anchor = 0;
      std::string grid;
      io::Image picture;
    };
    auto measure = [&](const Tensor& batch, int64_t n) {
      const Tensor saved = as_saved(batch, n);
      const auto i = static_cast<size_t>(n);
      const explain::DetectionTargets one{{detection.classes[i]}, {detection.anchors[i]}};
      const std::vector<explain::AnchorLogit> logits = explain::detection_logit_values(photo_model, saved, one)[0];
      const explain::AnchorLogit best = *std::max_element(
          logits.begin(), logits.end(), [](const auto& a, const auto& b) { return a.logit < b.logit; });
      Result r{.p = 1.0 / (1.0 + std::exp(-static_cast<double>(best.logit))), .anchor = best.anchor};
      for (const models::Head& head : heads)
        if (head.first_anchor <= best.anchor && best.anchor < head.first_anchor + head.anchors) r.grid = head.grid;
      // The detection's box: its anchor moved by the box encodings of the pass just run.
      const models::Box box = models::decode_box(detector.box_encodings().data() + best.anchor * 4,
                                                 anchor_boxes[static_cast<size_t>(best.anchor)]);
      r.picture = preprocess::input_to_image(saved, spec);
      const float w = static_cast<float>(r.picture.width), h = static_cast<float>(r.picture.height);
      viz::draw_box(r.picture, box.x0 * w, box.y0 * h, box.x1 * w, box.y1 * h, {230, 20, 20});
      std::string others;  // what the detector finds in the image, best first
      for (const models::Detection& d : models::detect(detector, saved, spec.width, spec.height))
        if (others.size() < 60) others += fmt::format("{}{} {:.2f} ({})", others.empty() ? "" : ", ", d.label, d.score, d.grid);
      lesson.say("{:<11} p = {:.3f} at anchor {} ({}){}; the detector finds: {}", climbed[i], r.p, r.anchor, r.grid,
                 n == contrast_any ? ", the best anywhere" : "", others.empty() ? "nothing" : others);
      return r;
    };

    lesson.step(fmt::format("The photo model: Simonyan et al.'s objective score_c(x) - lambda ||x||^2 from a gray image, "
                            "{} steps",
                            photo_steps));
    lesson.say("the photo model is a detector: it scores every class at each of {} anchors (boxes at fixed places",
               anchor_count);
    lesson.say("and sizes). Each image climbs ONE detection: a class's logit at {}", climbs[0]);
    lesson.say("(and the like for the others), the same objective and steps as the recipe of the next step.");
    explain::AscentOptions paper;
    paper.steps = photo_steps;
    paper.learning_rate = 0.02f;  // each step moves pixels by 0.02 on average (normalized gradient)
    paper.normalize_gradient = true;
    paper.l2 = 0.05f;
    paper.clip = true;  // the input range of the photo model: pixel 0..255 is -1..1
    paper.clip_low = -1.f;
    paper.clip_high = 1.f;
    paper.on_step = [&](int step, const Tensor&, float) { lesson.progress("ascent, L2 only", step, paper.steps); };
    const explain::DetectionTargets listed_only{
        {detection.classes.begin(), detection.classes.begin() + count},
        {detection.anchors.begin(), detection.anchors.begin() + count}};
    std::clock_t cpu_start = std::clock();  // CPU time of every thread (user + sys): what a loaded machine does not inflate
    // Every class climbs in one batch (one image per class): one forward and backward a step.
    const Tensor paper_images = explain::ascend(Tensor::zeros({count, 3, spec.height, spec.width}),
                                                explain::detection_logits(photo_model, listed_only), paper);
    const double paper_cpu = cpu_seconds_since(cpu_start);
    lesson.say("{} images x {} steps in {:.1f} s of CPU time", count, paper.steps, paper_cpu);
    std::vector<io::Image> tiles;
    std::vector<double> paper_p;
    for (int64_t n = 0; n < count; ++n) {
      const Result r = measure(paper_images, n);
      paper_p.push_back(r.p);
      tiles.push_back(viz::titled(r.picture, fmt::format("{}: p = {:.2f}", climbed[static_cast<size_t>(n)], r.p)));
    }
    const double paper_mean = std::accumulate(paper_p.begin(), paper_p.end(), 0.0) / static_cast<double>(count);
    lesson.number("photo, Simonyan's objective: mean p", paper_mean, "{:.3f}");
    lesson.say("mean p = {:.2f} for these noise fields: a high p here is a fooling image, not a picture (lesson 13).",
               paper_mean);

    lesson.step(fmt::format("The same detections with Olah et al.'s recipe, {} steps", photo_steps));
    explain::FeatureVisualizationOptions recipe = explain::photo_class_recipe(photo_steps);
    lesson.say("a decorrelated image (1/frequency DCT coefficients, ImageNet's colour correlations), seen at each step");
    lesson.say("turned by up to {:.0f} degrees, zoomed by up to {:.0f}% and shifted by up to {:.0f} pixels, climbed with Adam.",
               recipe.transforms.degrees, 100 * recipe.transforms.scale, recipe.transforms.shift);
    lesson.say("{}: the best {} detection has p = {:.3f} on the {} head (anchor {})", photo.name, photo.target_name,
               photo_detection->score, photo_detection->grid, photo_detection->anchor);
    recipe.image_seeds = seeds;
    recipe.on_step = [&](int step, float) { lesson.progress("ascent, one detection", step, recipe.steps); };
    cpu_start = std::clock();
    const Tensor recipe_images = explain::visualize(explain::detection_logits(photo_model, detection),
                                                    static_cast<int64_t>(climbed.size()), spec.height, spec.width, recipe);
    const double recipe_cpu = cpu_seconds_since(cpu_start);
    lesson.say("{} images x {} steps in {:.1f} s of CPU time (about {:.0f} s on two idle cores)", climbed.size(),
               photo_steps, recipe_cpu, recipe_cpu / 2);
    std::vector<Result> results;
    for (size_t n = 0; n < climbed.size(); ++n) results.push_back(measure(recipe_images, static_cast<int64_t>(n)));
    double lowest = 1.0, recipe_mean = 0.0;
    for (int64_t n = 0; n < count; ++n) {
      const Result& r = results[static_cast<size_t>(n)];
      lowest = std::min(lowest, r.p);
      recipe_mean += r.p / static_cast<double>(count);
      tiles.push_back(viz::titled(r.picture, fmt::format("{}: p = {:.2f}", climbed[static_cast<size_t>(n)], r.p)));
    }
    lesson.number("photo, one detection with the recipe: lowest p", lowest, "{:.3f}");
    lesson.number("photo, both rows: CPU seconds", paper_cpu + recipe_cpu, "{:.1f}");
    const bool default_run = photo_steps == kDefaultSteps && !lesson.smoke();
    if (default_run) lesson.say("{}", kSeenDefault);
    lesson.say("tried at 256 steps and not shown: {}", kNotShown);
    std::string objectives;  // "Cat at the 150x150 px square anchor of ...; Car at ..."
    for (int64_t n = 0; n < count; ++n)
      objectives += fmt::format("{}{} at {}", n ? "; " : "", climbed[static_cast<size_t>(n)], climbs[static_cast<size_t>(n)]);
    lesson.figure("photo_classes.png", viz::grid(tiles, static_cast<int>(count), 6),
                  fmt::format("Class model visualizations of the photo model (lecture 39 (a)), each titled with the "
                              "probability of its detection measured on the image saved as 8-bit pixels, the box drawn "
                              "where the detector decodes that detection. Both rows climb the same objective for the same "
                              "{} steps, ONE detection's class logit: {}. Top: Simonyan et al.'s plain ascent on the "
                              "pixels, score - lambda ||x||^2 from a gray image ({:.0f} s of CPU time): noise the detector "
                              "scores at p {:.2f} on average. That is not a picture of the class but a fooling image, the "
                              "subject of lesson 13. Bottom: Olah et al.'s recipe (decorrelated image, random turns of up "
                              "to {:.0f} degrees, zooms of up to {:.0f}% and shifts of up to {:.0f} pixels, Adam; {:.0f} s of "
                              "CPU time). {}Tried at 256 steps and not shown: {}. p alone does "
                              "not say whether a person sees the class: the noise above has mean p {:.2f}, the recipe's "
                              "images below {:.2f} (lowest {:.2f}).",
                              photo_steps, objectives, paper_cpu, paper_mean, recipe.transforms.degrees,
                              100 * recipe.transforms.scale, recipe.transforms.shift, recipe_cpu,
                              default_run ? kSeenDefault : "",
                              kNotShown, paper_mean, recipe_mean, lowest),
                  "Balasubramanian 39 (a): class model visualizations, plain and with a recipe, of one detection");
    io::Image photo_tile = preprocess::input_to_image(photo.input, spec);  // as the detector sees it, then unstretched
    const models::Box& photo_box = photo_detection->box;
    viz::draw_box(photo_tile, photo_box.x0 * static_cast<float>(spec.width), photo_box.y0 * static_cast<float>(spec.height),
                  photo_box.x1 * static_cast<float>(spec.width), photo_box.y1 * static_cast<float>(spec.height), {230, 20, 20});
    const Result& any = results[static_cast<size_t>(contrast_any)];
    const Result& one = results[static_cast<size_t>(contrast_one)];
    const std::vector<io::Image> contrast_tiles = {
        viz::titled(any.picture, fmt::format("best of {} anchors: p = {:.2f}", anchor_count, any.p)),
        viz::titled(one.picture, fmt::format("one detection: p = {:.2f}", one.p))};
    const bool default_cat = default_run && photo.target_name == "Cat";
    const io::Image photo_row = viz::titled(photo.at_own_aspect(photo_tile), fmt::format("{}: its {} detection, p = {:.2f}",
                                                                                        photo.name, photo.target_name,
                                                                                        photo_detection->score));
    lesson.figure("photo_anchors.png", viz::stack({photo_row, viz::grid(contrast_tiles, 2, 6)}),
                  fmt::format("The same recipe, {} steps and start noise on {}, two objectives, below the photo's own {} "
                              "detection (top, box drawn: the {} head). Left: the {} logit of its best anchor anywhere "
                              "(what a classifier's score would be): whichever of the {} anchors is best at a step is the "
                              "one that climbs, so {}; at the end the best is a box of the {} head. Right: the logit at {}, "
                              "one detection{}.",
                              photo_steps, photo.target_name, photo.target_name, photo_detection->grid, photo.target_name,
                              anchor_count,
                              default_cat ? kSeenAnywhere : "the class's texture may spread anywhere in the frame",
                              any.grid, climbs[static_cast<size_t>(contrast_one)], default_cat ? kSeenOne : ""),
                  "Balasubramanian 39 (a): why a detector's class visualization targets one detection");
  });
}
