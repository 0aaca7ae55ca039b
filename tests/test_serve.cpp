// tgc serve: the explorer's handlers (parameters validated, hostile uploads refused with a 4xx
// while the server keeps answering, the maps equal to what `tgc explain --npy` writes, the rule
// menu), the busy gate, the streamed ascent and its cancellation, and the HTTP side (only the
// page's files served).
#include <doctest/doctest.h>
#include <httplib.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/helpers.h"
#include "tinygrad-cpp/core/ops.h"
#include "tinygrad-cpp/core/rule_registry.h"
#include "tinygrad-cpp/explain/methods.h"
#include "tinygrad-cpp/explain/recipes.h"
#include "tinygrad-cpp/models/models.h"
#include "tinygrad-cpp/serve/server.h"

#ifndef TG_BIN_DIR
#define TG_BIN_DIR "build/bin"
#endif

using namespace tg;
using json = nlohmann::json;
using test::contains;

// The explorer runs every model forward when it starts and serves every method, the rule menu and
// the ascent: in a student copy its tests wait for all the tasks those use.
#define SERVE_TASKS "relu", "linear-backward", "conv2d-backward", "maxpool-backward", "tape-reverse-walk", "saliency", \
                    "smoothgrad", "relu-rules", "relu6-guided", "ascent-step", "gradcam"

namespace {

const char* kFashion = "assets/fashion_cnn.safetensors";
const char* kPhoto = "assets/models/ssd_mobilenetv2_oidv4_fp16.tflite";

// One explorer for the suite (loading the photo model takes a moment).
serve::Explorer& explorer() {
  static serve::Explorer e({{"fashion", kFashion}, {"photo", kPhoto}}, "assets");
  return e;
}

serve::Reply get(const std::string& route, std::map<std::string, std::string> params = {}) {
  return explorer().handle(route, {.params = std::move(params)});
}

std::string error_of(const serve::Reply& r) { return json::parse(r.body).value("error", ""); }

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// `tgc explain ... --npy` run as a student would, its file's bytes.
std::string tgc_npy(const std::string& args) {
  const test::TempDir temp;
  const std::string npy = temp.file("map.npy");
  const std::string command = std::string(TG_BIN_DIR) + "/tgc explain " + args + " --npy " + npy + " >/dev/null 2>&1 </dev/null";
  REQUIRE(std::system(command.c_str()) == 0);
  return slurp(npy);
}

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("the tables: models with their layers, the method table, the rules, the shipped images") {
    NEEDS_TASKS(SERVE_TASKS);
    const json models = json::parse(get("models").body);
    REQUIRE(models.size() == 2);
    CHECK(models[0]["id"] == "fashion");
    CHECK(models[0]["layers"].size() == 10);  // conv1 relu1 pool1 conv2 relu2 pool2 flatten fc1 relu3 fc2
    CHECK(models[0]["layers"][0]["shape"] == json({1, 16, 28, 28}));
    CHECK(models[1]["detector"] == true);
    CHECK(models[1]["heads"].size() == 6);
    const json methods = json::parse(get("methods").body);
    CHECK(methods.size() == explain::methods().size());
    CHECK(methods[0]["name"] == explain::methods()[0].name);
    const json rules = json::parse(get("rules").body);
    CHECK(rules[0] == "vanilla");
    CHECK(rules[1] == "deconvnet");
    CHECK(rules[2] == "guided");
    const json images = json::parse(get("images").body);
    CHECK(images.size() == 12);
    CHECK(images[0]["id"] == "chelsea");
    CHECK(images[0]["width"] == 451);
  }

  TEST_CASE("predict: chelsea's Cat box on the photo model, a trouser's top class on FashionCNN") {
    NEEDS_TASKS(SERVE_TASKS);
    const json cat = json::parse(get("predict", {{"model", "photo"}, {"image", "chelsea"}}).body);
    REQUIRE(cat["detections"].size() >= 1);
    CHECK(cat["detections"][0]["label"] == "Cat");
    CHECK(cat["detections"][0]["score"].get<double>() > 0.8);
    const json trouser = json::parse(get("predict", {{"model", "fashion"}, {"image", "fashion-1"}}).body);
    CHECK(trouser["top"][0]["label"] == "Trouser");
    CHECK(trouser["top"].size() == 5);
  }

