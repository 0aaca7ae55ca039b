// tgc: the tinygrad-cpp command-line tool.
//
//   tgc train   [--data DIR] [--epochs N] [--batch B] [--lr LR] [--seed S] [--out FILE] [--resume FILE]
//   tgc eval    --model FILE [--data DIR]
//   tgc explain --model FILE --image IMG --method M [...]
//   tgc predict --model FILE --image IMG [--top K] [--png OUT]
//   tgc info    --model FILE
//   tgc bench   [WORKLOAD...]
//
// Every error is one line "error: ..." and a non-zero exit; bad flags print usage and exit 2.
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <csignal>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "tinygrad-cpp/models/fashion_cnn.h"
#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/cli/questions.h"
#include "tinygrad-cpp/cli/serve.h"
#include "tinygrad-cpp/cli/bench.h"
#include "tinygrad-cpp/data/data.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/explain/occlusion.h"
#include "tinygrad-cpp/explain/progress.h"
#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/models/graph.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/nn/nn.h"
#include "tinygrad-cpp/nn/optim.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/models/train.h"
#include "tinygrad-cpp/viz/viz.h"

using namespace tg;

namespace {

const char* kUsage =
    "usage: tgc <command> [flags]\n\n"
    "commands:\n"
    "  train    train FashionCNN on Fashion-MNIST and write its weights\n"
    "  eval     per-class and overall test accuracy of a weights file\n"
    "  explain  an attribution map (saliency, guided backprop, Grad-CAM, ...) for one image\n"
    "  predict  a classifier's top classes or a detector's boxes for one image\n"
    "  info     a model file's tensors or layers, shapes and metadata\n"
    "  bench    time the benchmark workloads (NAME: X ms/iter)\n"
    "  visualize    the image a class or a neuron wants (gradient ascent)\n"
    "  invert       images with the same code at a layer as an image (feature inversion)\n"
    "  top-patches  the patches of a folder of images that excite a neuron most\n"
    "  serve        the explorer page: a local web server (127.0.0.1 by default)\n\n"
    "`tgc <command> --help` describes each command's flags.\n";

std::atomic<bool> interrupted{false};
extern "C" void on_interrupt(int) { interrupted = true; }

std::string format_seconds(double s) {
  if (s >= 60) return fmt::format("{}m{:02d}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return fmt::format("{:.0f}s", s);
}


// ---- train ----
int command_train(int argc, char** argv) {
  cli::Args args("tgc train", "Train FashionCNN with Adam and a cosine learning-rate decay. After every\n"
                              "epoch it evaluates on the test set and writes the weights and a checkpoint\n"
                              "(<out>.ckpt.safetensors) atomically. Ctrl-C stops, keeping the last checkpoint.");
  train::Options defaults;
  args.option("data", "DIR", "Fashion-MNIST folder", false, data::default_data_dir())
      .option("epochs", "N", "epochs to train", false, std::to_string(defaults.epochs))
      .option("batch", "B", "batch size", false, std::to_string(defaults.batch))
      .option("lr", "LR", "peak Adam learning rate", false, fmt::format("{}", defaults.lr))
      .option("seed", "S", "seed for initialization and shuffling", false, "0")
      .option("out", "FILE", "weights file to write", false, defaults.out)
      .option("resume", "FILE", "continue from a checkpoint (its seed, batch and lr are reused)");
  args.parse(argc, argv, 2);
  train::Options options;
  options.epochs = static_cast<int>(args.get_int("epochs", 1, 1000));
  options.batch = args.get_int("batch", 1, 65536);
  options.lr = args.get_float("lr", 1e-8, 10.0);
  options.seed = static_cast<uint64_t>(args.get_int("seed", 0, int64_t{1} << 62));
  options.out = args.get("out");
  cli::check_output(args, "out", ".safetensors");  // before an epoch's work, not after it
  if (args.has("resume")) {
    options.resume = args.get("resume");
    const io::NamedTensors checkpoint = io::load_safetensors(options.resume);
    const auto& m = checkpoint.metadata;
    // The checkpoint's numbers pass the same checks as the flags: whole, finite, in range.
    auto number = [&](const char* key, double low, double high) {
      auto it = m.find(key);
      if (it == m.end()) throw Error(options.resume + ": not a training checkpoint (metadata '" + key + "' missing)");
      char* end = nullptr;
      errno = 0;
      const double v = std::strtod(it->second.c_str(), &end);
      if (it->second.empty() || *end != '\0' || errno != 0 || !std::isfinite(static_cast<float>(v)) || v < low || v > high)
        throw Error(fmt::format("{}: checkpoint metadata {} = '{}' is not a number in [{}, {}]", options.resume, key,
                                printable(it->second), low, high));
      return v;
    };
    options.seed = static_cast<uint64_t>(number("seed", 0, static_cast<double>(int64_t{1} << 52)));
    options.batch = static_cast<int64_t>(number("batch", 1, 65536));
    options.lr = static_cast<float>(number("lr", 1e-8, 10.0));
    number("epoch", 0, 1000);
    if (!args.on("epochs") && m.count("epochs")) options.epochs = static_cast<int>(number("epochs", 1, 1000));
  }

  const std::string dir = args.get("data");
  fmt::print("loading Fashion-MNIST from {}\n", dir);
  const data::Dataset train_set = data::load_fashion_mnist(dir, data::Split::Train);
  const data::Dataset test_set = data::load_fashion_mnist(dir, data::Split::Test);
  fmt::print("{} training images, {} test images; {} threads\n", train_set.size(), test_set.size(), kernels::num_threads());
  fmt::print("training: epochs {}, batch {}, Adam lr {} (cosine decay), seed {}{}\n", options.epochs, options.batch,
             options.lr, options.seed, options.resume.empty() ? "" : ", resuming from " + options.resume);

  std::signal(SIGINT, on_interrupt);
  const bool live = isatty(fileno(stdout));
  auto on_progress = [&](const train::Progress& p) {
    if (!live && p.step != p.steps) return;
    if (live && p.step % 20 != 0 && p.step != p.steps) return;
    fmt::print("{}epoch {}/{}  step {}/{}  loss {:.4f}  acc {:.4f}  {:.0f} img/s  ETA {}   {}", live ? "\r" : "", p.epoch,
               p.epochs, p.step, p.steps, p.loss, p.running_accuracy, p.images_per_second, format_seconds(p.eta_seconds),
               live ? "" : "\n");
    std::fflush(stdout);
  };
  int epochs_done = 0;
  auto on_epoch = [&](const train::EpochResult& r) {
    ++epochs_done;
    fmt::print("{}epoch {} done: train loss {:.4f} acc {:.4f} | test loss {:.4f} accuracy {:.4f} | {:.1f}s | wrote {} and {}\n",
               live ? "\n" : "", r.epoch, r.train_loss, r.train_accuracy, r.test.loss, r.test.accuracy(), r.seconds,
               options.out, train::checkpoint_path(options.out));
  };
  const bool finished = train::train_fashion_cnn(options, train_set, test_set, on_progress, on_epoch, &interrupted);
  if (!finished) {
    // Only a run that finished an epoch (or resumed from one) has a checkpoint to offer.
    const std::string offered = epochs_done > 0 ? train::checkpoint_path(options.out) : options.resume;
    if (!offered.empty())
      fmt::print("\ninterrupted: stopped cleanly; {} holds the last completed epoch (resume with --resume {})\n", offered,
                 offered);
    else
      fmt::print("\ninterrupted: stopped cleanly before the first epoch ended; nothing was written\n");
    return 130;
  }
  return 0;
}

// ---- eval ----
int command_eval(int argc, char** argv) {
  cli::Args args("tgc eval", "Evaluate a FashionCNN weights file on the Fashion-MNIST test set.\n"
                             "The last line is `accuracy: X`.");
  args.option("model", "FILE", "weights file (safetensors)", true).option("data", "DIR", "Fashion-MNIST folder", false, data::default_data_dir());
  args.parse(argc, argv, 2);
  const models::LoadedModel loaded = models::load_fashion_cnn(args.get("model"));
  const data::Dataset test = data::load_fashion_mnist(args.get("data"), data::Split::Test);
  const train::Evaluation e = train::evaluate(*loaded.model, test);
  fmt::print("{:<12} {:>8} {:>8}\n", "class", "images", "accuracy");
  for (int c = 0; c < 10; ++c)
    fmt::print("{:<12} {:>8} {:>8.4f}\n", data::kFashionClasses[c], e.class_total[c],
               e.class_total[c] ? static_cast<double>(e.class_correct[c]) / static_cast<double>(e.class_total[c]) : 0.0);
  fmt::print("loss: {:.4f}\n", e.loss);
  fmt::print("accuracy: {:.4f}\n", e.accuracy());
  return 0;
}

// ---- explain and predict: any model ----

// The photo as the model's input (tgc's one intake: preprocess::take_photo), with what was done to
// it said: the size on one line, then each change to what the model sees (orientation,
// transparency, crop or pad, a stretched aspect, an enlargement) as a note.
preprocess::Intake load_input(const nn::Model& model, const std::string& path, preprocess::Fit fit) {
  preprocess::Photo photo = preprocess::load_photo(path);
  const int stored_width = photo.stored_width, stored_height = photo.stored_height;
  const preprocess::InputSpec& spec = model.info().input;
  preprocess::Intake intake = preprocess::take_photo(std::move(photo), spec, fit);
  fmt::print("{}: {}x{} image -> {}x{} {}{}\n", printable(path), stored_width, stored_height, spec.width, spec.height,
             spec.channels == 1 ? "gray" : "RGB", intake.inverted ? " (inverted: light background)" : "");
  for (const std::string& note : intake.notes) fmt::print("note: {}\n", note);
  return intake;
}

// The --fit flag, the same for explain and predict.
void fit_option(cli::Args& args) {
  args.option("fit", "stretch|crop|pad",
              "how a photo of another aspect ratio becomes the input: stretched (the SSD was trained that way), "
              "its centre cropped, or padded with its border's colour",
              false, "stretch");
}

preprocess::Fit parse_fit(const cli::Args& args) {
  try {
    return preprocess::parse_fit(args.get("fit"));
  } catch (const Error& e) {
    args.fail(std::string("--") + e.what());
  }
}

// On a terminal: one stderr line rewritten in place while a long method works ("[2/3]
// occlusion: 120/361 windows, 14s left"), cleared when it ends. Elsewhere: nothing.
class ProgressLine {
 public:
  explicit ProgressLine(std::string label) : label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}
  ~ProgressLine() {  // a method that stopped early (an error) leaves no half line before the error's
    if (width_ > 0) fmt::print(stderr, "\r{:<{}}\r", "", width_);
  }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  explain::ProgressReporter reporter() {
    return [this](const std::string& what, int64_t done, int64_t total) {
      static const bool terminal = isatty(STDERR_FILENO) == 1;
      if (!terminal || total < 1) return;
      const auto now = std::chrono::steady_clock::now();
      if (done < total && now - shown_ < std::chrono::milliseconds(100)) return;
      shown_ = now;
      const double elapsed = std::chrono::duration<double>(now - start_).count();
      const std::string line = done < total ? fmt::format("{}: {}/{} {}, {} left", label_, done, total, what,
                                                          format_seconds(elapsed / static_cast<double>(done) *
                                                                         static_cast<double>(total - done)))
                                            : "";
      fmt::print(stderr, "\r{:<{}}\r{}", "", width_, line);
      width_ = line.empty() ? 0 : std::max(width_, line.size());
      std::fflush(stderr);
    };
  }

 private:
  std::string label_;
  std::chrono::steady_clock::time_point start_, shown_{};
  size_t width_ = 0;
};

int command_predict(int argc, char** argv) {
  cli::Args args("tgc predict", "What a model sees in one PNG/JPEG image. A classifier: its top classes, best\n"
                                "first, one `LABEL: probability` line each.\n"
                                "A detector (the SSD photo model): its detections, best first, one line each:\n"
                                "`LABEL: P box=X0,Y0,X1,Y1` with the box in the image's pixels (anchors decoded,\n"
                                "p = sigmoid of the anchor's class logit, non-maximum suppression per class at\n"
                                "IoU 0.5); --png draws them on the photo.");
  args.option("model", "FILE", "weights (safetensors) or a .tflite model", true)
      .option("image", "IMG", "PNG or JPEG image", true)
      .option("top", "K", "how many lines (classes, or a detector's detections) to print", false, "5")
      .option("min-score", "P", "a detector's detections: the lowest p listed", false, "0.5")
      .toggle("details", "a detector's lines also give the anchor, its head (feature map) and the layer it reads")
      .option("png", "OUT.png", "a detector's detections drawn on the photo (cropped or padded as --fit says)");
  fit_option(args);
  args.parse(argc, argv, 2);
  const int64_t top = args.get_int("top", 1, 100000);
  const float min_score = args.get_float("min-score", 0.0, 1.0);
  const preprocess::Fit fit = parse_fit(args);
  const std::string png = args.has("png") ? args.get("png") : "";
  cli::check_output(args, "png", ".png");
  const std::shared_ptr<nn::Model> model = models::load_model(args.get("model"));
  if (!png.empty() && !models::is_detector(*model))
    args.fail("--png draws a detector's boxes; " + printable(args.get("model")) + " is a classifier");
  preprocess::Intake intake = load_input(*model, args.get("image"), fit);
  io::Image& photo = intake.image;
  const Tensor& input = intake.input;

  if (models::is_detector(*model)) {
    auto& graph = dynamic_cast<models::Graph&>(*model);
    const std::vector<models::Detection> found = models::detect(
        graph, input, photo.width, photo.height, {.min_score = min_score, .max_detections = static_cast<size_t>(top)});
    for (const models::Detection& d : found) {
      fmt::print("{}: {:.4f} box={},{},{},{}", printable(d.label), d.score, std::lround(d.pixels.x0),
                 std::lround(d.pixels.y0), std::lround(d.pixels.x1), std::lround(d.pixels.y1));
      if (args.on("details")) fmt::print(" anchor={} head={} layer={}", d.anchor, d.grid, printable(d.layer));
      fmt::print("\n");
    }
    if (found.empty()) {
      // Say how close the best anchor came, so a student knows what a lower --min-score would show.
      const Tensor best = model->probabilities(tg::max(graph.anchor_logits(), {1}));
      int64_t c_best = -1;
      for (int64_t c = 0; c < best.dim(1); ++c)
        if (c != model->info().background && (c_best < 0 || best.data()[c] > best.data()[c_best])) c_best = c;
      fmt::print("no detection with p >= {} (the best anchor: {} p = {:.4f})\n", min_score,
                 printable(model->info().classes[static_cast<size_t>(c_best)]), best.data()[c_best]);
    }
    if (!png.empty()) {
      const int side = std::min(photo.width, photo.height);
      const int thickness = std::max(2, side / 150), text_height = std::max(12, side / 22);
      // Worst first, so the best detection's box and label are drawn on top.
      for (auto d = found.rbegin(); d != found.rend(); ++d)
        viz::draw_box(photo, d->pixels.x0, d->pixels.y0, d->pixels.x1, d->pixels.y1, viz::class_color(d->class_index),
                      fmt::format("{} {:.2f}", d->label, d->score), thickness, text_height);
      const std::vector<uint8_t> bytes = io::encode_png(photo, png);
      io::write_file_atomic(png, bytes.data(), bytes.size());
      fmt::print("wrote {}\n", printable(png));
    }
    return 0;
  }

  const Tensor probabilities = model->probabilities(explain::scores(*model, input));
  std::vector<int64_t> order;
  for (int64_t c = 0; c < probabilities.dim(1); ++c)
    if (c != model->info().background) order.push_back(c);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return probabilities.data()[a] > probabilities.data()[b]; });
  for (int64_t k = 0; k < std::min<int64_t>(top, static_cast<int64_t>(order.size())); ++k)
    fmt::print("{}: {:.4f}\n", printable(model->info().classes[order[k]]), probabilities.data()[order[k]]);
  return 0;
}


