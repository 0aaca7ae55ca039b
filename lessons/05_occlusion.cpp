// Lesson 5: occlusion -- hide part of the image and watch the probability.
//
// The most direct question: if this patch were not there, would the model still
// recognize the object? Slide a square over the image -- black on Fashion-MNIST, whose
// background is black -- and record how much the true class's probability drops (Zeiler &
// Fergus 2014). Then the lecture's version: a 32x32 gray patch (then larger) over
// photos, through the photo model -- a detector, so what we occlude is one detection: its
// anchor's probability, not the best of its 1,917 anchors. No gradients, only forward passes.

#include <algorithm>

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
                                     "32, 64 and 100 pixels (strides 16, 32 and 50) over the coffee cup and the cat photo (as it is, and shrunk to half "
                                     "on gray so that a finer head detects it), explaining one detection (its anchor's p), "
                                     "against max over anchors; the heat map is the drop when the patch "
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
    // First every map, then the figure: the score maps share one symmetric scale (the largest
    // |score drop| of any image), so one color bar with numbers serves the whole column.
    struct Shown {
      std::string name;
      Tensor image, map, score_map;
      float p = 0, lead = 0, biggest = 0, biggest_score = 0;
    };
    std::vector<Shown> fashion_maps;
    int blank = 0;
    float score_scale = 1e-6f;
    for (int64_t index : picks) {
      const int64_t label = sample.labels[index];
      Shown s{.name = data::kFashionClasses[label], .image = data::normalize_pixels(sample.pixels.data() + index * 784)};
      s.map = explain::occlusion(model, s.image, {label}, window, stride, black);
      s.score_map = explain::occlusion(model, s.image, {label}, window, stride, black, explain::OcclusionMeasure::Score);
      const Tensor logits = explain::scores(model, s.image);
      s.p = softmax(logits, 1).at({0, label});
      // How far the class leads the runner-up, in score: p stays near 1 until a square
      // takes most of that lead away.
      float runner_up = -1e30f;
      for (int64_t c = 0; c < 10; ++c)
        if (c != label) runner_up = std::max(runner_up, logits.at({0, c}));
      s.lead = logits.at({0, label}) - runner_up;
      s.biggest = tg::max(s.map).item();
      s.biggest_score = tg::max(s.score_map).item();
      score_scale = std::max({score_scale, s.biggest_score, tg::max(neg(s.score_map)).item()});
      blank += s.biggest < 0.01f;
      lesson.say("image {:>2} ({:<11}): p = {:.4f}, score lead {:5.1f}; covering drops p by up to {:.4f}, the score by up to {:.1f}",
                 index, s.name, s.p, s.lead, s.biggest, s.biggest_score);
      fashion_maps.push_back(s);
    }
    lesson.say("the score maps' common scale: +-{:.1f}", score_scale);
    std::vector<io::Image> tiles;
    for (const Shown& s : fashion_maps) {
      const io::Image input = viz::picture(s.image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
      // The probability drop on a fixed scale for every image: a drop of 1 (certain ->
      // impossible) is full red, so a prediction that no square can shake stays white.
      const Tensor unit = reshape(s.map, {1, 28, 28}) * 0.5f + 0.5f;
      const io::Image heat = viz::scale_nearest(viz::colorize(unit, viz::Colormap::Diverging), scale);
      // The score drop on the column's common symmetric scale.
      const Tensor score_unit = clamp(reshape(s.score_map, {1, 28, 28}) * (0.5f / score_scale) + 0.5f, 0.f, 1.f);
      const io::Image score_heat = viz::scale_nearest(viz::colorize(score_unit, viz::Colormap::Diverging), scale);
      tiles.push_back(viz::titled(input, fmt::format("{}: p {:.4f}", s.name, s.p), 12));
      tiles.push_back(viz::titled(heat, fmt::format("p drop, max {:.4f}", s.biggest), 12));
      tiles.push_back(viz::titled(score_heat, fmt::format("score drop, max {:.1f}", s.biggest_score), 12));
      // The same map tinted over the image in gray (untinted where covering changes nothing).
      const io::Image over = lesson::heat_over(viz::picture(s.image, viz::Normalize::MinMax, viz::Colormap::Gray), score_unit,
                                               viz::Colormap::Diverging, 0.5f);
      tiles.push_back(viz::titled(viz::titled(viz::scale_nearest(over, scale), fmt::format("its score leads by {:.1f}", s.lead), 12),
                                  "score drop on the image", 12));
    }
    // One color bar per column, with its values.
    const int bar_width = 28 * scale;
    std::vector<io::Image> bars;
    bars.push_back(viz::titled(viz::color_bar(viz::Colormap::Gray, bar_width, "0", "", "255"), "pixel value", 12));
    bars.push_back(viz::titled(viz::color_bar(viz::Colormap::Diverging, bar_width, "-1", "0", "+1"), "drop of p (red: hurts)", 12));
    const std::string low = fmt::format("-{:.1f}", score_scale), high = fmt::format("+{:.1f}", score_scale);
    bars.push_back(viz::titled(viz::color_bar(viz::Colormap::Diverging, bar_width, low, "0", high), "drop of the score", 12));
    bars.push_back(viz::titled(viz::color_bar(viz::Colormap::Diverging, bar_width, low, "0", high), "the same, over the image", 12));
    lesson.figure("occlusion.png",
                  viz::stack({viz::grid(tiles, 4, 4), viz::grid(bars, 4, 4)}),
                  fmt::format("Rows: test images. Columns: the input with p(true class); the drop in that probability when "
                              "a 6x6 black square covers the pixel, on one scale for all images (full red: a drop of 1); "
                              "the drop in the class score (logit), on one symmetric scale for all images, +-{:.1f} (red: "
                              "covering hurts, blue: it helps); that map tinted over the input (in gray), titled with how far the class's score "
                              "leads the next class's score. Under each column its color bar with the values its ends stand for. A pixel's value is the mean drop over the squares that cover it. {} of the {} "
                              "probability maps are blank (no pixel reaches a drop of 0.01): the class "
                              "leads by so much that p stays 1.0000 even when a square takes away part of the lead. The "
                              "score maps show where the evidence is in every image.",
                              score_scale, blank, picks.size()));
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
    // The lecture's 32x32 at stride 16 (each pixel under 4 windows: a map finer than the patch),
    // then larger patches at half their size's stride. (The 64 pixel patch at stride 16 too
    // took the lesson from about 60 to 87 s of CPU.)
    const std::vector<Patch> patches =
        lesson.smoke() ? std::vector<Patch>{{100, 100}} : std::vector<Patch>{{32, 16}, {64, 32}, {100, 50}};
    // One column of an occlusion figure: the drop of one target's p on one photo, for every patch size.
    struct Column {
      const lesson::Photo* photo;
      lesson::PhotoDetection found;  // the box drawn and measured against
      std::string title;             // what is occluded, in a few words (tile titles)
      std::string who;               // the same for the printed numbers, with the photo's name
      std::vector<Tensor> maps;      // one [1,1,H,W] drop map per patch
      std::vector<lesson::Box> marks;  // boxes a share is measured in (the cat's eyes), drawn in yellow
    };
    auto measure = [&](const lesson::Photo& photo, const lesson::PhotoDetection& found, const explain::Target& target,
                       const std::string& title, const std::string& who) {
      Column column{.photo = &photo, .found = found, .title = title, .who = who, .maps = {}};
      int64_t windows = 0;
      for (const Patch& patch : patches) {
        windows += ((spec.height + patch.stride - 1) / patch.stride) * ((spec.width + patch.stride - 1) / patch.stride);
        column.maps.push_back(explain::occlusion(photo_model, photo.input, target, patch.window, patch.stride, gray));
      }
      lesson.say("{}: {} occluded copies, 8 to a forward pass", who, windows);
      return column;
    };
    auto largest = [](const Tensor& map) { return tg::max(map).item(); };
    auto share_in_box = [&](const Column& c, size_t k) { return lesson::share_in_boxes(relu(c.maps[k]), {c.found.input_box(photo_model)}); };
    // A map's largest drop in words; when no window lowers p at all, that is what it says.
    auto drop_words = [&](const Column& c, size_t k) {
      const float drop = largest(c.maps[k]);
      return drop > 0 ? fmt::format("largest drop {:.3f}, {:.0f}% of the drop in the box", drop, 100 * share_in_box(c, k))
                      : fmt::format("no drop: covering raises p everywhere, by {:.3f} at least", -drop);
    };
    auto percent_raised = [](const Tensor& map) {
      int64_t raised = 0;
      for (int64_t i = 0; i < map.numel(); ++i) raised += map.data()[i] < 0.f;
      return 100.0 * static_cast<double>(raised) / static_cast<double>(map.numel());
    };
    // One block per patch size: its columns' maps over their photos, then the block's color bar.
    // Each block has its own symmetric scale (the largest |drop| in the block), so the 32x32 maps
    // are as readable as the 100x100 ones; the titles and the bars give the magnitudes.
    auto occlusion_figure = [&](const std::vector<Column>& columns) {
      std::vector<io::Image> blocks;
      for (size_t k = 0; k < patches.size(); ++k) {
        float bar = 1e-6f;
        for (const Column& c : columns) bar = std::max({bar, largest(c.maps[k]), largest(neg(c.maps[k]))});
        std::vector<io::Image> row;
        for (const Column& c : columns) {
          const Tensor unit = clamp(reshape(c.maps[k], {1, spec.height, spec.width}) * (0.5f / bar) + 0.5f, 0.f, 1.f);
          io::Image shown = lesson::heat_over(preprocess::input_to_image(c.photo->input, spec), unit, viz::Colormap::Diverging, 0.5f);
          const float w = static_cast<float>(patches[k].window), bottom = static_cast<float>(spec.height) - 4.f;
          viz::draw_box(shown, 4.f, bottom - w, 4.f + w, bottom, {40, 40, 40}, "", 2);  // the patch, to scale
          for (const lesson::Box& m : c.marks)
            viz::draw_box(shown, static_cast<float>(m.x0), static_cast<float>(m.y0), static_cast<float>(m.x1), static_cast<float>(m.y1),
                          {255, 200, 0}, "", 2);
          row.push_back(viz::titled(c.photo->at_own_aspect(lesson::with_box(shown, c.found)),
                                      fmt::format("{}: {}", c.title, drop_words(c, k))));
        }
        blocks.push_back(viz::titled(viz::grid(row, static_cast<int>(row.size()), 6),
                                     fmt::format("{0}x{0} gray patch (its outline at the bottom left), stride {1}",
                                                 patches[k].window, patches[k].stride), 16));
        blocks.push_back(viz::color_bar(viz::Colormap::Diverging, 600, fmt::format("-{:.3f}: covering raises p", bar),
                                        "0: no effect (the gray photo shows)", fmt::format("+{:.3f}: covering lowers p", bar)));
      }
      return viz::stack(blocks, 10);
    };
    auto report = [&](const Column& c) {
      const std::string& who = c.who;
      std::string words;
      for (size_t k = 0; k < patches.size(); ++k) {
        const std::string size = fmt::format("{0}x{0}", patches[k].window);
        const float drop = largest(c.maps[k]);
        lesson.say("{} patch, {}: {}; covering raises p on {:.0f}% of the pixels", size, who, drop_words(c, k),
                   percent_raised(c.maps[k]));
        lesson.number(fmt::format("{}: largest drop of p, {} patch", who, size), drop, "{:.3f}");
        lesson.number(fmt::format("{}: share of the drop inside the box, {} patch", who, size), share_in_box(c, k), "{:.2f}");
        words += fmt::format("{}{} {}", words.empty() ? "" : "; ", size, drop_words(c, k));
      }
      return words;
    };
    // The largest drop against the patch's side, one line per column: the trade-off in one picture.
    std::vector<viz::Series> drop_lines;
    auto add_line = [&](const Column& c, const std::string& label) {
      viz::Series line{.label = label, .x = {}, .y = {}};
      for (size_t k = 0; k < patches.size(); ++k) {
        line.x.push_back(static_cast<double>(patches[k].window));
        line.y.push_back(largest(c.maps[k]));
      }
      drop_lines.push_back(line);
    };
    std::string strides;
    for (const Patch& patch : patches)
      strides += fmt::format("{}{}x{} at stride {}", strides.empty() ? "" : ", ", patch.window, patch.window, patch.stride);
    const std::string reading =
        "Patches: " + strides + " (half the patch: each pixel lies under about 4 windows, so the map is finer than the patch). "
        "Each pixel shows the drop in p when a gray patch covers it (the mean over the windows that covered it), "
        "tinted over the photo (in gray, so the colours are the map's) at its own aspect ratio (the model sees it stretched to 300x300, so a square patch "
        "of input pixels is drawn as a rectangle): red, covering lowers p; blue, covering raises it; where the "
        "gray photo shows untinted, covering it changes nothing. Each patch size has its own symmetric color bar.";

    lesson.step("Occlude ONE detection: the coffee cup, whose box is a third of the photo");
    const lesson::Photo coffee = lesson.photo("assets/coffee.png", "Coffee cup");
    const lesson::PhotoDetection cup = lesson::photo_detection(photo_model, coffee);
    lesson.say("{}", cup.describe());
    const Column cup_detection = measure(coffee, cup, cup.target(), "this detection's p", "coffee.png, the detection");
    const Column cup_any = measure(coffee, cup, explain::Target::of_classes({cup.detection.class_index}),
                                   fmt::format("max over anchors of p({})", cup.detection.label), "coffee.png, max over anchors");
    const std::string cup_words = report(cup_detection);
    const std::string cup_any_words = report(cup_any);
    add_line(cup_detection, fmt::format("{}: the detection", cup.detection.label));
    add_line(cup_any, fmt::format("{}: max over anchors", cup.detection.label));
    lesson.say("the trade-off: a small patch localizes finely but hides little of the cup's evidence, so p moves little;");
    lesson.say("a large patch moves p most but blurs the map over its own size.");
    lesson.say("max over anchors moves less: it reads whichever anchor scores the class best, so when the patch hides");
    lesson.say("this detection's evidence another anchor can still score it, and the drop is hidden.");
    lesson.figure("coffee_occlusion.png", occlusion_figure({cup_detection, cup_any}),
                  fmt::format("Occlusion of one detection, {}. Blocks: the lecture's 32x32 patch, then 64x64 and "
                              "100x100. Left: the drop in this detection's p (its anchor's sigmoid); right: the drop in "
                              "p({}) read as the max over all 1,917 anchors. {} The detection, per patch: {}. The "
                              "trade-off: the smallest patch has the finest map, but it hides {:.0f}% of the box, too little "
                              "of evidence spread over the cup to move p much, so its map is faint and scattered (a flat "
                              "map would put {:.0f}% in the box); the largest patch moves p most and puts most of the "
                              "drop on the cup, with a map blurred over its own size. Max over anchors: {}; it moves "
                              "less, because when the patch hides this detection's evidence another anchor can still "
                              "score the class.",
                              cup.describe(), cup.detection.label, reading, cup_words,
                              100.0 * static_cast<double>(patches.front().window * patches.front().window) /
                                  std::max<double>(1.0, static_cast<double>(cup.detection.box.area()) * spec.height * spec.width),
                              100.0 * cup.detection.box.area(), cup_any_words),
                  "Mopuri 10.1: occlusion sensitivity of one detection, 32x32 then larger gray patches, against max over anchors");

    const lesson::Photo photo = lesson.photo();
    lesson.step(fmt::format("The lesson's photo (--image, --target): {} on {}", photo.target_name, photo.name));
    const lesson::FramedDetection framed = lesson::detection_inside_frame(photo_model, photo);
    const lesson::PhotoDetection as_is = lesson::photo_detection(photo_model, photo);
    lesson.say("{}", as_is.describe());
    lesson.say("{}", framed.why());
    std::vector<Column> columns = {measure(photo, as_is, as_is.target(), fmt::format("{} as it is", photo.name),
                                           fmt::format("{} {}, as it is", photo.name, photo.target_name))};
    if (framed.scale < 1.f)
      columns.push_back(measure(framed.photo, framed.found, framed.found.target(), fmt::format("shrunk to {:.0f}% on gray", 100 * framed.scale),
                              fmt::format("{} {}, shrunk to {:.0f}% on gray", photo.name, photo.target_name, 100 * framed.scale)));
    std::vector<std::string> words;
    for (const Column& c : columns) {
      words.push_back(report(c));
      add_line(c, fmt::format("{} {} ({} head)", photo.target_name, &c == &columns.front() ? "as it is" : "shrunk",
                              c.found.detection.grid));
    }
    const float as_is_raised = static_cast<float>(percent_raised(columns.front().maps.front()));
    std::string eyes_words;
    if (framed.scale < 1.f && photo.name == "chelsea.png") {
      // Where the shrunk cat's drop is: the share inside the cat's two eyes' boxes, moved with the shrink.
      std::vector<lesson::Box> eyes;
      for (const lesson::Box& e : lesson::kChelseaEyes) eyes.push_back(framed.framed(e, photo_model));
      Column& shrunk = columns.back();
      shrunk.marks = eyes;
      const double eye_area = static_cast<double>((eyes[0].x1 - eyes[0].x0) * (eyes[0].y1 - eyes[0].y0) +
                                                  (eyes[1].x1 - eyes[1].x0) * (eyes[1].y1 - eyes[1].y0));
      const double box_area = static_cast<double>(shrunk.found.detection.box.area()) * spec.height * spec.width;
      const size_t k = patches.size() > 1 ? 1 : 0;
      const double share = lesson::share_in_boxes(relu(shrunk.maps[k]), eyes);
      lesson.number(fmt::format("shrunk cat: share of the drop in the eye boxes, {0}x{0} patch", patches[k].window), share, "{:.2f}");
      eyes_words = fmt::format(" With the {0}x{0} patch {1:.0f}% of the shrunk cat's drop lies in the two yellow boxes around "
                               "its eyes, which are {2:.0f}% of its box.", patches[k].window, 100 * share, 100 * eye_area / box_area);
      lesson.say("{0}x{0} patch: {1:.0f}% of the shrunk cat's drop is in the eye boxes ({2:.0f}% of its box)", patches[k].window,
                 100 * share, 100 * eye_area / box_area);
    }
    lesson.chart("drop_vs_patch.svg",
                 viz::line_chart(drop_lines, "Occlusion: the largest drop in p against the patch's size",
                                 "patch side (input pixels of 300)", "largest drop in p (mean over a pixel's windows)"),
                 fmt::format("The largest drop of each map in coffee_occlusion.png and photo_occlusion.png against the "
                             "patch's side. Larger patches hide more of an object's evidence and move p more, at the cost "
                             "of a blurrier map. Max over anchors stays low: another anchor takes over. {}",
                             framed.scale < 1.f
                                 ? fmt::format("The {0} as it is (a frame-filling detection) barely moves at any size (at "
                                               "most {1:.3f}); shrunk on gray, by up to {2:.3f} (the cup: {3:.3f}).",
                                               photo.target_name, *std::max_element(drop_lines[2].y.begin(), drop_lines[2].y.end()),
                                               *std::max_element(drop_lines[3].y.begin(), drop_lines[3].y.end()),
                                               *std::max_element(drop_lines[0].y.begin(), drop_lines[0].y.end()))
                                 : ""),
                 "Mopuri 10.1: occlusion, the patch size's trade-off");
    lesson.figure(
        "photo_occlusion.png", occlusion_figure(columns),
        fmt::format("Occlusion of the {} detection on {}. {} Left: the photo as it is, {}; per patch: {}; covering "
                    "raises p on {:.0f}% of the pixels with the {}x{} patch.{}{}",
                    photo.target_name, photo.name, reading, as_is.describe(), words.front(), as_is_raised,
                    patches.front().window, patches.front().window,
                    framed.scale < 1.f
                        ? fmt::format(" Its box is {:.0f}% of the photo: a frame-filling object is detected by the {} "
                                      "head, whose one box spans the photo and whose score reads the whole photo a little "
                                      "everywhere, so a patch removes little of its evidence and mostly raises p. Right: the "
                                      "same photo shrunk to {:.0f}% on gray (derived in code), where {}: the cat is now a "
                                      "quarter of the frame, a finer head detects it, and the same patches hide {:.0f} times "
                                      "more of it; per patch: {}.",
                                      100 * framed.box_share_before, as_is.detection.grid, 100 * framed.scale,
                                      framed.found.describe(), 1 / (framed.scale * framed.scale), words.back())
                        : "",
                    eyes_words),
        "Mopuri 10.1: occlusion sensitivity on the cat, frame-filling and shrunk (a finer head's detection)");
  });
}
