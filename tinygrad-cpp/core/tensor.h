// Tensor: a float32 n-dimensional array with a shape, contiguous row-major storage,
// and the bookkeeping reverse-mode autodiff needs (requires_grad, grad, hooks).
//
// A Tensor is a handle: copying it shares the same tensor (like a PyTorch tensor
// or a shared_ptr). Views made by reshape/flatten share the storage; every tensor
// is contiguous, so element (i,j,k) of a [A,B,C] tensor is data()[(i*B + j)*C + k].
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tinygrad-cpp/core/support.h"

namespace tg {

using Shape = std::vector<int64_t>;

// Every shape or argument error in the library throws tg::Error, with a message
// that names the op and the shapes involved.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown by the student copy of an assignment where a solution was cut out.
// `what` is "task-id: what to implement"; task() gives back the id.
struct NotImplemented : Error {
  explicit NotImplemented(const std::string& what)
      : Error("not implemented: " + what), task_(what.substr(0, what.find(':'))) {}
  const std::string& task() const { return task_; }

 private:
  std::string task_;
};

std::string shape_str(const Shape& shape);  // "[2,3,4]"

int64_t shape_numel(const Shape& shape);     // product of the dimensions (1 for [])

// A block of floats. A freed block goes back to a cache keyed by its size and is
// handed to the next tensor of that size: a training step allocates the same shapes
// every time, and reusing blocks saves the page faults of fresh memory (on a VM those
// cost more than the arithmetic). New blocks are not zeroed; Tensor::zeros does that.
struct Storage {
  explicit Storage(int64_t count);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  float* data() { return ptr; }
  float* ptr = nullptr;
  int64_t count = 0;
};

class Tensor;
// A gradient hook sees the fully accumulated gradient of a tensor during backward.
// Returning a defined tensor replaces that gradient; returning Tensor() keeps it.
using GradHook = std::function<Tensor(const Tensor& grad)>;

struct TensorImpl {
  Shape shape;
  int64_t numel = 0;                            // product of shape, kept with it
  std::shared_ptr<Storage> storage;             // shared between views
  int64_t offset = 0;                           // first element inside storage
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;             // null until a backward pass writes it
  std::shared_ptr<TensorImpl> pass_grad;        // gradient being summed during one backward walk
  std::vector<GradHook> hooks;
  uint64_t producer_seq = 0;  // sequence number of the tape entry that made it (0: none)

  TensorImpl();
  ~TensorImpl();
  TensorImpl(const TensorImpl&) = delete;
  TensorImpl& operator=(const TensorImpl&) = delete;
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor: defined() is false
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories ----
  static Tensor empty(const Shape& shape);  // uninitialized values
  static Tensor zeros(const Shape& shape, bool requires_grad = false);
  static Tensor ones(const Shape& shape, bool requires_grad = false);
  static Tensor full(const Shape& shape, float value, bool requires_grad = false);
  static Tensor scalar(float value);                         // shape []
  static Tensor arange(float start, float stop, float step = 1.f);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                            bool requires_grad = false);
  static Tensor randn(const Shape& shape, Generator& gen, float mean = 0.f, float stddev = 1.f);
  static Tensor uniform(const Shape& shape, Generator& gen, float lo = 0.f, float hi = 1.f);
  static Tensor zeros_like(const Tensor& t) { return zeros(t.shape()); }

  // ---- shape and data ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl()->shape; }
  int ndim() const { return static_cast<int>(shape().size()); }
  int64_t dim(int axis) const;  // negative axes count from the end
  int64_t numel() const { return impl()->numel; }
  float* data() { return impl()->storage->data() + impl()->offset; }
  const float* data() const { return impl()->storage->data() + impl()->offset; }
  std::vector<float> to_vector() const { return {data(), data() + numel()}; }
  float item() const;                              // the value of a one-element tensor
  float& at(std::initializer_list<int64_t> index);  // bounds-checked element access
  float at(std::initializer_list<int64_t> index) const;
  void fill(float value);

  // ---- autodiff ----
  bool requires_grad() const { return impl()->requires_grad; }
  Tensor& requires_grad_(bool on = true);
  Tensor grad() const;           // undefined until backward reaches this tensor
  void set_grad(const Tensor& g);
  void zero_grad() const;        // forget the accumulated gradient
  void register_hook(GradHook hook) const;
  // Reverse-mode backward from this tensor. backward() needs a one-element tensor;
  // backward(seed) takes a gradient of this tensor's shape (e.g. a one-hot on one neuron).
  void backward(bool retain_graph = false) const;
  void backward(const Tensor& seed, bool retain_graph = false) const;

  Tensor detach() const;  // same storage, not tracked
  Tensor clone() const;   // a fresh copy of the values, not tracked

  std::string str(int max_per_dim = 6) const;  // also printable with fmt: fmt::print("{}", t)
  TensorImpl* impl() const {
    if (!impl_) throw_undefined();
    return impl_.get();
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same_as(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  [[noreturn]] static void throw_undefined();
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace tg

#include <fmt/format.h>
// fmt::print("{}", tensor) prints tensor.str().
template <>
struct fmt::formatter<tg::Tensor> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  template <typename Context>
  auto format(const tg::Tensor& t, Context& ctx) const {
    const std::string text = t.str();
    return std::copy(text.begin(), text.end(), ctx.out());
  }
};