using viz::Show;
using Display = viz::MapDisplay;
using viz::percentile_words;

// The colour bar's words: in full under a single map, short under each of several (the
// figure's title then says what the clip is).
std::array<std::string, 3> bar_words(const Display& d, float percentile, bool in_full) {
  const std::string clip = percentile_words(percentile) + " of |a|";
  switch (d.show) {
    case Show::MinMax:
      return {fmt::format("{:.3g} (min)", d.low), "", fmt::format("{:.3g} (max)", d.high)};
    case Show::Magnitude:
      return {"0", "", in_full ? fmt::format("{:.2g} = {} (max over RGB), and above", d.high, clip)
                               : fmt::format("{:.2g} and above", d.high)};
    case Show::Signed:
      return {fmt::format("{:.2g} and below", d.low), "0",
              in_full ? fmt::format("+{:.2g} = {}, and above", d.high, clip) : fmt::format("+{:.2g} and above", d.high)};
  }
  return {};
}

const char* show_words(Show show) {
  return show == Show::Magnitude ? "|a|" : show == Show::Signed ? "signed" : "min to max";
}

int command_explain(int argc, char** argv) {
  std::string summary =
      "Explain a model's score for one PNG/JPEG image with one attribution method, several\n"
      "(--method a,b,c) or all of them (--method all), side by side in one figure. The image\n"
      "becomes the model's input (turned upright by its EXIF orientation, transparency on white;\n"
      "gray 28x28 for FashionCNN, inverted when its border is bright; RGB at the model's size for\n"
      "photo models; --fit says how another aspect ratio is handled). The target is a class\n"
      "(--target, default: the predicted one) or a neuron (--neuron). On a detector the target is one\n"
      "detection, its anchor's class logit: by default the best detection of the class, --box K\n"
      "the K-th line of `tgc predict` (1 = the best); Grad-CAM then reads, by default, the layer\n"
      "that detection's head reads, and --png draws its box. --npy gets the raw attribution:\n"
      "[C,H,W] of the input, or [h,w] at the layer (after its activation) for gradcam (several\n"
      "methods: OUT.<method>.npy each). --png gets a figure: the input, each map, and for one method\n"
      "the map over the input, with a colour bar. Maps show |a| (max over colour channels) or the\n"
      "signed value as each method's table says (--abs, --signed choose), clipped at the 99th\n"
      "percentile of |a| (--clip); Grad-CAM from its minimum to its maximum. On a terminal, long\n"
      "methods show their progress and the time left.\n\nmethods (targets):";
  std::string names;
  for (const explain::Method& m : explain::methods()) {
    summary += fmt::format("\n  {:<21} {} ({})", m.name, m.description, m.targets.str());
    names += (names.empty() ? "" : " ") + m.name;
  }
  cli::Args args("tgc explain", summary);
  args.option("model", "FILE", "weights (safetensors) or a .tflite model", /*required=*/true)
      .option("image", "IMG", "PNG or JPEG image", /*required=*/true)
      .option("method", "M", names + ", a comma list of them, or all", /*required=*/true)
      .option("target", "K", "class to explain, a number or a label (default: the predicted class)")
      .option("neuron", "LAYER:CHANNEL[:Y:X]", "explain one neuron instead of a class")
      .option("box", "K", "a detector: explain the K-th detection of tgc predict's list (1 = the best)")
      .option("layer", "NAME", "layer for gradcam and guided_gradcam (default: the model's usual one; on a detector, the "
                               "layer the explained detection's head reads)")
      .toggle("abs", "show |a| (max over the colour channels) for every method")
      .toggle("signed", "show the signed map (summed over the colour channels; blue < 0 < red) for every method")
      .option("clip", "P", "clip the shown maps at the P-th percentile of |a|, 50..100", false, "99")
      .option("npy", "OUT.npy", "write the raw attribution")
      .option("png", "OUT.png", "write the figure");
  fit_option(args);
  // The methods' parameters, with their real defaults, from the table.
  const std::vector<explain::Parameter> parameters = explain::all_parameters();
  for (const explain::Parameter& p : parameters) {
    const bool whole = p.kind == explain::Parameter::Kind::Whole;
    auto show = [&](double v) { return whole ? fmt::format("{}", static_cast<int64_t>(v)) : fmt::format("{}", v); };
    args.option(p.name, whole ? "N" : "X", fmt::format("{}, {}..{}", p.help, show(p.min), show(p.max)), /*required=*/false,
                show(p.default_value));
  }
  args.parse(argc, argv, 2);
  if (args.has("target") + args.has("neuron") + args.has("box") > 1) args.fail("--target, --neuron and --box: give one of them");
  if (args.on("abs") && args.on("signed")) args.fail("--abs and --signed: give one of them");
  const float percentile = args.get_float("clip", 50.0, 100.0);
  const preprocess::Fit fit = parse_fit(args);
  // The methods: all (those that explain the target's kind), or the list, each checked.
  const bool all = args.get("method") == "all";
  const std::optional<explain::Target::Kind> neuron_kind =
      args.has("neuron") ? std::optional(explain::Target::Kind::Neuron) : std::nullopt;
  std::vector<const explain::Method*> chosen;
  std::string skipped;
  if (all) {
    for (const explain::Method& m : explain::methods())
      if (!neuron_kind || m.targets.accepts(*neuron_kind)) chosen.push_back(&m);
      else skipped += (skipped.empty() ? "" : ", ") + m.name;
  } else {
    const std::string list = args.get("method");
    for (size_t start = 0; start <= list.size();) {
      const size_t comma = std::min(list.find(',', start), list.size());
      const std::string name = list.substr(start, comma - start);
      const explain::Method* found = nullptr;
      for (const explain::Method& m : explain::methods())
        if (m.name == name) found = &m;
      if (!found) args.fail("unknown method '" + name + "' (one of: " + names + ", or all)");
      if (std::find(chosen.begin(), chosen.end(), found) != chosen.end()) args.fail("--method: " + name + " is listed twice");
      if (neuron_kind && !found->targets.accepts(*neuron_kind))
        args.fail(fmt::format("--neuron: {} explains targets of kind {}, not a neuron", name, found->targets.str()));
      chosen.push_back(found);
      start = comma + 1;
    }
  }
  const bool several = chosen.size() > 1;
  const int64_t box_number = args.has("box") ? args.get_int("box", 1, 100) : 0;
  explain::Settings settings;
  for (const explain::Parameter& p : parameters)
    settings[p.name] = p.kind == explain::Parameter::Kind::Whole
                           ? static_cast<double>(args.get_int(p.name, static_cast<int64_t>(p.min), static_cast<int64_t>(p.max)))
                           : static_cast<double>(args.get_float(p.name, p.min, p.max));
  // Every output path is checked before any work; several methods write OUT.<method>.npy each.
  cli::check_output(args, "png", ".png");
  cli::check_output(args, "npy", ".npy");
  auto npy_path = [&](const explain::Method& m) {
    const std::string out = args.get("npy");
    return several ? out.substr(0, out.size() - 4) + "." + m.name + ".npy" : out;
  };

  const std::shared_ptr<nn::Model> loaded = models::load_model(args.get("model"));
  nn::Model& model = *loaded;
  const nn::ModelInfo& info = model.info();
  std::string layer = args.has("layer") ? args.get("layer") : info.cam_layer;
  const bool uses_layer = std::any_of(chosen.begin(), chosen.end(),
                                      [](const explain::Method* m) { return m->layer == explain::UsesLayer::FeatureMap; });
  if (uses_layer && layer.empty())
    args.fail("this model names no default layer for gradcam and guided_gradcam; give one with --layer");
  const preprocess::Intake intake = load_input(model, args.get("image"), fit);
  const io::Image& photo = intake.image;
  const Tensor& input = intake.input;

  const Tensor logits = explain::scores(model, input);
  const Tensor probabilities = model.probabilities(logits);
  const int64_t predicted = model.predict(probabilities)[0];
  auto* graph = dynamic_cast<models::Graph*>(&model);
  const bool detector = graph && models::is_detector(model);
  if (box_number && !detector) args.fail("--box: this model is not a detector (it has no boxes); use --target");
  fmt::print("predicted {} ({}) with p = {:.4f}\n", predicted, printable(info.classes[predicted]),
             probabilities.data()[predicted]);
  explain::Target target;
  std::optional<models::Box> explained_box;  // a detection's box, as fractions of the input
  std::string what;                           // the figure's title: what was explained
  if (args.has("neuron")) {
    target = explain::Target::of_neuron(cli::neuron(args, "neuron"));
    const explain::Neuron& n = target.neuron;
    what = fmt::format("neuron {}:{}{}", printable(n.layer), n.channel, n.y >= 0 ? fmt::format(":{}:{}", n.y, n.x) : "");
    fmt::print("explaining {}\n", what);
  } else if (detector) {
    // One detection: the K-th of the list tgc predict prints, or the best of the class (its
    // best anchor, which non-maximum suppression always keeps).
    std::optional<models::Detection> found;
    if (box_number) {
      const std::vector<models::Detection> shown = models::detections(*graph, photo.width, photo.height);
      if (box_number > static_cast<int64_t>(shown.size()))
        args.fail(fmt::format("--box {}: tgc predict lists {} detection{} on this image (p >= 0.5)", box_number,
                              shown.size(), shown.size() == 1 ? "" : "s"));
      found = shown[static_cast<size_t>(box_number - 1)];
    } else {
      const int64_t c = args.has("target") ? model.class_index(args.get("target")) : predicted;
      found = models::best_detection(*graph, c, photo.width, photo.height);
    }
    const models::Detection& d = *found;
    target = explain::Target::of_detections({d.class_index}, {d.anchor});
    explained_box = d.box;
    // Grad-CAM's layer: the map the detection's head reads, or for the heads on the extra layers
    // (5x5 and coarser, a handful of cells) the backbone's last map they are computed from
    // (Conv_1, the 10x10 head's): a map with some resolution left that the detection reads.
    if (!args.has("layer")) {
      const std::vector<models::Head> heads = models::detection_heads(*graph);
      layer = heads[std::min<size_t>(d.head, 1)].layer;
    }
    fmt::print("explaining the detection {} ({}): p = {:.4f}, box={:.0f},{:.0f},{:.0f},{:.0f}, anchor {} of the {} head\n",
               d.class_index, printable(d.label), d.score, d.pixels.x0, d.pixels.y0, d.pixels.x1, d.pixels.y1, d.anchor,
               d.grid);
    what = fmt::format("the {} detection (p = {:.2f}, anchor {}, {} head; red box)", printable(d.label), d.score, d.anchor,
                       d.grid);
  } else {
    const int64_t c = args.has("target") ? model.class_index(args.get("target")) : predicted;
    target = explain::Target::of_classes({c});
    const float p = explain::target_values(model, logits, target, explain::Measure::Probability)[0];
    fmt::print("explaining class {} ({}, p = {:.4f})\n", c, printable(info.classes[c]), p);
    what = fmt::format("class {} (p = {:.2f})", printable(info.classes[c]), p);
  }
  std::string layer_words;  // ", layer Conv_1/relu6": the layer by its last two parts
  if (uses_layer) {
    fmt::print("layer: {}\n", printable(layer));
    const size_t last = layer.rfind('/');
    const size_t before = last == std::string::npos || last == 0 ? std::string::npos : layer.rfind('/', last - 1);
    layer_words = fmt::format(", {}layer {}", several ? "Grad-CAM " : "",
                              printable(before == std::string::npos ? layer : layer.substr(before + 1)));
  }
  if (!skipped.empty()) fmt::print("--method all: skipped {} (they do not explain a neuron)\n", skipped);

  // Each method: run (with progress on a terminal), said in a line, kept for the figure.
  const preprocess::InputSpec& spec = info.input;
  struct Result {
    const explain::Method* method;
    Tensor attribution;  // without the batch axis
    Display display;
  };
  std::vector<Result> results;
  for (size_t k = 0; k < chosen.size(); ++k) {
    const explain::Method& method = *chosen[k];
    if (method.name == "occlusion") {
      const explain::OcclusionWindow scaled = explain::occlusion_window(spec.height, spec.width);
      const int64_t window = settings["window"] ? static_cast<int64_t>(settings["window"]) : scaled.window;
      const int64_t stride = settings["stride"] ? static_cast<int64_t>(settings["stride"]) : std::max<int64_t>(1, window / 2);
      fmt::print("occlusion: window {}, stride {}{}\n", window, stride,
                 settings["window"] ? "" : fmt::format(" (scaled to the {}x{} input; --window, --stride change them)",
                                                       spec.width, spec.height));
    }
    ProgressLine line(several ? fmt::format("[{}/{}] {}", k + 1, chosen.size(), method.name) : method.name);
    Tensor attribution;
    {
      explain::ReportProgress reporting(line.reporter());
      attribution = explain::run(method, model, input, target, settings, layer);
    }
    attribution = reshape(attribution, Shape(attribution.shape().begin() + 1, attribution.shape().end()));
    const Show show = args.on("abs")      ? Show::Magnitude
                      : args.on("signed") ? Show::Signed
                                          : viz::show_for(method.policy);
    Display display = viz::display_map(attribution, show, percentile);
    const auto [low, high] = std::minmax_element(attribution.data(), attribution.data() + attribution.numel());
    fmt::print("{}: attribution {}: min {:.4g}, max {:.4g}; shown {}", method.name, shape_str(attribution.shape()), *low,
               *high, show_words(show));
    if (*low == *high) fmt::print(" (the map is {:.3g} everywhere: its panel is one colour)\n", *low);
    else if (show == Show::MinMax) fmt::print("\n");
    else fmt::print(", clipped at {:.2g} (the {} of |a|)\n", display.high, percentile_words(percentile));
    results.push_back({&method, attribution, std::move(display)});
  }

  // Encode everything first, then write all atomically: an error leaves no output file
  // behind, and an existing file is replaced only when every output could be encoded.
  std::vector<std::pair<std::string, std::vector<uint8_t>>> outputs;
  if (args.has("npy"))
    for (const Result& r : results) outputs.emplace_back(npy_path(*r.method), io::encode_npy(r.attribution));
  if (args.has("png")) {
    const int scale = static_cast<int>(std::max<int64_t>(1, 224 / std::max(spec.height, spec.width)));
    const io::Image base = viz::scale_nearest(preprocess::input_to_image(input, spec), scale);
    auto boxed = [&](io::Image image) {  // the explained detection's box, on the input and on each map
      if (explained_box) {
        const float w = static_cast<float>(image.width), h = static_cast<float>(image.height);
        const models::Box& b = *explained_box;
        viz::draw_box(image, b.x0 * w, b.y0 * h, b.x1 * w, b.y1 * h, {230, 20, 20});
      }
      return image;
    };
    // Photos at their own aspect ratio (the model saw them stretched to its input size).
    auto shown = [&](const io::Image& image) { return spec.channels == 3 ? viz::at_aspect(image, photo.width, photo.height) : image; };
    auto heat_of = [&](const Display& d) {
      Tensor unit = d.unit;
      if (unit.dim(1) != spec.height || unit.dim(2) != spec.width)
        unit = upsample(unit, spec.height, spec.width, Interpolation::Bilinear);
      return boxed(viz::scale_nearest(viz::colorize(unit, d.colormap), scale));
    };
    const io::Image framed = boxed(base);
    io::Image figure;
    if (!several) {
      const Result& r = results.front();
      const io::Image heat = heat_of(r.display);
      const io::Image panels = viz::grid({viz::titled(shown(framed), "the input"), viz::titled(shown(heat), r.method->name),
                                          viz::titled(shown(viz::overlay(framed, heat, 0.5f)), "over the input")}, 3, 4);
      const auto [bar_low, bar_middle, bar_high] = bar_words(r.display, percentile, /*in_full=*/true);
      const io::Image bar = viz::color_bar(r.display.colormap, std::min(panels.width, 600), bar_low, bar_middle, bar_high);
      figure = viz::titled(viz::stack({panels, bar}), r.method->name + " of " + what + layer_words);
    } else {
      // One tile per method: its map and its own colour bar (each map has its own scale).
      std::vector<io::Image> tiles = {viz::titled(shown(framed), "the input")};
      for (const Result& r : results) {
        const io::Image heat = shown(heat_of(r.display));
        const auto [bar_low, bar_middle, bar_high] = bar_words(r.display, percentile, /*in_full=*/false);
        tiles.push_back(viz::titled(
            viz::stack({heat, viz::color_bar(r.display.colormap, heat.width, bar_low, bar_middle, bar_high)}, 2),
            fmt::format("{} ({})", r.method->name, show_words(r.display.show))));
      }
      const int columns = static_cast<int>(std::min<size_t>(tiles.size(), tiles.front().width > 300 ? 4 : 5));
      const std::string how = fmt::format("|a| and signed maps clipped at the {} of |a| (colour bar ends: that value and "
                                          "beyond); min to max: from the map's minimum to its maximum",
                                          percentile_words(percentile));
      figure = viz::titled(viz::stack({viz::text(how, 12), viz::grid(tiles, columns, 6)}),
                           fmt::format("{} methods on {}{}", results.size(), what, layer_words), 16);
    }
    outputs.emplace_back(args.get("png"), io::encode_png(figure, args.get("png")));
  }
  if (!outputs.empty()) io::write_files_atomic(outputs);
  for (const auto& [path, bytes] : outputs) fmt::print("wrote {}\n", printable(path));
  if (outputs.empty())
    fmt::print("nothing written: --png OUT.png saves the figure, --npy OUT.npy the raw attribution{}\n",
               several ? " (OUT.<method>.npy for each method)" : "");
  return 0;
}

