#include "tinygrad-cpp/serve/server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

namespace tg::serve {

std::vector<PageFile> load_page(const std::string& folder) {
  // The page, file by file: the only names the server answers to besides /api/.
  const std::pair<const char*, const char*> files[] = {
      {"index.html", "text/html; charset=utf-8"},   {"style.css", "text/css; charset=utf-8"},
      {"app.js", "text/javascript; charset=utf-8"}, {"api.js", "text/javascript; charset=utf-8"},
      {"panels.js", "text/javascript; charset=utf-8"},
  };
  std::vector<PageFile> page;
  for (const auto& [name, type] : files) {
    const std::vector<uint8_t> bytes = io::read_file(folder + "/" + name, uint64_t{1} << 20);
    page.push_back({std::string("/") + name, type, std::string(bytes.begin(), bytes.end())});
  }
  page.push_back({"/", page.front().content_type, page.front().body});
  return page;
}

struct Server::Impl {
  Explorer& explorer;
  std::vector<PageFile> page;
  ServerOptions options;
  httplib::Server http;
};

namespace {

std::string error_line(const std::string& what) { return nlohmann::json{{"error", what}}.dump(); }

void answer(httplib::Response& res, const Reply& reply) {
  res.status = reply.status;
  if (reply.retry_after > 0) res.set_header("Retry-After", std::to_string(reply.retry_after));
  res.set_header("Cache-Control", "no-store");
  res.set_content(reply.body, reply.content_type.c_str());
}

Request request_of(const httplib::Request& req) {
  Request r;
  for (const auto& [key, value] : req.params) r.params[key] = value;  // the first of a repeated name wins
  r.body = req.body;
  return r;
}

}  // namespace

Server::Server(Explorer& explorer, std::vector<PageFile> page, ServerOptions options)
    : impl_(new Impl{explorer, std::move(page), std::move(options), {}}) {
  httplib::Server& http = impl_->http;
  Impl* self = impl_.get();
  const Limits& limits = explorer.limits();
  http.set_payload_max_length(limits.upload_bytes + 1024);
  http.set_read_timeout(10, 0);
  http.set_write_timeout(10, 0);
  http.set_keep_alive_timeout(5);
  http.set_tcp_nodelay(true);  // small answers leave at once (no 40 ms wait for a delayed ACK)
  for (const PageFile& f : self->page)
    http.Get(f.name, [f](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-cache");
      res.set_content(f.body, f.content_type.c_str());
    });
  // The streamed climbs: newline-delimited JSON, one line a frame; a refusal before the first
  // frame is an ordinary 4xx/503 answer.
  auto stream_route = [&http, self](const std::string& path, Explorer::Stream (Explorer::*start)(const Request&)) {
    http.Get(path, [self, start](const httplib::Request& req, httplib::Response& res) {
      std::shared_ptr<Explorer::Stream> stream;
      try {
        stream = std::make_shared<Explorer::Stream>((self->explorer.*start)(request_of(req)));
      } catch (const Refusal& r) {
        answer(res, {.status = r.status, .body = error_line(printable(r.what())), .retry_after = r.retry_after});
        return;
      } catch (const std::exception& e) {
        answer(res, {.status = 400, .body = error_line(printable(e.what()))});
        return;
      }
      res.set_header("Cache-Control", "no-store");
      res.set_chunked_content_provider("application/x-ndjson", [stream](size_t, httplib::DataSink& sink) {
        stream->run([&sink](const std::string& line) { return sink.is_writable() && sink.write(line.data(), line.size()); });
        sink.done();
        return true;
      });
    });
  };
  stream_route("/api/visualize", &Explorer::visualize_stream);
  stream_route("/api/invert", &Explorer::invert_stream);
  http.Get(R"(/api/([a-z]+))", [self](const httplib::Request& req, httplib::Response& res) {
    answer(res, self->explorer.handle(req.matches[1], request_of(req)));
  });
  http.Post("/api/upload", [self](const httplib::Request& req, httplib::Response& res) {
    answer(res, self->explorer.handle("upload", request_of(req)));
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string what = res.status == 404   ? "not found: " + printable(req.path.substr(0, 80))
                             : res.status == 413 ? "the request is too large"
                                                 : fmt::format("HTTP {}", res.status);
    res.set_content(error_line(what), "application/json");
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
    std::string what = "internal error";
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(error_line(printable(what)), "application/json");
  });
}

Server::~Server() = default;

int Server::bind() {
  httplib::Server& http = impl_->http;
  const ServerOptions& o = impl_->options;
  const int port = o.port == 0 ? http.bind_to_any_port(o.host) : (http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port < 0) throw Error(fmt::format("serve: cannot listen on {}:{} (in use, or not an address of this machine)", o.host, o.port));
  return port;
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop() { impl_->http.stop(); }

}  // namespace tg::serve
