#include "tinygrad-cpp/data/io.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
// jpeglib.h needs FILE from <cstdio> first.
#include <jpeglib.h>
#include <stb/stb_image.h>
#include <zlib.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

namespace tg::io {

namespace {
Error file_error(const std::string& path, const std::string& what) { return Error(path + ": " + what); }

// a * b, or an error when it would overflow `limit`.
uint64_t checked_multiply(uint64_t a, uint64_t b, uint64_t limit, const std::string& path, const char* what) {
  if (a != 0 && b > limit / a) throw file_error(path, std::string(what) + " is too large");
  return a * b;
}
}  // namespace

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<uint8_t> read_file(const std::string& path, uint64_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw file_error(path, "not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    throw file_error(path, fmt::format("file is {} bytes, more than the {} allowed", st.st_size, max_bytes));
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  const size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  if (got != bytes.size()) throw file_error(path, "read error");
  return bytes;
}

std::vector<uint8_t> read_file_head(const std::string& path, size_t count) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw file_error(path, "not a regular file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  std::vector<uint8_t> bytes(count);
  bytes.resize(std::fread(bytes.data(), 1, count, f));
  std::fclose(f);
  return bytes;
}

namespace {

// Temporary files are "<folder>/.<name>.tmp-<pid>-XXXXXX": a file left by a process that no
// longer runs (killed mid-write) is removed by the next write to the same target.
void remove_stale_temporaries(const std::filesystem::path& folder, const std::string& name) {
  std::error_code ec;
  const std::string prefix = "." + name + ".tmp-";
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = std::strtol(file.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) std::filesystem::remove(entry.path(), ec);
  }
}

}  // namespace

namespace {

// Writes `bytes` to a new temporary file beside `path` (created exclusively, synced) and
// returns its name; nothing is at `path` yet.
std::string write_temporary(const std::string& path, const void* data, size_t size) {
  namespace fs = std::filesystem;
  // Only a regular file (or nothing) may be replaced: not a device, a FIFO, a folder or a link.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw file_error(path, "exists and is not a regular file; not overwritten");
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string name = target.filename().string();
  remove_stale_temporaries(folder, name);
  // Created exclusively with an unpredictable name: an existing file or link there makes it
  // fail instead of being followed.
  std::string temp = (folder / fmt::format(".{}.tmp-{}-XXXXXX", name, ::getpid())).string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) throw file_error(path, std::string("cannot write: ") + std::strerror(errno));
  const auto* bytes = static_cast<const uint8_t*>(data);
  size_t written = 0;
  bool ok = true;
  while (ok && written < size) {
    const ssize_t n = ::write(fd, bytes + written, size - written);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) written += static_cast<size_t>(n);
  }
  ok = ok && ::fchmod(fd, 0644) == 0 && ::fsync(fd) == 0;
  const int saved_errno = errno;
  if (::close(fd) != 0 || !ok) {
    ::unlink(temp.c_str());
    throw file_error(path, std::string("cannot write: ") + std::strerror(ok ? errno : saved_errno));
  }
  return temp;
}

// Renames the temporary into place, then syncs the folder so the rename itself lasts.
void move_into_place(const std::string& temp, const std::string& path) {
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int rename_errno = errno;
    ::unlink(temp.c_str());
    throw file_error(path, std::string("cannot rename into place: ") + std::strerror(rename_errno));
  }
  const std::filesystem::path target(path);
  const std::string folder = target.has_parent_path() ? target.parent_path().string() : ".";
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  move_into_place(write_temporary(path, data, size), path);
}

void write_files_atomic(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files) {
  std::vector<std::string> temps;
  try {
    for (const auto& [path, bytes] : files) temps.push_back(write_temporary(path, bytes.data(), bytes.size()));
  } catch (...) {
    for (const std::string& t : temps) ::unlink(t.c_str());
    throw;
  }
  for (size_t i = 0; i < files.size(); ++i) move_into_place(temps[i], files[i].first);
}

// ---------------------------------------------------------------------------------
// safetensors
const Tensor* NamedTensors::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const Tensor& NamedTensors::at(const std::string& name) const {
  if (const Tensor* t = find(name)) return *t;
  throw Error("no tensor named '" + name + "'");
}

