"""Out of memory while preparing the upstream: the device gets its 421, the worker lives on.

A real allocation fails: tests/lib/failalloc.c, preloaded into the proxy, makes the
worker's first realloc(NULL, 1024) fail -- the first allocation of a connection's
output buffer (buf.c, BUF_MIN), which is the upstream's when the proxy sends its EHLO.
Before upstream.c held a reference across its handlers, that failure freed the
upstream in the middle of the handler that went on using it (a use-after-free
AddressSanitizer reports in the SANITIZE=1 build; a crash or a silent corruption in
the plain one).
"""
import os
import subprocess

import pytest

from conftest import REPO


@pytest.fixture
def failalloc(tmp_path, monkeypatch):
    """Factory: failalloc(size, count) preloads the shim into proxies started afterwards."""
    so = str(tmp_path / "failalloc.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", so,
                    os.path.join(REPO, "tests", "lib", "failalloc.c"), "-ldl"],
                   check=True, timeout=120)

    def arm(size, count=1):
        monkeypatch.setenv("LD_PRELOAD", so)
        monkeypatch.setenv("FAILALLOC_SIZE", str(size))
        monkeypatch.setenv("FAILALLOC_COUNT", str(count))
        # The shim must come before the sanitizer's allocator, to fail and forward to it.
        asan = os.environ.get("ASAN_OPTIONS", "")
        monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") +
                           "verify_asan_link_order=0")

    return arm


@pytest.mark.skipif(os.environ.get("VALGRIND") == "1",
                    reason="valgrind replaces the allocator the shim fails")
def test_output_buffer_allocation_failure_while_preparing_gives_421_and_worker_survives(
        upstream, proxy, failalloc):
    up = upstream("starttls")
    failalloc(1024, 1)
    px = proxy(up, proxy={"workers": "1"})
    with px.client(timeout=15) as c:
        r = c.read_reply()
        assert r.code == 421 and r.lines[0].startswith("4.3.0"), r
        assert c.at_eof()
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "buffer" and fail["stage"] == "ehlo", fail
    # Nothing else was freed or corrupted: the same worker prepares the next upstream.
    with px.client(timeout=15) as c:
        assert c.read_reply().code == 220
        c.expect("QUIT", 221)
    assert px.events("worker.exit") == [], px.stderr()
    assert up.wait_connections(2)
