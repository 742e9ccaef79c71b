"""Running out of descriptors: the proxy says so and pauses accepting instead of spinning."""
import os
import socket
import stat
import time

import daemon


def test_out_of_descriptors_pauses_accepting_and_recovers(upstream, proxy, tmp_path, monkeypatch):
    up = upstream("starttls")
    wrapper = tmp_path / "proxy-low-nofile"
    # A hard limit of 40: the daemon cannot raise it, so the warning must come.
    wrapper.write_text("#!/bin/sh\nexec prlimit --nofile=40:40 \"%s\" \"$@\"\n" % daemon.PROXY_BIN)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(daemon, "PROXY_BIN", str(wrapper))
    px = proxy(up, proxy={"workers": "1", "max_sessions": "1000"})
    warn, = px.wait_event("proxy.nofile")
    # valgrind keeps a few descriptors of the 40 for itself.
    assert int(warn["limit"]) <= 40 and int(warn["wanted"]) >= 2000
    held = []
    try:
        # Far more connections than 40 descriptors allow; the kernel queues the rest.
        for _ in range(60):
            held.append(socket.create_connection(("127.0.0.1", px.port), timeout=5))
        paused = px.wait_event("listener.accept", timeout=10)
        assert paused and "Too many open files" in paused[0]["msg"], px.stderr()[-2000:]
        time.sleep(1.5)
        # Paused for 0.5 s at a time, so a handful of lines, not thousands (a spin).
        assert len(px.events("listener.accept")) <= 10, len(px.events("listener.accept"))
    finally:
        for s in held:
            s.close()
    # Descriptors come back: the proxy serves again.
    end = time.monotonic() + 15
    while True:
        try:
            with px.client() as c:
                r = c.read_reply()
                if r.code == 220:
                    c.expect("QUIT", 221)
                    break
        except OSError:
            pass
        assert time.monotonic() < end, px.stderr()[-2000:]
        time.sleep(0.2)
