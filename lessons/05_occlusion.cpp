// Lesson 5: occlusion -- hide part of the image and watch the probability.
//
// The most direct question: if this patch were not there, would the model still
// recognize the object? Slide a square over the image -- black on Fashion-MNIST, whose
// background is black -- and record how much the true class's probability drops (Zeiler &
// Fergus 2014). Then the lecture's version: a 32x32 gray patch (then larger) over
// photos, through the photo model -- a detector, so what we occlude is one detection: its
// anchor's probability, not the best of its 1,917 anchors. No gradients, only forward passes.

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/course/photo_detection.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "05_occlusion", .title = "Occlusion sensitivity",
                                     .summary = "A 6x6 black square slid over test images (stride 2), then gray patches of "
                                     "32, 64 and 100 pixels over the coffee cup and the cat photo, explaining one detection "
                                     "(its anchor's p), against max over anchors; the heat map is the drop when the patch "
                                     "covers each pixel.", .uses_photo = true});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const std::vector<int64_t> picks = lesson.smoke() ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 1, 2, 4, 9, 18};
    const int64_t window = 6, stride = 2;
    const float black = -data::kFashionMean / data::kFashionStd;  // pixel value 0 after normalization

    lesson.step(fmt::format("Window {0}x{0}, stride {1}: {2} positions per image, each one forward pass", window, stride,
                            ((28 + stride - 1) / stride) * ((28 + stride - 1) / stride)));
    const int scale = 6;
    std::vector<io::Image> tiles;
    int blank = 0;
    for (int64_t index : picks) {
      const int64_t label = sample.labels[index];
      const std::string name = data::kFashionClasses[label];
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      const Tensor map = explain::occlusion(model, image, {label}, window, stride, black);
      const Tensor score_map = explain::occlusion(model, image, {label}, window, stride, black, explain::OcclusionMeasure::Score);
      const Tensor logits = explain::scores(model, image);
      const float p = softmax(logits, 1).at({0, label});
      // How far the class leads the runner-up, in score: p stays near 1 until a square
      // takes most of that lead away.
      float runner_up = -1e30f;
      for (int64_t c = 0; c < 10; ++c)
        if (c != label) runner_up = std::max(runner_up, logits.at({0, c}));
      const float lead = logits.at({0, label}) - runner_up;
      const float biggest = tg::max(map).item(), biggest_score = tg::max(score_map).item();
      blank += biggest < 0.01f;
      lesson.say("image {:>2} ({:<11}): p = {:.4f}, score lead {:5.1f}; covering drops p by up to {:.4f}, the score by up to {:.1f}",
                 index, name, p, lead, biggest, biggest_score);
      const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
      // The probability drop on a fixed scale for every image: a drop of 1 (certain ->
      // impossible) is full red, so a prediction that no square can shake stays white.
      const Tensor unit = reshape(map, {1, 28, 28}) * 0.5f + 0.5f;
      const io::Image heat = viz::scale_nearest(viz::colorize(unit, viz::Colormap::Diverging), scale);
      // The score drop, each map on its own symmetric scale.
      const io::Image score_heat = viz::picture(reshape(score_map, {1, 28, 28}), viz::Normalize::Signed,
                                                viz::Colormap::Diverging, scale);
      tiles.push_back(viz::titled(input, fmt::format("{}: p {:.4f}", name, p), 12));
      tiles.push_back(viz::titled(heat, fmt::format("p drop, max {:.4f}", biggest), 12));
      tiles.push_back(viz::titled(score_heat, fmt::format("score drop, max {:.1f}", biggest_score), 12));
      tiles.push_back(viz::titled(viz::overlay(input, score_heat, 0.5f), fmt::format("score lead {:.1f}", lead), 12));
    }
    lesson.figure("occlusion.png",
                  viz::stack({viz::grid(tiles, 4, 4),
                              viz::color_bar(viz::Colormap::Diverging, 300, "covering helps", "no effect", "covering hurts")}),
                  fmt::format("Rows: test images. Columns: the input with p(true class); the drop in that probability when "
                              "a 6x6 black square covers the pixel, on one scale for all images (full red: a drop of 1); "
                              "the drop in the class score (logit), each map on its own scale (red: covering hurts, blue: "
                              "it helps); that map over the input, titled with how far the class's score leads the "
                              "runner-up. A pixel's value is the mean drop over the squares that cover it. {} of the {} "
                              "probability maps are blank (no pixel reaches a drop of 0.01): the class "
                              "leads by so much that p stays 1.0000 even when a square takes away part of the lead. The "
                              "score maps show where the evidence is in every image.",
                              blank, picks.size()));
    lesson.say("a probability map can be blank although the model uses the pixels: p = softmax saturates. The");
    lesson.say("score drop does not saturate, so it shows where the evidence is even for a certain prediction.");

    // The lecture's version: a gray patch over a photo, through the photo model. The photo model
    // is a detector, so the target is ONE detection: its anchor's class probability (a sigmoid).
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const float gray = (0.5f - spec.mean[0]) / spec.std[0];  // pixel 127.5 after the model's normalization
    struct Patch {
      int64_t window, stride;
    };
    // The lecture's 32x32 (stride 32: each pixel in one window, so the map is the window's drop),
    // then larger patches at half their size's stride.
    const std::vector<Patch> patches =
        lesson.smoke() ? std::vector<Patch>{{100, 100}} : std::vector<Patch>{{32, 32}, {64, 32}, {100, 50}};
    struct Measured {
      Patch patch;
      Tensor detection, best_anchor;  // [1,1,H,W] drops; best_anchor undefined when not measured
    };
    // Occlusion of the photo's detection for every patch size, and of "max over anchors" when asked.
    auto sweep = [&](const lesson::Photo& photo, const lesson::PhotoDetection& found, bool with_best_anchor) {
      std::vector<Measured> out;
      int64_t windows = 0;
      for (const Patch& patch : patches) {
        const int64_t n = ((spec.height + patch.stride - 1) / patch.stride) * ((spec.width + patch.stride - 1) / patch.stride);
        windows += n * (with_best_anchor ? 2 : 1);
        Measured m{.patch = patch, .detection = explain::occlusion(photo_model, photo.input, found.target(), patch.window,
                                                                    patch.stride, gray)};
        if (with_best_anchor)
          m.best_anchor = explain::occlusion(photo_model, photo.input, explain::Target::of_classes({found.detection.class_index}),
                                             patch.window, patch.stride, gray);
        out.push_back(m);
      }
      lesson.say("{} occluded copies of {}, 8 to a forward pass", windows, photo.name);
      return out;
    };
    auto share_of_drop_in_box = [](const Tensor& map, const lesson::Box& box) { return lesson::share_in_boxes(relu(map), {box}); };
    auto percent_raised = [](const Tensor& map) {
      int64_t raised = 0;
      for (int64_t i = 0; i < map.numel(); ++i) raised += map.data()[i] < 0.f;
      return 100.0 * static_cast<double>(raised) / static_cast<double>(map.numel());
    };
    // One row per patch size: the photo with the box and the patch drawn to scale, then each map
    // over the photo, on one symmetric scale for the whole figure.
    auto occlusion_figure = [&](const lesson::Photo& photo, const lesson::PhotoDetection& found,
                                const std::vector<Measured>& measured, float scale) {
      const io::Image picture = preprocess::input_to_image(photo.input, spec);
      auto heat = [&](const Tensor& map) {
        const Tensor unit = clamp(reshape(map, {1, spec.height, spec.width}) * (0.5f / scale) + 0.5f, 0.f, 1.f);
        return photo.at_own_aspect(lesson::with_box(viz::overlay(picture, viz::colorize(unit, viz::Colormap::Diverging), 0.8f), found));
      };
      std::vector<io::Image> tiles;
      for (const Measured& m : measured) {
        io::Image shown = lesson::with_box(picture, found);
        viz::draw_box(shown, 4.f, spec.height - 4.f - m.patch.window, 4.f + m.patch.window, spec.height - 4.f, {128, 128, 128},
                      "", m.patch.window);  // the patch, to scale, bottom-left
        tiles.push_back(viz::titled(photo.at_own_aspect(shown), fmt::format("{0}x{0} input-pixel patch (bottom left), stride {1}",
                                                                             m.patch.window, m.patch.stride)));
        tiles.push_back(viz::titled(heat(m.detection), fmt::format("drop in the detection's p: largest {:.3f}, {:.0f}% in box",
                                                                   tg::max(m.detection).item(),
                                                                   100 * share_of_drop_in_box(m.detection, found.input_box(photo_model)))));
        if (m.best_anchor.defined())
          tiles.push_back(viz::titled(heat(m.best_anchor), fmt::format("drop in max over anchors: largest {:.3f}", tg::max(m.best_anchor).item())));
      }
      const int columns = measured.front().best_anchor.defined() ? 3 : 2;
      return viz::stack({viz::grid(tiles, columns, 4),
                         viz::color_bar(viz::Colormap::Diverging, 420, fmt::format("-{:.2f}: covering raises p", scale), "0: no effect",
                                        fmt::format("+{:.2f}: covering lowers p", scale))});
    };
    auto largest_magnitude = [](const std::vector<Measured>& measured) {
      float top = 1e-6f;
      for (const Measured& m : measured)
        for (const Tensor* t : {&m.detection, &m.best_anchor})
          if (t->defined()) top = std::max({top, tg::max(*t).item(), tg::max(neg(*t)).item()});
      return top;
    };
    auto report = [&](const lesson::Photo& photo, const lesson::PhotoDetection& found, const std::vector<Measured>& measured) {
      const std::string who = photo.name + " " + found.detection.label;
      std::string words;
      for (const Measured& m : measured) {
        const float drop = tg::max(m.detection).item();
        const double share = share_of_drop_in_box(m.detection, found.input_box(photo_model));
        lesson.say("{0}x{0} patch: covering raises the detection's p on {1:.0f}% of the pixels", m.patch.window,
                   percent_raised(m.detection));
        lesson.number(fmt::format("{}: largest drop of the detection's p (mean over a pixel's windows), {}x{} patch", who, m.patch.window, m.patch.window), drop, "{:.3f}");
        lesson.number(fmt::format("{}: share of that drop inside the box, {}x{} patch", who, m.patch.window, m.patch.window), share, "{:.2f}");
        if (m.best_anchor.defined())
          lesson.number(fmt::format("{}: largest drop of max over anchors, {}x{} patch", who, m.patch.window, m.patch.window),
                        tg::max(m.best_anchor).item(), "{:.3f}");
        const std::string drop_words = drop > 0 ? fmt::format("{:.3f} ({:.0f}% in the box", drop, 100 * share)
                                                : fmt::format("no pixel's drop is positive (covering raises p by at least {:.3f}", -drop);
        words += fmt::format("{}{}x{}: {}{})", words.empty() ? "" : "; ", m.patch.window, m.patch.window, drop_words,
                             m.best_anchor.defined() ? fmt::format("; max over anchors {:.3f}", tg::max(m.best_anchor).item()) : "");
      }
      return words;
    };
    const std::string reading =
        "Each pixel shows the drop in p when a gray patch covers it (the mean over the windows that covered it), "
        "over the photo at its own aspect ratio (the model sees it stretched to 300x300, so a square patch of "
        "input pixels is drawn as a rectangle), on one symmetric scale for the figure: red, covering lowers p; "
        "blue, covering raises it; white, no effect.";

    lesson.step("Occlude ONE detection: the coffee cup, which fills a third of the photo");
    const lesson::Photo coffee = lesson.photo("assets/coffee.png", "Coffee cup");
    const lesson::PhotoDetection cup = lesson::photo_detection(photo_model, coffee);
    lesson.say("{}", cup.describe());
    const std::vector<Measured> cup_maps = sweep(coffee, cup, true);
    const std::string cup_words = report(coffee, cup, cup_maps);
    lesson.say("max over anchors moves less: it reads whichever anchor scores the class best, so when the patch hides");
    lesson.say("this detection's evidence another anchor can still score it, and the drop is hidden.");
    lesson.figure("coffee_occlusion.png", occlusion_figure(coffee, cup, cup_maps, largest_magnitude(cup_maps)),
                  fmt::format("Occlusion of one detection, {}. Rows: the lecture's 32x32 patch, then larger ones (the "
                              "patch drawn to scale at the bottom left). Middle: the drop in this detection's p (its "
                              "anchor's sigmoid); right: the drop in p(Coffee cup) read as the max over all 1,917 "
                              "anchors. {} Largest drop of the detection at a pixel: {}. Max over anchors moves less: it reads "
                              "whichever anchor scores Coffee cup best, so when the patch hides this detection's "
                              "evidence another anchor can still score the class, and the drop is hidden.",
                              cup.describe(), reading, cup_words),
                  "Mopuri 10.1: occlusion sensitivity of one detection, 32x32 then larger gray patches, against max over anchors");

    const lesson::Photo photo = lesson.photo();
    lesson.step(fmt::format("The lesson's photo (--image, --target): {} on {} (the shipped cat fills the frame)",
                            photo.target_name, photo.name));
    const lesson::PhotoDetection found = lesson::photo_detection(photo_model, photo);
    lesson.say("{}", found.describe());
    const std::vector<Measured> photo_maps = sweep(photo, found, false);
    const std::string photo_words = report(photo, found, photo_maps);
    const lesson::Box box = found.input_box(photo_model);
    const double box_share = static_cast<double>((box.x1 - box.x0) * (box.y1 - box.y0)) / static_cast<double>(spec.height * spec.width);
    lesson.say("its box is {:.0f}% of the photo; a 32x32 patch hides {:.1f}% of the box", 100 * box_share,
               100.0 * 32 * 32 / std::max<double>(1.0, static_cast<double>((box.x1 - box.x0) * (box.y1 - box.y0))));
    const bool whole_photo = box_share > 0.8;
    const Measured* strongest = &photo_maps.front();
    for (const Measured& m : photo_maps)
      if (tg::max(m.detection).item() > tg::max(strongest->detection).item()) strongest = &m;
    lesson.figure("photo_occlusion.png", occlusion_figure(photo, found, photo_maps, largest_magnitude(photo_maps)),
                  fmt::format("Occlusion of the detection {} on {}, patch sizes as in the coffee cup's figure. {} Largest "
                              "drop: {}.{}",
                              found.describe(), photo.name, reading, photo_words,
                              whole_photo ? fmt::format(" The box is {:.0f}% of the photo: a frame-filling object is "
                                                        "detected by the {} head, whose one box spans the photo: "
                                                        "its evidence comes from everywhere, so a {}x{} patch "
                                                        "(1% of the photo) removes little of it and raises p on "
                                                        "{:.0f}% of the pixels. The drop is largest with the {}x{} patch.",
                                                        100 * box_share, found.detection.grid, photo_maps.front().patch.window,
                                                        photo_maps.front().patch.window, percent_raised(photo_maps.front().detection),
                                                        strongest->patch.window, strongest->patch.window)
                                          : ""),
                  "Mopuri 10.1: occlusion sensitivity on the cat (a frame-filling detection resists small patches)");
  });
}
