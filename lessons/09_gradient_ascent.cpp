// Lesson 9: gradient ascent -- the image a class (or a neuron) wants.
//
// Backward gives d score / d image. Instead of looking at it, follow it: start from a
// blank image and repeatedly step uphill, x += lr * (d score/dx - 2 lambda x). The L2
// term keeps the image from growing without bound (Simonyan et al.'s class model
// visualization). Jitter and blur keep it from exploiting high-frequency patterns.
#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"09_gradient_ascent", "Gradient ascent: the image a class or a neuron wants",
                                     "Class model visualization for every class from a zero image, with L2 only and "
                                     "with jitter and blur; frames of one ascent; the same for neurons of conv1, "
                                     "conv2 and fc1."});
  return lesson.run([&] {
    nn::Sequential& model = lesson.model();
    const int steps = lesson.smoke() ? 40 : 200;
    const int scale = 4;
    auto show = [&](const Tensor& x) {  // signed: 0 (the mean image) is mid-gray
      return viz::picture(x, viz::Normalize::Signed, viz::Colormap::Gray, scale);
    };
    auto probability = [&](const Tensor& x, int64_t c) { return softmax(explain::scores(model, x), 1).at({0, c}); };

    lesson.step(fmt::format("Class model visualization: maximize score_c(x) - 1e-3 ||x||^2 from x = 0, {} steps", steps));
    explain::AscentOptions plain;
    plain.steps = steps;
    plain.learning_rate = 1.f;
    plain.l2 = 1e-3f;
    std::vector<io::Image> plain_tiles, smooth_tiles;
    double lowest_p = 1.0;
    for (int64_t c = 0; c < 10; ++c) {
      const Tensor x = explain::ascend(Tensor::zeros({1, 1, 28, 28}), explain::class_score(model, c), plain);
      const float p = probability(x, c);
      lowest_p = std::min(lowest_p, static_cast<double>(p));
      lesson.say("{:<12} score {:8.2f}   p = {:.4f}", data::kFashionClasses[c], explain::scores(model, x).at({0, c}), p);
      plain_tiles.push_back(show(x));
    }
    lesson.number("lowest p(class) over the ten images", lowest_p, "{:.4f}");
    lesson.figure("classes_l2.png", viz::grid(plain_tiles, 5, 4),
                  "The image each class wants (L2 only), T-shirt/top to Ankle boot: gradient ascent from a blank "
                  "image. Mid-gray is the data set's mean pixel; light is brighter.");

    lesson.step("The same with jitter (random shifts of up to 2 pixels) and a Gaussian blur every 10 steps");
    explain::AscentOptions regularized = plain;
    regularized.jitter = 2;
    regularized.blur_every = 10;
    regularized.blur_sigma = 0.6f;
    regularized.seed = 1;
    for (int64_t c = 0; c < 10; ++c) {
      const Tensor x = explain::ascend(Tensor::zeros({1, 1, 28, 28}), explain::class_score(model, c), regularized);
      smooth_tiles.push_back(show(x));
      lesson.say("{:<12} p = {:.4f}", data::kFashionClasses[c], probability(x, c));
    }
    lesson.figure("classes_jitter_blur.png", viz::grid(smooth_tiles, 5, 4),
                  "Jitter and blur remove the pixel-level noise the network also responds to; what is left looks more "
                  "like the garment.");

    lesson.step("Frames of one ascent (Trouser) at steps 1, 2, 3, 5, 8, 13, 21, 34, 55 and the last");
    std::vector<io::Image> frames;
    explain::AscentOptions framed = regularized;
    framed.on_step = [&](int step, const Tensor& x, float objective) {
      const std::vector<int> keep = {1, 2, 3, 5, 8, 13, 21, 34, 55, steps};
      if (std::find(keep.begin(), keep.end(), step) != keep.end()) {
        frames.push_back(show(x));
        lesson.say("step {:>3}: objective {:8.2f}", step, objective);
      }
    };
    explain::ascend(Tensor::zeros({1, 1, 28, 28}), explain::class_score(model, 1), framed);
    lesson.figure("frames.png", viz::grid(frames, 5, 4), "Trouser emerging, left to right, top to bottom.");

    lesson.step("Single neurons of conv1, conv2 and fc1 (before their ReLU, so a neuron that starts off still has a gradient)");
    std::vector<io::Image> neuron_tiles;
    explain::AscentOptions neuron_options = plain;  // no jitter: a small receptive field would just move away
    neuron_options.learning_rate = 0.5f;
    neuron_options.l2 = 1e-2f;
    for (const explain::Neuron& n : std::vector<explain::Neuron>{{"conv1", 0, 14, 14}, {"conv1", 3, 14, 14}, {"conv1", 7, 14, 14},
                                                                 {"conv1", 11, 14, 14}, {"conv1", 15, 14, 14}, {"conv2", 0, 7, 7},
                                                                 {"conv2", 5, 7, 7}, {"conv2", 12, 7, 7}, {"conv2", 20, 7, 7},
                                                                 {"conv2", 31, 7, 7}, {"fc1", 0}, {"fc1", 17},
                                                                 {"fc1", 42}, {"fc1", 77}, {"fc1", 101}}) {
      const Tensor x = explain::ascend(Tensor::zeros({1, 1, 28, 28}), explain::neuron_activation(model, n), neuron_options);
      Tensor a;
      {
        NoGrad no_grad;
        a = model.forward_until(x, n.layer);
      }
      const float value = a.ndim() == 4 ? a.at({0, n.channel, n.y, n.x}) : a.at({0, n.channel});
      lesson.say("{} channel {:>3}: activation {:.2f}", n.layer, n.channel, value);
      neuron_tiles.push_back(show(x));
    }
    lesson.figure("neurons.png", viz::grid(neuron_tiles, 5, 4),
                  "Rows: five conv1 channels (a small patch: their receptive field is 5x5), five conv2 channels "
                  "(14x14), five fc1 units (the whole image).");
  });
}
