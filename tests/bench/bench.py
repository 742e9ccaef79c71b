#!/usr/bin/python3
"""make bench: smtp-tls-proxy and stunnel side by side, relaying plaintext SMTP to one TLS sink.

Both relays get the same job: plaintext SMTP from a device on loopback, STARTTLS to the sink
(tests/bench/sink.c) with the chain verified against a test CA made for the run and the name
checked (mail.test), one AUTH PLAIN per upstream session. The proxy logs in itself; a device
behind stunnel must send AUTH PLAIN through it, so the load client (tests/bench/loadgen.c)
does that for stunnel only: the sink sees the same handshakes and logins either way.
"direct" is the load client speaking TLS straight to the sink: the ceiling the client and
sink reach together, which shows they are not what limits the relays.

Every figure is measured for each system in turn, the order reversed on every repetition
(A B B A ...) so that machine noise falls on both alike; the table gives medians, the ratio
column the median of the paired ratios proxy / stunnel of the same repetition. Next to each
figure, in parentheses: upstream TLS connections per message (per held session for the idle
figure), from the sink's counters. CPU is utime + stime of every process of a relay from
/proc/PID/stat (a process's figure includes its threads); memory is Rss from
/proc/PID/smaps_rollup of every process, held sessions minus the baseline before them.

  bench.py --mode full|quick|smoke --proxy BUILD/smtp-tls-proxy --bindir BUILD/bench

The column "proxy" is the proxy with upstream session reuse off ("reuse = 0"), one upstream
connection per session as stunnel makes; beside it "proxy reuse=10": the same proxy with
"[upstream] reuse = 10" (enough kept sessions for the 20 parallel devices over the
workers; the default, 2, keeps fewer), its ratio to stunnel on the last line too. BENCH_REUSE=N sets N (0: no such
column); BENCH_REUSE_IDLE sets reuse_idle.
BENCH_TLS=implicit relays over implicit TLS instead of STARTTLS.
"""
import argparse
import os
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import testca  # noqa: E402
from daemon import Proxy, free_port  # noqa: E402

# Per mode: repetitions (each system once per repetition), sizes and counts.
MODES = {
    "smoke": dict(reps=1, idle_reps=1, big_mb=5, sess=100, lat=20, msgs=400, idle=50),
    "quick": dict(reps=2, idle_reps=2, big_mb=200, sess=1000, lat=100, msgs=5000, idle=1000),
    "full": dict(reps=6, idle_reps=2, big_mb=200, sess=5000, lat=500, msgs=20000, idle=10000),
}
PARALLEL = 20
# A sanitizer build of the load client (make check SANITIZE=1) must not fail a run over the
# buffers it keeps until exit.
LOADGEN_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pids):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += int(fields[11]) + int(fields[12])     # utime, stime
        except OSError:
            pass
    return t * 1000.0 / TICK


def rss_kb(pids):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Rss:"):
                        t += int(line.split()[1])
        except OSError:
            pass
    return t


def wait_listen(port, timeout=10):
    """Wait until 127.0.0.1:port is in LISTEN state. Read from /proc/net/tcp rather than
    by connecting: a connection to stunnel would make it open an upstream session, which
    would then be counted against the first figure."""
    want = "0100007F:%04X" % port
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open("/proc/net/tcp") as f:
            for line in f:
                x = line.split()
                if x[1] == want and x[3] == "0A":
                    return
        time.sleep(0.05)
    raise RuntimeError("nothing listens on port %d" % port)


