// Lesson 11: CAM and Grad-CAM -- where in the image the evidence for a class is.
//
// The lecture's order. First CAM (Zhou et al. 2016): in a network whose last convolution is
// followed by global average pooling (GAP) and one linear layer, a class's score is
//     y_c = sum_k w[c,k] * mean(A_k) + b_c,
// so the map CAM_c = sum_k w[c,k] A_k shows where the score comes from. Then Grad-CAM
// (Selvaraju et al. 2017) for any network: weigh each channel by the spatial mean of
// d y_c / d A_k. With a GAP head that mean is exactly w[c,k] / (h*w): Grad-CAM is CAM, up to the
// ReLU and a constant. We check that on a small GAP network, then use Grad-CAM where CAM cannot
// go: one detection of the photo model, at layers the detection does and does not read.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <numeric>

#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/course/photo_detection.h"
#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/models/fashion_gap.h"
#include "tinygrad-cpp/models/train.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

namespace {
// A non-negative map [1,h,w] (or [h,w]) divided by its largest value, upsampled to height x
// width: 0 -> dark, the map's maximum -> yellow. An all-zero map stays 0.
Tensor unit_of_positive(const Tensor& map, int64_t height, int64_t width) {
  const int64_t h = map.dim(map.ndim() - 2), w = map.dim(map.ndim() - 1);
  const Tensor positive = relu(reshape(map, {1, h, w}));
  const float top = tg::max(positive).item();
  const Tensor unit = top > 0 ? positive * (1.f / top) : positive;
  return upsample(unit, height, width, Interpolation::Bilinear);
}
}  // namespace

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "11_cam", .title = "CAM, then Grad-CAM of one detection",
                                     .summary = "CAM on a FashionCNN with a global-average-pooling head (trained here in "
                                     "seconds), shown equal to Grad-CAM at its last convolution; then Grad-CAM and guided "
                                     "Grad-CAM of one detection of the photo model (the coffee cup; the cat as it is and shrunk "
                                     "on gray), at the 19x19 "
                                     "map and at the maps the detection's head reads, with the share of the map inside "
                                     "the detection's box.", .uses_photo = true});
  return lesson.run([&] {
    // ---------------------------------------------------------------- CAM
    lesson.step("A network CAM can explain: FashionCNN's convolutions, then global average pooling and one linear layer");
    nn::Sequential& fashion_cnn = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    data::Dataset train;
    std::string train_source = data::default_data_dir();
    try {
      train = data::load_fashion_mnist(train_source, data::Split::Train);
    } catch (const Error& e) {
      // No training set installed: the 1,000 sample images (then the accuracy below is on them too).
      lesson.say("no training set ({}); training on the 1,000 sample images instead", e.what());
      train = sample, train_source = "assets/fashion-sample";
    }
    const models::GapTraining training{.steps = lesson.smoke() ? 20 : models::GapTraining{}.steps};
    lesson.say("conv1, pool1, conv2 (14x14) -> conv3 3x3 -> relu3 (64 maps of 14x14) -> gap (each map's mean) -> fc (64 -> 10)");
    lesson.say("conv1 and conv2 start from the shipped FashionCNN; {} Adam steps of {} images from {}", training.steps,
               training.batch, train_source);
    const std::clock_t cpu_start = std::clock();
    const auto gap_model = models::train_fashion_gap_cnn(fashion_cnn, train, training, [&](int64_t step, double loss) {
      lesson.progress(fmt::format("training, loss {:.3f}", loss), static_cast<int>(step), static_cast<int>(training.steps));
    });
    nn::Sequential& gap = *gap_model;
    lesson.say("trained in {:.1f} s of CPU time (all threads)", static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC);
    const double accuracy = train::evaluate(gap, sample).accuracy();
    lesson.number("GAP model: accuracy on the 1,000 sample test images", accuracy, "{:.3f}");
    lesson.number("FashionCNN (two linear layers): accuracy on them", train::evaluate(fashion_cnn, sample).accuracy(), "{:.3f}");

    lesson.step("CAM = sum_k w[c,k] A_k at relu3, and Grad-CAM at relu3: the same map");
    std::vector<int64_t> order(static_cast<size_t>(sample.size()));
    std::iota(order.begin(), order.end(), 0);
    const Tensor logits = explain::scores(gap, data::make_batch(sample, order, 0, sample.size()).images);
    const std::vector<int64_t> predicted = argmax(logits);
    std::vector<int64_t> right, wrong;
    const size_t wanted_right = lesson.smoke() ? 1 : 4, wanted_wrong = lesson.smoke() ? 1 : 2;
    for (int64_t i = 0; i < sample.size(); ++i) {
      auto& list = predicted[i] == sample.labels[i] ? right : wrong;
      if (list.size() < (&list == &right ? wanted_right : wanted_wrong)) list.push_back(i);
    }
    // Every class of every picked image: Grad-CAM against ReLU(CAM) / (14*14).
    const float cells = 14.f * 14.f;
    double largest_difference = 0, largest_value = 0;
    std::vector<int64_t> picks = right;
    picks.insert(picks.end(), wrong.begin(), wrong.end());
    for (int64_t index : picks) {
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      for (int64_t c = 0; c < 10; ++c) {
        const Tensor cam = explain::cam(gap, image, {c}, "relu3", "fc");
        const Tensor grad_cam = explain::grad_cam(gap, image, {c}, "relu3");
        for (int64_t i = 0; i < cam.numel(); ++i) {
          const double expected = std::max(0.f, cam.data()[i]) / cells;
          largest_difference = std::max(largest_difference, std::fabs(grad_cam.data()[i] - expected));
          largest_value = std::max(largest_value, expected);
        }
      }
    }
    lesson.say("Grad-CAM's weight of channel k is the mean of d y_c / d A_k over the 14x14 cells = w[c,k] / 196,");
    lesson.say("so Grad-CAM = ReLU(CAM) / 196. Over {} images x 10 classes (largest map value {:.3g}):", picks.size(), largest_value);
    lesson.number("max |Grad-CAM - ReLU(CAM)/196|", largest_difference, "{:.2g}");

    const int scale = 6;
    // One scale per row: every map of a row is divided by the largest positive CAM value of the
    // row (of the predicted or the other class; Grad-CAM's by that over 196), so a class the
    // network gives p 0.00 is not drawn at full yellow just because its own maximum is.
    auto cam_tile = [&](const Tensor& image, int64_t c, bool gradient, float row_max) {
      const Tensor map = gradient ? explain::grad_cam(gap, image, {c}, "relu3") : explain::cam(gap, image, {c}, "relu3", "fc");
      const float top = gradient ? row_max / cells : row_max;
      const Tensor on_row_scale = upsample(clamp(reshape(map, {1, 14, 14}) * (1.f / top), 0.f, 1.f), 28, 28, Interpolation::Bilinear);
      const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
      const io::Image heat = viz::scale_nearest(viz::colorize(on_row_scale, viz::Colormap::Viridis), scale);
      const float p = softmax(explain::scores(gap, image), 1).at({0, c});
      return viz::titled(viz::overlay(input, heat, 0.55f),
                         fmt::format("{}: {} {:.2f}", gradient ? "Grad-CAM" : "CAM", data::kFashionClasses[c], p), 11);
    };
    std::vector<io::Image> tiles;
    for (int64_t index : picks) {
      const Tensor image = data::normalize_pixels(sample.pixels.data() + index * 784);
      const int64_t guess = predicted[index], truth = sample.labels[index];
      // The other class: the true one for a mistake, the runner-up for a correct answer.
      int64_t other = truth;
      if (guess == truth) {
        other = guess == 0 ? 1 : 0;
        for (int64_t c = 0; c < 10; ++c)
          if (c != guess && logits.at({index, c}) > logits.at({index, other})) other = c;
      }
      lesson.say("image {:>3}: true {}, predicted {}{}", index, data::kFashionClasses[truth], data::kFashionClasses[guess],
                 guess == truth ? "" : " (wrong)");
      tiles.push_back(viz::titled(viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale),
                                  fmt::format("#{}, true: {}", index, data::kFashionClasses[truth]), 11));
      const float row_max = std::max({tg::max(explain::cam(gap, image, {guess}, "relu3", "fc")).item(),
                                      tg::max(explain::cam(gap, image, {other}, "relu3", "fc")).item(), 1e-6f});
      tiles.push_back(cam_tile(image, guess, false, row_max));
      tiles.push_back(cam_tile(image, guess, true, row_max));
      tiles.push_back(cam_tile(image, other, false, row_max));
    }
    lesson.figure("cam.png",
                  viz::stack({viz::grid(tiles, 4, 4),
                              viz::color_bar(viz::Colormap::Viridis, 300, "0 (or below)", "", "the row's largest CAM value")}),
                  fmt::format("CAM on the GAP network (FashionCNN's two convolutions, a third one, global average "
                              "pooling and one linear layer; {:.1f}% right on the sample). Rows: {} test images it gets right, then {} it gets "
                              "wrong. Columns: the input; CAM = sum_k w[c,k] A_k at relu3 (14x14) for the predicted "
                              "class, upsampled over the input; Grad-CAM at relu3 for the same class; CAM for the "
                              "other class (the runner-up when the answer is right, the true class when it is wrong). "
                              "Titles: the class and its probability. The maps of a row share one scale, from 0 (dark; negative CAM "
                              "values too) to the row's largest CAM value (yellow; Grad-CAM's over 196), so a class "
                              "the network rules out is drawn dim, not at full yellow. Columns 2 and 3 are the same picture: with a "
                              "GAP head Grad-CAM = ReLU(CAM)/196, measured to {:.1g}.",
                              100 * accuracy, right.size(), wrong.size(), largest_difference),
                  "Mopuri 10.1: CAM, a global-average-pooling network's class activation maps (equal to Grad-CAM there)");

    // ---------------------------------------------------------------- Grad-CAM of a detection
    lesson.step("Grad-CAM of one detection: which layer its head reads matters");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const std::string deep_19 = "FeatureExtractor/MobilenetV2/expanded_conv_13/expand/relu6";
    const std::string conv_1 = "FeatureExtractor/MobilenetV2/Conv_1/relu6";
    lesson.say("The SSD's heads read six maps: 19x19 ({}), 10x10 (Conv_1), then 5x5, 3x3, 2x2 and 1x1 extra layers.",
               "expanded_conv_13/expand");
    lesson.say("A detection's class logit comes from one head. A head reading a coarser map sees the 19x19 map only");
    lesson.say("through every later layer of the backbone.");
    auto short_name = [](const std::string& layer) {
      const std::string tail = layer.substr(layer.find("MobilenetV2/") == std::string::npos ? 0 : layer.find("MobilenetV2/") + 12);
      return tail.substr(0, tail.rfind("/relu6"));
    };
    struct Row {
      double box_area = 0;
      std::vector<io::Image> tiles;
      std::vector<std::pair<std::string, double>> shares;  // layer, share of the map inside the box
      std::vector<std::string> peaks;                      // where each map is largest, in words
      std::vector<bool> peak_on_edge;                      // largest within 5% of the photo's border
    };
    auto photo_row = [&](const lesson::Photo& photo) {
      const lesson::PhotoDetection found = lesson::photo_detection(photo_model, photo);
      const models::Detection& d = found.detection;
      lesson.say("{}: {}; its head reads {}", photo.name, found.describe(), short_name(d.layer));
      const lesson::Box box = found.input_box(photo_model);
      // A map spread evenly would put this share inside the box: the baseline for the shares below.
      const double area = static_cast<double>((box.x1 - box.x0) * (box.y1 - box.y0)) / static_cast<double>(spec.height * spec.width);
      lesson.say("  the box covers {:.0f}% of the photo: a flat map would put {:.0f}% inside it", 100 * area, 100 * area);
      const io::Image picture = preprocess::input_to_image(photo.input, spec);
      Row row;
      row.box_area = area;
      row.tiles.push_back(viz::titled(photo.at_own_aspect(with_box(picture, found)),
                                      fmt::format("{}: the detection explained", photo.name)));
      std::vector<std::string> layers = {deep_19, conv_1};
      if (std::find(layers.begin(), layers.end(), d.layer) == layers.end()) layers.push_back(d.layer);
      for (const std::string& layer : layers) {
        const Tensor map = explain::grad_cam(photo_model, photo.input, found.target(), layer);  // [1,h,w]
        const Tensor unit = unit_of_positive(map, spec.height, spec.width);
        const double share = tg::max(map).item() > 0 ? lesson::share_in_boxes(unit, {box}) : 0.0;
        const bool read_by_head = layer == d.layer;
        const std::string role = read_by_head ? "its head's map" : layer == deep_19 ? "the 19x19 head's map" : "the backbone's last";
        lesson.say("  Grad-CAM at {:<42} {:>2}x{:<2} ({}): {:3.0f}% of the map inside the box, largest value {:.3g}",
                   short_name(layer), map.dim(1), map.dim(2), role, 100 * share, tg::max(map).item());
        row.shares.emplace_back(short_name(layer), share);
        const int64_t at = tg::argmax(reshape(unit, {1, unit.numel()}))[0];
        const int64_t peak_x = at % spec.width, peak_y = at / spec.width;
        row.peak_on_edge.push_back(map.numel() > 1 && (std::min(peak_x, spec.width - 1 - peak_x) < spec.width / 20 ||
                                                       std::min(peak_y, spec.height - 1 - peak_y) < spec.height / 20));
        row.peaks.push_back(map.numel() == 1 ? "one flat value"
                                             : fmt::format("peak at x {:.0f}%, y {:.0f}% of the photo, {} the box",
                                                           100.0 * peak_x / spec.width, 100.0 * peak_y / spec.height,
                                                           box.contains(peak_x, peak_y) ? "inside" : "outside"));
        const io::Image heat = lesson::heat_over(picture, unit, viz::Colormap::Viridis, 0.f);
        row.tiles.push_back(viz::titled(photo.at_own_aspect(with_box(heat, found)),
                                        fmt::format("Grad-CAM {}x{}, {}: {:.0f}% in box", map.dim(1), map.dim(2),
                                                    read_by_head ? "its head's map" : short_name(layer), 100 * share)));
      }
      const Tensor guided = explain::guided_grad_cam(photo_model, photo.input, found.target(), conv_1);
      const Tensor magnitude = tg::max(tg::abs(guided), {1});  // [1,H,W]: max |.| over R, G, B
      const io::Image detail = viz::picture(magnitude, viz::Normalize::Percentile99, viz::Colormap::Gray);
      lesson.say("  guided Grad-CAM at Conv_1: {}; {:.0f}% of its mass inside the box", viz::clip_note(magnitude, "|.|"),
                 100 * lesson::share_in_boxes(magnitude, {box}));
      row.tiles.push_back(viz::titled(photo.at_own_aspect(with_box(detail, found)), "guided Grad-CAM (Conv_1), |.| clipped at 99th pct"));
      return std::make_pair(row, found);
    };

    const lesson::Photo coffee = lesson.photo("assets/coffee.png", "Coffee cup");
    const auto [coffee_row, coffee_found] = photo_row(coffee);
    const lesson::Photo photo = lesson.photo();
    const auto [photo_row_result, photo_found] = photo_row(photo);
    // A frame-filling object's detection (the shipped cat: the 1x1 head's box over the photo)
    // reads the whole photo; the same photo shrunk on gray is detected by a finer head.
    const lesson::FramedDetection framed = lesson::detection_inside_frame(photo_model, photo);
    lesson.say("{}", framed.why());
    const bool shrunk = framed.scale < 1.f;
    const auto [framed_row, framed_found] = shrunk ? photo_row(framed.photo) : std::make_pair(Row{}, photo_found);
    for (const auto& [layer, share] : coffee_row.shares)
      lesson.number(fmt::format("coffee cup: share of Grad-CAM at {} inside the box", layer), share, "{:.2f}");
    for (const auto& [layer, share] : photo_row_result.shares)
      lesson.number(fmt::format("{} {}: share of Grad-CAM at {} inside the box", photo.name, photo.target_name, layer), share, "{:.2f}");
    for (const auto& [layer, share] : framed_row.shares)
      lesson.number(fmt::format("{} {}: share of Grad-CAM at {} inside the box", framed.photo.name, photo.target_name, layer), share, "{:.2f}");

    auto share_words = [](const Row& row) {
      std::string words = fmt::format("(the box is {:.0f}% of the photo) ", 100 * row.box_area);
      for (size_t i = 0; i < row.shares.size(); ++i)
        words += fmt::format("{}{} {:.0f}% ({})", i == 0 ? "" : ", ", row.shares[i].first, 100 * row.shares[i].second, row.peaks[i]);
      return words;
    };
    // Two keys: Grad-CAM's tint (each map on its own scale), and guided Grad-CAM's gray.
    const io::Image bar = viz::grid({viz::color_bar(viz::Colormap::Viridis, 460, "0 (the gray photo shows)", "Grad-CAM / its max", "max"),
                                     viz::color_bar(viz::Colormap::Gray, 460, "0", "guided Grad-CAM |.|", "its 99th pct (and above)")},
                                    2, 40);
    const std::string columns =
        "Columns: the photo at its own aspect ratio with the detection's box; Grad-CAM of that detection's class logit "
        "(its one anchor, not the best of 1,917) at expanded_conv_13/expand (19x19: the map the 19x19 head reads), at "
        "Conv_1 (10x10: the backbone's last map) and at the map the detection's own head reads, each upsampled and tinted over "
        "the photo in gray, from 0 (untinted) to its maximum (yellow), titled with the share of the map inside the box; guided "
        "Grad-CAM at Conv_1 (max |.| over R, G, B, clipped at its 99th percentile).";
    lesson.figure("coffee_gradcam.png", viz::stack({viz::grid(coffee_row.tiles, static_cast<int>(coffee_row.tiles.size()), 4), bar}),
                  fmt::format("Grad-CAM of the detection {}. {} Share of each map inside the box: {}. The cup's box "
                              "comes from the {} head, which reads the 19x19 map only through the rest of the backbone: "
                              "there the channel weights (mean gradients) put little of the map on the cup, while the "
                              "maps it reads through put most of it on the cup. Guided Grad-CAM at Conv_1 is the cup's rim "
                              "and the coffee's edge inside the box.",
                              coffee_found.describe(), columns, share_words(coffee_row), coffee_found.detection.grid),
                  "Mopuri 10.1: Grad-CAM and guided Grad-CAM of one detection (the coffee cup), the layer choice");
    std::vector<io::Image> photo_tiles = photo_row_result.tiles;
    photo_tiles.insert(photo_tiles.end(), framed_row.tiles.begin(), framed_row.tiles.end());
    const bool frame_filling_1x1 = photo_found.detection.grid == "1x1";
    // What the shrunk row shows, measured: do the maps its detection reads (Conv_1, its head's map)
    // peak inside the box, and the 19x19 map (which its head does not read) put less there?
    std::string shrunk_words;
    if (shrunk && framed_row.shares.size() >= 3) {
      const auto inside = [&](size_t i) { return framed_row.peaks[i].find("inside") != std::string::npos; };
      shrunk_words =
          inside(1) && inside(2) && framed_row.shares[0].second < framed_row.shares[2].second
              ? fmt::format("the maps it reads peak inside the box ({:.0f}% of its head's map there, {:.0f}% of Conv_1's, "
                            "against {:.0f}% for a flat map); the 19x19 map, which its head does not read, puts {:.0f}% there",
                            100 * framed_row.shares[2].second, 100 * framed_row.shares[1].second, 100 * framed_row.box_area,
                            100 * framed_row.shares[0].second)
              : "even shrunk, the maps do not all peak inside the box (shares in the titles)";
      if (framed_row.peak_on_edge[0])
        shrunk_words += " and peaks on the gray canvas's edge, far from the object (Conv_1 lights some of those edges too)";
    }
    lesson.figure(
        "photo_gradcam.png",
        viz::stack({viz::grid(photo_tiles, static_cast<int>(photo_row_result.tiles.size()), 4), bar}),
        fmt::format("Grad-CAM of one detection, {} on {}{}. Columns: the box explained; Grad-CAM of its class logit "
                    "(its one anchor) at the 19x19 map, at Conv_1 (10x10) and at the map its own head reads, each from 0 "
                    "to its own maximum, titled with its share inside the box; guided Grad-CAM at Conv_1. {}{}{}.{}",
                    photo.target_name, photo.name, shrunk ? " (top: as it is; bottom: shrunk on a gray canvas)" : "",
                    shrunk ? "Top: " : "", photo_found.describe(),
                    frame_filling_1x1 ? ". Its head reads the 1x1 map, a single cell, so Grad-CAM there is one flat value and "
                                        "the maps do not find the object: the detection reads the whole photo"
                                      : "",
                    shrunk ? fmt::format(" Bottom, shrunk to {:.0f}%: {}; {}.", 100 * framed.scale, framed_found.describe(),
                                         shrunk_words)
                           : ""),
        "Mopuri 10.1: Grad-CAM and guided Grad-CAM on the cat, frame-filling and shrunk (a finer head's detection)");
  });
}
