# The DATA scanner's micro-benchmark; included by the top-level Makefile. Not a test:
# it prints MB/s, asserts no timing, and is not part of `make test`.
#   make bench-datascan                 200 MB bodies (base64, text, short lines)
#   make bench-datascan DATASCAN_MB=20  smaller

DATASCAN_MB ?= 200

.PHONY: bench-datascan

$(BUILD)/tests/bench-datascan: tests/bench/datascan.c tests/lib/data_ref.h $(BUILD)/libproxy.a | $(BUILD)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(BUILD)/libproxy.a $(LDFLAGS_ALL) $(LIBS)

bench-datascan: $(BUILD)/tests/bench-datascan
	./$(BUILD)/tests/bench-datascan $(DATASCAN_MB)
