// Training and evaluating FashionCNN: what `tgc train` and `tgc eval` run.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <string>

#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/nn/nn.h"
#include "tinygrad-cpp/nn/optim.h"

namespace tg::train {

struct Evaluation {
  int64_t correct = 0, total = 0;
  std::array<int64_t, 10> class_correct{}, class_total{};
  double loss = 0;  // mean cross-entropy
  double accuracy() const { return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

// Accuracy and loss of a 10-class model on a data set, without recording.
Evaluation evaluate(nn::Module& model, const data::Dataset& data, int64_t batch = 500);

struct Options {
  int epochs = 6;
  int64_t batch = 64;
  float lr = 2e-3f;  // Adam, cosine-decayed to 0 over all epochs
  uint64_t seed = 0;
  std::string out = "fashion_cnn.safetensors";
  std::string resume;  // a checkpoint written by an earlier run
};

struct Progress {
  int epoch = 0, epochs = 0;  // epoch counts from 1
  int64_t step = 0, steps = 0;
  double loss = 0, running_accuracy = 0, images_per_second = 0, eta_seconds = 0, lr = 0;
};

struct EpochResult {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0, seconds = 0;  // seconds since training started
  Evaluation test;
};

// The checkpoint written next to the weights: "x.safetensors" -> "x.ckpt.safetensors".
std::string checkpoint_path(const std::string& out);

// Trains FashionCNN. After every epoch: evaluates on `test`, writes the weights (`out`,
// loadable by PyTorch) and the checkpoint (weights + optimizer state) atomically.
// Stops between steps when *stop becomes true, keeping the last checkpoint.
// Returns false when stopped early.
bool train_fashion_cnn(const Options& options, const data::Dataset& train, const data::Dataset& test,
                       const std::function<void(const Progress&)>& on_progress,
                       const std::function<void(const EpochResult&)>& on_epoch, const std::atomic<bool>* stop);

}  // namespace tg::train
