// safetensors, .npy and atomic writes, including the files a reader must refuse:
// each refusal is a tg::Error that names the file and the problem.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "tests/helpers.h"
#include "tinygrad-cpp/data/io.h"

using namespace tg;
using test::contains;
using test::error_message;
namespace fs = std::filesystem;

namespace {
using test::TempDir;
using test::write_bytes;

// A safetensors file with a hand-written header and `data_bytes` bytes of data.
std::vector<uint8_t> safetensors_bytes(const std::string& header, size_t data_bytes) {
  std::string text(8, '\0');
  for (int i = 0; i < 8; ++i) text[i] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  text += header;
  text.append(data_bytes, '\0');
  return {text.begin(), text.end()};
}

std::string load_error(const TempDir& dir, const std::vector<uint8_t>& bytes) {
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  return error_message([&] { io::load_safetensors(path); });
}
}  // namespace

TEST_SUITE("io") {
  TEST_CASE("safetensors round trip keeps names, shapes, values and metadata") {
    TempDir dir;
    Generator gen(1);
    const Tensor a = Tensor::randn({2, 3, 4}, gen), b = Tensor::randn({5}, gen), s = Tensor::scalar(7.f);
    io::save_safetensors(dir.file("w.safetensors"), {{"fc2.weight", a}, {"conv1.bias", b}, {"steps", s}},
                         {{"arch", "FashionCNN"}, {"classes", "a,b"}});
    const io::NamedTensors loaded = io::load_safetensors(dir.file("w.safetensors"));
    REQUIRE(loaded.tensors.size() == 3);
    CHECK(loaded.tensors[0].first == "conv1.bias");  // sorted by name
    CHECK(loaded.at("fc2.weight").shape() == Shape{2, 3, 4});
    CHECK(loaded.at("fc2.weight").to_vector() == a.to_vector());
    CHECK(loaded.at("conv1.bias").to_vector() == b.to_vector());
    CHECK(loaded.at("steps").item() == 7.f);
    CHECK(loaded.metadata.at("arch") == "FashionCNN");
    // The header is padded so the data starts 8-byte aligned.
    const std::vector<uint8_t> bytes = io::read_file(dir.file("w.safetensors"));
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    CHECK((8 + n) % 8 == 0);
    CHECK(bytes[8] == '{');
  }

  TEST_CASE("bad safetensors files are refused with the file and the problem") {
    TempDir dir;
    const std::string path = dir.file("bad.safetensors");
    CHECK(contains(load_error(dir, {1, 2, 3}), path + ": 3 bytes is too short"));
    CHECK(contains(load_error(dir, safetensors_bytes("{}", 0)), "") );  // an empty header is a valid, empty file
    std::vector<uint8_t> huge(16, 0);
    huge[0] = 0x01; huge[3] = 0x10;  // header length 0x10000001, past the end of a 16-byte file
    CHECK(contains(load_error(dir, huge), path + ": not a safetensors file"));
    std::vector<uint8_t> past_end = safetensors_bytes("{}", 0);
    past_end[0] = 200;
    CHECK(contains(load_error(dir, past_end), "not a safetensors file"));
    CHECK(contains(load_error(dir, safetensors_bytes("[1,2] ", 0)), "not a safetensors file"));
    // A text file (the README) is not a safetensors file, whatever its first bytes add up to.
    CHECK(contains(error_message([] { io::load_safetensors("README.md"); }), "README.md: not a safetensors file"));
    // A real length beyond the 16 MB cap, in a file that long: refused before any parsing.
    std::vector<uint8_t> long_header(8 + (size_t{17} << 20), ' ');
    const uint64_t n = size_t{17} << 20;
    for (int i = 0; i < 8; ++i) long_header[i] = static_cast<uint8_t>(n >> (8 * i));
    long_header[8] = '{';
    CHECK(contains(load_error(dir, long_header), "exceeds the 16777216-byte cap"));
    // Nested brackets are refused when they pass 8 levels, before the parser builds the rest.
    std::string nested = "{\"a\":";
    for (int i = 0; i < 100000; ++i) nested += '[';
    CHECK(contains(load_error(dir, safetensors_bytes(nested, 0)), "header nests deeper than 8 levels"));
    CHECK(contains(load_error(dir, safetensors_bytes("{\"a\": ", 0)), "header is not valid JSON"));
    const std::string two = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    CHECK(contains(load_error(dir, safetensors_bytes(two, 12)), "tensor 'b': data_offsets [4,12] overlap the previous tensor"));
    const std::string gap = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
    CHECK(contains(load_error(dir, safetensors_bytes(gap, 12)), "tensor 'b': data_offsets [8,12] leave a gap"));
    const std::string one = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    CHECK(contains(load_error(dir, safetensors_bytes(one, 12)), "4 trailing bytes after the last tensor"));
    CHECK(contains(load_error(dir, safetensors_bytes(one, 4)), "tensor 'a': data_offsets [0,8] are outside the 4-byte data section"));
    const std::string wrong_size = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
    CHECK(contains(load_error(dir, safetensors_bytes(wrong_size, 8)), "tensor 'a': shape [3] needs 12 bytes but data_offsets [0,8] hold 8"));
    const std::string f16 = R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})";
    CHECK(contains(load_error(dir, safetensors_bytes(f16, 4)), "dtype F16 is not supported"));
    const std::string big = R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})";
    CHECK(contains(load_error(dir, safetensors_bytes(big, 4)), "is too large"));
    CHECK(contains(error_message([&] { io::load_safetensors(dir.file("missing.safetensors")); }),
                   dir.file("missing.safetensors") + ": cannot open"));
  }

  TEST_CASE(".npy v1.0 <f4: header, alignment, round trip, refusals") {
    TempDir dir;
    Generator gen(2);
    const Tensor t = Tensor::randn({2, 3}, gen);
    io::save_npy(dir.file("a.npy"), t);
    const std::vector<uint8_t> bytes = io::read_file(dir.file("a.npy"));
    CHECK(std::memcmp(bytes.data(), "\x93NUMPY\x01\x00", 8) == 0);
    const size_t header_len = bytes[8] | (bytes[9] << 8);
    CHECK((10 + header_len) % 64 == 0);
    const std::string header(bytes.begin() + 10, bytes.begin() + 10 + static_cast<long>(header_len));
    CHECK(contains(header, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
    CHECK(header.back() == '\n');
    CHECK(bytes.size() == 10 + header_len + 24);
    CHECK(io::load_npy(dir.file("a.npy")).to_vector() == t.to_vector());
    io::save_npy(dir.file("b.npy"), Tensor::arange(0, 5));
    CHECK(io::load_npy(dir.file("b.npy")).shape() == Shape{5});
    std::vector<uint8_t> truncated(bytes.begin(), bytes.end() - 4);
    write_bytes(dir.file("c.npy"), truncated);
    CHECK(contains(error_message([&] { io::load_npy(dir.file("c.npy")); }), "shape [2,3] needs 24 bytes of data, the file has 20"));
    write_bytes(dir.file("d.npy"), {'n', 'o', 't', ' ', 'n', 'p', 'y', '!', '!', '!'});
    CHECK(contains(error_message([&] { io::load_npy(dir.file("d.npy")); }), "d.npy: not a .npy file"));
  }

  TEST_CASE("atomic writes leave no temporary file and no partial file on failure") {
    TempDir dir;
    const std::vector<uint8_t> data = {1, 2, 3};
    io::write_file_atomic(dir.file("x.bin"), data.data(), data.size());
    CHECK(io::read_file(dir.file("x.bin")) == data);
    size_t files = 0;
    for (const auto& entry : fs::directory_iterator(dir.path)) files += entry.is_regular_file();
    CHECK(files == 1);
    const std::string bad = dir.file("no/such/folder/x.bin");
    CHECK(contains(error_message([&] { io::write_file_atomic(bad, data.data(), data.size()); }), bad + ": cannot write"));
    CHECK_FALSE(io::file_exists(bad));
  }
}

TEST_SUITE("io-writes") {
  TEST_CASE("two files written as one: if the second cannot be written, the first is not replaced") {
    test::TempDir dir;
    const std::string weights = dir.file("w.safetensors");
    test::write_bytes(weights, {'o', 'l', 'd'});
    const std::string message = test::error_message([&] {
      io::write_files_atomic({{weights, {'n', 'e', 'w'}}, {dir.file("no/such/dir/w.ckpt.safetensors"), {1}}});
    });
    CHECK(test::contains(message, "w.ckpt.safetensors: cannot write"));
    CHECK(io::read_file(weights) == std::vector<uint8_t>{'o', 'l', 'd'});
    int leftovers = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path))
      leftovers += entry.path().filename().string().find(".tmp-") != std::string::npos;
    CHECK(leftovers == 0);
    io::write_files_atomic({{weights, {'n', 'e', 'w'}}, {dir.file("w.ckpt.safetensors"), {1}}});
    CHECK(io::read_file(weights) == std::vector<uint8_t>{'n', 'e', 'w'});
  }

  TEST_CASE("a write never follows a planted link, never replaces a device, and cleans a killed run's leftovers") {
    test::TempDir dir;
    const std::string victim = dir.file("victim.txt"), out = dir.file("out.npy");
    test::write_bytes(victim, {'k', 'e', 'e', 'p'});
    std::filesystem::create_symlink(victim, out);
    const Tensor t = Tensor::from_vector({1.f, 2.f}, {2});
    CHECK(test::contains(test::error_message([&] { io::save_npy(out, t); }), out + ": exists and is not a regular file"));
    CHECK(io::read_file(victim) == std::vector<uint8_t>{'k', 'e', 'e', 'p'});
    CHECK(std::filesystem::is_symlink(out));
    // A device is refused, and stays a device.
    CHECK(test::contains(test::error_message([&] { io::save_npy("/dev/null", t); }), "/dev/null: exists and is not a regular file"));
    struct stat st {};
    REQUIRE(::stat("/dev/null", &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    // A temporary file a killed run left behind (its process is gone) is removed by the next
    // write to the same target; the write itself lands whole.
    const std::string good = dir.file("good.npy");
    const std::string stale = dir.file(".good.npy.tmp-4194303-AbCdEf");
    test::write_bytes(stale, {1, 2, 3});
    io::save_npy(good, t);
    CHECK_FALSE(std::filesystem::exists(stale));
    CHECK(io::load_npy(good).to_vector() == std::vector<float>{1.f, 2.f});
    int leftovers = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path))
      leftovers += entry.path().filename().string().find(".tmp-") != std::string::npos;
    CHECK(leftovers == 0);
  }

  TEST_CASE("jpeg_orientation reads the EXIF tag and gives 1 for every hostile or cut-short header") {
    // SOI, an APP1 "Exif" segment (big-endian TIFF, one IFD entry: orientation 6), then SOS.
    const std::vector<uint8_t> tiff = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0};
    auto file = [](const std::vector<uint8_t>& tiff_bytes, int declared_extra = 0) {
      const size_t length = 2 + 6 + tiff_bytes.size() + static_cast<size_t>(declared_extra);
      std::vector<uint8_t> b;
      for (const int v : {0xff, 0xd8, 0xff, 0xe1, static_cast<int>(length >> 8), static_cast<int>(length & 0xff), 0x45, 0x78, 0x69,
                          0x66, 0, 0})  // "Exif\0\0"
        b.push_back(static_cast<uint8_t>(v));
      for (const uint8_t v : tiff_bytes) b.push_back(v);
      for (const int v : {0xff, 0xda, 0, 2}) b.push_back(static_cast<uint8_t>(v));
      return b;
    };
    auto orientation = [](const std::vector<uint8_t>& b) {
      // An exact-size heap copy, so a read past the end is a sanitizer's report, not luck.
      std::unique_ptr<uint8_t[]> exact(new uint8_t[b.size()]);
      std::copy(b.begin(), b.end(), exact.get());
      return io::jpeg_orientation(exact.get(), b.size());
    };
    CHECK(orientation(file(tiff)) == 6);
    // After a JFIF APP0 and fill bytes, too.
    std::vector<uint8_t> jfif = {0xff, 0xd8, 0xff, 0xe0, 0, 4, 'J', 'F', 0xff};
    const std::vector<uint8_t> rest = file(tiff);
    for (size_t i = 2; i < rest.size(); ++i) jfif.push_back(rest[i]);
    CHECK(orientation(jfif) == 6);
    // Little-endian.
    CHECK(orientation(file({'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0})) == 3);
    // Every prefix of the file: 6 once the whole IFD entry is there, 1 before, never a read outside.
    const std::vector<uint8_t> whole = file(tiff);
    for (size_t n = 0; n <= whole.size(); ++n) {
      const int got = orientation(std::vector<uint8_t>(whole.begin(), whole.begin() + static_cast<long>(n)));
      CHECK((got == 1 || got == 6));
    }
    auto changed = [&](size_t at, uint8_t value) {
      std::vector<uint8_t> t = tiff;
      t[at] = value;
      return orientation(file(t));
    };
    CHECK(changed(7, 0xf0) == 1);      // the IFD offset past the segment
    CHECK(changed(4, 0xff) == 1);      // an offset near 4 GB (no overflow into range)
    CHECK(changed(8, 0xff) == 6);      // 65,281 entries declared: the one that is there is read
    std::vector<uint8_t> other_tag = tiff;
    other_tag[8] = 0xff, other_tag[11] = 0x13;  // ... and when it is not the orientation, the walk stops at the end
    CHECK(orientation(file(other_tag)) == 1);
    CHECK(changed(13, 4) == 1);        // a LONG, not a SHORT
    CHECK(changed(19, 9) == 1);        // orientation 9 does not exist
    CHECK(changed(0, 'X') == 1);       // neither II nor MM
    CHECK(changed(3, 43) == 1);        // not 42
    CHECK(orientation(file(tiff, 1000)) == 1);  // the segment declares more bytes than the file has
    CHECK(orientation({0xff, 0xd8, 0xff, 0xe1, 0, 0}) == 1);  // a length below 2
    CHECK(orientation({0x89, 'P', 'N', 'G'}) == 1);
    CHECK(orientation({}) == 1);
  }
}
