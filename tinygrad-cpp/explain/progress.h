// Progress of a long method (occlusion's windows, SmoothGrad's samples, integrated gradients'
// steps), for a caller that wants to show it: the method says how far it is, and whoever
// installed a reporter for the scope hears it. Nobody listening costs one check.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace tg::explain {

// `what` is the unit counted ("windows", "samples", "steps"); done runs from 1 to total.
using ProgressReporter = std::function<void(const std::string& what, int64_t done, int64_t total)>;

// RAII: `reporter` hears this thread's progress until the guard's scope ends (then the
// previous reporter, if any, does again).
class ReportProgress {
 public:
  explicit ReportProgress(ProgressReporter reporter);
  ~ReportProgress();
  ReportProgress(const ReportProgress&) = delete;
  ReportProgress& operator=(const ReportProgress&) = delete;

 private:
  ProgressReporter previous_;
};

// Called by the methods: tells the installed reporter, if there is one.
void progress(const std::string& what, int64_t done, int64_t total);

}  // namespace tg::explain