class Sink:
    def __init__(self, bindir, certs, work):
        cert, key = certs["good"]
        self.proc = subprocess.Popen(
            [os.path.join(bindir, "sink"), "-c", cert, "-k", key, "-s", "127.0.0.1:0",
             "-i", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=open(
                os.path.join(work, "sink.stderr"), "wb"), text=True)
        line = self.proc.stdout.readline()
        kv = dict(x.split("=") for x in line.split())
        self.ports = {"starttls": int(kv["starttls"]), "implicit": int(kv["implicit"])}

    def stats(self):
        """The sink's counters: handshakes, resumed, messages, auth, bytes."""
        with socket.create_connection(("127.0.0.1", self.ports["starttls"]), 10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"XSTATS\r\n")
            f.flush()
            line = f.readline().decode()
        return {k: int(v) for k, v in (x.split("=") for x in line.split()[1:])}

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class System:
    """A relay (or the direct baseline) the load client talks to."""
    name = ""
    client_args = ()

    def pids(self):
        return []

    def stop(self):
        pass


class ProxySystem(System):
    made = 0

    def __init__(self, name, binary, certs, sink, tls, work, cfg, extra_upstream=None):
        import daemon
        daemon.PROXY_BIN = binary
        self.name = name
        # Room for the most sessions any figure holds (the proxy alone, when stunnel cannot).
        room = str(max(cfg["idle"], cfg.get("idle_alone", 0)) + 1000)
        up = {"host": "127.0.0.1", "port": str(sink.ports[tls]), "tls": tls,
              "server_name": "mail.test", "verify": "yes", "ca_file": certs["ca"][0],
              "username": "bench", "password": "secret",
              "max_connections": room}
        up.update(extra_upstream or {})
        sections = {
            "proxy": {"listen": "127.0.0.1:0", "hostname": "proxy.bench.test",
                      "allow": "127.0.0.0/8", "max_sessions": room,
                      "timeout": "300"},
            "upstream": up,
            # Lifted: one 200 MB message, and every session from one loopback address.
            "limits": {"max_message_size": "0", "max_sessions_per_client": "1000000"},
            "log": {"level": "info", "format": "text"},
        }
        ProxySystem.made += 1     # fresh ones for the idle figure: files of their own
        self.p = Proxy(work, sections, name="%s_%d" % (
            name.replace(" ", "_").replace("=", ""), ProxySystem.made))
        self.p.start()
        self.port = self.p.port
        # Main process and workers, from the log once: it grows long during the run.
        self.procs = [self.p.pid] + self.p.worker_pids()

    def pids(self):
        return self.procs

    def stop(self):
        self.p.stop()


class StunnelSystem(System):
    name = "stunnel"
    client_args = ("-a",)

    def __init__(self, certs, sink, tls, work):
        self.port = free_port()
        conf = os.path.join(work, "stunnel.conf")
        # Logging at warning: at its default (notice, lines per connection) stunnel makes
        # less than half as many sessions a second. The proxy keeps its default, info.
        lines = ["foreground = yes", "pid =", "debug = warning",
                 "output = %s" % os.path.join(work, "stunnel.log"),
                 "[smtp]", "client = yes", "accept = 127.0.0.1:%d" % self.port,
                 "connect = 127.0.0.1:%d" % sink.ports[tls],
                 "CAfile = %s" % certs["ca"][0], "verifyChain = yes",
                 "checkHost = mail.test", "sni = mail.test",
                 # stunnel leaves Nagle on unless told; the proxy sets TCP_NODELAY.
                 "socket = l:TCP_NODELAY=1", "socket = r:TCP_NODELAY=1"]
        if tls == "starttls":
            lines.append("protocol = smtp")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["stunnel", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(work, "stunnel.stderr"), "wb"))
        wait_listen(self.port)

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class DirectSystem(System):
    name = "direct"

    def __init__(self, certs, sink, tls):
        self.port = sink.ports[tls]
        self.client_args = ("-T", tls, "-A", certs["ca"][0], "-N", "mail.test", "-a")


