// Lesson 8: guided backprop -- changing the ReLU's backward rule.
//
// The true gradient sends the signal back through a ReLU where its input was positive.
// Zeiler & Fergus's deconvnet instead passes whatever part of the signal is positive;
// Springenberg et al.'s guided backprop does both. None of this edits the model: the
// rule is swapped for the length of one backward pass with a scoped override.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

namespace {

// One number of a small map as a colored square: red positive, blue negative, white 0.
io::Image number_cell(float value, float largest) {
  const int side = 46;
  const io::Image color = viz::colorize(Tensor::full({1, 1, 1}, 0.5f + 0.5f * value / largest), viz::Colormap::Diverging);
  io::Image cell{side, side, 3, std::vector<uint8_t>(static_cast<size_t>(side) * side * 3)};
  for (size_t i = 0; i < cell.pixels.size(); ++i) cell.pixels[i] = color.pixels[i % 3];
  const io::Image digits = viz::text(fmt::format("{:g}", value), 18);
  const int top = (side - digits.height) / 2, left = (side - digits.width) / 2;
  for (int y = 0; y < digits.height; ++y)  // dark ink multiplied onto the color
    for (int x = 0; x < digits.width && left + x < side; ++x)
      for (int c = 0; c < 3; ++c)
        cell.at(top + y, left + x, c) = static_cast<uint8_t>(cell.at(top + y, left + x, c) * digits.at(y, x, 0) / 255);
  return cell;
}

// A 3x3 map as the lecture's slide draws it: its numbers in colored squares, titled.
io::Image number_grid(const Tensor& map, const std::string& title) {
  std::vector<io::Image> cells;
  for (int64_t i = 0; i < map.numel(); ++i) cells.push_back(number_cell(map.data()[i], 7.f));
  return viz::titled(viz::grid(cells, static_cast<int>(map.dim(map.ndim() - 1)), 2, 160), title, 13);
}

// A map as the photo figures draw it: max |g| over R, G, B, blurred over 2 pixels (the
// stride-2 layers' 4-pixel stripes average out; see step 6), clipped at its 99th percentile.
Tensor magnitude_for_display(const Tensor& g) {
  return explain::gaussian_blur(viz::normalize(g, viz::Normalize::MaxAbs), 2.f);
}

// How striped a map is across its columns: |g| summed over the columns of each phase x mod
// `period`, the largest sum over the smallest (1 = no stripes).
double column_stripes(const Tensor& g, int64_t period) {
  std::vector<double> sums(static_cast<size_t>(period), 0.0);
  const int64_t width = g.dim(g.ndim() - 1);
  for (int64_t i = 0; i < g.numel(); ++i) sums[static_cast<size_t>(i % width % period)] += std::abs(g.data()[i]);
  return *std::max_element(sums.begin(), sums.end()) / *std::min_element(sums.begin(), sums.end());
}

}  // namespace

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "08_guided_backprop", .title = "Guided backprop: changing the ReLU's backward rule",
                                     .summary = "The lectures' numeric example of the three ReLU rules (vanilla, deconvnet, "
                                     "guided) computed on the tape; the rules on a Fashion-MNIST image, for a class score "
                                     "and for one conv2 neuron with the rest of its layer zeroed; the cat's Cat detection "
                                     "through the photo model, where guided backprop is sharp on the eyes; and why "
                                     "deconvnet shows the image through FashionCNN's max-pool switches but not through "
                                     "MobileNetV2, which has none.", .fashion_image = "assets/fashion-png/9_ankle_boot.png",
                                     .uses_photo = true});
  return lesson.run([&] {
    const std::vector<std::pair<const char*, BackwardRule>> relu_rules = {
        {"vanilla   (x>0)*g", rules::vanilla_relu},
        {"deconvnet max(g,0)", rules::deconvnet_relu},
        {"guided    (x>0)*max(g,0)", rules::guided_relu}};
    const std::vector<std::string> rule_names = {"vanilla", "deconvnet", "guided"};

    lesson.step("The lectures' example: a 3x3 map through one ReLU, and the gradient each rule passes back");
    // Balasubramanian (lecture 39) walks this map from Springenberg et al.'s figure 1; Khapra
    // (lecture 97) the same idea on a 2x2 map. The numbers go through the library's own ReLU
    // and its three backward rules on the tape, not through a formula typed here.
    const Tensor forward_values = Tensor::from_vector({1, -1, 5, 2, -5, -7, -3, 2, 4}, {3, 3});
    const Tensor incoming = Tensor::from_vector({-2, 3, -1, 6, -3, 1, 2, -1, 3}, {3, 3});
    std::vector<Tensor> passed;
    {
      const Tensor f = forward_values.detach().requires_grad_();
      const Tensor out = relu(f);  // one entry on the tape
      for (size_t i = 0; i < relu_rules.size(); ++i) {
        f.zero_grad();
        tg::OverrideBackward guard(tg::Op::ReLU, relu_rules[i].second);
        out.backward(incoming, /*retain_graph=*/i + 1 < relu_rules.size());
        passed.push_back(f.grad().detach());
      }
      auto rows = [](const Tensor& m, int64_t r) {
        return fmt::format("{:>3g} {:>3g} {:>3g}", m.at({r, 0}), m.at({r, 1}), m.at({r, 2}));
      };
      const Tensor after_relu = relu(forward_values);
      lesson.say("{:<10}{:<13}{:<13}|{:<11}{:<16}{:<13}{:<13}{}", "forward:", "f", "relu(f)", " backward:", "R (from above)",
                 "vanilla", "deconvnet", "guided");
      lesson.say("{:<36}|{:<27}{:<13}{:<13}{}", "", "", "(f>0)*R", "max(R,0)", "(f>0)*max(R,0)");
      for (int64_t r = 0; r < 3; ++r)
        lesson.say("          {}  {}  |           {}     {}  {}  {}", rows(forward_values, r), rows(after_relu, r), rows(incoming, r),
                   rows(passed[0], r), rows(passed[1], r), rows(passed[2], r));
      lesson.say("vanilla zeroes R where f was negative (the four 0s); guided also zeroes what is left negative");
      lesson.say("(the -2, -1 and -1 the lecture points at); deconvnet zeroes R's negatives wherever f was.");
      std::vector<io::Image> grids = {number_grid(forward_values, "forward: f"), number_grid(after_relu, "relu(f)"),
                                      number_grid(incoming, "incoming gradient R"), number_grid(passed[0], "vanilla: (f>0)*R"),
                                      number_grid(passed[1], "deconvnet: max(R,0)"),
                                      number_grid(passed[2], "guided: (f>0)*max(R,0)")};
      lesson.figure("rules_by_hand.png",
                    viz::stack({viz::grid(grids, 6, 14), viz::color_bar(viz::Colormap::Diverging, 300, "-7", "0", "+7")}),
                    "The lectures' numeric example (Springenberg et al.'s figure 1, as lecture 39 walks it), computed by "
                    "the library's ReLU and its three backward rules on the tape. Left to right: the forward values f "
                    "into a ReLU, its output, the gradient R arriving from above, and what each rule passes back: vanilla "
                    "keeps R where f > 0 (four 0s where f was negative), deconvnet keeps R's positive part wherever f was, "
                    "guided keeps only entries where both f and R are positive (the -2, -1 and -1 of vanilla also become "
                    "0). Red positive, blue negative.",
                    "Khapra 97 / Balasubramanian 39: the three rules on a small map");
    }

    lesson.step("The rules on a Fashion-MNIST image: one forward pass, then three backward passes, each under its own rule");
    nn::Sequential& model = lesson.model();
    preprocess::InputSpec spec = model.info().input;
    spec.invert_light_background = false;  // the lesson's images are Fashion-MNIST's own
    const Tensor image = preprocess::image_to_input(lesson.fashion_image(), spec);
    const int64_t predicted = argmax(explain::scores(model, image))[0];
    lesson.say("{}: predicted {} ({})", lesson.fashion_image_path(), predicted, data::kFashionClasses[predicted]);
    // A rule is a value with one signature: (entry, gradient of its output) -> gradients of its inputs.
    // tg::rules holds the three (ops/activation.cpp); a rule of your own plugs in the same way.
    std::vector<Tensor> class_maps, neuron_maps;
    {
      explain::FreezeParameters frozen(model);  // only the input needs a gradient
      const Tensor x = image.detach().requires_grad_();
      const Tensor scores = model(x);  // recorded on the tape once
      const Tensor seed = one_hot(scores.shape(), {predicted});
      for (size_t i = 0; i < relu_rules.size(); ++i) {
        x.zero_grad();
        {
          // From here to the closing brace, every ReLU entry on the tape uses this rule.
          tg::OverrideBackward guard(tg::Op::ReLU, relu_rules[i].second);
          // retain_graph keeps the walked entries for the next rule; the last pass frees them.
          scores.backward(seed, /*retain_graph=*/i + 1 < relu_rules.size());
        }
        // The guard is scoped, not a setting: once it ends (by the brace or by an exception),
        // every backward is the true gradient again, so no rule leaks into another explanation.
        const Tensor g = x.grad();
        int64_t negative = 0;
        for (int64_t k = 0; k < g.numel(); ++k) negative += g.data()[k] < 0;
        lesson.say("{:<26} negative entries: {:>3} of 784, largest |g| {:.3f}", relu_rules[i].first, negative,
                   tg::max(tg::abs(g)).item());
        class_maps.push_back(g);
      }
    }
    lesson.say("explain::class_gradient(model, image, targets, rule) wraps these lines for every method and model.");

    lesson.step("One neuron: the most active conv2 unit at the image center, every other conv2 neuron seeded 0");
    model(image);
    const Tensor conv2 = model.activation("relu2");
    int64_t best = 0;
    for (int64_t c = 1; c < conv2.dim(1); ++c)
      if (conv2.at({0, c, 7, 7}) > conv2.at({0, best, 7, 7})) best = c;
    lesson.say("seed: 1 at conv2[{},7,7] (value {:.3f}), 0 at the other {} neurons of conv2", best, conv2.at({0, best, 7, 7}),
               conv2.numel() - 1);
    for (const auto& [name, rule] : relu_rules)
      neuron_maps.push_back(explain::neuron_gradient(model, image, {"conv2", best, 7, 7}, rule));
    lesson.number("corr(vanilla, deconvnet), class score", lesson::pearson(class_maps[0], class_maps[1]), "{:.3f}");
    lesson.number("corr(vanilla, guided), class score", lesson::pearson(class_maps[0], class_maps[2]), "{:.3f}");

    const int scale = 8;
    auto show = [&](const Tensor& g, const std::string& title) {  // each map scaled to its own max |g|
      return viz::titled(viz::picture(g, viz::Normalize::Signed, viz::Colormap::Diverging, scale), title);
    };
    const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
    std::vector<io::Image> tiles = {viz::titled(input, data::kFashionClasses[predicted])};
    for (size_t i = 0; i < class_maps.size(); ++i) tiles.push_back(show(class_maps[i], rule_names[i] + ": d score"));
    tiles.push_back(viz::titled(input, "the same input"));
    for (size_t i = 0; i < neuron_maps.size(); ++i)
      tiles.push_back(show(neuron_maps[i], fmt::format("{}: d conv2[{},7,7]", rule_names[i], best)));
    lesson.figure("rules.png",
                  viz::stack({viz::grid(tiles, 4, 4), viz::color_bar(viz::Colormap::Diverging, 300, "-max |g|", "0",
                                                                     "+max |g| (per map)")}),
                  fmt::format("Columns: input, vanilla, deconvnet, guided. Top: d score({}) / d pixels. Bottom: d "
                              "conv2[{},7,7] / d pixels, seeded 1 there and 0 at every other conv2 neuron. Red is "
                              "positive, blue negative. Under the guided rule no negative signal passes a ReLU, yet "
                              "pixels still get negative values: the last step, conv1's weights, has both signs.",
                              data::kFashionClasses[predicted], best));

    lesson.step("The lecture's cat: one detection of the photo model (SSD-MobileNetV2, every rectifier a ReLU6)");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& photo_spec = photo_model.info().input;
    const lesson::Photo photo = lesson.photo();
    const models::Detection& detection = photo.detection;
    const explain::Target cat_target = explain::Target::of_detections({photo.target}, {detection.anchor});
    lesson.say("{} on {}: anchor {} of the {} head, p = {:.3f}, box {:.0f},{:.0f},{:.0f},{:.0f} (photo pixels)", photo.target_name,
               photo.name, detection.anchor, detection.grid, detection.score, detection.pixels.x0, detection.pixels.y0,
               detection.pixels.x1, detection.pixels.y1);
    lesson.number(fmt::format("p({}) of the detection on {}", photo.target_name, photo.name), detection.score, "{:.4f}");
    // One neuron, as in the lecture: a deep layer (19x19), at the cat's left eye, the channel
    // most active there (below 6: a ReLU6 at its ceiling passes no gradient at all).
    const std::string layer = "expanded_conv_13/expand/relu6";
    const Tensor features = photo_model.forward_until(photo.input, layer);
    const int64_t fy = 115 * features.dim(2) / 300, fx = 110 * features.dim(3) / 300;
    int64_t channel = 0;
    float strongest = 0.f;
    for (int64_t c = 0; c < features.dim(1); ++c) {
      const float v = features.at({0, c, fy, fx});
      if (v < 6.f && v > strongest) strongest = v, channel = c;
    }
    lesson.say("seed: 1 at {}[{},{},{}] (value {:.2f}), 0 at the other {} neurons of the layer", layer, channel, fy, fx, strongest,
               features.numel() - 1);
    // Two boxes around the eyes (10% of the image): how much of each map's |g| lands there.
    // They are chelsea.png's: on another photo they are neither drawn nor claimed.
    const bool shipped_cat = photo.name == "chelsea.png" && photo.target_name == "Cat";
    auto eye_share = [](const Tensor& g) { return lesson::share_in_boxes(g, lesson::kChelseaEyes); };
    auto with_eyes = [&](io::Image input_sized) {  // the boxes the eye shares are measured in, drawn
      if (shipped_cat)
        for (const lesson::Box& eye : lesson::kChelseaEyes)
          viz::draw_box(input_sized, static_cast<float>(eye.x0), static_cast<float>(eye.y0), static_cast<float>(eye.x1),
                        static_cast<float>(eye.y1), viz::Rgb{230, 160, 0}, "eye", 1, 11);
      return input_sized;
    };
    const io::Image shown = photo.with_box(with_eyes(preprocess::input_to_image(photo.input, photo_spec)));
    std::vector<io::Image> cat_tiles = {viz::titled(shown, fmt::format("{}: the {} detection", photo.name, photo.target_name))};
    std::vector<io::Image> neuron_tiles = {viz::titled(
        photo.at_own_aspect(with_eyes(preprocess::input_to_image(photo.input, photo_spec))), "the same input")};
    std::vector<double> cat_shares, neuron_shares;
    Tensor vanilla_cat, guided_cat;
    for (size_t i = 0; i < relu_rules.size(); ++i) {
      auto show_magnitude = [&](const Tensor& g, const std::string& title, bool boxed) {
        const Tensor display = magnitude_for_display(g);
        lesson.say("{}: {}", title, viz::clip_note(display, "blurred max |g|"));
        const io::Image picture = with_eyes(viz::picture(display, viz::Normalize::Percentile99, viz::Colormap::Gray));
        return viz::titled(boxed ? photo.with_box(picture) : photo.at_own_aspect(picture), title);
      };
      const Tensor g_cat = explain::gradient(photo_model, photo.input, cat_target, relu_rules[i].second);
      const Tensor g_neuron = explain::neuron_gradient(photo_model, photo.input, {layer, channel, fy, fx}, relu_rules[i].second);
      if (i == 0) vanilla_cat = g_cat;
      if (i == 2) guided_cat = g_cat;
      cat_shares.push_back(eye_share(g_cat));
      neuron_shares.push_back(eye_share(g_neuron));
      lesson.say("{:<10} {} detection: {:.0f}% of |g| in the eye boxes | the neuron: {:.0f}%", rule_names[i], photo.target_name,
                 100 * cat_shares.back(), 100 * neuron_shares.back());
      cat_tiles.push_back(show_magnitude(g_cat, fmt::format("{}: d logit({})/d pixels", rule_names[i], photo.target_name), true));
      neuron_tiles.push_back(show_magnitude(g_neuron, fmt::format("{}: d neuron/d pixels", rule_names[i]), false));
    }
    // The guided map has vertical stripes 4 pixels apart. Are they the photo's, or the rule's?
    const Tensor transposed = permute(photo.input, {0, 1, 3, 2}).detach();
    const double stripes = column_stripes(guided_cat, 4), stripes_vanilla = column_stripes(vanilla_cat, 4);
    const double stripes_transposed = column_stripes(explain::gradient(photo_model, transposed, cat_target, rules::guided_relu), 4);
    lesson.say("stripes: the guided map's columns of one phase (x mod 4) hold {:.1f}x the |g| of another (vanilla {:.1f}x);",
               stripes, stripes_vanilla);
    lesson.say("with the photo transposed the guided map's columns still do ({:.1f}x): the stripes come from the model's",
               stripes_transposed);
    lesson.say("weights, not the photo -- two stride-2 layers reach input columns unevenly, and guided backprop's");
    lesson.say("positive-only sums no longer cancel it. The display blurs each map over 2 pixels, which removes it.");
    lesson.number("guided, the detection: share of |g| in the eye boxes", cat_shares[2], "{:.3f}");
    lesson.number("vanilla, the detection: share of |g| in the eye boxes", cat_shares[0], "{:.3f}");
    std::vector<io::Image> rows = cat_tiles;
    rows.insert(rows.end(), neuron_tiles.begin(), neuron_tiles.end());
    const std::string eyes_said =
        shipped_cat ? fmt::format("The eye boxes (orange, 10% of the image) hold {:.0f}% of the vanilla map's |g| and {:.0f}% of the "
                                  "guided one's for the detection, {:.0f}% and {:.0f}% for the neuron: guided backprop is "
                                  "sharp on the eyes. ",
                                  100 * cat_shares[0], 100 * cat_shares[2], 100 * neuron_shares[0], 100 * neuron_shares[2])
                    : std::string();
    lesson.figure("cat_rules.png",
                  viz::stack({viz::grid(rows, 4, 6), viz::color_bar(viz::Colormap::Gray, 300, "0", "",
                                                                    "99th percentile (per map) and above")}),
                  fmt::format("The lecture's figure (lecture 97) at the photo's own aspect ratio. Top: d logit / d pixels "
                              "of one detection, {} on {} (anchor {}, the {} head, p = {:.2f}; its box drawn), through the "
                              "photo model. Bottom: one neuron, {}[{},{},{}]{}, seeded 1 with the rest of its layer seeded "
                              "0. Each map is max |g| over R, G, B, blurred over 2 pixels and clipped at its own 99th "
                              "percentile (white: the brightest 1%). {}Deconvnet is a blur that does not depend on the "
                              "photo (next figure).",
                              photo.target_name, photo.name, detection.anchor, detection.grid, detection.score, layer, channel,
                              fy, fx, shipped_cat ? " at the left eye" : "", eyes_said),
                  "Khapra 97: one neuron back-propagated three ways; guided backprop sharp on the cat's eyes");

    lesson.step("Deconvnet with and without max-pool switches: two photos, two Fashion-MNIST images");
    // Zeiler & Fergus's deconvnet reads the image in one place only: a max-pool's switches (which
    // input of each window was the max) route the signal back. Its ReLU rule max(g,0) ignores
    // the input. MobileNetV2 has no max-pooling, so every step of its deconvnet pass is fixed
    // by the weights: the map depends on which detection is seeded, not on the photo.
    const lesson::Photo cup = lesson.photo("assets/coffee.png", "Coffee cup");
    const explain::Target cup_target = explain::Target::of_detections({cup.target}, {cup.detection.anchor});
    lesson.say("{} on {}: anchor {} of the {} head, p = {:.3f}", cup.target_name, cup.name, cup.detection.anchor, cup.detection.grid,
               cup.detection.score);
    const Tensor deconv_cat = explain::gradient(photo_model, photo.input, cat_target, rules::deconvnet_relu);
    const Tensor deconv_cup = explain::gradient(photo_model, cup.input, cup_target, rules::deconvnet_relu);
    const Tensor guided_cup = explain::gradient(photo_model, cup.input, cup_target, rules::guided_relu);
    // The cat's own seed (its anchor and class) on the coffee photo: the same map, to the last bit?
    const Tensor deconv_cat_seed_on_cup = explain::gradient(photo_model, cup.input, cat_target, rules::deconvnet_relu);
    float largest_difference = 0.f;
    for (int64_t i = 0; i < deconv_cat.numel(); ++i)
      largest_difference = std::max(largest_difference, std::abs(deconv_cat.data()[i] - deconv_cat_seed_on_cup.data()[i]));
    const auto magnitude = [](const Tensor& g) { return viz::normalize(g, viz::Normalize::MaxAbs); };
    const double deconv_photos = lesson::pearson(magnitude(deconv_cat), magnitude(deconv_cup));
    const double guided_photos = lesson::pearson(magnitude(guided_cat), magnitude(guided_cup));
    lesson.number("photo model: corr of the deconvnet maps of the two photos (max |g| over RGB)", deconv_photos, "{:.2f}");
    lesson.number("photo model: corr of the guided maps of the two photos", guided_photos, "{:.2f}");
    lesson.say("the {} detection's seed on {} instead of {}: deconvnet map differs by at most {:.2g} (of max {:.2g})",
               photo.target_name, cup.name, photo.name, largest_difference, tg::max(tg::abs(deconv_cat)).item());

    // FashionCNN has two max-pools: their switches carry the image into the deconvnet map.
    preprocess::InputSpec fashion_spec = spec;
    const Tensor other = preprocess::image_to_input(io::load_image("assets/fashion-png/1_trouser.png"), fashion_spec);
    const int64_t other_class = argmax(explain::scores(model, other))[0];
    const Tensor deconv_other = explain::class_gradient(model, other, {other_class}, rules::deconvnet_relu);
    const Tensor guided_other = explain::class_gradient(model, other, {other_class}, rules::guided_relu);
    const double deconv_fashion = lesson::pearson(magnitude(class_maps[1]), magnitude(deconv_other));
    const double guided_fashion = lesson::pearson(magnitude(class_maps[2]), magnitude(guided_other));
    lesson.number("FashionCNN: corr of the deconvnet maps of the two images", deconv_fashion, "{:.2f}");
    lesson.number("FashionCNN: corr of the guided maps of the two images", guided_fashion, "{:.2f}");
    // Does each map sit on its garment? The share of its |g| on the garment's own pixels.
    // With g = 1 everywhere it is the garment's share of the pixels: what a map blind to the image would give.
    auto on_garment = [](const Tensor& x, const Tensor& g) {
      const float background = *std::min_element(x.data(), x.data() + x.numel());  // Fashion-MNIST's black, after normalization
      double inside = 0, total = 0;
      for (int64_t i = 0; i < g.numel(); ++i) {
        total += std::abs(g.data()[i]);
        if (x.data()[i] > background + 0.1f) inside += std::abs(g.data()[i]);
      }
      return total > 0 ? inside / total : 0.0;
    };
    const double boot_area = on_garment(image, Tensor::full(image.shape(), 1.f)),
                 trouser_area = on_garment(other, Tensor::full(other.shape(), 1.f));
    const double boot_deconv_on = on_garment(image, class_maps[1]), trouser_deconv_on = on_garment(other, deconv_other);
    const double boot_guided_on = on_garment(image, class_maps[2]), trouser_guided_on = on_garment(other, guided_other);
    lesson.say("FashionCNN: the {} covers {:.0f}% of its image, the {} {:.0f}%; on those pixels lies", data::kFashionClasses[predicted],
               100 * boot_area, data::kFashionClasses[other_class], 100 * trouser_area);
    lesson.say("deconvnet's |g|: {:.0f}% and {:.0f}%; guided's: {:.0f}% and {:.0f}%", 100 * boot_deconv_on, 100 * trouser_deconv_on,
               100 * boot_guided_on, 100 * trouser_guided_on);

    auto photo_tile = [&](const lesson::Photo& p, const Tensor& g, const std::string& title) {
      return viz::titled(p.with_box(viz::picture(magnitude_for_display(g), viz::Normalize::Percentile99, viz::Colormap::Gray)),
                         title);
    };
    auto fashion_tile = [&](const Tensor& g, const std::string& title) {
      return viz::titled(viz::picture(g, viz::Normalize::Percentile99, viz::Colormap::Gray, 10), title);
    };
    auto fashion_input = [&](const Tensor& x, int64_t k) {
      return viz::titled(viz::picture(x, viz::Normalize::MinMax, viz::Colormap::Gray, 10), data::kFashionClasses[k]);
    };
    // One row per image: the input (its box drawn), deconvnet, guided backprop.
    std::vector<io::Image> deconv_tiles = {
        viz::titled(photo.with_box(preprocess::input_to_image(photo.input, photo_spec)), photo.name),
        photo_tile(photo, deconv_cat, "deconvnet: " + photo.target_name),
        photo_tile(photo, guided_cat, "guided: " + photo.target_name),
        viz::titled(cup.with_box(preprocess::input_to_image(cup.input, photo_spec)), cup.name),
        photo_tile(cup, deconv_cup, "deconvnet: " + cup.target_name),
        photo_tile(cup, guided_cup, "guided: " + cup.target_name),
        fashion_input(image, predicted),
        fashion_tile(class_maps[1], "deconvnet (max-pool switches)"),
        fashion_tile(class_maps[2], "guided"),
        fashion_input(other, other_class),
        fashion_tile(deconv_other, "deconvnet (max-pool switches)"),
        fashion_tile(guided_other, "guided")};
    lesson.figure("deconvnet_switches.png",
                  viz::stack({viz::grid(deconv_tiles, 3, 6), viz::color_bar(viz::Colormap::Gray, 300, "0", "",
                                                                            "99th percentile (per map) and above")}),
                  fmt::format("Deconvnet needs max-pool switches to show the image. Top: the photo model's deconvnet "
                              "maps (middle column) of the {} detection on {} and the {} detection on {} (boxes drawn) "
                              "correlate {:.2f}: the same soft blob with a grid on both photos, no cat, no cup. MobileNetV2 has no max-pooling, and "
                              "deconvnet's ReLU rule max(g,0) ignores the input, so nothing in the backward pass reads "
                              "the photo: seeding the {} detection on {} gives the {} map {}. Right: "
                              "guided backprop on the same two detections (correlation {:.2f}) keeps the forward pass's "
                              "masks, which is the information deconvnet lacks (Springenberg et al.'s point, and why "
                              "guided backprop exists). Bottom two rows: FashionCNN has two max-pools, whose switches "
                              "(which input won each window) route the deconvnet signal back towards the garment: {:.0f}% "
                              "and {:.0f}% of its |g| lies on the boot's and the trouser's pixels, which cover {:.0f}% "
                              "and {:.0f}% of their images, and its two maps correlate only {:.2f}: here deconvnet "
                              "depends on the image. At 28x28 both rules are speckled; guided puts {:.0f}% and {:.0f}% "
                              "on the garments. Photo maps: max |g| over R, G, B, blurred over 2 pixels; "
                              "all maps clipped at their own 99th percentile.",
                              photo.target_name, photo.name, cup.target_name, cup.name, deconv_photos, photo.target_name,
                              cup.name, photo.name,
                              largest_difference == 0.f ? std::string("exactly, to the last bit")
                                                        : fmt::format("to within {:.1g}", largest_difference),
                              guided_photos, 100 * boot_deconv_on,
                              100 * trouser_deconv_on, 100 * boot_area, 100 * trouser_area, deconv_fashion,
                              100 * boot_guided_on, 100 * trouser_guided_on),
                  "Balasubramanian 39: deconvnet next to guided backprop, and what max-pool switches do");
  });
}
