#include "tinygrad-cpp/cli/bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <vector>

#include "tinygrad-cpp/core/ops.h"
#include "tinygrad-cpp/kernels/kernels.h"

namespace tg::bench {

int64_t layer_output_bytes(const nn::Model& model) {
  std::set<const float*> seen;  // a view starts where its source does
  int64_t bytes = 0;
  for (const std::string& name : model.layer_names()) {
    const Tensor t = model.activation(name);
    if (seen.insert(t.data()).second) bytes += t.numel() * static_cast<int64_t>(sizeof(float));
  }
  return bytes;
}

int64_t multiply_add_flops(const nn::Model& model) {
  int64_t flops = 0;
  const std::vector<std::string> layers = model.layer_names();
  for (const auto& [name, weight] : model.named_parameters()) {
    if (!name.ends_with(".weight") || weight.ndim() < 2) continue;
    const std::string layer = name.substr(0, name.size() - 7);
    if (std::find(layers.begin(), layers.end(), layer) == layers.end()) continue;
    flops += 2 * model.activation(layer).numel() * (weight.numel() / weight.shape()[0]);
  }
  return flops;
}

int64_t traffic_bytes(int64_t layer_output_bytes, Pass pass) {
  const int64_t forward = 2 * layer_output_bytes;  // written once, read once
  return pass == Pass::Forward ? forward : 2 * forward;
}

Work layer_work(const ProfileOps::Item& item) {
  if (item.inputs.empty()) return {};  // the walk, or a profile by op kind
  constexpr int64_t float_bytes = sizeof(float);
  // A convolution's or linear layer's forward: 2 x output elements x weight elements per output.
  int64_t forward_flops = 0;
  if ((item.op == Op::Conv2d.name || item.op == Op::Linear.name) && item.inputs.size() >= 2 && !item.inputs[1].empty())
    forward_flops = 2 * shape_numel(item.output) * (shape_numel(item.inputs[1]) / item.inputs[1][0]);
  if (item.phase == "forward") return {.bytes = 2 * shape_numel(item.output) * float_bytes, .flops = forward_flops};
  Work work;
  for (size_t i = 0; i < item.inputs.size(); ++i) {
    if (!item.wanted_grad[i]) continue;
    work.bytes += 2 * shape_numel(item.inputs[i]) * float_bytes;
    if (i < 2) work.flops += forward_flops;  // the data and weight gradients; a bias's is a sum
  }
  return work;
}

namespace {

// Each thread of the pool copies its own `bytes_per_thread` buffer `repeats` times; the
// best of three rounds, in bytes moved (read + written) per second.
double copy_rate(int64_t bytes_per_thread, int repeats) {
  const int threads = kernels::num_threads();
  const size_t n = static_cast<size_t>(bytes_per_thread) / sizeof(float);
  std::vector<std::vector<float>> src(threads, std::vector<float>(n, 1.f)), dst(threads, std::vector<float>(n));
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    const auto start = std::chrono::steady_clock::now();
    kernels::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        for (int r = 0; r < repeats; ++r) std::memcpy(dst[t].data(), src[t].data(), n * sizeof(float));
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 2.0 * static_cast<double>(bytes_per_thread) * threads * repeats / seconds);
  }
  return best;
}

}  // namespace

Bandwidth measure_copy_bandwidth() {
  // 2 x 128 KiB per thread sits in any L2 of 512 KiB or more, and is past a 48 KiB L1;
  // 2 x 64 MiB per thread is past any L2 and most L3s; 2 x 4 MiB per thread past any L2.
  return {.within_l2 = copy_rate(128 << 10, 800), .beyond_l2 = copy_rate(64 << 20, 3), .map_sized = copy_rate(4 << 20, 25)};
}

}  // namespace tg::bench
