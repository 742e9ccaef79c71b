# smtp-tls-proxy — GNU make, no autotools.
#   make              build build/smtp-tls-proxy
#   make test         install missing Debian packages, build, run every test
#   make demo         build and show one message going through a local TLS server
#   make SANITIZE=1   ASan + UBSan build (objects in build/san/)

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

PKGS     := openssl inih
WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wvla -Werror
HARDEN   := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) $(HARDEN) $(SANFLAGS) \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libev ships no .pc on Debian: plain -lev.
LIBS     := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lpthread
LDFLAGS_ALL := -pie -Wl,-z,relro,-z,now $(SANFLAGS) $(LDFLAGS)
ALL_CFLAGS := $(BASE_CFLAGS) $(CFLAGS)

LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJS := $(patsubst src/%.c,$(BUILD)/%.o,$(LIB_SRCS))
BIN      := $(BUILD)/smtp-tls-proxy
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

# Debian packages: build, tests (real TLS, Postfix, swaks, pytest) and demo.
DEPS_BUILD := build-essential pkg-config libssl-dev libev-dev libinih-dev
DEPS_TEST  := libcmocka-dev python3 python3-pytest python3-cryptography swaks openssl \
              postfix sasl2-bin libsasl2-modules clang
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test unit integration e2e demo clean check-config

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

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libproxy.a tests/unit/*.h | $(BUILD)
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

integration: $(BIN)
	PROXY_BIN=$(CURDIR)/$(BIN) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

e2e: $(BIN)
	PROXY_BIN=$(CURDIR)/$(BIN) $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) e2e

demo: deps
	$(MAKE) all
	$(PYTHON) tests/demo.py $(CURDIR)/$(BIN)

clean:
	rm -rf build
