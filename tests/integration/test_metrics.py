"""The Prometheus endpoint ([metrics] listen): counts after a known mix of traffic, the HTTP
edge (allow, 404, 405, 400, size and time bounds), and counts that outlive a reload and a
killed worker.

Every value is checked against what the test did and, where the proxy says it in a log line
(session.close bytes, tls.handshake cipher and ms), against the sum of those lines. Scrapes
go through Debian's curl, the format through `promtool check metrics` (Debian prometheus).
"""
import calendar
import collections
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import PASSWORD, USER, free_port, refusing_port
from test_profiles import up_keys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import tokenserver  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
P = "smtp_tls_proxy_"
BODY = b"Subject: metrics\r\n\r\nscan attached\r\n.\r\n"

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def curl(port, path="/metrics", *args, source=None):
    """(status, headers text, body) of one request made by curl."""
    cmd = ["curl", "-sS", "--max-time", "20", "-D", "-", "-o", "-"]
    if source:
        cmd += ["--interface", source]
    cmd += list(args) + ["http://127.0.0.1:%d%s" % (port, path)]
    # Bytes: text mode would fold the CRLFs that end the headers.
    p = subprocess.run(cmd, capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.decode().partition("\r\n\r\n")
    return int(head.split()[1]), head, body


def parse(text):
    """{(name, ((label, value), ...)): value} of an exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


class Scrape:
    def __init__(self, port):
        status, self.head, self.text = curl(port)
        assert status == 200, self.head
        self.samples = parse(self.text)

    def get(self, name, **labels):
        """The value of one sample; KeyError when it is not there."""
        return self.samples[(P + name, tuple(sorted(labels.items())))]

    def series(self, name):
        """{labels dict as a sorted tuple: value} of every sample of `name`."""
        return {k[1]: v for k, v in self.samples.items() if k[0] == P + name}


def promtool_check(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def wait_for(pred, timeout=15):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def deliver(px, body=BODY, source=None):
    with px.client(timeout=15, source=source) as c:
        assert c.read_reply().code == 220
        r = c.send_mail("scanner@example.test", ["boss@example.test"], body, ehlo="p.test")
        c.expect("QUIT", 221)
        return r


def greeting(px, source):
    with px.client(timeout=15, source=source) as c:
        return c.read_reply()


def metrics_keys(port, **kw):
    d = {"listen": "127.0.0.1:%d" % port}
    d.update(kw)
    return d


# ---- a known mix of traffic ------------------------------------------------------------------

def test_metrics_count_each_kind_of_session_message_handshake_and_failure(upstream, proxy,
                                                                         certs):
    up = upstream("starttls")
    tf = upstream("starttls", override={"dot": b"451 4.3.0 try again later\r\n"})
    expired = upstream("starttls", cert="expired")
    dead = refusing_port()
    mport = free_port()
    px = proxy(up, proxy={"workers": "2",
                          "allow": "127.0.0.1/32, 127.0.0.5/32, 127.0.0.6/32, 127.0.0.8/32"},
               upstream={"username": USER, "password": PASSWORD, "reuse": "0"},
               limits={"max_message_size": "2000"},
               metrics=metrics_keys(mport),
               **{"upstream tf": up_keys(tf, certs),
                  "upstream dead": up_keys(tf, certs, port=str(dead)),
                  "upstream expired": up_keys(expired, certs),
                  "device tf": {"match": "127.0.0.6", "upstream": "tf"},
                  "device dead": {"match": "127.0.0.5", "upstream": "dead"},
                  "device expired": {"match": "127.0.0.8", "upstream": "expired"}})
    # Two messages delivered, one over max_message_size, one cut off by its device.
    assert deliver(px).code == 250
    with px.client(timeout=15) as c:
        assert c.read_reply().code == 220
        r = c.send_mail("scanner@example.test", ["boss@example.test"],
                        b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n.\r\n", ehlo="p.test")
        assert r.code == 552, r
    # The proxy ends a session after refusing its message: the next one is new.
    assert deliver(px).code == 250
    with px.client(timeout=15) as c:
        assert c.read_reply().code == 220
        c.expect("EHLO p.test", 250)
        c.expect("MAIL FROM:<a@example.test>", 250)
        c.expect("RCPT TO:<b@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: cut\r\n\r\nhalf a")
    assert px.wait_event("message", 3, result="aborted")
    # A tempfail through [upstream tf], two upstream failures, a client refused by allow.
    assert deliver(px, source="127.0.0.6").code == 451
    assert greeting(px, "127.0.0.5").code == 421
    assert greeting(px, "127.0.0.8").code == 421
    assert greeting(px, "127.0.0.7").code == 554
    wait_for(lambda: len(px.events("session.close")) == 7)

    s = Scrape(mport)
    promtool_check(s.text)
    assert "text/plain; version=0.0.4" in s.head and "Connection: close" in s.head
    assert s.get("sessions_total", listener="127.0.0.1:%d" % px.port) == 7
    assert s.get("sessions_active") == 0
    assert s.series("sessions_refused_total") == {
        (("reason", r),): (1 if r == "allow" else 0) for r in
        ("allow", "max_sessions", "max_sessions_per_client", "upstream_busy", "auth_backoff",
         "proxy_header", "loop", "no-intercept-rule")}
    assert s.series("upstream_attempts_total") == {
        (("upstream", "default"),): 4, (("upstream", "tf"),): 1, (("upstream", "dead"),): 1,
        (("upstream", "expired"),): 1}
    assert s.series("upstream_failures_total") == {
        (("reason", "connect"), ("stage", "connect"), ("upstream", "dead")): 1,
        (("reason", "verify"), ("stage", "tls"), ("upstream", "expired")): 1}
    assert s.series("tls_verify_failures_total") == {(("reason", "certificate has expired"),): 1}
    assert s.series("messages_total") == {
        (("result", "ok"),): 2, (("result", "tempfail"),): 1, (("result", "permfail"),): 0,
        (("result", "rejected"),): 1, (("result", "aborted"),): 1}
    assert len(px.events("message")) == 5

    # Handshakes: as many as tls.handshake lines, with their versions, ciphers and times.
    hs = px.events("tls.handshake")
    assert len(hs) == 5
    want = collections.Counter((h["version"], h["cipher"]) for h in hs)
    assert s.series("tls_handshakes_total") == {
        (("cipher", c), ("side", "upstream"), ("version", v)): n for (v, c), n in want.items()}
    assert s.get("tls_handshake_duration_seconds_count", side="upstream") == 5
    assert s.get("tls_handshake_duration_seconds_bucket", side="upstream", le="+Inf") == 5
    assert s.get("tls_handshake_duration_seconds_sum", side="upstream") == pytest.approx(
        sum(int(h["ms"]) for h in hs) / 1000., abs=0.0005)
    assert s.get("tls_handshake_duration_seconds_bucket", side="upstream", le="10") == \
        sum(1 for h in hs if int(h["ms"]) <= 10000)
    assert s.get("tls_handshake_duration_seconds_count", side="device") == 0
    for name in ("default", "tf"):
        h = [h for h in hs if h["upstream"] == name][-1]
        na = calendar.timegm(time.strptime(h["not_after"], "%Y-%m-%dT%H:%M:%SZ"))
        assert s.get("upstream_certificate_expiry_timestamp_seconds", upstream=name) == na
    assert ((("upstream", "dead"),) not in
            s.series("upstream_certificate_expiry_timestamp_seconds"))

    # Bytes: what the session.close lines say came from devices and went to them.
    closes = px.events("session.close")
    assert s.get("bytes_total", direction="device_to_upstream") == \
        sum(int(c["in"]) for c in closes) > 3000
    assert s.get("bytes_total", direction="upstream_to_device") == \
        sum(int(c["out"]) for c in closes) > 0
    # The proxy logged in upstream once per session through [upstream]; no device logins.
    assert len(px.events("auth.ok")) == 4
    assert s.series("auth_total") == {
        (("result", "ok"), ("side", "upstream")): 4, (("result", "fail"), ("side", "upstream")): 0,
        (("result", "ok"), ("side", "device")): 0, (("result", "fail"), ("side", "device")): 0}
    assert s.get("config_generation") == 1
    assert s.get("config_reloads_total", result="ok") == 0
    assert s.get("workers") == 2
    # Bounded labels: no client address or mailbox anywhere.
    for bad in ("127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "example.test"):
        assert bad not in s.text


def test_metrics_count_device_logins_and_failed_proxy_logins(upstream, proxy, tmp_path):
    users = tmp_path / "users"
    h = subprocess.run(["openssl", "passwd", "-6", "devpw"], capture_output=True, text=True,
                       check=True).stdout.strip()
    users.write_text("dev:%s\n" % h)
    users.chmod(0o600)
    up = upstream("starttls", auth_fail=True)
    mport = free_port()
    px = proxy(up, proxy={"users_file": str(users)},
               upstream={"username": USER, "password": "wrong"},
               metrics=metrics_keys(mport),
               **{"device d": {"match": "127.0.0.2", "client_auth": "required"}})
    assert greeting(px, "127.0.0.2").code == 421      # the upstream refused our login
    s = Scrape(mport)
    assert s.get("auth_total", side="upstream", result="fail") == 1
    assert s.get("upstream_failures_total", upstream="default", stage="auth-plain",
                  reason="auth") == 1
    # Device logins are checked by the proxy itself: against an upstream that takes us.
    up2 = upstream("starttls")
    mport2 = free_port()
    px2 = proxy(up2, proxy={"users_file": str(users)}, metrics=metrics_keys(mport2),
                **{"device d": {"match": "127.0.0.2", "client_auth": "required"}})
    import base64
    for pw, code in (("bad", 535), ("devpw", 235)):
        with px2.client(timeout=15, source="127.0.0.2") as c:
            assert c.read_reply().code == 220
            c.expect("EHLO p.test", 250)
            c.expect("AUTH PLAIN " + base64.b64encode(b"\0dev\0" + pw.encode()).decode(), code)
    px2.wait_event("client.auth", 2)
    s = Scrape(mport2)
    assert s.get("auth_total", side="device", result="ok") == 1
    assert s.get("auth_total", side="device", result="fail") == 1
    assert s.get("auth_total", side="upstream", result="ok") == 0


def test_metrics_oauth2_token_requests_and_expiry(upstream, proxy, certs, tmp_path):
    cf, kf = certs["good"]
    ts = tokenserver.TokenServer(cf, kf, lifetime=600).start()
    try:
        up = upstream("starttls", token_check=ts.valid)
        mport = free_port()
        t0 = int(time.time())
        px = proxy(up, proxy={"state_dir": str(tmp_path)}, metrics=metrics_keys(mport),
                   upstream={"username": USER, "auth_mechanism": "xoauth2",
                             "oauth2_flow": "client_credentials", "oauth2_token_url": ts.url,
                             "oauth2_client_id": ts.client_id,
                             "oauth2_client_secret": ts.client_secret,
                             "oauth2_scope": ts.scope, "oauth2_ca_file": certs["ca"][0]})
        assert deliver(px).code == 250
        t1 = int(time.time()) + 1
        s = Scrape(mport)
        assert ts.count("client_credentials") == 1
        assert s.get("oauth2_token_requests_total", upstream="default", result="ok") == 1
        assert s.get("oauth2_token_requests_total", upstream="default", result="fail") == 0
        exp = s.get("oauth2_token_expiry_timestamp_seconds", upstream="default")
        assert t0 + 600 <= exp <= t1 + 600
        assert ts.secrets() and not any(x in s.text for x in ts.secrets())
        promtool_check(s.text)
    finally:
        ts.stop()


# ---- the HTTP edge -----------------------------------------------------------------------

def raw_request(port, data, timeout=20):
    """Send `data`, read until the server closes; (first line, seconds it took)."""
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except ConnectionResetError:
            pass
    return got.split(b"\r\n", 1)[0].decode(), time.monotonic() - t


def test_metrics_http_edge_allow_404_405_400_size_and_slow_clients(relay, proxy):
    up, _ = relay
    mport = free_port()
    px = proxy(up, metrics=metrics_keys(mport, allow="127.0.0.1/32"))
    assert curl(mport)[0] == 200
    assert curl(mport, source="127.0.0.2")[0] == 403
    assert curl(mport, "/nothing/here", source="127.0.0.2")[0] == 403
    assert curl(mport, "/")[0] == 404
    assert curl(mport, "/metrics/x")[0] == 404
    assert curl(mport, "/metrics", "-X", "POST")[0] == 405
    assert curl(mport, "/metrics", "-I")[0] == 405           # HEAD
    assert raw_request(mport, b"HELLO\r\n\r\n")[0] == "HTTP/1.0 400 Bad Request"
    assert raw_request(mport, b"GET /metrics HTTP/3\r\n\r\n")[0] == "HTTP/1.0 400 Bad Request"
    line, _ = raw_request(mport, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n")
    assert line == "HTTP/1.0 400 Bad Request"
    # A client that never finishes its request is cut off; others are served meanwhile.
    slow = socket.create_connection(("127.0.0.1", mport), timeout=30)
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    t = time.monotonic()
    assert curl(mport)[0] == 200
    assert time.monotonic() - t < 3
    assert slow.recv(100) == b""
    took = time.monotonic() - t
    slow.close()
    assert 3 < took < 20, took
    assert px.alive()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_metrics_out_of_descriptors_pauses_accepting_instead_of_spinning(relay, proxy):
    up, _ = relay
    mport = free_port()
    px = proxy(up, metrics=metrics_keys(mport))
    assert curl(mport)[0] == 200
    pid = px.pid
    nfds = len(os.listdir("/proc/%d/fd" % pid))
    soft = subprocess.run(["prlimit", "--pid", str(pid), "--nofile", "-o", "SOFT",
                           "--noheadings"], capture_output=True, text=True, check=True,
                          timeout=10).stdout.strip()
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:" % nfds], check=True,
                   timeout=10)
    try:
        # The connection waits in the backlog; accept() fails with EMFILE.
        waiting = socket.create_connection(("127.0.0.1", mport), timeout=10)
        time.sleep(0.5)
        before = cpu_seconds(pid)
        time.sleep(2)
        spent = cpu_seconds(pid) - before
        assert spent < 0.5, "the main process spun for %.2f s of CPU" % spent
    finally:
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%s:" % soft], check=True,
                       timeout=10)
    # With descriptors back, the waiting connection and new ones are served.
    waiting.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    waiting.settimeout(15)
    assert waiting.recv(100).startswith(b"HTTP/1.0 200 OK")
    waiting.close()
    assert curl(mport)[0] == 200


# ---- survival -------------------------------------------------------------------------------

def test_metrics_survive_reload_and_a_killed_worker_and_follow_a_new_address(relay, proxy):
    up, _ = relay
    mport, mport2 = free_port(), free_port()
    px = proxy(up, proxy={"workers": "2"}, metrics=metrics_keys(mport))
    assert deliver(px).code == 250
    s = Scrape(mport)
    assert s.get("messages_total", result="ok") == 1
    assert s.get("config_generation") == 1

    # A reload that moves the endpoint: the counts come along to the new address.
    px.sections["metrics"]["listen"] = "127.0.0.1:%d" % mport2
    px.write_config(px.sections)
    px.signal(signal.SIGHUP)
    assert px.wait_event("config.reload")
    wait_for(lambda: len(px.worker_pids(generation=2)) == 2)
    s = Scrape(mport2)
    assert s.get("config_generation") == 2
    assert s.get("config_reloads_total", result="ok") == 1
    assert s.get("messages_total", result="ok") == 1
    assert s.get("sessions_total", listener="127.0.0.1:%d" % px.port) == 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", mport), timeout=5).close()

    # A refused reload is counted and changes nothing else.
    good = open(px.conf).read()
    with open(px.conf, "w") as f:
        f.write(good + "\n[proxy]\nmax_sessions = lots\n")
    px.signal(signal.SIGHUP)
    assert px.wait_event("config.reload-refused")
    s = Scrape(mport2)
    assert s.get("config_reloads_total", result="refused") == 1
    assert s.get("config_generation") == 2
    with open(px.conf, "w") as f:
        f.write(good)

    # A worker killed outright: replaced, and nothing it counted is lost.
    victim = px.worker_pids(generation=2)[0]
    os.kill(victim, signal.SIGKILL)
    assert px.wait_event("worker.exit", pid=str(victim))
    wait_for(lambda: len(px.worker_pids(generation=2)) == 2)
    wait_for(lambda: Scrape(mport2).get("workers") == 2)
    assert deliver(px).code == 250
    s = Scrape(mport2)
    assert s.get("messages_total", result="ok") == 2
    assert s.get("sessions_total", listener="127.0.0.1:%d" % px.port) == 2
    assert s.get("upstream_attempts_total", upstream="default") == 2
    promtool_check(s.text)


def test_metrics_off_by_default_binds_nothing(relay, proxy):
    up, _ = relay
    px = proxy(up)
    assert not px.events("metrics.listen")


def test_alert_rules_example_is_valid():
    p = subprocess.run(["promtool", "check", "rules", os.path.join(REPO, "conf",
                                                                  "alerts.example.yml")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_metrics_label_tables_know_every_stage_and_reason_the_code_logs():
    """upstream.fail's stage and reason become labels through fixed tables (src/mlabels.c);
    a value missing there would be counted as "other" and hide what failed."""
    def read(name):
        with open(os.path.join(REPO, "src", name)) as f:
            return f.read()

    def table(name):
        body = re.search(r"mlabels_%s\[[A-Z_]+\] = \{(.*?)\};" % name, read("mlabels.c"),
                         re.S).group(1)
        return set(re.findall(r'"([^"]+)"', body))

    up, login = read("upstream.c"), read("login.c")
    states = re.search(r"state_names\[\] = \{(.*?)\};", up, re.S).group(1)
    stages = set(re.findall(r'= "([^"]+)"', states))
    stages |= set(re.findall(r'= "(auth-[^"]+)"', login)) | {"auth-oauthbearer"}
    reasons = set(re.findall(r'up_fail(?:_more)?\(u,\s*"[^"]*",\s*"[^"]*",\s*"([^"]+)"', up))
    assert len(stages) >= 14 and len(reasons) >= 15, (stages, reasons)
    assert stages <= table("stage"), stages - table("stage")
    assert reasons <= table("reason"), reasons - table("reason")
    refused = set(re.findall(r'deny\(\w+, L_[A-Z]+, fd, client, (?:via, )?"([^"]+)"', read("listener.c")))
    assert refused and refused <= table("refuse"), refused - table("refuse")
