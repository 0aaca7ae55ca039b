#include "tinygrad-cpp/cli/questions.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tg::cli {

int figure_scale(const preprocess::InputSpec& spec) {
  return static_cast<int>(std::max<int64_t>(1, 224 / std::max(spec.height, spec.width)));
}

std::string minutes_seconds(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  return s >= 60 ? fmt::format("{}m{:02d}s", s / 60, s % 60) : fmt::format("{}s", s);
}

Progress::Progress(std::string what)
    : what_(std::move(what)), terminal_(isatty(fileno(stderr)) == 1), start_(std::chrono::steady_clock::now()),
      cpu_start_(std::clock()) {}

Progress::~Progress() { clear(); }

void Progress::clear() {
  if (terminal_ && shown_ > 0) fmt::print(stderr, "\r{:<{}}\r", "", shown_);
  shown_ = 0;
  std::fflush(stderr);
}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::cpu_seconds() const { return static_cast<double>(std::clock() - cpu_start_) / CLOCKS_PER_SEC; }

void Progress::update(int64_t done, int64_t total, const std::string& detail) {
  if (!terminal_ || done <= 0) return;
  if (done >= total) return clear();  // finished: the line goes, for what the command prints next
  const double now = seconds();
  if (now - shown_at_ < 0.1) return;  // ten lines a second at most
  shown_at_ = now;
  const double left = now / static_cast<double>(done) * static_cast<double>(total - done);
  const std::string line = fmt::format("{}: {}/{}{}{}, {} left", what_, done, total, detail.empty() ? "" : ", ", detail,
                                       minutes_seconds(left));
  fmt::print(stderr, "\r{:<{}}", line, shown_);
  shown_ = std::max(shown_, line.size());
  std::fflush(stderr);
}

}  // namespace tg::cli
