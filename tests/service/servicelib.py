"""Helpers for the service tests: the daemon run the way systemd runs it, without systemd.

The tests play systemd's part themselves: a unix datagram socket as $NOTIFY_SOCKET,
listening sockets passed as fd 3 with $LISTEN_FDS/$LISTEN_PID, $JOURNAL_STREAM, signals to
the main process.  Everything binds loopback on ephemeral ports, every wait is bounded and
every process started is stopped (SIGTERM, then SIGKILL) at teardown.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/service
PROXY_BIN=/path/to/smtp-tls-proxy selects another build (e.g. a sanitizer build).
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import testca  # noqa: E402
import upstream as upstream_mod  # noqa: E402
from smtpwire import Client  # noqa: E402
from proxylog import CRASH_MARKERS, parse_log_line, render_ini  # noqa: E402,F401

from daemon import PROXY_BIN, SYSTEMD_VARS, Proxy, _alive, free_port  # noqa: E402,F401


def listen_socket(port=0):
    """A bound, listening loopback TCP socket, as systemd's socket unit would pass it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


# ---- systemd's notify socket ---------------------------------------------------------------

class NotifySocket:
    """$NOTIFY_SOCKET: a unix datagram socket that records (time, sender pid, text)."""

    def __init__(self, path):
        self.path = path                  # "/..." or "@abstract"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.settimeout(0.1)
        self.messages = []                # (monotonic time, pid, text)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="notify")
        self._thread.start()

    def _loop(self):
        credsize = socket.CMSG_SPACE(12)   # struct ucred: pid, uid, gid
        while not self._stop.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, credsize)
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(cdata[:4], sys.byteorder)
            with self._lock:
                self.messages.append((time.monotonic(), pid, data.decode("utf-8", "replace")))

    def texts(self):
        with self._lock:
            return [t for _, _, t in self.messages]

    def wait_for(self, pred, after=0, timeout=10):
        """First message at index >= after with pred(text); (index, text) or (None, None)."""
        end = time.monotonic() + timeout
        while True:
            texts = self.texts()
            for i in range(after, len(texts)):
                if pred(texts[i]):
                    return i, texts[i]
            if time.monotonic() > end:
                return None, None
            time.sleep(0.01)

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if not self.path.startswith("@"):
            try:
                os.unlink(self.path)
            except OSError:
                pass


def parse_status(text):
    """'STATUS=sessions=1 total=2 ...' -> {'sessions': 1, 'total': 2, ...}; None otherwise."""
    if not text.startswith("STATUS="):
        return None
    return {k: int(v) for k, v in (p.split("=", 1) for p in text[7:].split())}


def send_message(port, subject, hostname_seen=None, body_extra=b"", timeout=10):
    """One whole session (banner, EHLO, MAIL, RCPT, DATA, QUIT); return the 220 banner line."""
    with Client(port, timeout=timeout) as c:
        banner = c.read_reply()
        assert banner.code == 220, banner.raw
        body = (b"Subject: %s\r\nMessage-ID: <%s@device.test>\r\n\r\nbody of %s\r\n%s.\r\n"
                % (subject.encode(), subject.encode(), subject.encode(), body_extra))
        r = c.send_mail("device@example.test", ["rcpt@example.test"], body)
        assert r.code == 250, r.raw
        c.expect("QUIT", 221)
        return banner.first


# ---- make and unit files ------------------------------------------------------------------

def make_cmd():
    """make with the install fragment, whether or not the Makefile includes it yet."""
    with open(os.path.join(REPO, "Makefile")) as f:
        included = re.search(r"^-?include\s+mk/install\.mk", f.read(), re.M)
    return ["make", "-s", "-C", REPO] + ([] if included else ["-f", "Makefile", "-f",
                                                                 "mk/install.mk"])


def unit_settings(path):
    """{'Section.Key': [values]} of a unit file (keys may repeat)."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            k, v = line.split("=", 1)
            out.setdefault("%s.%s" % (section, k.strip()), []).append(v.strip())
    return out
