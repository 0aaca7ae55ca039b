// Which assignment tasks are implemented in this tree, found by running each task's probe
// (TASK_PROBE, beside the task's suite) once. In the instructor tree every probe passes; in
// a student copy a task that is still cut out throws tg::NotImplemented naming itself.
#include <map>
#include <set>

#include "tests/helpers.h"

namespace test {
namespace {

// Every task's probe, by id (each test file registers those of its suites with TASK_PROBE).
std::map<std::string, Probe>& probes() {
  static std::map<std::string, Probe> registry;
  return registry;
}

void probe(const std::string& id) {
  const auto it = probes().find(id);
  if (it == probes().end()) throw tg::Error("task probe: unknown task '" + id + "' (no TASK_PROBE(\"" + id + "\") in tests/)");
  it->second();
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

bool register_probe(const char* id, Probe probe) {
  probes()[id] = probe;
  return true;
}

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