  TEST_CASE("parameters are validated: one line of JSON naming the parameter, a 4xx") {
    NEEDS_TASKS(SERVE_TASKS);
    struct Case {
      std::map<std::string, std::string> params;
      int status;
      const char* says;
    };
    const std::vector<Case> cases = {
        {{{"image", "fashion-1"}}, 400, "parameter 'method' is missing"},
        {{{"image", "fashion-1"}, {"method", "magic"}}, 400, "unknown method 'magic'"},
        {{{"image", "nowhere"}, {"method", "saliency"}}, 404, "image 'nowhere' is not known"},
        {{{"model", "resnet"}, {"image", "fashion-1"}, {"method", "saliency"}}, 400, "unknown model 'resnet'"},
        {{{"image", "fashion-1"}, {"method", "smoothgrad"}, {"samples", "many"}}, 400, "samples = 'many' must be a whole number"},
        {{{"image", "fashion-1"}, {"method", "smoothgrad"}, {"samples", "2.5"}}, 400, "must be a whole number"},
        {{{"image", "fashion-1"}, {"method", "smoothgrad"}, {"samples", "1000"}}, 400, "above the page's limit of 64"},
        {{{"image", "fashion-1"}, {"method", "smoothgrad"}, {"noise", "nan"}}, 400, "noise = 'nan' must be a number"},
        {{{"model", "photo"}, {"image", "chelsea"}, {"method", "occlusion"}, {"stride", "5"}}, 400, "use a stride of at least 15"},
        {{{"model", "photo"}, {"image", "chelsea"}, {"method", "occlusion"}, {"window", "8"}}, 400, "stride 4 makes 5625 windows"},
        {{{"image", "fashion-1"}, {"method", "saliency"}, {"rule", "sideways"}}, 400, "unknown rule 'sideways'"},
        {{{"image", "fashion-1"}, {"method", "saliency"}, {"target", "Spaceship"}}, 400, "Spaceship"},
        {{{"image", "fashion-1"}, {"method", "saliency"}, {"box", "1"}}, 400, "box is for a detector"},
        {{{"image", "fashion-1"}, {"method", "gradcam"}, {"layer", "conv9"}}, 400, "layer 'conv9' is not a layer"},
        {{{"image", "fashion-1"}, {"method", "saliency"}, {"neuron_layer", "conv1"}, {"neuron_channel", "16"}}, 400,
         "neuron_channel = '16' must be a whole number in [0, 15]"},
        {{{"image", "fashion-1"}, {"method", "gradcam"}, {"neuron_layer", "conv1"}}, 400, "not a neuron"},
        {{{"image", "fashion-1"}, {"method", "saliency"}, {"format", "gif"}}, 400, "format 'gif'"},
        {{{"model", "photo"}, {"image", "chelsea"}, {"method", "saliency"}, {"box", "9"}}, 400, "box = '9'"},
    };
    for (const Case& c : cases) {
      const serve::Reply r = get("explain", c.params);
      INFO(r.body);
      CHECK(r.status == c.status);
      CHECK(r.content_type == "application/json");
      CHECK(r.body.find('\n') == std::string::npos);
      CHECK(contains(error_of(r), c.says));
    }
    CHECK(get("channels", {{"image", "fashion-1"}, {"layer", "conv7"}}).status == 400);
    CHECK(get("nothing").status == 404);
    CHECK(get("image", {{"image", "../../etc/passwd"}}).status == 404);
  }

