// Lesson 12: sanity checks -- does the explanation depend on what the model learned?
//
// Adebayo et al. (2018): randomize the weights layer by layer from the top (cascading
// randomization) and recompute each explanation. A method that explains the model
// must change when the model does. We measure the Spearman rank correlation of each
// method's map (|values|) with the map of the trained model.
#include <algorithm>
#include <numeric>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;


int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "12_sanity_checks", .title = "Sanity checks: cascading randomization of the weights",
                                     .summary = "Randomize fc2, then fc1, conv2, conv1 (cumulatively) and recompute saliency, "
                                     "guided backprop, Grad-CAM and integrated gradients: rank correlation with the "
                                     "trained model's maps. Guided backprop and integrated gradients move much less than they should."});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const std::vector<int64_t> picks = lesson.smoke() ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 1, 2, 4, 9};

    const std::vector<std::string> methods = {"saliency", "guided backprop", "Grad-CAM", "integrated gradients"};
    auto explain_all = [&](const Tensor& image, int64_t target) {
      const Tensor cam_map = explain::grad_cam(model, image, {target}, "relu2");
      return std::vector<Tensor>{
          explain::saliency(model, image, {target}), explain::guided_backprop(model, image, {target}),
          upsample(reshape(cam_map, {1, 14, 14}), 28, 28, Interpolation::Bilinear),
          explain::integrated_gradients(model, image, {target}, Tensor::full(image.shape(), -data::kFashionMean / data::kFashionStd), 32)};
    };

    lesson.step("Explanations of the trained model");
    std::vector<Tensor> images;
    std::vector<std::vector<Tensor>> trained;
    for (int64_t index : picks) {
      images.push_back(data::normalize_pixels(sample.pixels.data() + index * 784));
      trained.push_back(explain_all(images.back(), sample.labels[index]));
    }
    // Is the trained model's Grad-CAM on the garment at all? The share of its mass on the
    // garment's pixels, next to the share of the image the garment covers (what a map blind
    // to the garment would give).
    const size_t grad_cam = 2;
    double mass_on = 0, area = 0;
    for (size_t i = 0; i < picks.size(); ++i) {
      const Tensor& x = images[i];
      const float background = *std::min_element(x.data(), x.data() + x.numel());
      double on = 0, total = 0, covered = 0;
      for (int64_t p = 0; p < x.numel(); ++p) {
        const bool garment = x.data()[p] > background + 0.1f;
        const double v = trained[i][grad_cam].data()[p];
        total += v, on += garment ? v : 0, covered += garment;
      }
      lesson.say("test image {} ({}): Grad-CAM puts {:.0f}% of its mass on the garment, which covers {:.0f}% of the image",
                 picks[i], data::kFashionClasses[sample.labels[picks[i]]], total > 0 ? 100 * on / total : 0.0,
                 100 * covered / static_cast<double>(x.numel()));
      mass_on += (total > 0 ? on / total : 0.0) / static_cast<double>(picks.size());
      area += covered / static_cast<double>(x.numel()) / static_cast<double>(picks.size());
    }
    lesson.number("trained Grad-CAM (relu2): mean share of its mass on the garment", mass_on, "{:.2f}");
    lesson.number("the garments' mean share of the image", area, "{:.2f}");
    lesson.say("Grad-CAM of this small model is weak: {:.0f}% of its mass on garments that cover {:.0f}% of the images, no more",
               100 * mass_on, 100 * area);
    lesson.say("than a map blind to the garment would put there; on some images (the sneaker) it lights the background around");
    lesson.say("the object. It is the trained reference all the same: the test asks whether the map changes with the weights.");

    const std::vector<std::string> layers = {"fc2", "fc1", "conv2", "conv1"};
    std::vector<viz::Series> series(methods.size());
    for (size_t m = 0; m < methods.size(); ++m) series[m] = {methods[m], {0}, {1.0}};
    std::vector<io::Image> tiles;
    const int scale = 4;
    auto show = [&](const Tensor& map) {
      return viz::picture(map, viz::Normalize::MaxAbs, viz::Colormap::Viridis, scale);
    };
    for (size_t m = 0; m < methods.size(); ++m) tiles.push_back(viz::titled(show(trained[0][m]), methods[m] + ", trained", 11));

    Generator gen(12);
    for (size_t step = 0; step < layers.size(); ++step) {
      lesson.step("Randomize " + layers[step] + " (and keep everything above it random)");
      for (Tensor p : model.layer(layers[step]).parameters()) {
        const Tensor fresh = Tensor::randn(p.shape(), gen, 0.f, 1.f / std::sqrt(static_cast<float>(p.numel() / p.dim(0))));
        std::copy(fresh.data(), fresh.data() + fresh.numel(), p.data());
      }
      std::vector<double> mean(methods.size(), 0.0);
      for (size_t i = 0; i < picks.size(); ++i) {
        const std::vector<Tensor> now = explain_all(images[i], sample.labels[picks[i]]);
        for (size_t m = 0; m < methods.size(); ++m) mean[m] += lesson::rank_correlation_of_magnitudes(now[m], trained[i][m]) / static_cast<double>(picks.size());
        if (i == 0)
          for (size_t m = 0; m < methods.size(); ++m)
            tiles.push_back(viz::titled(show(now[m]), step == 0 ? "fc2 random" : "fc2 to " + layers[step] + " random", 11));
      }
      for (size_t m = 0; m < methods.size(); ++m) {
        lesson.say("{:<22} rank correlation with the trained model: {:+.3f}", methods[m], mean[m]);
        series[m].x.push_back(static_cast<double>(step + 1));
        series[m].y.push_back(mean[m]);
      }
      if (step + 1 == layers.size())
        for (size_t m = 0; m < methods.size(); ++m) lesson.number(methods[m] + ", all layers random", mean[m], "{:+.3f}");
    }
    lesson.chart("rank_correlation.svg",
                 viz::line_chart(series, fmt::format("Cascading randomization of FashionCNN (mean over {} test images)", picks.size()),
                                 "layers randomized so far (cumulative, from the top)", "Spearman correlation with the trained map",
                                 640, 400, {"none (trained)", "fc2", "+ fc1", "+ conv2", "+ conv1"}),
                 fmt::format("Rank correlation (Spearman, of |map|) of each method's map with the trained model's, the mean "
                 "over {} test images, as more layers are randomized from the "
                 "top. A method that explains the model should fall toward 0. Saliency and Grad-CAM do; guided backprop "
                 "falls slowly, and integrated gradients hardly at all: multiplied by (image - black), its magnitude is "
                 "mostly the image itself.", picks.size()));
    lesson.figure("maps.png",
                  viz::stack({viz::grid(tiles, 4, 3), viz::color_bar(viz::Colormap::Viridis, 300, "0", "", "max (per map)")}),
                  fmt::format("Test image 0. Columns: saliency, guided backprop, Grad-CAM (at relu2, 14x14), integrated "
                              "gradients (each map scaled to its own largest value). Rows: the trained model, then fc2, fc1, "
                              "conv2, conv1 randomized in turn, cumulatively (titles: which layers are random). The trained "
                              "Grad-CAM is weak on this model: over the {} test images it puts {:.0f}% of its mass on the "
                              "garment, which covers {:.0f}% of the image, so it is little better than a map blind to the "
                              "garment (on test image 0: a blob at the left edge and scattered spots). An all-dark "
                              "Grad-CAM tile is a map that is 0 everywhere: with random layers the weighted sum of the maps "
                              "can be negative everywhere, and Grad-CAM keeps only its positive part.",
                              picks.size(), 100 * mass_on, 100 * area));
  });
}
