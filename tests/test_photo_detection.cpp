// The detection a lesson explains on a photo (course/photo_detection.h): the best box of the
// photo's class, its anchor as an explain target, its box in the model's input, drawn on figures.
#include "tests/helpers.h"
#include "tinygrad-cpp/course/photo_detection.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/models/models.h"

using namespace tg;

namespace {
const char* kPhotoModel = "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";

lesson::Photo chelsea(const nn::Model& model, const std::string& target) {
  lesson::Photo p;
  p.name = "chelsea.png";
  p.original = io::load_image("assets/chelsea.png");
  p.input = preprocess::image_to_input(p.original, model.info().input);
  p.target = model.class_index(target);
  p.target_name = target;
  return p;
}
}  // namespace

TEST_SUITE("lesson-photo-detection") {
  TEST_CASE("chelsea's Cat is the 1x1 head's box over the photo; a class with no box falls back to its best anchor") {
    REQUIRE_MESSAGE(io::file_exists(kPhotoModel), "run make setup: it fetches the photo model");
    const std::shared_ptr<nn::Model> model = models::load_model(kPhotoModel);
    const lesson::PhotoDetection cat = lesson::photo_detection(*model, chelsea(*model, "Cat"));
    CHECK(cat.detected);
    CHECK(cat.detection.label == "Cat");
    CHECK(cat.detection.anchor == 1911);
    CHECK(cat.detection.grid == "1x1");
    CHECK(cat.detection.score == doctest::Approx(0.8546).epsilon(1e-3));
    const lesson::Box box = cat.input_box(*model);  // image pixels 3,0,424,300 of 451x300, in the 300x300 input
    CHECK(box.x0 == 2);
    CHECK(box.y0 == 0);
    CHECK(box.x1 == 282);
    CHECK(box.y1 == 300);
    const explain::Target target = cat.target();
    CHECK(target.kind == explain::Target::Kind::Detection);
    CHECK(target.classes == explain::Targets{model->class_index("Cat")});
    CHECK(target.anchors == explain::Targets{1911});
    CHECK(test::contains(cat.describe(), "Cat p 0.85, box 3,0,424,300 (image pixels), anchor 1911 of the 1x1 head"));

    const lesson::PhotoDetection car = lesson::photo_detection(*model, chelsea(*model, "Car"));
    CHECK_FALSE(car.detected);
    CHECK(car.detection.label == "Car");
    CHECK(car.detection.score < 0.5f);
    CHECK(test::contains(car.describe(), "below the 0.5 threshold"));
  }

  TEST_CASE("with_box draws the box at the picture's own size and leaves the inside alone") {
    lesson::PhotoDetection found;
    found.detection.class_index = 3;
    found.detection.label = "Cat";
    found.detection.box = {0.25f, 0.2f, 0.75f, 0.8f};
    io::Image gray{.width = 200, .height = 100, .channels = 3, .pixels = std::vector<uint8_t>(200 * 100 * 3, 128)};
    const io::Image drawn = lesson::with_box(gray, found);
    REQUIRE(drawn.width == 200);
    REQUIRE(drawn.height == 100);
    const auto is_gray = [&](int y, int x) {
      return drawn.at(y, x, 0) == 128 && drawn.at(y, x, 1) == 128 && drawn.at(y, x, 2) == 128;
    };
    CHECK_FALSE(is_gray(50, 50));   // the left edge, at x = 0.25 * 200
    CHECK_FALSE(is_gray(50, 149));  // the right edge, just inside x = 150
    CHECK(is_gray(50, 100));        // the inside
    CHECK(is_gray(50, 20));         // outside, left
  }
}
