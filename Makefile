# tinygrad-cpp — the only build entry point.
#
#   make                 build the library, tests, tgc and lessons into build/
#   make test            install missing Debian packages, build, run every test suite
#   make test SANITIZE=1 the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make setup           install the Debian packages the project needs (no-op when present)
#   make fuzz            libFuzzer (clang, ASan + UBSan) on every reader, FUZZ_SECONDS each
#   make grade           score table of the assignment tasks (build/grade/results.json for Gradescope),
#                        ending with the score and the next task; builds the tests, not the lessons;
#                        TSAN=1 builds under ThreadSanitizer first
#   make student DIR=d   write the student copy to d (default build/student)
#   make test-browser    the explorer page (tgc serve) in a real browser: Debian's chromium driven by
#                        puppeteer-core (npm, into build/browser/node_modules); screenshots in build/browser/
#   make clean           remove build/ and out/

CXX      ?= g++
ARCH     ?= -march=native
SANITIZE ?= 0
TSAN     ?= 0

ifeq ($(SANITIZE),1)
BUILD    := build/sanitize
# (-Wno-maybe-uninitialized: g++ 12 at -O1 with the sanitizers warns inside <regex>'s own
# std::function moves, a known false positive that would bury real warnings.)
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -Wno-maybe-uninitialized
LDOPT    := -fsanitize=address,undefined
else ifeq ($(TSAN),1)
# ThreadSanitizer: `make grade TSAN=1` fails a task whose code races (two threads adding
# into the same dW without partial sums, say), even when the numbers happen to come out right.
BUILD    := build/tsan
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LDOPT    := -fsanitize=thread
else
BUILD    := build
OPT      := -O3 -g0
LDOPT    :=
endif

# Debian's cpp-httplib is a compiled library: its header must see the defines it was built with.
HTTPLIB_DEFINES := -DCPPHTTPLIB_OPENSSL_SUPPORT -DCPPHTTPLIB_ZLIB_SUPPORT -DCPPHTTPLIB_BROTLI_SUPPORT
CXXFLAGS := -std=c++20 $(OPT) $(ARCH) $(HTTPLIB_DEFINES) -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers -I. -I$(BUILD)/gen -isystem /usr/include/opencv4 -MMD -MP -pthread
LDLIBS   := -lcpp-httplib -lfmt -lstb -ljpeg -lz -lopencv_imgproc -lopencv_core -pthread

# One short line per file ("CXX tinygrad-cpp/core/tape.cpp"); `make V=1` prints the full commands.
# Builds use every core unless -j is given.
V ?= 0
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-5s %s\n' $(1) $(2)
endif
ifeq ($(MAKELEVEL)$(filter -j%,$(MAKEFLAGS)),0)
MAKEFLAGS += -j$(shell nproc)
endif

FUZZ_PACKAGES := clang
PACKAGES := doctest-dev libstb-dev libfmt-dev zlib1g-dev nlohmann-json3-dev dataset-fashion-mnist \
            libflatbuffers-dev flatbuffers-compiler fonts-dejavu-core libjpeg-dev \
            libopencv-imgproc-dev libcpp-httplib-dev
# Only `make test-browser` needs a browser.
BROWSER_PACKAGES := chromium