  TEST_CASE("every fuzz regression image uploaded gives a 4xx, and the server keeps answering") {
    NEEDS_TASKS(SERVE_TASKS);
    std::vector<std::pair<std::string, std::string>> hostile = {
        {"empty", ""},
        {"a GIF", "GIF89a\x01\x00\x01\x00"},
        {"PNG signature only", "\x89PNG\r\n\x1a\n"},
        {"half of chelsea", slurp("assets/chelsea.png").substr(0, 4000)},
    };
    for (const auto& entry : std::filesystem::directory_iterator("tests/fuzz/regressions/image"))
      hostile.emplace_back(entry.path().filename().string(), slurp(entry.path().string()));
    REQUIRE(hostile.size() >= 10);
    for (const auto& [name, bytes] : hostile) {
      const serve::Reply r = explorer().handle("upload", {.body = bytes});
      INFO(name, ": ", r.body);
      CHECK(r.status >= 400);
      CHECK(r.status < 500);
      CHECK(!error_of(r).empty());
      CHECK(get("predict", {{"model", "fashion"}, {"image", "fashion-1"}}).status == 200);
    }
    // A real PNG is taken, and explained like a shipped one.
    const json ok = json::parse(explorer().handle("upload", {.body = slurp("assets/coffee.png")}).body);
    REQUIRE(ok.contains("id"));
    CHECK(get("predict", {{"model", "photo"}, {"image", ok["id"]}}).status == 200);
    const serve::Reply png = get("image", {{"image", ok["id"]}});
    CHECK(png.content_type == "image/png");
    CHECK(png.body.substr(1, 3) == "PNG");
  }

  TEST_CASE("uploads are capped in bytes and pixels") {
    NEEDS_TASKS(SERVE_TASKS);
    serve::Explorer small({{"fashion", kFashion}}, "assets", {.upload_bytes = 1000, .upload_pixels = 100 * 100});
    const serve::Reply big = small.handle("upload", {.body = slurp("assets/chelsea.png")});
    CHECK(big.status == 413);
    CHECK(contains(error_of(big), "the limit is 1000 bytes"));
    const serve::Reply wide = small.handle("upload", {.body = slurp("assets/fashion-png/1_trouser.png")});
    CHECK(wide.status == 200);  // 28x28
    serve::Explorer few_pixels({{"fashion", kFashion}}, "assets", {.upload_pixels = 100 * 100});
    const serve::Reply photo = few_pixels.handle("upload", {.body = slurp("assets/chelsea.png")});
    CHECK(photo.status == 413);
    CHECK(contains(error_of(photo), "451x300 = 135300 pixels; the limit is 10000"));
  }

  TEST_CASE("a map is the .npy tgc explain writes: FashionCNN's saliency and Grad-CAM, the photo's guided backprop") {
    NEEDS_TASKS(SERVE_TASKS);
    const std::string trouser = "--model assets/fashion_cnn.safetensors --image assets/fashion-png/1_trouser.png";
    for (const char* method : {"saliency", "gradcam"}) {
      CAPTURE(method);
      const serve::Reply r = get("explain", {{"model", "fashion"}, {"image", "fashion-1"}, {"method", method}, {"format", "npy"}});
      CHECK(r.status == 200);
      CHECK(r.body == tgc_npy(trouser + " --method " + method));
    }
    const serve::Reply sg =
        get("explain", {{"image", "fashion-1"}, {"method", "smoothgrad"}, {"samples", "8"}, {"noise", "0.2"}, {"format", "npy"}});
    CHECK(sg.body == tgc_npy(trouser + " --method smoothgrad --samples 8 --noise 0.2"));
    const serve::Reply cat =
        get("explain", {{"model", "photo"}, {"image", "chelsea"}, {"method", "guided_backprop"}, {"format", "npy"}});
    CHECK(cat.body == tgc_npy(std::string("--model ") + kPhoto + " --image assets/chelsea.png --method guided_backprop"));
  }