class Bench:
    def __init__(self, args, cfg, work):
        self.args, self.cfg, self.work = args, cfg, work
        self.loadgen = os.path.join(args.bindir, "loadgen")
        self.tls = os.environ.get("BENCH_TLS", "starttls")
        self.sink, self.systems = None, []
        # results[figure][system name] = [value per rep]; up[figure][name] = [conns, units]
        self.results, self.up, self.load, self.resumed = {}, {}, {}, {}

    def start(self):
        args, cfg, work = self.args, self.cfg, self.work
        self.certs = testca.make_ca(os.path.join(work, "ca"))
        self.sink = Sink(args.bindir, self.certs, work)
        # "proxy": reuse off, an upstream connection per session as stunnel makes.
        makers = [lambda: ProxySystem("proxy", args.proxy, self.certs, self.sink, self.tls,
                                      work, cfg, {"reuse": "0"})]
        reuse = os.environ.get("BENCH_REUSE", "10")
        if reuse not in ("", "0"):
            extra = {"reuse": reuse}
            if os.environ.get("BENCH_REUSE_IDLE"):
                extra["reuse_idle"] = os.environ["BENCH_REUSE_IDLE"]
            makers.append(lambda: ProxySystem("proxy reuse=%s" % reuse, args.proxy,
                                              self.certs, self.sink, self.tls, work, cfg,
                                              extra))
        makers.append(lambda: StunnelSystem(self.certs, self.sink, self.tls, work))
        # The idle figure wants a fresh relay each time: freed memory stays in a
        # process's heap, and a second run would measure only what the first left over.
        self.makers = makers
        self.systems = [m() for m in makers]
        self.direct = DirectSystem(self.certs, self.sink, self.tls)

    def stop(self):
        for s in self.systems:
            s.stop()
        if self.sink is not None:
            self.sink.stop()

    def loadgen_run(self, system, *argv, stdin=None):
        cmd = [self.loadgen, "-p", str(system.port)] + list(system.client_args) + \
            [str(a) for a in argv]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=LOADGEN_ENV)
        if r.returncode != 0:
            raise RuntimeError("%s: %s failed (%d): %s" % (system.name, " ".join(cmd),
                                                           r.returncode, r.stderr.strip()))
        return {k: float(v) for k, v in (x.split("=") for x in r.stdout.split())}

    def record(self, fig, system, value, units, before, after):
        self.results.setdefault(fig, {}).setdefault(system.name, []).append(value)
        u = self.up.setdefault(fig, {}).setdefault(system.name, [0, 0])
        u[0] += after["handshakes"] - before["handshakes"]
        u[1] += units
        self.note_resumed(system, before, after)

    def note_resumed(self, system, before, after):
        r = self.resumed.setdefault(system.name, [0, 0])
        r[0] += after["resumed"] - before["resumed"]
        r[1] += after["handshakes"] - before["handshakes"]

    def note_load(self, fig, system, wall, relay_ms, sink_ms, client_ms):
        self.load.setdefault(fig, {}).setdefault(system.name, []).append(
            (relay_ms / wall / 10, sink_ms / wall / 10, client_ms / wall / 10))

    def measured(self, fig, system, *argv, value, units):
        """One loadgen run: its result line, CPU of relay / sink / client, sink counters."""
        before = self.sink.stats()
        pids, spids = system.pids(), self.sink.pids()
        c0, s0, t0 = cpu_ms(pids), cpu_ms(spids), time.monotonic()
        r = self.loadgen_run(system, *argv)
        wall = time.monotonic() - t0
        c1, s1 = cpu_ms(pids), cpu_ms(spids)
        after = self.sink.stats()
        v = value(r, c1 - c0)
        self.record(fig, system, v, units(r), before, after)
        self.note_load(fig, system, wall, c1 - c0, s1 - s0, r["cpu_ms"])
        return r, c1 - c0

    def order(self, rep, systems):
        return systems if rep % 2 == 0 else list(reversed(systems))

    def run(self):
        cfg = self.cfg
        everyone = self.systems + [self.direct]
        figs = [
            ("big", "one %d MB message, MB/s" % cfg["big_mb"], everyone,
             ("big", cfg["big_mb"]), lambda r, c: r["mbps"], lambda r: 1),
            ("sessions", "new sessions/s, one 1 KB message each, %d parallel" % PARALLEL,
             everyone, ("sessions", cfg["sess"], PARALLEL), lambda r, c: r["rate"],
             lambda r: cfg["sess"]),
            ("latency", "connect → 250 to MAIL, p50 ms (one session at a time)", everyone,
             ("latency", cfg["lat"]), lambda r, c: r["lat_p50_ms"], lambda r: cfg["lat"]),
            ("msgs", "messages/s, %s over %d sessions" % (
                format(cfg["msgs"], ","), PARALLEL), everyone,
             ("msgs", cfg["msgs"], PARALLEL), lambda r, c: r["rate"],
             lambda r: r["messages"]),
            ("pipe", "the same, MAIL RCPT DATA pipelined", everyone,
             ("-P", "msgs", cfg["msgs"], PARALLEL), lambda r, c: r["rate"],
             lambda r: r["messages"]),
        ]
        for key, _, systems, argv, value, units in figs:
            for rep in range(cfg["reps"]):
                for s in self.order(rep, systems):
                    if key == "sessions":
                        r, c = self.measured(key, s, *argv, value=value, units=units)
                        if s is not self.direct:
                            self.results.setdefault("cpu", {}).setdefault(
                                s.name, []).append(c / cfg["sess"])
                    else:
                        self.measured(key, s, *argv, value=value, units=units)
            self.progress(key)
        for rep in range(cfg["idle_reps"]):
            for m in self.order(rep, self.makers):
                self.fresh_idle(m, cfg["idle"], "idle")
        self.progress("idle")
        # stunnel's descriptor need capped the count above; the proxy's is half per worker.
        if cfg.get("idle_alone"):
            for rep in range(cfg["idle_reps"]):
                for m in self.order(rep, self.makers[:-1]):
                    self.fresh_idle(m, cfg["idle_alone"], "idle_alone")
            self.progress("idle alone")
        titles = {k: t for k, t, *_ in figs}
        titles["cpu"] = "relay CPU per session, ms (from the sessions run)"
        titles["idle"] = "RSS per idle session, KB (%s held)" % format(cfg["idle"], ",")
        titles["idle_alone"] = "the same, %s held (stunnel cannot here)" % format(
            cfg.get("idle_alone", 0), ",")
        return titles

    def fresh_idle(self, maker, n, key):
        s = maker()
        try:
            self.idle(s, n, key)
        finally:
            s.stop()

    def idle(self, system, n, key):
        pids = system.pids()
        base = rss_kb(pids)
        before = self.sink.stats()
        cmd = [self.loadgen, "-p", str(system.port)] + list(system.client_args) + \
            ["idle", str(n), str(PARALLEL)]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=LOADGEN_ENV)
        try:
            ready, _, _ = select.select([p.stdout], [], [], 300)
            line = p.stdout.readline() if ready else ""
            if not line.startswith("ready"):
                raise RuntimeError("%s: idle run did not get ready: %s %s" % (
                    system.name, line, p.stderr.read() if p.poll() is not None else ""))
            kv = dict(x.split("=") for x in line.split()[1:])
            opened = int(kv["opened"])
            if opened < n:
                raise RuntimeError("%s: only %d of %d idle sessions opened" % (
                    system.name, opened, n))
            # Settle: the relay's last sessions finish their upstream set-up.
            time.sleep(0.5)
            held = rss_kb(system.pids())
            after = self.sink.stats()
        finally:
            p.stdin.close()
            p.wait(300)
        self.results.setdefault(key, {}).setdefault(system.name, []).append(
            (held - base) / opened)
        u = self.up.setdefault(key, {}).setdefault(system.name, [0, 0])
        u[0] += after["handshakes"] - before["handshakes"]
        u[1] += opened
        self.note_resumed(system, before, after)

    def progress(self, key):
        print("bench: %-8s done at %5.1f s" % (key, time.monotonic() - self.t0),
              file=sys.stderr, flush=True)

    def report(self, titles):
        names = [s.name for s in self.systems] + ["direct"]
        base = "stunnel"
        proxies = [s.name for s in self.systems if s.name != base]
        order = ["big", "sessions", "cpu", "msgs", "pipe", "latency", "idle", "idle_alone"]
        out = []
        # Where the CPU went: shows whether the sink or the client was the limit.
        out.append("CPU use during each run, %% of one core (%d cores): relay / sink / client"
                   % os.cpu_count())
        for key in ("big", "sessions", "latency", "msgs", "pipe"):
            cells = []
            for n in names:
                loads = self.load.get(key, {}).get(n)
                if loads:
                    m = [statistics.median(x[i] for x in loads) for i in range(3)]
                    cells.append("%s %s / %.0f / %.0f" % (
                        n, "%.0f" % m[0] if n != "direct" else "-", m[1], m[2]))
            out.append("  %-9s %s" % (key, "; ".join(cells)))
        out.append("Upstream TLS handshakes resumed (session tickets): " + ", ".join(
            "%s %.0f %%" % (n, 100.0 * r[0] / r[1]) for n, r in self.resumed.items() if r[1]))
        out.append("")
        hdr = ["figure"] + names + ["%s / %s" % (p, base) for p in proxies]
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "---|" * len(hdr))
        ratios = {p: {} for p in proxies}
        for key in order:
            if key not in self.results:
                continue
            row = [titles[key]]
            res = self.results.get(key, {})
            for n in names:
                vals = res.get(n)
                if not vals:
                    row.append("–")
                    continue
                cell = fmt(statistics.median(vals))
                u = self.up.get(key if key != "cpu" else "sessions", {}).get(n)
                if u and u[1] and key != "cpu":
                    per = u[0] / u[1]
                    cell += " (%.3f)" % per if 0 < per < 0.1 else " (%.2f)" % per
                row.append(cell)
            for p in proxies:
                a, b = res.get(p), res.get(base)
                if a and b:
                    r = statistics.median(x / y for x, y in zip(a, b) if y)
                    ratios[p][key] = r
                    row.append("**%.2f**" % r)
                else:
                    row.append("–")
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        out.append("(n): upstream TLS connections per message (idle: per held session), "
                   "from the sink's counters; %s repetitions, interleaved, medians; "
                   "ratio: median of the paired ratios." % self.cfg["reps"])
        out.append("; ".join("ratios %s/%s: " % (p, base) + " ".join(
            "%s=%.2f" % (k, ratios[p][k]) for k in order if k in ratios[p]) for p in proxies))
        return "\n".join(out)


