// tgc's questions about what a model has learned, one file each: `tgc visualize` (the image a
// class or a neuron wants), `tgc invert` (images with the same code at a layer) and
// `tgc top-patches` (the patches of a folder of images that excite a neuron most). Each is a
// thin call into explain/, the functions lessons 4, 9 and 10 use.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

#include "tinygrad-cpp/explain/ascent.h"
#include "tinygrad-cpp/explain/feature_visualization.h"

namespace tg::cli {

int command_visualize(int argc, char** argv);
int command_invert(int argc, char** argv);
int command_top_patches(int argc, char** argv);

// A long loop's progress on one line of stderr, rewritten in place on a terminal:
// "visualize: 120/256, logit 3.41, 0m52s left". Nothing when stderr is not a terminal (logs
// and tests get the summary line the command prints). The line is cleared when done reaches
// total, and when the Progress goes.
// It also times the loop: wall seconds, and CPU seconds of every thread (user + sys).
class Progress {
 public:
  explicit Progress(std::string what);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void update(int64_t done, int64_t total, const std::string& detail = "");
  double seconds() const;
  double cpu_seconds() const;

 private:
  void clear();
  std::string what_;
  bool terminal_;
  size_t shown_ = 0;       // characters on the line now
  double shown_at_ = -1;  // when it was last written (seconds from the start)
  std::chrono::steady_clock::time_point start_;
  std::clock_t cpu_start_;
};

// The enlargement figures use: a 28x28 input drawn about 224 pixels wide, a photo as it is.
int figure_scale(const preprocess::InputSpec& spec);

// "2m05s" or "41s".
std::string minutes_seconds(double seconds);

}  // namespace tg::cli
