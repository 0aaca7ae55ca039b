// Shared helpers for the test suites.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <jpeglib.h>  // after <cstdio>: it needs FILE

#include "tinygrad-cpp/tg.h"

// Vectors in a failed CHECK print their values (doctest alone prints {?}): `{0, 0, 0.5, 2} == {0, 0, 0, 2}`,
// not `{?} == {?}`. Long vectors show their first 12 values and their length.
namespace test {
template <typename T>
std::string number_text(T value) {
  if constexpr (sizeof(T) == 1) return fmt::format("{}", static_cast<int>(value));  // a byte is a number, not a char
  else return fmt::format("{}", value);
}
template <typename T>
std::string vector_text(const std::vector<T>& values) {
  std::string text = "{";
  for (size_t i = 0; i < std::min<size_t>(values.size(), 12); ++i) text += (i ? ", " : "") + number_text(values[i]);
  if (values.size() > 12) text += fmt::format(", ... ({} values)", values.size());
  return text + "}";
}
}  // namespace test
namespace doctest {
template <typename T>
  requires std::is_arithmetic_v<T>
struct StringMaker<std::vector<T>> {
  static String convert(const std::vector<T>& values) { return test::vector_text(values).c_str(); }
};
}  // namespace doctest

// CHECK_VALUES(got, expected...): two lists of numbers are equal element by element (exactly:
// the tolerance is 0). A failure names the first index where they differ:
//   tests/test_tape.cpp:294: ERROR: got 3, expected 0 at index 0 of rule_gradient(...) (tolerance 0; 2 of 4 values differ)
//     got      {3, 3, 3, 0}
//     expected {0, 0, 3, 0}
// CHECK_CONTAINS(text, part): a text (an error message) holds `part`; a failure prints the text.
// Both count as one failed check, as CHECK does; `expected` may be a braced list.
namespace test {
template <typename A, typename B>
std::string first_difference(const char* what, const std::vector<A>& got, const std::vector<B>& expected) {
  const auto differs = [&](size_t i) { return !(static_cast<double>(got[i]) == static_cast<double>(expected[i])); };
  const std::string lists = "\n  got      " + vector_text(got) + "\n  expected " + vector_text(expected);
  if (got.size() != expected.size())
    return fmt::format("{} has {} values, expected {}{}", what, got.size(), expected.size(), lists);
  size_t first = got.size(), count = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (differs(i)) count += 1, first = std::min(first, i);
  if (count == 0) return "";
  return fmt::format("got {}, expected {} at index {} of {} (tolerance 0; {} of {} values differ){}", number_text(got[first]),
                     number_text(expected[first]), first, what, count, got.size(), lists);
}
inline std::string missing_part(const char* what, const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return "";
  return fmt::format("{} lacks \"{}\"; it is:\n  \"{}\"", what, part, text);
}
}  // namespace test
#define TG_CHECK_EMPTY(failure)                                        \
  do {                                                                 \
    const std::string tg_failure_ = (failure);                         \
    if (tg_failure_.empty()) CHECK(true);                              \
    else ADD_FAIL_CHECK_AT(__FILE__, __LINE__, doctest::String(tg_failure_.c_str())); \
  } while (0)
#define CHECK_VALUES(got, ...) \
  TG_CHECK_EMPTY(::test::first_difference(#got, (got), std::vector<std::decay_t<decltype((got)[0])>>(__VA_ARGS__)))
#define CHECK_CONTAINS(text, part) TG_CHECK_EMPTY(::test::missing_part(#text, (text), (part)))

// A test outside the task suites that runs a task's code starts with
//   NEEDS_TASKS("tape-reverse-walk", "relu");
// In a student copy where one of them is still cut out, the test stops there and is
// reported as waiting for that task (main.cpp prints the count) instead of failing.
#define NEEDS_TASKS(...) \
  if (!test::tasks_ready({__VA_ARGS__})) return

namespace test {

// A fresh folder under /tmp for one test, removed with everything in it afterwards.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("tg-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

// A JPEG of 8-bit RGB pixels (row-major, width x height) written with libjpeg at its default
// quality: progressive when asked, with an APP1 segment (an EXIF block) when `app1` is not empty.
struct JpegOptions {
  bool progressive = false;
  std::vector<uint8_t> app1;
};
inline std::vector<uint8_t> encode_jpeg(const std::vector<uint8_t>& rgb, int width, int height, const JpegOptions& options = {}) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr errors{};
  cinfo.err = jpeg_std_error(&errors);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  if (options.progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  if (!options.app1.empty())
    jpeg_write_marker(&cinfo, JPEG_APP0 + 1, options.app1.data(), static_cast<unsigned>(options.app1.size()));
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(&rgb[static_cast<size_t>(cinfo.next_scanline) * width * 3]);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::vector<uint8_t> jpeg(buffer, buffer + size);
  std::free(buffer);
  jpeg_destroy_compress(&cinfo);
  return jpeg;
}

// Random values in +-[0.1, 1]: away from the kinks of relu, abs and clamp at 0.
inline tg::Tensor away_from_zero(const tg::Shape& shape, uint64_t seed, bool requires_grad = true) {
  tg::Generator gen(seed);
  tg::Tensor t = tg::Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float magnitude = gen.uniform(0.1f, 1.f);
    t.data()[i] = gen.uniform() < 0.5f ? -magnitude : magnitude;
  }
  t.requires_grad_(requires_grad);
  return t;
}

// Distinct values spaced 0.05 apart in random order: every max is unique by more than
// twice the gradient check's step, so max and max-pool are differentiable there.
inline tg::Tensor distinct_values(const tg::Shape& shape, uint64_t seed, bool requires_grad = true) {
  tg::Generator gen(seed);
  tg::Tensor t = tg::Tensor::empty(shape);
  std::vector<int64_t> order(static_cast<size_t>(t.numel()));
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[gen.next_u64() % i]);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = 0.05f * static_cast<float>(order[i] - t.numel() / 2);
  t.requires_grad_(requires_grad);
  return t;
}

inline tg::Tensor random_normal(const tg::Shape& shape, uint64_t seed, bool requires_grad = true) {
  tg::Generator gen(seed);
  tg::Tensor t = tg::Tensor::randn(shape, gen);
  t.requires_grad_(requires_grad);
  return t;
}

// Runs the gradient check and reports its message on failure.
inline void check_gradient(const std::string& name, const tg::TensorFunction& f, const std::vector<tg::Tensor>& inputs,
                           const tg::GradCheckOptions& options = {}) {
  const tg::GradCheckResult r = tg::check_gradients(name, f, inputs, options);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.checked > 0);
}

