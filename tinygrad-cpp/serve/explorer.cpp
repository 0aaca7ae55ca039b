#include "tinygrad-cpp/serve/explorer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>

#include "tinygrad-cpp/core/rule_registry.h"
#include "tinygrad-cpp/data/preprocess.h"
#include "tinygrad-cpp/explain/explain.h"
#include "tinygrad-cpp/explain/recipes.h"
#include "tinygrad-cpp/models/detection.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/viz/viz.h"

namespace tg::serve {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// ---- the gate: one computation at a time, a short queue ----
Gate::Lease::~Lease() {
  if (!gate_) return;
  gate_->busy_.unlock();
  --gate_->inside_;
}

Gate::Lease Gate::enter(const std::string& what) {
  if (inside_.fetch_add(1) > queue_) {
    --inside_;
    ++refused_;
    Refusal busy(503, fmt::format("{}: the model is busy ({} requests waiting); try again in a moment", what, queue_));
    busy.retry_after = 1;
    throw busy;
  }
  if (!busy_.try_lock_for(wait_)) {
    --inside_;
    ++refused_;
    Refusal busy(503, fmt::format("{}: waited {} ms for the model; try again in a moment", what, wait_.count()));
    busy.retry_after = 2;
    throw busy;
  }
  return Lease(*this);
}

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t a = bytes[i], b = i + 1 < bytes.size() ? bytes[i + 1] : 0, c = i + 2 < bytes.size() ? bytes[i + 2] : 0;
    const uint32_t n = (a << 16) | (b << 8) | c;
    out += digits[(n >> 18) & 63];
    out += digits[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? digits[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? digits[n & 63] : '=';
  }
  return out;
}

namespace {

// An image inside JSON, for the page to draw at once (compressed fast: it crosses no network).
std::string png_data_url(const io::Image& image, const std::string& label) {
  return "data:image/png;base64," + base64(io::encode_png(image, label, io::PngEffort::Fast));
}

json box_json(const models::Box& b) { return {{"x0", b.x0}, {"y0", b.y0}, {"x1", b.x1}, {"y1", b.y1}}; }

// ---- parameters ----
const std::string* find_param(const Request& r, const std::string& name) {
  auto it = r.params.find(name);
  return it == r.params.end() || it->second.empty() ? nullptr : &it->second;
}
const std::string& need_param(const Request& r, const std::string& route, const std::string& name) {
  if (const std::string* v = find_param(r, name)) return *v;
  throw Refusal(400, fmt::format("{}: parameter '{}' is missing", route, name));
}
double number_param(const std::string& route, const std::string& name, const std::string& text, double low, double high,
                    bool whole) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < low || v > high || (whole && v != std::floor(v)))
    throw Refusal(400, fmt::format("{}: parameter {} = '{}' must be {} in [{}, {}]", route, name, printable(text.substr(0, 40)),
                                   whole ? "a whole number" : "a number", low, high));
  return v;
}
int64_t whole_param(const Request& r, const std::string& route, const std::string& name, int64_t low, int64_t high,
                    int64_t fallback) {
  const std::string* v = find_param(r, name);
  return v ? static_cast<int64_t>(number_param(route, name, *v, static_cast<double>(low), static_cast<double>(high), true))
           : fallback;
}

// A rule on every rectifier a forward pass records, set on each entry (the finest grain, so it
// holds inside the method's own walk too). A view of the model, forwarding everything else.
class RuledModel : public nn::Model {
 public:
  RuledModel(nn::Model& inner, NamedRule rule) : inner_(inner), rule_(std::move(rule)) { set_info(inner.info()); }
  Tensor forward(const Tensor& x) override { return marked(inner_.forward(x)); }
  Tensor forward_until(const Tensor& x, const std::string& last) override { return marked(inner_.forward_until(x, last)); }
  Tensor forward_after(const Tensor& h, const std::string& layer) override { return marked(inner_.forward_after(h, layer)); }
  Tensor activation(const std::string& name) const override { return inner_.activation(name); }
  std::vector<std::string> layer_names() const override { return inner_.layer_names(); }
  Tensor anchor_logits() const override { return inner_.anchor_logits(); }
  std::string describe() const override { return inner_.describe(); }
  void collect_parameters(const std::string& prefix, nn::NamedParameters& out) const override {
    inner_.collect_parameters(prefix, out);
  }

 private:
  Tensor marked(Tensor out) {
    for (const std::string& name : inner_.layer_names()) {
      Tensor a;
      try {
        a = inner_.activation(name);
      } catch (const Error&) {
        continue;  // a layer this pass did not reach (forward_until stops early; a detector's other heads)
      }
      if (!a.defined()) continue;
      const Entry* entry = tape().producer(a);
      if (entry && entry->op == &Op::ReLU) tape().set_rule(a, rule_.relu);
      if (entry && entry->op == &Op::ReLU6) tape().set_rule(a, rule_.relu6);
    }
    return out;
  }
  nn::Model& inner_;
  NamedRule rule_;
};

struct Cancelled {};

}  // namespace

// ---- models ----
struct Layer {
  std::string name, kind;
  Shape shape;
};

struct Explorer::Served {
  std::string id, path;
  std::shared_ptr<nn::Model> model;
  bool detector = false;
  std::vector<Layer> layers;
  std::vector<models::Head> heads;  // a detector's
  std::unique_ptr<Gate> gate;
  models::Graph& graph() { return dynamic_cast<models::Graph&>(*model); }
};

// A map's target as `tgc explain` resolves it (from a forward pass without gradients), kept by
// image, model and what was asked, so the page's several maps of one target cost one such pass.
struct Resolved {
  explain::Target target;
  std::optional<models::Box> box;  // a detection's
  std::string layer;               // a detection's head's layer, Grad-CAM's default
  json target_json;
};