  TEST_CASE("explain's numbers: the map's min and max, the clip, the share inside the Cat's box") {
    NEEDS_TASKS(SERVE_TASKS);
    const json j = json::parse(get("explain", {{"model", "photo"}, {"image", "chelsea"}, {"method", "gradcam"}}).body);
    CHECK(j["target"]["label"] == "Cat");
    CHECK(j["layer"] == "FeatureExtractor/MobilenetV2/Conv_1/relu6");  // the map the 1x1 head is computed from
    CHECK(j["shape"] == json({10, 10}));
    CHECK(j["min"].get<double>() >= 0);
    CHECK(j["clip"].is_null());  // Grad-CAM is shown min to max
    const double share = j["share_in_box"].get<double>();
    CHECK(share > 0);
    CHECK(share < 1);
    CHECK(j["png"].get<std::string>().starts_with("data:image/png;base64,"));
    const json s = json::parse(get("explain", {{"image", "fashion-1"}, {"method", "saliency"}}).body);
    CHECK(s["clip"].get<double>() > 0);
    CHECK(s["share_in_box"].is_null());  // a class has no box
    CHECK(s["target"]["label"] == "Trouser");
  }

  TEST_CASE("the rule menu: saliency under the guided rule is guided backprop; a rule registered by name joins") {
    NEEDS_TASKS(SERVE_TASKS);
    for (const auto& [model, image] : {std::pair{"fashion", "fashion-1"}, std::pair{"photo", "chelsea"}}) {
      CAPTURE(model);
      auto npy = [&](const char* method, const char* rule) {
        return get("explain", {{"model", model}, {"image", image}, {"method", method}, {"rule", rule}, {"format", "npy"}}).body;
      };
      CHECK(npy("saliency", "guided") == npy("guided_backprop", "vanilla"));
      CHECK(npy("saliency", "deconvnet") == npy("deconvnet", "vanilla"));
      CHECK(npy("saliency", "vanilla") != npy("guided_backprop", "vanilla"));
      CHECK(npy("guided_backprop", "deconvnet") == npy("guided_backprop", "vanilla"));  // its own rule
    }
    // A student's rule: no gradient through any rectifier, so saliency is all zeros.
    auto nothing_through = [](const Entry& entry, const Tensor& g) { return std::vector<Tensor>{Tensor::zeros(entry.input(0).shape())}; };
    register_rule("blocked", nothing_through, nothing_through);
    CHECK(json::parse(get("rules").body).back() == "blocked");
    const json j = json::parse(get("explain", {{"image", "fashion-1"}, {"method", "saliency"}, {"rule", "blocked"}}).body);
    CHECK(j["rule"]["name"] == "blocked");
    CHECK(j["max"].get<double>() == 0.0);
    CHECK(j["min"].get<double>() == 0.0);
    CHECK_THROWS_WITH(register_rule("guided", nothing_through, nothing_through), doctest::Contains("built-in"));
    CHECK_THROWS_WITH(register_rule("no spaces", nothing_through, nothing_through), doctest::Contains("letters, digits"));
  }

  TEST_CASE("channels: the layer's montage and where each channel's tile is") {
    NEEDS_TASKS(SERVE_TASKS);
    const json j = json::parse(get("channels", {{"model", "fashion"}, {"image", "fashion-1"}, {"layer", "relu1"}}).body);
    CHECK(j["channels"] == 16);
    CHECK(j["columns"] == 4);
    CHECK(j["tile_width"] == 28);
    CHECK(j["min"].get<double>() >= 0);
    const json fc = json::parse(get("channels", {{"model", "fashion"}, {"image", "fashion-1"}, {"layer", "fc2"}}).body);
    CHECK(fc["channels"] == 10);  // a flat layer: one pixel a channel
    CHECK(fc["strongest"]["channel"] == 1);  // Trouser's score
  }

  TEST_CASE("the gate: one computation at a time, a short queue, then 503 with a retry hint") {
    serve::Gate gate(0, std::chrono::milliseconds(20));
    {
      serve::Gate::Lease lease = gate.enter("test");
      try {
        gate.enter("test");
        FAIL("a second computation entered");
      } catch (const serve::Refusal& r) {
        CHECK(r.status == 503);
        CHECK(r.retry_after >= 1);
      }
      CHECK(gate.refused() == 1);
    }
    serve::Gate::Lease again = gate.enter("test");  // free once the first left
    serve::Gate queued(1, std::chrono::milliseconds(20));
    serve::Gate::Lease held = queued.enter("test");
    CHECK_THROWS_AS(queued.enter("test"), serve::Refusal);  // waited 20 ms in the queue
  }

