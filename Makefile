# smtp-tls-proxy — GNU make, no autotools.
#   make              build build/smtp-tls-proxy
#   make test         install missing Debian packages; every suite on the normal build,
#                     again under ASan+UBSan, the integration suite under valgrind, and
#                     each fuzzer for FUZZ_SMOKE seconds (what CI runs)
#   make check        every suite once, on this build (SANITIZE=1 for ASan+UBSan)
#   make tlsscan      testssl.sh against each device TLS profile (part of `make test`)
#   make demo         build and show one message going through a local TLS server
#   make SANITIZE=1   ASan + UBSan build (objects in build/san/)
#   make bench        the proxy and stunnel side by side in front of one TLS sink
#                     (tests/bench; BENCH=quick in under a minute, BENCH=smoke seconds)
#   make fresh-check  `make test` in a new Debian 12 chroot from a clean clone of HEAD
#                     (root; tests/fresh-machine.sh: proves DEPS_* name every package)

CC       ?= cc
PYTHON   ?= /usr/bin/python3
PREFIX   ?= /usr/local

ifeq ($(SANITIZE),1)
BUILD    := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD    := build
SANFLAGS :=
endif

PKGS     := openssl inih libcurl jansson
WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wvla -Werror
HARDEN   := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) $(HARDEN) $(SANFLAGS) \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libev ships no .pc on Debian: plain -lev.
LIBS     := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lpthread -lcrypt
LDFLAGS_ALL := -pie -Wl,-z,relro,-z,now $(SANFLAGS) $(LDFLAGS)
ALL_CFLAGS := $(BASE_CFLAGS) $(CFLAGS)

LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJS := $(patsubst src/%.c,$(BUILD)/%.o,$(LIB_SRCS))
BIN      := $(BUILD)/smtp-tls-proxy
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

# Debian packages: build, tests (real TLS, Postfix, swaks, pytest), demo and fuzzers.
# Installed with --no-install-recommends, so every package a test runs is named here,
# never left to a Recommends (tests/fresh-machine.sh proves the list on a bare Debian 12):
#   the default ca_file, /etc/ssl/certs/ca-certificates.crt: ca-certificates;
#   swaks: libnet-ssleay-perl, libio-socket-ssl-perl (its --tls options);
#   clang: libclang-rt-dev (the libFuzzer and sanitizer runtimes);
#   prlimit, unshare, mount: util-linux, mount; man: man-db, groff-base;
#   systemd-analyze: systemd; postfix, saslpasswd2 and SASL PLAIN/LOGIN: postfix,
#   sasl2-bin, libsasl2-modules; scraping the metrics endpoint: curl; promtool (checks
#   the exposition format and conf/alerts.example.yml): prometheus, Debian's only package
#   of it (about 95 MB installed, the server comes along; its service is not needed);
#   the load balancer in front of two instances (tests/e2e/test_haproxy.py, and
#   `haproxy -c` on conf/haproxy.cfg.example): haproxy (its service, on Debian's default
#   config, listens nowhere; the test runs its own in the foreground).
#   the gateway suite's network namespaces and redirect/tproxy rules: iproute2, nftables.
#   scanning the device-side TLS of each listener profile (tests/tls, `make tlsscan`):
#   testssl.sh (an independent judge of offered protocols, suites and known weaknesses).
# OAuth2: libcurl (HTTPS to the token endpoint, its multi interface on our libev loop) and
# jansson (the endpoint's JSON): Debian's, kept, and made for exactly this.
DEPS_BUILD := build-essential pkg-config libssl-dev libev-dev libinih-dev \
              libcurl4-openssl-dev libjansson-dev
DEPS_TEST  := libcmocka-dev ca-certificates python3 python3-pytest python3-cryptography \
              swaks libnet-ssleay-perl libio-socket-ssl-perl openssl \
              postfix sasl2-bin libsasl2-modules clang libclang-rt-dev valgrind \
              iproute2 util-linux mount systemd groff-base man-db strace curl prometheus \
              stunnel4 haproxy nftables python3-pytest-xdist testssl.sh
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test check unit integration adversarial service e2e valgrind tlsscan demo clean \
        fresh-check bench bench-bins
FUZZ_SMOKE ?= 10

all: $(BIN)

