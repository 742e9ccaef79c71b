# libFuzzer targets for the pure parsers; included at the end of the top-level Makefile.
#   make fuzz                    build, then run every target FUZZ_SECONDS (default 60) each
#   make fuzz-build              build only (build/fuzz/fuzz_*)
#   make fuzz-run-NAME           run one target, e.g. make fuzz-run-data FUZZ_SECONDS=600
#   make fuzz-regress            run each target once over its seeds and tests/fuzz/crashes
#   make fuzz-clean              remove build/fuzz
# New inputs go to build/fuzz/corpus/NAME (kept between runs); the committed seeds in
# tests/fuzz/corpus/NAME are only read. A crash is saved as build/fuzz/crashes/NAME-*.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?= -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -g -O1
FUZZ_CFLAGS  := $(FUZZ_FLAGS) -std=c11 -D_GNU_SOURCE -Isrc -Wall -Wextra \
                $(shell pkg-config --cflags openssl inih jansson 2>/dev/null)
FUZZ_LIBS    := $(shell pkg-config --libs openssl inih jansson 2>/dev/null || echo -lssl -lcrypto -linih -ljansson) \
                -lev -lpthread -lcrypt
# Options for every run; FUZZ_OPTS_NAME adds to one target's.
FUZZ_RUNOPTS ?= -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_OPTS_reply  ?= -max_len=17000
FUZZ_OPTS_config ?= -max_len=4096
FUZZ_OPTS_hdrfrom ?= -max_len=4096
FUZZ_OPTS_httpreq ?= -max_len=5000

FUZZ_DIR     := build/fuzz
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_NAMES))
FUZZ_LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c))
FUZZ_LIB_OBJS := $(patsubst src/%.c,$(FUZZ_DIR)/obj/%.o,$(FUZZ_LIB_SRCS))

.PHONY: fuzz fuzz-build fuzz-regress fuzz-clean $(addprefix fuzz-run-,$(FUZZ_NAMES))

fuzz: $(addprefix fuzz-run-,$(FUZZ_NAMES))

fuzz-build: $(FUZZ_BINS)

$(FUZZ_LIB_OBJS): $(FUZZ_DIR)/obj/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/libproxy.a: $(FUZZ_LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_BINS): $(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libproxy.a $(wildcard src/*.h)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_DIR)/libproxy.a $(FUZZ_LIBS)

# stdin is /dev/null so that no input can make a target wait on the terminal.
# The run's log is build/fuzz/NAME.log; its last "#N DONE" line is the summary.
$(addprefix fuzz-run-,$(FUZZ_NAMES)): fuzz-run-%: $(FUZZ_DIR)/fuzz_%
	@mkdir -p $(FUZZ_DIR)/corpus/$* $(FUZZ_DIR)/crashes
	@dict=""; [ -f tests/fuzz/$*.dict ] && dict="-dict=tests/fuzz/$*.dict"; \
	echo "fuzz $*: $(FUZZ_SECONDS)s, log $(FUZZ_DIR)/$*.log"; \
	if ./$< $(FUZZ_RUNOPTS) $(FUZZ_OPTS_$*) $$dict -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/crashes/$*- \
	    $(FUZZ_DIR)/corpus/$* tests/fuzz/corpus/$* \
	    </dev/null >$(FUZZ_DIR)/$*.log 2>&1; then \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$*.log); \
	  echo "fuzz $*: ok, $$execs execs: $$(grep -E '^#[0-9]+[[:space:]]+DONE' $(FUZZ_DIR)/$*.log | tail -n 1)"; \
	else \
	  tail -n 60 $(FUZZ_DIR)/$*.log; \
	  echo "fuzz $*: FAILED, input in $(FUZZ_DIR)/crashes/ (log $(FUZZ_DIR)/$*.log)"; \
	  exit 1; \
	fi

# Every seed and every saved crash once: quick, for CI. Fails while a crash is unfixed.
fuzz-regress: $(FUZZ_BINS)
	@failed=""; for n in $(FUZZ_NAMES); do \
	  set -- tests/fuzz/corpus/$$n/*; \
	  [ -d tests/fuzz/crashes/$$n ] && set -- "$$@" tests/fuzz/crashes/$$n/*; \
	  if $(FUZZ_DIR)/fuzz_$$n -runs=1 "$$@" </dev/null >$(FUZZ_DIR)/$$n.regress.log 2>&1; then \
	    echo "fuzz-regress $$n: ok, $$# inputs"; \
	  else \
	    grep -E 'runtime error|ERROR|Running:' $(FUZZ_DIR)/$$n.regress.log | tail -n 4; \
	    echo "fuzz-regress $$n: FAILED (log $(FUZZ_DIR)/$$n.regress.log)"; failed="$$failed $$n"; \
	  fi; \
	done; [ -z "$$failed" ]

fuzz-clean:
	rm -rf $(FUZZ_DIR)
