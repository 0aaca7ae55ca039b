// PNG/JPEG loading and PNG writing: good images round-trip, bad files are refused.
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <cstdlib>
#include <filesystem>

#include <jpeglib.h>
#include <stb/stb_image_write.h>

#include "tests/helpers.h"
#include "tinygrad-cpp/data/io.h"

using namespace tg;
using test::contains;
using test::error_message;

TEST_SUITE("image") {
  TEST_CASE("a written PNG loads back with the same pixels") {
    test::TempDir dir;
    io::Image image{5, 3, 3, {}};
    for (int i = 0; i < 5 * 3 * 3; ++i) image.pixels.push_back(static_cast<uint8_t>(i * 17));
    io::save_png(dir.file("a.png"), image);
    const io::Image back = io::load_image(dir.file("a.png"));
    CHECK(back.width == 5);
    CHECK(back.height == 3);
    CHECK(back.channels == 3);
    CHECK(back.pixels == image.pixels);
  }

  TEST_CASE("a JPEG loads (sniffed by its magic, whatever its name)") {
    test::TempDir dir;
    std::vector<uint8_t> pixels(32 * 16 * 3);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i % 3 == 0 ? 200 : 40);
    std::vector<uint8_t> jpeg;
    auto append = [](void* context, void* data, int size) {
      auto* out = static_cast<std::vector<uint8_t>*>(context);
      out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
    };
    REQUIRE(stbi_write_jpg_to_func(append, &jpeg, 32, 16, 3, pixels.data(), 95));
    test::write_bytes(dir.file("photo.dat"), jpeg);
    const io::Image image = io::load_image(dir.file("photo.dat"));
    CHECK(image.width == 32);
    CHECK(image.height == 16);
    CHECK(image.channels == 3);
    CHECK(std::abs(static_cast<int>(image.at(8, 8, 0)) - 200) < 12);  // lossy, but close
  }

  TEST_CASE("hostile JPEGs: a Huffman table with too many codes, a huge declared size, a cut file") {
    test::TempDir dir;
    const std::string path = dir.file("bad.jpg");
    // SOI, then a DHT segment whose 16 code counts add up to 2,040 codes (a table holds at most
    // 256): stb_image 2.27 wrote the extra symbols past its table. It must be refused.
    std::vector<uint8_t> dht = {0xff, 0xd8, 0xff, 0xc4};
    const size_t length = 2 + 1 + 16 + 2040;
    dht.push_back(static_cast<uint8_t>(length >> 8));
    dht.push_back(static_cast<uint8_t>(length & 0xff));
    dht.push_back(0x00);  // DC table 0
    for (int i = 0; i < 16; ++i) dht.push_back(i < 8 ? 0 : 255);
    for (int i = 0; i < 2040; ++i) dht.push_back(static_cast<uint8_t>(i));
    dht.insert(dht.end(), {0xff, 0xd9});
    test::write_bytes(path, dht);
    std::string message = error_message([&] { io::load_image(path); });
    CHECK(contains(message, path + ": corrupt JPEG"));
    CHECK(message.find('\n') == std::string::npos);
    // A 40-byte JPEG header declaring 16384 x 16384 RGB: refused before any pixel is decoded.
    const std::vector<uint8_t> huge = {0xff, 0xd8,                                                   // SOI
                                       0xff, 0xc0, 0, 17, 8, 0x40, 0x00, 0x40, 0x00, 3,               // SOF0 16384x16384
                                       1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0,
                                       0xff, 0xda, 0, 12, 3, 1, 0, 2, 0, 3, 0, 0, 63, 0,              // SOS
                                       0x00, 0x00, 0xff, 0xd9};
    test::write_bytes(path, huge);
    message = error_message([&] { io::load_image(path); });
    CHECK(contains(message, path + ": image is 16384x16384"));
    CHECK(contains(message, "million pixels"));
    // A real JPEG cut in half decodes what is there or is refused, but never crashes.
    std::vector<uint8_t> pixels(64 * 48 * 3, 90), jpeg;
    auto append = [](void* context, void* data, int size) {
      auto* out = static_cast<std::vector<uint8_t>*>(context);
      out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
    };
    REQUIRE(stbi_write_jpg_to_func(append, &jpeg, 64, 48, 3, pixels.data(), 90));
    jpeg.resize(jpeg.size() / 2);
    test::write_bytes(path, jpeg);
    try {
      const io::Image cut = io::load_image(path);
      CHECK(cut.width == 64);
    } catch (const Error& e) {
      CHECK(contains(e.what(), path + ": corrupt JPEG"));
    }
  }

  TEST_CASE("a progressive JPEG decodes, and one with hundreds of scans is refused") {
    test::TempDir dir;
    const std::string path = dir.file("progressive.jpg");
    // A real progressive JPEG from libjpeg: 48x32, red on the left half, blue on the right.
    const int width = 48, height = 32;
    std::vector<uint8_t> pixels(width * height * 3);
    for (int i = 0; i < width * height; ++i) {
      const bool left = i % width < width / 2;
      pixels[3 * i] = left ? 220 : 20;
      pixels[3 * i + 2] = left ? 20 : 220;
    }
    const std::vector<uint8_t> jpeg = test::encode_jpeg(pixels, width, height, {.progressive = true});
    test::write_bytes(path, jpeg);
    const io::Image image = io::load_image(path);
    CHECK(image.width == width);
    CHECK(image.height == height);
    CHECK(std::abs(image.at(16, 4, 0) - 220) < 12);
    CHECK(std::abs(image.at(16, 44, 2) - 220) < 12);
    // Its last scan (from the last SOS marker to EOI) repeated 600 times: every repeat makes
    // the decoder pass over the whole image again. It is refused, not decoded for minutes.
    size_t last_scan = 0;
    for (size_t i = 0; i + 1 < jpeg.size(); ++i)
      if (jpeg[i] == 0xff && jpeg[i + 1] == 0xda) last_scan = i;
    REQUIRE(last_scan > 0);
    const std::vector<uint8_t> scan(jpeg.begin() + static_cast<long>(last_scan), jpeg.end() - 2);
    std::vector<uint8_t> many(jpeg.begin(), jpeg.end() - 2);
    for (int i = 0; i < 600; ++i) many.insert(many.end(), scan.begin(), scan.end());
    many.insert(many.end(), {0xff, 0xd9});
    test::write_bytes(path, many);
    const std::string message = error_message([&] { io::load_image(path); });
    CHECK(contains(message, path + ": corrupt JPEG (more than 100 progressive scans)"));
  }

  TEST_CASE("the hostile files under tests/fuzz/regressions are each refused in one line, quickly") {
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator("tests/fuzz/regressions/image")) {
      const std::string path = entry.path().string();
      CAPTURE(path);
      const std::string message = error_message([&] { io::load_image(path); });
      CHECK(contains(message, path + ": "));
      CHECK(message.find('\n') == std::string::npos);
      ++files;
    }
    for (const auto& entry : std::filesystem::directory_iterator("tests/fuzz/regressions/safetensors")) {
      const std::string path = entry.path().string();
      CAPTURE(path);
      CHECK(contains(error_message([&] { io::load_safetensors(path); }), path + ": "));
      ++files;
    }
    CHECK(files >= 5);
  }

  TEST_CASE("PNG headers: the reason reaches the user; 16-bit interlaced decoding is bounded") {
    const std::string depth = "tests/fuzz/regressions/image/ihdr-bit-depth-5.png";
    CHECK(error_message([&] { io::load_image(depth); }) ==
          depth + ": corrupt PNG: bit depth 5 is not allowed with color type 2");
    // 311 KB declaring 16384x2441 16-bit RGBA, interlaced: stb_image would hold 793 MB.
    const std::string big = "tests/fuzz/regressions/image/16bit-interlaced-40mp.png";
    const std::string message = error_message([&] { io::load_image(big); });
    CHECK(contains(message, big + ": a 16384x2441 16-bit interlaced PNG would take about 1067 MB to decode"));
    CHECK(contains(message, "the limit is 512 MB"));
  }

  TEST_CASE("the shipped photos load") {
    const io::Image cat = io::load_image("assets/chelsea.png");
    CHECK(cat.width > 100);
    CHECK(cat.channels >= 3);
  }

  TEST_CASE("bad image files give one error naming the file, and writing nothing") {
    test::TempDir dir;
    const std::string path = dir.file("bad.png");
    test::write_bytes(path, {});
    CHECK(contains(error_message([&] { io::load_image(path); }), path + ": an empty file; only PNG and JPEG"));
    test::write_bytes(path, {'G', 'I', 'F', '8', '9', 'a', 0, 0});
    CHECK(contains(error_message([&] { io::load_image(path); }), path + ": a GIF image; only PNG and JPEG"));
    test::write_bytes(path, {'h', 'e', 'l', 'l', 'o'});
    CHECK(contains(error_message([&] { io::load_image(path); }), path + ": not a PNG or JPEG image"));
    // A real PNG cut short: the header is fine, the data is not.
    io::Image image{64, 64, 1, std::vector<uint8_t>(64 * 64)};
    for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(i * 31 % 251);
    io::save_png(dir.file("good.png"), image);
    std::vector<uint8_t> bytes = io::read_file(dir.file("good.png"));
    bytes.resize(bytes.size() / 2);
    test::write_bytes(path, bytes);
    CHECK(contains(error_message([&] { io::load_image(path); }), path + ": corrupt PNG"));
    // A PNG whose header declares 100000 x 100000 pixels is refused before decoding.
    bytes = io::read_file(dir.file("good.png"));
    const uint8_t huge[8] = {0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0};  // IHDR width and height
    std::copy(huge, huge + 8, bytes.begin() + 16);
    test::write_bytes(path, bytes);
    const std::string message = error_message([&] { io::load_image(path); });
    CHECK(contains(message, path + ": "));
    CHECK((contains(message, "100000x100000") || contains(message, "corrupt image header")));
    CHECK(contains(error_message([&] { io::save_png(dir.file("no/dir/x.png"), image); }), "x.png: cannot write"));
    CHECK_FALSE(io::file_exists(dir.file("no/dir/x.png")));
  }
}
