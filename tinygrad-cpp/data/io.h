// Files in and out: safetensors (weights), .npy (arrays for NumPy), and the two
// rules every reader and writer here follows:
//   - a reader validates before it allocates (magic, declared sizes against the real
//     file size, overflow-checked arithmetic, caps) and throws tg::Error
//     "<path>: <what is wrong>";
//   - a writer writes to a temporary name and renames, so an interrupted run never
//     leaves a truncated file behind.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tinygrad-cpp/core/tensor.h"

namespace tg::io {

// The whole file, refusing files larger than max_bytes.
std::vector<uint8_t> read_file(const std::string& path, uint64_t max_bytes = uint64_t{1} << 31);
// The first `count` bytes of the file (fewer if it is shorter), to sniff its format.
std::vector<uint8_t> read_file_head(const std::string& path, size_t count);
// Writes several files as one: every file is written and synced to a temporary first, and
// only then are they renamed into place, one right after the other (the weights and the
// checkpoint of one epoch: a crash while writing leaves the previous pair).
void write_files_atomic(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files);
// Writes `path` atomically (temporary file in the same folder, then rename).
void write_file_atomic(const std::string& path, const void* data, size_t size);
bool file_exists(const std::string& path);

// ---- safetensors: 8-byte little-endian header length, JSON header, raw F32 data ----
struct NamedTensors {
  std::vector<std::pair<std::string, Tensor>> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;          // __metadata__

  const Tensor* find(const std::string& name) const;
  const Tensor& at(const std::string& name) const;  // throws naming the missing tensor
};

// Real headers are a few kilobytes (tens of thousands of tensors fit in 16 MB); the reference
// implementation allows 100 MB, which a hostile file turns into gigabytes of parsed JSON.
constexpr uint64_t kSafetensorsMaxHeader = uint64_t{16} << 20;
constexpr int kSafetensorsMaxNesting = 8;  // a real header nests 3 deep: {name: {shape: [..]}}

NamedTensors load_safetensors(const std::string& path);
// `label` names the data in error messages (a path, or "<memory>").
NamedTensors parse_safetensors(const uint8_t* bytes, size_t size, const std::string& label);
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
std::vector<uint8_t> serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                           const std::map<std::string, std::string>& metadata);

// ---- .npy v1.0, little-endian float32 ('<f4'), C order ----
void save_npy(const std::string& path, const Tensor& t);
Tensor load_npy(const std::string& path);

// ---- images: PNG and JPEG in (sniffed by magic; stb_image and libjpeg-turbo), PNG out ----
// 8-bit pixels, row-major, channels interleaved (1 = gray, 3 = RGB, 4 = RGBA).
struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
  uint8_t& at(int y, int x, int c) { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
  uint8_t at(int y, int x, int c) const { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
};
constexpr int kMaxImageSide = 16384;             // larger declared sizes are refused before decoding,
constexpr int64_t kMaxImagePixels = 40'000'000;  // and so are more pixels than this (120 MB as RGB)
// A PNG whose decoding would hold more than this (estimated from its header: an 8-bit RGBA image at
// the pixel cap costs 480 MB; 16-bit and interlaced ones cost more a pixel) is refused before decoding.
constexpr int64_t kMaxPngDecodeBytes = int64_t{512} << 20;

// An image file larger than this is refused before it is read.
constexpr uint64_t kMaxImageFileBytes = uint64_t{256} << 20;

// Loads a PNG (stb_image) or JPEG (libjpeg-turbo) file. Other formats are refused by name
// ("a GIF image"); the declared size is checked before anything is decoded.
Image load_image(const std::string& path);
// The same from a file's bytes already in memory (an upload); `label` names it in errors.
Image decode_image(const std::vector<uint8_t>& bytes, const std::string& label);
// The EXIF orientation of a JPEG (1 to 8, as a phone stores it: 6 = the pixels are to be turned 90
// degrees clockwise to stand upright), read from the APP1 "Exif" segment's first IFD (tag 0x0112)
// among the file's first `size` bytes; 1 (upright) when the file has none or it cannot be read.
// Hostile bytes (lengths and offsets past the end, loops) give 1: it never reads outside them.
int jpeg_orientation(const uint8_t* bytes, size_t size);
// How many bytes of a file jpeg_orientation needs at most (an APP1 segment is at most 64 KB and
// comes before the image data; a JFIF APP0 may precede it).
constexpr size_t kJpegOrientationBytes = size_t{1} << 17;

// Writes a PNG atomically.
void save_png(const std::string& path, const Image& image);
// How hard a PNG's compression works: Small for files kept (figures), Fast for images sent once
// to a browser on this machine (the explorer's panels), where time matters more than bytes
// (zlib level 1: about a fifth of the time, files about a third larger). The pixels are the same.
enum class PngEffort { Small, Fast };
// The PNG file's bytes (`label` names the image in errors).
std::vector<uint8_t> encode_png(const Image& image, const std::string& label, PngEffort effort = PngEffort::Small);
// The .npy file's bytes.
std::vector<uint8_t> encode_npy(const Tensor& t);

}  // namespace tg::io