// ---- images: the shipped ones and the uploads (the newest `uploads_kept`) ----
struct Explorer::Images {
  struct Entry {
    std::string id, name, group;  // group: "photo", "fashion", "upload"
    std::shared_ptr<const io::Image> image;  // upright, no alpha, fitted (preprocess's intake)
    std::vector<std::string> notes;          // what the intake did to it
    std::shared_ptr<const std::string> png;  // a shipped image's, encoded at start (an upload's: in pngs)
  };
  std::mutex mutex;
  std::vector<Entry> shipped;
  std::deque<Entry> uploads;
  uint64_t next_upload = 1;
  // Made from images and kept, by "image id/model id[/...]": the model inputs (a photo is resized
  // once), the PNGs /api/image answers (encoded once), the resolved targets.
  std::map<std::string, Tensor> inputs;
  std::map<std::string, std::shared_ptr<const std::string>> pngs;
  std::map<std::string, Resolved> targets;

  Entry find(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex);
    for (const Entry& e : shipped)
      if (e.id == id) return e;
    for (const Entry& e : uploads)
      if (e.id == id) return e;
    throw Refusal(404, fmt::format("image '{}' is not known (the server keeps the last uploads only; upload it again)",
                                   printable(id.substr(0, 40))));
  }
  // What `key` holds in `cache`, or `make()` kept there (outside the lock: two requests may both
  // make it, and keep the same).
  template <typename Value, typename Make>
  Value kept(std::map<std::string, Value>& cache, const std::string& key, Make make) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (auto it = cache.find(key); it != cache.end()) return it->second;
    }
    Value made = make();
    std::lock_guard<std::mutex> lock(mutex);
    if (cache.size() > 256) cache.clear();
    return cache.emplace(key, std::move(made)).first->second;
  }
  // The image as the model's input; an upload's (up to 16 megapixels to read) made under `work`.
  Tensor input(const Entry& e, const Served& s, Gate& work) {
    return kept(inputs, e.id + "/" + s.id, [&] {
      std::optional<Gate::Lease> lease;
      if (e.group == "upload") lease.emplace(work.enter("input"));
      return preprocess::image_to_input(*e.image, s.model->info().input);
    });
  }
  // The image as PNG; an upload's encoded under `work`, once.
  std::shared_ptr<const std::string> png(const Entry& e, Gate& work) {
    if (e.png) return e.png;
    return kept(pngs, e.id + "/png", [&] {
      const Gate::Lease lease = work.enter("image");
      const std::vector<uint8_t> bytes = io::encode_png(*e.image, e.id, io::PngEffort::Fast);
      return std::make_shared<const std::string>(bytes.begin(), bytes.end());
    });
  }
  // Everything made from an image (the upload forgotten).
  void forget(const std::string& id) {
    const std::string prefix = id + "/";
    auto erase = [&](auto& cache) {
      for (auto it = cache.lower_bound(prefix); it != cache.end() && it->first.starts_with(prefix);) it = cache.erase(it);
    };
    erase(inputs), erase(pngs), erase(targets);
  }
};

Explorer::Explorer(const std::vector<ModelFile>& files, const std::string& assets, Limits limits)
    : limits_(limits), images_(std::make_unique<Images>()), work_gate_(limits.queue, limits.queue_wait) {
  for (const ModelFile& f : files) {
    auto s = std::make_unique<Served>();
    s->id = f.id, s->path = f.path;
    s->model = models::load_model(f.path);
    for (Tensor p : s->model->parameters()) p.requires_grad_(false);  // the page never trains
    s->detector = models::is_detector(*s->model);
    s->gate = std::make_unique<Gate>(limits.queue, limits.queue_wait);
    const preprocess::InputSpec& in = s->model->info().input;
    {
      NoGrad no_grad;  // one pass fills in every layer's shape
      s->model->forward(Tensor::zeros({1, in.channels, in.height, in.width}));
    }
    auto* graph = dynamic_cast<models::Graph*>(s->model.get());
    for (const std::string& name : s->model->layer_names()) {
      const Tensor a = s->model->activation(name);
      if (!a.defined()) continue;
      s->layers.push_back({name, graph ? graph->kind_of(graph->node_index(name)) : "", a.shape()});
    }
    if (s->detector) s->heads = models::detection_heads(*graph);
    models_.push_back(std::move(s));
  }
  if (models_.empty()) throw Error("tgc serve: no model to serve");
  // The shipped images, by exact names (a file missing from the install is left out).
  struct Shipped {
    const char *id, *name, *file, *group;
  };
  const Shipped shipped[] = {
      {"chelsea", "chelsea (cat)", "chelsea.png", "photo"},
      {"coffee", "coffee (cup)", "coffee.png", "photo"},
      {"fashion-0", "T-shirt/top", "fashion-png/0_tshirt.png", "fashion"},
      {"fashion-1", "Trouser", "fashion-png/1_trouser.png", "fashion"},
      {"fashion-2", "Pullover", "fashion-png/2_pullover.png", "fashion"},
      {"fashion-3", "Dress", "fashion-png/3_dress.png", "fashion"},
      {"fashion-4", "Coat", "fashion-png/4_coat.png", "fashion"},
      {"fashion-5", "Sandal", "fashion-png/5_sandal.png", "fashion"},
      {"fashion-6", "Shirt", "fashion-png/6_shirt.png", "fashion"},
      {"fashion-7", "Sneaker", "fashion-png/7_sneaker.png", "fashion"},
      {"fashion-8", "Bag", "fashion-png/8_bag.png", "fashion"},
      {"fashion-9", "Ankle boot", "fashion-png/9_ankle_boot.png", "fashion"},
  };
  for (const Shipped& s : shipped) {
    const std::string path = assets + "/" + s.file;
    if (!io::file_exists(path)) continue;
    preprocess::Photo photo = preprocess::load_photo(path);  // the lessons' and tgc's intake
    const std::vector<uint8_t> png = io::encode_png(photo.image, s.id, io::PngEffort::Fast);
    images_->shipped.push_back({s.id, s.name, s.group, std::make_shared<const io::Image>(std::move(photo.image)), photo.notes,
                                std::make_shared<const std::string>(png.begin(), png.end())});
  }
}

Explorer::~Explorer() = default;

