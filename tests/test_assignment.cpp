// The assignment generator: markers become TODOs and throws, bad markers are refused
// with file and line, and the student copy of this project holds no solution line.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "tinygrad-cpp/course/assignment.h"
#include "tinygrad-cpp/data/io.h"
#include "tinygrad-cpp/course/lesson.h"

using namespace tg;
using test::contains;
using test::error_message;
namespace fs = std::filesystem;

namespace {
const std::vector<assignment::Task> kTasks = {{"relu", 10, "relu's forward pass"}, {"conv", 20, "conv's \"backward\""}};

// Source text from lines; built with "\n" so no line of this file is itself a marker.
std::string lines(std::initializer_list<const char*> parts) {
  std::string s;
  for (const char* p : parts) s += std::string(p) + "\n";
  return s;
}
const std::string kBegin = "// BEGIN SOLUTION";
const std::string kEnd = "// END SOLUTION";

std::string read_text(const std::string& path) {
  const std::vector<uint8_t> bytes = io::read_file(path);
  return std::string(bytes.begin(), bytes.end());
}

// The instructor tree has a solution marker for every task; a student copy has none (or,
// with solutions put back by hand, some), and there these tests have nothing to compare.
bool instructor_tree() {
  std::string all;
  for (const auto& entry : fs::recursive_directory_iterator("tinygrad-cpp"))
    if (entry.is_regular_file()) all += read_text(entry.path().string());
  for (const auto& t : assignment::load_tasks("tests/tasks.txt"))
    if (!contains(all, kBegin + "(" + t.id + ")")) return false;
  return true;
}

struct Run {
  int status = -1;
  std::string out;
};

// Runs a shell command with make's variables from this process cleared, so a student
// copy is built with its own defaults (not this build's SANITIZE or job server), and
// TG_STUDENT_CHECK set, so the copy's own tests never start another copy.
Run shell(const std::string& command) {
  const std::string full = "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL TG_STUDENT_CHECK=1 sh -c '" + command + "' 2>&1";
  Run r;
  std::FILE* pipe = popen(full.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe)) r.out += buffer;
  const int raw = pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

// build/grade/results.json as Gradescope reads it: the score and the sum of max_score.
std::pair<double, double> gradescope_totals(const std::string& path, size_t expected_tests) {
  const std::vector<uint8_t> bytes = io::read_file(path);
  const nlohmann::json j = nlohmann::json::parse(bytes.begin(), bytes.end());
  double score = 0, max_score = 0;
  CHECK(j.at("tests").size() == expected_tests);
  for (const auto& t : j.at("tests")) {
    CHECK(t.at("name").is_string());
    CHECK(t.at("output").is_string());
    score += t.at("score").get<double>();
    max_score += t.at("max_score").get<double>();
  }
  CHECK(j.at("score").get<double>() == doctest::Approx(score));
  return {score, max_score};
}

// C++ tokens of a source text, comments dropped: identifiers, numbers, string and char
// literals, and operators (two-character ones as one token). Layout-free, so a reference
// line re-wrapped, re-indented or split over several lines gives the same tokens.
std::vector<std::string> tokens(const std::string& text) {
  std::vector<std::string> out;
  size_t i = 0;
  const auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  while (i < text.size()) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) { ++i; continue; }
    if (text.compare(i, 2, "//") == 0) { i = text.find('\n', i); if (i == std::string::npos) break; continue; }
    if (text.compare(i, 2, "/*") == 0) { i = text.find("*/", i); if (i == std::string::npos) break; i += 2; continue; }
    size_t j = i + 1;
    if (c == '"' || c == '\'') {
      while (j < text.size() && text[j] != c) j += text[j] == '\\' ? 2 : 1;
      j = std::min(j + 1, text.size());
    } else if (word(c)) {
      while (j < text.size() && (word(text[j]) || (text[j] == '.' && std::isdigit(static_cast<unsigned char>(c))))) ++j;
    } else {
      static const std::set<std::string> pairs = {"::", "->", "<<", ">>", "<=", ">=", "==", "!=", "+=", "-=", "*=", "/=", "&&", "||", "++", "--"};
      if (pairs.count(text.substr(i, 2))) j = i + 2;
    }
    out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

// Every run of `length` consecutive tokens, joined by spaces.
std::set<std::string> token_runs(const std::vector<std::string>& t, size_t length) {
  std::set<std::string> runs;
  for (size_t i = 0; i + length <= t.size(); ++i) {
    std::string run;
    for (size_t k = i; k < i + length; ++k) run += t[k] + ' ';
    runs.insert(run);
  }
  return runs;
}

// The instructor tree's solution regions (code only, hints dropped) and everything else, per file.
struct SplitSource {
  std::vector<std::pair<std::string, std::string>> regions;  // (task id, code)
  std::string outside;
};
SplitSource split_regions(const std::string& text) {
  SplitSource split;
  std::istringstream in(text);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    const size_t first = line.find_first_not_of(' ');
    const std::string trimmed = first == std::string::npos ? "" : line.substr(first);
    if (trimmed.rfind(kBegin + "(", 0) == 0) {
      inside = true;
      split.regions.push_back({trimmed.substr(kBegin.size() + 1, trimmed.find(')') - kBegin.size() - 1), ""});
    } else if (trimmed == kEnd) {
      inside = false;
    } else if (inside) {
      if (trimmed.rfind("// HINT:", 0) != 0) split.regions.back().second += line + "\n";
    } else {
      split.outside += line + "\n";
    }
  }
  return split;
}

