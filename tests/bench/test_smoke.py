"""make bench works: a seconds-long BENCH=smoke run prints its whole table.

No figure is asserted (they depend on the machine, and make test must not time anything):
this proves the harness itself -- the sink, the load client, the proxy and stunnel in front
of the sink with verification on, the counters -- still runs end to end, so `make bench` is
not found broken on the day someone needs it. Run with the build's own bench binaries:
PROXY_BIN's directory holds bench/ (make check builds them).
"""
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROXY_BIN = os.environ.get("PROXY_BIN") or os.path.join(REPO, "build", "smtp-tls-proxy")
ROWS = ("MB message, MB/s", "new sessions/s", "relay CPU per session", "messages/s",
        "pipelined", "connect → 250", "RSS per idle session")


def test_smoke_run_prints_every_figure_for_proxy_and_stunnel_and_the_ratios_last():
    bindir = os.path.join(os.path.dirname(PROXY_BIN), "bench")
    if not os.access(os.path.join(bindir, "loadgen"), os.X_OK):
        pytest.fail("bench binaries not built in %s (make bench-bins)" % bindir)
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "bench.py"), "--mode", "smoke",
                        "--proxy", PROXY_BIN, "--bindir", bindir],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    table = [ln for ln in lines if ln.startswith("| ")]
    assert table[0] == ("| figure | proxy | proxy reuse=10 | stunnel | direct | "
                        "proxy / stunnel | proxy reuse=10 / stunnel |"), table[0]
    for name in ROWS:
        row = [ln for ln in table if name in ln]
        assert len(row) == 1, (name, r.stdout)
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        # Both proxies and stunnel have a number; the ratios are bold numbers.
        assert cells[1][0].isdigit() and cells[2][0].isdigit() and cells[3][0].isdigit(), row
        for c in cells[5:7]:
            assert c.startswith("**") and c[2].isdigit(), row
    # The sink's counters reach the table: one upstream connection per one-message session
    # for the proxy without reuse, stunnel and the direct client; with reuse the sessions
    # after the first twenty find kept ones.
    sess = [c.strip() for c in [ln for ln in table if "new sessions/s" in ln][0]
            .strip("|").split("|")]
    for c in (sess[1], sess[3], sess[4]):
        assert c.endswith("(1.00)"), sess
    per = float(sess[2].rsplit("(", 1)[1].rstrip(")"))
    assert 0 < per < 0.5, sess
    last = lines[-1]
    assert last.startswith("ratios proxy/stunnel: big="), last
    for key in ("sessions=", "cpu=", "msgs=", "pipe=", "latency=", "idle="):
        assert key in last.split(";")[0] and key in last.split(";")[1], last
