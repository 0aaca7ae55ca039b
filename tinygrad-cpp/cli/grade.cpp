// grade: runs each task's test suite on its own and prints a score table.
//   build/bin/grade TESTS_BINARY [TASKS_FILE] [--json FILE] [--tasks-only]   (make grade runs it)
// Under the table, every task that lost points gets its first failed check in full: where
// (file:line), the check, and everything the test logged for it (a gradient check's op,
// input, index, expected and got). A suite that crashed says in which test case and how
// many of its test cases never ran. --json writes the same results in Gradescope's format.
// --tasks-only skips the tests outside the task suites. The exit status is 0 only with
// full marks.
#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>

#include "tinygrad-cpp/assignment.h"
#include "tinygrad-cpp/tensor.h"
#include "tinygrad-cpp/viz.h"

namespace {

struct SuiteResult {
  int listed = 0;                    // test cases in the suite
  int passed = 0, failed = 0;        // from doctest's summary (passed includes waiting)
  int completed = 0;                 // test cases that ran to their end
  int waiting = 0;                   // counted by doctest as passed
  std::string waiting_for;
  bool finished = false;             // doctest printed its summary: no crash, no timeout
  std::string crashed_in;            // the test case running when it stopped
  std::string first_failure;         // one line: the failed check
  std::string details;               // several lines: location, check, values, logged messages
  std::string last_logged;           // the failed check's last logged line (a gradient check's verdict)
  int skipped() const { return std::max(0, listed - completed - (crashed_in.empty() ? 0 : 1)); }
};

std::string run(const std::string& command) {
  std::string output;
  std::FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return output;
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) output += buffer.data();
  pclose(pipe);
  return output;
}

// Runs one filter of the test binary: at most 10 minutes, so a hang cannot stall grading.
SuiteResult run_suite(const std::string& tests, const std::string& filter) {
  SuiteResult r;
  std::smatch m;
  const std::string listing = run(tests + " --no-version=true " + filter + " --list-test-cases");
  static const std::regex listed(R"(test cases passing the current filters: (\d+))");
  if (std::regex_search(listing, m, listed)) r.listed = std::stoi(m[1]);

  const std::string output = run("timeout 600 " + tests + " --no-intro=true --no-version=true --duration=true " + filter);
  static const std::regex summary(R"(test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed)");
  if (std::regex_search(output, m, summary)) {
    r.finished = true;
    r.passed = std::stoi(m[2]);
    r.failed = std::stoi(m[3]);
  }
  // tests/main.cpp: "[tasks] N test cases waiting for unfinished tasks: 3 on relu; ..."
  static const std::regex waiting(R"(\[tasks\] (\d+) test cases waiting for unfinished tasks: (.*))");
  if (std::regex_search(output, m, waiting)) {
    r.waiting = std::stoi(m[1]);
    r.waiting_for = m[2];
  }
  static const std::regex duration(R"(^\d+\.\d+ s: )");
  std::istringstream lines(output);
  std::string line, location, current_case;
  bool in_failure = false, failure_done = false, in_logged = false;
  while (std::getline(lines, line)) {
    if (std::regex_search(line, duration)) {
      ++r.completed;
      current_case.clear();
      in_failure = false;
      continue;
    }
    if (line.rfind("TEST CASE:", 0) == 0) current_case = line.substr(line.find_first_not_of(' ', 10));
    if (line.find("===") == 0 || line.empty()) {
      if (in_failure) failure_done = true;
      in_failure = false;
      continue;
    }
    const size_t at = line.find("ERROR: ");
    if (at != std::string::npos && r.first_failure.empty()) {
      r.first_failure = line.substr(at + 7);
      r.details = "in test case \"" + current_case + "\"\n" + line + "\n";
      in_failure = true;
      continue;
    }
    if (in_failure && !failure_done) {  // values:, logged: and their continuation lines
      r.details += line + "\n";
      const size_t logged = line.find("logged: ");
      if (logged != std::string::npos) in_logged = true, r.last_logged = line.substr(logged + 8);
      else if (in_logged) r.last_logged = line.substr(std::min(line.find_first_not_of(' '), line.size()));
    }
  }
  if (!r.finished) r.crashed_in = current_case.empty() ? "(before the first test case)" : current_case;
  // Under ThreadSanitizer (make grade TSAN=1) a race is a failure even if every check passed.
  const size_t race = output.find("WARNING: ThreadSanitizer: ");
  if (race != std::string::npos) {
    ++r.failed;
    const size_t end = output.find("\n", race);
    r.first_failure = output.substr(race + 9, end - race - 9) + " (ThreadSanitizer; the report is below)";
    // The report's first lines: the two accesses and where they are.
    std::istringstream report(output.substr(race));
    std::string report_line;
    r.details = "";
    for (int n = 0; n < 24 && std::getline(report, report_line); ++n) r.details += report_line + "\n";
  }
  return r;
}

