"""Several instances behind a real HAProxy: Debian's haproxy in front (mode tcp, one backend
with send-proxy, one with send-proxy-v2, option smtpchk health checks carrying the PROXY
header), two smtp-tls-proxy instances with PROXY-protocol listeners behind it, the real
Postfix behind them. A bounded client load runs across both while one instance is drained
with SIGTERM and restarted, and then the other is killed with SIGKILL: every message that
got a 250 is in the mailbox exactly once, nothing twice, every failure a client saw was a 4xx
or a dropped connection it retried, and the daemons logged each session with the client's
own address (client=) and HAProxy's connection to them (via=).

What the clients do is what a device does: one session per message, a unique Message-ID,
and after a 4xx or a dropped connection the same message again (bounded attempts).

The one case no SMTP relay can close is RFC 1047's: a connection lost after the final dot
went out and before its reply came back; the server may have the message and the client
must send it again. The test keeps that window out of the SIGKILL (the clients pass a gate
before DATA, and the kill waits until none is between DATA and its reply), so that
"duplicates = 0" is a strict assertion about the proxy. Attempts cut in that window all the
same would be reported as `ambiguous`.
"""
import email
import os
import signal
import smtplib
import threading
import time
import uuid
from collections import Counter

import pytest

from daemon import Proxy, _alive, free_ports
from haproxy import HAPROXY, HAProxy, check_config
from proxylog import CRASH_MARKERS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SENDER = "device@legacy.test"

CLIENTS = 4             # parallel clients, two on each HAProxy frontend
MESSAGES = (10, 400)    # messages per client: at least, and at most (the load runs until
                        # the instances have been drained, restarted and killed)
PAUSE = 0.05            # seconds between a client's messages (a device, not a flood)
ATTEMPTS = 8            # a client's tries per message
RUN_BOUND = 90          # seconds for the whole load

# inter/rise/fall are short so the test sees the states change within seconds; the example
# config (conf/haproxy.cfg.example) has production values.
HAPROXY_CFG = """\
global
    log stdout format raw local0 info
    stats socket {sock} mode 600 level admin
    maxconn 200

defaults
    mode tcp
    log global
    log-format "hap client=%ci:%cp via=%bi:%bp server=%b/%s term=%ts bytes=%B"
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 5s
    retries 3
    option redispatch 1
    default-server inter 1s fastinter 500ms downinter 1s rise 2 fall 2

frontend fe_v1
    bind 127.0.0.1:{fe_v1}
    default_backend be_v1

frontend fe_v2
    bind 127.0.0.1:{fe_v2}
    default_backend be_v2

backend be_v1
    balance roundrobin
    option smtpchk EHLO haproxy.test
    server a 127.0.0.1:{a_v1} check send-proxy check-send-proxy
    server b 127.0.0.1:{b_v1} check send-proxy check-send-proxy

backend be_v2
    balance roundrobin
    option smtpchk EHLO haproxy.test
    server a 127.0.0.1:{a_v2} check send-proxy-v2 check-send-proxy
    server b 127.0.0.1:{b_v2} check send-proxy-v2 check-send-proxy
"""


@pytest.fixture(scope="module", autouse=True)
def need_haproxy():
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail("no haproxy: apt-get install haproxy (make deps)", pytrace=False)


def instance_sections(postfix, pki, name, v1_port, v2_port):
    """One smtp-tls-proxy instance: a v1 and a v2 PROXY-protocol listener on fixed ports (so
    a restart comes back where HAProxy looks), Postfix's submission port upstream."""
    return {
        "proxy": {"listen": "127.0.0.1:0", "hostname": name + ".proxy.test",
                  "allow": "127.0.0.0/8", "workers": "2", "shutdown_timeout": "10",
                  "timeout": "30"},
        "upstream": {"host": "127.0.0.1", "port": str(postfix.submission_port),
                     "tls": "starttls", "server_name": "mail.test", "ca_file": pki["ca"][0],
                     "username": postfix.user, "password": postfix.password},
        "listener lb1": {"listen": "127.0.0.1:%d" % v1_port, "proxy_protocol": "v1",
                         "proxy_from": "127.0.0.0/8"},
        "listener lb2": {"listen": "127.0.0.1:%d" % v2_port, "proxy_protocol": "v2",
                         "proxy_from": "127.0.0.0/8"},
        "log": {"level": "info"},
    }