NamedTensors parse_safetensors(const uint8_t* bytes, size_t size, const std::string& label) {
  using nlohmann::json;
  if (size < 8) throw file_error(label, fmt::format("{} bytes is too short for a safetensors file (needs an 8-byte header length)", size));
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  // A file whose first 8 bytes are not a plausible header length followed by '{' is not a
  // safetensors file at all (a text file, an image): say that, not a byte count.
  if (header_size == 0 || header_size > size - 8 || bytes[8] != '{') {
    if (header_size > kSafetensorsMaxHeader || header_size > size - 8 || (size > 8 && bytes[8] != '{'))
      throw file_error(label, "not a safetensors file (it must start with an 8-byte header length and a JSON object)");
    throw file_error(label, "header does not start with '{'");
  }
  if (header_size > kSafetensorsMaxHeader)
    throw file_error(label, fmt::format("header length {} exceeds the {}-byte cap", header_size, kSafetensorsMaxHeader));
  json header;
  try {
    // Nesting is refused as it is met, before the parser builds anything deeper.
    header = json::parse(bytes + 8, bytes + 8 + header_size, [](int depth, json::parse_event_t, json&) {
      if (depth > kSafetensorsMaxNesting) throw std::length_error("nesting");
      return true;
    });
  } catch (const std::length_error&) {
    throw file_error(label, fmt::format("header nests deeper than {} levels", kSafetensorsMaxNesting));
  } catch (const json::exception& e) {
    throw file_error(label, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw file_error(label, "header is not a JSON object");

  struct Declared {
    std::string name;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Declared> declared;
  NamedTensors result;
  const uint64_t data_size = size - 8 - header_size;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object()) throw file_error(label, "__metadata__ is not an object");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) throw file_error(label, "__metadata__ value of '" + m.key() + "' is not a string");
        result.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { return file_error(label, "tensor '" + name + "': " + what); };
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") || !value.contains("data_offsets"))
      throw bad("needs dtype, shape and data_offsets");
    if (!value["dtype"].is_string()) throw bad("dtype is not a string");
    const std::string dtype = value["dtype"].get<std::string>();
    if (dtype != "F32") throw bad("dtype " + dtype + " is not supported (only F32)");
    const json& shape_json = value["shape"];
    const json& offsets = value["data_offsets"];
    if (!shape_json.is_array() || shape_json.size() > 8) throw bad("shape must be an array of at most 8 dimensions");
    Declared d{name, {}, 0, 0};
    uint64_t count = 1;
    for (const json& dim : shape_json) {
      if (!dim.is_number_unsigned()) throw bad("shape has a dimension that is not a non-negative integer");
      const uint64_t n = dim.get<uint64_t>();
      if (n > (uint64_t{1} << 32)) throw bad(fmt::format("dimension {} is too large", n));
      count = checked_multiply(count, n, data_size / 4 + 1, label, ("tensor '" + name + "' shape").c_str());
      d.shape.push_back(static_cast<int64_t>(n));
    }
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      throw bad("data_offsets must be two non-negative integers");
    d.begin = offsets[0].get<uint64_t>();
    d.end = offsets[1].get<uint64_t>();
    if (d.begin > d.end || d.end > data_size)
      throw bad(fmt::format("data_offsets [{},{}] are outside the {}-byte data section", d.begin, d.end, data_size));
    if (d.end - d.begin != count * 4)
      throw bad(fmt::format("shape {} needs {} bytes but data_offsets [{},{}] hold {}", shape_str(d.shape), count * 4,
                            d.begin, d.end, d.end - d.begin));
    declared.push_back(std::move(d));
  }
  // The data section must be covered exactly: contiguous, no overlap, no gap, no trailing bytes.
  std::sort(declared.begin(), declared.end(), [](const Declared& a, const Declared& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected_begin = 0;
  for (const Declared& d : declared) {
    if (d.begin != expected_begin)
      throw file_error(label, fmt::format("tensor '{}': data_offsets [{},{}] {} (expected to start at {})", d.name, d.begin,
                                          d.end, d.begin < expected_begin ? "overlap the previous tensor" : "leave a gap",
                                          expected_begin));
    expected_begin = d.end;
  }
  if (expected_begin != data_size)
    throw file_error(label, fmt::format("{} trailing bytes after the last tensor", data_size - expected_begin));

  const uint8_t* data = bytes + 8 + header_size;
  for (const Declared& d : declared) {
    Tensor t = Tensor::empty(d.shape);
    if (d.end > d.begin) std::memcpy(t.data(), data + d.begin, d.end - d.begin);  // little-endian hosts only
    result.tensors.emplace_back(d.name, t);
  }
  std::sort(result.tensors.begin(), result.tensors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return result;
}

NamedTensors load_safetensors(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path, uint64_t{4} << 30);
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                           const std::map<std::string, std::string>& metadata) {
  using nlohmann::json;
  auto sorted = tensors;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    if (name == "__metadata__") throw Error("save_safetensors: '__metadata__' cannot name a tensor");
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * 4;
    header[name] = {{"dtype", "F32"}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text += ' ';  // data starts 8-byte aligned
  std::vector<uint8_t> out(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  uint8_t* data = out.data() + 8 + text.size();
  for (const auto& [name, t] : sorted) {
    std::memcpy(data, t.data(), static_cast<size_t>(t.numel()) * 4);
    data += t.numel() * 4;
  }
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::vector<uint8_t> bytes = serialize_safetensors(tensors, metadata);
  write_file_atomic(path, bytes.data(), bytes.size());
}

// ---------------------------------------------------------------------------------
// .npy
void save_npy(const std::string& path, const Tensor& t) {
  const std::vector<uint8_t> bytes = encode_npy(t);
  write_file_atomic(path, bytes.data(), bytes.size());
}

std::vector<uint8_t> encode_npy(const Tensor& t) {
  std::string shape;  // "2, 3" for (2, 3); "5," for the one-element tuple (5,)
  for (int i = 0; i < t.ndim(); ++i) {
    if (i) shape += ", ";
    shape += std::to_string(t.shape()[i]);
  }
  if (t.ndim() == 1) shape += ",";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  const size_t unpadded = 10 + header.size() + 1;  // magic(6) version(2) length(2) + header + '\n'
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const uint8_t magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  std::vector<uint8_t> out(magic, magic + 8);
  out.reserve(10 + header.size() + static_cast<size_t>(t.numel()) * 4);
  out.push_back(static_cast<uint8_t>(header.size() & 0xff));
  out.push_back(static_cast<uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  const uint8_t* data = reinterpret_cast<const uint8_t*>(t.data());
  out.insert(out.end(), data, data + t.numel() * 4);
  return out;
}

Tensor load_npy(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) throw file_error(path, "not a .npy file (bad magic)");
  if (bytes[6] != 1) throw file_error(path, fmt::format(".npy version {}.{} is not supported (only 1.0)", bytes[6], bytes[7]));
  const size_t header_len = bytes[8] | (static_cast<size_t>(bytes[9]) << 8);
  if (10 + header_len > bytes.size()) throw file_error(path, "header runs past the end of the file");
  const std::string header(bytes.begin() + 10, bytes.begin() + 10 + static_cast<std::ptrdiff_t>(header_len));
  if (header.find("'descr': '<f4'") == std::string::npos) throw file_error(path, "dtype is not '<f4' (little-endian float32)");
  if (header.find("'fortran_order': False") == std::string::npos) throw file_error(path, "Fortran order is not supported");
  const size_t open = header.find("'shape': (");
  const size_t close = open == std::string::npos ? open : header.find(')', open);
  if (close == std::string::npos) throw file_error(path, "header has no shape");
  Shape shape;
  uint64_t count = 1;
  const std::string dims = header.substr(open + 10, close - open - 10);
  size_t pos = 0;
  while (pos < dims.size()) {
    while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
    if (pos >= dims.size()) break;
    size_t used = 0;
    uint64_t d = 0;
    try {
      d = std::stoull(dims.substr(pos), &used);
    } catch (const std::exception&) {
      throw file_error(path, "shape '" + dims + "' is not a tuple of integers");
    }
    count = checked_multiply(count, d, bytes.size() / 4 + 1, path, "shape");
    shape.push_back(static_cast<int64_t>(d));
    pos += used;
  }
  if (shape.size() > 8) throw file_error(path, "more than 8 dimensions");
  const size_t data_bytes = bytes.size() - 10 - header_len;
  if (data_bytes != count * 4)
    throw file_error(path, fmt::format("shape {} needs {} bytes of data, the file has {}", shape_str(shape), count * 4, data_bytes));
  Tensor t = Tensor::empty(shape);
  if (data_bytes) std::memcpy(t.data(), bytes.data() + 10 + header_len, data_bytes);
  return t;
}

// ---------------------------------------------------------------------------------
// images
namespace {
// What the first bytes say the file is; empty for PNG and JPEG.
std::string refused_format(const std::vector<uint8_t>& b) {
  auto starts = [&](std::initializer_list<uint8_t> magic) {
    return b.size() >= magic.size() && std::equal(magic.begin(), magic.end(), b.begin());
  };
  if (starts({0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}) || starts({0xff, 0xd8, 0xff})) return "";
  if (b.empty()) return "an empty file";
  if (starts({'G', 'I', 'F', '8'})) return "a GIF image";
  if (starts({'B', 'M'})) return "a BMP image";
  if (starts({'R', 'I', 'F', 'F'})) return "a RIFF (WebP?) file";
  if (starts({'I', 'I', '*', 0}) || starts({'M', 'M', 0, '*'})) return "a TIFF image";
  if (starts({'P', '5'}) || starts({'P', '6'})) return "a PNM image";
  return "not a PNG or JPEG image";
}
}  // namespace

namespace {

// libjpeg reports errors through a callback that must not return: jump back to the caller
// with the library's message.
struct JpegErrors {
  jpeg_error_mgr manager;
  std::jmp_buf back;
  char message[JMSG_LENGTH_MAX];
};
extern "C" void jpeg_error_exit(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->back, 1);
}
extern "C" void jpeg_quiet(j_common_ptr, int) {}  // warnings (corrupt data it can live with) stay quiet

// A progressive JPEG re-reads the whole image once per scan; real ones have about ten scans,
// a hostile 60 KB file can declare thousands over 40 megapixels and decode for minutes.
constexpr int kMaxJpegScans = 100;
extern "C" void jpeg_count_scans(j_common_ptr cinfo) {
  auto* decompress = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (decompress->input_scan_number > kMaxJpegScans) {
    auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
    std::snprintf(errors->message, sizeof errors->message, "more than %d progressive scans", kMaxJpegScans);
    std::longjmp(errors->back, 1);
  }
}

void check_size(const std::string& path, int64_t width, int64_t height) {
  if (width < 1 || height < 1 || width > kMaxImageSide || height > kMaxImageSide || width * height > kMaxImagePixels)
    throw file_error(path, fmt::format("image is {}x{}; sides must be 1 to {} and at most {} million pixels", width,
                                       height, kMaxImageSide, kMaxImagePixels / 1'000'000));
}

// JPEG through libjpeg-turbo (fuzzed upstream; stb_image 2.27 writes past a Huffman table
// on a crafted file): the header is read and the size checked before anything is decoded,
// and the pixels come out as gray or RGB directly.
Image decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& path) {
  jpeg_decompress_struct cinfo{};
  JpegErrors errors{};
  cinfo.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_error_exit;
  errors.manager.emit_message = jpeg_quiet;
  Image image;
  // Everything after setjmp that must survive a longjmp lives outside this frame's locals.
  if (setjmp(errors.back)) {
    jpeg_destroy_decompress(&cinfo);
    throw file_error(path, std::string("corrupt JPEG (") + errors.message + ")");
  }
  jpeg_create_decompress(&cinfo);
  // libjpeg's own buffers (a progressive image's coefficients: 2 bytes a sample, 240 MB at
  // the pixel cap) stay under this; beyond it libjpeg stops with an error instead of allocating.
  cinfo.mem->max_memory_to_use = 512L << 20;
  jpeg_progress_mgr progress{};
  progress.progress_monitor = jpeg_count_scans;
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  const int64_t width = cinfo.image_width, height = cinfo.image_height;
  const int components = cinfo.num_components;
  try {
    if (components != 1 && components != 3)
      throw file_error(path, fmt::format("a JPEG with {} color components; gray and RGB are supported", components));
    check_size(path, width, height);
  } catch (...) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  cinfo.out_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  image.width = static_cast<int>(cinfo.output_width);
  image.height = static_cast<int>(cinfo.output_height);
  image.channels = static_cast<int>(cinfo.output_components);
  image.pixels.resize(static_cast<size_t>(image.width) * image.height * image.channels);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = image.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * image.width * image.channels;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return image;
}

uint32_t big_endian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Every PNG chunk (length, type, data, CRC) must lie inside the file. stb_image grows its
// buffer to a chunk's declared length before it finds the bytes missing, so a 100-byte file
// declaring a 1 GB chunk would cost 2 GB.
void check_png_chunks(const std::vector<uint8_t>& bytes, const std::string& path) {
  size_t pos = 8;
  while (pos < bytes.size()) {
    if (bytes.size() - pos < 12) throw file_error(path, "corrupt PNG: the last chunk is cut short");
    const uint32_t length = big_endian32(bytes.data() + pos);
    const std::string type(bytes.begin() + static_cast<long>(pos) + 4, bytes.begin() + static_cast<long>(pos) + 8);
    if (length > bytes.size() - pos - 12)
      throw file_error(path, fmt::format("corrupt PNG: chunk '{}' declares {} bytes, more than the file holds",
                                         printable(type), length));
    pos += 12 + length;
    if (type == "IEND") return;
  }
}

// The PNG's IHDR checked as the format defines it, so a bad header says what is wrong (stb_image
// only says "bad IHDR"), and what decoding it would cost bounded: stb_image holds the inflated
// rows, the image at the file's bit depth (an interlaced one also its largest pass, half the
// image), a 16-bit image's 8-bit copy, and we copy the result.
void check_png_header(const std::vector<uint8_t>& bytes, const std::string& path) {
  if (bytes.size() < 33) throw file_error(path, "corrupt PNG: too short for its IHDR header");
  const uint32_t length = big_endian32(bytes.data() + 8);
  const std::string type(bytes.begin() + 12, bytes.begin() + 16);
  if (length != 13 || type != "IHDR")
    throw file_error(path, fmt::format("corrupt PNG: the first chunk is '{}' of {} bytes, not the 13-byte IHDR",
                                       printable(type), length));
  const int64_t width = big_endian32(bytes.data() + 16), height = big_endian32(bytes.data() + 20);
  const int depth = bytes[24], color = bytes[25], compression = bytes[26], filter = bytes[27], interlace = bytes[28];
  // Channels by color type (gray, -, RGB, palette (RGB or RGBA), gray+alpha, -, RGBA) and the depths each allows.
  const std::map<int, std::pair<int, std::vector<int>>> types = {
      {0, {1, {1, 2, 4, 8, 16}}}, {2, {3, {8, 16}}}, {3, {4, {1, 2, 4, 8}}}, {4, {2, {8, 16}}}, {6, {4, {8, 16}}}};
  const auto found = types.find(color);
  if (found == types.end()) throw file_error(path, fmt::format("corrupt PNG: color type {} (0, 2, 3, 4 and 6 exist)", color));
  const auto& [channels, depths] = found->second;
  if (std::find(depths.begin(), depths.end(), depth) == depths.end())
    throw file_error(path, fmt::format("corrupt PNG: bit depth {} is not allowed with color type {}", depth, color));
  if (compression != 0 || filter != 0 || interlace > 1)
    throw file_error(path, fmt::format("corrupt PNG: compression {}, filter {}, interlace {} (0, 0 and 0 or 1 exist)",
                                       compression, filter, interlace));
  check_size(path, width, height);
  const int64_t pixels = width * height, sample_bytes = depth == 16 ? 2 : 1;
  const int64_t rows = height * (1 + (width * channels * depth + 7) / 8);
  const int64_t image = pixels * channels * sample_bytes;
  const int64_t cost = rows + image + (interlace ? image / 2 : 0) + (depth == 16 ? pixels * channels : 0) + pixels * channels;
  if (cost > kMaxPngDecodeBytes)
    throw file_error(path, fmt::format("a {}x{} {}-bit{} PNG would take about {} MB to decode; the limit is {} MB", width,
                                       height, depth, interlace ? " interlaced" : "", cost >> 20, kMaxPngDecodeBytes >> 20));
}

}  // namespace

int jpeg_orientation(const uint8_t* bytes, size_t size) {
  if (size < 4 || bytes[0] != 0xff || bytes[1] != 0xd8) return 1;
  auto u16 = [](const uint8_t* p, bool little) { return little ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; };
  auto u32 = [](const uint8_t* p, bool little) {
    return little ? uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24
                  : uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
  };
  // The markers before the image data: each is FF, a code, and (but for the standalone ones) a
  // big-endian length that counts itself. Every step moves forward, so the walk ends.
  size_t pos = 2;
  while (pos + 4 <= size) {
    if (bytes[pos] != 0xff) return 1;
    const uint8_t marker = bytes[pos + 1];
    if (marker == 0xff) { ++pos; continue; }  // fill byte
    if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) { pos += 2; continue; }
    if (marker == 0xda || marker == 0xd9) return 1;  // the image data: no EXIF before it
    const size_t length = u16(bytes + pos + 2, false);
    if (length < 2 || length > size - pos - 2) return 1;
    const uint8_t* segment = bytes + pos + 4;
    const size_t segment_size = length - 2;
    if (marker == 0xe1 && segment_size >= 14 && std::memcmp(segment, "Exif\0\0", 6) == 0) {
      // A TIFF header (II little-endian or MM big-endian, 42, the first IFD's offset), then the IFD:
      // a count and 12-byte entries (tag, type, count, value); the orientation is a SHORT held in place.
      const uint8_t* tiff = segment + 6;
      const size_t tiff_size = segment_size - 6;
      const bool little = tiff[0] == 'I' && tiff[1] == 'I';
      if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
      if (u16(tiff + 2, little) != 42) return 1;
      const uint64_t ifd = u32(tiff + 4, little);
      if (ifd < 8 || ifd + 2 > tiff_size) return 1;
      const uint64_t entries = u16(tiff + ifd, little);
      for (uint64_t i = 0; i < entries; ++i) {
        const uint64_t entry = ifd + 2 + 12 * i;
        if (entry + 12 > tiff_size) return 1;
        if (u16(tiff + entry, little) != 0x0112) continue;
        const int value = u16(tiff + entry + 8, little);
        return u16(tiff + entry + 2, little) == 3 && value >= 1 && value <= 8 ? value : 1;
      }
      return 1;
    }
    pos += 2 + length;
  }
  return 1;
}

Image load_image(const std::string& path) { return decode_image(read_file(path, kMaxImageFileBytes), path); }

Image decode_image(const std::vector<uint8_t>& bytes, const std::string& path) {
  const std::string other = refused_format(bytes);
  if (!other.empty()) throw file_error(path, other + "; only PNG and JPEG are supported");
  if (bytes[0] == 0xff) return decode_jpeg(bytes, path);  // never handed to stb_image
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) throw file_error(path, "file is too large");
  check_png_chunks(bytes, path);
  check_png_header(bytes, path);
  // stb_image's PNG loader is the only one it tries on a PNG signature, so its reason is the PNG decoder's own.
  const int size = static_cast<int>(bytes.size());
  int w = 0, h = 0, c = 0;
  uint8_t* data = stbi_load_from_memory(bytes.data(), size, &w, &h, &c, 0);
  if (!data) throw file_error(path, std::string("corrupt image data (") + stbi_failure_reason() + ")");
  Image image{w, h, c, std::vector<uint8_t>(data, data + static_cast<size_t>(w) * h * c)};
  stbi_image_free(data);
  return image;
}

