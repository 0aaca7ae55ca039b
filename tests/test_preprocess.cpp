// Input preprocessing: one photo, every model's input; the intake (EXIF orientation, alpha, fit).
#include <map>

#include "tests/helpers.h"
#include "tinygrad-cpp/data/preprocess.h"

using namespace tg;

namespace {
// The APP1 segment's payload: "Exif", a TIFF header (II little- or MM big-endian) and one IFD
// holding the orientation tag (0x0112, SHORT, one value).
std::vector<uint8_t> exif_payload(int orientation, bool little_endian) {
  std::vector<uint8_t> b = {'E', 'x', 'i', 'f', 0, 0};
  auto u16 = [&](int v) {
    if (little_endian) b.insert(b.end(), {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)});
    else b.insert(b.end(), {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)});
  };
  auto u32 = [&](uint32_t v) {
    if (little_endian) u16(static_cast<int>(v & 0xffff)), u16(static_cast<int>(v >> 16));
    else u16(static_cast<int>(v >> 16)), u16(static_cast<int>(v & 0xffff));
  };
  b.insert(b.end(), little_endian ? std::initializer_list<uint8_t>{'I', 'I'} : std::initializer_list<uint8_t>{'M', 'M'});
  u16(42), u32(8);                            // the first IFD right after the header
  u16(1);                                     // one entry
  u16(0x0112), u16(3), u32(1), u16(orientation), u16(0);
  u32(0);                                     // no next IFD
  return b;
}

std::vector<uint8_t> jpeg_of(const io::Image& image, int orientation, bool little_endian) {
  return test::encode_jpeg(image.pixels, image.width, image.height, {.app1 = exif_payload(orientation, little_endian)});
}

