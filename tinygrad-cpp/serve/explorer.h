// The explorer page's handlers: what `tgc serve` answers, as plain functions of a request's
// parameters, so the tests call them without a socket (server.h puts them on HTTP).
//
// Every answer comes from the library calls the lessons and `tgc` make: the method table
// (explain/methods.h) for the maps, models/detection.h for boxes, the model's named layers for
// activations, the ascent engine for visualizations. The page, the CLI and the lessons cannot
// disagree: `format=npy` returns the bytes `tgc explain --npy` writes.
//
// Routes (GET unless said; parameters in the query string):
//   models                    the models served: id, classes, input, layers with shapes
//   methods                   the method table: names, targets, parameters (default, range)
//   rules                     the backward rules by name (core/rule_registry.h)
//   images                    the shipped images (photos, Fashion-MNIST samples)
//   image?image=ID            an image as PNG (as the intake made it: upright, no alpha, fitted)
//   upload?[model][&fit] (POST, raw bytes)   a PNG/JPEG through the intake `tgc explain --image`
//                             and the lessons use (preprocess::decode_photo: the hardened decoders,
//                             EXIF orientation, alpha on white; then take_photo with fit =
//                             stretch|crop|pad for the model) -> {id, width, height, fit, notes}
//   predict?model&image       a detector's detections (boxes) or a classifier's top classes
//   channels?model&image&layer   the layer's channels as one montage PNG, with its grid
//   explain?model&image&method[&target|&box|&neuron_layer&neuron_channel[&neuron_y&neuron_x]]
//          [&rule][&layer][&format=json|npy|png][&<the method's parameters>]
//   visualize?model&(target|neuron_*)[&steps][&every][&seed]   streamed frames (visualize_stream):
//          explain::plan_visualization's objective and recipe, the ones lesson 9 and tgc visualize use
//   invert?model&image&layer[&steps][&every][&seed]   streamed frames (invert_stream): explain::invert
//          from one start, lesson 10's and tgc invert's recipe
// A refusal is a 4xx (or 503 when busy) whose body is one line of JSON: {"error": "..."}.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/nn/nn.h"

namespace tg::serve {

struct Request {
  std::map<std::string, std::string> params;  // the query string's
  std::string body;                           // an upload's bytes
};

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  int retry_after = 0;  // seconds, sent with a 503
};

// A request refused: the HTTP status and one line saying why.
struct Refusal : Error {
  Refusal(int status_code, const std::string& what) : Error(what), status(status_code) {}
  int status;
  int retry_after = 0;
};

struct Limits {
  size_t upload_bytes = size_t{10} << 20;  // an upload's size
  int64_t upload_pixels = 16'000'000;      // its decoded width x height
  size_t uploads_kept = 32;                // the oldest upload is forgotten beyond this
  int queue = 3;                           // requests that may wait for a busy model (then 503)
  std::chrono::milliseconds queue_wait{15000};  // the longest a request waits for its model
  std::chrono::milliseconds time_limit{60000};  // an ascent stops here (other work is bounded by
                                                // the parameters' ranges)
  int max_steps = 400;                     // an ascent's steps
  // A map's cost: passes through the model (SmoothGrad's samples, integrated gradients' steps)
  // and occlusion's windows. `tgc explain` has no such caps; the page answers in seconds.
  int max_passes = 64;
  int max_windows = 400;
};

// The models served, by the id the page uses.
struct ModelFile {
  std::string id, path;
};

// One computation at a time, with at most `queue` waiting; a request that finds the queue full,
// or waits longer than queue_wait, is refused with 503 and a retry hint.
class Gate {
 public:
  Gate(int queue, std::chrono::milliseconds wait) : queue_(queue), wait_(wait) {}
  class Lease {
   public:
    explicit Lease(Gate& gate) : gate_(&gate) {}
    Lease(Lease&& other) noexcept : gate_(other.gate_) { other.gate_ = nullptr; }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease& operator=(Lease&&) = delete;
    ~Lease();

   private:
    Gate* gate_;
  };
  Lease enter(const std::string& what);  // throws Refusal(503)
  int refused() const { return refused_; }

 private:
  std::timed_mutex busy_;
  std::atomic<int> inside_{0};  // running + waiting
  std::atomic<int> refused_{0};
  int queue_;
  std::chrono::milliseconds wait_;
};

class Explorer {
 public:
  // `assets` is the folder of the shipped images (chelsea.png, coffee.png, fashion-png/).
  Explorer(const std::vector<ModelFile>& models, const std::string& assets, Limits limits = {});
  ~Explorer();

  // Answers the route ("predict", "explain", ...); every error becomes a 4xx/5xx reply.
  Reply handle(const std::string& route, const Request& request);

  // An ascent, frame by frame: `send` gets each line of newline-delimited JSON ({"step": ...,
  // "png": ...}, then {"done": ...} or {"error": ...}) and returns false when the client has
  // gone, which stops the ascent. Refusals before the first frame are thrown (Refusal) so the
  // server can answer them with a status; `lease` (given) holds the model.
  struct Stream {
    std::function<void(const std::function<bool(const std::string& line)>& send)> run;
  };
  Stream visualize_stream(const Request& request);
  // Feature inversion of an image from a layer, frame by frame, the same way.
  Stream invert_stream(const Request& request);

  const Limits& limits() const { return limits_; }
  int refused() const;  // 503s so far
  // The work done outside the models' gates (decoding an upload, encoding an image as PNG, an
  // upload made another model's input) passes this one: one at a time, the same short queue.
  Gate& work_gate() { return work_gate_; }

  // Model state and images live in the .cpp.
  struct Served;
  struct Images;

 private:
  Reply route(const std::string& route, const Request& request);
  Limits limits_;
  std::vector<std::unique_ptr<Served>> models_;
  std::unique_ptr<Images> images_;
  Gate work_gate_;
};

// Base64 (RFC 4648), for images inside JSON.
std::string base64(const std::vector<uint8_t>& bytes);

}  // namespace tg::serve