void save_png(const std::string& path, const Image& image) {
  const std::vector<uint8_t> png = encode_png(image, path);
  write_file_atomic(path, png.data(), png.size());
}

namespace {

// A PNG chunk: length, type, data, CRC of type and data (all big-endian).
void png_chunk(std::vector<uint8_t>& png, const char* type, const uint8_t* data, size_t size) {
  auto u32 = [&](uint32_t v) { png.insert(png.end(), {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}); };
  u32(static_cast<uint32_t>(size));
  const size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data, data + size);
  u32(static_cast<uint32_t>(crc32(0, png.data() + start, static_cast<uInt>(png.size() - start))));
}

// The filtered rows PNG compresses: each row's filter byte, then its bytes minus a predictor
// (0 none, 1 the byte to the left, 2 the one above, 3 their mean, 4 Paeth's pick of left, above
// and above-left). Each row takes the filter whose output has the smallest sum of |signed byte|
// (libpng's heuristic).
std::vector<uint8_t> png_filtered_rows(const Image& image) {
  const size_t stride = static_cast<size_t>(image.width) * image.channels, step = static_cast<size_t>(image.channels);
  std::vector<uint8_t> out((stride + 1) * image.height);
  std::vector<uint8_t> candidate(stride), zero_row(stride, 0);
  for (int y = 0; y < image.height; ++y) {
    const uint8_t* row = &image.pixels[y * stride];
    const uint8_t* above = y > 0 ? &image.pixels[(y - 1) * stride] : zero_row.data();
    uint8_t* best = &out[y * (stride + 1)];
    uint64_t best_cost = UINT64_MAX;
    for (uint8_t filter = 0; filter <= 4; ++filter) {
      uint64_t cost = 0;
      for (size_t i = 0; i < stride; ++i) {
        const int a = i >= step ? row[i - step] : 0, b = above[i], c = i >= step ? above[i - step] : 0;
        int predicted = 0;
        if (filter == 1) predicted = a;
        else if (filter == 2) predicted = b;
        else if (filter == 3) predicted = (a + b) / 2;
        else if (filter == 4) {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }
        candidate[i] = static_cast<uint8_t>(row[i] - predicted);
        cost += static_cast<uint64_t>(std::abs(static_cast<int8_t>(candidate[i])));
      }
      if (cost < best_cost) {
        best_cost = cost;
        best[0] = filter;
        std::copy(candidate.begin(), candidate.end(), best + 1);
      }
    }
  }
  return out;
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& image, const std::string& path, PngEffort effort) {
  if (image.width < 1 || image.height < 1 || image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * image.channels)
    throw file_error(path, fmt::format("cannot write a {}x{}x{} image holding {} bytes", image.width, image.height,
                                       image.channels, image.pixels.size()));
  const std::vector<uint8_t> rows = png_filtered_rows(image);
  uLongf packed_size = compressBound(static_cast<uLong>(rows.size()));
  std::vector<uint8_t> packed(packed_size);
  if (compress2(packed.data(), &packed_size, rows.data(), static_cast<uLong>(rows.size()), effort == PngEffort::Fast ? 1 : 6) !=
      Z_OK)
    throw file_error(path, "PNG encoding failed (zlib)");
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  png.reserve(packed_size + 64);
  static const uint8_t kColorType[] = {0, 0, 4, 2, 6};  // by channels: gray, gray+alpha, RGB, RGBA
  const auto w = static_cast<uint32_t>(image.width), h = static_cast<uint32_t>(image.height);
  const uint8_t header[13] = {uint8_t(w >> 24), uint8_t(w >> 16), uint8_t(w >> 8), uint8_t(w),
                              uint8_t(h >> 24), uint8_t(h >> 16), uint8_t(h >> 8), uint8_t(h),
                              8, kColorType[image.channels], 0, 0, 0};  // 8 bits, deflate, adaptive filters, no interlace
  png_chunk(png, "IHDR", header, sizeof header);
  png_chunk(png, "IDAT", packed.data(), packed_size);
  png_chunk(png, "IEND", nullptr, 0);
  return png;
}

}  // namespace tg::io
