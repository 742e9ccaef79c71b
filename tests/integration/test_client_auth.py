"""client_auth = required: a device logs in to the proxy itself (users_file), never upstream.

The users file is made here with real crypt(3) hashes: yescrypt through libcrypt (ctypes, as
mkpasswd would) and SHA-512 from `openssl passwd -6`. The device profile matches 127.0.0.1;
a client from 127.0.0.2 is a device without a profile. The proxy logs in upstream with its
own credentials, as before, whatever the device does.
"""
import base64
import ctypes
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import DEFAULTS, PASSWORD, USER, check_config, swaks
from daemon import proxy_factory, sections
from test_commands import keywords

SCANNER, SCANNER_PW = "scanner", "Scan-9f2!pw"     # yescrypt
NAS, NAS_PW = "nas@example.test", "n4s-Pass-x7"     # SHA-512
PROFILE = "device scanners"

_libcrypt = ctypes.CDLL("libcrypt.so.1", use_errno=True)
_libcrypt.crypt_gensalt.restype = ctypes.c_char_p
_libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                    ctypes.c_int]
_libcrypt.crypt.restype = ctypes.c_char_p
_libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]


def yescrypt(pw):
    """A yescrypt hash at libxcrypt's default cost, as `mkpasswd -m yescrypt` makes it."""
    setting = _libcrypt.crypt_gensalt(b"$y$", 0, None, 0)
    h = _libcrypt.crypt(pw.encode(), setting).decode()
    assert h.startswith("$y$"), h
    return h


def sha512(pw):
    p = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw, capture_output=True,
                       text=True, timeout=10, check=True)
    return p.stdout.strip()


def write_users(path, users):
    text = "# devices that log in to the proxy\n\n" + \
        "".join("%s:%s\n" % (n, h) for n, h in users.items())
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.chmod(path + ".tmp", 0o600)
    os.replace(path + ".tmp", path)


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain(user, pw, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, pw))


@pytest.fixture(scope="module")
def hashes():
    return {SCANNER: yescrypt(SCANNER_PW), NAS: sha512(NAS_PW)}


@pytest.fixture
def gateway(tmp_path, certs, upstream, hashes):
    """gateway(device={...}, limits={...}, proxy={...}, users={...}) -> (up, proxy, users
    file): a proxy whose profile for 127.0.0.1 has client_auth = required, in front of a
    STARTTLS test upstream the proxy logs in to with its own credentials."""
    users = str(tmp_path / "users")

    def build(up, **over):
        return sections(certs, up, DEFAULTS, **over)

    factory = proxy_factory(tmp_path, build)
    make_proxy = next(factory)

    def make(device=None, limits=None, proxy=None, log=None, users_table=None):
        write_users(users, users_table or hashes)
        up = upstream("starttls")
        dev = {"match": "127.0.0.1", "client_auth": "required"}
        dev.update(device or {})
        px = make_proxy(up, proxy=dict({"users_file": users}, **(proxy or {})),
                        upstream={"username": USER, "password": PASSWORD}, limits=limits,
                        log=log, **{PROFILE: dev})
        return up, px, users

    yield make
    for _ in factory:       # the factory's teardown: every proxy stops cleanly
        pass


def greeted(px, **kw):
    c = px.client(**kw)
    assert c.read_reply().code == 220
    return c


def device_auths(up):
    """Every AUTH the upstream saw: only the proxy's own login, one per connection."""
    return [a for conn in up.connections for a in conn.auth]


def send_mail(c):
    c.expect("MAIL FROM:<scanner@example.test>", 250)
    c.expect("RCPT TO:<office@example.test>", 250)
    c.expect("DATA", 354)
    c.send(b"Subject: scan\r\n\r\npage 1\r\n.\r\n")
    return c.read_reply()


# ---- what the device is offered, and what it may not do before AUTH ---------------------------

