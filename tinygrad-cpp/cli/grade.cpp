// grade: runs each task's test suite on its own and prints a score table.
//   build/bin/grade TESTS_BINARY [TASKS_FILE] [--json FILE] [--tasks-only] [--skip-suites A,B]
// (make grade runs it).
// A task's points are split evenly over the test cases of its suite, its named sub-cases
// (conv2d-backward: stride, padding, dilation, groups, bias, threads), so one wrong case
// costs its share, not the task. Under the table, every failed sub-case gets its first
// failed check in full: where (file:line), the check, and everything the test logged for
// it (a gradient check's op, input, index, expected and got). A suite that crashed says in
// which test case and how many of its test cases never ran; a ThreadSanitizer report
// (make grade TSAN=1) fails its whole task. --json writes the same results in Gradescope's
// format. --tasks-only skips the tests outside the task suites; --skip-suites leaves some of
// them out (make grade skips the lessons' suite, whose programs it does not build). The last
// lines are the score and the next step: the first task, in the order of the tasks file, that
// does not pass yet, and how to run its tests alone. The exit status is 0 with full marks, 1
// below them, 2 when grading could not run (a bad tasks file, a bad flag).
#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>

#include "tinygrad-cpp/course/assignment.h"
#include "tinygrad-cpp/core/tensor.h"
#include "tinygrad-cpp/viz/viz.h"

namespace {

struct CaseResult {
  std::string name;
  bool completed = false;            // ran to its end (doctest printed its duration)
  bool failed = false;               // a check failed or it threw
  std::string first_failure;         // one line: the failed check
  std::string details;               // several lines: location, check, values, logged messages
  std::string last_logged;           // the failed check's last logged line (a gradient check's verdict)
  bool passed() const { return completed && !failed; }
};

struct SuiteResult {
  std::vector<CaseResult> cases;     // in the order doctest lists them
  int passed = 0, failed = 0;        // from doctest's summary (passed includes waiting)
  int waiting = 0;                   // counted by doctest as passed
  std::string waiting_for;
  bool finished = false;             // doctest printed its summary: no crash, no timeout
  std::string crashed_in;            // the test case running when it stopped
  std::string race;                  // a ThreadSanitizer report's first lines
  int passed_cases() const {
    int n = 0;
    for (const CaseResult& c : cases) n += c.passed();
    return n;
  }
  int never_ran() const {
    int n = 0;
    for (const CaseResult& c : cases) n += !c.completed && c.name != crashed_in;
    return n;
  }
  const CaseResult* first_failed() const {
    for (const CaseResult& c : cases)
      if (!c.passed()) return &c;
    return nullptr;
  }
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

CaseResult& case_named(SuiteResult& r, const std::string& name) {
  for (CaseResult& c : r.cases)
    if (c.name == name) return c;
  r.cases.push_back(CaseResult{name});  // ran but was not listed (cannot happen with one binary)
  return r.cases.back();
}

// Runs one filter of the test binary: at most 10 minutes, so a hang cannot stall grading.
SuiteResult run_suite(const std::string& tests, const std::string& filter) {
  SuiteResult r;
  std::smatch m;
  {  // the test case names, one per line between doctest's two rules
    std::istringstream listing(run(tests + " --no-version=true " + filter + " --list-test-cases"));
    std::string line;
    int rules = 0;
    while (std::getline(listing, line)) {
      if (line.rfind("=====", 0) == 0) ++rules;
      else if (rules == 1 && !line.empty()) r.cases.push_back(CaseResult{line});
    }
  }
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
  static const std::regex duration(R"(^\d+\.\d+ s: (.*)$)");
  std::istringstream lines(output);
  std::string line, current;
  CaseResult* failing = nullptr;  // the case whose first failure is being read
  bool in_logged = false;
  while (std::getline(lines, line)) {
    if (std::regex_match(line, m, duration)) {
      case_named(r, m[1]).completed = true;
      current.clear();
      failing = nullptr;
      continue;
    }
    if (line.rfind("TEST CASE:", 0) == 0) {
      current = line.substr(std::min(line.find_first_not_of(' ', 10), line.size()));
      continue;
    }
    if (line.rfind("===", 0) == 0 || line.empty()) {
      failing = nullptr;
      continue;
    }
    const size_t at = line.find("ERROR: ");
    if (at != std::string::npos && !current.empty()) {
      CaseResult& c = case_named(r, current);
      c.failed = true;
      if (c.first_failure.empty()) {
        c.first_failure = line.substr(at + 7);
        c.details = line + "\n";
        failing = &c;
        in_logged = false;
      }
      continue;
    }
    if (failing) {  // values:, logged: and their continuation lines
      failing->details += line + "\n";
      const size_t logged = line.find("logged: ");
      if (logged != std::string::npos) in_logged = true, failing->last_logged = line.substr(logged + 8);
      else if (in_logged) failing->last_logged = line.substr(std::min(line.find_first_not_of(' '), line.size()));
    }
  }
  if (!r.finished) {
    r.crashed_in = current.empty() ? "(before the first test case)" : current;
    if (!current.empty()) {
      CaseResult& c = case_named(r, current);
      c.failed = true;
      if (c.first_failure.empty()) c.first_failure = "crashed or timed out here";
    }
  }
  // Under ThreadSanitizer (make grade TSAN=1) a race fails the task even if every check
  // passed. (Its report goes to stderr, which is not in step with doctest's output, so it
  // cannot be pinned on one test case.)
  const size_t race = output.find("WARNING: ThreadSanitizer: ");
  if (race != std::string::npos) {
    std::istringstream report(output.substr(race));
    std::string report_line;
    for (int n = 0; n < 24 && std::getline(report, report_line); ++n) r.race += report_line + "\n";
  }
  return r;
}

std::string shorten(std::string s, size_t n) { return s.size() > n ? s.substr(0, n - 3) + "..." : s; }

// The table's one-line reason: for an exception, the exception's own message; for a check
// that logged something, its last logged line (a gradient check's "backward gave .., central
// difference gave .."); otherwise the check. The details below have all of it.
std::string table_reason(const CaseResult& c) {
  const std::string threw = "THREW exception: ";
  const size_t at = c.first_failure.find(threw);
  if (at == std::string::npos) return c.last_logged.empty() ? c.first_failure : c.last_logged;
  std::string message = c.first_failure.substr(at + threw.size());
  if (message.size() >= 2 && message.front() == '"' && message.back() == '"') message = message.substr(1, message.size() - 2);
  return message;
}

// A test case's short name: the sub-case before its colon ("bias: db with stride, ..." -> "bias").
std::string label(const std::string& name) {
  const size_t colon = name.find(':');
  return colon != std::string::npos && colon <= 24 ? name.substr(0, colon) : name;
}

// Points with at most two decimals: 20, 2.5, 3.33.
std::string points(double p) { return fmt::format("{:g}", std::round(p * 100.0) / 100.0); }

// The summary's last lines: the first task in the suggested order that does not pass yet, and
// how to run its tests alone.
std::string next_step(const std::vector<tg::assignment::Task>& tasks, const std::vector<bool>& passed, const std::string& tests) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (passed[i]) continue;
    const tg::assignment::Task& t = tasks[i];
    return fmt::format(
        "next: task {} of {} in the suggested order, {} ({} points): {}\n"
        "      its failures are above under \"--- {} \"; run its tests alone with: {} -ts={}\n"
        "      `make lessons` runs every lesson your finished tasks unlock (README.md says which tasks each needs)\n",
        i + 1, tasks.size(), t.id, t.points, t.description, t.id, tests, t.id);
  }
  return "every task passes: `make lessons` runs all the lessons and writes out/index.html\n";
}

