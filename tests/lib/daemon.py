"""The daemon under test, one harness for every suite (integration, adversarial, service, e2e).

A Proxy is written as an ini file, started (optionally the way systemd starts it: a listening
socket passed as fd 3, $LISTEN_PID/$LISTEN_FDS, extra environment, a wrapper in front), waited
for until every worker of its first generation runs, read through its log lines, and stopped:
SIGTERM, then SIGKILL, and any worker that outlived the main process is killed and reported.

PROXY_BIN=/path/to/smtp-tls-proxy selects another build (e.g. the sanitizer build).
Everything binds loopback; every wait is bounded.
"""
import os
import signal
import socket
import subprocess
import time

from proxylog import CRASH_MARKERS, parse_log_line, render_ini
from smtpwire import Client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROXY_BIN = os.environ.get("PROXY_BIN") or os.path.join(REPO, "build", "smtp-tls-proxy")
# The environment variables systemd sets; a test's own shell may have some of them.
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS",
                "LISTEN_FDNAMES", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY", "INVOCATION_ID")

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


def free_ports(n, host="127.0.0.1"):
    """n distinct loopback ports that were free a moment ago (for a config that must name
    its port in advance). Racy by nature; nothing else on a test box competes for them."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(fam)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host="127.0.0.1"):
    return free_ports(1, host)[0]


_refusing = []


def refusing_port(host="127.0.0.1"):
    """A loopback port where connect is refused for as long as this test process lives.
    A port merely closed after bind is handed out again as an ephemeral port, to the next
    proxy's listener in a parallel run, and the "dead" upstream then answers; a socket
    that stays bound without listening refuses (RST) and keeps the port from reuse."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.bind((host, 0))
    _refusing.append(s)
    return s.getsockname()[1]


def sections(certs, up=None, defaults=None, **over):
    """{section: {key: value}} for a proxy in front of test upstream `up` (None: port 1).
    `defaults` are the suite's own; `over` maps a section name to the keys it changes. Any
    other name is a section of its own, written as named after these, in order:
    sections(certs, up, **{"upstream backup": {...}, "device scanner": {...}})."""
    s = {
        "proxy": {"listen": "127.0.0.1:0", "hostname": "proxy.test",
                  "allow": "127.0.0.0/8, ::1/128", "timeout": "10"},
        "upstream": {"host": "127.0.0.1", "port": str(up.port) if up else "1",
                     "tls": up.mode if up else "starttls", "server_name": "mail.test",
                     "verify": "yes", "ca_file": certs["ca"][0]},
        "limits": {},
        "log": {"level": "info", "format": "text"},
    }
    for name, keys in list((defaults or {}).items()) + list(over.items()):
        s.setdefault(name, {}).update(keys or {})
    if not s["limits"]:
        del s["limits"]
    return s


def _alive(pid):
    """Is pid a live process that is not a zombie?"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class Proxy:
    client_class = Client       # a suite may give its clients more to do

    def __init__(self, workdir, sections, name="proxy", popen_kw=None):
        self.workdir = workdir
        self.conf = os.path.join(workdir, name + ".ini")
        self.errfile = os.path.join(workdir, name + ".stderr")
        self.popen_kw = dict(popen_kw or {})
        self.write_config(sections)
        self.proc = None
        self.port = None
        self.addrs = []
        self.returncode = None
        self.orphans = []

    def write_config(self, sections):
        text = sections if isinstance(sections, str) else render_ini(sections)
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf)

    def argv(self):
        # Looked up at each start, so a test can put a wrapper in front of the daemon.
        return [PROXY_BIN, "-c", self.conf]

    def start(self, env=None, listen_fd=None, wait=True, argv_prefix=(), listen_pid="self"):
        """Start the daemon; env adds variables; listen_fd is passed as fd 3 (LISTEN_FDS=1)
        with LISTEN_PID = the daemon's pid (or listen_pid, to test a wrong one)."""
        e = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
        e.update(env or {})
        argv = list(argv_prefix) + self.argv()
        kw = dict(self.popen_kw)
        if listen_fd is not None:
            e["LISTEN_FDS"] = "1"
            argv = ["/usr/bin/python3", "-c", _ACTIVATE, str(listen_fd), listen_pid] + argv
            kw["pass_fds"] = tuple(kw.get("pass_fds", ())) + (listen_fd,)
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         env=e, **kw)
        if wait:
            self.wait_started()
        return self

    def wait_started(self, timeout=10):
        """Wait until every worker of the first generation runs; set self.addrs and self.port
        (the first listener's)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            starts = self.events("proxy.start")
            if starts and len(self.events("worker.start")) >= int(starts[0]["workers"]):
                ls = self.listens()
                self.addrs = ["%s:%d" % (h, p) for h, p, _ in ls]
                if ls:
                    self.port = ls[0][1]
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

    def port_of(self, host):
        for h, p, _ in self.listens():
            if h.strip("[]") == host:
                return p
        raise KeyError(host)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

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
        """Wait until n log lines of event `name` (with the given key values) exist; return
        those there are then."""
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

    def client(self, timeout=10, host="127.0.0.1", port=None, **kw):
        return self.client_class(port or (self.port if host == "127.0.0.1" else
                                          self.port_of(host)), host=host, timeout=timeout, **kw)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM, wait, then SIGKILL; kill (and remember) any worker that outlived it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.orphans = [int(d["pid"]) for d in self.events("worker.start")
                        if _alive(int(d["pid"]))]
        for p in self.orphans:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.returncode = self.proc.returncode
        return self.returncode

    def assert_clean_exit(self):
        rc = self.stop()
        err = self.stderr()
        assert not any(m in err for m in CRASH_MARKERS), "sanitizer/crash report:\n" + err
        assert rc == 0, "proxy exit code %r\n%s" % (rc, err[-4000:])
        assert not self.orphans, "workers outlived the main process: %r" % self.orphans


def proxy_factory(tmp_path, build, on_stop=None, cls=Proxy):
    """The body of a suite's `proxy` fixture: a generator yielding make(up, start=True,
    start_kw..., **sections) -> Proxy, where build(up, **sections) gives the sections.
    At teardown every proxy is stopped and must exit 0 with no crash report and no worker
    left; on_stop(text) sees each proxy's whole log first."""
    import pytest

    if not os.access(PROXY_BIN, os.X_OK):
        pytest.fail("daemon not built: %s (run make, or set PROXY_BIN)" % PROXY_BIN)
    made = []

    def make(up=None, start=True, env=None, listen_fd=None, popen_kw=None, **over):
        s = build(up, **over)
        p = cls(str(tmp_path), s, name="proxy%d" % len(made), popen_kw=popen_kw)
        p.sections = s
        made.append(p)
        return p.start(env=env, listen_fd=listen_fd) if start else p

    yield make
    for p in made:
        if p.proc is not None:
            p.stop()
            text = p.stderr()
            if on_stop is not None:
                on_stop(text)
            print("---- %s stderr ----\n%s" % (p.conf, text[-6000:]))
            p.assert_clean_exit()
