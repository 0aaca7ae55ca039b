// Lesson 1: a neuron's weights are a line.
//
// A first-layer neuron of an MLP with a 2-D input computes relu(w1 x + w2 y + b): it
// is zero on one side of the line w1 x + w2 y + b = 0 and grows on the other. With a
// few such lines a network can carve out any region. Train a small MLP on the two-moons
// toy data set and watch its lines and its decision regions move.
#include <cmath>

#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/nn/optim.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "01_weights_as_lines", .title = "A neuron's weights are a line",
                                     .summary = "An MLP (2 -> 8 -> 2) learning two moons: each first-layer neuron's line "
                                     "w1 x + w2 y + b = 0 and the decision regions, at several points in training.", .uses_model = false});
  return lesson.run([&] {
    lesson.step("Two moons: 200 points, two interleaved half circles with noise (seeded)");
    Generator gen(1);
    const int64_t n = 200;
    Tensor points = Tensor::empty({n, 2});
    std::vector<int64_t> labels;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = i % 2;
      const float t = static_cast<float>(M_PI) * gen.uniform();
      const float x = c == 0 ? std::cos(t) : 1.f - std::cos(t);
      const float y = c == 0 ? std::sin(t) : 0.5f - std::sin(t);
      points.at({i, 0}) = x + gen.normal(0.f, 0.1f) - 0.5f;
      points.at({i, 1}) = y + gen.normal(0.f, 0.1f) - 0.25f;
      labels.push_back(c);
    }

    lesson.step("The model: linear 2 -> 8, relu, linear 8 -> 2; Adam, learning rate 0.05, full batch");
    nn::Sequential model;
    model.add("fc1", std::make_shared<nn::Linear>(2, 8, gen))
        .add("relu", std::make_shared<nn::ReLU>())
        .add("fc2", std::make_shared<nn::Linear>(8, 2, gen));
    optim::Adam adam(model.named_parameters(), 0.05f);
    const auto& fc1 = dynamic_cast<nn::Linear&>(model.layer("fc1"));

    // A picture of the plane [-2, 2] x [-1.5, 1.5]: decision regions, the 8 lines, the data.
    const int width = 320, height = 240;
    auto plane_x = [&](int px) { return -2.f + 4.f * (static_cast<float>(px) + 0.5f) / width; };
    auto plane_y = [&](int py) { return 1.5f - 3.f * (static_cast<float>(py) + 0.5f) / height; };
    auto picture = [&]() {
      Tensor grid_points = Tensor::empty({static_cast<int64_t>(width) * height, 2});
      for (int py = 0; py < height; ++py)
        for (int px = 0; px < width; ++px) {
          grid_points.at({py * width + px, 0}) = plane_x(px);
          grid_points.at({py * width + px, 1}) = plane_y(py);
        }
      Tensor p;
      {
        NoGrad no_grad;
        p = softmax(model(grid_points), 1);
      }
      Tensor unit = Tensor::empty({1, height, width});
      for (int64_t i = 0; i < unit.numel(); ++i) unit.data()[i] = 0.25f + 0.5f * p.at({i, 1});  // pale: p(class 1)
      io::Image image = viz::colorize(unit, viz::Colormap::Diverging);
      // Each neuron's line: pixels within ~1 pixel of w . p + b = 0.
      const float pixel = 4.f / width;
      for (int64_t k = 0; k < 8; ++k) {
        const float w1 = fc1.weight.at({k, 0}), w2 = fc1.weight.at({k, 1}), b = fc1.bias.at({k});
        const float norm = std::sqrt(w1 * w1 + w2 * w2) + 1e-12f;
        for (int py = 0; py < height; ++py)
          for (int px = 0; px < width; ++px)
            if (std::fabs(w1 * plane_x(px) + w2 * plane_y(py) + b) / norm < 0.8f * pixel)
              for (int c = 0; c < 3; ++c) image.at(py, px, c) = 40;
      }
      for (int64_t i = 0; i < n; ++i) {  // the data: dark blue and dark red dots
        const int px = static_cast<int>((points.at({i, 0}) + 2.f) / 4.f * width), py = static_cast<int>((1.5f - points.at({i, 1})) / 3.f * height);
        for (int dy = -2; dy <= 2; ++dy)
          for (int dx = -2; dx <= 2; ++dx) {
            const int y = py + dy, x = px + dx;
            if (y < 0 || y >= height || x < 0 || x >= width || dx * dx + dy * dy > 4) continue;
            image.at(y, x, 0) = labels[i] ? 178 : 33;
            image.at(y, x, 1) = labels[i] ? 24 : 102;
            image.at(y, x, 2) = labels[i] ? 43 : 172;
          }
      }
      return image;
    };

    lesson.step("Train, taking a picture at steps 0, 50, 500 and the last");
    const int steps = lesson.smoke() ? 100 : 3000;
    const std::vector<int> snapshots = {0, 50, 500, steps};
    std::vector<io::Image> frames;
    viz::Series loss_curve{"cross-entropy", {}, {}}, accuracy_curve{"accuracy", {}, {}};
    for (int step = 0; step <= steps; ++step) {
      if (std::find(snapshots.begin(), snapshots.end(), step) != snapshots.end())
        frames.push_back(viz::titled(picture(), fmt::format("step {}", step)));
      adam.zero_grad();
      const Tensor logits = model(points);
      const Tensor loss = cross_entropy(logits, labels);
      int64_t correct = 0;
      for (int64_t i = 0; i < n; ++i) correct += (logits.at({i, 1}) > logits.at({i, 0})) == (labels[i] == 1);
      loss_curve.x.push_back(step);
      loss_curve.y.push_back(loss.item());
      accuracy_curve.x.push_back(step);
      accuracy_curve.y.push_back(static_cast<double>(correct) / n);
      if (step % 500 == 0 || step == steps) lesson.say("step {:>3}: loss {:.4f}, accuracy {:.3f}", step, loss.item(), static_cast<double>(correct) / n);
      if (step == steps) break;
      loss.backward();
      adam.step();
    }
    lesson.number("final training accuracy", accuracy_curve.y.back(), "{:.3f}");
    lesson.figure("lines.png",
                  viz::stack({viz::grid(frames, 2, 6), viz::color_bar(viz::Colormap::Diverging, 300, "p(red) = 0", "0.5", "1")}),
                  "Steps 0, 50, 500 and the last (left to right, top to bottom). Background: p(red class), blue to "
                  "red. Black lines: w1 x + w2 y + b = 0 for each of the 8 first-layer neurons -- the neuron is 0 on "
                  "one side. The boundary is pieced together from these lines.");
    lesson.chart("training.svg", viz::line_chart({loss_curve, accuracy_curve}, "Training the 2-D MLP", "step", "value"),
                 "Cross-entropy and accuracy during training.");
  });
}