# The library is every .cpp under tinygrad-cpp/ but the programs' mains in cli/.
CLI_MAINS := tgc gallery grade make_student
LIB_SRC  := $(sort $(filter-out $(CLI_MAINS:%=tinygrad-cpp/cli/%.cpp),$(wildcard tinygrad-cpp/*/*.cpp)))
TEST_SRC := $(sort $(wildcard tests/*.cpp))
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/lib/libtinygrad.a
TESTS    := $(BUILD)/bin/tests
TGC      := $(BUILD)/bin/tgc
GALLERY  := $(BUILD)/bin/gallery
TOOLS    := $(BUILD)/bin/make_student $(BUILD)/bin/grade
LESSON_SRC := $(sort $(wildcard lessons/*.cpp))
LESSONS  := $(LESSON_SRC:lessons/%.cpp=$(BUILD)/bin/lessons/%)

.PHONY: test-browser all test setup check-packages photo-model clean train sample lessons lesson student grade fuzz
.DEFAULT_GOAL := all
.SECONDARY:

all: $(LIB) $(TESTS) $(TGC) $(GALLERY) $(LESSONS) $(TOOLS)

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(call say,CXX,$<)
	$(Q)$(CXX) $(CXXFLAGS) -c $< -o $@

# The TFLite reader's accessors and Verifier, generated from our subset of the format.
$(BUILD)/gen/tflite_generated.h: tinygrad-cpp/models/tflite.fbs
	@mkdir -p $(dir $@)
	$(call say,FLATC,$<)
	$(Q)flatc --cpp --scoped-enums -o $(BUILD)/gen $<
$(BUILD)/obj/tinygrad-cpp/models/tflite.o $(BUILD)/obj/tests/test_models.o: $(BUILD)/gen/tflite_generated.h

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

$(BUILD)/obj/tests/test_tgc.o $(BUILD)/obj/tests/test_lessons.o $(BUILD)/obj/tests/test_assignment.o \
  $(BUILD)/obj/tests/test_readme.o $(BUILD)/obj/tests/test_serve.o: CXXFLAGS += -DTG_BIN_DIR='"$(BUILD)/bin"'

# The programs some tests run (tgc, the grader, the lessons); make grade asks for fewer.
TEST_PROGRAMS ?= $(TGC) $(GALLERY) $(LESSONS) $(TOOLS)
$(TESTS): $(TEST_OBJ) $(LIB) | $(TEST_PROGRAMS)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)
	$(Q)$(CXX) $(LDOPT) -o $@ $(TEST_OBJ) $(LIB) $(LDLIBS)

$(TGC): $(BUILD)/obj/tinygrad-cpp/cli/tgc.o $(LIB)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)
	$(Q)$(CXX) $(LDOPT) -o $@ $< $(LIB) $(LDLIBS)

$(GALLERY): $(BUILD)/obj/tinygrad-cpp/cli/gallery.o $(LIB)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)
	$(Q)$(CXX) $(LDOPT) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/bin/%: $(BUILD)/obj/tinygrad-cpp/cli/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)
	$(Q)$(CXX) $(LDOPT) -o $@ $< $(LIB) $(LDLIBS)

# Assignments: `make student` writes the student copy to build/student/ (replaced each time;
# `make clean` deletes it), `make student DIR=../my-copy` to a new or empty folder of your
# choice. `make grade` prints the score table (in this tree or in a student copy).
student: $(BUILD)/bin/make_student
	@$(if $(DIR),,rm -rf build/student)
	@$(BUILD)/bin/make_student $(or $(DIR),build/student)

# make grade builds the tests, tgc and the grader, not the lessons (`make lessons` builds and runs
# them), so the lessons' test suite is not run here. Its output ends with the score and what to
# do next. Below full marks make must exit non-zero, but a failed recipe makes make add
# `make: *** [Makefile:NN: grade] Error 1`, which reads like a broken build; a make that dies of
# SIGPIPE prints nothing (as under `| head`). So the recipe prints the summary, then ends this
# make with SIGPIPE: exit status 141, and nothing after the summary. (Under another make, or
# when the grader itself fails to run, it exits with the grader's status as usual.)
grade: check-packages photo-model
	@$(MAKE) --no-print-directory $(TESTS) $(BUILD)/bin/grade TEST_PROGRAMS="$(TGC) $(TOOLS)"
	@mkdir -p $(BUILD)/grade
	@$(BUILD)/bin/grade $(TESTS) tests/tasks.txt --json $(BUILD)/grade/results.json --skip-suites lessons; status=$$?; \
	  if [ $$status -eq 1 ] && [ "$(MAKELEVEL)" = 0 ]; then kill -PIPE $$PPID; fi; exit $$status

$(BUILD)/bin/lessons/%: $(BUILD)/obj/lessons/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)
	$(Q)$(CXX) $(LDOPT) -o $@ $< $(LIB) $(LDLIBS)

# `make fuzz` builds one libFuzzer target per reader (tests/fuzz/*.cpp) with clang, ASan and
# UBSan, and runs each for FUZZ_SECONDS on its seeds (tests/fuzz/seeds/) and the hostile files
# found so far (tests/fuzz/regressions/). Any crash, sanitizer report, leak, timeout or input
# using more than 1 GB fails it. New inputs are kept in build/fuzz/corpus/.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := safetensors idx npy image tflite
FUZZ_DIR     := build/fuzz
FUZZ_FLAGS   := -std=c++20 -O1 -g -fno-omit-frame-pointer $(ARCH) $(HTTPLIB_DEFINES) -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined -I. -Ibuild/gen -isystem /usr/include/opencv4 -pthread
FUZZ_OBJ     := $(LIB_SRC:%.cpp=$(FUZZ_DIR)/obj/%.o)
$(FUZZ_DIR)/obj/%.o: %.cpp build/gen/tflite_generated.h
	@mkdir -p $(dir $@)
	@echo "  CXX (fuzz) $<"
	@clang++ $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_DIR)/bin/%: tests/fuzz/%.cpp tests/fuzz/harness.h $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LINK (fuzz) $@"
	@clang++ $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJ) -o $@ $(LDLIBS)
ifneq ($(BUILD),build)
build/gen/tflite_generated.h: tinygrad-cpp/models/tflite.fbs
	@mkdir -p $(dir $@)
	flatc --cpp --scoped-enums -o build/gen $<
endif
fuzz: check-packages
	@command -v clang++ >/dev/null || { sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; echo "fuzz: installing clang"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $(FUZZ_PACKAGES); }
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=$(FUZZ_DIR)/bin/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  extra=""; [ -d tests/fuzz/regressions/$$t ] && extra=tests/fuzz/regressions/$$t; \
	  ASAN_OPTIONS=detect_leaks=1 $(FUZZ_DIR)/bin/$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -timeout=10 \
	    -max_len=65536 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crash-$$t- \
	    $(FUZZ_DIR)/corpus/$$t tests/fuzz/seeds/$$t $$extra > $(FUZZ_DIR)/$$t.log 2>&1 || \
	    { tail -30 $(FUZZ_DIR)/$$t.log; echo "fuzz: $$t FAILED (log $(FUZZ_DIR)/$$t.log)"; exit 1; }; \
	  grep -E "stat::number_of_executed_runs|cov: " $(FUZZ_DIR)/$$t.log | tail -2 | tr '\n' ' '; echo; \
	done

# `make lessons` runs every lesson, then writes out/index.html; `make lesson N=07` runs one.
lessons: check-packages photo-model
	@$(MAKE) --no-print-directory all
	@failed=""; waiting=""; for l in $(LESSONS); do echo; echo "=== $$(basename $$l)"; \
	  $$l; status=$$?; \
	  if [ $$status -eq 3 ]; then waiting="$$waiting $$(basename $$l)"; \
	  elif [ $$status -ne 0 ]; then failed="$$failed $$(basename $$l)"; fi; \
	  done; \
	  mkdir -p out; $(GALLERY) out; \
	  if [ -n "$$waiting" ]; then echo "waiting for unfinished tasks (make grade says which):$$waiting"; fi; \
	  if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi
	@echo "open out/index.html in a browser"

lesson: check-packages photo-model
	@$(MAKE) --no-print-directory all
	@l=$$(ls $(BUILD)/bin/lessons/$(N)_* 2>/dev/null | head -1); \
	  if [ -z "$$l" ]; then echo "no lesson $(N): try one of $$(ls $(BUILD)/bin/lessons | tr '\n' ' ')"; exit 2; fi; \
	  $$l && $(GALLERY) out

# `make test` installs what is missing first, then builds and runs every suite.
# The last line it prints is "N passed, N failed" (test cases); in a student copy it adds
# how many tests wait for tasks that are not implemented yet.
test: check-packages photo-model
	@$(MAKE) --no-print-directory all
	@mkdir -p $(BUILD)
	@set -o pipefail; ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(TESTS) --no-intro=true 2>&1 | tee $(BUILD)/test.log; status=$$?; \
	  awk '/^\[doctest\] test cases:/ { gsub(/\|/, " "); passed = $$5; failed = $$7 } /^\[tasks\]/ { waiting = $$2 } \
	       END { if (waiting) print passed - waiting " passed, " failed " failed, " waiting " waiting for unfinished tasks"; \
	             else print passed " passed, " failed " failed" }' $(BUILD)/test.log; \
	  exit $$status
SHELL := /bin/bash

# `make test-browser`: tgc serve on a free port, then tests/browser/explorer.mjs drives Debian's chromium
# (headless) through the page with puppeteer-core, pinned in tests/browser/package-lock.json and installed
# by npm ci into build/browser/ (no browser download). Screenshots: build/browser/*.png.
test-browser: check-packages photo-model
	@missing=""; for p in $(BROWSER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; echo "test-browser: installing$$missing"; \
	    $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; fi
	@command -v npm >/dev/null || $(MAKE) --no-print-directory setup
	@$(MAKE) --no-print-directory $(TGC)
	@mkdir -p build/browser
	@cp tests/browser/package.json tests/browser/package-lock.json build/browser/
	@cd build/browser && { [ -d node_modules/puppeteer-core ] && cmp -s package-lock.json node_modules/.package-lock.json.pinned || \
	  { PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.package-lock.json.pinned; }; }
	@NODE_PATH=build/browser/node_modules node tests/browser/explorer.mjs --tgc $(TGC) --out build/browser

check-packages:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "missing packages:$$missing -> make setup"; $(MAKE) --no-print-directory setup; fi

# The photo model (assets/models/, ignored by git): npm pack, sha256 checks, cut out.
photo-model:
	@bash assets/get_photo_model.sh

setup:
	@command -v npm >/dev/null || { sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; echo "setup: installing npm"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq npm; }
	@bash assets/get_photo_model.sh
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -z "$$missing" ]; then echo "setup: all packages present"; exit 0; fi; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "setup: installing$$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing

clean:
	rm -rf build out

# Reproduces the shipped weights (README, "The shipped model").
DATA ?= /usr/share/datasets/fashion-mnist
train: check-packages
	@$(MAKE) --no-print-directory $(TGC)
	$(TGC) train --data $(DATA) --epochs 6 --batch 64 --lr 0.002 --seed 0 --out assets/fashion_cnn.safetensors
	@rm -f assets/fashion_cnn.ckpt.safetensors

# Rewrites assets/fashion-sample/: the first 1,000 test images and labels of $(DATA).
sample:
	@mkdir -p assets/fashion-sample
	{ printf '\x00\x00\x08\x03\x00\x00\x03\xe8\x00\x00\x00\x1c\x00\x00\x00\x1c'; \
	  zcat $(DATA)/t10k-images-idx3-ubyte.gz | tail -c +17 | head -c 784000; } | gzip -9n > assets/fashion-sample/t10k-images-idx3-ubyte.gz
	{ printf '\x00\x00\x08\x01\x00\x00\x03\xe8'; \
	  zcat $(DATA)/t10k-labels-idx1-ubyte.gz | tail -c +9 | head -c 1000; } | gzip -9n > assets/fashion-sample/t10k-labels-idx1-ubyte.gz

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/obj/tinygrad-cpp/cli/tgc.d $(BUILD)/obj/tinygrad-cpp/cli/gallery.d \
  $(BUILD)/obj/tinygrad-cpp/cli/make_student.d $(BUILD)/obj/tinygrad-cpp/cli/grade.d \
  $(LESSON_SRC:%.cpp=$(BUILD)/obj/%.d)
