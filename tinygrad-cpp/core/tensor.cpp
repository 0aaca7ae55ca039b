#include "tinygrad-cpp/core/tensor.h"

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <cstdlib>

#include "tinygrad-cpp/kernels/kernels.h"

namespace tg {

namespace {
std::atomic<int64_t> live_tensor_count{0};
std::atomic<int64_t> live_bytes{0};
}  // namespace

namespace debug {
int64_t live_tensors() { return live_tensor_count.load(); }
int64_t live_storage_bytes() { return live_bytes.load(); }
}  // namespace debug

TensorImpl::TensorImpl() { ++live_tensor_count; }
TensorImpl::~TensorImpl() { --live_tensor_count; }

// ---- Storage and its cache of freed blocks ----
namespace {
class StorageCache {
 public:
  float* take(int64_t count) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(count);
      if (it != free_.end() && !it->second.empty()) {
        float* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= bytes(count);
        return p;
      }
    }
    void* p = std::aligned_alloc(64, static_cast<size_t>((bytes(count) + 63) / 64 * 64));
    if (!p) throw std::bad_alloc();
    return static_cast<float*>(p);
  }
  void give(float* p, int64_t count) {
#if defined(__SANITIZE_ADDRESS__)
    std::free(p);  // under AddressSanitizer every block is really freed, so use-after-free is caught
#else
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_bytes_ + bytes(count) > kMaxCachedBytes) {
      std::free(p);
      return;
    }
    free_[count].push_back(p);
    cached_bytes_ += bytes(count);
#endif
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [count, blocks] : free_)
      for (float* p : blocks) std::free(p);
    free_.clear();
    cached_bytes_ = 0;
  }
  ~StorageCache() { release(); }

 private:
  static int64_t bytes(int64_t count) { return std::max<int64_t>(count, 1) * static_cast<int64_t>(sizeof(float)); }
  static constexpr int64_t kMaxCachedBytes = int64_t{1} << 30;
  std::mutex mutex_;
  std::map<int64_t, std::vector<float*>> free_;  // element count -> free blocks
  int64_t cached_bytes_ = 0;
};

StorageCache& storage_cache() {
  static StorageCache* cache = new StorageCache();  // never destroyed: tensors may outlive static destructors
  return *cache;
}
}  // namespace

Storage::Storage(int64_t n) : count(n) {
  if (n < 0) throw Error(fmt::format("tensor: negative element count {}", n));
  ptr = storage_cache().take(n);
  live_bytes += n * static_cast<int64_t>(sizeof(float));
}

Storage::~Storage() {
  live_bytes -= count * static_cast<int64_t>(sizeof(float));
  storage_cache().give(ptr, count);
}

void release_cached_storage() { storage_cache().release(); }

std::string printable(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  auto escape = [&](unsigned char c) { out += fmt::format("\\x{:02x}", c); };
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      escape(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A UTF-8 sequence is kept whole when it is well formed (and not a C1 control).
    const int extra = c >= 0xf0 ? (c <= 0xf4 ? 3 : -1) : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : -1;
    bool ok = extra > 0;
    for (int k = 1; ok && k <= extra; ++k)
      ok = i + k < text.size() && (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    if (ok && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) ok = false;  // U+0080..U+009F
    if (!ok) {
      escape(c);
      ++i;
      continue;
    }
    out.append(text, i, static_cast<size_t>(extra) + 1);
    i += static_cast<size_t>(extra) + 1;
  }
  return out;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("tensor: negative dimension in shape " + shape_str(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw Error("tensor: shape " + shape_str(shape) + " has too many elements");
    n *= d;
  }
  return n;
}

// ---- Generator ----
float Generator::uniform(float lo, float hi) {
  // 24 random bits -> a float in [0, 1) with every value exactly representable.
  const float unit = static_cast<float>(engine_() >> 40) * (1.0f / 16777216.0f);
  return lo + (hi - lo) * unit;
}

float Generator::normal(float mean, float stddev) {
  if (has_spare_) {
    has_spare_ = false;
    return mean + stddev * static_cast<float>(spare_);
  }
  double u1, u2;
  do {
    u1 = static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0);
  } while (u1 <= 0.0);
  u2 = static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0);
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 2.0 * M_PI * u2;
  spare_ = radius * std::sin(angle);
  has_spare_ = true;
  return mean + stddev * static_cast<float>(radius * std::cos(angle));
}

// ---- factories ----
Tensor Tensor::empty(const Shape& shape) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->numel = shape_numel(shape);
  impl->storage = std::make_shared<Storage>(impl->numel);
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, bool requires_grad) { return full(shape, 0.f, requires_grad); }

Tensor Tensor::ones(const Shape& shape, bool requires_grad) { return full(shape, 1.f, requires_grad); }

Tensor Tensor::full(const Shape& shape, float value, bool requires_grad) {
  Tensor t = empty(shape);
  t.fill(value);
  t.impl()->requires_grad = requires_grad;
  return t;
}

Tensor Tensor::scalar(float value) { return full({}, value); }

