"""Helpers for the adversarial suite: a recording client, the suite-wide record of everything
the proxy logged and every byte clients received (for the credential check), and the common
assertions ("nothing left for the upstream", "421 greeting", ...).

Everything here is bounded in time; nothing here talks to anything but loopback.
"""
import base64
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import upstream as upstream_mod  # noqa: E402
from smtpwire import Client  # noqa: E402


from daemon import PROXY_BIN, free_port  # noqa: E402,F401
from daemon import Proxy as _Proxy  # noqa: E402
from daemon import sections as _sections  # noqa: E402
from proxylog import CRASH_MARKERS, parse_log_line, render_ini  # noqa: E402,F401

USER, PASSWORD = upstream_mod.DEFAULT_USER, upstream_mod.DEFAULT_PASSWORD

# ---- suite-wide record (promise 3) ----------------------------------------------------------

RECORD = {"logs": [], "client": [], "sessions": 0}


def record_log(text):
    RECORD["logs"].append(text)


def record_client(data):
    if data:
        RECORD["client"].append(bytes(data))


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def secret_forms(user=USER, password=PASSWORD):
    """The password and every base64 form that carries it (PLAIN, LOGIN, any alignment)."""
    pw = password.encode()
    forms = {password, b64(b"\0" + user.encode() + b"\0" + pw), b64(pw),
             b64(pw).rstrip("=")}
    for pad in (1, 2):       # the part of the encoding that depends on the password alone
        forms.add(b64(b"\0" * pad + pw)[4:-4])
    return sorted(f for f in forms if len(f) >= 8)


def find_secrets(texts):
    """[(form, excerpt)] for every secret form in any of texts (str or bytes)."""
    hits = []
    forms = secret_forms()
    for t in texts:
        if isinstance(t, (bytes, bytearray)):
            t = bytes(t).decode("latin-1")
        for f in forms:
            i = t.find(f)
            if i >= 0:
                hits.append((f, t[max(0, i - 60):i + len(f) + 20]))
    return hits


# ---- clients ----------------------------------------------------------------------------------

class AClient(Client):
    """smtpwire.Client that records what it received, can bind a source address and can
    leave with a FIN or an RST."""

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None, rcvbuf=None):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        self.buf = bytearray()
        self.received = bytearray()
        self._recorded = False

    def close(self):
        if not self._recorded:
            self._recorded = True
            record_client(self.received)
        try:
            self.sock.close()
        except OSError:
            pass

    def rst(self):
        """Leave with a reset instead of a FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def quiet_for(self, seconds):
        """True when no byte arrives for `seconds` (and the peer did not close)."""
        r, _, _ = select.select([self.sock], [], [], seconds)
        return not r and not self.buf

    def send_split(self, data, cuts, pause=0.004):
        """Send data in segments cut at the given offsets, pausing between them."""
        last = 0
        for cut in sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]:
            self.sock.sendall(data[last:cut])
            last = cut
            if cut < len(data):
                time.sleep(pause)

    def read_all_replies(self, timeout=10):
        """Read until EOF; return the replies (each checked for framing)."""
        self.at_eof(timeout)
        out = []
        while self.buf:
            out.append(self.read_reply())
        return out


def open_data(px, mail_from="a@example.test", rcpts=("b@example.test",), ehlo=True):
    c = px.client()
    c.read_reply()
    if ehlo:
        c.expect("EHLO d.test", 250)
    c.expect("MAIL FROM:<%s>" % mail_from, 250)
    for r in rcpts:
        c.expect("RCPT TO:<%s>" % r, 250)
    c.expect("DATA", 354)
    return c


# ---- assertions --------------------------------------------------------------------------------

ENVELOPE_VERBS = {"MAIL", "RCPT", "DATA", "AUTH", "BDAT", "VRFY", "NOOP", "RSET"}
MARK = b"Zq7-CLIENT-BYTES-"      # every early-talker byte sequence carries this
EARLY = (b"EHLO early.test\r\nAUTH PLAIN " + b64(b"\0" + USER.encode() + b"\0" +
                                                  PASSWORD.encode()).encode() + b"\r\n"
         b"MAIL FROM:<" + MARK + b"from@example.test>\r\nRCPT TO:<" + MARK + b"to@x.test>\r\n"
         b"DATA\r\nSubject: " + MARK + b"body\r\n\r\n" + MARK + b"\r\n.\r\nQUIT\r\n")


def assert_upstream_got_nothing_of_the_client(up):
    """No envelope, AUTH or message byte, and no byte the client sent, reached the upstream,
    in plaintext or over TLS."""
    for conn in up.connections:
        verbs = set(conn.verbs())
        assert not ENVELOPE_VERBS & verbs, "upstream got %r" % conn.commands
        t = conn.transcript
        assert MARK not in t, "client bytes reached the upstream: %r" % t[:300]
        assert PASSWORD.encode() not in t
        for f in secret_forms():
            assert f.encode() not in t, "credential form %s reached the upstream" % f
        assert conn.auth == []
    assert up.all_messages == []


def expect_421_greeting(px, early=True, timeout=15, within=None):
    """Connect, talk early (secrets, envelope, body) and expect a 421 4.x.x greeting then EOF."""
    t0 = time.monotonic()
    with px.client(timeout=timeout) as c:
        if early:
            try:
                c.send(EARLY)
            except OSError:
                pass
        r = c.read_reply()
        assert r.code == 421, r
        assert re.match(r"4\.\d+\.\d+ ", r.lines[0]), "no enhanced status: %r" % r
        try:
            rest = c.read_all_replies(timeout)
        except (ConnectionResetError, EOFError):
            rest = []
        assert rest == [], "more after the 421 greeting: %r" % rest
    if within is not None:
        assert time.monotonic() - t0 < within, "421 took %.1fs" % (time.monotonic() - t0)
    return r


def wait_upstream_fail(px, timeout=10):
    fails = px.wait_event("upstream.fail", timeout=timeout)
    assert fails, "no upstream.fail logged:\n" + px.stderr()[-3000:]
    return fails[0]


def only_crlf(data):
    m = re.search(rb"\r(?!\n)|(?<!\r)\n", bytes(data))
    return m is None


def reply_codes(replies):
    return [r.code for r in replies]


def wait_for(pred, timeout=10, step=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)




def listening_sockets(pids):
    """{(addr, port)} of the TCP sockets in LISTEN state held by the given pids."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                m = re.match(r"socket:\[(\d+)\]", t)
                if m:
                    inodes.add(m.group(1))
        except OSError:
            continue
    out = set()
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:
                continue
            ahex, phex = f[1].split(":")
            raw = bytes.fromhex(ahex)
            if v6:
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, raw)
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out.add((addr, int(phex, 16)))
    return out


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def proc_rss_kb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# ---- the daemon -----------------------------------------------------------------------------

class Proxy(_Proxy):
    """tests/lib/daemon.py's, with clients that record what they receive."""
    client_class = AClient


# This suite's defaults: one worker, and debug level so that every line the proxy can write
# is searched for credentials.
DEFAULTS = {"proxy": {"max_sessions": "1000", "bare_newline": "normalize", "workers": "1"},
            "upstream": {"min_tls": "1.2"}, "log": {"level": "debug"}}


def sections(certs, up=None, proxy=None, upstream=None, log=None, limits=None):
    return _sections(certs, up, DEFAULTS, proxy=proxy, upstream=upstream, log=log,
                     limits=limits)