  TEST_CASE("visualize streams frames, and stops when the client goes away") {
    NEEDS_TASKS(SERVE_TASKS);
    serve::Explorer::Stream stream =
        explorer().visualize_stream({.params = {{"model", "fashion"}, {"target", "Trouser"}, {"steps", "12"}, {"every", "3"}}});
    std::vector<json> lines;
    stream.run([&](const std::string& line) {
      lines.push_back(json::parse(line));
      return true;
    });
    REQUIRE(lines.size() == 5);  // steps 3, 6, 9, 12 and done
    CHECK(lines[0]["step"] == 3);
    CHECK(lines[3]["step"] == 12);
    CHECK(lines[3]["objective"].get<double>() > lines[0]["objective"].get<double>());
    CHECK(lines[4]["done"] == true);
    serve::Explorer::Stream cancelled =
        explorer().visualize_stream({.params = {{"model", "fashion"}, {"target", "1"}, {"steps", "300"}, {"every", "1"}}});
    int sent = 0;
    cancelled.run([&](const std::string&) { return ++sent < 2; });  // the second write fails
    CHECK(sent == 2);
    CHECK_THROWS_AS(explorer().visualize_stream({.params = {{"model", "fashion"}}}), serve::Refusal);  // no target
  }

  TEST_CASE("HTTP: the page's files by exact name, the API, nothing else") {
    NEEDS_TASKS(SERVE_TASKS);
    serve::Server server(explorer(), serve::load_page("tinygrad-cpp/serve/page"), {.port = 0});
    const int port = server.bind();
    std::thread running([&] { server.run(); });
    httplib::Client client("127.0.0.1", port);
    auto page = client.Get("/");
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(contains(page->body, "<script type=\"module\" src=\"app.js\">"));
    CHECK(client.Get("/app.js")->get_header_value("Content-Type") == "text/javascript; charset=utf-8");
    for (const char* path : {"/../Makefile", "/assets/chelsea.png", "/index.html/", "/%2e%2e/Makefile", "/serve/page/app.js"}) {
      auto r = client.Get(path);
      REQUIRE(r);
      CAPTURE(path);
      CHECK(r->status == 404);
      CHECK(contains(r->body, "\"error\""));
    }
    auto rules = client.Get("/api/rules");
    CHECK(rules->status == 200);
    auto refused = client.Post("/api/upload", "GIF89a", "application/octet-stream");
    CHECK(refused->status == 415);
    CHECK(contains(refused->body, "a GIF image"));
    server.stop();
    running.join();
  }