def test_ehlo_offers_auth_plain_login_and_the_old_auth_line(gateway):
    up, px, _ = gateway()
    with greeted(px) as c:
        r = c.expect("EHLO scanner.lan", 250)
        assert "AUTH PLAIN LOGIN" in r.lines
        assert "AUTH=PLAIN LOGIN" in r.lines
    # The proxy's own login upstream is unchanged: made before the greeting.
    assert device_auths(up) == [("PLAIN", USER, PASSWORD, True)]


def test_mail_rcpt_data_before_auth_get_530_and_nothing_goes_upstream(gateway):
    up, px, _ = gateway()
    with greeted(px) as c:
        c.expect("EHLO scanner.lan", 250)
        for cmd in ("MAIL FROM:<scanner@example.test>", "RCPT TO:<office@example.test>",
                    "DATA"):
            assert c.cmd(cmd).first == "530 5.7.0 Authentication required"
        c.expect("NOOP", 250)
        c.expect("QUIT", 221)
    verbs = up.connections[0].verbs(True)
    assert "MAIL" not in verbs and "RCPT" not in verbs and "DATA" not in verbs


# ---- the mechanisms -------------------------------------------------------------------------

@pytest.mark.parametrize("dialogue", [
    pytest.param([("AUTH PLAIN " + plain(SCANNER, SCANNER_PW), "235 2.7.0")],
                 id="plain-initial-response"),
    pytest.param([("AUTH PLAIN", "334 "), (plain(SCANNER, SCANNER_PW), "235 2.7.0")],
                 id="plain-after-334"),
    pytest.param([("AUTH LOGIN", "334 VXNlcm5hbWU6"), (b64(SCANNER), "334 UGFzc3dvcmQ6"),
                  (b64(SCANNER_PW), "235 2.7.0")], id="login"),
    pytest.param([("AUTH LOGIN " + b64(SCANNER), "334 UGFzc3dvcmQ6"),
                  (b64(SCANNER_PW), "235 2.7.0")], id="login-initial-response"),
    pytest.param([("auth plain " + plain(SCANNER, SCANNER_PW), "235 2.7.0")],
                 id="lowercase-plain"),
    pytest.param([("AuTh LoGiN", "334 VXNlcm5hbWU6"), (b64(SCANNER), "334 UGFzc3dvcmQ6"),
                  (b64(SCANNER_PW), "235 2.7.0")], id="mixed-case-login"),
    pytest.param([("AUTH PLAIN " + plain(NAS, NAS_PW, authzid=NAS), "235 2.7.0")],
                 id="sha512-user-with-authzid"),
])
def test_device_logs_in_then_sends(gateway, dialogue):
    up, px, _ = gateway()
    with greeted(px) as c:
        c.expect("EHLO scanner.lan", 250)
        for line, want in dialogue:
            r = c.cmd(line)
            assert r.first.startswith(want), (line, r)
        assert send_mail(c).code == 250
        c.expect("QUIT", 221)
    assert up.wait_messages(1)
    # The device's credentials never reach the upstream: only the proxy's own login did.
    assert device_auths(up) == [("PLAIN", USER, PASSWORD, True)]
    conn = up.connections[0]
    assert conn.verbs(True).count("AUTH") == 1
    assert dialogue[-1][0].encode() not in conn.transcript
    ok = px.wait_event("client.auth", result="ok")
    assert ok and ok[0]["level"] == "info" and ok[0]["user"] in (SCANNER, NAS)
    assert ok[0]["mech"] == ("LOGIN" if "LOGIN" in dialogue[0][0].upper() else "PLAIN")


def test_star_cancels_and_a_second_auth_after_success_is_refused(gateway):
    up, px, _ = gateway()
    with greeted(px) as c:
        c.expect("EHLO scanner.lan", 250)
        c.expect("AUTH LOGIN", 334)
        assert c.cmd("*").first.startswith("501 5.0.0")
        c.expect("AUTH PLAIN", 334)
        assert c.cmd("*").first.startswith("501 5.0.0")
        assert c.cmd("MAIL FROM:<a@example.test>").code == 530
        assert c.cmd("AUTH CRAM-MD5").first.startswith("504 5.5.4")
        assert c.cmd("AUTH PLAIN not-base64!").first.startswith("501 5.5.2")
        c.expect("AUTH PLAIN " + plain(SCANNER, SCANNER_PW), 235)
        assert c.cmd("AUTH PLAIN " + plain(SCANNER, SCANNER_PW)).first.startswith("503 5.5.1")
        assert send_mail(c).code == 250
    assert [e["result"] for e in px.events("client.auth")] == [
        "cancelled", "cancelled", "unsupported-mechanism", "malformed", "ok"]


