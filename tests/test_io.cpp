// safetensors, .npy and atomic writes, including the files a reader must refuse:
// each refusal is a tg::Error that names the file and the problem.
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

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
}