constexpr const char* kUsage = "usage: grade TESTS_BINARY [TASKS_FILE] [--json FILE] [--tasks-only] [--skip-suites A,B]\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::string json_path;
  std::string skip_suites;  // comma-separated, left out of the other tests
  bool tasks_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--skip-suites" && i + 1 < argc) skip_suites = argv[++i];
    else if (a == "--tasks-only") tasks_only = true;
    else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "error: unknown option %s\n%s", tg::printable(a).c_str(), kUsage);
      return 2;
    } else positional.push_back(a);
  }
  if (positional.empty() || positional.size() > 2) {
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  try {
    const std::string tests = positional[0];
    const auto tasks = tg::assignment::load_tasks(positional.size() > 1 ? positional[1] : "tests/tasks.txt");
    fmt::print("{:<20} {:>9}  {:<7} {}\n", "task", "points", "result", "first failure (details below)");
    double earned = 0;
    int total = 0;
    std::string task_ids, details;
    std::vector<bool> task_passed;  // in the order of the tasks file
    nlohmann::json gradescope = {{"tests", nlohmann::json::array()}};
    for (const auto& t : tasks) {
      if (!task_ids.empty()) task_ids += ',';
      task_ids += t.id;
      const SuiteResult r = run_suite(tests, "-ts=" + t.id);
      const int n = static_cast<int>(r.cases.size());
      const double share = n ? static_cast<double>(t.points) / n : 0.0;  // each sub-case's points
      const double score = r.race.empty() ? share * r.passed_cases() : 0.0;
      const bool passed = n > 0 && r.race.empty() && r.passed_cases() == n;
      earned += score;
      total += t.points;
      task_passed.push_back(passed);
      std::string why, output;
      if (n == 0) {
        why = "no tests for this task";
      } else if (!r.race.empty()) {
        why = r.race.substr(9, r.race.find('\n') - 9) + " (ThreadSanitizer; the report is below)";
        details += fmt::format("\n--- {} ({} points): {}\n{}", t.id, t.points, why, r.race);
      } else if (!passed) {
        // Every failed test case in full, except that cases failing the same way as the one
        // before them (a task not written yet fails them all alike) are only named.
        std::string failed_labels, previous_reason, same;
        for (const CaseResult& c : r.cases) {
          if (c.passed()) continue;
          failed_labels += (failed_labels.empty() ? "" : ", ") + label(c.name);
          const bool ran = c.completed || c.name == r.crashed_in;
          const std::string reason = ran ? table_reason(c) : "never ran (the suite crashed)";
          if (reason == previous_reason) {
            same += fmt::format("{}\"{}\"", same.empty() ? "" : ", ", c.name);
            continue;
          }
          if (!same.empty()) details += "and failing the same way: " + same + "\n";
          same.clear();
          previous_reason = reason;
          details += fmt::format("\n--- {} ({} points), test case \"{}\" ({} points):\n{}", t.id, t.points, c.name,
                                 points(share), c.details.empty() ? reason + "\n" : c.details);
        }
        if (!same.empty()) details += "and failing the same way: " + same + "\n";
        const CaseResult& first = *r.first_failed();
        if (!r.finished)
          why = fmt::format("crashed or timed out in test case \"{}\"; {} of its {} test cases never ran", r.crashed_in,
                            r.never_ran(), n);
        else if (r.passed_cases() == 0)
          why = table_reason(first);
        else
          // Short labels (conv's "stride, bias") before the reason; whole test-case names would
          // push the reason off the line, so those are only in the details.
          why = fmt::format("{} of {} failed{}: {}", n - r.passed_cases(), n,
                            failed_labels.size() <= 48 ? " (" + failed_labels + ")" : "", table_reason(first));
      }
      fmt::print("{:<20} {:>4}/{:<4}  {:<7} {}\n", t.id, points(score), t.points,
                 passed ? "passed" : score > 0 ? "partial" : "FAILED", shorten(why, 130));
      for (const CaseResult& c : r.cases)
        output += fmt::format("{} {} ({} points){}\n", c.passed() ? "passed" : "FAILED", c.name, points(share),
                              c.passed() ? "" : ": " + (c.completed ? table_reason(c) : std::string("did not finish")));
      if (!r.race.empty()) output += r.race;
      gradescope["tests"].push_back(
          {{"name", t.id + ": " + t.description}, {"score", std::round(score * 100.0) / 100.0}, {"max_score", t.points},
           {"output", n ? output : why}});
    }
    SuiteResult others;
    std::string others_line;
    if (!tasks_only) {
      others = run_suite(tests, "-tse=" + task_ids + (skip_suites.empty() ? "" : "," + skip_suites));
      others_line = fmt::format(
          "other tests (no task): {} passed, {} failed{}{}{}\n", others.passed - others.waiting, others.failed,
          others.waiting ? fmt::format(", {} waiting for unfinished tasks ({})", others.waiting, shorten(others.waiting_for, 100))
                         : "",
          others.finished ? "" : fmt::format(", crashed in \"{}\" ({} not run)", others.crashed_in, others.never_ran()),
          skip_suites.empty() ? "" : fmt::format("; not run here: {}", skip_suites));
      for (const CaseResult& c : others.cases)
        if (c.failed) details += fmt::format("\n--- other tests, test case \"{}\":\n{}", c.name, c.details);
    }
    const bool full_marks = std::fabs(earned - total) < 1e-6;
    // The details first, the summary last: what a student reads at the bottom of the terminal.
    if (!details.empty()) fmt::print("\nfailures in full:{}", details);
    if (!json_path.empty()) {
      gradescope["score"] = std::round(earned * 100.0) / 100.0;
      gradescope["output"] = tasks_only ? fmt::format("{}/{} points", points(earned), total)
                                        : fmt::format("{}/{} points; other tests: {} passed, {} failed, {} waiting",
                                                      points(earned), total, others.passed - others.waiting, others.failed,
                                                      others.waiting);
      tg::viz::save_text(json_path, gradescope.dump(2) + "\n");
      fmt::print("\nwrote {}\n", json_path);
    }
    fmt::print("\n{}score: {}/{}\n{}", others_line, points(earned), total, next_step(tasks, task_passed, tests));
    return full_marks ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", tg::printable(e.what()).c_str());
    return 2;
  }
}