// The names a piece of code calls in namespace kernels (`kernels::im2col(`), with the suffixes
// that mark a reference kernel (_naive, _reference) dropped: the engine's building blocks.
std::set<std::string> kernel_calls(const std::vector<std::string>& t) {
  std::set<std::string> calls;
  for (size_t i = 0; i + 3 < t.size(); ++i)
    if (t[i] == "kernels" && t[i + 1] == "::" && t[i + 3] == "(") {
      std::string name = t[i + 2];
      for (const std::string suffix : {"_naive", "_reference"})
        if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
          name.resize(name.size() - suffix.size());
      calls.insert(name);
    }
  return calls;
}

std::vector<fs::path> sources_under(const std::string& root, std::initializer_list<const char*> folders) {
  std::vector<fs::path> paths;
  for (const char* folder : folders)
    for (const auto& entry : fs::recursive_directory_iterator(fs::path(root) / folder)) {
      const std::string ext = entry.path().extension().string();
      if (entry.is_regular_file() && (ext == ".cpp" || ext == ".h")) paths.push_back(entry.path());
    }
  std::sort(paths.begin(), paths.end());
  return paths;
}

// What the student copy at `copy` still holds of the solution regions of the tree at `root`:
// 1. runs of 16 tokens from a region that occur nowhere else in the library or the lessons
//    (a re-wrapped, re-indented or re-spaced copy of reference code is still found). A
//    region's statements that call into kernels/ are left out: the engine's fast paths are
//    meant to stay, and their own tests call them with the same arguments;
// 2. a test case (or lesson) that combines three or more of the kernels a region is built
//    from (conv's im2col, gemm, col2im, sum; a reference kernel counts as its fast twin):
//    it computes that task's answer the way the reference does, whatever its names.
struct LeakCheck {
  std::vector<std::string> leaks;
  size_t solution_runs = 0;
  int regions_with_kernels = 0;
};
LeakCheck find_leaks(const std::string& root, const std::string& copy) {
  constexpr size_t kRun = 16;
  LeakCheck check;
  std::set<std::string> solution_runs, outside_runs;
  std::map<std::string, std::set<std::string>> region_kernels;  // task id -> kernels it combines
  for (const fs::path& path : sources_under(root, {"tinygrad-cpp", "lessons"})) {
    const SplitSource split = split_regions(read_text(path.string()));
    const std::set<std::string> outside = token_runs(tokens(split.outside), kRun);
    outside_runs.insert(outside.begin(), outside.end());
    for (const auto& [id, code] : split.regions) {
      const std::vector<std::string> t = tokens(code);
      std::vector<std::string> own, statement;  // the region's tokens without statements that call kernels::
      for (const std::string& token : t) {
        statement.push_back(token);
        if (token != ";" && token != "{" && token != "}") continue;
        if (std::find(statement.begin(), statement.end(), "kernels") == statement.end())
          own.insert(own.end(), statement.begin(), statement.end());
        statement.clear();
      }
      own.insert(own.end(), statement.begin(), statement.end());
      for (const std::string& run : token_runs(own, kRun))
        if (!outside_runs.count(run)) solution_runs.insert(run);
      const std::set<std::string> calls = kernel_calls(t);
      region_kernels[id].insert(calls.begin(), calls.end());
    }
  }
  for (auto it = solution_runs.begin(); it != solution_runs.end();)  // outside runs of later files too
    it = outside_runs.count(*it) ? solution_runs.erase(it) : std::next(it);
  check.solution_runs = solution_runs.size();
  for (const fs::path& path : sources_under(copy, {"tinygrad-cpp", "lessons", "tests"}))
    for (const std::string& run : token_runs(tokens(read_text(path.string())), kRun))
      if (solution_runs.count(run)) check.leaks.push_back("reference code left in " + path.string() + ": " + run);
  for (const auto& [id, kernels_used] : region_kernels) {
    std::set<std::string> parts;  // the building blocks, not the engine's whole fast paths
    for (const std::string& k : kernels_used)
      if (k != "parallel_for" && !(k.size() > 5 && k.compare(k.size() - 5, 5, "_fast") == 0)) parts.insert(k);
    if (parts.size() < 3) continue;
    ++check.regions_with_kernels;
    for (const fs::path& path : sources_under(copy, {"tests", "lessons"})) {
      const std::string text = read_text(path.string());
      for (size_t start = text.find("TEST_CASE("); start != std::string::npos;) {
        const size_t next = text.find("TEST_CASE(", start + 1);
        const std::set<std::string> calls =
            kernel_calls(tokens(text.substr(start, next == std::string::npos ? std::string::npos : next - start)));
        std::string shared;
        int count = 0;
        for (const std::string& p : parts)
          if (calls.count(p)) shared += p + " ", ++count;
        if (count >= 3)
          check.leaks.push_back(path.string() + ": a test case computes " + id + "'s answer from " + shared + "(" +
                                text.substr(start, text.find('\n', start) - start) + ")");
        start = next;
      }
    }
  }
  return check;
}