int Explorer::refused() const {
  int n = 0;
  for (const auto& s : models_) n += s->gate->refused();
  return n + work_gate_.refused();
}

namespace {

// The model asked for (the first one by default).
Explorer::Served& find_model(const std::vector<std::unique_ptr<Explorer::Served>>& models, const Request& r,
                             const std::string& route) {
  const std::string* id = find_param(r, "model");
  if (!id) return *models.front();
  std::string known;
  for (const auto& s : models) {
    if (s->id == *id) return *s;
    known += (known.empty() ? "" : ", ") + s->id;
  }
  throw Refusal(400, fmt::format("{}: unknown model '{}' (served: {})", route, printable(id->substr(0, 40)), known));
}

json layer_json(const Layer& l) { return {{"name", l.name}, {"kind", l.kind}, {"shape", l.shape}}; }

// A class given as a number or a label.
int64_t class_param(const nn::Model& model, const std::string& route, const std::string& text) {
  try {
    const int64_t c = model.class_index(text);
    if (c == model.info().background) throw Refusal(400, fmt::format("{}: class {} is the background", route, c));
    return c;
  } catch (const Refusal&) {
    throw;
  } catch (const Error& e) {
    throw Refusal(400, fmt::format("{}: target: {}", route, e.what()));
  }
}

// neuron_layer, neuron_channel[, neuron_y, neuron_x], checked against the layer's shape.
std::optional<explain::Neuron> neuron_param(const Explorer::Served& s, const Request& r, const std::string& route) {
  const std::string* layer = find_param(r, "neuron_layer");
  if (!layer) return std::nullopt;
  const Layer* found = nullptr;
  for (const Layer& l : s.layers)
    if (l.name == *layer) found = &l;
  if (!found) throw Refusal(400, fmt::format("{}: neuron_layer '{}' is not a layer of {}", route, printable(layer->substr(0, 80)), s.id));
  explain::Neuron n{.layer = *layer};
  const Shape& shape = found->shape;
  n.channel = whole_param(r, route, "neuron_channel", 0, shape.size() > 1 ? shape[1] - 1 : 0, 0);
  if (shape.size() == 4 && (find_param(r, "neuron_y") || find_param(r, "neuron_x"))) {
    n.y = whole_param(r, route, "neuron_y", 0, shape[2] - 1, 0);
    n.x = whole_param(r, route, "neuron_x", 0, shape[3] - 1, 0);
  }
  return n;
}

std::string neuron_str(const explain::Neuron& n) {
  return fmt::format("{}:{}{}", n.layer, n.channel, n.y >= 0 ? fmt::format(":{}:{}", n.y, n.x) : "");
}

// What a map looks like on the page: viz::display_map, the display `tgc explain --png` draws (colour channels
// reduced as the method's policy says, gradients clipped at the 99th percentile of |a|, Grad-CAM
// min to max), upsampled to the input, with its colour bar's words.
struct Display {
  io::Image heat;
  std::string low, middle, high;
  float clip = 0;       // 0: not clipped
  Tensor magnitude;     // [H, W] at the input: |map|, for the share inside a box
};
Display display(const explain::Method& method, const Tensor& attribution, const preprocess::InputSpec& spec) {
  const viz::MapDisplay shown = viz::display_map(attribution, viz::show_for(method.policy));
  Display d;
  Tensor unit = shown.unit;
  if (shown.show == viz::Show::MinMax) {
    d.low = fmt::format("{:.3g} (min)", shown.low), d.high = fmt::format("{:.3g} (max)", shown.high);
  } else if (shown.show == viz::Show::Magnitude) {
    d.clip = shown.high;
    d.low = "0", d.high = fmt::format("{:.2g} = 99th percentile of max |a| over RGB, and above", d.clip);
  } else {
    d.clip = shown.high;
    d.low = fmt::format("-{:.2g} and below", d.clip), d.middle = "0",
    d.high = fmt::format("+{:.2g} = 99th percentile of |a|, and above", d.clip);
  }
  // |a| for the share inside a box: the magnitude over colour channels, or the signed sum's.
  Tensor map = attribution.ndim() == 2 ? reshape(attribution, {1, attribution.dim(0), attribution.dim(1)}) : attribution;
  if (map.dim(0) > 1) map = method.policy == viz::Normalize::MaxAbs ? tg::max(tg::abs(map), {0}, true) : sum(map, {0}, true);
  Tensor magnitude = tg::abs(map);
  if (unit.dim(1) != spec.height || unit.dim(2) != spec.width) {
    unit = upsample(unit, spec.height, spec.width, Interpolation::Bilinear);
    magnitude = upsample(magnitude, spec.height, spec.width, Interpolation::Bilinear);
  }
  const int scale = static_cast<int>(std::max<int64_t>(1, 224 / std::max(spec.height, spec.width)));
  d.heat = viz::scale_nearest(viz::colorize(unit, method.colormap), scale);
  d.magnitude = reshape(magnitude, {spec.height, spec.width});
  return d;
}

// The share of |map| whose pixel centres lie inside the box (fractions of the input).
double share_inside(const Tensor& magnitude, const models::Box& b) {
  const int64_t h = magnitude.dim(0), w = magnitude.dim(1);
  double inside = 0, total = 0;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const double v = magnitude.data()[y * w + x];
      const double cy = (static_cast<double>(y) + 0.5) / static_cast<double>(h), cx = (static_cast<double>(x) + 0.5) / static_cast<double>(w);
      total += v;
      if (cx >= b.x0 && cx <= b.x1 && cy >= b.y0 && cy <= b.y1) inside += v;
    }
  return total > 0 ? inside / total : 0.0;
}