$(BUILD)/%.o: src/%.c src/*.h | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libproxy.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/main.o $(BUILD)/libproxy.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(LIBS)

$(BUILD):
	mkdir -p $(BUILD)/tests

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libproxy.a tests/unit/*.h tests/lib/*.h | $(BUILD)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(BUILD)/libproxy.a $(LDFLAGS_ALL) $(LIBS) -lcmocka

# Installs only what is missing, and says what it runs.
deps:
	@missing=""; for p in $(DEPS_BUILD) $(DEPS_TEST); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections; \
	  echo "$(SUDO) apt-get install -y$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider
# The integration suite runs its files on TEST_JOBS pytest workers (pytest-xdist): most of
# its time is waiting on sockets and timers, and under valgrind each daemon is CPU-bound.
# Its tests share nothing but the machine (own tmp dirs, ephemeral ports, own daemons).
TEST_JOBS ?= 2
PAR := $(if $(filter-out 0 1,$(TEST_JOBS)),-n $(TEST_JOBS))

integration: $(BIN)
	PROXY_BIN=$(CURDIR)/$(BIN) $(PYTEST) $(PAR) tests/integration

adversarial: $(BIN)
	PROXY_BIN=$(CURDIR)/$(BIN) $(PYTEST) tests/adversarial

service: $(BIN)
	PROXY_BIN=$(CURDIR)/$(BIN) $(PYTEST) tests/service

e2e: $(BIN)
	PROXY_BIN=$(CURDIR)/$(BIN) $(PYTEST) tests/e2e

# The integration suite with every daemon process under valgrind: any memory
# error or definite leak makes the daemon exit 99, which the tests catch. Left out
# (they run on the plain and sanitizer builds): the token endpoint's self-test, which
# starts no daemon, a 20 MB body, and three of the four timed OAuth2 flow runs (the
# fourth takes the same code paths), two of the four s_client versions per device
# profile and the cross-worker resumption retries -- at valgrind's 6x they cost minutes,
# not coverage. A configuration check (`-t`, the first argument) runs unwrapped: it is
# not a long-lived path, and the sanitizer pass covers it. The suite runs serially here:
# two valgrind'd daemons at once on two cores miss the timeouts some tests keep short.
VALGRIND_SKIP ?= not test_tokenserver and not 20mb and not (unattended and not client_credentials) \
    and not (s_client_versions_per_profile and (tls1_1 or tls1_3)) and not resumption_across_workers
valgrind: $(BIN)
	rm -rf $(BUILD)/valgrind && mkdir -p $(BUILD)/valgrind
	printf '#!/bin/sh\n[ "$$1" = -t ] && exec $(CURDIR)/$(BIN) "$$@"\nexec valgrind -q --trace-children=yes --trace-children-skip=*/python3*,*/pytest-of-*/* --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --log-file=$(CURDIR)/$(BUILD)/valgrind/vg.%%p.log $(CURDIR)/$(BIN) "$$@"\n' > $(BUILD)/valgrind/proxy
	chmod +x $(BUILD)/valgrind/proxy
	PROXY_BIN=$(CURDIR)/$(BUILD)/valgrind/proxy VALGRIND=1 $(PYTEST) tests/integration \
	    -k "$(VALGRIND_SKIP)"
	@if cat $(BUILD)/valgrind/vg.*.log 2>/dev/null | grep -q .; then \
	  cat $(BUILD)/valgrind/vg.*.log; echo "valgrind: errors above"; exit 1; fi
	@echo "valgrind: 0 errors"

SUITES := $(wildcard tests/integration tests/adversarial tests/service tests/e2e tests/gateway \
            tests/bench)

# One pytest per suite: each has its own conftest.
check: all bench-bins
	$(MAKE) unit
	@set -e; for s in $(SUITES); do echo "== $$s"; par=""; \
	  [ "$$s" = tests/integration ] && par="$(PAR)"; \
	  PROXY_BIN=$(CURDIR)/$(BIN) $(PYTEST) $$par $$s; done

# testssl.sh against a starttls and an implicit listener of each tls_profile (about 3 min):
# once per `make test`, on the plain build only -- a scan is hundreds of handshakes that tell
# the sanitizer and valgrind nothing the integration suite does not. The summary table (for
# the record: what each profile offers) is printed and kept in $(BUILD)/tlsscan.txt.
tlsscan: $(BIN)
	PROXY_BIN=$(CURDIR)/$(BIN) TLSSCAN_OUT=$(CURDIR)/$(BUILD)/tlsscan.txt $(PYTEST) -s tests/tls

test: deps
	$(MAKE) check
	$(MAKE) tlsscan
	$(MAKE) check SANITIZE=1
	$(MAKE) valgrind
	$(if $(wildcard tests/fuzz/fuzz.mk),$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE))

demo: deps
	$(MAKE) all
	$(PYTHON) tests/demo.py $(CURDIR)/$(BIN)

# `make bench`: the load client and TLS sink of tests/bench, then the driver (see its
# header). BENCH=full (default, under ten minutes), quick (under one), smoke (seconds);
# BENCH_REUSE=N adds a column with [upstream] reuse = N. No figure is timed in `make test`:
# it runs tests/bench/test_smoke.py, a BENCH=smoke run that checks the harness works.
BENCH        ?= full
BENCH_BINS   := $(BUILD)/bench/loadgen $(BUILD)/bench/sink

$(BUILD)/bench/%: tests/bench/%.c | $(BUILD)
	@mkdir -p $(BUILD)/bench
	$(CC) $(ALL_CFLAGS) -pthread -o $@ $< $(LDFLAGS_ALL) $(shell pkg-config --libs openssl)

bench-bins: $(BENCH_BINS)

bench: $(BIN) $(BENCH_BINS)
	@command -v stunnel >/dev/null || { echo "bench: stunnel missing (make deps)"; exit 1; }
	$(PYTHON) tests/bench/bench.py --mode $(BENCH) --proxy $(CURDIR)/$(BIN) \
	    --bindir $(CURDIR)/$(BUILD)/bench

clean:
	rm -rf build

# Slow (debootstrap, every package, the whole suite): not part of `make test`.
fresh-check:
	$(SUDO) sh tests/fresh-machine.sh $(CURDIR)

# Fragments: install/uninstall, fuzzers, the DATA scanner's micro-benchmark.
-include mk/install.mk
-include tests/fuzz/fuzz.mk
-include tests/bench/datascan.mk