// 16x8: the left half red, the right half blue.
io::Image red_left_blue_right() {
  io::Image image{16, 8, 3, std::vector<uint8_t>(16 * 8 * 3, 0)};
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 16; ++x) image.at(y, x, x < 8 ? 0 : 2) = 255;
  return image;
}
bool reddish(const io::Image& image, int y, int x) { return image.at(y, x, 0) > 200 && image.at(y, x, 2) < 60; }
bool bluish(const io::Image& image, int y, int x) { return image.at(y, x, 2) > 200 && image.at(y, x, 0) < 60; }
}  // namespace

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

  TEST_CASE("a phone photo's EXIF orientation turns it upright (a JPEG written here, both byte orders)") {
    const test::TempDir dir;
    const io::Image stored = red_left_blue_right();
    for (const bool little : {false, true}) {
      CAPTURE(little);
      // 6: to be turned 90 degrees clockwise, so the stored left (red) ends up on top.
      test::write_bytes(dir.file("six.jpg"), jpeg_of(stored, 6, little));
      CHECK(io::load_image(dir.file("six.jpg")).width == 16);  // the reader gives the pixels as stored
      preprocess::Photo photo = preprocess::load_photo(dir.file("six.jpg"));
      CHECK(photo.image.width == 8);
      CHECK(photo.image.height == 16);
      CHECK(photo.stored_width == 16);
      CHECK(reddish(photo.image, 3, 4));
      CHECK(bluish(photo.image, 12, 4));
      REQUIRE(photo.notes.size() == 1);
      CHECK(test::contains(photo.notes[0], "EXIF orientation 6: turned 90 degrees clockwise"));
      // 8: counterclockwise, so the red half ends up at the bottom.
      test::write_bytes(dir.file("eight.jpg"), jpeg_of(stored, 8, little));
      photo = preprocess::load_photo(dir.file("eight.jpg"));
      CHECK(photo.image.height == 16);
      CHECK(bluish(photo.image, 3, 4));
      CHECK(reddish(photo.image, 12, 4));
    }
    // The fuzz seeds with hostile EXIF blocks: an IFD offset near 4 GB is no orientation; an IFD
    // declaring 65,535 entries in a 26-byte block has its one real entry (6) read, the rest not.
    const io::Image small = io::load_image("tests/fuzz/seeds/image/small.jpg");
    const preprocess::Photo far = preprocess::load_photo("tests/fuzz/seeds/image/hostile-exif-ifd-offset-past-end.jpg");
    CHECK(far.image.width == small.width);
    CHECK(far.notes.empty());
    const preprocess::Photo many = preprocess::load_photo("tests/fuzz/seeds/image/hostile-exif-65535-entries.jpg");
    CHECK(many.image.width == small.height);
    test::write_bytes(dir.file("one.jpg"), jpeg_of(stored, 1, false));
    const preprocess::Photo upright = preprocess::load_photo(dir.file("one.jpg"));
    CHECK(upright.image.width == 16);
    CHECK(upright.notes.empty());
  }

  TEST_CASE("orient: the eight EXIF orientations move each pixel where EXIF says") {
    // 3 wide, 2 tall: values 0..5 row by row.
    const io::Image image{3, 2, 1, {0, 1, 2, 3, 4, 5}};
    const std::map<int, std::vector<uint8_t>> shown = {
        {1, {0, 1, 2, 3, 4, 5}}, {2, {2, 1, 0, 5, 4, 3}}, {3, {5, 4, 3, 2, 1, 0}}, {4, {3, 4, 5, 0, 1, 2}},
        {5, {0, 3, 1, 4, 2, 5}}, {6, {3, 0, 4, 1, 5, 2}}, {7, {5, 2, 4, 1, 3, 0}}, {8, {2, 5, 1, 4, 0, 3}}};
    for (const auto& [orientation, pixels] : shown) {
      CAPTURE(orientation);
      const io::Image out = preprocess::orient(image, orientation);
      CHECK(out.width == (orientation >= 5 ? 2 : 3));
      CHECK(out.pixels == pixels);
    }
    CHECK_THROWS_WITH(preprocess::orient(image, 9), "orient: orientation 9 is not 1 to 8");
  }

  TEST_CASE("an RGBA photo with its left third transparent is composited on white, and said so") {
    io::Image rgba{6, 3, 4, {}};
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 6; ++x) {
        const uint8_t alpha = x < 2 ? 0 : x == 2 ? 128 : 255;
        for (uint8_t v : {uint8_t{0}, uint8_t{100}, uint8_t{200}, alpha}) rgba.pixels.push_back(v);
      }
    double transparent = 0;
    const io::Image rgb = preprocess::on_white(rgba, &transparent);
    CHECK(rgb.channels == 3);
    CHECK(transparent == doctest::Approx(0.5));  // alpha < 255 in columns 0 to 2
    CHECK(rgb.at(1, 0, 0) == 255);               // fully transparent: white
    CHECK(rgb.at(1, 0, 1) == 255);
    CHECK(rgb.at(1, 2, 0) == 127);               // half: 0 * 128/255 + 255 * 127/255
    CHECK(rgb.at(1, 2, 2) == 227);               // 200 * 128/255 + 127
    CHECK(rgb.at(1, 5, 1) == 100);               // opaque: as it was
    // image_to_input reads alpha the same way, so a caller that skips on_white gets the same input.
    const preprocess::InputSpec spec{3, 3, 6, {0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}, false};
    const Tensor direct = preprocess::image_to_input(rgba, spec), composited = preprocess::image_to_input(rgb, spec);
    for (int64_t i = 0; i < direct.numel(); ++i) CHECK(direct.data()[i] == doctest::Approx(composited.data()[i]).epsilon(0.005));
    CHECK(direct.at({0, 0, 0, 0}) == doctest::Approx(1.f));  // not the black an ignored alpha would give
    // Through a file: load_photo says so.
    const test::TempDir dir;
    io::save_png(dir.file("a.png"), rgba);
    const preprocess::Photo photo = preprocess::load_photo(dir.file("a.png"));
    CHECK(photo.image.channels == 3);
    REQUIRE(photo.notes.size() == 1);
    CHECK(photo.notes[0] == "50% of the pixels are transparent: composited on a white background");
  }

  TEST_CASE("--fit: crop and pad reach the input's aspect ratio; stretch says when the aspect changes or pixels repeat") {
    io::Image wide{300, 100, 3, std::vector<uint8_t>(300 * 100 * 3, 40)};
    for (int y = 0; y < 100; ++y) wide.at(y, 150, 0) = 250;  // a red line in the middle
    const io::Image cropped = preprocess::fit_to_aspect(wide, 28, 28, preprocess::Fit::Crop);
    CHECK(cropped.width == 100);
    CHECK(cropped.height == 100);
    CHECK(cropped.at(50, 50, 0) == 250);  // the centre kept
    const io::Image padded = preprocess::fit_to_aspect(wide, 28, 28, preprocess::Fit::Pad);
    CHECK(padded.width == 300);
    CHECK(padded.height == 300);
    CHECK(padded.at(0, 0, 1) == 40);      // the bars: the border's mean colour
    CHECK(padded.at(150, 150, 0) == 250);  // the photo in the middle (rows 100 to 199)
    CHECK(preprocess::fit_to_aspect(wide, 3, 1, preprocess::Fit::Pad).height == 100);  // already that aspect
    const io::Image tall = preprocess::fit_to_aspect(wide, 1, 2, preprocess::Fit::Crop);
    CHECK(tall.width == 50);
    CHECK(tall.height == 100);
    CHECK(preprocess::fit_to_aspect(wide, 1, 1, preprocess::Fit::Stretch).width == 300);

    const preprocess::InputSpec spec{3, 30, 30, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, false};
    preprocess::Intake intake = preprocess::take_photo({.image = wide}, spec, preprocess::Fit::Stretch);
    CHECK(intake.input.shape() == Shape{1, 3, 30, 30});
    REQUIRE(intake.notes.size() == 1);
    CHECK(test::contains(intake.notes[0], "stretched 300x100 to 30x30: its aspect ratio changes by 200%"));
    intake = preprocess::take_photo({.image = wide}, spec, preprocess::Fit::Crop);
    CHECK(intake.image.width == 100);
    REQUIRE(intake.notes.size() == 1);
    CHECK(intake.notes[0] == "--fit crop: 300x100 cropped to 100x100, the input's aspect ratio");
    // 32x30 to 30x30 changes the aspect by 6.7%: no note. 10x10 to 30x30 is 3x: a note.
    CHECK(preprocess::take_photo({.image = io::Image{32, 30, 1, std::vector<uint8_t>(32 * 30)}}, spec).notes.empty());
    intake = preprocess::take_photo({.image = io::Image{10, 10, 1, std::vector<uint8_t>(100)}}, spec);
    REQUIRE(intake.notes.size() == 1);
    CHECK(intake.notes[0] == "enlarged 3.0x (10x10 to 30x30): the model sees blocks of repeated pixels");
    CHECK(preprocess::parse_fit("pad") == preprocess::Fit::Pad);
    CHECK_THROWS_WITH(preprocess::parse_fit("squash"), "fit: 'squash' is not stretch, crop or pad");
  }
}

