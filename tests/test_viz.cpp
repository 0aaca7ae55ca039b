// Visualization: normalization policies, colormaps, resampling, composition, SVG.
#include "tests/helpers.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;
using namespace tg::viz;

TEST_SUITE("viz") {
  TEST_CASE("normalization policies") {
    const Tensor a = Tensor::from_vector({-2, 0, 1, 4, -1, 0.5f}, {2, 1, 3});
    const Tensor maxabs = normalize(a, Normalize::MaxAbs);
    CHECK(maxabs.shape() == Shape{1, 1, 3});
    CHECK(maxabs.to_vector() == std::vector<float>{1.f, 0.25f, 0.25f});  // max over channels of |a|: 4, 1, 1, divided by 4
    const Tensor signed_map = normalize(a, Normalize::Signed);
    CHECK(signed_map.at({0, 0, 1}) == 0.5f);  // zero is the middle
    CHECK(signed_map.at({1, 0, 0}) == 1.f);    // the largest |a| is 4, positive
    CHECK(signed_map.at({0, 0, 0}) == 0.25f);  // -2 / 4 -> 0.5 - 0.25
    const Tensor minmax = normalize(a, Normalize::MinMax);
    CHECK(minmax.at({0, 0, 0}) == 0.f);
    CHECK(minmax.at({1, 0, 0}) == 1.f);
    CHECK(normalize(Tensor::zeros({1, 2, 2}), Normalize::Signed).to_vector() == std::vector<float>(4, 0.5f));
    // A batch of one is its one map; a larger batch is refused.
    CHECK(normalize(reshape(a, {1, 2, 1, 3}), Normalize::MaxAbs).to_vector() == maxabs.to_vector());
    CHECK_THROWS_WITH_AS(normalize(reshape(a, {2, 1, 1, 3}), Normalize::MaxAbs), doctest::Contains("[2,1,1,3]"), Error);
    // One outlier does not wash out a percentile-clipped map.
    Tensor spiky = Tensor::arange(0, 1000);
    spiky.data()[500] = 1e6f;
    const Tensor clipped = normalize(reshape(spiky, {1, 1, 1000}), Normalize::Percentile, 99.f);
    CHECK(clipped.data()[250] == doctest::Approx(0.25f).epsilon(0.02));
    CHECK(clipped.data()[500] == 1.f);
  }

  TEST_CASE("colormaps: gray ends, diverging white middle, viridis ends") {
    const Tensor ramp = Tensor::from_vector({0.f, 0.5f, 1.f}, {1, 1, 3});
    const io::Image gray = colorize(ramp, Colormap::Gray);
    CHECK(gray.at(0, 0, 0) == 0);
    CHECK(gray.at(0, 2, 0) == 255);
    const io::Image div = colorize(ramp, Colormap::Diverging);
    CHECK(div.at(0, 1, 0) == div.at(0, 1, 1));
    CHECK(div.at(0, 1, 0) > 240);  // 0.5 (a zero gradient) is white
    CHECK(div.at(0, 0, 2) > div.at(0, 0, 0));  // low end blue
    CHECK(div.at(0, 2, 0) > div.at(0, 2, 2));  // high end red
    const io::Image vir = colorize(ramp, Colormap::Viridis);
    CHECK(vir.at(0, 0, 0) == 68);
    CHECK(vir.at(0, 2, 1) == 231);
  }

  TEST_CASE("upsampling, scaling, overlay and grids") {
    const Tensor m = Tensor::from_vector({0, 1, 2, 3}, {1, 2, 2});
    const Tensor nearest = upsample(m, 4, 4, Interpolation::Nearest);
    CHECK(nearest.at({0, 0, 0}) == 0.f);
    CHECK(nearest.at({0, 3, 3}) == 3.f);
    const Tensor smooth = upsample(m, 4, 4, Interpolation::Bilinear);
    CHECK(smooth.at({0, 0, 0}) == 0.f);
    CHECK(smooth.at({0, 1, 1}) == doctest::Approx(0.75f));  // between all four
    const io::Image img = to_image(Tensor::from_vector({0, 1, 0.5f, 0.25f}, {1, 2, 2}));
    CHECK(img.pixels == std::vector<uint8_t>{0, 255, 128, 64});
    CHECK(from_image(img).at({0, 0, 1}) == 1.f);
    const io::Image big = scale_nearest(img, 3);
    CHECK(big.width == 6);
    CHECK(big.at(5, 5, 0) == 64);
    const io::Image heat = colorize(Tensor::ones({1, 2, 2}), Colormap::Gray);
    const io::Image blend = overlay(img, heat, 0.5f);
    CHECK(blend.at(0, 0, 0) == 128);
    const io::Image g = grid({img, img, img}, 2, 1, 200);
    CHECK(g.width == 2 * 2 + 3);
    CHECK(g.height == 2 * 2 + 3);
    CHECK(g.at(0, 0, 0) == 200);
    CHECK(g.at(1, 2, 0) == 255);
    CHECK(test::contains(test::error_message([&] { overlay(img, scale_nearest(heat, 2), 0.5f); }), "overlay: base 2x2"));
  }

  TEST_CASE("SVG charts are whole documents with their labels") {
    const std::string line = line_chart({{"loss", {0, 1, 2}, {1.0, 0.5, 0.25}}, {"acc", {0, 1, 2}, {0.1, 0.6, 0.9}}},
                                        "training", "epoch", "value");
    CHECK(line.rfind("<svg", 0) == 0);
    CHECK(test::contains(line, "</svg>"));
    CHECK(test::contains(line, ">training<"));
    CHECK(test::contains(line, ">epoch<"));
    CHECK(test::contains(line, ">loss<"));
    // The legend sits in the first corner no line crosses: top right (x = 640 - 16 - 154), or top
    // left (x = 64 + 8) when a line rises into the top right.
    CHECK(test::contains(line_chart({{"falling", {0, 1}, {1.0, 0.0}}}, "t", "x", "y"), "<rect x=\"470\""));
    CHECK(test::contains(line_chart({{"rising", {0, 1}, {0.0, 1.0}}}, "t", "x", "y"), "<rect x=\"72\""));
    const std::string hist = histogram({1, 2, 2, 3, 3, 3}, 3, "h < 4 & more", "activation");
    CHECK(test::contains(hist, "h &lt; 4 &amp; more"));
    CHECK(std::count(hist.begin(), hist.end(), '\n') > 5);
    const std::string bars = bar_chart({"a", "b"}, {0.5, -0.25}, "bars", "rank correlation");
    CHECK(test::contains(bars, ">b<"));
    const std::string titled_bars = bar_chart({"Shirt -> Coat"}, {3.5}, "bars", "mean |change|", 640, 400, "case: true -> pushed to");
    CHECK(test::contains(titled_bars, ">Shirt -&gt; Coat<"));
    CHECK(test::contains(titled_bars, ">case: true -&gt; pushed to<"));
    CHECK(test::contains(test::error_message([] { bar_chart({"a"}, {1, 2}, "t", "y"); }), "one label per value"));
    // Groups: the second bar in the palette's second colour, a legend swatch per group name.
    const std::string grouped = bar_chart({"a", "b"}, {1, 2}, "t", "y", 640, 400, "", {.groups = {0, 1}, .names = {"fooled", "not fooled"}});
    CHECK(test::contains(grouped, "fill=\"#d62728\"/><text x=\"")); // the second bar
    CHECK(test::contains(grouped, "width=\"12\" height=\"12\" fill=\"#d62728\""));  // its swatch
    CHECK(test::contains(grouped, ">not fooled<"));
    CHECK(test::contains(test::error_message([] { bar_chart({"a", "b"}, {1, 2}, "t", "y", 640, 400, "", {.groups = {0}}); }),
                         "groups: got 1 group numbers, expected one per bar (2)"));
    const std::string named = line_chart({{"saliency", {0, 1, 2}, {1.0, 0.2, 0.1}}}, "t", "layers", "r", 640, 400,
                                         {"trained", "fc2", "fc1"});
    CHECK(test::contains(named, ">fc1<"));
    CHECK(!test::contains(named, ">0.5<"));  // names, not numbers, on the x axis
  }

  TEST_CASE("a histogram counts exact values apart and labels their shares") {
    Histogram h(0, 6, 6, {0, 6});
    for (double v : {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 2.5, 6.0, 7.0}) h.add(v);
    CHECK(h.count() == 10);
    CHECK(h.share_exact(0) == doctest::Approx(0.6));
    CHECK(h.share_exact(6) == doctest::Approx(0.1));
    const std::string svg = h.svg("relu6", "activation");
    CHECK(test::contains(svg, ">0: 60.0% (cut)<"));  // far taller than the ordinary bins: cut, its share written
    CHECK(test::contains(svg, ">6: 10.0%<"));
    CHECK(test::contains(svg, "share of all values (%)"));
    CHECK(test::contains(test::error_message([&] { h.share_exact(3); }), "not one of its exact values"));
    CHECK(test::contains(test::error_message([] { Histogram(1, 1, 4); }), "lo < hi"));
  }

  TEST_CASE("a diagram draws its nodes, its edges' labels and its notes") {
    const std::string svg = diagram({{.x = 40, .y = 60, .label = "x0", .note = "= 1"}, {.x = 200, .y = 60, .label = "h", .dimmed = true}},
                                    {{.from = 0, .to = 1, .label = "w=0.5", .style = EdgeStyle::Highlighted, .color = "#123456"}},
                                    "paths < 2", {{.text = "dh/dx0 = 0.5", .color = "#123456"}});
    CHECK(svg.rfind("<svg", 0) == 0);
    CHECK(test::contains(svg, ">x0<"));
    CHECK(test::contains(svg, ">w=0.5<"));
    CHECK(test::contains(svg, "stroke=\"#123456\""));
    CHECK(test::contains(svg, ">dh/dx0 = 0.5<"));
    CHECK(test::contains(svg, "paths &lt; 2"));
    CHECK(test::contains(test::error_message([] { diagram({}, {{.from = 0, .to = 1}}, "t", {}); }), "past the 0 nodes"));
  }

  TEST_CASE("a swatch legend is one row of squares in their colours") {
    const io::Image legend = swatch_legend({{Rgb{255, 0, 0}, "+R"}, {Rgb{128, 128, 128}, "0"}});
    CHECK(legend.channels == 3);
    CHECK(legend.at(5, 5, 0) == 255);
    CHECK(legend.at(5, 5, 1) == 0);
    CHECK(swatch_legend({{Rgb{}, "a"}, {Rgb{}, "b"}}, 1).height > legend.height);  // one to a row: two rows
  }
}