  TEST_CASE("invert: parameters validated, frames of explain::invert's descent, the 8-bit image's code error, cancelled") {
    NEEDS_TASKS(SERVE_TASKS);
    auto refused = [](std::map<std::string, std::string> params, int status, const char* says) {
      CAPTURE(says);
      if (!params.contains("model")) params["model"] = "fashion";
      try {
        explorer().invert_stream({.params = params});
        FAIL("refused nothing");
      } catch (const serve::Refusal& r) {
        CHECK(r.status == status);
        CHECK(contains(r.what(), says));
      }
    };
    refused({{"image", "fashion-1"}}, 400, "parameter 'layer' is missing");
    refused({{"layer", "fc1"}}, 400, "parameter 'image' is missing");
    refused({{"image", "fashion-1"}, {"layer", "conv9"}}, 400, "layer 'conv9' is not a layer of fashion");
    refused({{"image", "nowhere"}, {"layer", "fc1"}}, 404, "image 'nowhere' is not known");
    refused({{"image", "fashion-1"}, {"layer", "fc1"}, {"steps", "0"}}, 400, "steps = '0'");
    refused({{"image", "fashion-1"}, {"layer", "fc1"}, {"steps", "100000"}}, 400, "steps = '100000'");
    refused({{"image", "fashion-1"}, {"layer", "fc1"}, {"every", "x"}}, 400, "every = 'x' must be a whole number");
    refused({{"model", "resnet"}, {"image", "fashion-1"}, {"layer", "fc1"}}, 400, "unknown model 'resnet'");

    serve::Explorer::Stream stream = explorer().invert_stream(
        {.params = {{"model", "fashion"}, {"image", "fashion-1"}, {"layer", "fc1"}, {"steps", "20"}, {"every", "5"}}});
    std::vector<json> lines;
    stream.run([&](const std::string& line) {
      lines.push_back(json::parse(line));
      return true;
    });
    REQUIRE(lines.size() == 5);  // steps 5, 10, 15, 20 and done
    CHECK(lines[0]["step"] == 5);
    CHECK(lines[3]["step"] == 20);
    CHECK(contains(lines[0]["png"].get<std::string>(), "data:image/png;base64,"));
    CHECK(lines[3]["code_error"].get<double>() < lines[0]["code_error"].get<double>());
    const json& done = lines[4];
    CHECK(done["done"] == true);
    CHECK(done["stopped"].is_null());
    CHECK(done["what"] == "the code at fc1 (128 numbers)");
    // The same library call as tgc invert and lesson 10, from the same start (seed 0, start 1).
    const std::shared_ptr<nn::Model> model = models::load_model(kFashion);
    const preprocess::InputSpec& spec = model->info().input;
    const Tensor input = preprocess::image_to_input(io::load_image("assets/fashion-png/1_trouser.png"), spec);
    const Tensor found = explain::invert(*model, "fc1", input, {.starts = 1, .steps = 20}).front();
    Tensor code;
    {
      NoGrad no_grad;
      code = model->forward_until(input, "fc1").clone();
    }
    const double error = explain::code_error(*model, "fc1", code, explain::as_saved(found, spec));
    CHECK(done["code_error"].get<double>() == doctest::Approx(error).epsilon(1e-6));
    CHECK(done["gray_error"].get<double>() ==
          doctest::Approx(explain::code_error(*model, "fc1", code, Tensor::zeros(input.shape()))).epsilon(1e-6));
    CHECK(done["code_error"].get<double>() < 0.5 * done["gray_error"].get<double>());

    // The photo model: frames arrive (two steps of its recipe).
    serve::Explorer::Stream photo = explorer().invert_stream(
        {.params = {{"model", "photo"}, {"image", "chelsea"}, {"layer", "FeatureExtractor/MobilenetV2/Conv_1/relu6"},
                    {"steps", "2"}, {"every", "1"}}});
    std::vector<json> photo_lines;
    photo.run([&](const std::string& line) {
      photo_lines.push_back(json::parse(line));
      return true;
    });
    REQUIRE(photo_lines.size() == 3);
    CHECK(photo_lines[1]["step"] == 2);
    CHECK(photo_lines[2]["code_error"].get<double>() > 0);

    // The client goes away after the first frame: the descent stops there.
    serve::Explorer::Stream cancelled = explorer().invert_stream(
        {.params = {{"model", "fashion"}, {"image", "fashion-1"}, {"layer", "fc1"}, {"steps", "300"}, {"every", "1"}}});
    int sent = 0;
    cancelled.run([&](const std::string&) { return ++sent < 2; });  // the second write fails
    CHECK(sent == 2);
  }

