// explain/top_patches: receptive fields measured by a backward pass, each image's strongest
// position, the k strongest, and the crops.
#include "tests/helpers.h"
#include "tinygrad-cpp/explain/top_patches.h"
#include "tinygrad-cpp/models/fashion_cnn.h"

using namespace tg;

TEST_SUITE("top-patches") {
  TEST_CASE("FashionCNN's relu2 sees rows 2y-6 .. 2y+7: 14x14 windows 2 pixels apart; fc1 sees everything") {
    NEEDS_TASKS("relu", "tape-reverse-walk", "conv2d-backward", "linear-backward", "maxpool-backward");
    Generator gen(0);
    auto model = models::make_fashion_cnn(gen);
    const explain::ReceptiveField relu2 = explain::receptive_field(*model, "relu2");
    CHECK(relu2.channels == 32);
    CHECK(relu2.centre_y == 7);
    CHECK(relu2.centre_x == 7);
    CHECK(relu2.stride_y == 2);
    CHECK(relu2.stride_x == 2);
    // Lesson 4 derives it by hand: rows 2y-6 .. 2y+7.
    for (int64_t y : {0, 3, 7, 13}) {
      const explain::Window w = relu2.window(y, 13 - y);
      CHECK(w.y0 == 2 * y - 6);
      CHECK(w.y1 == 2 * y + 8);
      CHECK(w.x0 == 2 * (13 - y) - 6);
      CHECK(w.height() == 14);
      CHECK(w.width() == 14);
    }
    const explain::ReceptiveField conv1 = explain::receptive_field(*model, "conv1");
    CHECK(conv1.centre.height() == 5);
    CHECK(conv1.stride_y == 1);
    CHECK(conv1.window(0, 0).y0 == -2);
    const explain::ReceptiveField fc1 = explain::receptive_field(*model, "fc1");  // a vector: the whole image
    CHECK(fc1.channels == 128);
    CHECK(fc1.stride_y == 0);
    CHECK(fc1.window(0, 0).y0 == 0);
    CHECK(fc1.window(0, 0).y1 == 28);
    CHECK(fc1.window(0, 0).x1 == 28);
    // The overrides it uses are scoped: a max-pool's gradient goes to one pixel again afterwards.
    Tensor x = Tensor::from_vector({1.f, 3.f, 2.f, 0.f}, {1, 1, 2, 2}).requires_grad_();
    sum(max_pool2d(x, 2)).backward();
    CHECK(x.grad().to_vector() == std::vector<float>{0.f, 1.f, 0.f, 0.f});
  }

  TEST_CASE("each image's strongest position, the k strongest first, ties to the lower image") {
    // [3 images, 2 channels, 2x2]
    const Tensor a = Tensor::from_vector({0, 0, 0, 0, /**/ 1, 5, 2, 0,     // image 0: channel 1 peaks 5 at (0, 1)
                                          0, 0, 0, 0, /**/ 7, 7, 0, 1,     // image 1: 7 at (0, 0), the first of equals
                                          0, 0, 0, 0, /**/ 0, 0, 0, 5},    // image 2: 5 at (1, 1)
                                         {3, 2, 2, 2});
    const std::vector<explain::Patch> each = explain::strongest_positions(a, 1, 10);
    REQUIRE(each.size() == 3);
    CHECK(each[0].image == 10);
    CHECK(each[0].value == 5.f);
    CHECK(each[0].y == 0);
    CHECK(each[0].x == 1);
    CHECK(each[1].x == 0);
    CHECK(each[2].y == 1);
    const std::vector<explain::Patch> best = explain::top_patches(each, 2);
    REQUIRE(best.size() == 2);
    CHECK(best[0].image == 11);
    CHECK(best[1].image == 10);  // 5 and 5: the lower image number first
    CHECK(explain::top_patches(each, 9).size() == 3);
    const std::vector<explain::Patch> vector_layer = explain::strongest_positions(Tensor::from_vector({1, 4, 3, 2}, {2, 2}), 1);
    CHECK(vector_layer[0].value == 4.f);
    CHECK(vector_layer[1].value == 2.f);
    CHECK(vector_layer[1].y == 0);
    CHECK(test::contains(test::error_message([&] { explain::strongest_positions(a, 2); }), "channel 2 of activations [3,2,2,2]"));
  }

  TEST_CASE("a crop past the border is filled") {
    io::Image image{3, 2, 1, {1, 2, 3, 4, 5, 6}};
    const io::Image c = explain::crop(image, {.y0 = -1, .x0 = 1, .y1 = 1, .x1 = 4}, 9);
    CHECK(c.width == 3);
    CHECK(c.height == 2);
    CHECK(c.pixels == std::vector<uint8_t>{9, 9, 9, 2, 3, 9});
    CHECK(test::contains(test::error_message([&] { explain::crop(image, {.y0 = 2, .x0 = 0, .y1 = 2, .x1 = 1}); }), "crop:"));
  }
}
