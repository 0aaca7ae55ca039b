// Fashion-MNIST: the IDX reader (gzipped, as Debian's dataset-fashion-mnist ships
// it), shuffling, batching and the normalization the reference model expects.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tinygrad-cpp/core/tensor.h"

namespace tg::data {

constexpr float kFashionMean = 0.2860f;  // x = (pixel/255 - mean) / std
constexpr float kFashionStd = 0.3530f;
constexpr int64_t kImageSide = 28;
extern const std::array<const char*, 10> kFashionClasses;  // "T-shirt/top", "Trouser", ...
const char* default_data_dir();  // $TG_DATA, else /usr/share/datasets/fashion-mnist

// One IDX file: its dimensions and its raw unsigned bytes.
struct IdxFile {
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;
};
// Reads a .gz or plain IDX file of unsigned bytes with the given magic (0x00000803 for
// images, 0x00000801 for labels), validating the header before allocating the data.
IdxFile read_idx(const std::string& path, uint32_t expected_magic);
// Writes a gzipped IDX file (used to make the shipped sample and by the tests).
void write_idx_gz(const std::string& path, uint32_t magic, const std::vector<int64_t>& dims, const std::vector<uint8_t>& bytes);

enum class Split { Train, Test };

struct Dataset {
  std::vector<uint8_t> pixels;  // size() images of 28x28, row-major
  std::vector<int64_t> labels;  // 0..9
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

// Loads <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; checks 28x28 images,
// as many images as labels, and labels <= 9.
Dataset load_fashion_mnist(const std::string& dir, Split split);

// A batch: the normalized images [n,1,28,28] and their labels.
struct Batch {
  Tensor images;
  std::vector<int64_t> labels;
};
Batch make_batch(const Dataset& data, const std::vector<int64_t>& order, int64_t begin, int64_t end);
// One image's pixels (0..255) normalized as the model expects, shape [1,1,28,28].
Tensor normalize_pixels(const uint8_t* pixels, int64_t count = 1);
// 0..n-1 in an order fixed by the generator's state (Fisher-Yates).
std::vector<int64_t> shuffled_indices(int64_t n, Generator& gen);

}  // namespace tg::data
