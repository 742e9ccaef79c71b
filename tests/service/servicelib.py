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

PROXY_BIN = os.environ.get("PROXY_BIN") or os.path.join(REPO, "build", "smtp-tls-proxy")
# The environment variables systemd sets; a test's own shell may have some of them.
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS",
                "LISTEN_FDNAMES", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY", "INVOCATION_ID")


def free_port():
    """A loopback port that was free a moment ago (for tests that must know it in advance)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


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


# ---- the daemon ----------------------------------------------------------------------------

# Puts the socket passed as fd N at fd 3 and sets LISTEN_PID to its own pid, then execs the
# daemon: the pid that reads LISTEN_PID is the one that set it, as with systemd.
_ACTIVATE = ("import os, sys\n"
             "n = int(sys.argv[1])\n"
             "if n != 3:\n"
             "    os.dup2(n, 3)\n"
             "    os.close(n)\n"
             "pid = sys.argv[2]\n"
             "os.environ['LISTEN_PID'] = str(os.getpid()) if pid == 'self' else pid\n"
             "os.execv(sys.argv[3], sys.argv[3:])\n")


class Proxy:
    def __init__(self, workdir, sections, name="proxy"):
        self.workdir = workdir
        self.conf = os.path.join(workdir, name + ".ini")
        self.errfile = os.path.join(workdir, name + ".stderr")
        self.write_config(sections)
        self.proc = None
        self.port = None
        self.returncode = None

    def write_config(self, sections):
        text = sections if isinstance(sections, str) else render_ini(sections)
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf)

    def start(self, env=None, listen_fd=None, wait=True, argv_prefix=(), listen_pid="self"):
        """Start the daemon; env adds variables; listen_fd is passed as fd 3 (LISTEN_FDS=1)
        with LISTEN_PID = the daemon's pid (or listen_pid, to test a wrong one)."""
        e = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
        e.update(env or {})
        argv = list(argv_prefix) + [PROXY_BIN, "-c", self.conf]
        pass_fds = ()
        if listen_fd is not None:
            e["LISTEN_FDS"] = "1"
            argv = ["/usr/bin/python3", "-c", _ACTIVATE, str(listen_fd), listen_pid] + argv
            pass_fds = (listen_fd,)
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         env=e, pass_fds=pass_fds)
        if wait:
            self.wait_started()
        return self

    def wait_started(self, timeout=10):
        """Wait until every worker of the first generation runs; set self.port."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            starts = self.events("proxy.start")
            if starts and len(self.events("worker.start")) >= int(starts[0]["workers"]):
                ls = self.listens()
                if ls:
                    self.port = ls[-1][1]
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise AssertionError("proxy did not start:\n" + self.stderr())

    def listens(self):
        """[(host, port, from)] of the proxy.listen lines, in order."""
        out = []
        for d in self.events("proxy.listen"):
            if "addr" in d:
                host, port = d["addr"].rsplit(":", 1)
                out.append((host, int(port), d.get("from")))
        return out

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        try:
            with open(self.errfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return [d for d in map(parse_log_line, self.stderr().splitlines()) if d is not None]

    def events(self, name, **match):
        return [d for d in self.log_lines() if d.get("event") == name
                and all(d.get(k) == v for k, v in match.items())]

    def wait_event(self, name, n=1, timeout=10, **match):
        """Wait until n log lines of event `name` (with the given key values) exist."""
        end = time.monotonic() + timeout
        while True:
            got = self.events(name, **match)
            if len(got) >= n or time.monotonic() > end:
                return got
            time.sleep(0.02)

    def worker_pids(self, generation=None):
        """Pids of the workers started (of one generation) and not logged as exited."""
        gone = {d["pid"] for d in self.events("worker.exit")}
        return [int(d["pid"]) for d in self.events("worker.start")
                if d["pid"] not in gone and (generation is None or
                                            d["generation"] == str(generation))]

    def client(self, timeout=10, port=None):
        return Client(port or self.port, timeout=timeout)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM, wait, then SIGKILL (the whole process group's workers too)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # A worker must never outlive the main process; kill any that did (and fail below).
        self.orphans = [p for p in self._worker_pids_all() if _alive(p)]
        for p in self.orphans:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.returncode = self.proc.returncode
        return self.returncode

    def _worker_pids_all(self):
        return [int(d["pid"]) for d in self.events("worker.start")]

    def assert_clean_exit(self):
        rc = self.stop()
        err = self.stderr()
        assert not any(m in err for m in CRASH_MARKERS), "sanitizer/crash report:\n" + err
        assert rc == 0, "proxy exit code %r\n%s" % (rc, err[-4000:])
        assert not self.orphans, "workers outlived the main process: %r" % self.orphans


def _alive(pid):
    """Is pid a live process that is not a zombie?"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


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
