// The Fashion-MNIST IDX reader on small files the tests write themselves, good and bad.
#include <cstdio>
#include <filesystem>

#include "tests/helpers.h"
#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/data/io.h"

using namespace tg;
using test::contains;
using test::error_message;
using test::write_bytes;
namespace fs = std::filesystem;

namespace {
struct DataDir : test::TempDir {
  // A test split of n images whose pixels are i+k and whose labels are i % 10.
  void write_split(int64_t n, int64_t side = 28) const {
    std::vector<uint8_t> pixels(static_cast<size_t>(n * side * side)), labels(static_cast<size_t>(n));
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i % 251);
    for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<uint8_t>(i % 10);
    data::write_idx_gz(file("t10k-images-idx3-ubyte.gz"), 0x803, {n, side, side}, pixels);
    data::write_idx_gz(file("t10k-labels-idx1-ubyte.gz"), 0x801, {n}, labels);
  }
};

}  // namespace

TEST_SUITE("data") {
  TEST_CASE("a written split loads with its pixels, labels and normalization") {
    DataDir dir;
    dir.write_split(12);
    const data::Dataset d = data::load_fashion_mnist(dir.path.string(), data::Split::Test);
    REQUIRE(d.size() == 12);
    CHECK(d.labels[11] == 1);
    CHECK(d.pixels[784 + 5] == static_cast<uint8_t>((784 + 5) % 251));
    std::vector<int64_t> order = {3, 0};
    const data::Batch b = data::make_batch(d, order, 0, 2);
    CHECK(b.images.shape() == Shape{2, 1, 28, 28});
    CHECK(b.labels == std::vector<int64_t>{3, 0});
    const float pixel = d.pixels[3 * 784 + 7];
    CHECK(b.images.data()[7] == doctest::Approx((pixel / 255.f - 0.2860f) / 0.3530f));
  }

  TEST_CASE("shuffling is a permutation fixed by the seed") {
    Generator a(5), b(5), c(6);
    const auto p = data::shuffled_indices(100, a), q = data::shuffled_indices(100, b), r = data::shuffled_indices(100, c);
    CHECK(p == q);
    CHECK(p != r);
    std::vector<int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < 100; ++i) CHECK(sorted[i] == i);
  }

  TEST_CASE("bad IDX files give one error naming the file and the problem") {
    DataDir dir;
    const std::string images = dir.file("t10k-images-idx3-ubyte.gz");
    const std::string labels = dir.file("t10k-labels-idx1-ubyte.gz");
    auto load = [&] { return error_message([&] { data::load_fashion_mnist(dir.path.string(), data::Split::Test); }); };

    CHECK(contains(load(), images + ": not found"));

    dir.write_split(4);
    data::write_idx_gz(images, 0x801, {4, 28, 28}, std::vector<uint8_t>(4 * 784));
    CHECK(contains(load(), images + ": wrong magic 0x00000801 (expected 0x00000803)"));

    data::write_idx_gz(images, 0x803, {4, 27, 28}, std::vector<uint8_t>(4 * 27 * 28));
    CHECK(contains(load(), images + ": images must be N x 28 x 28"));

    // Declares 2^31 images: refused before anything that size is allocated.
    data::write_idx_gz(images, 0x803, {int64_t{1} << 31, 28, 28}, std::vector<uint8_t>(784));
    CHECK(contains(load(), images + ": declared dimensions are too large"));

    data::write_idx_gz(images, 0x803, {5, 28, 28}, std::vector<uint8_t>(4 * 784));
    CHECK(contains(load(), images + ": truncated: header declares 3920 data bytes, the file holds 3136"));

    data::write_idx_gz(images, 0x803, {4, 28, 28}, std::vector<uint8_t>(4 * 784 + 3));
    CHECK(contains(load(), images + ": trailing bytes"));

    // A gzip stream cut in half.
    dir.write_split(4);
    std::vector<uint8_t> gz = io::read_file(images);
    gz.resize(gz.size() / 2);
    write_bytes(images, gz);
    CHECK(contains(load(), images + ": truncated gzip data"));

    // Corrupt compressed bytes.
    dir.write_split(4);
    gz = io::read_file(images);
    for (size_t i = 12; i < gz.size() - 8; ++i) gz[i] ^= 0x5a;
    write_bytes(images, gz);
    CHECK(contains(load(), images + ": "));
    CHECK(contains(load(), "gzip"));

    dir.write_split(4);
    data::write_idx_gz(labels, 0x801, {3}, {1, 2, 3});
    CHECK(contains(load(), labels + ": 3 labels for 4 images"));

    data::write_idx_gz(labels, 0x801, {4}, {1, 2, 12, 3});
    CHECK(contains(load(), labels + ": label 12 at index 2 is not a class 0-9"));

    write_bytes(labels, {0, 0});
    CHECK(contains(load(), labels + ": too short for an IDX header"));
  }

  TEST_CASE("plain (not gzipped) IDX files load too") {
    DataDir dir;
    std::vector<uint8_t> raw = {0, 0, 8, 1, 0, 0, 0, 2, 4, 7};
    write_bytes(dir.file("labels"), raw);
    const data::IdxFile f = data::read_idx(dir.file("labels"), 0x801);
    CHECK(f.dims == std::vector<int64_t>{2});
    CHECK(f.bytes == std::vector<uint8_t>{4, 7});
  }

  TEST_CASE("the shipped sample holds the first 1,000 test images") {
    const data::Dataset d = data::load_fashion_mnist("assets/fashion-sample", data::Split::Test);
    CHECK(d.size() == 1000);
    CHECK(d.labels[0] == 9);  // the first Fashion-MNIST test image is an ankle boot
    int64_t per_class[10] = {};
    for (int64_t l : d.labels) ++per_class[l];
    for (int64_t c : per_class) CHECK(c > 50);
  }
}