std::string shorten(std::string s, size_t n) { return s.size() > n ? s.substr(0, n - 3) + "..." : s; }

// The table's one-line reason: for an exception, the exception's own message; for a check
// that logged something, its last logged line (a gradient check's "backward gave .., central
// difference gave .."); otherwise the check. The details below have all of it.
std::string table_reason(const std::string& failure, const std::string& last_logged) {
  const std::string threw = "THREW exception: ";
  const size_t at = failure.find(threw);
  if (at == std::string::npos) return last_logged.empty() ? failure : last_logged;
  std::string message = failure.substr(at + threw.size());
  if (message.size() >= 2 && message.front() == '"' && message.back() == '"') message = message.substr(1, message.size() - 2);
  return message;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::string json_path;
  bool tasks_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--tasks-only") tasks_only = true;
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "error: unknown option %s\nusage: grade TESTS_BINARY [TASKS_FILE] [--json FILE] [--tasks-only]\n",
                   tg::printable(a).c_str());
      return 2;
    } else positional.push_back(a);
  }
  if (positional.empty() || positional.size() > 2) {
    std::fprintf(stderr, "usage: grade TESTS_BINARY [TASKS_FILE] [--json FILE] [--tasks-only]\n");
    return 2;
  }
  try {
    const std::string tests = positional[0];
    const auto tasks = tg::assignment::load_tasks(positional.size() > 1 ? positional[1] : "tests/tasks.txt");
    fmt::print("{:<20} {:>7}  {:<7} {}\n", "task", "points", "result", "first failure (details below)");
    int earned = 0, total = 0;
    std::string task_ids, details;
    nlohmann::json gradescope = {{"tests", nlohmann::json::array()}};
    for (const auto& t : tasks) {
      if (!task_ids.empty()) task_ids += ',';
      task_ids += t.id;
      const SuiteResult r = run_suite(tests, "-ts=" + t.id);
      const bool passed = r.finished && r.failed == 0 && r.passed > 0;
      earned += passed ? t.points : 0;
      total += t.points;
      std::string why;
      if (!r.finished)
        why = fmt::format("crashed or timed out in test case \"{}\"; {} of its {} test cases never ran", r.crashed_in,
                          r.skipped(), r.listed);
      else if (r.passed + r.failed == 0) why = "no tests for this task";
      else if (!passed) why = r.first_failure;
      fmt::print("{:<20} {:>3}/{:<3}  {:<7} {}\n", t.id, passed ? t.points : 0, t.points, passed ? "passed" : "FAILED",
                 shorten(r.finished && !passed ? table_reason(why, r.last_logged) : why, 110));
      std::string output = passed ? fmt::format("{} of {} test cases passed", r.passed, r.listed) : why;
      if (!passed && !r.details.empty()) output += "\n" + r.details;
      if (!passed) details += fmt::format("\n--- {} ({} points): {}\n{}", t.id, t.points, why, r.details);
      gradescope["tests"].push_back(
          {{"name", t.id + ": " + t.description}, {"score", passed ? t.points : 0}, {"max_score", t.points}, {"output", output}});
    }
    SuiteResult others;
    if (!tasks_only) {
      others = run_suite(tests, "-tse=" + task_ids);
      fmt::print("\nother tests (no task): {} passed, {} failed{}{}\n", others.passed - others.waiting, others.failed,
                 others.waiting ? fmt::format(", {} waiting for unfinished tasks ({})", others.waiting,
                                              shorten(others.waiting_for, 100))
                                : "",
                 others.finished ? "" : fmt::format(", crashed in \"{}\" ({} not run)", others.crashed_in, others.skipped()));
      if (others.failed || !others.finished)
        details += fmt::format("\n--- other tests: {}\n{}", others.finished ? others.first_failure : "crashed", others.details);
    }
    fmt::print("score: {}/{}\n", earned, total);
    if (!details.empty()) fmt::print("\nfailures in full:{}", details);
    if (!json_path.empty()) {
      gradescope["score"] = earned;
      gradescope["output"] = tasks_only ? fmt::format("{}/{} points", earned, total)
                                        : fmt::format("{}/{} points; other tests: {} passed, {} failed, {} waiting", earned,
                                                      total, others.passed - others.waiting, others.failed, others.waiting);
      tg::viz::save_text(json_path, gradescope.dump(2) + "\n");
      fmt::print("wrote {}\n", json_path);
    }
    return earned == total ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", tg::printable(e.what()).c_str());
    return 1;
  }
}