// ---- info ----
int command_info(int argc, char** argv) {
  cli::Args args("tgc info", "List what a model file holds: a safetensors file's tensors, shapes and metadata;\n"
                             "a TFLite model's layers (kind, name, output shape), classes and input.");
  args.option("model", "FILE", "safetensors file or .tflite model", true);
  args.parse(argc, argv, 2);
  const std::string path = args.get("model");
  if (models::is_tflite(path)) {
    const std::shared_ptr<nn::Model> model = models::load_model(path);
    const nn::ModelInfo& info = model->info();
    {
      NoGrad no_grad;  // one forward pass fills in the output shapes
      model->forward(Tensor::zeros({1, info.input.channels, info.input.height, info.input.width}));
    }
    // describe() is one line per layer: each line escaped on its own (names come from the file)
    fmt::print("{}\n", printable(path));
    const std::string layers = model->describe();
    for (size_t start = 0; start < layers.size();) {
      const size_t end = std::min(layers.find('\n', start), layers.size());
      fmt::print("{}\n", printable(layers.substr(start, end - start)));
      start = end + 1;
    }
    auto* graph = dynamic_cast<models::Graph*>(model.get());
    std::map<std::string, int> kinds;
    if (graph)
      for (const char* kind : {"conv2d", "depthwise_conv2d", "relu6", "relu", "add", "pad", "reshape", "concat", "to_nhwc",
                               "sigmoid", "max_pool2d", "avg_pool2d", "mean", "linear", "softmax"})
        if (const size_t n = graph->layers_of_kind(kind).size()) kinds[kind] = static_cast<int>(n);
    std::string counts;  // by kind, alphabetical
    for (const auto& [kind, n] : kinds) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, kind);
    int64_t parameters = 0;
    for (const Tensor& p : model->parameters()) parameters += p.numel();
    fmt::print("  {} layers ({}); {} parameters\n", model->layer_names().size(), counts, parameters);
    fmt::print("  input: {}x{}x{}, x = (pixel/255 - {}) / {}\n", info.input.channels, info.input.height, info.input.width,
               info.input.mean[0], info.input.std[0]);
    std::string classes;
    for (const std::string& c : info.classes) classes += (classes.empty() ? "" : ", ") + printable(c);
    fmt::print("  {} classes ({}): {}\n", info.classes.size(),
               info.probability == nn::ModelInfo::Probability::Sigmoid ? "score = best anchor's logit, p = sigmoid"
                                                                       : "p = softmax of the scores",
               classes);
    if (!info.cam_layer.empty()) fmt::print("  Grad-CAM layer by default: {}\n", printable(info.cam_layer));
    return 0;
  }
  const io::NamedTensors file = io::load_safetensors(path);
  int64_t total = 0;
  fmt::print("{}\n", printable(path));
  for (const auto& [name, t] : file.tensors) {
    fmt::print("  {:<24} {:<16} {:>10}\n", printable(name), shape_str(t.shape()), t.numel());
    total += t.numel();
  }
  fmt::print("  {} tensors, {} parameters\n", file.tensors.size(), total);
  for (const auto& [key, value] : file.metadata) fmt::print("  {}: {}\n", printable(key), printable(value));
  return 0;
}

