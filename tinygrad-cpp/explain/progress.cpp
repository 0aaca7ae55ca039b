#include "tinygrad-cpp/explain/progress.h"

#include <utility>

namespace tg::explain {

namespace {
thread_local ProgressReporter current;
}  // namespace

ReportProgress::ReportProgress(ProgressReporter reporter) : previous_(std::exchange(current, std::move(reporter))) {}
ReportProgress::~ReportProgress() { current = std::move(previous_); }

void progress(const std::string& what, int64_t done, int64_t total) {
  if (current) current(what, done, total);
}

}  // namespace tg::explain
