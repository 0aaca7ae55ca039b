// grade: runs each task's test suite on its own and prints a score table.
//   build/bin/grade TESTS_BINARY [TASKS_FILE]     (make grade runs it)
// For a failed task it shows the first failed check: the op, the index, expected vs got.
#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <regex>
#include <sstream>
#include <string>

#include "tinygrad-cpp/assignment.h"
#include "tinygrad-cpp/tensor.h"

namespace {

struct SuiteResult {
  int passed = 0, failed = 0, waiting = 0;  // waiting: counted by doctest as passed
  std::string waiting_for;
  bool ran = false;
  std::string first_failure;
};

// Runs the test binary with extra doctest flags; at most 10 minutes, so a hang cannot stall grading.
SuiteResult run_suite(const std::string& tests, const std::string& flags) {
  const std::string command = "timeout 600 " + tests + " --no-intro=true --no-version=true " + flags + " 2>&1";
  std::FILE* pipe = popen(command.c_str(), "r");
  SuiteResult r;
  if (!pipe) return r;
  std::string output;
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) output += buffer.data();
  pclose(pipe);
  static const std::regex summary(R"(test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed)");
  std::smatch m;
  if (std::regex_search(output, m, summary)) {
    r.ran = true;
    r.passed = std::stoi(m[2]);
    r.failed = std::stoi(m[3]);
  }
  // tests/main.cpp: "[tasks] N test cases waiting for unfinished tasks: 3 on relu; ..."
  static const std::regex waiting(R"(\[tasks\] (\d+) test cases waiting for unfinished tasks: (.*))");
  if (std::regex_search(output, m, waiting)) {
    r.waiting = std::stoi(m[1]);
    r.waiting_for = m[2];
  }
  std::istringstream lines(output);
  std::string line;
  bool found = false;
  while (std::getline(lines, line)) {
    if (!found) {
      const size_t at = line.find("ERROR: ");
      if (at == std::string::npos) continue;
      r.first_failure = line.substr(at + 7);
      found = true;
    } else if (line.find("logged: ") != std::string::npos) {
      r.first_failure += " -- " + line.substr(line.find("logged: ") + 8);  // e.g. the gradient check's message
      break;
    } else if (line.find("====") != std::string::npos) {
      break;
    }
  }
  return r;
}

std::string shorten(std::string s, size_t n) { return s.size() > n ? s.substr(0, n - 3) + "..." : s; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: grade TESTS_BINARY [TASKS_FILE]\n");
    return 2;
  }
  try {
    const std::string tests = argv[1];
    const auto tasks = tg::assignment::load_tasks(argc > 2 ? argv[2] : "tests/tasks.txt");
    fmt::print("{:<20} {:>7}  {:<7} {}\n", "task", "points", "result", "first failure");
    int earned = 0, total = 0;
    std::string task_ids;
    for (const auto& t : tasks) {
      if (!task_ids.empty()) task_ids += ',';
      task_ids += t.id;
      const SuiteResult r = run_suite(tests, "-ts=" + t.id);
      const bool passed = r.ran && r.failed == 0 && r.passed > 0;
      earned += passed ? t.points : 0;
      total += t.points;
      const std::string why = !r.ran ? "the tests did not run to the end (crash or timeout)"
                              : r.passed + r.failed == 0 ? "no tests for this task"
                                                         : r.first_failure;
      fmt::print("{:<20} {:>3}/{:<3}  {:<7} {}\n", t.id, passed ? t.points : 0, t.points, passed ? "passed" : "FAILED",
                 passed ? "" : shorten(why, 160));
    }
    const SuiteResult others = run_suite(tests, "-tse=" + task_ids);
    fmt::print("\nother tests (no task): {} passed, {} failed{}{}\n", others.passed - others.waiting, others.failed,
               others.waiting ? fmt::format(", {} waiting for unfinished tasks ({})", others.waiting,
                                            shorten(others.waiting_for, 100))
                              : "",
               others.failed ? " -- first: " + shorten(others.first_failure, 140) : "");
    fmt::print("score: {}/{}\n", earned, total);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", tg::printable(e.what()).c_str());
    return 1;
  }
}