// The line of `make grade`'s table for one task.
std::string grade_line(const std::string& table, const std::string& id) {
  std::istringstream in(table);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(id + " ", 0) == 0) return line;
  return "";
}
}  // namespace

TEST_SUITE("assignment") {
  TEST_CASE("a marked region becomes a TODO with its hint and a throw, indentation kept") {
    const std::string source = "int f(int x) {\n    " + kBegin + "(relu)\n    // HINT: return the positive part\n    // HINT: of x\n"
                               "    return x > 0 ? x : 0;\n    " + kEnd + "\n}\n";
    const std::string out = assignment::strip_solutions(source, "f.cpp", kTasks);
    CHECK(out == lines({"int f(int x) {", "    // TODO(relu): return the positive part of x",
                        "    throw tg::NotImplemented(\"relu: relu's forward pass\");", "}"}));
    // Without a hint the TODO says what to implement; quotes are escaped in the throw.
    const std::string bare = kBegin + "(conv)\nsecret();\n" + kEnd + "\n";
    CHECK(assignment::strip_solutions(bare, "g.cpp", kTasks) ==
          lines({"// TODO(conv): conv's \"backward\"", "throw tg::NotImplemented(\"conv: conv's \\\"backward\\\"\");"}));
    // Text without markers passes through unchanged.
    CHECK(assignment::strip_solutions("a\nb\n", "h.cpp", kTasks) == "a\nb\n");
  }

  TEST_CASE("unbalanced, nested, unknown and malformed markers fail with file and line") {
    CHECK(contains(error_message([] { assignment::strip_solutions("x\n" + kBegin + "(relu)\ny\n", "a.cpp", kTasks); }),
                   "a.cpp:2: BEGIN SOLUTION(relu) is never closed"));
    CHECK(contains(error_message([] { assignment::strip_solutions("x\ny\n" + kEnd + "\n", "b.cpp", kTasks); }),
                   "b.cpp:3: END SOLUTION without a BEGIN SOLUTION"));
    CHECK(contains(error_message([] {
                     assignment::strip_solutions(kBegin + "(relu)\n" + kBegin + "(conv)\n" + kEnd + "\n" + kEnd + "\n", "c.cpp", kTasks);
                   }),
                   "c.cpp:2: BEGIN SOLUTION(conv) inside the region of task 'relu' opened at line 1"));
    CHECK(contains(error_message([] { assignment::strip_solutions(kBegin + "(sigmoid)\n" + kEnd + "\n", "d.cpp", kTasks); }),
                   "d.cpp:1: unknown task 'sigmoid'"));
    CHECK(contains(error_message([] { assignment::strip_solutions("  " + kBegin + " relu\n", "e.cpp", kTasks); }),
                   "e.cpp:1: malformed solution marker"));
  }

  TEST_CASE("make student refuses a listed task with no marker, no suite or no probe, and writes nothing") {
    if (!instructor_tree()) {
      MESSAGE("a student copy: its markers are already cut");
      return;
    }
    auto tasks = assignment::load_tasks("tests/tasks.txt");
    tasks.push_back({"sigmoid", 10, "sigmoid's backward rule"});
    const test::TempDir dir;
    const std::string message = error_message([&] { assignment::make_student_copy(".", dir.file("copy"), tasks); });
    CHECK(contains(message, "tests/tasks.txt: task 'sigmoid' lacks a // BEGIN SOLUTION(sigmoid) marker in the sources, "
                            "a TEST_SUITE(\"sigmoid\") in tests/, a TASK_PROBE(\"sigmoid\") in tests/"));
    CHECK(!fs::exists(dir.file("copy")));
  }

  TEST_CASE("the task list is read and checked") {
    const test::TempDir dir;
    std::ofstream(dir.file("tasks.txt")) << "# comment\nrelu 10 relu forward\nconv 20 conv backward\n";
    const auto tasks = assignment::load_tasks(dir.file("tasks.txt"));
    REQUIRE(tasks.size() == 2);
    CHECK(tasks[1].id == "conv");
    CHECK(tasks[1].points == 20);
    CHECK(tasks[1].description == "conv backward");
    std::ofstream(dir.file("bad.txt")) << "relu ten points\n";
    CHECK(contains(error_message([&] { assignment::load_tasks(dir.file("bad.txt")); }), "bad.txt:1: expected 'task-id points description'"));
  }

  TEST_CASE("the student copy of this project holds no line of any solution region") {
    if (!instructor_tree()) {
      MESSAGE("a student copy: no solution regions here to compare against");
      return;
    }
    const auto tasks = assignment::load_tasks("tests/tasks.txt");
    const test::TempDir dir;
    assignment::make_student_copy(".", dir.file("student"), tasks);

    // Every line inside a solution region of the instructor tree (ignoring hints and blank or
    // one-symbol lines) that appears nowhere outside the regions.
    std::set<std::string> solution, elsewhere;
    std::set<std::string> ids_seen;
    auto add_lines = [](const std::string& text, std::set<std::string>& to) {
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line)) {
        const size_t first = line.find_first_not_of(' ');
        if (first != std::string::npos && line.size() - first >= 4) to.insert(line.substr(first));
      }
    };
    for (const fs::path& path : sources_under(".", {"tinygrad-cpp"})) {
      const SplitSource split = split_regions(read_text(path.string()));
      add_lines(split.outside, elsewhere);
      for (const auto& [id, code] : split.regions) {
        ids_seen.insert(id);
        add_lines(code, solution);
      }
    }
    for (const auto& t : tasks) CHECK(ids_seen.count(t.id) == 1);  // every task is marked somewhere
    int unique_lines = 0, found_in_copy = 0;
    for (const auto& entry : fs::recursive_directory_iterator(dir.file("student"))) {
      if (!entry.is_regular_file()) continue;
      const std::string ext = entry.path().extension().string();
      if (ext != ".cpp" && ext != ".h" && ext != ".md" && ext != ".txt") continue;
      std::ifstream in(entry.path());
      std::string line;
      while (std::getline(in, line)) {
        const size_t first = line.find_first_not_of(' ');
        if (first == std::string::npos) continue;
        const std::string trimmed = line.substr(first);
        if (solution.count(trimmed) && !elsewhere.count(trimmed)) {
          ++found_in_copy;
          FAIL_CHECK("solution line left in " << entry.path().string() << ": " << trimmed);
        }
      }
    }
    for (const std::string& s : solution) unique_lines += !elsewhere.count(s);
    CHECK(unique_lines > 40);
    CHECK(found_in_copy == 0);
    // Each task left a TODO and a throw; the README gained the students' section.
    // It opens with "For students" and the task table, without the instructors' guide.
    const std::string readme = read_text(dir.file("student/README.md"));
    CHECK(readme.rfind("# tinygrad-cpp: your copy\n\n## For students\n", 0) == 0);
    CHECK(contains(readme, "| " + tasks[0].id + " | "));
    CHECK_FALSE(contains(readme, "100/100"));
    CHECK_FALSE(fs::exists(dir.file("student/tinygrad-cpp/course/README.md")));
    const std::vector<uint8_t> conv = io::read_file(dir.file("student/tinygrad-cpp/ops/conv.cpp"));
    const std::string conv_text(conv.begin(), conv.end());
    CHECK(contains(conv_text, "  // TODO(conv2d-backward): "));
    CHECK(contains(conv_text, "  throw tg::NotImplemented(\"conv2d-backward: "));
  }

  TEST_CASE("the student copy holds none of a solution's logic: no run of its tokens, no test built from its kernels") {
    if (!instructor_tree()) {
      MESSAGE("a student copy: no solution regions here to compare against");
      return;
    }
    const auto tasks = assignment::load_tasks("tests/tasks.txt");
    const test::TempDir dir;
    const std::string copy = dir.file("student");
    assignment::make_student_copy(".", copy, tasks);
    const LeakCheck check = find_leaks(".", copy);
    CHECK(check.solution_runs > 500);  // the check has something to look for
    CHECK(check.regions_with_kernels >= 1);  // conv2d-backward's im2col, gemm, col2im, sum
    for (const std::string& leak : check.leaks) FAIL_CHECK(leak);

    // The checker at work: a test file holding conv's reference re-wrapped three tokens a
    // line, and a test case that builds dX from im2col, gemm_naive and col2im, is caught twice.
    const SplitSource conv = split_regions(read_text("tinygrad-cpp/ops/conv.cpp"));
    REQUIRE(conv.regions.size() == 1);
    std::string rewrapped;
    const std::vector<std::string> t = tokens(conv.regions[0].second);
    for (size_t i = 0; i < t.size(); ++i) rewrapped += t[i] + (i % 3 == 2 ? "\n" : " ");
    std::ofstream(copy + "/tests/test_planted.cpp")
        << "void planted() {\n" << rewrapped << "}\n"
        << "TEST_CASE(\"a reference dx\") {\n  kernels::im2col(x, g, cols, P);\n"
        << "  kernels::gemm_naive(true, false, M, N, K, 1.f, w, M, dy, N, 0.f, dcols, N);\n"
        << "  kernels::col2im(dcols, g, dx, P);\n}\n";
    const LeakCheck planted = find_leaks(".", copy);
    int token_runs_found = 0, kernel_recipes_found = 0;
    for (const std::string& leak : planted.leaks) {
      CHECK(contains(leak, "test_planted.cpp"));
      token_runs_found += contains(leak, "reference code left in");
      kernel_recipes_found += contains(leak, "computes conv2d-backward's answer from col2im gemm im2col");
    }
    CHECK(token_runs_found > 20);
    CHECK(kernel_recipes_found == 1);
  }

  TEST_CASE("the grader: full marks exit 0 with a Gradescope export summing to the task points") {
    if (!instructor_tree()) {
      MESSAGE("a student copy: the reference solution is not here");
      return;
    }
    const auto tasks = assignment::load_tasks("tests/tasks.txt");
    int points = 0;
    for (const auto& t : tasks) points += t.points;
    CHECK(points == 100);
    const test::TempDir dir;
    const Run r = shell(std::string(TG_BIN_DIR) + "/grade " + TG_BIN_DIR + "/tests tests/tasks.txt --tasks-only --json " +
                        dir.file("results.json"));
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(contains(r.out, "score: 100/100\nevery task passes"));
    CHECK(gradescope_totals(dir.file("results.json"), tasks.size()) == std::pair<double, double>{100, 100});
  }

  TEST_CASE("the grader names the test case a suite crashed in and counts the ones that never ran") {
    const test::TempDir dir;
    // A stand-in for the test binary: lists 5 test cases, runs one, starts another and dies.
    const std::string fake = dir.file("fake_tests.sh");
    {
      std::ofstream out(fake);
      out << "#!/bin/sh\n"
             "case \"$*\" in *--list-test-cases*) printf '%s\\n' '[doctest] listing all test case names' '=====' first "
             "'the one that crashes' third fourth fifth '=====' '[doctest] unskipped test cases passing the current filters: 5'; "
             "exit 0;; esac\n"
             "echo 'TEST CASE:  first'; echo '0.001 s: first'\n"
             "echo 'TEST CASE:  the one that crashes'\n"
             "kill -SEGV $$\n";
    }
    fs::permissions(fake, fs::perms::owner_all);
    const std::string tasks_file = dir.file("tasks.txt");
    { std::ofstream(tasks_file) << "only 10 the only task (nowhere)\n"; }
    const Run r = shell(std::string(TG_BIN_DIR) + "/grade " + fake + " " + tasks_file + " --tasks-only --json " + dir.file("r.json"));
    INFO(r.out);
    CHECK(r.status == 1);  // below full marks
    CHECK(contains(r.out, "crashed or timed out in test case \"the one that crashes\"; 3 of its 5 test cases never ran"));
    // One of the five test cases passed: a fifth of the task's points.
    CHECK(contains(r.out, "only                    2/10    partial"));
    CHECK(contains(r.out, "score: 2/10"));
    CHECK(gradescope_totals(dir.file("r.json"), 1) == std::pair<double, double>{2, 10});
    // The last lines are the score and the next step, after the details.
    CHECK(r.out.rfind("score: 2/10\nnext: task 1 of 1 in the suggested order, only (10 points): the only task (nowhere)\n") >
          r.out.find("failures in full:"));
    CHECK(contains(r.out, "run its tests alone with: " + fake + " -ts=only\n"));
  }

  TEST_CASE("make_student --help prints its usage and writes nothing; it never writes into a folder that holds files") {
    const test::TempDir dir;
    const std::string tool = fs::absolute(std::string(TG_BIN_DIR) + "/make_student").string();
    const Run help = shell("cd " + dir.path.string() + " && " + tool + " --help");
    CHECK(help.status == 0);
    CHECK(contains(help.out, "usage: make_student [DESTINATION...]"));
    CHECK(fs::is_empty(dir.path));  // no folder named --help
    const Run flag = shell("cd " + dir.path.string() + " && " + tool + " -h");
    CHECK(flag.status == 2);
    CHECK(contains(flag.out, "error: unknown flag -h"));
    { std::ofstream(dir.file("work.cpp")) << "a student's work\n"; }
    const Run full = shell(tool + " " + dir.path.string());
    CHECK(full.status == 1);
    CHECK(contains(full.out, "error: make_student: " + dir.path.string() + " already exists and is not an empty folder"));
    CHECK(read_text(dir.file("work.cpp")) == "a student's work\n");
  }

  // The whole pipeline as an instructor and a student would meet it: generate the copy,
  // build it, grade it; then put one task's solution back and grade again.
  TEST_CASE("a student copy builds, fails every task with its message, and restoring one task passes exactly it") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    MESSAGE("skipped in the sanitizer build: it rebuilds a whole copy of the project (the plain build runs it)");
    return;
