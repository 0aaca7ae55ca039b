#include "tinygrad-cpp/data/data.h"

#include <fmt/format.h>
#include <zlib.h>

#include <cstdlib>
#include <numeric>

#include "tinygrad-cpp/data/io.h"

namespace tg::data {

const std::array<const char*, 10> kFashionClasses = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

const char* default_data_dir() {
  const char* env = std::getenv("TG_DATA");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

namespace {

Error idx_error(const std::string& path, const std::string& what) { return Error(path + ": " + what); }

constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 28;  // 256 MiB: Fashion-MNIST's largest file is 47 MB

// Streams the decompressed bytes of a gzip file (or passes a plain file through).
class Decompressor {
 public:
  Decompressor(const std::vector<uint8_t>& file, const std::string& path) : file_(file), path_(path) {
    gzipped_ = file.size() >= 2 && file[0] == 0x1f && file[1] == 0x8b;
    if (gzipped_) {
      if (inflateInit2(&stream_, 15 + 16) != Z_OK) throw idx_error(path, "cannot start gzip decompression");
      stream_.next_in = const_cast<Bytef*>(file.data());
      stream_.avail_in = static_cast<uInt>(file.size());
    }
  }
  ~Decompressor() {
    if (gzipped_) inflateEnd(&stream_);
  }
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;

  // Fills exactly `count` bytes, or reports how many there were.
  size_t read(uint8_t* out, size_t count) {
    if (!gzipped_) {
      const size_t n = std::min(count, file_.size() - position_);
      std::copy_n(file_.data() + position_, n, out);
      position_ += n;
      return n;
    }
    size_t produced = 0;
    while (produced < count && !finished_) {
      stream_.next_out = out + produced;
      stream_.avail_out = static_cast<uInt>(std::min<size_t>(count - produced, 1u << 30));
      const int status = inflate(&stream_, Z_NO_FLUSH);
      produced = count - stream_.avail_out;
      if (status == Z_STREAM_END) finished_ = true;
      else if (status == Z_BUF_ERROR && stream_.avail_in == 0) throw idx_error(path_, "truncated gzip data");
      else if (status != Z_OK) throw idx_error(path_, std::string("corrupt gzip data (") + (stream_.msg ? stream_.msg : "zlib error") + ")");
    }
    return produced;
  }

 private:
  const std::vector<uint8_t>& file_;
  std::string path_;
  bool gzipped_ = false, finished_ = false;
  size_t position_ = 0;
  z_stream stream_{};
};

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

IdxFile read_idx(const std::string& path, uint32_t expected_magic) {
  const std::vector<uint8_t> file = io::read_file(path, kMaxIdxBytes);
  Decompressor input(file, path);
  uint8_t head[4];
  if (input.read(head, 4) != 4) throw idx_error(path, "too short for an IDX header");
  const uint32_t magic = big_endian(head);
  if (magic != expected_magic)
    throw idx_error(path, fmt::format("wrong magic 0x{:08x} (expected 0x{:08x})", magic, expected_magic));
  const int ndims = head[3];
  uint8_t dim_bytes[4 * 255];
  if (input.read(dim_bytes, 4 * ndims) != static_cast<size_t>(4 * ndims)) throw idx_error(path, "truncated IDX header");
  IdxFile idx;
  uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint64_t d = big_endian(dim_bytes + 4 * i);
    if (d != 0 && total > kMaxIdxBytes / d)
      throw idx_error(path, fmt::format("declared dimensions are too large (more than {} bytes)", kMaxIdxBytes));
    total *= d;
    idx.dims.push_back(static_cast<int64_t>(d));
  }
  idx.bytes.resize(total);
  const size_t got = input.read(idx.bytes.data(), total);
  if (got != total) throw idx_error(path, fmt::format("truncated: header declares {} data bytes, the file holds {}", total, got));
  uint8_t extra;
  if (input.read(&extra, 1) != 0) throw idx_error(path, "trailing bytes after the declared data");
  return idx;
}

void write_idx_gz(const std::string& path, uint32_t magic, const std::vector<int64_t>& dims, const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> raw;
  for (int shift = 24; shift >= 0; shift -= 8) raw.push_back(static_cast<uint8_t>(magic >> shift));
  for (int64_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) raw.push_back(static_cast<uint8_t>(static_cast<uint64_t>(d) >> shift));
  raw.insert(raw.end(), bytes.begin(), bytes.end());
  z_stream stream{};
  if (deflateInit2(&stream, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw Error(path + ": cannot start gzip");
  std::vector<uint8_t> out(deflateBound(&stream, static_cast<uLong>(raw.size())));
  stream.next_in = raw.data();
  stream.avail_in = static_cast<uInt>(raw.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (status != Z_STREAM_END) throw Error(path + ": gzip compression failed");
  io::write_file_atomic(path, out.data(), out.size());
}

Dataset load_fashion_mnist(const std::string& dir, Split split) {
  const std::string prefix = dir + (split == Split::Train ? "/train" : "/t10k");
  auto find = [&](const std::string& stem) {
    const std::string gz = prefix + stem + ".gz";
    if (io::file_exists(gz) || !io::file_exists(prefix + stem)) return gz;
    return prefix + stem;
  };
  const std::string image_path = find("-images-idx3-ubyte"), label_path = find("-labels-idx1-ubyte");
  if (!io::file_exists(image_path))
    throw Error(image_path + ": not found (install Debian's dataset-fashion-mnist, or pass --data DIR / set TG_DATA)");
  IdxFile images = read_idx(image_path, 0x00000803);
  if (images.dims.size() != 3 || images.dims[1] != kImageSide || images.dims[2] != kImageSide)
    throw Error(image_path + ": images must be N x 28 x 28, the file declares " + shape_str(images.dims));
  IdxFile labels = read_idx(label_path, 0x00000801);
  if (labels.dims.size() != 1) throw Error(label_path + ": labels must be one-dimensional, the file declares " + shape_str(labels.dims));
  if (labels.dims[0] != images.dims[0])
    throw Error(fmt::format("{}: {} labels for {} images in {}", label_path, labels.dims[0], images.dims[0], image_path));
  if (images.dims[0] == 0) throw Error(image_path + ": the file holds no images (an empty data set trains and tests nothing)");
  Dataset d;
  d.labels.reserve(labels.bytes.size());
  for (size_t i = 0; i < labels.bytes.size(); ++i) {
    if (labels.bytes[i] > 9) throw Error(fmt::format("{}: label {} at index {} is not a class 0-9", label_path, labels.bytes[i], i));
    d.labels.push_back(labels.bytes[i]);
  }
  d.pixels = std::move(images.bytes);
  return d;
}

namespace {
// x = (pixel/255 - mean) / std, the normalization the reference model was trained with.
void normalize_into(const uint8_t* pixels, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = (static_cast<float>(pixels[i]) / 255.f - kFashionMean) / kFashionStd;
}
}  // namespace

Tensor normalize_pixels(const uint8_t* pixels, int64_t count) {
  Tensor t = Tensor::empty({count, 1, kImageSide, kImageSide});
  normalize_into(pixels, t.numel(), t.data());
  return t;
}

Batch make_batch(const Dataset& data, const std::vector<int64_t>& order, int64_t begin, int64_t end) {
  const int64_t pixels = kImageSide * kImageSide;
  Batch batch;
  batch.images = Tensor::empty({end - begin, 1, kImageSide, kImageSide});
  for (int64_t i = begin; i < end; ++i) {
    const int64_t index = order[i];
    normalize_into(data.pixels.data() + index * pixels, pixels, batch.images.data() + (i - begin) * pixels);
    batch.labels.push_back(data.labels[index]);
  }
  return batch;
}

std::vector<int64_t> shuffled_indices(int64_t n, Generator& gen) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[gen.next_u64() % static_cast<uint64_t>(i + 1)]);
  return order;
}

}  // namespace tg::data
