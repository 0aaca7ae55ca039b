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

  TEST_CASE("a frame-filling cat shrunk to half on gray is a finer head's detection, and its boxes move with it") {
    REQUIRE_MESSAGE(io::file_exists(kPhotoModel), "run make setup: it fetches the photo model");
    const std::shared_ptr<nn::Model> model = models::load_model(kPhotoModel);
    const lesson::Photo photo = chelsea(*model, "Cat");
    const lesson::Photo shrunk = lesson::shrunk_on_gray(*model, photo, 0.5f);
    CHECK(shrunk.name == "chelsea.png at 50% on gray");
    CHECK(shrunk.original.width == 451);
    CHECK(shrunk.original.height == 300);
    CHECK(shrunk.original.at(0, 0, 0) == 128);      // the canvas
    CHECK(shrunk.original.at(299, 450, 2) == 128);
    CHECK(shrunk.original.at(150, 225, 0) != 128);  // the photo, in the middle
    CHECK(shrunk.target == photo.target);
    CHECK(shrunk.detection.anchor == 1760);         // its best Cat anchor, kept in the Photo
    CHECK_THROWS_WITH_AS(lesson::shrunk_on_gray(*model, photo, 0.f), doctest::Contains("scale 0, expected in (0, 1]"), Error);

    // The whole-photo 1x1 detection (93% of the photo) is replaced by the 5x5 head's.
    const lesson::FramedDetection framed = lesson::detection_inside_frame(*model, photo);
    CHECK(framed.scale == 0.5f);
    CHECK(framed.box_share_before == doctest::Approx(0.93).epsilon(0.01));
    CHECK(framed.found.detected);
    CHECK(framed.found.detection.grid == "5x5");
    CHECK(framed.found.detection.anchor == 1760);
    CHECK(framed.found.detection.score == doctest::Approx(0.79).epsilon(0.02));
    CHECK(framed.found.detection.box.area() == doctest::Approx(0.26).epsilon(0.05));
    CHECK(test::contains(framed.why(), "shrunk to 50% on gray"));
    // A box of the photo's input moves toward the centre by the scale.
    const lesson::Box eye = framed.framed({75, 80, 145, 150}, *model);
    CHECK(eye.x0 == 113);
    CHECK(eye.y0 == 115);
    CHECK(eye.x1 == 148);
    CHECK(eye.y1 == 150);

    // A photo whose box is not frame-filling is explained as it is.
    const lesson::Photo half = lesson::shrunk_on_gray(*model, photo, 0.5f);
    const lesson::FramedDetection as_is = lesson::detection_inside_frame(*model, half);
    CHECK(as_is.scale == 1.f);
    CHECK(as_is.photo.name == half.name);
    CHECK(as_is.found.detection.anchor == 1760);
  }

  TEST_CASE("heat_over: the photo in gray where the map is neutral, the map's colour where it is strongest") {
    // Two pixels, pure red and pure green: luma 76 and 150.
    const io::Image picture{.width = 2, .height = 1, .channels = 3, .pixels = {255, 0, 0, 0, 255, 0}};
    Tensor unit = Tensor::zeros({1, 1, 2});
    unit.data()[0] = 0.5f;  // neutral on a diverging map
    unit.data()[1] = 1.f;   // the strongest: dark red (178, 24, 43), 85% over the gray
    const io::Image out = lesson::heat_over(picture, unit, viz::Colormap::Diverging, 0.5f);
    REQUIRE(out.channels == 3);
    CHECK(out.at(0, 0, 0) == 76);
    CHECK(out.at(0, 0, 1) == 76);
    CHECK(out.at(0, 0, 2) == 76);
    CHECK(out.at(0, 1, 0) == std::lround(150 + 0.85 * (178 - 150)));
    CHECK(out.at(0, 1, 1) == std::lround(150 + 0.85 * (24 - 150)));
    CHECK_THROWS_WITH_AS(lesson::heat_over(picture, Tensor::zeros({1, 2, 2}), viz::Colormap::Viridis, 0.f),
                         doctest::Contains("the map is 2x2 but the picture 2x1"), Error);
  }
}
