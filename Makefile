# smtp-tls-proxy — GNU make, no autotools.
#   make              build build/smtp-tls-proxy
#   make test         install missing Debian packages; every suite on the normal build,
#                     again under ASan+UBSan, the integration suite under valgrind, and
#                     each fuzzer for FUZZ_SMOKE seconds (what CI runs)
#   make check        every suite once, on this build (SANITIZE=1 for ASan+UBSan)
#   make demo         build and show one message going through a local TLS server
#   make SANITIZE=1   ASan + UBSan build (objects in build/san/)
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
#   of it (about 95 MB installed, the server comes along; its service is not needed).
# OAuth2: libcurl (HTTPS to the token endpoint, its multi interface on our libev loop) and
# jansson (the endpoint's JSON): Debian's, kept, and made for exactly this.
DEPS_BUILD := build-essential pkg-config libssl-dev libev-dev libinih-dev \
              libcurl4-openssl-dev libjansson-dev
DEPS_TEST  := libcmocka-dev ca-certificates python3 python3-pytest python3-cryptography \
              swaks libnet-ssleay-perl libio-socket-ssl-perl openssl \
              postfix sasl2-bin libsasl2-modules clang libclang-rt-dev valgrind \
              iproute2 util-linux mount systemd groff-base man-db strace curl prometheus
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test check unit integration adversarial service e2e valgrind demo clean fresh-check
FUZZ_SMOKE ?= 20

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

integration: $(BIN)
	PROXY_BIN=$(CURDIR)/$(BIN) $(PYTEST) tests/integration

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
# fourth takes the same code paths) -- at valgrind's 6x they cost minutes, not coverage.
VALGRIND_SKIP ?= not test_tokenserver and not 20mb and not (unattended and not client_credentials)
valgrind: $(BIN)
	rm -rf $(BUILD)/valgrind && mkdir -p $(BUILD)/valgrind
	printf '#!/bin/sh\nexec valgrind -q --trace-children=yes --trace-children-skip=*/python3*,*/pytest-of-*/* --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --log-file=$(CURDIR)/$(BUILD)/valgrind/vg.%%p.log $(CURDIR)/$(BIN) "$$@"\n' > $(BUILD)/valgrind/proxy
	chmod +x $(BUILD)/valgrind/proxy
	PROXY_BIN=$(CURDIR)/$(BUILD)/valgrind/proxy VALGRIND=1 $(PYTEST) tests/integration \
	    -k "$(VALGRIND_SKIP)"
	@if cat $(BUILD)/valgrind/vg.*.log 2>/dev/null | grep -q .; then \
	  cat $(BUILD)/valgrind/vg.*.log; echo "valgrind: errors above"; exit 1; fi
	@echo "valgrind: 0 errors"

SUITES := $(wildcard tests/integration tests/adversarial tests/service tests/e2e)

# One pytest per suite: each has its own conftest.
check: all
	$(MAKE) unit
	@set -e; for s in $(SUITES); do echo "== $$s"; PROXY_BIN=$(CURDIR)/$(BIN) $(PYTEST) $$s; done

test: deps
	$(MAKE) check
	$(MAKE) check SANITIZE=1
	$(MAKE) valgrind
	$(if $(wildcard tests/fuzz/fuzz.mk),$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE))

demo: deps
	$(MAKE) all
	$(PYTHON) tests/demo.py $(CURDIR)/$(BIN)

clean:
	rm -rf build

# Slow (debootstrap, every package, the whole suite): not part of `make test`.
fresh-check:
	$(SUDO) sh tests/fresh-machine.sh $(CURDIR)

# Fragments: install/uninstall, fuzzers, the DATA scanner's micro-benchmark.
-include mk/install.mk
-include tests/fuzz/fuzz.mk
-include tests/bench/datascan.mk
