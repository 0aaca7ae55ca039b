// The doctest runner for every suite in tests/. After the run it says how many test
// cases waited for assignment tasks that are not implemented yet (student copies only).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

namespace test {
std::string waiting_summary();
}

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int status = context.run();
  if (context.shouldExit()) return status;
  const std::string waiting = test::waiting_summary();
  if (!waiting.empty()) std::printf("%s\n", waiting.c_str());
  return status;
}
