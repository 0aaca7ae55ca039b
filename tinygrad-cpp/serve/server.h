// `tgc serve`'s HTTP side (cpp-httplib): the page's files from a table filled once at start,
// the handlers of explorer.h under /api/, the visualization streamed as it climbs.
//
// Only the page's own files are served, each by its exact name from the table (no part of a
// request's path reaches the file system); everything else is a 404 with a JSON line.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tinygrad-cpp/serve/explorer.h"

namespace tg::serve {

// The page's files, by the names the server answers to ("/", "/app.js", ...).
struct PageFile {
  std::string name, content_type, body;
};
// Reads the page's files from `folder` (index.html, style.css, the JS modules) by their exact
// names; a file missing is an error naming it.
std::vector<PageFile> load_page(const std::string& folder);

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (tests)
};

class Server {
 public:
  Server(Explorer& explorer, std::vector<PageFile> page, ServerOptions options);
  ~Server();
  // Binds; returns the port (throws when the address cannot be bound).
  int bind();
  // Serves until stop() (blocks).
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tg::serve
