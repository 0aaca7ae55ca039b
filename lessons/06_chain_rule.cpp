// Lesson 6: the chain rule, all the way to the input pixels.
//
// A gradient with respect to the input is nothing but the chain rule: a sum, over
// every path from an input to the output, of the product of the local derivatives
// along the path. We compute it by hand on a network small enough to list every
// path, check it against the tape, print the tape itself, and then take the same
// gradient through the trained CNN -- for one neuron and for a class score.
#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/lesson.h"
#include "tinygrad-cpp/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {"06_chain_rule", "The chain rule, all the way to the input",
                                     "A 4-input network's gradient summed over paths by hand and checked against the "
                                     "tape; then the gradient of one neuron and of a class score with respect to an "
                                     "image, shown with 0 as mid-gray."});
  return lesson.run([&] {
    lesson.step("A tiny network: h = w2 . relu(W1 x), with 4 inputs, 3 hidden units and 1 output");
    const Tensor x = Tensor::from_vector({1.0f, -2.0f, 0.5f, 3.0f}, {1, 4}, true);
    const Tensor W1 = Tensor::from_vector({0.5f, -0.25f, 1.0f, 0.2f,  //
                                           -1.0f, 0.5f, 0.25f, 0.1f,  //
                                           0.3f, 0.8f, -0.6f, -0.4f},
                                          {3, 4});
    const Tensor w2 = Tensor::from_vector({2.0f, -1.0f, 0.5f}, {1, 3});
    const Tensor z = linear(x, W1);  // pre-activations
    const Tensor a = relu(z);
    const Tensor h = linear(a, w2);
    lesson.say("x  = {}", x.str());
    lesson.say("z  = W1 x = {}", z.str());
    std::string off;
    for (int64_t j = 0; j < 3; ++j)
      if (z.at({0, j}) <= 0) off += fmt::format(" {}", j);
    lesson.say("a  = relu(z) = {}   (off:{} -- the paths through them are cut)", a.str(), off);
    lesson.number("h", h.item());

    lesson.step("The tape: every op that ran, in order. Backward walks it from the bottom up");
    fmt::print("{}", tape().str());

    lesson.step("dh/dx_i by hand: the sum over paths i -> hidden j -> h of W1[j,i] * relu'(z_j) * w2[j]");
    std::vector<float> by_hand(4, 0.f);
    for (int64_t i = 0; i < 4; ++i) {
      std::string terms;
      for (int64_t j = 0; j < 3; ++j) {
        const float gate = z.at({0, j}) > 0 ? 1.f : 0.f;
        const float path = W1.at({j, i}) * gate * w2.at({0, j});
        by_hand[i] += path;
        terms += fmt::format("{}{:+.3f}*{:.0f}*{:+.2f}", j ? "  " : "", W1.at({j, i}), gate, w2.at({0, j}));
      }
      lesson.say("dh/dx{} = {}  = {:+.4f}", i, terms, by_hand[i]);
    }

    lesson.step("The tape's answer: h.backward()");
    h.backward();
    float largest_difference = 0.f;
    for (int64_t i = 0; i < 4; ++i) {
      lesson.say("x{}: by hand {:+.4f}   tape {:+.4f}", i, by_hand[i], x.grad().at({0, i}));
      largest_difference = std::max(largest_difference, std::fabs(by_hand[i] - x.grad().at({0, i})));
    }
    lesson.number("largest |by hand - tape|", largest_difference);
    lesson.say("after backward the tape is empty again: {} entries", tape().size());

    lesson.step("The same chain rule through the trained CNN, for a test image");
    nn::Sequential& model = lesson.model();
    const data::Dataset sample = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    const Tensor image = data::normalize_pixels(sample.pixels.data());
    const Tensor logits = explain::scores(model, image);
    const int64_t predicted = argmax(logits)[0];
    lesson.say("test image 0 is labeled {}; the model says {} ({})", data::kFashionClasses[sample.labels[0]], predicted,
               data::kFashionClasses[predicted]);

    lesson.step("Gradient of one neuron: conv2 channel 5 at (7, 7), all other neurons of conv2 seeded with 0");
    const Tensor neuron = explain::neuron_gradient(model, image, {"conv2", 5, 7, 7});
    int64_t nonzero = 0;
    for (int64_t i = 0; i < neuron.numel(); ++i) nonzero += neuron.data()[i] != 0.f;
    lesson.number("input pixels this neuron depends on", static_cast<double>(nonzero), "{:.0f}");
    lesson.say("conv2 sees a 5x5 window of pool1, which sees 10x10 of conv1, which sees 14x14 input pixels");

    lesson.step("Gradient of the class score with respect to every pixel");
    const Tensor score_gradient = explain::saliency(model, image, {predicted});
    int64_t positive = 0, negative = 0;
    for (int64_t i = 0; i < score_gradient.numel(); ++i) {
      positive += score_gradient.data()[i] > 0;
      negative += score_gradient.data()[i] < 0;
    }
    lesson.number("pixels with positive gradient", static_cast<double>(positive), "{:.0f}");
    lesson.number("pixels with negative gradient", static_cast<double>(negative), "{:.0f}");

    const int scale = 8;
    auto gray_map = [&](const Tensor& g) {  // 0 -> mid-gray, the sign as light or dark
      return viz::picture(g, viz::Normalize::Signed, viz::Colormap::Gray, scale);
    };
    const io::Image input = viz::picture(image, viz::Normalize::MinMax, viz::Colormap::Gray, scale);
    lesson.figure("gradients.png", viz::grid({input, gray_map(neuron), gray_map(score_gradient)}, 3, 4),
                  "Left: the input. Middle: d conv2[5,7,7] / d pixels -- nonzero only in the neuron's receptive "
                  "field. Right: d score / d pixels. Mid-gray is 0, light is positive, dark negative.");

    lesson.step("Why the class gradient looks murky");
    lesson.say("every pixel's gradient is a sum over thousands of paths with signs that mostly cancel;");
    lesson.say("it says how the score changes for a tiny change of that pixel alone, not what the object is.");
    lesson.say("Lessons 7 and 8 make it readable: take magnitudes (saliency), or change the ReLU's rule.");
  });
}
