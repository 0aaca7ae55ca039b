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
#include <optional>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/course/photo_detection.h"
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
                                     "SmoothGrad's noise level and sample count swept on the cat's detection (the cat shrunk to half on "
                                     "gray, where the 5x5 head detects it); object masks by "
                                     "GrabCut seeded from the most and least salient pixels, as Simonyan et al. did, of the "
                                     "gradient and of SmoothGrad.", .uses_photo = true});
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
    // SmoothGrad's noise: sigma as a share of the input's range, Delta = x_max - x_min. One
    // sigma for every SmoothGrad map of the lesson (the sweep on the photo aside): the lecture's
    // sigma = Delta/4, 25%.
    const float smooth_sigma = 0.25f;

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
      const Tensor smooth = explain::smoothgrad(model, image, {label}, samples, smooth_sigma, 7);
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
      tiles.push_back(viz::titled(viz::scale_nearest(viz::colorize(smooth_map, viz::Colormap::Viridis), scale),
                                  fmt::format("SmoothGrad, sigma {:.0f}% of range", 100 * smooth_sigma)));
      tiles.push_back(viz::titled(viz::scale_nearest(show_seeds(seeds, 28, 28), scale), "seeds"));
      tiles.push_back(viz::titled(viz::scale_nearest(show_mask(pixels, mask), scale), fmt::format("GrabCut, IoU {:.2f}", iou)));
    }

    lesson.step("All images: input | saliency | SmoothGrad | seeds | GrabCut mask");
    lesson.number("mean IoU of the GrabCut mask with the object (pixel > 0)", mean_iou, "{:.3f}");
    lesson.figure("saliency.png",
                  viz::stack({viz::grid(tiles, 5, 4),
                              viz::color_bar(viz::Colormap::Viridis, 300, "0", "", "max |d score/d pixel| (per map)")}),
                  fmt::format("Rows: test images, titled with the class and its probability. Columns: input; saliency "
                              "max|d score/d pixel|; SmoothGrad (mean over {} noisy copies, noise sigma = {:.0f}% of the "
                              "input's range: sigma / (x_max - x_min) = {:.2f}); "
                              "GrabCut's seeds (red: top 5% of saliency, surely the object; blue: bottom 30%, surely "
                              "background; gray: left to GrabCut), from saliency blurred over {:.0f} pixels; the GrabCut "
                              "mask (outside it dimmed). Intersection over union with the object's pixels (pixel > 0): "
                              "mean {:.2f}, from {:.2f} to {:.2f}. GrabCut keeps what has the colors of the red seeds, "
                              "so where they sit on one shade of a garment of several shades, the mask is that shade.",
                              samples, 100 * smooth_sigma, smooth_sigma, seed_blur, mean_iou, lowest_iou, highest_iou));
    lesson.say("saliency is speckled: neighbouring pixels' gradients differ a lot. SmoothGrad's average over");
    lesson.say("noisy copies keeps what is consistent. Saliency alone is no mask (it is high on some background");
    lesson.say("pixels too); GrabCut uses it only for seeds and lets the image's own colors draw the boundary.");

    lesson.step("The photo through the photo model: the data gradient of one detection, max |g| over R, G, B");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    // A frame-filling object (the shipped cat: the 1x1 head's box over 93% of the photo) is
    // explained on a copy shrunk on gray, where a finer head detects it and a share inside the box
    // or the eyes measures something; the eye boxes move with the shrink.
    const lesson::Photo as_given = lesson.photo();
    const lesson::FramedDetection framed = lesson::detection_inside_frame(photo_model, as_given);
    lesson.say("{}", framed.why());
    const lesson::Photo& photo = framed.photo;
    const models::Detection& detection = photo.detection;
    std::vector<lesson::Box> eye_boxes;
    for (const lesson::Box& e : lesson::kChelseaEyes) eye_boxes.push_back(framed.framed(e, photo_model));
    double eye_area = 0;
    for (const lesson::Box& e : eye_boxes) eye_area += static_cast<double>((e.x1 - e.x0) * (e.y1 - e.y0));
    const double eye_photo_share = eye_area / static_cast<double>(spec.width * spec.height);
    const double eye_box_share = eye_photo_share / std::max(1e-6, static_cast<double>(detection.box.area()));
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
    // The two eye boxes the shares below are measured in, drawn (yellow) on every map.
    const viz::Rgb eye_color{255, 200, 0};
    auto with_eyes = [&](io::Image picture) {
      for (const lesson::Box& e : eye_boxes)
        viz::draw_box(picture, static_cast<float>(e.x0), static_cast<float>(e.y0), static_cast<float>(e.x1), static_cast<float>(e.y1),
                      eye_color, "", 2);
      return picture;
    };
    auto show = [&](const Tensor& g, const std::string& title) {
      return viz::titled(photo.with_box(with_eyes(viz::picture(g, viz::Normalize::Percentile99, viz::Colormap::Gray))), title);
    };
    // Delta = x_max - x_min of the input: SmoothGrad's sigma is a share of it.
    const float x_min = -tg::max(neg(cat)).item(), x_max = tg::max(cat).item(), delta = x_max - x_min;
    // One input unit is 255 * std pixel levels (x = (pixel / 255 - mean) / std).
    const float levels_per_unit = 255.f * spec.std[0];
    lesson.say("the input's range: x_min {:.2f}, x_max {:.2f}, Delta = x_max - x_min = {:.2f} ({:.0f} of 255 pixel levels)", x_min,
               x_max, delta, delta * levels_per_unit);

    lesson.step("SmoothGrad on the detection: the noise level sigma (a fraction of the input's range) and the sample count");
    // How concentrated each map is: the share of its |g| inside two boxes around the eyes
    // (on chelsea.png; on another photo they are just two boxes).
    auto eyes = [&](const Tensor& map) { return lesson::share_in_boxes(map, eye_boxes); };
    const lesson::Box detection_box = framed.found.input_box(photo_model);
    auto in_box = [&](const Tensor& map) { return lesson::share_in_boxes(map, {detection_box}); };
    lesson.say("the two eye boxes are {:.1f}% of the photo and {:.0f}% of the detection's box: a map spread evenly would put that much there",
               100 * eye_photo_share, 100 * eye_box_share);
    const double gradient_eyes = eyes(cat_gradient);
    const double gradient_box = in_box(cat_gradient);
    std::vector<io::Image> sweep = {show(cat_gradient, fmt::format("gradient: eyes {:.0f}%, box {:.0f}%", 100 * gradient_eyes, 100 * gradient_box))};
    const std::vector<float> sigmas = {0.05f, 0.10f, 0.20f, 0.25f};
    const int sweep_samples = lesson.smoke() ? 2 : 25;
    std::vector<double> sigma_eyes, sigma_box;
    start = std::chrono::steady_clock::now();
    int sweep_done = 0;
    const int sweep_total = static_cast<int>(sigmas.size()) * sweep_samples;
    for (float sigma : sigmas) {
      lesson.progress("SmoothGrad samples", sweep_done, sweep_total);
      sweep_done += sweep_samples;
      const Tensor map = explain::smoothgrad(photo_model, cat, target, sweep_samples, sigma, 11);
      sigma_eyes.push_back(eyes(map));
      sigma_box.push_back(in_box(map));
      lesson.say("sigma = {:>2.0f}% of Delta ({:.2f}, {:.0f} pixel levels), {} samples: {:.0f}% of |g| in the eye boxes, {:.0f}% in the box",
                 100 * sigma, sigma * delta, sigma * delta * levels_per_unit, sweep_samples, 100 * sigma_eyes.back(), 100 * sigma_box.back());
      sweep.push_back(show(map, fmt::format("sigma = {:.0f}% of Delta, {} samples: eyes {:.0f}%, box {:.0f}%", 100 * sigma, sweep_samples,
                                            100 * sigma_eyes.back(), 100 * sigma_box.back())));
    }
    lesson.progress("SmoothGrad samples", sweep_total, sweep_total);
    lesson.say("{} noise levels x {} samples: {:.1f} s", sigmas.size(), sweep_samples, seconds_since(start));
    const float sweep_sigma = smooth_sigma;
    const std::vector<int> counts = lesson.smoke() ? std::vector<int>{1, 2} : std::vector<int>{1, 5, 50};
    std::vector<double> count_eyes;
    start = std::chrono::steady_clock::now();
    for (int n : counts) {
      const Tensor map = explain::smoothgrad(photo_model, cat, target, n, sweep_sigma, 11);
      count_eyes.push_back(eyes(map));
      lesson.say("sigma = {:.0f}% of Delta, {:>2} samples: {:.0f}% of |g| in the eye boxes", 100 * sweep_sigma, n, 100 * count_eyes.back());
      sweep.push_back(show(map, fmt::format("sigma = {:.0f}% of Delta, {} sample{}: eyes {:.0f}%", 100 * sweep_sigma, n, n == 1 ? "" : "s",
                                            100 * count_eyes.back())));
    }
    std::string count_list;
    for (int n : counts) count_list += fmt::format("{}{}", count_list.empty() ? "" : ", ", n);
    lesson.say("sigma {:.0f}% with {} samples: {:.1f} s", 100 * sweep_sigma, count_list, seconds_since(start));
    lesson.number("share of |g| in the eye boxes: the gradient", gradient_eyes, "{:.3f}");
    lesson.number("share of |g| in the eye boxes: SmoothGrad, sigma 25%, 25 samples", sigma_eyes[3], "{:.3f}");
    lesson.number("share of |g| in the detection's box: the gradient", gradient_box, "{:.3f}");
    lesson.number("share of |g| in the detection's box: SmoothGrad, sigma 25%, 25 samples", sigma_box[3], "{:.3f}");
    sweep.insert(sweep.begin() + 5, viz::titled(photo.with_box(with_eyes(cat_photo)),
                                                fmt::format("{}: the {} detection; eye boxes yellow", photo.name, photo.target_name)));
    lesson.figure("cat_smoothgrad.png",
                  viz::stack({viz::grid(sweep, 5, 6), viz::color_bar(viz::Colormap::Gray, 300, "0", "",
                                                                     "99th percentile of |g| (per map) and above")}),
                  fmt::format("SmoothGrad of one detection, {} on {} (anchor {}, the {} head, p = {:.2f}; its box drawn): "
                              "max |g| over R, G, B of d logit / d pixels, each map clipped at its own 99th percentile. "
                              "SmoothGrad averages the gradient over copies of the input with Gaussian noise of standard "
                              "deviation sigma, given as a share of the input's range Delta = x_max - x_min = {:.2f} (the "
                              "lecture's sigma = Delta/4 is 25%; 10% of Delta is {:.0f} of 255 pixel levels). {}Each title "
                              "gives the share of the map's |g| inside the two yellow boxes (around the cat's eyes on "
                              "chelsea.png), {:.1f}% of the photo and {:.0f}% of the detection's box: an even map would put "
                              "that much there; then the share inside the detection's box ({:.0f}% of the photo). Top row: the "
                              "plain gradient (eyes {:.0f}%, box {:.0f}%), then sigma = 5, 10, 20 and 25% of Delta with {} "
                              "samples each (eyes {:.0f}, {:.0f}, {:.0f} and {:.0f}%; box {:.0f}, {:.0f}, {:.0f} and {:.0f}%). "
                              "Bottom row: the photo, then sigma = {:.0f}% of Delta with {} samples (eyes {:.0f}% to {:.0f}%). "
                              "The noise level is what concentrates the map; more samples change the share little but "
                              "average the speckle away. Every SmoothGrad map of the lesson outside this sweep uses the "
                              "lecture's sigma = Delta/4 = 25%, measured here no worse than 20% (eyes {:.0f}% against {:.0f}%).",
                              photo.target_name, photo.name, detection.anchor, detection.grid, detection.score, delta, 0.1f * delta * levels_per_unit,
                              framed.scale < 1.f ? "On the photo as it is, " + framed.why() + " (a box over the whole frame "
                                                   "holds any map's whole mass, so a share in it would measure nothing). "
                                                 : std::string(),
                              100 * eye_photo_share, 100 * eye_box_share, 100 * detection.box.area(), 100 * gradient_eyes, 100 * gradient_box,
                              sweep_samples, 100 * sigma_eyes[0], 100 * sigma_eyes[1], 100 * sigma_eyes[2], 100 * sigma_eyes[3],
                              100 * sigma_box[0], 100 * sigma_box[1], 100 * sigma_box[2], 100 * sigma_box[3], 100 * sweep_sigma,
                              count_list, 100 * count_eyes.front(), 100 * count_eyes.back(), 100 * sigma_eyes[3], 100 * sigma_eyes[2]),
                  "Mopuri 10.1: the gradient as saliency, and SmoothGrad");

    lesson.step("GrabCut seeded from the detection's data gradient (top 5% object, bottom 30% background), then from SmoothGrad");
    const float photo_seed_blur = 6.f;  // the map blurred over about 6 pixels first, as at 28x28 (2 pixels)
    // The raw gradient's most and least salient pixels are speckle scattered over the object, so
    // its seeds say little; SmoothGrad's map (the sweep above) is where the object is.
    const float cut_sigma = smooth_sigma;
    const int cut_samples = lesson.smoke() ? 2 : 16;
    std::vector<io::Image> cut_tiles;
    struct Cut {
      std::string name, target;
      segment::BoxCoverage from_gradient, from_smoothgrad;
      double gradient_share = 0, smoothgrad_share = 0;  // of the photo
      double box_share = 0;
      // On a photo shrunk on gray: how much of the pasted photo the SmoothGrad mask covers and how
      // much of the mask lies in it (a mask that is the pasted rectangle found the canvas's edge, not the object).
      std::optional<segment::BoxCoverage> pasted;
    };
    std::vector<Cut> cuts;
    const auto count = [](const std::vector<uint8_t>& m) {
      return static_cast<double>(std::count(m.begin(), m.end(), 1)) / static_cast<double>(m.size());
    };
    const std::vector<lesson::Photo> cut_photos = {photo, lesson.photo("assets/coffee.png", "Coffee cup")};
    for (const lesson::Photo& p : cut_photos) {
      const io::Image seen = preprocess::input_to_image(p.input, spec);  // 300x300, as the model saw it
      const explain::Target t = explain::Target::of_detections({p.target}, {p.detection.anchor});
      const bool on_gray = &p == &cut_photos.front() && framed.scale < 1.f;
      const segment::Rect box{static_cast<int>(std::lround(p.detection.box.x0 * seen.width)),
                              static_cast<int>(std::lround(p.detection.box.y0 * seen.height)),
                              static_cast<int>(std::lround(p.detection.box.x1 * seen.width)),
                              static_cast<int>(std::lround(p.detection.box.y1 * seen.height))};
      // Seeds (top 5% object, bottom 30% background) from a map blurred over 6 pixels, then GrabCut.
      auto cut_from = [&](const Tensor& gradient) {
        const Tensor map = viz::normalize(gradient, viz::Normalize::MaxAbs);
        std::vector<uint8_t> seeds =
            segment::seeds_from_saliency(explain::gaussian_blur(map, photo_seed_blur), object_quantile, background_quantile);
        std::vector<uint8_t> mask = segment::grabcut(seen, seeds, 5);
        return std::make_pair(seeds, mask);
      };
      const Tensor gradient = explain::saliency(photo_model, p.input, t);
      start = std::chrono::steady_clock::now();
      const Tensor smooth = explain::smoothgrad(photo_model, p.input, t, cut_samples, cut_sigma, 5);
      const double smooth_seconds = seconds_since(start);
      const auto [gradient_seeds, gradient_mask] = cut_from(gradient);
      const auto [smooth_seeds, smooth_mask] = cut_from(smooth);
      Cut cut{.name = p.name,
              .target = p.target_name,
              .from_gradient = segment::box_coverage(gradient_mask, seen.width, seen.height, box),
              .from_smoothgrad = segment::box_coverage(smooth_mask, seen.width, seen.height, box),
              .gradient_share = count(gradient_mask),
              .smoothgrad_share = count(smooth_mask),
              .box_share = static_cast<double>(p.detection.box.area())};
      lesson.say("{} ({} detection, box {:.0f}% of the photo); SmoothGrad of {} samples {:.1f} s:", p.name, p.target_name,
                 100 * cut.box_share, cut_samples, smooth_seconds);
      lesson.say("  seeds from the gradient:   the mask is {:.0f}% of the photo, covers {:.0f}% of the box, {:.0f}% of it inside",
                 100 * cut.gradient_share, 100 * cut.from_gradient.box_covered, 100 * cut.from_gradient.mask_inside);
      lesson.say("  seeds from SmoothGrad:     the mask is {:.0f}% of the photo, covers {:.0f}% of the box, {:.0f}% of it inside",
                 100 * cut.smoothgrad_share, 100 * cut.from_smoothgrad.box_covered, 100 * cut.from_smoothgrad.mask_inside);
      if (on_gray) {
        const lesson::Box r = framed.framed({0, 0, spec.width, spec.height}, photo_model);
        cut.pasted = segment::box_coverage(smooth_mask, seen.width, seen.height,
                                           {static_cast<int>(r.x0), static_cast<int>(r.y0), static_cast<int>(r.x1), static_cast<int>(r.y1)});
        lesson.say("  the SmoothGrad mask covers {:.0f}% of the pasted photo and {:.0f}% of it lies there: GrabCut cut the flat gray "
                   "canvas from the photo", 100 * cut.pasted->box_covered, 100 * cut.pasted->mask_inside);
      }
      cuts.push_back(cut);
      auto coverage = [](double share, const segment::BoxCoverage& c) {
        return fmt::format("{:.0f}% of photo, {:.0f}% of box", 100 * share, 100 * c.box_covered);
      };
      cut_tiles.push_back(viz::titled(p.with_box(seen), fmt::format("{}: {} {:.2f}", p.name, p.target_name, p.detection.score)));
      cut_tiles.push_back(viz::titled(p.with_box(viz::picture(gradient, viz::Normalize::Percentile99, viz::Colormap::Viridis)),
                                      fmt::format("gradient, max |d logit({})/d pixel|", p.target_name)));
      cut_tiles.push_back(viz::titled(p.with_box(show_mask(seen, gradient_mask)),
                                      "GrabCut from its seeds: " + coverage(cut.gradient_share, cut.from_gradient)));
      cut_tiles.push_back(viz::titled(p.with_box(viz::picture(smooth, viz::Normalize::Percentile99, viz::Colormap::Viridis)),
                                      fmt::format("SmoothGrad, sigma {:.0f}% of Delta, {} samples", 100 * cut_sigma, cut_samples)));
      cut_tiles.push_back(viz::titled(p.at_own_aspect(show_seeds(smooth_seeds, seen.width, seen.height)), "its seeds"));
      cut_tiles.push_back(viz::titled(p.with_box(show_mask(seen, smooth_mask)),
                                      "GrabCut from them: " + coverage(cut.smoothgrad_share, cut.from_smoothgrad)));
    }
    for (const Cut& c : cuts) {
      lesson.number("GrabCut on " + c.name + ", gradient seeds: share of the box in the mask", c.from_gradient.box_covered, "{:.2f}");
      lesson.number("GrabCut on " + c.name + ", SmoothGrad seeds: share of the box in the mask", c.from_smoothgrad.box_covered, "{:.2f}");
      lesson.number("GrabCut on " + c.name + ", SmoothGrad seeds: share of the mask in the box", c.from_smoothgrad.mask_inside, "{:.2f}");
    }
    std::string cut_words;
    for (const Cut& c : cuts)
      cut_words += fmt::format(" {} ({} box {:.0f}% of the photo): from the gradient's seeds the mask is {:.0f}% of the photo "
                               "and covers {:.0f}% of the box; from SmoothGrad's, {:.0f}% of the photo, {:.0f}% of the box, "
                               "{:.0f}% of the mask inside it.",
                               c.name, c.target, 100 * c.box_share, 100 * c.gradient_share, 100 * c.from_gradient.box_covered,
                               100 * c.smoothgrad_share, 100 * c.from_smoothgrad.box_covered, 100 * c.from_smoothgrad.mask_inside) +
                   (c.pasted ? fmt::format(" That mask covers {:.0f}% of the photo pasted on the gray canvas and {:.0f}% of it "
                                           "lies there: a flat canvas is the easiest cut GrabCut can make, so on a shrunk photo "
                                           "the box coverage measures where the canvas ends, not what the saliency found.",
                                           100 * c.pasted->box_covered, 100 * c.pasted->mask_inside)
                             : std::string());
    const bool shipped = as_given.name == "chelsea.png" && photo.target_name == "Cat";
    lesson.figure("photo_grabcut.png",
                  viz::stack({viz::grid(cut_tiles, 6, 6),
                              viz::color_bar(viz::Colormap::Viridis, 300, "0", "", "99th percentile of |g| (per map) and above")}),
                  fmt::format("Simonyan et al.'s segmentation (lecture 39) for one detection per photo, its box drawn. "
                              "Columns: the photo; the detection's data gradient, max |g| over R, G, B, clipped at its 99th "
                              "percentile; GrabCut's mask from its seeds (outside the mask dimmed over blue); SmoothGrad "
                              "of the same detection (sigma {:.0f}% of the input's range Delta, {} samples); its seeds, "
                              "from the map blurred over {:.0f} pixels (red: its top 5%, surely the object; blue: bottom "
                              "30%, surely background; gray: left to GrabCut); GrabCut's mask from them. Titles: the share "
                              "of the photo in the mask and the share of the box it covers.{} The raw gradient's top and "
                              "bottom pixels are speckle scattered over object and background alike, so GrabCut grows its "
                              "mask from a few sensitive spots; SmoothGrad's are where the object is, and GrabCut grows the "
                              "object from them by color.{}",
                              100 * cut_sigma, cut_samples, photo_seed_blur, cut_words,
                              shipped ? " On the cat (shrunk on gray: as it is, its box is the whole photo) both masks "
                                        "are the whole pasted photo, the pink background and the chest included: the "
                                        "saliency seeds the object on the face, its background on the canvas, and GrabCut "
                                        "takes the photo's rectangle. On the coffee cup the gradient's mask is the rim, "
                                        "the coffee and a slab of table; SmoothGrad's is the cup on its saucer, with the "
                                        "handle and the spoon (the saucer reaches beyond the cup's box, so part of the "
                                        "mask lies outside it)."
                                      : ""),
                  "Balasubramanian 39 (c): the data gradient, max |g| over RGB, and a GrabCut mask from it");
  });
}
