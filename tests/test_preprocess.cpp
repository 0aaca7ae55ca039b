// Input preprocessing: one photo, every model's input.
#include "tests/helpers.h"
#include "tinygrad-cpp/data/preprocess.h"

using namespace tg;

TEST_SUITE("preprocess") {
  TEST_CASE("gray, area resize, inversion of light backgrounds, normalization") {
    io::Image white{56, 56, 3, std::vector<uint8_t>(56 * 56 * 3, 255)};
    preprocess::InputSpec spec{1, 28, 28, {0.5f}, {0.25f}, false};
    bool inverted = true;
    const Tensor x = preprocess::image_to_input(white, spec, &inverted);
    CHECK(x.shape() == Shape{1, 1, 28, 28});
    CHECK(x.data()[0] == doctest::Approx(2.f));
    CHECK_FALSE(inverted);
    spec.invert_light_background = true;
    CHECK(preprocess::image_to_input(white, spec, &inverted).data()[0] == doctest::Approx(-2.f));
    CHECK(inverted);
    // A 2x2 checkerboard of 0 and 255 averages to gray in one pixel.
    io::Image checker{2, 2, 1, {0, 255, 255, 0}};
    CHECK(preprocess::image_to_input(checker, {1, 1, 1, {0.f}, {1.f}, false}).item() == doctest::Approx(0.5f));
  }

  TEST_CASE("RGB keeps its channels with per-channel normalization, and input_to_image undoes it") {
    io::Image photo{3, 2, 3, {}};
    for (int i = 0; i < 18; ++i) photo.pixels.push_back(static_cast<uint8_t>(i * 14));
    const preprocess::InputSpec spec{3, 2, 3, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, false};
    const Tensor x = preprocess::image_to_input(photo, spec);
    REQUIRE(x.shape() == Shape{1, 3, 2, 3});
    // Pixel (1, 2), green: byte (1*3 + 2)*3 + 1 = 16 -> 224.
    CHECK(x.at({0, 1, 1, 2}) == doctest::Approx((224 / 255.0 - 0.456) / 0.224));
    CHECK(preprocess::input_to_image(x, spec).pixels == photo.pixels);
    // The SSD's x = pixel/127.5 - 1 is mean 0.5, std 0.5.
    const Tensor ssd = preprocess::image_to_input(photo, {3, 2, 3, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, false});
    CHECK(ssd.at({0, 0, 0, 0}) == doctest::Approx(-1.f));
    CHECK(ssd.at({0, 1, 1, 2}) == doctest::Approx(224 / 127.5 - 1));
    CHECK(test::contains(test::error_message([&] { preprocess::image_to_input(photo, {2, 2, 2, {0.f}, {1.f}, false}); }),
                         "not valid"));
  }
}