// ---- bench ----
// torchvision's VGG16 with random weights (He-scaled, so activations stay in range).
std::shared_ptr<nn::Sequential> random_vgg16(Generator& gen) {
  io::NamedTensors state;
  state.metadata["arch"] = "vgg16";
  int64_t channels = 3, index = 0;
  auto add = [&](const std::string& name, Shape shape, int64_t fan_in) {
    const int64_t out = shape[0];
    state.tensors.emplace_back(name + ".weight", Tensor::randn(shape, gen, 0.f, std::sqrt(2.f / static_cast<float>(fan_in))));
    state.tensors.emplace_back(name + ".bias", Tensor::zeros({out}));
  };
  for (int64_t width : {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0}) {
    if (width == 0) { ++index; continue; }  // a max-pool
    add(fmt::format("features.{}", index), {width, channels, 3, 3}, channels * 9);
    channels = width;
    index += 2;
  }
  add("classifier.0", {4096, 512 * 7 * 7}, 512 * 7 * 7);
  add("classifier.3", {4096, 4096}, 4096);
  add("classifier.6", {1000, 4096}, 4096);
  std::sort(state.tensors.begin(), state.tensors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return models::torchvision_from_state_dict(state, "random vgg16");
}

// The benchmark workloads (README, "Speed"): FashionCNN with random weights, the photo
// model of assets/models/, and VGG16 with random weights.
int command_bench(int argc, char** argv) {
  cli::Args args("tgc bench", "Time the benchmark workloads (README, Speed): FashionCNN and VGG16 with random weights,\n"
                              "the photo model from --photo-model. Prints `NAME: X ms/iter` after one warm-up run, and\n"
                              "for some a floor beside it (tests/README.md, Speed).\n"
                              "TG_NUM_THREADS sets the threads.");
  args.positional("WORKLOAD", "train_step_b64 infer_b256 saliency_b1 guided_b1 ascent_200it conv2_b64 conv2_b1 sgemm_1024\n"
                              "photo_infer_b8 photo_saliency_b1 photo_guided_b1 photo_ascent_10it vgg16_saliency_b1\n"
                              "(default: all; the "
                              "photo_* ones are skipped, with a note, when the photo model is not installed)");
  args.option("photo-model", "FILE", "the SSD-MobileNetV2 the photo_* workloads run (make setup installs it)", false,
              "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite");
  args.toggle("profile", "also print each workload's time per op kind and phase (forward ops, backward rules)");
  args.toggle("layers", "with --profile: a line per layer shape (the op's input and output shapes and settings),\n"
                        "each with its own floor, instead of per op kind");
  args.parse(argc, argv, 2);
  const bool profile = args.has("profile"), by_layer = args.has("layers");
  if (by_layer && !profile) args.fail("--layers goes with --profile");
  const std::string photo_path = args.get("photo-model");

  Generator gen(0);
  auto model = models::make_fashion_cnn(gen);
  optim::SGD sgd(model->named_parameters(), 0.01f, 0.9f);
  const Tensor xb = Tensor::randn({64, 1, 28, 28}, gen), x256 = Tensor::randn({256, 1, 28, 28}, gen);
  const Tensor x1 = Tensor::randn({1, 1, 28, 28}, gen);
  std::vector<int64_t> yb;
  for (int i = 0; i < 64; ++i) yb.push_back(static_cast<int64_t>(gen.next_u64() % 10));
  std::vector<float> a(1024 * 1024), b(1024 * 1024), c(1024 * 1024);
  for (float& v : a) v = gen.uniform();
  for (float& v : b) v = gen.uniform();
  const Tensor class3 = one_hot({1, 10}, {3});
  auto set_trainable = [&](bool on) {
    for (Tensor p : model->parameters()) p.requires_grad_(on);
  };
  // d score_3 / dx for one image, with the parameters frozen (as torch.autograd.grad(score, x)).
  auto input_gradient = [&](const Tensor& x) {
    Tensor leaf = x.detach().requires_grad_();
    (*model)(leaf).backward(class3);
    return leaf.grad();
  };

  // The photo model, loaded when a photo workload first runs; the Cat score's gradient.
  std::shared_ptr<nn::Model> photo_model, vgg;
  auto photo = [&]() -> nn::Model& {
    if (!photo_model) {
      photo_model = models::load_model(photo_path);
      for (Tensor p : photo_model->parameters()) p.requires_grad_(false);
    }
    return *photo_model;
  };
  const Tensor photo_x1 = Tensor::uniform({1, 3, 300, 300}, gen, -1.f, 1.f);
  const Tensor photo_x8 = Tensor::uniform({8, 3, 300, 300}, gen, -1.f, 1.f);
  const Tensor vgg_x1 = Tensor::randn({1, 3, 224, 224}, gen);
  auto photo_gradient = [&](const Tensor& x) {
    nn::Model& net = photo();
    Tensor leaf = x.detach().requires_grad_();
    const int64_t cat = net.class_index("Cat");
    net(leaf).backward(one_hot({1, static_cast<int64_t>(net.info().classes.size())}, {cat}));
    return leaf.grad();
  };

  // A workload's floor: the model whose last forward's layers it counts, what one pass
  // does, and how many passes one iteration makes. Traffic: the layers' outputs (and their
  // gradients) moved at the measured copy bandwidth; Flops: the convolutions' and linear
  // layers' FLOPs (and an input gradient's) at the rate sgemm_1024 reaches now.
  struct Floor {
    enum class Kind { Traffic, Flops };
    std::function<const nn::Model&()> model;
    Kind kind = Kind::Traffic;
    bench::Pass pass = bench::Pass::ForwardBackward;
    int passes = 1;
  };
  struct Workload {
    const char* name;
    int iterations;
    std::function<void()> run;
    std::optional<Floor> floor = std::nullopt;
    std::function<std::string()> note = nullptr;  // printed after the time (instead of a floor)
  };
  // FashionCNN's conv2 (16 -> 32 channels, 5x5, padding 2, on 14x14) over `batch` images,
  // phase by phase, each beside the gemm of the same M, N, K (forward Y = W cols: 32 x
  // batch*196 x 400; dx's dcols = W^T dY: 400 x batch*196 x 32; dW = dY cols^T: 32 x 400 x
  // batch*196). One iteration of the workload is the forward and the backward of both.
  const Tensor conv2_w = Tensor::randn({32, 16, 5, 5}, gen, 0.f, 0.05f), conv2_b = Tensor::randn({32}, gen);
  auto conv2_input = [&](int64_t batch) { return Tensor::randn({batch, 16, 14, 14}, gen); };
  const Tensor conv2_x64 = conv2_input(64), conv2_x1 = conv2_input(1);
  struct Wanted { bool dx = false, dw = false; };
  const Tensor conv2_dy64 = Tensor::randn({64, 32, 14, 14}, gen), conv2_dy1 = Tensor::randn({1, 32, 14, 14}, gen);
  auto conv2_step = [&](const Tensor& x, Wanted wanted) {
    Tensor leaf = x.detach().requires_grad_(wanted.dx), w = conv2_w.detach().requires_grad_(wanted.dw);
    conv2d(leaf, w, conv2_b, 1, 2).backward(x.dim(0) == 1 ? conv2_dy1 : conv2_dy64);
  };
  // Times are CPU seconds of the whole process (all threads) per call, the median of 5 runs:
  // on a shared machine they measure the kernels, not the scheduler (run with
  // TG_NUM_THREADS=1 to compare kernels; with more threads a waiting thread's spin counts).
  // dx and dW: a forward and backward with only that gradient wanted, less the forward.
  auto conv2_phases = [&](const Tensor& x, int iterations) {
    const int64_t P = x.dim(0) * 196;
    auto cpu_seconds = [] {
      timespec t{};
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
      return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
    };
    auto median_us = [&](const std::function<void()>& f) {
      std::vector<double> us;
      for (int run = 0; run < 5; ++run) {
        const double start = cpu_seconds();
        for (int i = 0; i < iterations; ++i) f();
        us.push_back(1e6 * (cpu_seconds() - start) / iterations);
      }
      std::sort(us.begin(), us.end());
      return us[2];
    };
    auto rate = [](double flops, double us) { return flops / us * 1e-3; };
    const double flops = 2.0 * 32 * P * 400;
    const double forward = median_us([&] { NoGrad no_grad; conv2d(x, conv2_w, conv2_b, 1, 2); });
    const double dx = median_us([&] { conv2_step(x, {.dx = true}); }) - forward;
    const double dw = median_us([&] { conv2_step(x, {.dw = true}); }) - forward;
    std::vector<float> A(32 * 400, 0.5f), B(static_cast<size_t>(400 * P), 0.25f), C(static_cast<size_t>(400 * P));
    const double gemm_y = median_us([&] { kernels::gemm(false, false, 32, P, 400, 1.f, A.data(), 400, B.data(), P, 0.f, C.data(), P); });
    const double gemm_dx = median_us([&] { kernels::gemm(true, false, 400, P, 32, 1.f, A.data(), 400, B.data(), P, 0.f, C.data(), P); });
    const double gemm_dw = median_us([&] { kernels::gemm(false, true, 32, 400, P, 1.f, B.data(), P, C.data(), P, 0.f, A.data(), 400); });
    return fmt::format("  CPU us: forward {:.1f} ({:.0f} GFLOP/s; the gemm of its shape {:.0f}), dx {:.1f} ({:.0f}; {:.0f}), "
                       "dW {:.1f} ({:.0f}; {:.0f})",
                       forward, rate(flops, forward), rate(flops, gemm_y), dx, rate(flops, dx), rate(flops, gemm_dx), dw,
                       rate(flops, dw), rate(flops, gemm_dw));
  };
  auto fashion = [&]() -> const nn::Model& { return *model; };
  auto vgg16 = [&]() -> nn::Model& {
    if (!vgg) {
      vgg = random_vgg16(gen);
      for (Tensor p : vgg->parameters()) p.requires_grad_(false);
    }
    return *vgg;
  };
  const std::vector<Workload> workloads = {
      {"train_step_b64", 50, [&] {
         set_trainable(true);
         sgd.zero_grad();
         cross_entropy((*model)(xb), yb).backward();
         sgd.step();
       }},
      {"infer_b256", 20, [&] {
         NoGrad no_grad;
         (*model)(x256);
       }},
      {"saliency_b1", 500, [&] {
         set_trainable(false);
         input_gradient(x1);
       }, Floor{.model = fashion, .kind = Floor::Kind::Flops}},
      {"guided_b1", 500, [&] {
         set_trainable(false);
         OverrideBackward guided(Op::ReLU, rules::guided_relu);
         input_gradient(x1);
       }, Floor{.model = fashion, .kind = Floor::Kind::Flops}},
      {"ascent_200it", 5, [&] {
         set_trainable(false);
         Tensor x = Tensor::zeros({1, 1, 28, 28});
         for (int it = 0; it < 200; ++it) {
           // objective = score_3 - 1e-3 ||x||^2, so its gradient is dscore/dx - 2e-3 x
           const Tensor g = input_gradient(x);
           for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] += g.data()[i] - 2e-3f * x.data()[i];
         }
       }},
      {"conv2_b64", 20, [&] { conv2_step(conv2_x64, {.dx = true, .dw = true}); }, std::nullopt, [&] { return conv2_phases(conv2_x64, 10); }},
      {"conv2_b1", 500, [&] { conv2_step(conv2_x1, {.dx = true, .dw = true}); }, std::nullopt, [&] { return conv2_phases(conv2_x1, 200); }},
      {"sgemm_1024", 20, [&] {
         kernels::gemm(false, false, 1024, 1024, 1024, 1.f, a.data(), 1024, b.data(), 1024, 0.f, c.data(), 1024);
       }},
      {"photo_infer_b8", 3, [&] {
         NoGrad no_grad;
         photo()(photo_x8);
       }, Floor{.model = photo, .pass = bench::Pass::Forward}},
      {"photo_saliency_b1", 5, [&] { photo_gradient(photo_x1); }, Floor{.model = photo}},
      {"photo_guided_b1", 5, [&] {
         OverrideBackward guided(Op::ReLU6, rules::guided_relu);
         photo_gradient(photo_x1);
       }, Floor{.model = photo}},
      {"photo_ascent_10it", 1, [&] {
         Tensor x = Tensor::zeros({1, 3, 300, 300});
         for (int it = 0; it < 10; ++it) {
           // objective = Cat score - 1e-3 ||x||^2; step 0.1 g
           const Tensor g = photo_gradient(x);
           for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] += 0.1f * (g.data()[i] - 2e-3f * x.data()[i]);
         }
       }, Floor{.model = photo, .passes = 10}},
      {"vgg16_saliency_b1", 3, [&] {
         Tensor leaf = vgg_x1.detach().requires_grad_();
         vgg16()(leaf).backward(one_hot({1, 1000}, {281}));
       }, Floor{.model = vgg16}},
  };
  // "  floor X ms (B MB at R GB/s beyond L2 + F GFLOP at G GFLOP/s): Zx the floor; Y ms at the rate of
  // map-sized buffers (R2 GB/s): Z2x; W ms with the maps in L2 (R3 GB/s)",
  // or "  FLOP floor X us (F MFLOP at R GFLOP/s, ...): Zx the floor"; the bandwidth and the gemm
  // rate measured once, after the first workload that needs them. A traffic floor adds the
  // convolutions' and linear layers' FLOPs at the gemm's rate: moving the maps and the
  // arithmetic on them cannot both be hidden behind each other on every layer, and the sum is
  // what "the memory traffic plus the gemm time at the measured peak" means.
  std::optional<bench::Bandwidth> bandwidth;
  std::optional<double> gemm_rate;
  auto measured_gemm_rate = [&] {
    if (!gemm_rate) {
      double best = 0;  // the fastest of 5 runs: a floor wants the best rate the machine gives
      for (int run = 0; run < 5; ++run) {
        const auto start = std::chrono::steady_clock::now();
        kernels::gemm(false, false, 1024, 1024, 1024, 1.f, a.data(), 1024, b.data(), 1024, 0.f, c.data(), 1024);
        best = std::max(best, 2.0 * 1024 * 1024 * 1024 /
                                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      gemm_rate = best;
    }
    return *gemm_rate;
  };
  auto floor_note = [&](const Floor& f, double ms) {
    const double flops = static_cast<double>(f.passes) * bench::multiply_add_flops(f.model()) *
                         (f.pass == bench::Pass::Forward ? 1 : 2);
    const double rate = measured_gemm_rate(), compute_ms = 1e3 * flops / rate;
    if (f.kind == Floor::Kind::Flops)
      return fmt::format("  FLOP floor {:.1f} us ({:.2f} MFLOP at {:.0f} GFLOP/s, the sgemm_1024 rate now): {:.2f}x the floor",
                         1e3 * compute_ms, flops * 1e-6, rate * 1e-9, ms / compute_ms);
    if (!bandwidth) bandwidth = bench::measure_copy_bandwidth();
    const double bytes = static_cast<double>(f.passes) * bench::traffic_bytes(bench::layer_output_bytes(f.model()), f.pass);
    const double beyond_ms = 1e3 * bytes / bandwidth->beyond_l2 + compute_ms;
    const double map_sized_ms = 1e3 * bytes / bandwidth->map_sized + compute_ms;
    const double within_ms = 1e3 * bytes / bandwidth->within_l2 + compute_ms;
    return fmt::format("  floor {:.2f} ms ({:.1f} MB at {:.1f} GB/s beyond L2 + {:.2f} GFLOP at {:.0f} GFLOP/s): {:.2f}x the "
                       "floor; {:.2f} ms at the rate of map-sized buffers ({:.1f} GB/s): {:.2f}x; {:.2f} ms with the maps in "
                       "L2 ({:.1f} GB/s)",
                       beyond_ms, bytes * 1e-6, bandwidth->beyond_l2 * 1e-9, flops * 1e-9, rate * 1e-9, ms / beyond_ms,
                       map_sized_ms, bandwidth->map_sized * 1e-9, ms / map_sized_ms, within_ms, bandwidth->within_l2 * 1e-9);
  };
  // One line per op kind and phase (or per layer shape), most time first; what no op was
  // charged with last. A layer's line adds its floor: bench::layer_work at the copy bandwidth
  // beyond L2 and the gemm rate, the same rates as the workload's floor.
  auto print_profile = [&](std::vector<ProfileOps::Item> items, double ms, int iterations) {
    std::sort(items.begin(), items.end(), [](const auto& x, const auto& y) { return x.seconds > y.seconds; });
    double charged = 0, floors = 0;
    for (const auto& item : items) {
      const double us = 1e6 * item.seconds / iterations, calls = static_cast<double>(item.calls) / iterations;
      charged += us;
      fmt::print("  {:<16} {:<9} {:>6.1f} calls {:>9.1f} us/iter {:>5.1f}%", item.op, item.phase, calls, us,
                 100.0 * us / (1e3 * ms));
      if (!by_layer || item.inputs.empty()) {
        fmt::print("\n");
        continue;
      }
      if (!bandwidth) bandwidth = bench::measure_copy_bandwidth();
      const bench::Work work = bench::layer_work(item);
      const double floor_us = calls * (1e6 * static_cast<double>(work.bytes) / bandwidth->beyond_l2 +
                                       1e6 * static_cast<double>(work.flops) / measured_gemm_rate());
      floors += floor_us;
      std::string inputs;
      for (size_t i = 0; i < item.inputs.size(); ++i)
        if (!item.inputs[i].empty()) inputs += (inputs.empty() ? "" : " ") + shape_str(item.inputs[i]);
      fmt::print("  floor {:>7.1f} us {:>5}  {:.2f} MB {:.1f} MFLOP  {} -> {} {}\n", floor_us,
                 floor_us > 0 ? fmt::format("{:.2f}x", us / floor_us) : "", calls * static_cast<double>(work.bytes) * 1e-6,
                 calls * static_cast<double>(work.flops) * 1e-6, inputs, shape_str(item.output), item.settings);
    }
    fmt::print("  {:<16} {:<9} {:>6} {:>15.1f} us/iter {:>5.1f}%\n", "(not on tape)", "", "",
               1e3 * ms - charged, 100.0 * (1e3 * ms - charged) / (1e3 * ms));
    if (by_layer)
      fmt::print("  the layers' floors add up to {:.2f} ms ({:.2f}x); {:.1f} GB/s beyond L2, {:.0f} GFLOP/s\n", 1e-3 * floors,
                 1e3 * ms / std::max(floors, 1e-9), bandwidth ? bandwidth->beyond_l2 * 1e-9 : 0.0, measured_gemm_rate() * 1e-9);
  };
  for (const std::string& name : args.rest()) {
    bool known = false;
    for (const Workload& w : workloads) known |= name == w.name;
    if (!known) args.fail("unknown workload '" + name + "'");
  }
  for (const Workload& w : workloads) {
    const bool named = std::find(args.rest().begin(), args.rest().end(), w.name) != args.rest().end();
    if (!args.rest().empty() && !named) continue;
    if (std::string_view(w.name).starts_with("photo_") && !named && !io::file_exists(photo_path)) {
      fmt::print(stderr, "{}: skipped ({} is not installed; make setup installs it)\n", w.name, printable(photo_path));
      continue;
    }
    w.run();  // warm-up
    std::optional<ProfileOps> ops;
    if (profile) ops.emplace(by_layer ? ProfileOps::Key::Layer : ProfileOps::Key::OpKind);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < w.iterations; ++i) w.run();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / w.iterations;
    fmt::print("{}: {:.3f} ms/iter{}\n", w.name, ms, w.floor ? floor_note(*w.floor, ms) : w.note ? w.note() : "");
    if (ops) print_profile(ops->items(), ms, w.iterations);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  try {
    if (command == "train") return command_train(argc, argv);
    if (command == "eval") return command_eval(argc, argv);
    if (command == "info") return command_info(argc, argv);
    if (command == "explain") return command_explain(argc, argv);
    if (command == "predict") return command_predict(argc, argv);
    if (command == "bench") return command_bench(argc, argv);
    if (command == "visualize") return cli::command_visualize(argc, argv);
    if (command == "invert") return cli::command_invert(argc, argv);
    if (command == "top-patches") return cli::command_top_patches(argc, argv);
    if (command == "serve") return cli::command_serve(argc, argv);
    if (command == "--help" || command == "-h" || command == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "error: unknown command '%s'\nusage: tgc <command> [flags]\nrun `tgc --help` for the commands\n",
                 printable(command).c_str());
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", printable(e.what()).c_str());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", printable(e.what()).c_str());
    return 1;
  }
}
