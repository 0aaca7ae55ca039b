// Lesson 8: guided backprop -- changing the ReLU's backward rule.
//
// The true gradient sends the signal back through a ReLU where its input was positive.
// Zeiler & Fergus's deconvnet instead passes whatever part of the signal is positive;
// Springenberg et al.'s guided backprop does both. None of this edits the model: the
// rule is swapped for the length of one backward pass with a scoped override.
#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
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
    const Tensor image = viz::image_to_input(lesson.image(), 28, data::kFashionMean, data::kFashionStd, false);
    const Tensor logits = explain::scores(model, image);
    const int64_t predicted = std::max_element(logits.data(), logits.data() + 10) - logits.data();
    lesson.say("{}: predicted {} ({})", lesson.image_path(), predicted, data::kFashionClasses[predicted]);

    lesson.step("The three rules, one forward pass each, for the predicted class score");
    const std::vector<std::pair<const char*, explain::ReluRule>> rules = {
        {"vanilla   (x>0)*g", explain::ReluRule::Vanilla},
        {"deconvnet max(g,0)", explain::ReluRule::Deconvnet},
        {"guided    (x>0)*max(g,0)", explain::ReluRule::Guided}};
    std::vector<Tensor> class_maps, neuron_maps;
    for (const auto& [name, rule] : rules) {
      const Tensor g = explain::class_gradient(model, image, {predicted}, rule);
      int64_t negative = 0;
      for (int64_t i = 0; i < g.numel(); ++i) negative += g.data()[i] < 0;
      lesson.say("{:<26} negative entries: {:>3} of 784, largest |g| {:.3f}", name, negative,
                 tg::max(tg::abs(g)).item());
      class_maps.push_back(g);
    }

    lesson.step("One neuron: the most active conv2 unit at the image center, every other conv2 neuron seeded 0");
    model(image);
    const Tensor conv2 = model.activation("relu2");
    int64_t best = 0;
    for (int64_t c = 1; c < conv2.dim(1); ++c)
      if (conv2.at({0, c, 7, 7}) > conv2.at({0, best, 7, 7})) best = c;
    lesson.say("conv2 channel {} has the largest value at (7,7): {:.3f}", best, conv2.at({0, best, 7, 7}));
    for (const auto& [name, rule] : rules) neuron_maps.push_back(explain::neuron_gradient(model, image, {"conv2", best, 7, 7}, rule));

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
                              "conv2[{},7,7] / d pixels. Guided backprop keeps the object's edges and drops the "
                              "negative clutter.",
                              data::kFashionClasses[predicted], best));
    lesson.say("vanilla is murky (lesson 6); deconvnet ignores where the input was off; guided is both: sharp but");
    lesson.say("no longer a gradient of anything (lesson 12 shows it barely depends on the weights).");
  });
}