#endif
    if (!instructor_tree() || std::getenv("TG_STUDENT_CHECK")) {
      MESSAGE("a student copy: there is no reference solution here to restore");
      return;  // (and never a copy of a copy: TG_STUDENT_CHECK is set in the copy this test builds)
    }
    const auto tasks = assignment::load_tasks("tests/tasks.txt");
    double total = 0, walk_points = 0;  // from tests/tasks.txt: adding a task changes no number here
    const assignment::Task* conv_task = nullptr;
    for (const auto& t : tasks) {
      total += t.points;
      if (t.id == "tape-reverse-walk") walk_points = t.points;
      if (t.id == "conv2d-backward") conv_task = &t;
    }
    REQUIRE(conv_task != nullptr);
    const test::TempDir dir;
    const std::string copy = dir.file("student");
    assignment::make_student_copy(".", copy, tasks);

    // make grade in the copy: its output, and each task's line of the table.
    auto grade = [&](std::map<std::string, std::string>& lines) {
      const Run r = shell("cd " + copy + " && timeout 1200 make -j2 grade");
      for (const auto& t : tasks) lines[t.id] = grade_line(r.out, t.id);
      return r;
    };
    std::map<std::string, std::string> line;
    const Run first = grade(line);
    INFO(first.out);
    REQUIRE(contains(first.out, "score: "));
    CHECK(first.status != 0);  // below full marks, make grade fails
    // ... without make's "make: *** [Makefile:NN: grade] Error 1": the last lines are the score
    // and the first task to do, and make grade built the tests, not the lessons.
    CHECK_FALSE(contains(first.out, "make: ***"));
    CHECK(first.out.rfind(fmt::format("score: 0/{}\nnext: task 1 of {} in the suggested order, {} (", total, tasks.size(),
                                      tasks[0].id)) > first.out.find("failures in full:"));
    CHECK_FALSE(fs::exists(copy + "/build/bin/lessons"));
    CHECK(gradescope_totals(copy + "/build/grade/results.json", tasks.size()) == std::pair<double, double>{0, total});
    // Under the table each failed task has its first failed check in full.
    CHECK(contains(first.out, "failures in full:"));
    CHECK(contains(first.out, fmt::format("--- conv2d-backward ({} points), test case \"stride: ", conv_task->points)));
    for (const auto& t : tasks) {
      CAPTURE(t.id);
      CHECK(contains(line[t.id], " 0/"));
      CHECK(contains(line[t.id], "FAILED"));
      CHECK(contains(line[t.id], "not implemented: " + t.id + ": "));
    }
    CHECK(contains(first.out, fmt::format("score: 0/{}", total)));
    CHECK(contains(first.out, " 0 failed"));  // every test outside the task suites passes or waits
    CHECK(contains(first.out, "waiting for unfinished tasks"));
    // A lesson that needs a task names it instead of crashing.
    const Run lesson = shell("cd " + copy + " && make -j2 build/bin/lessons/07_saliency > /dev/null && build/bin/lessons/07_saliency --smoke --out " +
                             dir.file("out"));
    CHECK(lesson.status == tg::lesson::Lesson::kExitWaitingForTask);
    CHECK(contains(lesson.out, "error: this lesson needs task '"));

    // Put the reference walk back: that task, and only that one, now passes.
    fs::copy_file("tinygrad-cpp/core/tape.cpp", copy + "/tinygrad-cpp/core/tape.cpp", fs::copy_options::overwrite_existing);
    const Run second = grade(line);
    INFO(second.out);
    REQUIRE(contains(second.out, "score: "));
    CHECK(second.status != 0);
    CHECK(gradescope_totals(copy + "/build/grade/results.json", tasks.size()) == std::pair<double, double>{walk_points, total});
    // make lessons in the copy runs what it can, names the lessons that wait, and still
    // writes the gallery.
    const Run lessons = shell("cd " + copy + " && timeout 1200 make lessons");
    INFO(lessons.out);
    CHECK(lessons.status == 0);
    CHECK(contains(lessons.out, "waiting for unfinished tasks (make grade says which):"));
    CHECK(fs::exists(copy + "/out/index.html"));
    for (const auto& t : tasks) {
      CAPTURE(t.id);
      CHECK(contains(line[t.id], t.id == "tape-reverse-walk" ? "passed" : "FAILED"));
    }
    CHECK(contains(second.out, fmt::format("score: {}/{}", walk_points, total)));
    CHECK(contains(second.out, " 0 failed"));

    // A racy conv2d-backward: the reference, but every thread adds into the one shared dW
    // (what the hint warns against). The threads sub-case fails; a gradient check may fail too
    // when the race happens to strike while it runs, so only the threads label is certain.
    // And a relu whose rule passes the gradient at x = 0 (x >= 0): its failures show the numbers.
    std::string conv = read_text("tinygrad-cpp/ops/conv.cpp");
    const std::string own_sum = "my_dw.data() + g * out_per_group * patch";
    REQUIRE(contains(conv, own_sum));
    conv.replace(conv.find(own_sum), own_sum.size(), "dw.data() + g * out_per_group * patch");
    { std::ofstream(copy + "/tinygrad-cpp/ops/conv.cpp") << conv; }
    std::string activation = read_text("tinygrad-cpp/ops/activation.cpp");
    const std::string strictly_inside = "((x > 0.f) & (x < upper))";
    REQUIRE(contains(activation, strictly_inside));
    activation.replace(activation.find(strictly_inside), strictly_inside.size(), "((x >= 0.f) & (x < upper))");
    { std::ofstream(copy + "/tinygrad-cpp/ops/activation.cpp") << activation; }
    {
      std::ofstream task_file(dir.file("two_tasks.txt"));
      for (const auto& t : tasks)
        if (t.id == "relu" || t.id == "conv2d-backward") task_file << t.id << " " << t.points << " " << t.description << "\n";
    }
    const Run racy = shell("cd " + copy + " && timeout 1200 make -j2 build/bin/tests build/bin/grade > /dev/null && " +
                           "build/bin/grade build/bin/tests " + dir.file("two_tasks.txt") + " --tasks-only");
    INFO(racy.out);
    CHECK(racy.status == 1);
    CHECK(std::regex_search(grade_line(racy.out, "relu"), std::regex(R"(partial +2 of 3 failed: got 2, expected 0 at index 1 of )")));
    CHECK(contains(racy.out, "ERROR: got 3, expected 0 at index 0 of rule_gradient(rules::vanilla_relu, x, Tensor::full({4}, 3.f)) "
                             "(tolerance 0; 2 of 4 values differ)\n  got      {3, 3, 3, 0}\n  expected {0, 0, 3, 0}\n"));
    CHECK_FALSE(contains(racy.out, "{?}"));
    const std::string racy_line = grade_line(racy.out, "conv2d-backward");
    CHECK(std::regex_search(racy_line, std::regex(R"((partial|FAILED) +[1-6] of 6 failed \(([a-z ]+, )*threads\): )")));
  }
}