# ---- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize("line,result", [
    ("AUTH PLAIN " + plain(SCANNER, "wrong-" + SCANNER_PW), "bad-password"),
    ("AUTH PLAIN " + plain("nobody", SCANNER_PW), "no-such-user"),
], ids=["wrong-password", "unknown-user"])
def test_refused_login_gets_535_after_a_delay(gateway, line, result):
    up, px, _ = gateway()
    with greeted(px) as c:
        c.expect("EHLO scanner.lan", 250)
        t0 = time.monotonic()
        r = c.cmd(line)
        waited = time.monotonic() - t0
        assert r.first == "535 5.7.8 Authentication credentials invalid"
        assert waited >= 0.9, waited
        # Still not logged in.
        assert c.cmd("MAIL FROM:<a@example.test>").code == 530
        # The next try works.
        c.expect("AUTH PLAIN " + plain(SCANNER, SCANNER_PW), 235)
    ev = px.wait_event("client.auth", result=result)
    assert ev and ev[0]["level"] == "warn" and ev[0]["mech"] == "PLAIN"
    assert int(ev[0]["ms"]) >= 0


def test_delay_does_not_stall_other_sessions(gateway):
    """The refused device waits alone: another device is served during its delay."""
    up, px, _ = gateway()
    with greeted(px) as bad, greeted(px) as good:
        bad.expect("EHLO a", 250)
        good.expect("EHLO b", 250)
        bad.send(("AUTH PLAIN " + plain(SCANNER, "nope") + "\r\n").encode())
        time.sleep(0.1)
        good.expect("AUTH PLAIN " + plain(SCANNER, SCANNER_PW), 235)
        good.expect("NOOP", 250)
        # Served while the refused one still waits: its 535 has not come yet. (An order,
        # not a time: under valgrind a crypt(3) check alone can take a second.)
        pending = select.select([bad.sock], [], [], 0)[0]
        assert not pending and not bad.buf, "the good device waited for the bad one's delay"
        assert bad.read_reply().code == 535


def test_wrong_passwords_count_toward_max_errors(gateway):
    up, px, _ = gateway(limits={"max_errors": "3"})
    with greeted(px) as c:
        c.expect("EHLO scanner.lan", 250)
        assert c.cmd("MAIL FROM:<a@example.test>").code == 530          # error 1
        assert c.cmd("AUTH PLAIN " + plain(SCANNER, "guess1")).code == 535   # error 2
        c.send(("AUTH LOGIN\r\n").encode())
        assert c.read_reply().code == 334
        c.send((b64(SCANNER) + "\r\n").encode())
        assert c.read_reply().code == 334
        c.send((b64("guess2") + "\r\n").encode())
        assert c.read_reply().code == 535                                 # error 3
        assert c.read_reply().first.startswith("421 4.7.0")
        assert c.at_eof()
    assert px.wait_event("session.close", reason="too-many-errors")


# ---- other devices, real clients, the log ------------------------------------------------------

def test_device_without_profile_is_unaffected(gateway):
    up, px, _ = gateway()
    with greeted(px, source="127.0.0.2") as c:
        kw = keywords(c.expect("EHLO other.lan", 250))
        assert "AUTH" not in kw         # the proxy has its own login: as before
        assert send_mail(c).code == 250
        # An AUTH from it is answered 235 locally, as before, and checks nothing.
        c.expect("AUTH PLAIN " + plain("anyone", "anything"), 235)
    assert up.wait_messages(1)
    assert not px.events("client.auth")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_logs_in_and_delivers(gateway, mech):
    up, px, _ = gateway()
    p = swaks(px.port, "--auth", mech, "--auth-user", SCANNER, "--auth-password", SCANNER_PW)
    assert p.returncode == 0, p.stdout + p.stderr
    assert up.wait_messages(1)
    assert px.wait_event("client.auth", result="ok", mech=mech)
    p = swaks(px.port, "--auth", mech, "--auth-user", SCANNER, "--auth-password", "wrong")
    assert p.returncode != 0
    assert "535 5.7.8" in p.stdout
    assert len(up.messages) == 1