// The page's caps on a map's cost (the method table's ranges allow hours of work).
void check_cost(const explain::Method& method, const explain::Settings& given, const preprocess::InputSpec& input,
                const Limits& limits) {
  explain::Settings settings = explain::defaults(method);
  for (const auto& [name, value] : given) settings[name] = value;
  for (const char* passes : {"samples", "steps"})
    if (settings.count(passes) && settings[passes] > limits.max_passes)
      throw Refusal(400, fmt::format("explain: {}: {} = {} is above the page's limit of {} (tgc explain has none)", method.name,
                                     passes, settings[passes], limits.max_passes));
  if (settings.count("stride")) {
    const auto windows = [&](double stride) {
      return std::ceil(static_cast<double>(input.height) / stride) * std::ceil(static_cast<double>(input.width) / stride);
    };
    if (settings["stride"] == 0) {  // the method's default: half the window (its own default scaled to the input)
      const double window = settings["window"] > 0 ? settings["window"]
                                                   : static_cast<double>(explain::occlusion_window(input.height, input.width).window);
      settings["stride"] = std::max(1.0, std::floor(window / 2));
    }
    if (windows(settings["stride"]) > limits.max_windows) {
      double smallest = settings["stride"];
      while (windows(smallest) > limits.max_windows) ++smallest;
      throw Refusal(400, fmt::format("explain: {}: stride {} makes {} windows on a {}x{} input, above the page's limit of {}; "
                                     "use a stride of at least {}",
                                     method.name, settings["stride"], windows(settings["stride"]), input.height, input.width,
                                     limits.max_windows, smallest));
    }
  }
}

Reply json_reply(const json& j) { return {.body = j.dump()}; }

// A class or detection target from a forward pass without gradients, as `tgc explain` resolves
// it: the class given or predicted; a detector's best detection of that class, or `box` K, the
// K-th detection tgc predict lists (and Grad-CAM's layer: the map that detection's head reads).
Resolved resolve_target(Explorer::Served& s, const Tensor& input, const io::Image& image, const std::string* box,
                        int64_t class_given) {
  nn::Model& model = *s.model;
  const Tensor logits = explain::scores(model, input);
  const int64_t predicted = model.predict(model.probabilities(logits))[0];
  Resolved out;
  if (s.detector) {
    models::Detection d;
    if (box) {
      const std::vector<models::Detection> shown = models::detections(s.graph(), image.width, image.height);
      const auto number = static_cast<int64_t>(number_param("explain", "box", *box, 1, std::max<double>(1, static_cast<double>(shown.size())), true));
      if (shown.empty()) throw Refusal(400, "explain: box: there is no detection with p >= 0.5 on this image");
      d = shown[static_cast<size_t>(number - 1)];
    } else {
      d = models::best_detection(s.graph(), class_given >= 0 ? class_given : predicted, image.width, image.height);
    }
    out.target = explain::Target::of_detections({d.class_index}, {d.anchor});
    out.box = d.box;
    if (!s.heads.empty()) out.layer = s.heads[std::min<size_t>(d.head, 1)].layer;
    out.target_json = {{"kind", "detection"}, {"class", d.class_index}, {"label", d.label}, {"p", d.score},
                       {"anchor", d.anchor}, {"grid", d.grid}, {"box", box_json(d.box)}};
  } else {
    const int64_t c = class_given >= 0 ? class_given : predicted;
    out.target = explain::Target::of_classes({c});
    out.target_json = {{"kind", "class"}, {"class", c}, {"label", model.info().classes[c]},
                       {"p", explain::target_values(model, logits, out.target, explain::Measure::Probability)[0]}};
  }
  return out;
}

}  // namespace

// Each request is whole in itself: what its passes left on this thread's tape (a detector's box
// branch, never walked back) goes when it ends. Without this the server's threads each hold up to a
// thousand stale entries and their tensors: hundreds of MB.
struct ClearTapeAtExit {
  ~ClearTapeAtExit() { tape().clear(); }
};

Reply Explorer::handle(const std::string& route_name, const Request& request) {
  const ClearTapeAtExit clear_tape;
  try {
    return route(route_name, request);
  } catch (const Refusal& r) {
    return {.status = r.status, .body = json{{"error", printable(r.what())}}.dump(), .retry_after = r.retry_after};
  } catch (const std::bad_alloc&) {
    return {.status = 507, .body = json{{"error", route_name + ": out of memory"}}.dump()};
  } catch (const std::exception& e) {
    // The library's errors name what was wrong with the input (a parameter out of range, a layer
    // that is not a feature map): the request's fault, one line.
    return {.status = 400, .body = json{{"error", printable(e.what())}}.dump()};
  }
}

