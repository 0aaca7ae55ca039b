// Lesson 8: guided backprop -- changing the ReLU's backward rule.
//
// The true gradient sends the signal back through a ReLU where its input was positive.
// Zeiler & Fergus's deconvnet instead passes whatever part of the signal is positive;
// Springenberg et al.'s guided backprop does both. None of this edits the model: the
// rule is swapped for the length of one backward pass with a scoped override.
#include <cmath>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "08_guided_backprop", .title = "Guided backprop: changing the ReLU's backward rule",
                                     .summary = "The same image explained with the vanilla, deconvnet and guided ReLU rules, for a "
                                     "class score and for one neuron of conv2 with the rest of its layer zeroed; then "
                                     "the lecture's cat through the photo model, where guided backprop is sharp on "
                                     "the eyes.", .fashion_image = "assets/fashion-png/9_ankle_boot.png", .uses_photo = true});
  return lesson.run([&] {
    lesson.step("Load the model and the image");
    nn::Sequential& model = lesson.model();
    preprocess::InputSpec spec = model.info().input;
    spec.invert_light_background = false;  // the lesson's images are Fashion-MNIST's own
    const Tensor image = preprocess::image_to_input(lesson.fashion_image(), spec);
    const Tensor logits = explain::scores(model, image);
    const int64_t predicted = argmax(logits)[0];
    lesson.say("{}: predicted {} ({})", lesson.fashion_image_path(), predicted, data::kFashionClasses[predicted]);

    lesson.step("The swap itself: one forward pass, then three backward passes, each under its own ReLU rule");
    // A rule is a value with one signature: (entry, gradient of its output) -> gradients of its inputs.
    // tg::rules holds the three (ops/activation.cpp); a rule of your own plugs in the same way.
    const std::vector<std::pair<const char*, BackwardRule>> relu_rules = {
        {"vanilla   (x>0)*g", rules::vanilla_relu},
        {"deconvnet max(g,0)", rules::deconvnet_relu},
        {"guided    (x>0)*max(g,0)", rules::guided_relu}};
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
    lesson.say("conv2 channel {} has the largest value at (7,7): {:.3f}", best, conv2.at({0, best, 7, 7}));
    for (const auto& [name, rule] : relu_rules)
      neuron_maps.push_back(explain::neuron_gradient(model, image, {"conv2", best, 7, 7}, rule));

    lesson.step("How different are they? Pearson correlation of each map with the vanilla gradient");
    lesson.number("corr(vanilla, deconvnet)", lesson::pearson(class_maps[0], class_maps[1]), "{:.3f}");
    lesson.number("corr(vanilla, guided)", lesson::pearson(class_maps[0], class_maps[2]), "{:.3f}");

    lesson.step("Figures: top row the class score, bottom row the conv2 neuron; 0 is white, red positive, blue negative");
    const int scale = 8;
    const std::vector<std::string> rule_names = {"vanilla", "deconvnet", "guided"};
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
                              "conv2[{},7,7] / d pixels. Red is positive, blue negative. Under the guided rule no "
                              "negative signal passes a ReLU, yet pixels still get negative values: the last step, "
                              "conv1's weights, has both signs.",
                              data::kFashionClasses[predicted], best));
    lesson.say("vanilla is murky (lesson 6); deconvnet ignores where the input was off; guided is both: sharp but");
    lesson.say("no longer a gradient of anything (lesson 12 shows it barely depends on the weights).");

    lesson.step("The lecture's cat: the photo model (SSD-MobileNetV2), where every rectifier is a ReLU6");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& photo_spec = photo_model.info().input;
    const lesson::Photo photo = lesson.photo();
    const Tensor& cat = photo.input;
    const int64_t cat_class = photo.target;
    const float cat_p = photo_model.probabilities(explain::scores(photo_model, cat)).data()[cat_class];
    lesson.number(fmt::format("p({}) on {}", photo.target_name, photo.name), cat_p, "{:.4f}");
    // One neuron, as in the lecture: a deep layer (19x19), at the cat's left eye, the channel
    // most active there (below 6: a ReLU6 at its ceiling passes no gradient at all).
    const std::string layer = "expanded_conv_13/expand/relu6";
    const Tensor features = photo_model.forward_until(cat, layer);
    const int64_t fy = 115 * features.dim(2) / 300, fx = 110 * features.dim(3) / 300;
    int64_t channel = 0;
    float strongest = 0.f;
    for (int64_t c = 0; c < features.dim(1); ++c) {
      const float v = features.at({0, c, fy, fx});
      if (v < 6.f && v > strongest) strongest = v, channel = c;
    }
    lesson.say("neuron: layer {} channel {} at ({}, {}), value {:.2f}; every other neuron of the layer is seeded 0",
               layer, channel, fy, fx, strongest);
    // Two boxes around the eyes (10% of the image): how much of each map's |g| lands there.
    auto eye_share = [](const Tensor& g) { return lesson::share_in_boxes(g, lesson::kChelseaEyes); };
    const io::Image shown = photo.at_own_aspect(preprocess::input_to_image(cat, photo_spec));
    std::vector<io::Image> cat_tiles = {viz::titled(shown, fmt::format("{}, p({}) = {:.2f}", photo.name, photo.target_name, cat_p))};
    std::vector<io::Image> neuron_tiles = {viz::titled(shown, "the same input")};
    std::vector<double> cat_shares, neuron_shares;
    for (const auto& [name, rule] : relu_rules) {
      const std::string rule_name = std::string(name).substr(0, std::string(name).find(' '));
      // max |g| over the color channels (Simonyan et al.), each map clipped at its own 99th percentile
      auto show_magnitude = [&](const Tensor& g, const std::string& title) {
        lesson.say("{}: {}", title, viz::clip_note(g));
        return viz::titled(photo.at_own_aspect(viz::picture(g, viz::Normalize::Percentile99, viz::Colormap::Gray)), title);
      };
      const Tensor g_cat = explain::class_gradient(photo_model, cat, {cat_class}, rule);
      const Tensor g_neuron = explain::neuron_gradient(photo_model, cat, {layer, channel, fy, fx}, rule);
      cat_shares.push_back(eye_share(g_cat));
      neuron_shares.push_back(eye_share(g_neuron));
      lesson.say("{:<10} Cat score: {:.0f}% of |g| in the eye boxes | the neuron: {:.0f}%", rule_name, 100 * cat_shares.back(),
                 100 * neuron_shares.back());
      cat_tiles.push_back(show_magnitude(g_cat, fmt::format("{}: d score(Cat)/d pixels", rule_name)));
      neuron_tiles.push_back(show_magnitude(g_neuron, fmt::format("{}: d neuron/d pixels", rule_name)));
    }
    lesson.number("guided, Cat score: share of |g| in the eye boxes", cat_shares[2], "{:.3f}");
    lesson.number("vanilla, Cat score: share of |g| in the eye boxes", cat_shares[0], "{:.3f}");
    std::vector<io::Image> rows = cat_tiles;
    rows.insert(rows.end(), neuron_tiles.begin(), neuron_tiles.end());
    lesson.figure("cat_rules.png",
                  viz::stack({viz::grid(rows, 4, 6), viz::color_bar(viz::Colormap::Gray, 300, "0", "", "99th percentile of |g| (per map) and above")}),
                  fmt::format("The lecture's figure (lecture 97), drawn at the photo's own aspect ratio. Top: d score({}) "
                              "/ d pixels of {} through the photo model, max |g| over R, G, B, each map clipped at its own "
                              "99th percentile of |g| (white: the brightest 1%). Bottom: one neuron of {} "
                              "at the left eye, the rest of its layer seeded 0. The eye boxes (10% of the image) hold "
                              "{:.0f}% of the vanilla map's |g| and {:.0f}% of the guided one's for the Cat score, "
                              "{:.0f}% and {:.0f}% for the neuron: guided backprop is sharp on the eyes.",
                              photo.target_name, photo.name, layer, 100 * cat_shares[0], 100 * cat_shares[2], 100 * neuron_shares[0],
                              100 * neuron_shares[2]),
                  "Khapra 97: one neuron back-propagated three ways; Balasubramanian 39 (e): deconvnet next to guided backprop");
  });
}