def fmt(v):
    if v >= 100:
        return format(round(v), ",")
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def raise_nofile(want):
    """Raise the descriptor limit (inherited by every process started here) toward want;
    the limit we got. Beyond the hard limit only CAP_SYS_RESOURCE can go."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for lim in (want, hard):
        if lim == resource.RLIM_INFINITY or lim <= soft:
            return soft
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (lim, max(lim, hard)))
            return lim
        except (ValueError, OSError):
            pass
    return soft


def idle_sessions(want, nofile):
    """How many idle sessions this descriptor limit lets every relay hold: stunnel, one
    process, uses two descriptors a session and allows nofile * 125 / 256 clients."""
    return max(1, min(want, nofile * 125 // 256 - 50))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="full", choices=sorted(MODES))
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args()
    if not shutil.which("stunnel"):
        raise SystemExit("bench: stunnel not installed (Debian: stunnel4; make deps)")
    cfg = MODES[args.mode]
    nofile = raise_nofile(4 * cfg["idle"] + 4096)
    held = idle_sessions(cfg["idle"], nofile)
    if held < cfg["idle"]:
        # The proxy's workers share its sessions; client and sink need one descriptor each.
        alone = cfg["idle"] if nofile >= cfg["idle"] + 1000 else 0
        print("bench: ulimit -n is %d here (hard limit): stunnel can hold %d idle sessions, "
              "not %d%s" % (nofile, held, cfg["idle"], "; the proxy holds %d alone" % alone
                            if alone else ""), file=sys.stderr)
        cfg = dict(cfg, idle=held, idle_alone=alone)
    work = tempfile.mkdtemp(prefix="smtp-tls-proxy-bench.")
    t0 = time.monotonic()
    b = None
    try:
        b = Bench(args, cfg, work)
        b.t0 = t0
        b.start()
        titles = b.run()
        table = b.report(titles)
    finally:
        if b is not None:
            b.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("bench: logs in %s" % work, file=sys.stderr)
    print("bench: %s run, %.0f s, %s, %d CPUs, stunnel %s" % (
        args.mode, time.monotonic() - t0, time.strftime("%Y-%m-%d"), os.cpu_count(),
        stunnel_version()))
    print(table)


def stunnel_version():
    r = subprocess.run(["stunnel", "-version"], capture_output=True, text=True)
    for line in (r.stdout + r.stderr).splitlines():
        if line.startswith("stunnel "):
            return line.split()[1]
    return "?"


if __name__ == "__main__":
    main()
