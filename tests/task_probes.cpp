// Which assignment tasks are implemented in this tree, found by running each task's code
// once on a tiny input. In the instructor tree every probe passes; in a student copy a
// task that is still cut out throws tg::NotImplemented naming itself.
#include <map>
#include <set>

#include "tests/helpers.h"
#include "tinygrad-cpp/explain.h"
#include "tinygrad-cpp/segment.h"

namespace test {
namespace {

// Records `op` on a tiny input and calls that entry's default rule directly (no walk).
void call_rule(const std::function<tg::Tensor(const tg::Tensor&)>& op, const tg::Shape& shape,
               const tg::BackwardRule& rule) {
  tg::Tensor x = tg::Tensor::full(shape, 0.5f, true);
  tg::Tensor y = op(x);
  const tg::Entry* entry = tg::tape().producer(y);
  const tg::Entry copy = *entry;
  tg::tape().discard_last();
  tg::NoGrad no_grad;
  rule(copy, tg::Tensor::ones(y.shape()));
}

void probe(const std::string& id) {
  using namespace tg;
  if (id == "tape-reverse-walk") {
    Tensor x = Tensor::full({2}, 1.f, true);
    sum(mul(x, x)).backward();
  } else if (id == "relu") {
    call_rule([](const Tensor& x) { return relu(x); }, {2}, Op::ReLU.default_rule);
  } else if (id == "relu-rules") {  // a relu entry by hand: relu's own task need not be done
    Entry entry;
    entry.op = &Op::ReLU;
    entry.inputs = {Tensor::ones({2})};
    entry.output = Tensor::ones({2});
    rules::guided_relu(entry, Tensor::ones({2}));
    rules::deconvnet_relu(entry, Tensor::ones({2}));
  } else if (id == "relu6-guided") {  // a relu6 entry by hand, as for relu-rules
    Entry entry;
    entry.op = &Op::ReLU6;
    entry.inputs = {Tensor::ones({2})};
    entry.output = Tensor::ones({2});
    rules::guided_relu(entry, Tensor::ones({2}));
  } else if (id == "smoothgrad") {
    explain::smoothgrad_of([](const Tensor& p) { return p; }, Tensor::ones({2}), 1, 0.f, 0);
  } else if (id == "occlusion") {
    nn::Sequential model;
    model.add("flatten", std::make_shared<nn::Flatten>());
    explain::occlusion(model, Tensor::ones({1, 1, 1, 2}), {0}, 1, 1, 0.f);
  } else if (id == "grabcut-seeds") {
    segment::seeds_from_saliency(Tensor::ones({2, 2}));
  } else if (id == "linear-backward") {
    const Tensor w = Tensor::ones({3, 2});
    call_rule([&](const Tensor& x) { return linear(x, w); }, {1, 2}, Op::Linear.default_rule);
  } else if (id == "conv2d-backward") {
    const Tensor w = Tensor::ones({1, 1, 2, 2});
    call_rule([&](const Tensor& x) { return conv2d(x, w); }, {1, 1, 3, 3}, Op::Conv2d.default_rule);
  } else if (id == "maxpool-backward") {
    call_rule([](const Tensor& x) { return max_pool2d(x, 2); }, {1, 1, 2, 2}, Op::MaxPool2d.default_rule);
  } else if (id == "saliency") {
    nn::Sequential model;
    model.add("flatten", std::make_shared<nn::Flatten>());
    explain::saliency(model, Tensor::ones({1, 1, 1, 2}), {0});
  } else if (id == "gradcam") {
    explain::grad_cam_map(Tensor::ones({1, 1, 2, 2}), Tensor::ones({1, 1, 2, 2}));
  } else if (id == "ascent-step") {
    Tensor x = Tensor::zeros({2});
    explain::ascent_step(x, Tensor::ones({2}), 0.1f, 0.f);
  } else {
    throw tg::Error("task probe: unknown task '" + id + "' (tests/task_probes.cpp)");
  }
}

std::map<std::string, std::string>& probe_results() {
  static std::map<std::string, std::string> results;
  return results;
}

// Per task: how many test cases stopped because it is not implemented.
std::map<std::string, int>& waiting() {
  static std::map<std::string, int> counts;
  return counts;
}

int& waiting_tests() {
  static int count = 0;
  return count;
}

}  // namespace

std::string missing_task(const std::string& id) {
  auto& results = probe_results();
  auto it = results.find(id);
  if (it != results.end()) return it->second;
  std::string missing;
  const size_t entries_before = tg::tape().size();  // a probe leaves the test's own entries alone
  try {
    probe(id);
  } catch (const tg::NotImplemented& e) {
    missing = e.task();
  }
  while (tg::tape().size() > entries_before) tg::tape().discard_last();
  return results[id] = missing;
}

bool tasks_ready(std::initializer_list<const char*> ids) {
  std::set<std::string> missing;
  for (const char* id : ids) {
    const std::string m = missing_task(id);
    if (!m.empty()) missing.insert(m);
  }
  if (missing.empty()) return true;
  ++waiting_tests();
  for (const std::string& id : missing) ++waiting()[id];
  return false;
}

std::string waiting_summary() {
  if (waiting_tests() == 0) return "";
  std::string detail;
  for (const auto& [id, count] : waiting()) detail += (detail.empty() ? "" : ", ") + id + " " + std::to_string(count);
  return "[tasks] " + std::to_string(waiting_tests()) + " test cases waiting for unfinished tasks: " + detail;
}

}  // namespace test
