// Lesson 7: saliency maps (Simonyan, Vedaldi & Zisserman 2013).
//
// The gradient of a class score with respect to the pixels, taken in magnitude (the
// largest |gradient| over the color channels), says which pixels the score is most
// sensitive to. SmoothGrad (Smilkov et al. 2017) averages it over noisy copies of the
// input to quiet the noise; how much noise and how many copies is a choice we sweep.
// Simonyan et al. also used the map for weakly supervised segmentation: the most salient
// pixels are surely the object, the least salient surely background, and GrabCut (color
// models plus a graph cut, iterated) decides the rest.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/explain/segment.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

namespace {

// The image where the mask is on; outside it, the image dimmed to a quarter over dark blue.
io::Image show_mask(const io::Image& image, const std::vector<uint8_t>& mask) {
  io::Image out{image.width, image.height, 3, std::vector<uint8_t>(static_cast<size_t>(image.width) * image.height * 3)};
  for (size_t i = 0; i < mask.size(); ++i)
    for (int c = 0; c < 3; ++c) {
      const uint8_t v = image.pixels[i * image.channels + (image.channels == 3 ? c : 0)];
      out.pixels[i * 3 + c] = mask[i] ? v : static_cast<uint8_t>(v / 4 + (c == 2 ? 50 : 10));
    }
  return out;
}

// Seeds as colors: surely the object red, surely background blue, undecided gray.
io::Image show_seeds(const std::vector<uint8_t>& seeds, int width, int height) {
  io::Image out{width, height, 3, std::vector<uint8_t>(seeds.size() * 3)};
  for (size_t i = 0; i < seeds.size(); ++i) {
    const std::array<uint8_t, 3> color = seeds[i] == segment::kForeground   ? std::array<uint8_t, 3>{215, 40, 40}
                                         : seeds[i] == segment::kBackground ? std::array<uint8_t, 3>{40, 80, 200}
                                                                            : std::array<uint8_t, 3>{200, 200, 200};
    std::copy(color.begin(), color.end(), out.pixels.begin() + static_cast<std::ptrdiff_t>(i * 3));
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "07_saliency", .title = "Saliency maps, SmoothGrad, and GrabCut masks seeded from them",
                                     .summary = "Saliency and SmoothGrad on Fashion-MNIST test images and on the cat photo; "
                                     "SmoothGrad's noise level and sample count swept on the cat; object masks by "
                                     "GrabCut seeded from the most and least salient pixels, as Simonyan et al. did.", .uses_photo = true});
  return lesson.run([&] {
    lesson.step("Load the model and one test image of each of several classes");
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const std::vector<int64_t> picks = lesson.smoke() ? std::vector<int64_t>{0, 1} : std::vector<int64_t>{0, 1, 2, 4, 9, 18};
    const int samples = lesson.smoke() ? 5 : 50;
    // Simonyan et al.'s seeds: the top 5% of the saliency map is the object, the bottom 30%
    // background.
    const double object_quantile = 0.95, background_quantile = 0.30;
    // At 28x28 neighbouring pixels' gradients differ a lot, so the seeds come from the map
    // blurred over about 2 pixels (unblurred, the bottom 30% is scattered over the object and
    // the mean IoU below is 0.14).
    const float seed_blur = 2.f;

    const int scale = 6;
    std::vector<io::Image> tiles;
    double mean_iou = 0, lowest_iou = 1, highest_iou = 0;
    for (int64_t index : picks) {
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      const int64_t label = sample.labels[index];
      const std::string name = data::kFashionClasses[label];

      lesson.step(fmt::format("Test image {}: a {}", index, name));
      const Tensor p = softmax(explain::scores(model, image), 1);
      lesson.say("p({}) = {:.4f}", name, p.at({0, label}));
      const Tensor gradient = explain::saliency(model, image, {label});
      const Tensor smooth = explain::smoothgrad(model, image, {label}, samples, 0.15f, 7);
      const Tensor saliency = viz::normalize(reshape(gradient, {1, 28, 28}), viz::Normalize::MaxAbs);
      const Tensor smooth_map = viz::normalize(reshape(smooth, {1, 28, 28}), viz::Normalize::MaxAbs);

      // GrabCut from the saliency map's seeds, on the image itself.
      const io::Image pixels{28, 28, 1, std::vector<uint8_t>(sample.pixels.begin() + index * 784,
                                                             sample.pixels.begin() + (index + 1) * 784)};
      const std::vector<uint8_t> seeds =
          segment::seeds_from_saliency(explain::gaussian_blur(saliency, seed_blur), object_quantile, background_quantile);
      const std::vector<uint8_t> mask = segment::grabcut(pixels, seeds, 5);
      // The object: every pixel that is not the black background.
      std::vector<uint8_t> object(784);
      for (int i = 0; i < 784; ++i) object[i] = pixels.pixels[i] > 0;
      const double iou = segment::intersection_over_union(mask, object);
      const auto count = [](const std::vector<uint8_t>& m) { return std::count_if(m.begin(), m.end(), [](uint8_t v) { return v != 0; }); };
      lesson.say("seeds: {} object pixels (top 5% of saliency), {} background (bottom 30%)",
                 std::count(seeds.begin(), seeds.end(), segment::kForeground),
                 std::count(seeds.begin(), seeds.end(), segment::kBackground));
      lesson.say("GrabCut mask: {} of 784 pixels; the object has {}; intersection over union {:.3f}", count(mask),
                 count(object), iou);
      mean_iou += iou / static_cast<double>(picks.size());
      lowest_iou = std::min(lowest_iou, iou);
      highest_iou = std::max(highest_iou, iou);

      tiles.push_back(viz::titled(viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale),
                                  fmt::format("{} {:.2f}", name, p.at({0, label}))));
      tiles.push_back(viz::titled(viz::scale_nearest(viz::colorize(saliency, viz::Colormap::Viridis), scale), "saliency"));
      tiles.push_back(viz::titled(viz::scale_nearest(viz::colorize(smooth_map, viz::Colormap::Viridis), scale), "SmoothGrad"));
      tiles.push_back(viz::titled(viz::scale_nearest(show_seeds(seeds, 28, 28), scale), "seeds"));
      tiles.push_back(viz::titled(viz::scale_nearest(show_mask(pixels, mask), scale), fmt::format("GrabCut, IoU {:.2f}", iou)));
    }

    lesson.step("All images: input | saliency | SmoothGrad | seeds | GrabCut mask");
    lesson.number("mean IoU of the GrabCut mask with the object (pixel > 0)", mean_iou, "{:.3f}");
    lesson.figure("saliency.png",
                  viz::stack({viz::grid(tiles, 5, 4),
                              viz::color_bar(viz::Colormap::Viridis, 300, "0", "", "max |d score/d pixel| (per map)")}),
                  fmt::format("Rows: test images, titled with the class and its probability. Columns: input; saliency "
                              "max|d score/d pixel|; SmoothGrad (mean over {} noisy copies, sigma = 15% of the range); "
                              "GrabCut's seeds (red: top 5% of saliency, surely the object; blue: bottom 30%, surely "
                              "background; gray: left to GrabCut), from saliency blurred over {:.0f} pixels; the GrabCut "
                              "mask (outside it dimmed). Intersection over union with the object's pixels (pixel > 0): "
                              "mean {:.2f}, from {:.2f} to {:.2f}. GrabCut keeps what has the colors of the red seeds, "
                              "so where they sit on one shade of a garment of several shades, the mask is that shade.",
                              samples, seed_blur, mean_iou, lowest_iou, highest_iou));
    lesson.say("saliency is speckled: neighbouring pixels' gradients differ a lot. SmoothGrad's average over");
    lesson.say("noisy copies keeps what is consistent. Saliency alone is no mask (it is high on some background");
    lesson.say("pixels too); GrabCut uses it only for seeds and lets the image's own colors draw the boundary.");

    lesson.step("The photo through the photo model: the data gradient of one detection, max |g| over R, G, B");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const lesson::Photo photo = lesson.photo();
    const models::Detection& detection = photo.detection;
    const explain::Target target = explain::Target::of_detections({photo.target}, {detection.anchor});
    const Tensor& cat = photo.input;
    const io::Image cat_photo = preprocess::input_to_image(cat, spec);
    lesson.say("{} on {}: anchor {} of the {} head, p = {:.4f}, box {:.0f},{:.0f},{:.0f},{:.0f} (photo pixels)", photo.target_name,
               photo.name, detection.anchor, detection.grid, detection.score, detection.pixels.x0, detection.pixels.y0,
               detection.pixels.x1, detection.pixels.y1);
    auto start = std::chrono::steady_clock::now();
    const Tensor cat_gradient = explain::saliency(photo_model, cat, target);
    lesson.say("one saliency map: {:.0f} ms; {}", 1000 * seconds_since(start), viz::clip_note(cat_gradient));
    // Each map drawn as max |g| over R, G, B, clipped at its own 99th percentile, at the photo's aspect.
    auto show = [&](const Tensor& g, const std::string& title) {
      return viz::titled(photo.with_box(viz::picture(g, viz::Normalize::Percentile99, viz::Colormap::Gray)), title);
    };

    lesson.step("SmoothGrad on the detection: the noise level sigma (a fraction of the input's range) and the sample count");
    // How concentrated each map is: the share of its |g| inside two boxes around the eyes
    // (10% of chelsea.png; on another photo they are just two boxes).
    auto eyes = [](const Tensor& map) { return lesson::share_in_boxes(map, lesson::kChelseaEyes); };
    const double gradient_eyes = eyes(cat_gradient);
    std::vector<io::Image> sweep = {show(cat_gradient, fmt::format("gradient: eyes {:.0f}%", 100 * gradient_eyes))};
    const std::vector<float> sigmas = {0.05f, 0.10f, 0.20f, 0.25f};
    const int sweep_samples = lesson.smoke() ? 2 : 25;
    std::vector<double> sigma_eyes;
    start = std::chrono::steady_clock::now();
    int sweep_done = 0;
    const int sweep_total = static_cast<int>(sigmas.size()) * sweep_samples;
    for (float sigma : sigmas) {
      lesson.progress("SmoothGrad samples", sweep_done, sweep_total);
      sweep_done += sweep_samples;
      const Tensor map = explain::smoothgrad(photo_model, cat, target, sweep_samples, sigma, 11);
      sigma_eyes.push_back(eyes(map));
      lesson.say("sigma {:>2.0f}%, {} samples: {:.0f}% of |g| in the eye boxes", 100 * sigma, sweep_samples, 100 * sigma_eyes.back());
      sweep.push_back(show(map, fmt::format("sigma {:.0f}%, {} samples: eyes {:.0f}%", 100 * sigma, sweep_samples, 100 * sigma_eyes.back())));
    }
    lesson.progress("SmoothGrad samples", sweep_total, sweep_total);
    lesson.say("{} noise levels x {} samples: {:.1f} s", sigmas.size(), sweep_samples, seconds_since(start));
    const float sweep_sigma = 0.20f;
    const std::vector<int> counts = lesson.smoke() ? std::vector<int>{1, 2} : std::vector<int>{1, 5, 50};
    std::vector<double> count_eyes;
    start = std::chrono::steady_clock::now();
    for (int n : counts) {
      const Tensor map = explain::smoothgrad(photo_model, cat, target, n, sweep_sigma, 11);
      count_eyes.push_back(eyes(map));
      lesson.say("sigma {:.0f}%, {:>2} samples: {:.0f}% of |g| in the eye boxes", 100 * sweep_sigma, n, 100 * count_eyes.back());
      sweep.push_back(show(map, fmt::format("sigma {:.0f}%, {} sample{}: eyes {:.0f}%", 100 * sweep_sigma, n, n == 1 ? "" : "s",
                                            100 * count_eyes.back())));
    }
    std::string count_list;
    for (int n : counts) count_list += fmt::format("{}{}", count_list.empty() ? "" : ", ", n);
    lesson.say("sigma {:.0f}% with {} samples: {:.1f} s", 100 * sweep_sigma, count_list, seconds_since(start));
    lesson.number("share of |g| in the eye boxes: the gradient", gradient_eyes, "{:.3f}");
    lesson.number("share of |g| in the eye boxes: SmoothGrad, sigma 20%, 25 samples", sigma_eyes[2], "{:.3f}");
    sweep.insert(sweep.begin() + 5, viz::titled(photo.with_box(cat_photo), fmt::format("{}: the {} detection", photo.name,
                                                                                       photo.target_name)));
    lesson.figure("cat_smoothgrad.png",
                  viz::stack({viz::grid(sweep, 5, 6), viz::color_bar(viz::Colormap::Gray, 300, "0", "",
                                                                     "99th percentile of |g| (per map) and above")}),
                  fmt::format("SmoothGrad of one detection, {} on {} (anchor {}, the {} head, p = {:.2f}; its box drawn): "
                              "max |g| over R, G, B of d logit / d pixels, each map clipped at its own 99th percentile. "
                              "Each title gives the share of the map's |g| inside two boxes, 10% of the photo (around the "
                              "cat's eyes on chelsea.png). Top row: the plain gradient ({:.0f}%), then sigma = 5, 10, 20 and 25% of the "
                              "input's range with {} samples each ({:.0f}, {:.0f}, {:.0f} and {:.0f}%). Bottom row: the "
                              "photo, then sigma = {:.0f}% with {} samples ({:.0f}% to {:.0f}%). The noise level is what "
                              "concentrates the map (onto the eyes, on chelsea.png); more samples change the share little but average the speckle "
                              "away.",
                              photo.target_name, photo.name, detection.anchor, detection.grid, detection.score,
                              100 * gradient_eyes, sweep_samples, 100 * sigma_eyes[0], 100 * sigma_eyes[1], 100 * sigma_eyes[2],
                              100 * sigma_eyes[3], 100 * sweep_sigma, count_list, 100 * count_eyes.front(),
                              100 * count_eyes.back()),
                  "Mopuri 10.1: the gradient as saliency, and SmoothGrad");

    lesson.step("GrabCut seeded from the detection's data gradient (top 5% object, bottom 30% background), then also from its box");
    const float photo_seed_blur = 6.f;  // the map blurred over about 6 pixels first, as at 28x28 (2 pixels)
    std::vector<io::Image> cut_tiles;
    struct Cut {
      std::string name;
      segment::BoxCoverage saliency_only, with_box;
      double photo_share = 0;
    };
    std::vector<Cut> cuts;
    for (const lesson::Photo& p : {photo, lesson.photo("assets/coffee.png", "Coffee cup")}) {
      const io::Image seen = preprocess::input_to_image(p.input, spec);  // 300x300, as the model saw it
      const explain::Target t = explain::Target::of_detections({p.target}, {p.detection.anchor});
      const Tensor gradient = explain::saliency(photo_model, p.input, t);
      const Tensor map = viz::normalize(gradient, viz::Normalize::MaxAbs);
      const segment::Rect box{static_cast<int>(std::lround(p.detection.box.x0 * seen.width)),
                              static_cast<int>(std::lround(p.detection.box.y0 * seen.height)),
                              static_cast<int>(std::lround(p.detection.box.x1 * seen.width)),
                              static_cast<int>(std::lround(p.detection.box.y1 * seen.height))};
      std::vector<uint8_t> seeds =
          segment::seeds_from_saliency(explain::gaussian_blur(map, photo_seed_blur), object_quantile, background_quantile);
      const std::vector<uint8_t> mask = segment::grabcut(seen, seeds, 5);
      std::vector<uint8_t> box_seeds = seeds;
      segment::background_outside(box_seeds, seen.width, seen.height, box);
      start = std::chrono::steady_clock::now();
      const std::vector<uint8_t> box_mask = segment::grabcut(seen, box_seeds, 5);
      const double cut_seconds = seconds_since(start);
      Cut cut{.name = p.name,
              .saliency_only = segment::box_coverage(mask, seen.width, seen.height, box),
              .with_box = segment::box_coverage(box_mask, seen.width, seen.height, box),
              .photo_share = static_cast<double>(std::count(box_mask.begin(), box_mask.end(), 1)) /
                             static_cast<double>(box_mask.size())};
      lesson.say("{} ({} detection, box {}% of the photo):", p.name, p.target_name,
                 std::lround(100.0 * (box.x1 - box.x0) * (box.y1 - box.y0) / (seen.width * seen.height)));
      lesson.say("  saliency seeds only: the mask covers {:.0f}% of the box; {:.0f}% of the mask lies inside it",
                 100 * cut.saliency_only.box_covered, 100 * cut.saliency_only.mask_inside);
      lesson.say("  saliency seeds + the box (outside it background): {:.0f}% of the box; {:.0f}% of the mask inside; "
                 "GrabCut {:.2f} s", 100 * cut.with_box.box_covered, 100 * cut.with_box.mask_inside, cut_seconds);
      cuts.push_back(cut);
      cut_tiles.push_back(viz::titled(p.with_box(seen), fmt::format("{}: {} {:.2f}", p.name, p.target_name, p.detection.score)));
      cut_tiles.push_back(viz::titled(p.with_box(viz::picture(gradient, viz::Normalize::Percentile99, viz::Colormap::Viridis)),
                                      fmt::format("max |d logit({})/d pixel|", p.target_name)));
      cut_tiles.push_back(viz::titled(p.at_own_aspect(show_seeds(seeds, seen.width, seen.height)), "seeds from saliency"));
      cut_tiles.push_back(viz::titled(p.with_box(show_mask(seen, mask)),
                                      fmt::format("GrabCut: {:.0f}% of box, {:.0f}% inside", 100 * cut.saliency_only.box_covered,
                                                  100 * cut.saliency_only.mask_inside)));
      cut_tiles.push_back(viz::titled(p.with_box(show_mask(seen, box_mask)),
                                      fmt::format("+ box: {:.0f}% of box, {:.0f}% inside", 100 * cut.with_box.box_covered,
                                                  100 * cut.with_box.mask_inside)));
    }
    for (const Cut& c : cuts) {
      lesson.number("GrabCut on " + c.name + ", saliency + box: share of the box in the mask", c.with_box.box_covered, "{:.2f}");
      lesson.number("GrabCut on " + c.name + ", saliency + box: share of the mask in the box", c.with_box.mask_inside, "{:.2f}");
    }
    lesson.figure("photo_grabcut.png",
                  viz::stack({viz::grid(cut_tiles, 5, 6),
                              viz::color_bar(viz::Colormap::Viridis, 300, "0", "", "99th percentile of |g| (per map) and above")}),
                  fmt::format("Simonyan et al.'s segmentation (lecture 39) for one detection per photo, its box drawn. "
                              "Columns: the photo; the detection's data gradient, max |g| over R, G, B, clipped at its 99th "
                              "percentile; the seeds from that map blurred over {:.0f} pixels (red: its top 5%, surely the "
                              "object; blue: bottom 30%, surely background; gray: left to GrabCut); GrabCut's mask from "
                              "those seeds alone (outside it dimmed over blue); the mask when everything outside the "
                              "detection's box is also surely background. Titles: the share of the box the mask covers and "
                              "the share of the mask inside the box. {}: saliency alone covers {:.0f}% of the box with "
                              "{:.0f}% of its mask inside, with the box {:.0f}% and {:.0f}%. {}: {:.0f}%/{:.0f}%, then "
                              "{:.0f}%/{:.0f}%. The saliency seeds sit where the score is most sensitive, and GrabCut grows the "
                              "mask from them by color. On the shipped coffee photo the box is what keeps the mask on the "
                              "cup (without it the mask runs into the table); the cup does not fill its box, which also "
                              "holds saucer and spoon.{}",
                              photo_seed_blur, cuts[0].name, 100 * cuts[0].saliency_only.box_covered,
                              100 * cuts[0].saliency_only.mask_inside, 100 * cuts[0].with_box.box_covered,
                              100 * cuts[0].with_box.mask_inside, cuts[1].name, 100 * cuts[1].saliency_only.box_covered,
                              100 * cuts[1].saliency_only.mask_inside, 100 * cuts[1].with_box.box_covered,
                              100 * cuts[1].with_box.mask_inside,
                              photo.name == "chelsea.png" && photo.target_name == "Cat"
                                  ? " On the shipped cat photo the box is the whole frame and adds nothing: the cat's "
                                    "least salient 30% lies on its own fur, so the mask stays on the eyes, nose and a "
                                    "few patches of the head."
                                  : ""),
                  "Balasubramanian 39 (c): the data gradient, max |g| over RGB, and a GrabCut mask from it");
  });
}
