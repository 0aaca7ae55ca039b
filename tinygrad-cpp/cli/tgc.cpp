// tgc: the tinygrad-cpp command-line tool.
//
//   tgc train   [--data DIR] [--epochs N] [--batch B] [--lr LR] [--seed S] [--out FILE] [--resume FILE]
//   tgc eval    --model FILE [--data DIR]
//   tgc info    --model FILE
//   tgc bench   [WORKLOAD...]
//
// Every error is one line "error: ..." and a non-zero exit; bad flags print usage and exit 2.
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>

#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/data.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/viz.h"
#include "tinygrad-cpp/kernels/kernels.h"
#include "tinygrad-cpp/nn.h"
#include "tinygrad-cpp/optim.h"
#include "tinygrad-cpp/train.h"

using namespace tg;

namespace {

const char* kUsage =
    "usage: tgc <command> [flags]\n\n"
    "commands:\n"
    "  train    train FashionCNN on Fashion-MNIST and write its weights\n"
    "  eval     per-class and overall test accuracy of a weights file\n"
    "  explain  an attribution map (saliency, guided backprop, Grad-CAM, ...) for one image\n"
    "  info     tensors, shapes and metadata of a safetensors file\n"
    "  bench    time the benchmark workloads (NAME: X ms/iter)\n\n"
    "`tgc <command> --help` describes each command's flags.\n";

std::atomic<bool> interrupted{false};
extern "C" void on_interrupt(int) { interrupted = true; }

std::string format_seconds(double s) {
  if (s >= 60) return fmt::format("{}m{:02d}s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return fmt::format("{:.0f}s", s);
}

// ---- train ----
int command_train(int argc, char** argv) {
  cli::Args args("tgc train", "Train FashionCNN (DESIGN.md) with Adam and a cosine learning-rate decay. After every\n"
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
  options.lr = static_cast<float>(args.get_float("lr"));
  if (!(options.lr > 0.f)) args.fail("--lr must be greater than 0");
  options.seed = static_cast<uint64_t>(args.get_int("seed", 0, int64_t{1} << 62));
  options.out = args.get("out");
  if (args.has("resume")) {
    options.resume = args.get("resume");
    const io::NamedTensors checkpoint = io::load_safetensors(options.resume);
    const auto& m = checkpoint.metadata;
    try {
      options.seed = std::stoull(m.at("seed"));
      options.batch = std::stoll(m.at("batch"));
      options.lr = std::stof(m.at("lr"));
      if (!args.on("epochs") && m.count("epochs")) options.epochs = std::stoi(m.at("epochs"));
    } catch (const std::exception&) {
      throw Error(options.resume + ": not a training checkpoint (metadata seed/batch/lr missing)");
    }
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
  auto on_epoch = [&](const train::EpochResult& r) {
    fmt::print("{}epoch {} done: train loss {:.4f} acc {:.4f} | test loss {:.4f} accuracy {:.4f} | {:.1f}s | wrote {} and {}\n",
               live ? "\n" : "", r.epoch, r.train_loss, r.train_accuracy, r.test.loss, r.test.accuracy(), r.seconds,
               options.out, train::checkpoint_path(options.out));
  };
  const bool finished = train::train_fashion_cnn(options, train_set, test_set, on_progress, on_epoch, &interrupted);
  if (!finished) {
    fmt::print("\ninterrupted: stopped cleanly; {} holds the last completed epoch (resume with --resume {})\n",
               train::checkpoint_path(options.out), train::checkpoint_path(options.out));
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
  const nn::LoadedModel loaded = nn::load_fashion_cnn(args.get("model"));
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

// ---- explain ----
int command_explain(int argc, char** argv) {
  cli::Args args("tgc explain", "Explain the model's score for one PNG/JPEG image with an attribution method. The\n"
                                "image is made gray and resized to 28x28; when its border is bright it is inverted\n"
                                "(Fashion-MNIST objects are light on black). --npy gets the raw attribution: [C,H,W]\n"
                                "of the preprocessed input, or [h,w] at the layer (after ReLU) for gradcam. --png\n"
                                "gets a figure: input, map, and the map over the input.");
  args.option("model", "FILE", "weights file", true)
      .option("image", "IMG", "PNG or JPEG image", true)
      .option("method", "M", "saliency input_x_gradient guided_backprop deconvnet smoothgrad integrated_gradients "
                              "occlusion gradcam guided_gradcam", true)
      .option("target", "K", "class to explain (default: the predicted class)")
      .option("layer", "NAME", "layer for gradcam and guided_gradcam", false, "relu2")
      .option("npy", "OUT.npy", "write the raw attribution")
      .option("png", "OUT.png", "write the figure")
      .option("seed", "S", "seed for smoothgrad's noise", false, "0")
      .option("samples", "N", "smoothgrad samples", false, "50")
      .option("noise", "SIGMA", "smoothgrad noise, as a fraction of the input range", false, "0.15")
      .option("steps", "N", "integrated-gradients steps", false, "64")
      .option("window", "W", "occlusion window", false, "4")
      .option("stride", "S", "occlusion stride", false, "2");
  args.parse(argc, argv, 2);
  const std::string method = args.get("method");
  const std::vector<std::string> methods = {"saliency",   "input_x_gradient",     "guided_backprop", "deconvnet", "smoothgrad",
                                            "integrated_gradients", "occlusion", "gradcam", "guided_gradcam"};
  if (std::find(methods.begin(), methods.end(), method) == methods.end()) args.fail("unknown method '" + method + "'");
  const int64_t target_flag = args.has("target") ? args.get_int("target", 0, 9) : -1;
  const int samples = static_cast<int>(args.get_int("samples", 1, 100000));
  const int steps = static_cast<int>(args.get_int("steps", 1, 100000));
  const int64_t window = args.get_int("window", 1, 28), stride = args.get_int("stride", 1, 28);
  const float noise = static_cast<float>(args.get_float("noise"));
  const uint64_t seed = static_cast<uint64_t>(args.get_int("seed", 0, int64_t{1} << 62));

  const nn::LoadedModel loaded = nn::load_fashion_cnn(args.get("model"));
  nn::Sequential& model = *loaded.model;
  const io::Image photo = io::load_image(args.get("image"));
  // Inverted when the border is bright: a product photo on white becomes light-on-black.
  double border = 0;
  int border_pixels = 0;
  for (int y = 0; y < photo.height; ++y)
    for (int x = 0; x < photo.width; ++x)
      if (y == 0 || x == 0 || y == photo.height - 1 || x == photo.width - 1) {
        border += photo.at(y, x, 0);
        ++border_pixels;
      }
  const bool invert = border / border_pixels > 127.5;
  const Tensor input = viz::image_to_input(photo, data::kImageSide, data::kFashionMean, data::kFashionStd, invert);

  const Tensor probabilities = softmax(explain::scores(model, input), 1);
  const int64_t predicted = argmax(probabilities)[0];
  const int64_t target = target_flag >= 0 ? target_flag : predicted;
  fmt::print("{}: {}x{} image{}, predicted {} ({}) with p = {:.4f}\n", args.get("image"), photo.width, photo.height,
             invert ? " (inverted)" : "", predicted, data::kFashionClasses[predicted], probabilities.data()[predicted]);
  fmt::print("explaining class {} ({}, p = {:.4f}) with {}\n", target, data::kFashionClasses[target],
             probabilities.data()[target], method);

  const explain::Targets targets = {target};
  Tensor attribution;  // [C,H,W] for pixel methods, [h,w] for gradcam
  viz::Normalize policy = viz::Normalize::Signed;
  viz::Colormap colormap = viz::Colormap::Diverging;
  if (method == "saliency") {
    attribution = explain::saliency(model, input, targets);
    policy = viz::Normalize::MaxAbs;
    colormap = viz::Colormap::Viridis;
  } else if (method == "input_x_gradient") {
    attribution = explain::input_x_gradient(model, input, targets);
  } else if (method == "guided_backprop") {
    attribution = explain::guided_backprop(model, input, targets);
  } else if (method == "deconvnet") {
    attribution = explain::deconvnet(model, input, targets);
  } else if (method == "smoothgrad") {
    attribution = explain::smoothgrad(model, input, targets, samples, noise, seed);
    policy = viz::Normalize::MaxAbs;
    colormap = viz::Colormap::Viridis;
  } else if (method == "integrated_gradients") {
    attribution = explain::integrated_gradients(model, input, targets, Tensor::full(input.shape(), -data::kFashionMean / data::kFashionStd), steps);
  } else if (method == "occlusion") {
    attribution = explain::occlusion(model, input, targets, window, stride, -data::kFashionMean / data::kFashionStd);
  } else if (method == "gradcam") {
    attribution = explain::grad_cam(model, input, targets, args.get("layer"));
    policy = viz::Normalize::MinMax;
    colormap = viz::Colormap::Viridis;
  } else {
    attribution = explain::guided_grad_cam(model, input, targets, args.get("layer"));
  }
  attribution = reshape(attribution, Shape(attribution.shape().begin() + 1, attribution.shape().end()));  // drop the batch axis

  // Encode everything first, then write: an error leaves no output file behind.
  std::vector<std::pair<std::string, std::vector<uint8_t>>> outputs;
  if (args.has("npy")) outputs.emplace_back(args.get("npy"), io::encode_npy(attribution));
  if (args.has("png")) {
    const int scale = 8;
    Tensor shown_input = viz::normalize(reshape(input, {1, 28, 28}), viz::Normalize::MinMax);
    Tensor map = attribution.ndim() == 2 ? reshape(attribution, {1, attribution.dim(0), attribution.dim(1)}) : attribution;
    Tensor unit = viz::normalize(map, policy);
    if (unit.dim(0) > 1) unit = viz::normalize(map, viz::Normalize::MaxAbs);
    if (unit.dim(1) != 28) unit = viz::upsample(unit, 28, 28, /*bilinear=*/true);
    const io::Image base = viz::scale_nearest(viz::to_image(shown_input), scale);
    const io::Image heat = viz::scale_nearest(viz::colorize(unit, colormap), scale);
    outputs.emplace_back(args.get("png"), io::encode_png(viz::grid({base, heat, viz::overlay(base, heat, 0.5f)}, 3, 4), args.get("png")));
  }
  std::vector<std::string> written;
  try {
    for (const auto& [path, bytes] : outputs) {
      io::write_file_atomic(path, bytes.data(), bytes.size());
      written.push_back(path);
    }
  } catch (...) {
    for (const std::string& path : written) std::remove(path.c_str());
    throw;
  }
  float low = attribution.data()[0], high = low;
  for (int64_t i = 0; i < attribution.numel(); ++i) low = std::min(low, attribution.data()[i]), high = std::max(high, attribution.data()[i]);
  fmt::print("attribution {}: min {:.4g}, max {:.4g}\n", shape_str(attribution.shape()), low, high);
  for (const std::string& path : written) fmt::print("wrote {}\n", path);
  return 0;
}

// ---- info ----
int command_info(int argc, char** argv) {
  cli::Args args("tgc info", "List the tensors, shapes and metadata of a safetensors file.");
  args.option("model", "FILE", "safetensors file", true);
  args.parse(argc, argv, 2);
  const io::NamedTensors file = io::load_safetensors(args.get("model"));
  int64_t total = 0;
  fmt::print("{}\n", args.get("model"));
  for (const auto& [name, t] : file.tensors) {
    fmt::print("  {:<24} {:<16} {:>10}\n", name, shape_str(t.shape()), t.numel());
    total += t.numel();
  }
  fmt::print("  {} tensors, {} parameters\n", file.tensors.size(), total);
  for (const auto& [key, value] : file.metadata) fmt::print("  {}: {}\n", key, value);
  return 0;
}

// ---- bench ----
// The workloads of BENCHMARKS.md, on FashionCNN with random weights.
int command_bench(int argc, char** argv) {
  cli::Args args("tgc bench", "Time the benchmark workloads of BENCHMARKS.md on FashionCNN with random weights.\n"
                              "Prints `NAME: X ms/iter` after one warm-up run. TG_NUM_THREADS sets the threads.");
  args.positional("WORKLOAD", "train_step_b64 infer_b256 saliency_b1 guided_b1 ascent_200it sgemm_1024 (default: all)");
  args.parse(argc, argv, 2);

  Generator gen(0);
  auto model = nn::make_fashion_cnn(gen);
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

  struct Workload {
    const char* name;
    int iterations;
    std::function<void()> run;
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
       }},
      {"guided_b1", 500, [&] {
         set_trainable(false);
         OverrideBackward guided(Op::ReLU, rules::guided_relu);
         input_gradient(x1);
       }},
      {"ascent_200it", 5, [&] {
         set_trainable(false);
         Tensor x = Tensor::zeros({1, 1, 28, 28});
         for (int it = 0; it < 200; ++it) {
           // objective = score_3 - 1e-3 ||x||^2, so its gradient is dscore/dx - 2e-3 x
           const Tensor g = input_gradient(x);
           for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] += g.data()[i] - 2e-3f * x.data()[i];
         }
       }},
      {"sgemm_1024", 20, [&] {
         kernels::gemm(false, false, 1024, 1024, 1024, 1.f, a.data(), 1024, b.data(), 1024, 0.f, c.data(), 1024);
       }},
  };
  for (const std::string& name : args.rest()) {
    bool known = false;
    for (const Workload& w : workloads) known |= name == w.name;
    if (!known) args.fail("unknown workload '" + name + "'");
  }
  for (const Workload& w : workloads) {
    if (!args.rest().empty() && std::find(args.rest().begin(), args.rest().end(), w.name) == args.rest().end()) continue;
    w.run();  // warm-up
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < w.iterations; ++i) w.run();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / w.iterations;
    fmt::print("{}: {:.3f} ms/iter\n", w.name, ms);
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
    if (command == "bench") return command_bench(argc, argv);
    if (command == "--help" || command == "-h" || command == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "error: unknown command '%s'\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