  TEST_CASE("visualize's objective is the library's: explain::plan_visualization and climb, the same value each step") {
    NEEDS_TASKS(SERVE_TASKS);
    auto stream_lines = [](std::map<std::string, std::string> params, size_t most) {
      std::vector<json> lines;
      explorer().visualize_stream({.params = std::move(params)}).run([&](const std::string& line) {
        lines.push_back(json::parse(line));
        return lines.size() < most;
      });
      return lines;
    };
    auto library_values = [](nn::Model& model, int64_t class_index, int steps) {
      std::vector<float> values;
      explain::climb(explain::plan_visualization(model, {.class_index = class_index}, 0),
                     {.steps = steps, .on_step = [&](int, float v) { values.push_back(v); }});
      return values;
    };
    // FashionCNN: lesson 9's ascent.
    const std::shared_ptr<nn::Model> fashion = models::load_model(kFashion);
    const std::vector<json> gray = stream_lines({{"model", "fashion"}, {"target", "Trouser"}, {"steps", "3"}, {"every", "1"}}, 10);
    const std::vector<float> gray_values = library_values(*fashion, 1, 3);
    REQUIRE(gray.size() == 4);
    for (size_t k = 0; k < 3; ++k) CHECK(gray[k]["objective"].get<double>() == doctest::Approx(gray_values[k]).epsilon(1e-6));
    CHECK(gray[0]["recipe"] == "lesson 9's ascent");
    CHECK(contains(gray[3]["reading"].get<std::string>(), "p = "));
    // The photo model: Olah et al.'s recipe on lesson 9's detection for the class, its box on each frame.
    const std::shared_ptr<nn::Model> photo = models::load_model(kPhoto);
    const std::vector<json> cat = stream_lines({{"model", "photo"}, {"target", "Cat"}, {"steps", "2"}, {"every", "1"}}, 10);
    const std::vector<float> cat_values = library_values(*photo, photo->class_index("Cat"), 2);
    REQUIRE(cat.size() == 3);
    for (size_t k = 0; k < 2; ++k) CHECK(cat[k]["objective"].get<double>() == doctest::Approx(cat_values[k]).epsilon(1e-6));
    CHECK(cat[0]["recipe"] == "Olah et al.'s recipe");
    CHECK(contains(cat[0]["what"].get<std::string>(), "square anchor of the 5x5 head's centre cell"));
    CHECK(cat[0].contains("box"));
    CHECK(cat[0]["anchor"].get<int64_t>() >= 0);
    CHECK(cat[2]["done"] == true);
    // Car: lesson 9's table (the 3x3 head's wide anchor); the page's default steps, 128 of the recipe's 256.
    const std::vector<json> car = stream_lines({{"model", "photo"}, {"target", "Car"}}, 1);
    REQUIRE(car.size() == 1);
    CHECK(contains(car[0]["what"].get<std::string>(), "2:1 wide anchor of the 3x3 head's centre cell"));
    CHECK(car[0]["steps"] == 128);
    CHECK(car[0]["recipe_steps"] == 256);
  }
}