Reply Explorer::route(const std::string& route, const Request& r) {
  if (route == "models") {
    json all = json::array();
    for (const auto& s : models_) {
      const nn::ModelInfo& info = s->model->info();
      json layers = json::array();
      for (const Layer& l : s->layers) layers.push_back(layer_json(l));
      json classes = json::array();
      for (size_t c = 0; c < info.classes.size(); ++c)
        classes.push_back({{"index", c}, {"label", info.classes[c]}, {"background", static_cast<int64_t>(c) == info.background}});
      json heads = json::array();
      for (const models::Head& h : s->heads) heads.push_back({{"grid", h.grid}, {"layer", h.layer}});
      all.push_back({{"id", s->id},
                     {"arch", info.arch},
                     {"detector", s->detector},
                     {"input", {info.input.channels, info.input.height, info.input.width}},
                     {"cam_layer", info.cam_layer},
                     {"classes", classes},
                     {"layers", layers},
                     {"heads", heads}});
    }
    return json_reply(all);
  }
  if (route == "methods") {
    json all = json::array();
    for (const explain::Method& m : explain::methods()) {
      json parameters = json::array();
      for (const explain::Parameter& p : m.parameters)
        parameters.push_back({{"name", p.name}, {"default", p.default_value}, {"min", p.min}, {"max", p.max}, {"help", p.help},
                              {"whole", p.kind == explain::Parameter::Kind::Whole}});
      all.push_back({{"name", m.name},
                     {"description", m.description},
                     {"targets", {{"class", m.targets.classes}, {"neuron", m.targets.neurons}, {"detection", m.targets.detections}}},
                     {"parameters", parameters},
                     {"uses_layer", m.layer == explain::UsesLayer::FeatureMap},
                     {"rule", explain::rule_words(m.rule)}});  // "as given" (the menu's), "its own", "no gradient"
    }
    return json_reply(all);
  }
  if (route == "limits") {
    return json_reply({{"upload_bytes", limits_.upload_bytes}, {"upload_pixels", limits_.upload_pixels},
                       {"max_passes", limits_.max_passes}, {"max_windows", limits_.max_windows}, {"max_steps", limits_.max_steps}});
  }
  if (route == "rules") {
    json all = json::array();
    for (const NamedRule& rule : registered_rules()) all.push_back(rule.name);
    return json_reply(all);
  }
  if (route == "images") {
    json all = json::array();
    std::lock_guard<std::mutex> lock(images_->mutex);
    for (const Images::Entry& e : images_->shipped)
      all.push_back({{"id", e.id}, {"name", e.name}, {"group", e.group}, {"width", e.image->width}, {"height", e.image->height}});
    return json_reply(all);
  }
  if (route == "image") {
    const Images::Entry e = images_->find(need_param(r, route, "image"));
    return {.content_type = "image/png", .body = *images_->png(e, work_gate_)};
  }
  if (route == "upload") {
    if (r.body.empty()) throw Refusal(400, "upload: the body is empty (send the image's bytes)");
    if (r.body.size() > limits_.upload_bytes)
      throw Refusal(413, fmt::format("upload: {} bytes; the limit is {} bytes", r.body.size(), limits_.upload_bytes));
    // The intake `tgc explain --image` uses, fitted to the model the page shows.
    const Served& s = find_model(models_, r, route);
    const preprocess::Fit fit = [&] {
      try {
        return preprocess::parse_fit(find_param(r, "fit") ? *find_param(r, "fit") : "stretch");
      } catch (const Error& err) {
        throw Refusal(400, std::string("upload: ") + err.what());
      }
    }();
    preprocess::Intake intake;
    {
      Gate::Lease lease = work_gate_.enter("upload");  // one decode at a time bounds the memory
      preprocess::Photo photo;
      try {
        photo = preprocess::decode_photo(std::vector<uint8_t>(r.body.begin(), r.body.end()), "upload");
      } catch (const std::bad_alloc&) {
        throw Refusal(413, "upload: the image is too large to decode");
      } catch (const Error& e) {
        throw Refusal(415, e.what());
      }
      const int64_t pixels = int64_t{photo.stored_width} * photo.stored_height;
      if (pixels > limits_.upload_pixels)
        throw Refusal(413, fmt::format("upload: {}x{} = {} pixels; the limit is {}", photo.stored_width, photo.stored_height,
                                       pixels, limits_.upload_pixels));
      try {
        intake = preprocess::take_photo(std::move(photo), s.model->info().input, fit);
      } catch (const Error& e) {
        throw Refusal(413, std::string("upload: ") + e.what());  // padded beyond the pixel cap
      }
    }
    std::lock_guard<std::mutex> lock(images_->mutex);
    Images::Entry e{fmt::format("upload-{}", images_->next_upload++), "your image", "upload",
                    std::make_shared<const io::Image>(std::move(intake.image)), intake.notes, nullptr};
    images_->uploads.push_back(e);
    images_->inputs[e.id + "/" + s.id] = intake.input;
    while (images_->uploads.size() > limits_.uploads_kept) {  // forget the oldest, and what was made from it
      images_->forget(images_->uploads.front().id);
      images_->uploads.pop_front();
    }
    return json_reply({{"id", e.id}, {"name", e.name}, {"group", e.group}, {"width", e.image->width}, {"height", e.image->height},
                       {"fit", preprocess::fit_name(fit)}, {"notes", e.notes}});
  }

  // ---- the model's answers: one at a time per model ----
  Served& s = find_model(models_, r, route);
  nn::Model& model = *s.model;
  const nn::ModelInfo& info = model.info();

  if (route == "predict") {
    const Images::Entry e = images_->find(need_param(r, route, "image"));
    const Tensor input = images_->input(e, s, work_gate_);
    Gate::Lease lease = s.gate->enter(route);
    const auto start = Clock::now();
    json out{{"model", s.id}, {"image", e.id}, {"detector", s.detector}};
    if (s.detector) {
      const std::vector<models::Detection> found =
          models::detect(s.graph(), input, e.image->width, e.image->height, {.max_detections = 20});
      json list = json::array();
      for (size_t k = 0; k < found.size(); ++k) {
        const models::Detection& d = found[k];
        list.push_back({{"box_number", k + 1}, {"class", d.class_index}, {"label", d.label}, {"score", d.score},
                        {"anchor", d.anchor}, {"grid", d.grid}, {"layer", d.layer}, {"box", box_json(d.box)},
                        {"pixels", box_json(d.pixels)}});
      }
      out["detections"] = list;
    } else {
      const Tensor p = model.probabilities(explain::scores(model, input));
      std::vector<int64_t> order;
      for (int64_t c = 0; c < p.dim(1); ++c)
        if (c != info.background) order.push_back(c);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p.data()[a] > p.data()[b]; });
      json top = json::array();
      for (size_t k = 0; k < std::min<size_t>(5, order.size()); ++k)
        top.push_back({{"class", order[k]}, {"label", info.classes[order[k]]}, {"p", p.data()[order[k]]}});
      out["top"] = top;
    }
    out["ms"] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return json_reply(out);
  }

  if (route == "channels") {
    const Images::Entry e = images_->find(need_param(r, route, "image"));
    const std::string& name = need_param(r, route, "layer");
    const Layer* layer = nullptr;
    for (const Layer& l : s.layers)
      if (l.name == name) layer = &l;
    if (!layer) throw Refusal(400, fmt::format("channels: '{}' is not a layer of {}", printable(name.substr(0, 80)), s.id));
    const Tensor input = images_->input(e, s, work_gate_);
    Gate::Lease lease = s.gate->enter(route);
    const auto start = Clock::now();
    Tensor a;
    {
      NoGrad no_grad;
      a = model.forward_until(input, name);
    }
    // [1, C, H, W], or a flat layer's [1, F] as F channels of one pixel.
    const int64_t channels = a.dim(1), height = a.ndim() == 4 ? a.dim(2) : 1, width = a.ndim() == 4 ? a.dim(3) : 1;
    const int64_t shown = std::min<int64_t>(channels, 2048);
    const auto [lowest, highest] = std::minmax_element(a.data(), a.data() + a.numel());
    const float low = *lowest, range = std::max(*highest - *lowest, 1e-12f);
    // Tiles at least 24 pixels and at most about 96 across: small maps repeated, large ones sampled.
    const int64_t side = std::max(height, width);
    const int64_t tile = side < 24 ? side * ((24 + side - 1) / side) : std::min<int64_t>(side, 96);
    const int64_t tile_h = std::max<int64_t>(1, tile * height / side), tile_w = std::max<int64_t>(1, tile * width / side);
    const int64_t columns = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(shown)))));
    const int64_t rows = (shown + columns - 1) / columns, spacing = 2;
    Tensor unit = Tensor::zeros({1, rows * (tile_h + spacing), columns * (tile_w + spacing)});
    json channel_max = json::array();
    int64_t strongest = 0, strongest_at = 0;  // the channel and pixel with the highest value
    for (int64_t c = 0; c < shown; ++c) {
      const float* plane = a.data() + c * height * width;
      const float* peak = std::max_element(plane, plane + height * width);
      channel_max.push_back(*peak);
      if (*peak > channel_max[static_cast<size_t>(strongest)].get<float>()) strongest = c, strongest_at = peak - plane;
      const int64_t top = (c / columns) * (tile_h + spacing), left = (c % columns) * (tile_w + spacing);
      for (int64_t y = 0; y < tile_h; ++y)
        for (int64_t x = 0; x < tile_w; ++x)
          unit.data()[(top + y) * unit.dim(2) + left + x] = (plane[(y * height / tile_h) * width + x * width / tile_w] - low) / range;
    }
    io::Image montage = viz::colorize(unit, viz::Colormap::Viridis);
    for (int64_t y = 0; y < montage.height; ++y)  // white gaps between tiles
      for (int64_t x = 0; x < montage.width; ++x)
        if (y % (tile_h + spacing) >= tile_h || x % (tile_w + spacing) >= tile_w ||
            (y / (tile_h + spacing)) * columns + x / (tile_w + spacing) >= shown)
          for (int ch = 0; ch < montage.channels; ++ch) montage.at(static_cast<int>(y), static_cast<int>(x), ch) = 255;
    return json_reply({{"layer", name}, {"shape", a.shape()}, {"channels", channels}, {"shown", shown}, {"height", height},
                       {"width", width}, {"tile_width", tile_w}, {"tile_height", tile_h}, {"spacing", spacing},
                       {"columns", columns}, {"min", *lowest}, {"max", *highest}, {"channel_max", channel_max},
                       {"strongest", {{"channel", strongest}, {"y", strongest_at / width}, {"x", strongest_at % width}}},
                       {"png", png_data_url(montage, "channels")},
                       {"ms", std::chrono::duration<double, std::milli>(Clock::now() - start).count()}});
  }

  if (route == "explain") {
    const Images::Entry e = images_->find(need_param(r, route, "image"));
    const std::string& method_name = need_param(r, route, "method");
    const explain::Method* found = nullptr;
    std::string names;
    for (const explain::Method& m : explain::methods()) {
      if (m.name == method_name) found = &m;
      names += (names.empty() ? "" : ", ") + m.name;
    }
    if (!found) throw Refusal(400, fmt::format("explain: unknown method '{}' (known: {})", printable(method_name.substr(0, 40)), names));
    const explain::Method& method = *found;
    const NamedRule rule = [&] {
      try {
        return find_rule(find_param(r, "rule") ? *find_param(r, "rule") : "vanilla");
      } catch (const Error& err) {
        throw Refusal(400, std::string("explain: ") + err.what());
      }
    }();
    explain::Settings settings;
    for (const explain::Parameter& p : method.parameters)
      if (const std::string* v = find_param(r, p.name))
        settings[p.name] = number_param("explain: " + method.name, p.name, *v, p.min, p.max, p.kind == explain::Parameter::Kind::Whole);
    check_cost(method, settings, info.input, limits_);
    const std::optional<explain::Neuron> neuron = neuron_param(s, r, route);
    if (neuron && !method.targets.accepts(explain::Target::Kind::Neuron))
      throw Refusal(400, fmt::format("explain: {} explains targets of kind {}, not a neuron", method.name, method.targets.str()));
    if (find_param(r, "box") && (!s.detector || neuron || find_param(r, "target")))
      throw Refusal(400, "explain: box is for a detector, instead of target or a neuron");
    std::string layer = find_param(r, "layer") ? *find_param(r, "layer") : "";
    if (!layer.empty() && std::none_of(s.layers.begin(), s.layers.end(), [&](const Layer& l) { return l.name == layer; }))
      throw Refusal(400, fmt::format("explain: layer '{}' is not a layer of {}", printable(layer.substr(0, 80)), s.id));
    const std::string format = find_param(r, "format") ? *find_param(r, "format") : "json";
    if (format != "json" && format != "npy" && format != "png")
      throw Refusal(400, fmt::format("explain: format '{}' is not one of json, npy, png", printable(format.substr(0, 20))));
    const int64_t class_given = find_param(r, "target") ? class_param(model, route, *find_param(r, "target")) : -1;
    const Tensor input = images_->input(e, s, work_gate_);

    Gate::Lease lease = s.gate->enter(route);
    const auto start = Clock::now();
    // The target, as `tgc explain` resolves it: a neuron as given; a class or detection from a
    // forward pass, done once per image, model and what was asked.
    const std::string* box_asked = find_param(r, "box");
    const Resolved resolved =
        neuron ? Resolved{.target = explain::Target::of_neuron(*neuron),
                          .target_json = {{"kind", "neuron"}, {"neuron", neuron_str(*neuron)}}}
               : images_->kept(images_->targets,
                               fmt::format("{}/{}/{}", e.id, s.id, box_asked ? "box=" + *box_asked : fmt::format("class={}", class_given)),
                               [&] { return resolve_target(s, input, *e.image, box_asked, class_given); });
    const explain::Target& target = resolved.target;
    const std::optional<models::Box>& box = resolved.box;
    if (layer.empty()) layer = resolved.layer;
    json used_settings = json::object();  // every parameter the method used, given or default
    for (const auto& [name, value] : explain::defaults(method)) used_settings[name] = settings.count(name) ? settings.at(name) : value;
    const bool ruled = rule.name != "vanilla" && method.rule == explain::RectifierRule::AsGiven;
    Tensor attribution;
    if (ruled) {
      RuledModel with_rule(model, rule);
      attribution = explain::run(method, with_rule, input, target, settings, layer);
    } else {
      attribution = explain::run(method, model, input, target, settings, layer);
    }
    attribution = reshape(attribution, Shape(attribution.shape().begin() + 1, attribution.shape().end()));
    if (format == "npy") {
      const std::vector<uint8_t> npy = io::encode_npy(attribution);
      return {.content_type = "application/octet-stream", .body = std::string(npy.begin(), npy.end())};
    }
    const Display shown = display(method, attribution, info.input);
    if (format == "png") {
      const std::vector<uint8_t> png = io::encode_png(shown.heat, method.name);
      return {.content_type = "image/png", .body = std::string(png.begin(), png.end())};
    }
    const auto [lowest, highest] = std::minmax_element(attribution.data(), attribution.data() + attribution.numel());
    json out{{"method", method.name},
             {"model", s.id},
             {"image", e.id},
             {"target", resolved.target_json},
             {"rule", {{"name", rule.name}, {"applied", ruled || (rule.name == "vanilla" && method.rule == explain::RectifierRule::AsGiven)},
                       {"method", explain::rule_words(method.rule)}}},
             {"settings", used_settings},
             {"shape", attribution.shape()},
             {"min", *lowest},
             {"max", *highest},
             {"clip", shown.clip > 0 ? json(shown.clip) : json(nullptr)},
             {"colormap", method.colormap == viz::Colormap::Diverging ? "diverging" : method.colormap == viz::Colormap::Viridis ? "viridis" : "gray"},
             {"bar", {{"low", shown.low}, {"middle", shown.middle}, {"high", shown.high}}},
             {"share_in_box", box ? json(share_inside(shown.magnitude, *box)) : json(nullptr)},
             {"png", png_data_url(shown.heat, method.name)}};
    if (method.layer == explain::UsesLayer::FeatureMap) out["layer"] = layer.empty() ? info.cam_layer : layer;
    out["ms"] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return json_reply(out);
  }
  throw Refusal(404, fmt::format("no route '{}'", printable(route.substr(0, 40))));
}