// The same for one op whose rule must be checked on its own: the checker calls the op's
// backward rule directly, so the result does not depend on the tape's reverse walk.
inline void check_rule(const std::string& name, const tg::TensorFunction& f, const std::vector<tg::Tensor>& inputs,
                       const tg::GradCheckOptions& options = {}) {
  const tg::GradCheckResult r = tg::check_gradients(name, f, inputs, options);
  INFO(r.message);
  CHECK_FALSE(r.through_tape);
  CHECK(r.ok);
  CHECK(r.checked > 0);
}

// Calls the backward rule of the entry that produced `y` (the newest on the tape) with
// `grad_output`, then drops that entry: one op's rule on its own, no reverse walk.
inline std::vector<tg::Tensor> call_rule_directly(const tg::Tensor& y, const tg::Tensor& grad_output) {
  const tg::Entry* entry = tg::tape().producer(y);
  REQUIRE(entry != nullptr);
  const tg::Entry copy = *entry;
  tg::tape().discard_last();
  tg::NoGrad no_grad;
  return tg::resolve_rule(copy)(copy, grad_output);
}

// ---- assignment tasks (tests/task_probes.cpp) ----
// Each task's probe sits beside its TEST_SUITE: a few lines that run the task's code once on
// a tiny input,
//   TASK_PROBE("gradcam") { explain::grad_cam_map(Tensor::ones({1, 1, 2, 2}), Tensor::ones({1, 1, 2, 2})); }
// so adding a task touches only its own code, its own tests and tests/tasks.txt.
using Probe = void (*)();
bool register_probe(const char* id, Probe probe);
#define TG_PROBE_CONCAT2(a, b) a##b
#define TG_PROBE_CONCAT(a, b) TG_PROBE_CONCAT2(a, b)
#define TG_TASK_PROBE(id, function)                                                   \
  static void function();                                                             \
  [[maybe_unused]] static const bool TG_PROBE_CONCAT(function, _registered) =         \
      ::test::register_probe(id, function);                                           \
  static void function()
#define TASK_PROBE(id) TG_TASK_PROBE(id, TG_PROBE_CONCAT(task_probe_, __LINE__))

// For a probe: records `op` on a tiny input and calls that entry's default rule directly (no walk).
inline void probe_rule(const std::function<tg::Tensor(const tg::Tensor&)>& op, const tg::Shape& shape,
                       const tg::BackwardRule& rule) {
  tg::Tensor x = tg::Tensor::full(shape, 0.5f, true);
  tg::Tensor y = op(x);
  const tg::Entry copy = *tg::tape().producer(y);
  tg::tape().discard_last();
  tg::NoGrad no_grad;
  rule(copy, tg::Tensor::ones(y.shape()));
}

// The id of the task that is not implemented when task `id`'s code runs ("" when it runs).
std::string missing_task(const std::string& id);
// False (and the test is counted as waiting) while one of the tasks is not implemented.
bool tasks_ready(std::initializer_list<const char*> ids);

// The message of the tg::Error that calling f throws. A task not written yet is no error a
// test expects: its tg::NotImplemented goes on, and the test case fails saying so.
template <class F>
std::string error_message(F f) {
  try {
    f();
  } catch (const tg::NotImplemented&) {
    throw;
  } catch (const tg::Error& e) {
    return e.what();
  }
  return "(no tg::Error thrown)";
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace test
