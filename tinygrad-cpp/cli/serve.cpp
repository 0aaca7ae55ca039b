// tgc serve [--model FILE] [--port N] [--host ADDR]: the explorer page on a local web server.
#include "tinygrad-cpp/cli/serve.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/serve/server.h"

namespace tg::cli {

namespace {

std::atomic<bool> stop_requested{false};
extern "C" void on_stop_signal(int) { stop_requested = true; }

// The repository the program was built in: two folders above build/bin/tgc, or the current
// folder (where `make` runs).
std::string repository_root() {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  if (!error)
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
      if (fs::exists(p / "tinygrad-cpp/serve/page/index.html", error)) return p.string();
  return ".";
}

}  // namespace

int command_serve(int argc, char** argv) {
  const std::string root = repository_root();
  const std::string photo = root + "/assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";
  Args args("tgc serve",
            "The explorer page: a local web server for a browser. Pick or upload an image, see the model's boxes\n"
            "or classes, its layers and channels, the attribution methods side by side with their numbers, change\n"
            "the backward rule of every ReLU/ReLU6 (vanilla, deconvnet, guided, or one registered by name in C++),\n"
            "stream a class or neuron visualization, export PNG and .npy (the bytes tgc explain --npy writes).\n"
            "Serves the shipped FashionCNN and, when installed (make setup), the photo model; --model serves one\n"
            "file instead. Listens on 127.0.0.1 only unless --host says otherwise. Ctrl-C stops it.");
  args.option("model", "FILE", "serve this model (safetensors or .tflite) instead of the shipped ones")
      .option("port", "N", "the port", false, "8000")
      .option("host", "ADDR", "the address to listen on (anything but 127.0.0.1 opens the server to the network)", false,
              "127.0.0.1")
      .option("page", "DIR", "the page's folder", false, root + "/tinygrad-cpp/serve/page")
      .option("assets", "DIR", "the shipped images' folder", false, root + "/assets");
  args.parse(argc, argv, 2);
  const int port = static_cast<int>(args.get_int("port", 0, 65535));
  const std::string host = args.get("host");

  std::vector<serve::ModelFile> models;
  if (args.has("model") && !args.get("model").empty()) {
    models.push_back({"model", args.get("model")});
  } else {
    models.push_back({"fashion", args.get("assets") + "/fashion_cnn.safetensors"});
    if (io::file_exists(photo))
      models.insert(models.begin(), {"photo", photo});
    else
      fmt::print("note: the photo model is not installed ({}); `make setup` installs it\n", printable(photo));
  }
  fmt::print("loading {} model{}...\n", models.size(), models.size() == 1 ? "" : "s");
  serve::Explorer explorer(models, args.get("assets"));
  serve::Server server(explorer, serve::load_page(args.get("page")), {.host = host, .port = port});
  const int bound = server.bind();
  if (host != "127.0.0.1" && host != "localhost" && host != "::1") {
    fmt::print(stderr,
               "\n*** WARNING: listening on {} -- anyone who can reach this machine on port {} can use this server\n"
               "*** (upload images, run computations). It has no password. Use it only on a network you trust.\n\n",
               printable(host), bound);
  }
  fmt::print("tgc serve: open http://{}:{}/ in a browser (Ctrl-C stops)\n", host == "0.0.0.0" ? "127.0.0.1" : printable(host), bound);
  std::fflush(stdout);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::thread watcher([&] {
    while (!stop_requested) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server.stop();
  });
  server.run();
  stop_requested = true;
  watcher.join();
  fmt::print("tgc serve: stopped ({} requests refused as busy)\n", explorer.refused());
  return 0;
}

}  // namespace tg::cli
