// Lesson 8: guided backprop -- changing the ReLU's backward rule.
//
// The true gradient sends the signal back through a ReLU where its input was positive.
// Zeiler & Fergus's deconvnet instead passes whatever part of the signal is positive;
// Springenberg et al.'s guided backprop does both. None of this edits the model: the
// rule is swapped for the length of one backward pass with a scoped override.
#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/preprocess.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"08_guided_backprop", "Guided backprop: changing the ReLU's backward rule",
                                     "The same image explained with the vanilla, deconvnet and guided ReLU rules, for a "
                                     "class score and for one neuron of conv2 with the rest of its layer zeroed.",
                                     true, true, "assets/fashion-png/9_ankle_boot.png"});
  return lesson.run([&] {
    lesson.step("Load the model and the image");
    nn::Sequential& model = lesson.model();
    preprocess::InputSpec spec = model.info().input;
    spec.invert_light_background = false;  // the lesson's images are Fashion-MNIST's own
    const Tensor image = preprocess::image_to_input(lesson.image(), spec);
    const Tensor logits = explain::scores(model, image);
    const int64_t predicted = argmax(logits)[0];
    lesson.say("{}: predicted {} ({})", lesson.image_path(), predicted, data::kFashionClasses[predicted]);

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
    auto correlation = [](const Tensor& a, const Tensor& b) {
      double ma = 0, mb = 0;
      for (int64_t i = 0; i < a.numel(); ++i) ma += a.data()[i], mb += b.data()[i];
      ma /= a.numel();
      mb /= b.numel();
      double sab = 0, saa = 0, sbb = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        sab += (a.data()[i] - ma) * (b.data()[i] - mb);
        saa += (a.data()[i] - ma) * (a.data()[i] - ma);
        sbb += (b.data()[i] - mb) * (b.data()[i] - mb);
      }
      return sab / std::sqrt(saa * sbb + 1e-30);
    };
    lesson.number("corr(vanilla, deconvnet)", correlation(class_maps[0], class_maps[1]), "{:.3f}");
    lesson.number("corr(vanilla, guided)", correlation(class_maps[0], class_maps[2]), "{:.3f}");

    lesson.step("Figures: top row the class score, bottom row the conv2 neuron; 0 is white, red positive, blue negative");
    const int scale = 8;
    auto show = [&](const Tensor& g) {
      return viz::picture(g, viz::Normalize::Signed, viz::Colormap::Diverging, scale);
    };
    const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
    std::vector<io::Image> tiles = {input};
    for (const Tensor& g : class_maps) tiles.push_back(show(g));
    tiles.push_back(input);
    for (const Tensor& g : neuron_maps) tiles.push_back(show(g));
    lesson.figure("rules.png", viz::grid(tiles, 4, 4),
                  fmt::format("Columns: input, vanilla, deconvnet, guided. Top: d score({}) / d pixels. Bottom: d "
                              "conv2[{},7,7] / d pixels. Red is positive, blue negative. Under the guided rule no "
                              "negative signal passes a ReLU, yet pixels still get negative values: the last step, "
                              "conv1's weights, has both signs.",
                              data::kFashionClasses[predicted], best));
    lesson.say("vanilla is murky (lesson 6); deconvnet ignores where the input was off; guided is both: sharp but");
    lesson.say("no longer a gradient of anything (lesson 12 shows it barely depends on the weights).");
  });
}