// ---- streamed climbs: a visualization, an inversion ----
namespace {

// What a streamed climb sends: each frame (which throws Cancelled when the client has gone), and
// `tick` after each step (which throws Cancelled past the time limit, saying so).
class Streamed {
 public:
  // `value_name`: what each step's number is called in the lines ("objective", "code_error").
  Streamed(const std::function<bool(const std::string&)>& send, std::chrono::milliseconds limit, std::string value_name)
      : send_(send), limit_(limit), start_(Clock::now()), value_name_(std::move(value_name)) {}
  void frame(const json& line) {
    if (!send_(line.dump() + "\n")) throw Cancelled{};
  }
  void tick(int step, float value) {
    last = {{"steps", step}, {value_name_, value}};
    if (Clock::now() - start_ > limit_) {
      stopped = "time limit";
      throw Cancelled{};
    }
  }
  // Runs `climb`, then sends its done line (or, past the time limit, the last step's), or the error.
  void run(const std::function<json()>& climb) {
    json done;
    try {
      done = climb();
    } catch (const Cancelled&) {
      if (stopped.empty()) return;  // the client went away: nobody to tell
      done = about;
      done.update(last);
    } catch (const std::exception& e) {
      send_(json{{"error", printable(e.what())}}.dump() + "\n");
      return;
    }
    done["done"] = true;
    done["stopped"] = stopped.empty() ? json(nullptr) : json(stopped);
    send_(done.dump() + "\n");
  }
  json about = json::object();  // what every line says (the target, the steps)
  json last = json::object();   // the last step's number
  std::string stopped;