TEST_SUITE("preprocess") {
  TEST_CASE("decode_photo: a file's bytes in memory make the photo load_photo makes of the file") {
    const preprocess::InputSpec ssd{3, 300, 300, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, false};
    for (const char* path : {"tests/fuzz/seeds/image/exif-orientation-6-mm.jpg", "tests/fuzz/seeds/image/exif-orientation-8-ii.jpg",
                             "tests/fuzz/seeds/image/rgba-left-third-transparent.png", "assets/chelsea.png"}) {
      CAPTURE(path);
      const preprocess::Photo from_file = preprocess::load_photo(path);
      const preprocess::Photo from_bytes = preprocess::decode_photo(io::read_file(path), "upload");
      CHECK(from_bytes.image.pixels == from_file.image.pixels);
      CHECK(from_bytes.image.width == from_file.image.width);
      CHECK(from_bytes.stored_width == from_file.stored_width);
      CHECK(from_bytes.notes == from_file.notes);
      for (const preprocess::Fit fit : {preprocess::Fit::Stretch, preprocess::Fit::Crop, preprocess::Fit::Pad}) {
        const Tensor a = preprocess::take_photo(from_file, ssd, fit).input, b = preprocess::take_photo(from_bytes, ssd, fit).input;
        CHECK(std::equal(a.data(), a.data() + a.numel(), b.data()));
      }
    }
    const preprocess::Photo six = preprocess::decode_photo(io::read_file("tests/fuzz/seeds/image/exif-orientation-6-mm.jpg"), "upload");
    CHECK(six.image.width == 16);  // stored 24x16, upright 16x24
    CHECK(six.image.height == 24);
    CHECK(test::contains(test::error_message([] { preprocess::decode_photo({'G', 'I', 'F', '8', '9', 'a', 1, 0}, "upload"); }),
                         "upload: a GIF image"));
  }
}
