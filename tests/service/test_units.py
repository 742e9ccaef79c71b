"""The systemd units: they verify, the service's exposure is low, and its sandbox lets the
daemon do everything it does (checked by tracing a whole life of the daemon: no systemd
needed, so this runs in containers and CI too)."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from servicelib import PROXY_BIN, REPO, make_cmd, send_message, unit_settings

SERVICE = os.path.join(REPO, "systemd", "smtp-tls-proxy.service")
SOCKET = os.path.join(REPO, "systemd", "smtp-tls-proxy.socket")
EXAMPLES = os.path.join(REPO, "systemd", "examples")
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")


def exposure(unit_path, root=None):
    cmd = ["systemd-analyze", "security", "--offline=true", unit_path]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", p.stdout + p.stderr)
    assert m, "no exposure figure:\n" + p.stdout + p.stderr
    return float(m.group(1)), m.group(2), p.stdout


@pytest.fixture(scope="module")
def prefix_install(tmp_path_factory):
    """make install with PREFIX and SYSCONFDIR in a temporary directory (no DESTDIR), so the
    installed units name paths that exist and systemd-analyze can check them on this host."""
    root = str(tmp_path_factory.mktemp("prefix"))
    p = subprocess.run(make_cmd() + ["install", "PREFIX=%s/usr/local" % root,
                                     "SYSCONFDIR=%s/etc" % root],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return root


def verify(paths, root):
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/local/share/man"))
    p = subprocess.run(["systemd-analyze", "verify"] + paths, capture_output=True, text=True,
                       timeout=60, env=env)
    return p.returncode, (p.stdout + p.stderr).strip()


@needs_analyze
def test_installed_units_pass_systemd_analyze_verify(prefix_install):
    unitdir = os.path.join(prefix_install, "usr/local/lib/systemd/system")
    service = os.path.join(unitdir, "smtp-tls-proxy.service")
    rc, out = verify([service, os.path.join(unitdir, "smtp-tls-proxy.socket")], prefix_install)
    assert rc == 0 and out == "", out
    # The paths were rewritten to the install location, and they exist.
    s = unit_settings(service)
    binary = os.path.join(prefix_install, "usr/local/sbin/smtp-tls-proxy")
    conf = os.path.join(prefix_install, "etc/smtp-tls-proxy/smtp-tls-proxy.ini")
    assert s["Service.ExecStart"] == ["%s -c %s" % (binary, conf)]
    assert s["Service.ExecStartPre"] == ["%s -t -c %s" % (binary, conf)]
    assert os.access(binary, os.X_OK) and os.path.exists(conf)
    doc = [d for d in s["Unit.Documentation"] if d.startswith("file:")]
    assert doc and all(os.path.exists(d[5:]) for d in doc), doc


@needs_analyze
def test_units_with_the_example_drop_ins_pass_verify(prefix_install, tmp_path):
    """socket-activation.conf and credentials.conf as an admin would install them."""
    unitdir = tmp_path / "units"
    shutil.copytree(os.path.join(prefix_install, "usr/local/lib/systemd/system"), unitdir)
    dropins = unitdir / "smtp-tls-proxy.service.d"
    dropins.mkdir()
    for name in ("socket-activation.conf", "credentials.conf"):
        shutil.copy(os.path.join(EXAMPLES, name), dropins / name)
    rc, out = verify([str(unitdir / "smtp-tls-proxy.service"),
                      str(unitdir / "smtp-tls-proxy.socket")], prefix_install)
    assert rc == 0 and out == "", out


@needs_analyze
def test_service_exposure_is_ok(tmp_path, capsys):
    level, word, table = exposure(SERVICE)
    with capsys.disabled():
        print("\n  systemd-analyze security smtp-tls-proxy.service: %.1f %s" % (level, word))
    assert level <= MAX_EXPOSURE, table

    # With socket activation (no capability, own user namespace) it is lower still.
    d = tmp_path / "units"
    (d / "smtp-tls-proxy.service.d").mkdir(parents=True)
    shutil.copy(SERVICE, d / "smtp-tls-proxy.service")
    shutil.copy(os.path.join(EXAMPLES, "socket-activation.conf"),
                d / "smtp-tls-proxy.service.d" / "socket-activation.conf")
    sock_level, sock_word, table = exposure(str(d / "smtp-tls-proxy.service"))
    with capsys.disabled():
        print("  ... with socket-activation.conf: %.1f %s" % (sock_level, sock_word))
    assert sock_level < level, table
    assert re.search(r"✓ PrivateUsers=", table), table


def test_service_unit_matches_the_daemon():
    s = unit_settings(SERVICE)
    assert s["Service.Type"] == ["notify"] and s["Service.NotifyAccess"] == ["main"]
    assert s["Service.ExecStart"] == [
        "/usr/local/sbin/smtp-tls-proxy -c /etc/smtp-tls-proxy/smtp-tls-proxy.ini"]
    assert s["Service.ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert s["Service.KillMode"] == ["mixed"]          # SIGTERM to main; it drains workers
    # systemd must not SIGKILL before the daemon's own bound: shutdown_timeout + 10 s.
    with open(os.path.join(REPO, "conf", "smtp-tls-proxy.ini")) as f:
        shutdown = int(re.search(r"^shutdown_timeout\s*=\s*(\d+)", f.read(), re.M).group(1))
    assert int(s["Service.TimeoutStopSec"][0]) > shutdown + 10
    assert int(s["Service.WatchdogSec"][0]) >= 2
    assert s["Service.Restart"] == ["on-failure"]
    assert s["Service.CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert "PrivateUsers" not in "".join(s), "PrivateUsers= would forbid binding port 25"
    sock = unit_settings(SOCKET)
    assert sorted(sock["Socket.ListenStream"]) == ["0.0.0.0:25", "[::]:25"]
    assert sock["Socket.BindIPv6Only"] == ["ipv6-only"]


def test_service_unit_gives_the_daemon_its_state_dir_and_the_token_endpoint():
    """OAuth2: a rotated refresh token must survive a restart, so systemd must make the
    [proxy] state_dir the daemon defaults to, private and writable under ProtectSystem=strict
    (StateDirectory= is writable there); and the main process must reach token endpoints."""
    s = unit_settings(SERVICE)
    default = re.search(r'PATH\("proxy", "state_dir", "([^"]+)"',
                        open(os.path.join(REPO, "src", "config.c")).read()).group(1)
    assert ["/var/lib/" + d for d in s.get("Service.StateDirectory", [])] == [default]
    assert s["Service.StateDirectoryMode"] == ["0700"]
    with open(os.path.join(REPO, "conf", "smtp-tls-proxy.ini")) as f:
        assert re.search(r"^state_dir = %s$" % re.escape(default), f.read(), re.M)
    assert s["Service.ProtectSystem"] == ["strict"] and s["Service.DynamicUser"] == ["yes"]
    assert {"AF_INET", "AF_INET6"} <= set(" ".join(s["Service.RestrictAddressFamilies"]).split())
    assert not [k for k in s if k.startswith("Service.IPAddress")], \
        "an IP allow-list here would cut the token endpoint off; it belongs in a site drop-in"


# ---- the sandbox, checked against what the daemon really does -----------------------------

def expand_syscall_groups():
    """{'@group': set of syscall names}, nested groups expanded (systemd-analyze's tables)."""
    p = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                       timeout=60)
    raw, group = {}, None
    for line in p.stdout.splitlines():
        if line.startswith("@"):
            group = line.strip()
            raw[group] = []
        elif group and line.strip() and not line.strip().startswith("#"):
            raw[group].append(line.strip())

    def expand(g, seen=()):
        out = set()
        for item in raw.get(g, []):
            out |= expand(item, seen + (g,)) if item.startswith("@") and item not in seen \
                else ({item} if not item.startswith("@") else set())
        return out

    return {g: expand(g) for g in raw}