 private:
  const std::function<bool(const std::string&)>& send_;
  std::chrono::milliseconds limit_;
  Clock::time_point start_;
  std::string value_name_;
};

// The page's default for a detector's class: fewer steps than the lessons' 256, so a
// visualization ends within the time limit on a laptop (the page says so).
constexpr int kPageDetectorSteps = 128;

// An image of the input's range as the page shows it: 8-bit pixels, a 28x28 input enlarged.
io::Image frame_picture(const Tensor& x, const preprocess::InputSpec& spec) {
  const int scale = static_cast<int>(std::max<int64_t>(1, 224 / std::max(spec.height, spec.width)));
  return viz::scale_nearest(preprocess::input_to_image(slice(x, 0, 0, 1), spec), scale);
}

// A reading's fields, and its box drawn on the picture.
json reading_json(const explain::Reading& r, io::Image& picture) {
  json out{{"reading", explain::reading_words(r)}, {"value", r.value}};
  if (r.p >= 0) out["p"] = r.p;
  if (r.box) {
    const float w = static_cast<float>(picture.width), h = static_cast<float>(picture.height);
    viz::draw_box(picture, r.box->x0 * w, r.box->y0 * h, r.box->x1 * w, r.box->y1 * h, {230, 20, 20});
    out["box"] = box_json(*r.box);
    out["anchor"] = r.anchor;
  }
  return out;
}

// The model's lease is held until the climb ends, however it ends.
struct HeldLease {
  std::shared_ptr<Gate::Lease>& held;
  ~HeldLease() { held.reset(); }
};

}  // namespace

