// What `tgc bench` prints beside a workload's time: the floor it could not go under.
//
// The memory-traffic floor (README, Speed): under the tape contract every layer writes its
// whole output and something reads it again, and a backward writes and reads a gradient of
// the same size. So one forward moves at least 2x the bytes of the layers' outputs, and a
// forward and backward 4x; divided by this machine's copy bandwidth, that is a time no
// implementation of the same layers can beat without fusing them.
#pragma once

#include <cstdint>

#include "tinygrad-cpp/core/tape.h"
#include "tinygrad-cpp/nn/nn.h"

namespace tg::bench {

// The bytes of every layer's output in the model's last forward pass. A layer whose output
// shares an earlier one's memory (a flatten or reshape view) is counted once.
int64_t layer_output_bytes(const nn::Model& model);

// What one pass over the layers moves: each output written and read once, and with the
// backward each gradient too.
enum class Pass { Forward, ForwardBackward };
int64_t traffic_bytes(int64_t layer_output_bytes, Pass pass);

// The FLOPs of the model's last forward pass in its convolutions and linear layers: each
// layer with a weight of 2 or more dims does 2 x (output elements) x (weight elements per
// output channel). An input gradient costs as much again (the data gradient of each).
int64_t multiply_add_flops(const nn::Model& model);

// The same floor for one call of one layer (an item of `ProfileOps(Key::Layer)`): a forward
// writes its output, which something reads again; a rule writes the gradient of each input
// that wanted one, read again by the rule before it. A convolution or linear layer computes
// its FLOPs once forward and again for each of its data and weight gradients asked for.
// Summed over a workload's items this is close to the workload's floor, not equal to it:
// that one counts a gradient the size of each layer's output, this one of each input.
struct Work {
  int64_t bytes = 0;  // written and read again
  int64_t flops = 0;
};
Work layer_work(const ProfileOps::Item& item);

// Copy bandwidth (bytes read + bytes written per second, all threads of the pool copying)
// from short memcpy loops: buffers that fit in each core's L2, buffers far beyond it (in
// memory), and buffers of 4 MiB a thread, the size of the photo model's larger maps: beyond
// a 1-2 MB L2, within most L3s, which is where a map just written is when the next layer
// reads it. On a shared machine the rate beyond L2 moves with the neighbours (32-78 GB/s
// within one morning on the 2-core AMD EPYC, tests/README.md), the map-sized one much less.
struct Bandwidth {
  double within_l2 = 0;  // bytes/s
  double beyond_l2 = 0;  // bytes/s
  double map_sized = 0;  // bytes/s
};
Bandwidth measure_copy_bandwidth();

}  // namespace tg::bench
