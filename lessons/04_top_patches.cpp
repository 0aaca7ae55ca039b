// Lesson 4: top patches -- ask the data what a unit responds to.
//
// A conv2 unit at position (y, x) sees a 14x14 window of the input: its receptive
// field. Run all 1,000 sample images, and for a few conv2 channels keep the 9 windows
// where the channel fired most. What they share is what the unit detects. The other way
// to ask is to synthesize: the image a unit wants, by gradient ascent -- here for three
// neurons at three depths of the photo model (lesson 9 does the same for classes).
#include <chrono>
#include <map>
#include <numeric>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/explain/recipes.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "04_top_patches", .title = "Top patches: the receptive fields that excite a unit most",
                                     .summary = "For six conv2 channels, the 9 input patches (their 14x14 receptive fields) from "
                                     "1,000 test images with the highest activation; the images three photo-model neurons at "
                                     "three depths want.", .uses_photo = true});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const int64_t count = lesson.smoke() ? 100 : sample.size();

    lesson.step("Receptive field of relu2[c, y, x]: conv1 (5x5, pad 2), pool (2), conv2 (5x5, pad 2) -> 14x14 input pixels");
    lesson.say("relu2 position (y, x) covers input rows 2y-6 .. 2y+7 and columns 2x-6 .. 2x+7 (clipped at the border)");
    // That is the window of the centre (7, 7), rows and columns 8 .. 21, moved 2 pixels a position.
    // (explain::receptive_field measures the same with one backward pass; `tgc top-patches` uses it.)
    const explain::ReceptiveField field{.centre = {.y0 = 8, .x0 = 8, .y1 = 22, .x1 = 22}, .centre_y = 7, .centre_x = 7,
                                        .stride_y = 2, .stride_x = 2, .channels = 32};

    lesson.step(fmt::format("Run {} test images and record relu2", count));
    std::vector<int64_t> order(static_cast<size_t>(count));
    std::iota(order.begin(), order.end(), 0);
    const data::Batch batch = data::make_batch(sample, order, 0, count);
    explain::scores(model, batch.images);
    const Tensor a = model.activation("relu2");  // [N, 32, 14, 14]

    // Six channels whose top patches share a concept (chosen by their agreement, in the titles; not
    // every channel has one: channel 9's patches, from five classes, share nothing).
    const std::vector<int64_t> channels = {0, 5, 28, 12, 20, 31};
    const int scale = 4;
    std::vector<io::Image> rows;
    for (int64_t c : channels) {
      // The 9 strongest (image, y, x), at most one per image so the patches are not all alike.
      const std::vector<explain::Patch> best = explain::top_patches(explain::strongest_positions(a, c), 9);
      std::vector<io::Image> patches;
      std::vector<Tensor> patch_values;  // for the patches' agreement
      std::map<std::string, int> classes;
      std::string labels;
      for (const explain::Patch& p : best) {
        const io::Image image{28, 28, 1, std::vector<uint8_t>(sample.pixels.begin() + p.image * 784, sample.pixels.begin() + (p.image + 1) * 784)};
        const io::Image patch = explain::crop(image, field.window(p.y, p.x));
        patches.push_back(viz::scale_nearest(patch, scale));
        patch_values.push_back(viz::from_image(patch));
        labels += fmt::format(" {}", data::kFashionClasses[sample.labels[p.image]]);
        ++classes[data::kFashionClasses[sample.labels[p.image]]];
      }
      // Do the patches share one concept? Their agreement: the mean correlation of every pair
      // of patches, pixel by pixel (1: the same picture nine times; 0: nothing in common).
      double agreement = 0;
      int pairs = 0;
      for (size_t i = 0; i < patch_values.size(); ++i)
        for (size_t j = i + 1; j < patch_values.size(); ++j) agreement += lesson::pearson(patch_values[i], patch_values[j]), ++pairs;
      agreement /= std::max(pairs, 1);
      int most_common = 0;
      for (const auto& [name, k] : classes) most_common = std::max(most_common, k);
      lesson.say("channel {:>2}: top activation {:.2f}; patches' agreement {:.2f}; from:{}", c, best.front().value, agreement,
                 labels);
      rows.push_back(viz::titled(viz::grid(patches, 9, 2, 128),
                                 fmt::format("conv2 channel {}: top activation {:.2f}, patches' agreement {:.2f}, {} of 9 one class", c,
                                             best.front().value, agreement, most_common)));
    }
    lesson.figure("top_patches.png", viz::grid(rows, 1, 6),
                  "One row per conv2 channel (0, 5, 28, 12, 20, 31): the 14x14 input patches where it fired most, "
                  "strongest first, one per image. Shared edges and textures are what the unit detects: a shoe's "
                  "upper edge, bright below dark (0), a garment's rounded top-left corner (5), a pullover's bottom hem, bright above "
                  "a dark edge (28), a trouser's legs (12), one thin vertical bar (20), a sandal's straps (31). Titles: "
                  "the patches' agreement (the mean correlation of every pair of the nine, pixel by pixel: 1 is the "
                  "same picture nine times) and how many come from one class. The channels are picked for a shared "
                  "concept; many of the 32 have none (channel 9's top patches come from five classes and share "
                  "nothing visible). Thin shapes at shifting places agree less pixel by pixel than they look (31).");

    lesson.step("The photo model: the image a neuron wants, at three depths (lecture 39 (b))");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const Tensor cat = lesson.photo().input;
    // One neuron per depth, at the center of its map, of the channel whose map (after ReLU6)
    // varies most over the photo -- lesson 3's ranking, without its exclusion of channels lit
    // by the zero padding (the neuron is at the center, not at the lit edges). Ranking by activity instead picks
    // channels stuck near ReLU6's ceiling over the whole photo, which respond to nothing in
    // particular. The neuron is read before its ReLU6: from a gray start most neurons are at
    // 0 (or at 6), where the rectifier passes no gradient and the ascent could not begin.
    std::vector<explain::Neuron> neurons;
    for (const std::string layer : {"expanded_conv_1/expand", "expanded_conv_6/expand", "expanded_conv_13/expand"}) {
      const Tensor map = clamp(photo_model.forward_until(cat, layer), 0.f, 6.f);  // the ReLU6 of it
      const int64_t h = map.dim(2), w = map.dim(3);
      explain::Neuron n{layer, 0, h / 2, w / 2};
      double best_variance = -1;
      for (int64_t c = 0; c < map.dim(1); ++c) {
        const float* m = map.data() + c * h * w;
        double total = 0, squares = 0;
        for (int64_t i = 0; i < h * w; ++i) total += m[i], squares += static_cast<double>(m[i]) * m[i];
        const double variance = squares / static_cast<double>(h * w) - (total / (h * w)) * (total / (h * w));
        if (variance > best_variance) best_variance = variance, n.channel = c;
      }
      lesson.say("{}: {}x{}; channel {} (its map's std over the photo {:.2f}), the neuron at ({}, {}): {:.2f} on the photo before ReLU6",
                 layer, h, w, n.channel, std::sqrt(best_variance), n.y, n.x,
                 photo_model.activation(layer).at({0, n.channel, n.y, n.x}));
      neurons.push_back(n);
    }
    // All three climb in one batch, each image for its own neuron, with the class
    // visualization recipe of lesson 9: the decorrelated image, small random shifts.
    const int64_t depth_count = static_cast<int64_t>(neurons.size());
    const explain::DecorrelatedImage decorrelated(spec.height, spec.width);
    std::vector<explain::Objective> each;
    for (const explain::Neuron& n : neurons) each.push_back(explain::neuron_activation(photo_model, n));
    const explain::Objective all = [&](const Tensor& x) {
      Tensor total = each[0](slice(x, 0, 0, 1));
      for (int64_t k = 1; k < depth_count; ++k) total = add(total, each[static_cast<size_t>(k)](slice(x, 0, k, k + 1)));
      return total;
    };
    const explain::Objective robust = explain::transformed(all, explain::kNeuronShifts, 7);
    explain::AscentOptions options = explain::photo_neuron_recipe(lesson.smoke() ? 2 : 40);
    options.on_step = [&](int step, const Tensor&, float) { lesson.progress("ascent", step, options.steps); };
    const auto start = std::chrono::steady_clock::now();
    const Tensor z = explain::ascend(Tensor::zeros({depth_count, 3, spec.height, spec.width}),
                                     [&](const Tensor& params) { return robust(decorrelated(params)); }, options);
    lesson.say("{} neurons x {} steps: {:.1f} s", depth_count, options.steps,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    NoGrad no_grad;
    const Tensor images = decorrelated(z);
    std::vector<io::Image> tiles, crops;
    for (int64_t k = 0; k < depth_count; ++k) {
      const explain::Neuron& n = neurons[static_cast<size_t>(k)];
      const Tensor x = slice(images, 0, k, k + 1);
      const float reached = photo_model.forward_until(x, n.layer).at({0, n.channel, n.y, n.x});
      const std::string name = n.layer.substr(0, n.layer.find('/'));
      lesson.say("{} #{}: {:.2f} (on the photo {:.2f})", name, n.channel, reached,
                 photo_model.forward_until(cat, n.layer).at({0, n.channel, n.y, n.x}));
      const io::Image picture = preprocess::input_to_image(x, spec);
      tiles.push_back(viz::titled(picture, fmt::format("{} #{} at the center: {:.2f}", name, n.channel, reached)));
      // The middle 76x76 pixels, enlarged: a shallow neuron only sees a small patch.
      io::Image crop{76, 76, 3, std::vector<uint8_t>(76 * 76 * 3)};
      for (int y = 0; y < 76; ++y)
        for (int x0 = 0; x0 < 76; ++x0)
          for (int c = 0; c < 3; ++c) crop.at(y, x0, c) = picture.at(112 + y, 112 + x0, c);
      crops.push_back(viz::titled(viz::scale_nearest(crop, 4), "its middle 76x76, enlarged 4x"));
    }
    tiles.insert(tiles.end(), crops.begin(), crops.end());
    lesson.figure("photo_neurons.png", viz::grid(tiles, static_cast<int>(depth_count), 6),
                  std::string("The image one neuron of the photo model wants, at three depths (lecture 39 (b)): the "
                              "center neuron of expanded_conv_1 (150x150 map), expanded_conv_6 (38x38) and expanded_conv_13 "
                              "(19x19) expansions, before their ReLU6, each of the channel whose map varies most over the "
                              "photo (largest spatial variance after ReLU6; ranked by activity on the cat, "
                              "expanded_conv_13's pick was a channel near ReLU6's ceiling over the whole photo). This is lesson "
                              "3's ranking without its exclusion of channels whose map edges the zero padding lights: the "
                              "neuron here sits at the map's center, away from those edges, so such a channel can be "
                              "picked") +
                      (lesson.image_path() == lesson::Lesson::kDefaultPhoto
                           ? " (on the cat, expanded_conv_1's #77, which lesson 3 leaves out, its first tile there being #43; the other two picks are lesson 3's first tiles)"
                           : "") +
                      std::string(". Each is climbed "
                              "from gray with the decorrelated image and 2-pixel shifts; titles give the value it reaches. "
                              "Bottom: the middle of each image enlarged. The deeper the neuron, the larger the region it "
                              "shapes and the more complex the pattern") +
                      (lesson.image_path() == lesson::Lesson::kDefaultPhoto
                           ? ": a dark dot under a bright edge for expanded_conv_1 (a few pixels; the blue tint elsewhere "
                             "is the parameterization's lowest frequencies, which the neuron also nudges), a dark blob in "
                             "a bright rim for expanded_conv_6, and for expanded_conv_13 (a channel that fires on the "
                             "cat's white chest and cheek) pale, fur-like strands over a dark band, about half the photo "
                             "wide."
                           : "."),
                  "Balasubramanian 39 (b): intermediate neurons at three depths");
  });
}
