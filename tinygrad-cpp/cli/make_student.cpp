// make_student: writes the student copy of the project (see tinygrad-cpp/course/assignment.h).
//   build/bin/make_student [DESTINATION]      (default: build/student; run from the project root)
// `make student DIR=...` runs it. It never writes into a folder that holds anything: a student
// copy with work in it is not overwritten, and a mistyped flag cannot become a folder.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

#include "tinygrad-cpp/cli/args.h"
#include "tinygrad-cpp/core/tensor.h"
#include "tinygrad-cpp/course/assignment.h"

int main(int argc, char** argv) {
  tg::cli::Args args("make_student",
                     "Write the student copy of this project: every region between // BEGIN SOLUTION(task) and\n"
                     "// END SOLUTION becomes a TODO and a throw, and README.md becomes the students' guide\n"
                     "(tinygrad-cpp/course/STUDENT_README.md with the task table of tests/tasks.txt). Run it from\n"
                     "the project root; the destination must not exist yet, or be empty.");
  args.positional("DESTINATION", "the folder to write (default build/student, which `make clean` deletes)");
  args.parse(argc, argv);
  if (args.rest().size() > 1) args.fail("one destination folder, got " + std::to_string(args.rest().size()));
  const std::string destination = args.rest().empty() ? "build/student" : args.rest()[0];
  if (destination.rfind('-', 0) == 0) args.fail("unknown flag " + destination + " (a destination folder cannot start with '-')");
  try {
    namespace fs = std::filesystem;
    if (fs::exists(destination) && !(fs::is_directory(destination) && fs::is_empty(destination)))
      throw tg::Error(fmt::format("make_student: {} already exists and is not an empty folder (remove it, or choose another)",
                                  destination));
    const auto tasks = tg::assignment::load_tasks("tests/tasks.txt");
    tg::assignment::make_student_copy(".", destination, tasks);
    fmt::print("wrote the student copy to {} ({} tasks cut out); there, `make grade` builds it and grades the tasks\n",
               destination, tasks.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", tg::printable(e.what()).c_str());
    return 1;
  }
}