Tensor Tensor::arange(float start, float stop, float step) {
  if (step == 0.f || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
    throw Error(fmt::format("arange: bad range start={} stop={} step={}", start, stop, step));
  const double count_d = std::ceil((static_cast<double>(stop) - start) / step);
  const int64_t count = count_d > 0 ? static_cast<int64_t>(count_d) : 0;
  if (count > (int64_t{1} << 31)) throw Error(fmt::format("arange: {} elements is too many", count));
  Tensor t = empty({count});
  for (int64_t i = 0; i < count; ++i) t.data()[i] = static_cast<float>(start + static_cast<double>(step) * i);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, bool requires_grad) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    throw Error(fmt::format("from_vector: {} values do not fill shape {}", values.size(), shape_str(shape)));
  Tensor t = empty(shape);
  std::copy(values.begin(), values.end(), t.data());
  t.impl()->requires_grad = requires_grad;
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, float mean, float stddev) {
  Tensor t = empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = gen.normal(mean, stddev);
  return t;
}

Tensor Tensor::uniform(const Shape& shape, Generator& gen, float lo, float hi) {
  Tensor t = empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = gen.uniform(lo, hi);
  return t;
}

// ---- access ----
void Tensor::throw_undefined() { throw Error("tensor: use of an undefined tensor"); }

int64_t Tensor::dim(int axis) const {
  const int n = ndim();
  if (axis < -n || axis >= n)
    throw Error(fmt::format("tensor: axis {} out of range for shape {}", axis, shape_str(shape())));
  return shape()[axis < 0 ? axis + n : axis];
}

float Tensor::item() const {
  if (numel() != 1)
    throw Error("item: tensor of shape " + shape_str(shape()) + " has " + std::to_string(numel()) +
                " elements, not 1");
  return data()[0];
}

namespace {
int64_t flat_index(const Shape& shape, std::initializer_list<int64_t> index) {
  if (index.size() != shape.size())
    throw Error(fmt::format("at: {} indices for a tensor of shape {}", index.size(), shape_str(shape)));
  int64_t flat = 0;
  size_t axis = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape[axis])
      throw Error(fmt::format("at: index {} out of range on axis {} of shape {}", i, axis, shape_str(shape)));
    flat = flat * shape[axis] + i;
    ++axis;
  }
  return flat;
}
}  // namespace

float& Tensor::at(std::initializer_list<int64_t> index) { return data()[flat_index(shape(), index)]; }
float Tensor::at(std::initializer_list<int64_t> index) const { return data()[flat_index(shape(), index)]; }

// Filling and copying a large tensor are passes over memory that one core cannot saturate:
// above a few megabytes both cores share them (zeroing a gradient the size of a photo
// model's feature map is one of the larger costs of its backward pass).
namespace {
constexpr int64_t kSharedPass = int64_t{1} << 19;  // elements (2 MB)
}
void Tensor::fill(float value) {
  float* p = data();
  if (numel() < kSharedPass) {
    std::fill(p, p + numel(), value);
    return;
  }
  kernels::parallel_for(0, numel(), kSharedPass / 4, [&](int64_t lo, int64_t hi) { std::fill(p + lo, p + hi, value); });
}

// ---- autodiff ----
Tensor& Tensor::requires_grad_(bool on) {
  impl()->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return Tensor(impl()->grad); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined() && g.shape() != shape())
    throw Error("set_grad: gradient of shape " + shape_str(g.shape()) + " for a tensor of shape " +
                shape_str(shape()));
  impl()->grad = g.impl_ptr();
}

void Tensor::zero_grad() const { impl()->grad.reset(); }

void Tensor::register_hook(GradHook hook) const { impl()->hooks.push_back(std::move(hook)); }

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape();
  impl->numel = numel();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  return Tensor(std::move(impl));
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape());
  const float* from = data();
  float* to = t.data();
  if (numel() < kSharedPass) {
    std::copy(from, from + numel(), to);
    return t;
  }
  kernels::parallel_for(0, numel(), kSharedPass / 4, [&](int64_t lo, int64_t hi) { std::copy(from + lo, from + hi, to + lo); });
  return t;
}

// ---- printing ----
namespace {
void print_recursive(std::string& out, const Tensor& t, int axis, int64_t offset, int max_per_dim) {
  const Shape& shape = t.shape();
  if (axis == t.ndim()) {
    out += fmt::format("{:.4g}", t.data()[offset] + 0.0f);  // + 0.0f prints -0 as 0
    return;
  }
  int64_t inner = 1;
  for (int a = axis + 1; a < t.ndim(); ++a) inner *= shape[a];
  out += "[";
  const int64_t n = shape[axis];
  for (int64_t i = 0; i < n; ++i) {
    if (n > max_per_dim && i == max_per_dim / 2) {
      out += "..., ";
      i = n - max_per_dim / 2;
    }
    print_recursive(out, t, axis + 1, offset + i * inner, max_per_dim);
    if (i + 1 < n) out += axis + 1 == t.ndim() ? ", " : ",\n" + std::string(axis + 8, ' ');
  }
  out += "]";
}
}  // namespace

std::string Tensor::str(int max_per_dim) const {
  if (!defined()) return "tensor(undefined)";
  std::string out = "tensor(";
  print_recursive(out, *this, 0, 0, std::max(2, max_per_dim));
  out += ", shape=" + shape_str(shape());
  if (requires_grad()) out += ", requires_grad";
  return out + ")";
}

}  // namespace tg
