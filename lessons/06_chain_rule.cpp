// Lesson 6: the chain rule, all the way to the input pixels.
//
// A gradient with respect to the input is nothing but the chain rule: a sum, over
// every path from an input to the output, of the product of the local derivatives
// along the path. We compute it by hand on a network small enough to list every
// path, check it against the tape, print the tape itself, and then take the same
// gradient through the trained CNN -- for one neuron and for a class score.
#include <algorithm>
#include <cmath>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/course/lesson.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

int main(int argc, char** argv) {
  lesson::Lesson lesson(argc, argv, {.id = "06_chain_rule", .title = "The chain rule, all the way to the input",
                                     .summary = "A 4-input network's gradient summed over paths by hand and checked against the "
                                     "tape; then the gradient of one neuron and of a class score with respect to an "
                                     "image, shown with 0 as mid-gray.", .uses_photo = true});
  return lesson.run([&] {
    lesson.step("A tiny network: h = w2 . relu(W1 x), with 4 inputs, 3 hidden units and 1 output");
    const Tensor x = Tensor::from_vector({1.0f, -2.0f, 0.5f, 3.0f}, {1, 4}, true);
    const Tensor W1 = Tensor::from_vector({0.5f, -0.25f, 1.0f, 0.2f,  //
                                           -1.0f, -0.5f, 0.25f, 0.6f,  //
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
    int open = 0;
    for (int64_t j = 0; j < 3; ++j) open += z.at({0, j}) > 0;
    lesson.say("{} of the 3 hidden units are on, so every input reaches h along {} open paths and its derivative", open, open);
    lesson.say("is a sum of {} nonzero products; the path through an off unit contributes 0 (the relu' factor).", open);
    for (int64_t i = 0; i < 4; ++i)
      if (std::fabs(by_hand[i]) < 1e-6f && open >= 2)
        lesson.say("dh/dx{}: its open paths cancel exactly -- x{} matters along each path, yet its gradient is 0; the "
                   "CNN below is that, thousands of times over.", i, i);

    lesson.step("The tape's answer: h.backward()");
    h.backward();
    float largest_difference = 0.f;
    for (int64_t i = 0; i < 4; ++i) {
      lesson.say("x{}: by hand {:+.4f}   tape {:+.4f}", i, by_hand[i], x.grad().at({0, i}));
      largest_difference = std::max(largest_difference, std::fabs(by_hand[i] - x.grad().at({0, i})));
    }
    lesson.number("largest |by hand - tape|", largest_difference);
    lesson.say("after backward the tape is empty again: {} entries", tape().size());

    // The lecture's picture of it: the network drawn, one input's paths to h picked out, each
    // path's product written on it, and their sum next to the tape's value.
    {
      const int64_t input = 0;  // x0: two open paths, both contributing
      const char* path_colors[] = {"#d62728", "#1f77b4", "#2ca02c"};
      std::vector<viz::DiagramNode> nodes;
      for (int64_t i = 0; i < 4; ++i)
        nodes.push_back({.x = 90, .y = 70 + 80.0 * static_cast<double>(i), .label = fmt::format("x{}", i),
                         .note = fmt::format("= {:g}", x.at({0, i}))});
      for (int64_t j = 0; j < 3; ++j)
        nodes.push_back({.x = 340, .y = 110 + 80.0 * static_cast<double>(j), .label = fmt::format("a{}", j),
                         .note = fmt::format("z={:g}, relu'={}", z.at({0, j}), z.at({0, j}) > 0 ? 1 : 0),
                         .dimmed = z.at({0, j}) <= 0});
      nodes.push_back({.x = 590, .y = 190, .label = "h", .note = fmt::format("= {:g}", h.item())});
      std::vector<viz::DiagramEdge> edges;
      std::vector<viz::DiagramNote> notes = {
          {.text = fmt::format("edge labels: the weights W1[j,{}] out of x{} and w2[j] into h; each path's derivative is their "
                               "product with relu'(z_j)", input, input), .color = "#555"}};
      for (int64_t j = 0; j < 3; ++j) {
        const bool open_path = z.at({0, j}) > 0;
        const auto style = open_path ? viz::EdgeStyle::Highlighted : viz::EdgeStyle::Cut;
        for (int64_t i = 0; i < 4; ++i)
          edges.push_back({.from = static_cast<size_t>(i), .to = static_cast<size_t>(4 + j),
                           .label = i == input ? fmt::format("{:g}", W1.at({j, i})) : "",
                           .style = i == input ? style : viz::EdgeStyle::Plain, .color = path_colors[j]});
        edges.push_back({.from = static_cast<size_t>(4 + j), .to = 7, .label = fmt::format("{:g}", w2.at({0, j})), .style = style,
                         .color = path_colors[j]});
        const float product = W1.at({j, input}) * (open_path ? 1.f : 0.f) * w2.at({0, j});
        notes.push_back({.text = fmt::format("path x{0} -> a{1} -> h:  W1[{1},{0}] * relu'(z{1}) * w2[{1}] = {2:g} * {3} * {4:g} = {5:g}{6}",
                                             input, j, W1.at({j, input}), open_path ? 1 : 0, w2.at({0, j}), product == 0.f ? 0.f : product,
                                             open_path ? "" : fmt::format("   (a{} is off: z{} = {:g} < 0, the path is cut)", j, j,
                                                                          z.at({0, j}))),
                         .color = open_path ? path_colors[j] : "#888"});
      }
      notes.push_back({.text = fmt::format("dh/dx{} = the sum over its paths = {:+g};  the tape's x{}.grad = {:+g}", input,
                                           by_hand[input], input, x.grad().at({0, input}))});
      lesson.chart("two_paths.svg",
                   viz::diagram(nodes, edges, fmt::format("h = w2 . relu(W1 x): dh/dx{} is a sum over paths", input), notes, 720, 490),
                   fmt::format("The chain rule as the lecture draws it (lecture 96: dh/dx is the sum over every path from x "
                               "to h of the product of the local derivatives on it), on the lesson's 4-3-1 network with "
                               "its own numbers. x{0}'s three paths to h are coloured, each edge labelled with its weight, "
                               "each hidden unit with its pre-activation z and relu'(z). Two paths are open and give {1:+g} "
                               "and {2:+g}; the path through a2 is cut (dashed: z2 = {3:g} < 0, relu' = 0). Their sum, "
                               "{4:+g}, is exactly what the tape's backward pass put in x{0}.grad.",
                               input, W1.at({0, input}) * w2.at({0, 0}), W1.at({1, input}) * w2.at({0, 1}), z.at({0, 2}),
                               by_hand[input]),
                   "Khapra 96: the chain rule to the input is a sum over paths");
    }

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
    lesson.figure("gradients.png",
                  viz::stack({viz::grid({viz::titled(input, fmt::format("test image 0: {}", data::kFashionClasses[predicted])),
                                         viz::titled(gray_map(neuron), "d conv2[5,7,7] / d pixels"),
                                         viz::titled(gray_map(score_gradient),
                                                     fmt::format("d score({}) / d pixels", data::kFashionClasses[predicted]))},
                                        3, 4),
                              viz::color_bar(viz::Colormap::Gray, 300, "-max |g|", "0", "+max |g| (per map)")}),
                  "Left: the input. Middle: d conv2[5,7,7] / d pixels -- nonzero only in the neuron's receptive "
                  "field. Right: d score / d pixels. Mid-gray is 0, light is positive, dark negative.");

    lesson.step("Why the class gradient looks murky");
    lesson.say("every pixel's gradient is a sum over thousands of paths with signs that mostly cancel;");
    lesson.say("it says how the score changes for a tiny change of that pixel alone, not what the object is.");
    lesson.say("Lessons 7 and 8 make it readable: take magnitudes (saliency), or change the ReLU's rule.");

    lesson.step("The lecture's figure on a photo: the same two gradients through a real CNN (lecture 96)");
    nn::Model& photo_model = lesson.photo_model();
    const preprocess::InputSpec& spec = photo_model.info().input;
    const lesson::Photo photo = lesson.photo();
    const Tensor& cat = photo.input;
    const int64_t cat_class = photo.target;
    // A hidden neuron of a mid-depth layer (38x38) at the cat's eye on the viewer's left: the channel most
    // active there that is not at the ReLU6's ceiling of 6 (which would pass no gradient).
    const std::string layer = "expanded_conv_6/expand/relu6";
    const Tensor features = photo_model.forward_until(cat, layer);
    const int64_t fy = 115 * features.dim(2) / 300, fx = 110 * features.dim(3) / 300;
    int64_t channel = 0;
    for (int64_t c = 0; c < features.dim(1); ++c)
      if (features.at({0, c, fy, fx}) < 6.f && features.at({0, c, fy, fx}) > features.at({0, channel, fy, fx})) channel = c;
    const Tensor photo_neuron = explain::neuron_gradient(photo_model, cat, {layer, channel, fy, fx});
    // The photo model is a detector: the score explained is one detection's, the best anchor
    // of the class (its box drawn on the figure).
    const models::Detection& detection = photo.detection;
    const Tensor photo_score =
        explain::gradient(photo_model, cat, explain::Target::of_detections({cat_class}, {detection.anchor}));
    lesson.say("{} on {}: anchor {} of the {} head, p = {:.3f}, box {:.0f},{:.0f},{:.0f},{:.0f} (photo pixels)", photo.target_name,
               photo.name, detection.anchor, detection.grid, detection.score, detection.pixels.x0, detection.pixels.y0,
               detection.pixels.x1, detection.pixels.y1);
    // How spread out is each map? The share of the pixels it takes to hold half of its total |g|.
    auto half_mass = [](const Tensor& g) {
      std::vector<float> magnitude(static_cast<size_t>(g.numel()));
      for (int64_t i = 0; i < g.numel(); ++i) magnitude[i] = std::fabs(g.data()[i]);
      std::sort(magnitude.rbegin(), magnitude.rend());
      double total = 0, running = 0;
      for (float v : magnitude) total += v;
      size_t k = 0;
      while (k < magnitude.size() && running < total / 2) running += magnitude[k++];
      return static_cast<double>(k) / static_cast<double>(magnitude.size());
    };
    lesson.say("neuron: {} channel {} at ({}, {}); its gradient is nonzero on {:.1f}% of the input values", layer,
               channel, fy, fx, [&] {
                 int64_t nonzero_values = 0;
                 for (int64_t i = 0; i < photo_neuron.numel(); ++i) nonzero_values += photo_neuron.data()[i] != 0.f;
                 return 100.0 * static_cast<double>(nonzero_values) / static_cast<double>(photo_neuron.numel());
               }());
    lesson.number(fmt::format("d logit({})/d pixels: share of values holding half of its |g|", photo.target_name),
                  half_mass(photo_score), "{:.3f}");
    lesson.number("d neuron/d pixels: share of values holding half of its |g|", half_mass(photo_neuron), "{:.4f}");
    // The neuron's own cell of the 38x38 map, in the input's pixels, drawn on the photo and on its map.
    const float cell_h = static_cast<float>(spec.height) / static_cast<float>(features.dim(2)),
                cell_w = static_cast<float>(spec.width) / static_cast<float>(features.dim(3));
    auto mark_neuron = [&](io::Image input_sized, const std::string& label) {
      viz::draw_box(input_sized, static_cast<float>(fx) * cell_w - 1, static_cast<float>(fy) * cell_h - 1,
                    static_cast<float>(fx + 1) * cell_w + 1, static_cast<float>(fy + 1) * cell_h + 1, viz::Rgb{255, 215, 0},
                    label, 2, 12);
      return input_sized;
    };
    // 0 as gray in every color channel: positive lighter, negative darker, per channel, with
    // +-the 99th percentile of |g| (max over R, G, B) at white and black, so a few pixels cannot
    // flatten the rest to gray.
    auto signed_rgb = [&](const Tensor& g, const std::string& title, bool boxed) {
      const float clip = viz::clip_level(g);
      lesson.say("{}: {}", title, viz::clip_note(g));
      Tensor unit = reshape(g, {3, spec.height, spec.width}).detach();
      for (int64_t i = 0; i < unit.numel(); ++i) unit.data()[i] = 0.5f + 0.5f * std::clamp(unit.data()[i] / clip, -1.f, 1.f);
      return viz::titled(boxed ? photo.with_box(viz::to_image(unit)) : photo.at_own_aspect(mark_neuron(viz::to_image(unit), "")),
                         title);
    };
    const std::string score_title = fmt::format("d logit({}) / d pixels", photo.target_name);
    const io::Image neuron_tile = signed_rgb(photo_neuron, "d neuron / d pixels", false);
    // A signed RGB map has no single colour scale: the legend says what each colour means.
    const io::Image legend = viz::stack(
        {viz::swatch_legend({{{128, 128, 128}, "0 (gray in every channel)"},
                             {{255, 128, 128}, "+R"}, {{0, 128, 128}, "-R"},
                             {{128, 255, 128}, "+G"}, {{128, 0, 128}, "-G"},
                             {{128, 128, 255}, "+B"}, {{128, 128, 0}, "-B"},
                             {{255, 255, 255}, "+ in all three"}, {{0, 0, 0}, "- in all three"}}),
         viz::text("each channel: 128 + 127 * g / c, with c the map's 99th percentile of |g| (|g| beyond c saturates)", 12)},
        2);
    lesson.figure("cat_gradients.png",
                  viz::stack({viz::grid({viz::titled(photo.with_box(mark_neuron(preprocess::input_to_image(cat, spec), "")),
                                                     fmt::format("{}: the detection's box; yellow: neuron #{} ({},{})", photo.name, channel, fy, fx)),
                                         neuron_tile, signed_rgb(photo_score, score_title, true)},
                                        3, 6),
                              legend}),
                  fmt::format("The lecture's figure (lecture 96), through the photo model, at the photo's own aspect "
                              "ratio. Middle: the gradient of one hidden neuron ({} channel {}, {}; its cell "
                              "of the 38x38 map boxed in yellow on the photo and on its map) with respect to the "
                              "pixels, drawn with 0 as gray in each color channel (legend: lighter is positive, darker "
                              "negative, per channel): gray outside its receptive field. Right: the gradient of one detection's logit, {} on {} (anchor {}, the "
                              "{} head, p = {:.2f}; its box drawn): murky over the whole photo -- half of its |g| is "
                              "spread over {:.0f}% of the values, and nothing stands out as the cat. Each map is clipped "
                              "at +-its 99th percentile of |g|.",
                              layer, channel,
                              lesson.image_path() == lesson::Lesson::kDefaultPhoto ? "at the eye on the viewer's left"
                                                                                   : fmt::format("at row {}, column {}", fy, fx),
                              photo.target_name, photo.name, detection.anchor, detection.grid, detection.score,
                              100 * half_mass(photo_score)),
                  "Khapra 96: the gradient of a hidden neuron and of the Cat score w.r.t. the pixels");
  });
}