def allowed_syscalls():
    s = unit_settings(SERVICE)
    groups = expand_syscall_groups()
    allow, deny = set(), set()
    for v in s["Service.SystemCallFilter"]:
        neg = v.startswith("~")
        names = set()
        for item in v.lstrip("~").split():
            names |= groups[item] if item.startswith("@") else {item}
        (deny if neg else allow).update(names)
    return allow - deny


def is_sanitizer_build(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


@needs_analyze
def test_sandbox_permits_everything_the_daemon_does(upstream, proxy, notify, tmp_path):
    """Trace start, sessions, a reload, a worker restart and a drain; every system call must
    pass SystemCallFilter, every socket RestrictAddressFamilies, no mapping may be writable
    and executable (MemoryDenyWriteExecute), no file opened for writing (ProtectSystem=strict),
    no /proc file but the process's own (ProcSubset=pid), no device but the basic ones
    (PrivateDevices)."""
    if is_sanitizer_build(PROXY_BIN):
        pytest.skip("a sanitizer build makes calls the shipped binary does not")
    up = upstream()
    n = notify()
    p = proxy(up, start=False, proxy={"workers": "auto"})
    trace = str(tmp_path / "strace.out")
    p.start(env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000", "JOURNAL_STREAM": "1:2"},
            argv_prefix=["strace", "-f", "-qq", "-s", "200", "-o", trace], wait=True)
    workers = p.worker_pids()
    with open("/proc/%d/stat" % workers[0]) as f:
        main = int(f.read().rsplit(")", 1)[1].split()[1])       # strace is p.proc
    for k in range(3):
        send_message(p.port, "traced-%d" % k)
    os.kill(main, signal.SIGHUP)
    assert p.wait_event("config.reload")
    send_message(p.port, "traced-after-reload")
    os.kill(p.worker_pids()[-1], signal.SIGKILL)
    assert p.wait_event("worker.exit", restart="yes")
    time.sleep(0.3)
    send_message(p.port, "traced-after-restart")
    os.kill(main, signal.SIGTERM)
    assert p.proc.wait(20) == 0, p.stderr()
    assert up.wait_messages(5)

    with open(trace) as f:
        lines = f.read().splitlines()
    calls = [re.match(r"^\d+\s+([a-z_0-9]+)\(", l) for l in lines]
    used = {m.group(1) for m in calls if m}
    assert {"accept4", "connect", "sendto", "epoll_wait"} <= used, sorted(used)
    # Before the daemon's execve it is strace's child, not the daemon: skip that part.
    first_exec = next(i for i, l in enumerate(lines) if " execve(" in l)
    daemon_lines = lines[first_exec:]
    used = {m.group(1) for m in (re.match(r"^\d+\s+([a-z_0-9]+)\(", l) for l in daemon_lines)
            if m}
    refused = sorted(used - allowed_syscalls())
    assert not refused, "SystemCallFilter would refuse: %r" % refused

    fams = set(re.findall(r"\bsocket\((AF_[A-Z0-9]+)", "\n".join(daemon_lines)))
    assert fams <= {"AF_INET", "AF_INET6", "AF_UNIX"}, fams
    wx = [l for l in daemon_lines if re.search(r"\b(mmap|mprotect)\(.*PROT_WRITE\|PROT_EXEC", l)
          or re.search(r"\b(mmap|mprotect)\(.*PROT_EXEC\|PROT_WRITE", l)]
    assert not wx, wx
    opens = [l for l in daemon_lines if re.search(r"\bopenat\(", l) and "= -1" not in l]
    writes = [l for l in opens if re.search(r"O_WRONLY|O_RDWR|O_CREAT", l)
              and '"/dev/null"' not in l]
    assert not writes, writes
    paths = [re.search(r'openat\([^"]*"([^"]*)"', l).group(1) for l in opens]
    proc = [x for x in paths if x.startswith("/proc/")
            and not re.match(r"/proc/(self|thread-self|\d+)(/|$)", x)]
    assert not proc, proc
    dev = [x for x in paths if x.startswith("/dev/")
           and x not in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")]
    assert not dev, dev