TEST_SUITE("serve") {
  TEST_CASE("an upload goes through tgc's intake: EXIF orientation honoured, alpha on white, fit") {
    NEEDS_TASKS(SERVE_TASKS);
    // A phone's JPEG, stored 24x16 with orientation 6: upright it stands 16x24.
    const std::string phone = "tests/fuzz/seeds/image/exif-orientation-6-mm.jpg";
    for (const auto& [model, fit] : {std::pair{"fashion", "crop"}, std::pair{"photo", "stretch"}}) {
      CAPTURE(model);
      const serve::Reply up = explorer().handle("upload", {.params = {{"model", model}, {"fit", fit}}, .body = slurp(phone)});
      REQUIRE(up.status == 200);
      const json j = json::parse(up.body);
      CHECK(j["fit"] == fit);
      CHECK(contains(j["notes"][0].get<std::string>(), "EXIF orientation 6: turned 90 degrees clockwise"));
      if (std::string(fit) == "crop") {
        CHECK(j["width"] == 16);  // the upright photo's centre square
        CHECK(j["height"] == 16);
      } else {
        CHECK(j["width"] == 16);
        CHECK(j["height"] == 24);
      }
      // The map of the upload is the one tgc explain draws from the same file: the same input, byte for byte.
      const serve::Reply map = get("explain", {{"model", model}, {"image", j["id"]}, {"method", "input_x_gradient"}, {"format", "npy"}});
      REQUIRE(map.status == 200);
      CHECK(map.body == tgc_npy(fmt::format("--model {} --image {} --fit {} --method input_x_gradient",
                                            std::string(model) == "fashion" ? kFashion : kPhoto, phone, fit)));
    }
    // A PNG with its left third transparent: composited on white, and said so.
    const std::string clear = "tests/fuzz/seeds/image/rgba-left-third-transparent.png";
    const json j = json::parse(explorer().handle("upload", {.params = {{"fit", "pad"}}, .body = slurp(clear)}).body);
    CHECK(contains(j["notes"][0].get<std::string>(), "transparent: composited on a white background"));
    const serve::Reply png = get("image", {{"image", j["id"]}});
    const io::Image shown = io::decode_image(std::vector<uint8_t>(png.body.begin(), png.body.end()), "reply");
    CHECK(shown.channels == 3);
    CHECK(shown.at(0, 0, 0) == 255);
    CHECK(shown.at(0, 0, 2) == 255);
    const serve::Reply bad = explorer().handle("upload", {.params = {{"fit", "squash"}}, .body = slurp(clear)});
    CHECK(bad.status == 400);
    CHECK(contains(error_of(bad), "fit: 'squash' is not stretch, crop or pad"));
  }

  TEST_CASE("the rule menu follows the method table's rule field: its own rule and no gradient are kept") {
    NEEDS_TASKS(SERVE_TASKS);
    const json listed = json::parse(get("methods").body);
    std::map<std::string, std::string> rule_of;
    for (const json& m : listed) rule_of[m["name"]] = m["rule"];
    CHECK(rule_of["saliency"] == "as given");
    CHECK(rule_of["gradcam"] == "as given");
    CHECK(rule_of["guided_backprop"] == "its own");
    CHECK(rule_of["deconvnet"] == "its own");
    CHECK(rule_of["guided_gradcam"] == "its own");
    CHECK(rule_of["occlusion"] == "no gradient");
    // Each method on FashionCNN under the deconvnet rule: changed exactly when its rule is as given.
    for (const explain::Method& m : explain::methods()) {
      CAPTURE(m.name);
      CHECK(rule_of[m.name] == explain::rule_words(m.rule));
      auto npy = [&](const char* rule) {
        return get("explain", {{"image", "fashion-1"}, {"method", m.name}, {"rule", rule}, {"samples", "4"}, {"steps", "4"},
                               {"format", "npy"}}).body;
      };
      CHECK((npy("deconvnet") != npy("vanilla")) == (m.rule == explain::RectifierRule::AsGiven));
      const serve::Reply guided = get("explain", {{"image", "fashion-1"}, {"method", m.name}, {"rule", "guided"}, {"samples", "4"}, {"steps", "4"}});
      INFO(guided.body.substr(0, 300));
      REQUIRE(guided.status == 200);
      const json j = json::parse(guided.body);
      CHECK(j["rule"]["applied"] == (m.rule == explain::RectifierRule::AsGiven));
      CHECK(j["rule"]["method"] == explain::rule_words(m.rule));
    }
  }

  TEST_CASE("work outside the models' gates (an upload's decoding, an image's PNG) is gated too: 503 when full") {
    NEEDS_TASKS(SERVE_TASKS);
    serve::Explorer small({{"fashion", kFashion}}, "assets", {.queue = 0, .queue_wait = std::chrono::milliseconds(10)});
    const json up = json::parse(small.handle("upload", {.body = slurp("assets/coffee.png")}).body);
    {
      const serve::Gate::Lease held = small.work_gate().enter("test");  // another decode or encode under way
      const serve::Reply upload = small.handle("upload", {.body = slurp("assets/coffee.png")});
      CHECK(upload.status == 503);
      CHECK(upload.retry_after >= 1);
      const serve::Reply image = small.handle("image", {.params = {{"image", up["id"]}}});
      CHECK(image.status == 503);
      CHECK(image.retry_after >= 1);
      CHECK(contains(error_of(image), "image:"));
      CHECK(small.handle("image", {.params = {{"image", "chelsea"}}}).status == 200);  // encoded at start: no work
      CHECK(small.handle("predict", {.params = {{"image", up["id"]}}}).status == 200);  // its input made at upload
    }
    CHECK(small.handle("image", {.params = {{"image", up["id"]}}}).status == 200);
    CHECK(small.refused() == 2);
  }
}