// A visualization: explain::plan_visualization's objective and recipe (the ones lesson 9 and
// `tgc visualize` use), frame by frame.
Explorer::Stream Explorer::visualize_stream(const Request& r) {
  const std::string route = "visualize";
  Served& s = find_model(models_, r, route);
  nn::Model& model = *s.model;
  explain::VisualizationTarget target;
  target.neuron = neuron_param(s, r, route);
  if (!target.neuron) target.class_index = class_param(model, route, need_param(r, route, "target"));
  const int default_steps = s.detector && !target.neuron ? kPageDetectorSteps : 0;  // 0: the recipe's
  const int steps = static_cast<int>(whole_param(r, route, "steps", 1, limits_.max_steps, 0));
  const int every = static_cast<int>(whole_param(r, route, "every", 1, limits_.max_steps, s.detector ? 4 : 5));
  const uint64_t seed = static_cast<uint64_t>(whole_param(r, route, "seed", 0, int64_t{1} << 32, 0));
  auto lease = std::make_shared<Gate::Lease>(s.gate->enter(route));
  explain::Visualization plan;
  try {
    plan = explain::plan_visualization(model, target, seed);
  } catch (const Error& e) {
    throw Refusal(400, fmt::format("{}: {}", route, e.what()));
  }
  const int climb_steps = steps > 0 ? steps : default_steps > 0 ? std::min(default_steps, plan.default_steps) : plan.default_steps;
  const std::chrono::milliseconds limit = limits_.time_limit;
  return {[&model, plan, climb_steps, every, lease, limit](const std::function<bool(const std::string&)>& send) mutable {
    const HeldLease release{lease};
    const ClearTapeAtExit clear_tape;
    const preprocess::InputSpec& spec = model.info().input;
    Streamed streamed(send, limit, "objective");
    const json about{{"what", plan.what}, {"recipe", plan.recipe_words}, {"steps", climb_steps},
                     {"recipe_steps", plan.default_steps}};
    streamed.about = about;
    streamed.run([&] {
      float objective = 0;
      const Tensor x = explain::climb(
          plan, {.steps = climb_steps,
                 .on_step = [&](int step, float value) { objective = value, streamed.tick(step, value); },
                 .wants_image = [&](int step) { return step % every == 0 || step == climb_steps; },
                 .on_image = [&](int step, const Tensor& image) {
                   io::Image picture = frame_picture(image, spec);
                   json line = reading_json(explain::read_target(model, plan, explain::as_saved(image, spec)), picture);
                   line.update(about);
                   line["step"] = step, line["objective"] = objective, line["png"] = png_data_url(picture, "frame");
                   streamed.frame(line);
                 }});
      io::Image picture = frame_picture(x, spec);  // what it reached, on the 8-bit image as tgc visualize says
      json done = reading_json(explain::read_target(model, plan, explain::as_saved(x, spec)), picture);
      done.update(about);
      done["objective"] = objective;
      return done;
    });
  }};
}

// An inversion: explain::invert (lesson 10's recipe, the one `tgc invert` uses) from one start,
// frame by frame, ending with the relative code error of the 8-bit image and a gray image's.
Explorer::Stream Explorer::invert_stream(const Request& r) {
  const std::string route = "invert";
  Served& s = find_model(models_, r, route);
  nn::Model& model = *s.model;
  const std::string& layer = need_param(r, route, "layer");
  if (std::none_of(s.layers.begin(), s.layers.end(), [&](const Layer& l) { return l.name == layer; }))
    throw Refusal(400, fmt::format("{}: layer '{}' is not a layer of {}", route, printable(layer.substr(0, 80)), s.id));
  const Images::Entry image = images_->find(need_param(r, route, "image"));
  const Tensor input = images_->input(image, s, work_gate_);
  const int steps =
      static_cast<int>(whole_param(r, route, "steps", 1, limits_.max_steps, explain::default_inversion_steps(model)));
  const int every = static_cast<int>(whole_param(r, route, "every", 1, limits_.max_steps, s.detector ? 4 : 10));
  const uint64_t seed = static_cast<uint64_t>(whole_param(r, route, "seed", 0, int64_t{1} << 32, 0));
  auto lease = std::make_shared<Gate::Lease>(s.gate->enter(route));
  const std::chrono::milliseconds limit = limits_.time_limit;
  return {[&model, layer, input, steps, every, seed, lease, limit](const std::function<bool(const std::string&)>& send) mutable {
    const HeldLease release{lease};
    const ClearTapeAtExit clear_tape;
    const preprocess::InputSpec& spec = model.info().input;
    Streamed streamed(send, limit, "code_error");
    streamed.run([&] {
      Tensor code;
      {
        NoGrad no_grad;
        code = model.forward_until(input, layer).clone();
      }
      const double gray_error = explain::code_error(model, layer, code, Tensor::zeros(input.shape()));
      const json about{{"what", fmt::format("the code at {} ({} numbers)", layer, code.numel())}, {"layer", layer},
                       {"steps", steps}, {"gray_error", gray_error}};
      streamed.about = about;
      float error = 0;
      const std::vector<Tensor> found = explain::invert(
          model, layer, input,
          {.starts = 1, .steps = steps, .seed = seed,
           .on_step = [&](int, int step, float value) { error = value, streamed.tick(step, value); },
           .wants_image = [&](int step) { return step % every == 0 || step == steps; },
           .on_image = [&](int, int step, const Tensor& x) {
             json line = about;
             line["step"] = step, line["code_error"] = error, line["png"] = png_data_url(frame_picture(x, spec), "frame");
             streamed.frame(line);
           }});
      // As lesson 10 and tgc invert measure it: on the image saved as 8-bit pixels.
      json done = about;
      done["code_error"] = explain::code_error(model, layer, code, explain::as_saved(found.front(), spec));
      done["png"] = png_data_url(frame_picture(explain::as_saved(found.front(), spec), spec), "inversion");
      return done;
    });
  }};
}

}  // namespace tg::serve