def test_password_never_in_the_log(gateway):
    up, px, _ = gateway(log={"level": "debug"})
    secrets = [SCANNER_PW, "wrong-" + SCANNER_PW]
    with greeted(px) as c:
        c.expect("EHLO scanner.lan", 250)
        c.expect("AUTH PLAIN " + plain(SCANNER, secrets[1]), 535)
        c.expect("AUTH LOGIN " + b64(SCANNER), 334)
        c.expect(b64(secrets[1]), 535)
        c.expect("AUTH PLAIN", 334)
        c.expect(plain(SCANNER, SCANNER_PW), 235)
        c.expect("QUIT", 221)
    assert px.wait_event("session.close")
    assert len(px.events("client.auth")) == 3
    log = px.stderr()
    for pw in secrets:
        for form in (pw, b64(pw), plain(SCANNER, pw)):
            assert form not in log, form
    # The debug lines are there, masked: the test would see a leak.
    assert "masked=yes" in log


# ---- the users file and reloads ----------------------------------------------------------------

def test_reload_reads_the_changed_users_file(gateway, hashes):
    up, px, users = gateway()
    old = greeted(px)
    old.expect("EHLO scanner.lan", 250)
    write_users(users, {SCANNER: yescrypt("new-Pw-2")})
    px.signal(signal.SIGHUP)
    assert px.wait_event("config.reload"), px.stderr()
    assert px.wait_event("worker.start", 1, generation="2"), px.stderr()
    with greeted(px) as c:
        c.expect("EHLO scanner.lan", 250)
        c.expect("AUTH PLAIN " + plain(SCANNER, SCANNER_PW), 535)
        c.expect("AUTH PLAIN " + plain(SCANNER, "new-Pw-2"), 235)
        assert send_mail(c).code == 250
    # The session opened before the reload keeps the table it started with.
    with old:
        old.expect("AUTH PLAIN " + plain(SCANNER, SCANNER_PW), 235)
        assert send_mail(old).code == 250
    assert up.wait_messages(2)


def test_check_reports_users_file_lines_and_refused_schemes(tmp_path, hashes):
    users = tmp_path / "users"
    users.write_text("# devices\n%s:%s\nold:$1$abcdefgh$0123456789abcdefABCDEF\n"
                     "clear:hunter2\n%s:%s\nbroken line\n" %
                     (SCANNER, hashes[SCANNER], SCANNER, hashes[NAS]))
    os.chmod(users, 0o600)
    conf = ("[proxy]\nhostname = proxy.test\nusers_file = %s\n[upstream]\nhost = 127.0.0.1\n"
            "[%s]\nmatch = 127.0.0.1\nclient_auth = required\n" % (users, PROFILE))
    _, p = check_config(str(tmp_path), conf)
    assert p.returncode == 1, p.stdout + p.stderr
    err = p.stderr
    assert "%s:3: user old: MD5 hashes ($1$) are refused" % users in err
    assert "%s:4: user clear: not a crypt(3) hash" % users in err
    assert "%s:6: expected name:hash" % users in err
    assert "%s:5: user %s is listed twice (first on line 2)" % (users, SCANNER) in err

    write_users(str(users), hashes)
    os.chmod(users, 0o644)
    path, p = check_config(str(tmp_path), conf)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "configuration OK" in p.stdout
    assert "%s:3: warning: users_file %s: readable by every user" % (path, users) in p.stderr

    os.unlink(users)
    _, p = check_config(str(tmp_path), conf)
    assert p.returncode == 1 and "users_file %s: cannot read it" % users in p.stderr