class Instance:
    """One instance across its restarts: each start is a new Proxy (its own log file)."""

    def __init__(self, workdir, name, sections):
        self.workdir, self.name, self.sections = workdir, name, sections
        self.gens = []

    def start(self):
        p = Proxy(self.workdir, self.sections, name="%s%d" % (self.name, len(self.gens) + 1))
        self.gens.append(p)
        return p.start()

    @property
    def cur(self):
        return self.gens[-1]

    def client_sessions(self, gens=None):
        """The session.open lines of client sessions (health checks, whose client is the
        balancer itself, left out) of every start, or of the given ones."""
        return [d for p in (gens or self.gens) for d in p.events("session.open")
                if d.get("client") != d.get("via")]

    def open_clients(self):
        """Client addresses of the sessions the running start has open (no session.close)."""
        p = self.cur
        closed = {d["sid"] for d in p.events("session.close")}
        return {d["client"] for d in self.client_sessions([p]) if d["sid"] not in closed}

    def sigkill(self):
        """The instance dies at once: main process and every worker."""
        p = self.cur
        pids = [p.pid] + p.worker_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.proc.wait(10)
        end = time.monotonic() + 10
        while any(_alive(w) for w in pids[1:]):
            assert time.monotonic() < end, "workers survived SIGKILL"
            time.sleep(0.05)

    def stop_all(self):
        for p in self.gens:
            p.stop()


class Load:
    """CLIENTS threads sending messages through HAProxy, retrying like devices, each until
    `finish` is set (at least MESSAGES[0], at most MESSAGES[1]).

    The gate: before DATA a client waits while the gate is closed (its session open, MAIL
    and RCPT accepted: `held`), and between DATA and the reply it counts as `at_dot`. The
    test closes the gate, waits until nobody is at the dot, and signals an instance."""

    def __init__(self, ports, tag):
        self.ports, self.tag = ports, tag
        self.cv = threading.Condition()
        self.gate_open = True
        self.at_dot = 0
        self.held = {}                       # thread index -> its attempt waiting at the gate
        self.attempts = []                   # dicts: client, msgid, lport, outcome, detail
        self.ok = {}                         # msgid -> attempts it took
        self.gave_up = {}                    # msgid -> last outcome
        self.stop = threading.Event()       # give up now (the test failed)
        self.finish = threading.Event()     # end after the current message
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(CLIENTS)]

    # ---- the gate ----------------------------------------------------------------------
    def _enter_dot(self, ci, rec):
        with self.cv:
            self.held[ci] = rec
            end = time.monotonic() + 30
            while not self.gate_open and time.monotonic() < end:
                self.cv.wait(0.1)
            del self.held[ci]
            self.at_dot += 1

    def _leave_dot(self):
        with self.cv:
            self.at_dot -= 1
            self.cv.notify_all()

    def close_gate(self, timeout=15):
        with self.cv:
            self.gate_open = False
            end = time.monotonic() + timeout
            while self.at_dot and time.monotonic() < end:
                self.cv.wait(0.1)
            assert self.at_dot == 0, "a client stayed between DATA and its reply"

    def open_gate(self):
        with self.cv:
            self.gate_open = True
            self.cv.notify_all()

    def held_attempts(self):
        with self.cv:
            return list(self.held.values())

    def nheld(self):
        with self.cv:
            return len(self.held)

    # ---- the clients -------------------------------------------------------------------
    def successes(self):
        with self.cv:
            return len(self.ok)

    def run(self, ci):
        port = self.ports[ci % len(self.ports)]
        for m in range(MESSAGES[1]):
            if m >= MESSAGES[0] and self.finish.is_set():
                return
            msgid = "<%s-c%d-m%d@load.test>" % (self.tag, ci, m)
            for n in range(1, ATTEMPTS + 1):
                if self.stop.is_set():
                    return
                outcome = self.attempt(ci, port, msgid)
                if outcome == "ok":
                    with self.cv:
                        self.ok[msgid] = n
                    break
                if outcome not in ("4xx", "dropped"):
                    break           # a 5xx or a hang: not retried, fails the test
                time.sleep(min(0.1 * n, 0.5))
            else:
                outcome = "attempts"
            if outcome != "ok":
                with self.cv:
                    self.gave_up[msgid] = outcome
            time.sleep(PAUSE)

    def attempt(self, ci, port, msgid):
        rec = {"client": ci, "msgid": msgid, "lport": None, "greeted": False,
               "outcome": None, "detail": "", "stage": "connect"}
        body = ("From: %s\r\nTo: inbox@example.test\r\nSubject: load %s\r\nMessage-ID: %s\r\n"
                "\r\nmessage %s through HAProxy\r\n" % (SENDER, msgid, msgid, msgid))
        s = smtplib.SMTP(timeout=20)
        try:
            code, text = s.connect("127.0.0.1", port)
            rec["lport"] = s.sock.getsockname()[1]
            rec["greeted"] = code == 220
            steps = (("ehlo", lambda: s.ehlo("device.test"), 250),
                     ("mail", lambda: s.mail(SENDER), 250),
                     ("rcpt", lambda: s.rcpt("inbox@example.test"), 250))
            if code != 220:
                raise smtplib.SMTPResponseException(code, text)
            for rec["stage"], step, want in steps:
                code, text = step()
                if code != want:
                    raise smtplib.SMTPResponseException(code, text)
            rec["stage"] = "data"
            self._enter_dot(ci, rec)
            try:
                # smtplib's data(), step by step, to know when the final dot is out.
                code, text = s.docmd("DATA")
                if code != 354:
                    raise smtplib.SMTPResponseException(code, text)
                s.send(smtplib.quotedata(body).encode() + b".\r\n")   # body ends in CRLF
                rec["stage"] = "dot"
                code, text = s.getreply()
            finally:
                self._leave_dot()
            if code != 250:
                raise smtplib.SMTPResponseException(code, text)
            rec["outcome"] = "ok"
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass            # the message is delivered; a lost 221 changes nothing
        except smtplib.SMTPResponseException as e:
            rec["outcome"] = "4xx" if 400 <= e.smtp_code < 500 else "%dxx" % (e.smtp_code // 100)
            rec["detail"] = "%s %r" % (e.smtp_code, e.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            # smtplib reports a read timeout as a disconnection: a hang is not a drop.
            hang = isinstance(e, TimeoutError) or "timed out" in str(e)
            rec["outcome"], rec["detail"] = "timeout" if hang else "dropped", repr(e)
        finally:
            s.close()
        with self.cv:
            self.attempts.append(rec)
        return rec["outcome"]


def run_files(postfix, tag):
    """[(path, Message-ID)] of this run's messages in Postfix's mailbox."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(postfix.maildir, sub)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
            path = os.path.join(d, name)
            with open(path, errors="replace") as f:
                mid = email.message_from_file(f).get("Message-ID", "")
            if tag in mid:
                out.append((path, mid))
    return out


def mailbox_ids(postfix, tag):
    """{Message-ID: copies} of this run's messages in Postfix's mailbox."""
    return Counter(mid for _, mid in run_files(postfix, tag))


def queue_empty(postfix):
    for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _, _, files in os.walk(os.path.join(postfix.root, "queue", sub)):
            if files:
                return False
    return True


def wait_until(cond, timeout, what, state=lambda: ""):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting for %s %s" % (what, state())
        time.sleep(0.05)


def signal_with_held_session(load, inst, act, tries=5):
    """Close the gate, wait until a held client session (MAIL and RCPT done, before DATA)
    is open on `inst`, then act(); open the gate. Returns those held attempts."""
    seen = []
    for _ in range(tries):
        load.close_gate()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            on = inst.open_clients()
            held = [r for r in load.held_attempts() if "127.0.0.1:%d" % r["lport"] in on]
            if held:
                act()
                load.open_gate()
                return held
            if load.nheld() == CLIENTS:
                break           # every client waits, all on the other instance
            time.sleep(0.05)
        seen.append((sorted(on), sorted("127.0.0.1:%d" % r["lport"]
                                        for r in load.held_attempts())))
        load.open_gate()
        time.sleep(0.3)
    # What it saw each try (open on the instance; held at the gate), the last attempts and
    # the instance's log: enough to tell an unlucky spread from sessions stuck there.
    log = inst.cur.stderr().splitlines()
    raise AssertionError("no client session landed on %s to be cut: %r; attempts %r; "
                         "its log, last lines:\n%s" % (inst.name, seen, load.attempts[-8:],
                                                        "\n".join(log[-40:])))


def test_two_instances_behind_haproxy_drain_restart_kill(postfix, pki, tmp_path):
    """The figures this prints go in the README ("Running several instances")."""
    work = str(tmp_path)
    tag = "lb" + uuid.uuid4().hex[:12]
    a_v1, a_v2, b_v1, b_v2, fe_v1, fe_v2 = free_ports(6)
    a = Instance(work, "a", instance_sections(postfix, pki, "a", a_v1, a_v2))
    b = Instance(work, "b", instance_sections(postfix, pki, "b", b_v1, b_v2))
    hap = HAProxy(work, HAPROXY_CFG.format(sock="{sock}", fe_v1=fe_v1, fe_v2=fe_v2,
                                           a_v1=a_v1, a_v2=a_v2, b_v1=b_v1, b_v2=b_v2))
    load = Load([fe_v1, fe_v2], tag)
    srv = {name: [("be_v1", name), ("be_v2", name)] for name in ("a", "b")}
    t0 = time.monotonic()

    def state():
        return "(t=%.1fs, %d accepted, %d attempts, gave up: %r)" % (
            time.monotonic() - t0, load.successes(), len(load.attempts), load.gave_up)

    try:
        a.start()
        b.start()
        hap.start()
        assert hap.wait_status(srv["a"] + srv["b"], "UP"), hap.servers()
        for t in load.threads:
            t.start()
        deadline = t0 + RUN_BOUND

        # 1. Drain: SIGTERM a while a client's session on it has MAIL and RCPT done; that
        # session's message must still be accepted (250) by the draining instance.
        wait_until(lambda: load.successes() >= 20, 30, "the first messages", state)
        a1 = a.cur
        drained = signal_with_held_session(load, a, lambda: a1.signal(signal.SIGTERM))
        assert a1.proc.wait(30) == 0, a1.stderr()[-3000:]
        assert hap.wait_status(srv["a"], "DOWN", 15), hap.servers()

        # 2. Restart it; HAProxy's checks bring it back and it takes sessions again.
        a.start()
        assert hap.wait_status(srv["a"], "UP", 20), hap.servers()
        wait_until(lambda: len(a.client_sessions([a.cur])) >= 25, 30,
                   "sessions on the restarted instance", state)

        # 3. Kill the other one outright, with a client's session on it; the load goes on
        # until the survivor has served a few more sessions alone.
        killed = signal_with_held_session(load, b, b.sigkill)
        cut = b.open_clients()
        served_at_kill = len(a.client_sessions())
        assert hap.wait_status(srv["b"], "DOWN", 15), hap.servers()
        wait_until(lambda: len(a.client_sessions()) >= served_at_kill + 40, 30,
                   "sessions on the survivor", state)
        load.finish.set()
        for t in load.threads:
            t.join(max(1, deadline - time.monotonic()))
        load.stop.set()
        assert not any(t.is_alive() for t in load.threads), "the load did not finish in time"
        load_secs = time.monotonic() - t0

        # Every accepted message arrives, once: wait for the queue to empty first.
        wait_until(lambda: queue_empty(postfix) and
                   len(mailbox_ids(postfix, tag)) >= len(load.ok), 30, "delivery")
        in_box = mailbox_ids(postfix, tag)
        for path, _ in run_files(postfix, tag):
            os.unlink(path)         # the other e2e tests search the mailbox: keep it small
    finally:
        load.stop.set()
        load.open_gate()
        hap.stop()
        a.stop_all()
        b.stop_all()

    attempts = load.attempts
    by_outcome = {}
    for r in attempts:
        by_outcome[r["outcome"]] = by_outcome.get(r["outcome"], 0) + 1
    # Cut between DATA and its reply: the only attempts whose message may arrive twice.
    ambiguous = {r["msgid"] for r in attempts if r["outcome"] == "dropped"
                 and r["stage"] == "dot"}
    lost = [m for m in load.ok if in_box.get(m, 0) == 0]
    dups = {m: n for m, n in in_box.items() if n > 1}
    phantom = [m for m in in_box if m not in load.ok]

    logs = [p for inst in (a, b) for p in inst.gens]
    opened = {}
    for p in logs:
        for d in p.events("session.open"):
            opened.setdefault(d["client"], []).append((p.conf, d))
    checks = {(os.path.basename(p.conf), d["listener"]) for p in logs
              for d in p.events("session.open") if d["client"] == d["via"]}
    sessions = {os.path.basename(p.conf)[:-4]: len([d for d in p.events("session.open")
                                                    if d["client"] != d["via"]])
                for p in logs}
    figures = {
        "run_seconds": round(load_secs, 1),
        "messages": len(load.ok) + len(load.gave_up), "accepted_250": len(load.ok),
        "delivered": sum(in_box.values()),
        "client_sessions": len(attempts), "sessions_per_instance": sessions,
        "health_check_sessions": sum(len([d for d in p.events("session.open")
                                          if d["client"] == d["via"]]) for p in logs),
        "retried_4xx": by_outcome.get("4xx", 0), "retried_dropped": by_outcome.get("dropped", 0),
        "cut_by_sigkill": len(cut),
        "served_by_survivor_after_kill": len(a.client_sessions()) - served_at_kill,
        "lost": len(lost), "duplicates": len(dups), "ambiguous": len(ambiguous),
    }
    print("\nload-balanced run: " + " ".join("%s=%s" % kv for kv in figures.items()))
    failures = [r for r in attempts if r["outcome"] != "ok"]
    print("failures the clients saw:\n  " + "\n  ".join(
        "%s %s at %s: %s" % (r["msgid"], r["outcome"], r["stage"], r["detail"])
        for r in failures))

    for p in logs:
        text = p.stderr()
        assert not any(m in text for m in CRASH_MARKERS), p.conf + ":\n" + text[-4000:]
        # Health checks carried the header too (check-send-proxy): nothing was refused.
        assert not p.events("proxy.header"), (p.conf, p.events("proxy.header"))
        assert not p.orphans, (p.conf, p.orphans)
    assert a.gens[1].returncode == 0, a.gens[1].stderr()[-3000:]

    # Nothing that got a 250 lost, nothing twice, nothing unasked for.
    assert not load.gave_up, load.gave_up
    assert not lost, lost
    assert not phantom, phantom
    assert not dups, ("delivered twice", dups, "cut after DATA", ambiguous)
    # Every failure a client saw was a 4xx or a dropped connection, and it was retried.
    assert set(by_outcome) <= {"ok", "4xx", "dropped"}, by_outcome
    # The drained session finished on the draining instance; the killed ones were cut.
    assert drained and all(r["outcome"] == "ok" for r in drained), drained
    assert killed and all(r["outcome"] == "dropped" for r in killed), killed
    assert len(cut) >= len(killed)
    # The survivor served on, and both instances had client sessions.
    assert figures["served_by_survivor_after_kill"] >= 40
    assert all(sessions[k] > 0 for k in ("a1", "a2", "b1")), sessions
    # Both listeners of every instance were health-checked through the PROXY header
    # (v2 LOCAL, v1 the check connection's own addresses: client = via, the balancer).
    for conf in ("a1.ini", "a2.ini", "b1.ini"):
        assert {(conf, "lb1"), (conf, "lb2")} <= checks, checks

    # The client the daemons logged is the smtplib socket, via HAProxy's own connection to
    # them: one daemon session per greeted attempt, and HAProxy's log pairs the two
    # addresses the same way. (Counted as multisets: 600 connections reuse local ports.)
    greeted = Counter("127.0.0.1:%d" % r["lport"] for r in attempts if r["greeted"])
    daemon_side = Counter()
    for p in logs:
        inst = os.path.basename(p.conf)[0]
        for d in p.events("session.open"):
            if d["client"] != d["via"]:
                assert d["via"].startswith("127.0.0.1:"), d
                daemon_side[(d["client"], d["via"], inst, d["listener"])] += 1
    daemon_clients = Counter(k[0] for k in daemon_side.elements())
    assert not greeted - daemon_clients, greeted - daemon_clients
    # A session the daemon opened that the client never saw greeted: cut while the instance
    # prepared its upstream (SIGKILL), and retried.
    cut_early = Counter("127.0.0.1:%d" % r["lport"] for r in attempts
                        if r["lport"] and not r["greeted"] and r["outcome"] == "dropped")
    assert not daemon_clients - greeted - cut_early, daemon_clients - greeted
    hap_side = Counter((h["client"], h["via"], h["server"].split("/")[1],
                        {"be_v1": "lb1", "be_v2": "lb2"}[h["server"].split("/")[0]])
                       for h in hap.log_records() if "/" in h.get("server", ""))
    assert not daemon_side - hap_side, (daemon_side - hap_side)


def test_a_check_without_the_header_fails_on_a_proxy_protocol_listener(postfix, pki,
                                                                         tmp_path):
    """What check-send-proxy is for: the same v2 listener checked with the header is UP
    (check-send-proxy, or HAProxy's default for a send-proxy-v2 server checked on its own
    address); checked without it (a check `port` turns the default off) HAProxy waits for a
    banner that never comes, marks the server DOWN, and the daemon logs proxy.header for
    each such check."""
    work = str(tmp_path)
    v1, v2, fe = free_ports(3)
    inst = Instance(work, "c", instance_sections(postfix, pki, "c", v1, v2))
    hap = HAProxy(work, """\
global
    stats socket {sock} mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout check 2s
    default-server inter 1s downinter 1s rise 2 fall 2
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    option smtpchk EHLO haproxy.test
    server with 127.0.0.1:%d check send-proxy-v2 check-send-proxy
    server default 127.0.0.1:%d check send-proxy-v2
    server without 127.0.0.1:%d check send-proxy-v2 port %d
""" % (fe, v2, v2, v2, v2))
    try:
        p = inst.start()
        hap.start()
        assert hap.wait_status([("be", "without")], "DOWN", 20), hap.servers()
        assert hap.status("be", "with") == "UP", hap.servers()
        assert hap.status("be", "default") == "UP", hap.servers()
        got = p.wait_event("proxy.header", listener="lb2")
        assert got and got[0]["reason"] in ("closed", "timeout"), got
        assert p.events("session.open", listener="lb2"), p.stderr()[-2000:]
    finally:
        hap.stop()
        inst.stop_all()
    p.assert_clean_exit()


def test_example_config_parses():
    rc, out = check_config(os.path.join(REPO, "conf", "haproxy.cfg.example"))
    assert rc == 0, out
    assert "Warning" not in out and "WARNING" not in out, out
