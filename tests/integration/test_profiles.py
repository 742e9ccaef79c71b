"""Device profiles and named upstreams (issue 10): who goes where, and failover.

Loopback has a whole /8, so clients bound to 127.0.0.2, 127.0.0.3 ... are different devices to
the proxy. Every test upstream here is its own server with its own credentials
(Upstream(user=, password=)), so a message found on one proves the profile's route and its
login both.
"""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import PROXY_BIN, REPO, check_config, refusing_port
from test_config import STUB_USERS

BODY = b"Subject: profiles\r\n\r\nhello\r\n.\r\n"


def creds(user, password=None, **kw):
    d = {"username": user, "password": password or "pw-" + user.split("@")[0]}
    d.update(kw)
    return d


def up_keys(up, certs, user=None, **kw):
    """The keys of an [upstream NAME] section for test upstream `up` (its own login)."""
    d = {"host": "127.0.0.1", "port": str(up.port), "tls": up.mode, "server_name": "mail.test",
         "verify": "yes", "ca_file": certs["ca"][0]}
    if user is not None:
        d.update(creds(user))
    d.update(kw)
    return d


def named(upstream, user, **kw):
    """A started test upstream that accepts only `user` with creds(user)'s password."""
    return upstream("starttls", user=user, password=creds(user)["password"], **kw)


def send_from(px, source, mail_from="device@example.test", rcpts=("rcpt@example.test",),
              body=BODY):
    """One whole session from `source`; the reply to the final dot."""
    with px.client(source=source) as c:
        r = c.read_reply()
        assert r.code == 220, r
        r = c.send_mail(mail_from, list(rcpts), body)
        c.expect("QUIT", 221)
        return r


def greeting(px, source):
    with px.client(source=source) as c:
        return c.read_reply()


def logins(up):
    """The users that logged in to `up`, successfully or not, in order."""
    return [(a[1], a[3]) for c in up.connections for a in c.auth]


def hs_wait(px, n, **match):
    got = px.wait_event("tls.handshake", n, **match)
    assert len(got) >= n, px.stderr()
    return got


# ---- who goes where ----------------------------------------------------------------------

def test_each_device_lands_on_its_own_upstream_with_its_own_credentials(certs, upstream, proxy):
    scan = named(upstream, "scanner@example.test")
    plc = named(upstream, "plc@example.test")
    nas = named(upstream, "nas@example.test")
    # One upstream session per device session, to count: reuse off.
    px = proxy(None, upstream=up_keys(scan, certs, "scanner@example.test", reuse="0"), **{
        "upstream plc-relay": up_keys(plc, certs, "plc@example.test", reuse="0"),
        "upstream nas-box": up_keys(nas, certs, "nas@example.test", reuse="0"),
        "device scanner": {"match": "127.0.0.2"},
        "device plc": {"match": "127.0.0.3", "upstream": "plc-relay"},
        "device nas": {"match": "127.0.0.4/32", "upstream": "nas-box"}})
    for src, frm in (("127.0.0.2", "s@x.test"), ("127.0.0.3", "p@x.test"),
                     ("127.0.0.4", "n@x.test"), ("127.0.0.3", "p2@x.test")):
        assert send_from(px, src, frm).code == 250
    assert logins(scan) == [("scanner@example.test", True)]
    assert logins(plc) == [("plc@example.test", True)] * 2
    assert logins(nas) == [("nas@example.test", True)]
    assert [m.mail_from for m in scan.messages] == ["s@x.test"]
    assert [m.mail_from for m in plc.messages] == ["p@x.test", "p2@x.test"]
    assert [m.mail_from for m in nas.messages] == ["n@x.test"]
    # Every line of a session names the profile and the upstream that carried it.
    msgs = px.wait_event("message", 4)
    got = sorted((m["client"].split(":")[0], m["device"], m["upstream"], m["from"])
                 for m in msgs)
    assert got == [("127.0.0.2", "scanner", "default", "s@x.test"),
                   ("127.0.0.3", "plc", "plc-relay", "p2@x.test"),
                   ("127.0.0.3", "plc", "plc-relay", "p@x.test"),
                   ("127.0.0.4", "nas", "nas-box", "n@x.test")], msgs
    hs = hs_wait(px, 4)
    assert sorted((h["device"], h["upstream"]) for h in hs) == [
        ("nas", "nas-box"), ("plc", "plc-relay"), ("plc", "plc-relay"), ("scanner", "default")]
    assert all(h["host"] == "127.0.0.1" for h in hs), hs


def test_most_specific_match_wins_and_others_use_upstream(certs, upstream, proxy):
    dflt = named(upstream, "default@example.test")
    net = named(upstream, "floor@example.test")
    one = named(upstream, "one@example.test")
    px = proxy(None, upstream=up_keys(dflt, certs, "default@example.test"), **{
        "upstream floor": up_keys(net, certs, "floor@example.test"),
        "upstream one": up_keys(one, certs, "one@example.test"),
        # Written broad first, narrow second and narrow-then-broad: order does not matter.
        "device floor": {"match": "127.0.5.0/24", "upstream": "floor"},
        "device one": {"match": "127.0.5.7, 127.0.6.0/24", "upstream": "one"}})
    for src in ("127.0.5.1", "127.0.5.7", "127.0.5.200", "127.0.6.9", "127.0.7.1", "127.0.0.1"):
        assert send_from(px, src, "from-%s@x.test" % src).code == 250
    assert [m.mail_from for m in net.messages] == ["from-127.0.5.1@x.test",
                                                  "from-127.0.5.200@x.test"]
    assert [m.mail_from for m in one.messages] == ["from-127.0.5.7@x.test",
                                                  "from-127.0.6.9@x.test"]
    # No profile: [upstream], logged as device "-".
    assert [m.mail_from for m in dflt.messages] == ["from-127.0.7.1@x.test",
                                                   "from-127.0.0.1@x.test"]
    none = px.wait_event("message", 2, device="-")
    assert {m["upstream"] for m in none} == {"default"}, none


def test_profile_limits_apply_to_its_devices_only(certs, upstream, proxy):
    up = upstream("starttls")
    px = proxy(up, proxy={"bare_newline": "reject"}, limits={"max_recipients": "5"},
               **{"device old": {"match": "127.0.0.5", "bare_newline": "accept",
                                 "max_recipients": "2"}})
    lf_body = b"Subject: lf\n\nbody\n.\n"
    # The old device ends its data with LF . LF and is delivered, CRLF-framed.
    with px.client(source="127.0.0.5") as c:
        c.read_reply()
        c.expect("EHLO old.test", 250)
        c.expect("MAIL FROM:<old@x.test>", 250)
        c.expect("RCPT TO:<a@x.test>", 250)
        c.expect("RCPT TO:<b@x.test>", 250)
        r = c.expect("RCPT TO:<c@x.test>", 452)
        assert "limit 2" in r.text, r
        c.expect("DATA", 354)
        c.send(lf_body)
        assert c.read_reply().code == 250
    assert up.wait_messages(1)
    m = up.messages[0]
    assert m.body == b"Subject: lf\r\n\r\nbody\r\n" and len(m.rcpts) == 2, m
    # Everyone else keeps reject and the global limit of 5.
    with px.client(source="127.0.0.6") as c:
        c.read_reply()
        c.expect("EHLO other.test", 250)
        c.expect("MAIL FROM:<other@x.test>", 250)
        for i in range(5):
            c.expect("RCPT TO:<r%d@x.test>" % i, 250)
        c.expect("RCPT TO:<r5@x.test>", 452)
        c.expect("DATA", 354)
        c.send(b"Subject: lf\nbody\r\n.\r\n")
        r = c.read_reply()
        assert r.code == 550 and r.lines[0].startswith("5.5.2"), r
    assert len(up.messages) == 1


# ---- failover ----------------------------------------------------------------------------

def failover_proxy(certs, proxy, first, second, retry_after="3", first_user=None):
    """Device 127.0.0.2 fails over from [upstream first] (a test upstream, or its keys) to
    [upstream second]."""
    first_keys = first if isinstance(first, dict) else up_keys(first, certs, first_user)
    return proxy(None, proxy={"retry_after": retry_after}, **{
        "upstream first": first_keys,
        "upstream second": up_keys(second, certs, "second@example.test"),
        "device dev": {"match": "127.0.0.2", "upstream": "first, second"}})


def closed_port():
    return {"host": "127.0.0.1", "port": str(refusing_port()), "tls": "starttls",
            "server_name": "mail.test"}


def test_failover_from_a_closed_port(certs, upstream, proxy):
    second = named(upstream, "second@example.test")
    px = failover_proxy(certs, proxy, closed_port(), second)
    assert send_from(px, "127.0.0.2").code == 250
    assert len(second.messages) == 1
    f, = px.wait_event("upstream.fail")
    assert (f["device"], f["upstream"], f["host"], f["stage"], f["reason"], f["next"]) == \
        ("dev", "first", "127.0.0.1", "connect", "connect", "second"), f
    h, = hs_wait(px, 1)
    assert (h["device"], h["upstream"]) == ("dev", "second"), h
    m, = px.wait_event("message")
    assert (m["device"], m["upstream"]) == ("dev", "second"), m


@pytest.mark.parametrize("cert", ["wrongname", "selfsigned"])
def test_failover_from_a_bad_certificate(certs, upstream, proxy, cert):
    bad = upstream("starttls", cert=cert, user="first@example.test", password="pw-first")
    second = named(upstream, "second@example.test")
    px = failover_proxy(certs, proxy, bad, second, first_user="first@example.test")
    assert send_from(px, "127.0.0.2").code == 250
    assert len(second.messages) == 1
    # Nothing but the handshake reached the bad one: no login, no mail.
    assert bad.wait_connections(1) and logins(bad) == [] and bad.all_messages == []
    f, = px.wait_event("upstream.fail")
    assert (f["upstream"], f["reason"], f["next"]) == ("first", "verify", "second"), f


def test_failover_from_a_refused_login(certs, upstream, proxy):
    first = named(upstream, "first@example.test", auth_fail=True)
    second = named(upstream, "second@example.test")
    px = failover_proxy(certs, proxy, first, second, first_user="first@example.test")
    assert send_from(px, "127.0.0.2").code == 250
    assert logins(first) == [("first@example.test", False)]
    assert logins(second) == [("second@example.test", True)]
    assert len(second.messages) == 1 and first.all_messages == []
    f, = px.wait_event("upstream.fail")
    assert (f["upstream"], f["stage"].startswith("auth"), f["next"]) == \
        ("first", True, "second"), f


def test_failed_upstream_is_skipped_for_retry_after_then_tried_again(certs, upstream, proxy):
    # The first refuses logins at first (auth_retry_after 0: only retry_after holds it off).
    first = named(upstream, "first@example.test", auth_fail=True)
    second = named(upstream, "second@example.test")
    px = failover_proxy(certs, proxy, up_keys(first, certs, "first@example.test",
                                              auth_retry_after="0"), second)
    t0 = time.monotonic()
    assert send_from(px, "127.0.0.2").code == 250
    assert len(first.connections) == 1
    # Within retry_after (3 s) the next sessions go straight to the second one.
    for _ in range(3):
        assert send_from(px, "127.0.0.2").code == 250
    skipped = time.monotonic() - t0 < 3
    assert len(second.messages) == 4
    if skipped:     # a busy machine may have taken the 3 s already; then this proves nothing
        assert len(first.connections) == 1, first.connections
        assert len(px.events("upstream.fail")) == 1
    # Fixed, and once retry_after is over, the first is tried (and used) again.
    first.auth_fail = False
    end = time.monotonic() + 20
    while not first.messages and time.monotonic() < end:
        time.sleep(0.5)
        assert send_from(px, "127.0.0.2").code == 250
    assert len(first.messages) == 1 and time.monotonic() - t0 >= 3
    assert logins(first)[-1] == ("first@example.test", True)


def test_a_reload_clears_the_down_marks(certs, upstream, proxy):
    first = named(upstream, "first@example.test", auth_fail=True)
    second = named(upstream, "second@example.test")
    px = failover_proxy(certs, proxy, up_keys(first, certs, "first@example.test",
                                              auth_retry_after="0"), second,
                        retry_after="3600")
    assert send_from(px, "127.0.0.2").code == 250
    first.auth_fail = False     # the admin fixed it
    assert send_from(px, "127.0.0.2").code == 250
    assert len(first.connections) == 1 and len(second.messages) == 2
    px.signal(signal.SIGHUP)
    assert px.wait_event("config.reload"), px.stderr()
    assert px.wait_event("worker.start", 1, generation="2"), px.stderr()
    assert send_from(px, "127.0.0.2", "after@x.test").code == 250
    assert [m.mail_from for m in first.messages] == ["after@x.test"]


def test_retry_after_0_tries_the_failed_upstream_every_time(certs, upstream, proxy):
    second = named(upstream, "second@example.test")
    bad = upstream("starttls", cert="wrongname")
    px = failover_proxy(certs, proxy, bad, second, retry_after="0")
    for _ in range(3):
        assert send_from(px, "127.0.0.2").code == 250
    assert bad.wait_connections(3) and len(px.wait_event("upstream.fail", 3)) == 3


def test_every_upstream_down_gives_421_and_one_fail_line_per_attempt(certs, upstream, proxy):
    px = proxy(None, proxy={"retry_after": "60"}, **{
        "upstream first": closed_port(), "upstream second": closed_port(),
        "upstream third": closed_port(),
        "device dev": {"match": "127.0.0.2", "upstream": "first, second, third"}})
    r = greeting(px, "127.0.0.2")
    assert r.code == 421 and r.lines[0].startswith("4."), r
    fails = px.wait_event("upstream.fail", 3)
    assert [(f["upstream"], f.get("next")) for f in fails] == [
        ("first", "second"), ("second", "third"), ("third", None)], fails
    # All marked down: rather than none, every one is tried again, in order.
    r = greeting(px, "127.0.0.2")
    assert r.code == 421, r
    fails = px.wait_event("upstream.fail", 6)
    assert [f["upstream"] for f in fails[3:]] == ["first", "second", "third"], fails


# ---- reload ------------------------------------------------------------------------------

def test_reload_moves_a_profile_but_the_open_session_finishes_where_it_began(certs, upstream,
                                                                            proxy):
    old = named(upstream, "old@example.test")
    new = named(upstream, "new@example.test")
    px = proxy(None, **{"upstream old": up_keys(old, certs, "old@example.test"),
                        "upstream new": up_keys(new, certs, "new@example.test"),
                        "device dev": {"match": "127.0.0.2", "upstream": "old"}})
    c = px.client(source="127.0.0.2")
    try:
        assert c.read_reply().code == 220
        c.expect("EHLO dev.test", 250)
        c.expect("MAIL FROM:<before@x.test>", 250)
        s = dict(px.sections)
        s["device dev"] = {"match": "127.0.0.2", "upstream": "new"}
        px.write_config(s)
        px.signal(signal.SIGHUP)
        assert px.wait_event("config.reload"), px.stderr()
        assert px.wait_event("worker.start", 1, generation="2"), px.stderr()
        # A new session of the same device: the new route.
        assert send_from(px, "127.0.0.2", "after@x.test").code == 250
        # The open one goes on where it began.
        c.expect("RCPT TO:<r@x.test>", 250)
        c.expect("DATA", 354)
        c.send(BODY)
        assert c.read_reply().code == 250
        c.expect("QUIT", 221)
    finally:
        c.close()
    assert [m.mail_from for m in old.messages] == ["before@x.test"]
    assert [m.mail_from for m in new.messages] == ["after@x.test"]
    assert len(old.connections) == 1 and logins(new) == [("new@example.test", True)]


# ---- -t ----------------------------------------------------------------------------------

def base(certs, extra="", allow="127.0.0.0/8"):
    return ("[proxy]\nlisten = 127.0.0.1:2525\nhostname = proxy.test\nallow = %s\n\n"
            "[upstream]\nhost = 127.0.0.1\nca_file = %s\n\n%s" % (allow, certs["ca"][0], extra))


def line_of(text, s):
    return text.splitlines().index(s) + 1


@pytest.mark.parametrize("extra,want", [
    ("[device far]\nmatch = 10.0.0.0/8\n", ":{match}: [device far] match 10.0.0.0/8 is outside "
     "allow"),
    ("[device x]\nupstream = nope\nmatch = 127.0.0.2\n", ":{upstream}: [device x] upstream "
     "nope: no such upstream"),
    ("[device]\nmatch = 127.0.0.2\n", ":{[device]}: [device] needs a name"),
    ("[device x]\nupstream = default\n", ":{[device x]}: [device x] needs match"),
    ("[upstream b]\nport = 25\n", ":{[upstream b]}: [upstream b] host is required"),
    ("[device x]\nmatch = 127.0.0.2\nrewrite_header_from = yes\n",
     ":{rewrite_header_from}: [device x] rewrite_header_from needs force_sender"),
    ("[device x]\nmatch = 127.0.0.2\nclient_auth = required\n",
     ":{client_auth}: [device x] client_auth = required needs users_file"),
    ("[device x]\nmatch = 127.0.0.2\nupstream = default, default\n",
     ":{upstream}: [device x] upstream default is listed twice"),
    # Empty sections: inih never calls back for them, they must still be seen.
    ("[device scanner]\n", ":{[device scanner]}: [device scanner] needs match"),
    ("[upstream backup]\n", ":{[upstream backup]}: [upstream backup] host is required"),
    ("[device]\n", ":{[device]}: [device] needs a name"),
    ("[device %s]\nmatch = 127.0.0.2\n" % ("x" * 50, ), ":{[device %s]}: [device xxxxxxxxx"
     "xxxx...]: a section header is at most 49 characters" % ("x" * 50, )),
])
def test_check_refuses_profile_mistakes_with_file_and_line(tmp_path, certs, extra, want):
    text = base(certs, extra)
    path, p = check_config(str(tmp_path), text)
    key = want.split("{")[1].split("}")[0]
    line = line_of(text, key) if key.startswith("[") else \
        next(i + 1 for i, l in enumerate(text.splitlines()) if l.startswith(key + " ="))
    assert p.returncode == 1, p
    assert (path + want.replace("{%s}" % key, str(line))) in p.stderr, p.stderr
    assert p.stdout == ""


def test_check_names_both_profiles_that_tie(tmp_path, certs):
    text = base(certs, "[device a]\nmatch = 127.0.1.0/24\n\n[device b]\nmatch = 127.0.0.9, "
                "127.0.1.0/24\n")
    path, p = check_config(str(tmp_path), text)
    assert p.returncode == 1
    a, b = line_of(text, "[device a]"), line_of(text, "[device b]")
    assert "%s:%d: [device b] and [device a] (%s:%d) both match 127.0.1.0/24" % (
        path, b, path, a) in p.stderr, p.stderr


def test_check_accepts_nested_networks_and_prints_nothing_more(tmp_path, certs):
    text = base(certs, "[upstream b]\nhost = 127.0.0.1\nca_file = %s\n\n[device a]\nmatch = "
                "127.0.1.0/24\nupstream = b, default\n\n[device b]\nmatch = 127.0.1.5\n"
                % certs["ca"][0])
    _, p = check_config(str(tmp_path), text)
    assert (p.returncode, p.stdout, p.stderr) == (0, "configuration OK\n", ""), p.stderr


# ---- -t -v: who goes where ---------------------------------------------------------------

def test_check_verbose_prints_who_goes_where(tmp_path, certs):
    ca = certs["ca"][0]
    text = ("[proxy]\nhostname = proxy.test\nallow = 127.0.0.0/8, ::1\n\n"
            "[limits]\nmax_recipients = 50\n\n"
            "[upstream]\nhost = 127.0.0.1\nport = 465\nca_file = %s\nusername = isp@x.test\n"
            "password = secret-isp\n\n"
            "[upstream m365]\nhost = 127.0.0.1\nca_file = %s\nusername = scanner@x.test\n"
            "password = secret-m365\nauth_mechanism = login\n\n"
            "[device scanner]\nmatch = 127.0.0.2, ::1\nupstream = m365, default\n"
            "force_sender = scanner@x.test\nrewrite_header_from = yes\n"
            "bare_newline = accept\nmax_recipients = 10\n\n"
            "[device plcs]\nmatch = 127.0.1.0/24\n\n"
            "[listener lan]\nlisten = 127.0.0.1:0\n\n"
            "[listener tls]\nlisten = [::1]:4650, 127.0.0.1:4650\ntls = implicit\n"
            "tls_profile = legacy\ncert_file = %s\nkey_file = %s\n\n"
            "[listener sub]\nlisten = 127.0.0.1:5870\ntls = starttls\nrequire_tls = yes\n"
            "cert_file = %s\nkey_file = %s\n" % ((ca, ca) + certs["device"] + certs["device"]))
    path = tmp_path / "v.ini"
    path.write_text(text)
    p = subprocess.run([PROXY_BIN, "-t", "-v", "-c", str(path)], capture_output=True,
                       text=True, timeout=10)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert p.stdout == (
        "configuration OK\n"
        "[device scanner]\n"
        "  match         127.0.0.2, ::1\n"
        "  upstream      m365 -> default\n"
        "  force_sender  scanner@x.test (and the From: header)\n"
        "  client_auth   no\n"
        "  limits        bare_newline = accept, max_recipients = 10\n"
        "[device plcs]\n"
        "  match         127.0.1.0/24\n"
        "  upstream      default\n"
        "  force_sender  - (the device's own MAIL FROM)\n"
        "  client_auth   no\n"
        "  limits        as [proxy] / [limits]\n"
        "(no profile)\n"
        "  match         every other client allowed: 127.0.0.0/8, ::1\n"
        "  upstream      default\n"
        "  force_sender  - (the device's own MAIL FROM)\n"
        "  client_auth   no\n"
        "  limits        bare_newline = normalize, max_recipients = 50, max_message_size = "
        "52428800, max_sessions_per_client = 50, max_errors = 20, min_data_rate = 256\n"
        "upstreams\n"
        "  default       127.0.0.1:465 implicit, user isp@x.test, auth_mechanism = auto\n"
        "  m365          127.0.0.1:587 starttls, user scanner@x.test, auth_mechanism = login\n"
        "listeners\n"
        "  127.0.0.1:0           [listener lan] plaintext\n"
        "  [::1]:4650            [listener tls] implicit, tls_profile = legacy\n"
        "  127.0.0.1:4650        [listener tls] implicit, tls_profile = legacy\n"
        "  127.0.0.1:5870        [listener sub] starttls, tls_profile = intermediate, "
        "require_tls\n"
        ), p.stdout
    assert "secret" not in p.stdout
    # -v alone is a usage error, not a daemon start that ignores it.
    p = subprocess.run([PROXY_BIN, "-v", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 2 and "usage:" in p.stderr and p.stdout == ""
    # A refused config prints its errors only, no table.
    path.write_text(text.replace("match = 127.0.1.0/24", "match = 10.0.0.0/8"))
    p = subprocess.run([PROXY_BIN, "-t", "-v", "-c", str(path)], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 1 and p.stdout == "" and "outside allow" in p.stderr, p


def test_readme_example_passes_check_and_its_table_is_what_v_prints(tmp_path):
    """README "One gateway, many devices": its config passes -t, and the -t -v output shown
    under it is what the daemon prints (so the documentation cannot drift from the code)."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    part = text[text.index("## One gateway, many devices"):]
    ini = re.search(r"```ini\n(.*?)```", part, re.S).group(1)
    shown = re.search(r"`smtp-tls-proxy -t -v -c FILE` prints.*?```\n(.*?)```", part,
                      re.S).group(1)
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name in re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/([\w.-]+)", ini):
        (creds / name).write_text(STUB_USERS if name == "users" else "stub-secret\n")
        os.chmod(creds / name, 0o600)
    (tmp_path / "readme.ini").write_text(ini)
    p = subprocess.run([PROXY_BIN, "-t", "-v", "-c", str(tmp_path / "readme.ini")],
                       capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, CREDENTIALS_DIRECTORY=str(creds)))
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert p.stdout == shown


# ---- max_connections per upstream ----------------------------------------------------------

def test_a_full_upstream_is_skipped_and_counts_are_per_upstream(certs, upstream, proxy):
    """`small` holds one session at most: a second device session fails over to the next
    upstream (reason=max_connections, no connection to `small`), while clients of no profile
    are not held back by `small`'s count; once the first session ends, `small` takes one
    again. Every process counts the same (2 workers)."""
    main = named(upstream, "main@example.test")
    small = named(upstream, "small@example.test")
    # A kept session would hold small's one slot (the default stands aside by itself
    # there; main's is off so that the counts below are of sessions in use).
    px = proxy(None, upstream=up_keys(main, certs, "main@example.test", reuse="0"),
               proxy={"workers": "2"}, **{
                   "upstream small": up_keys(small, certs, "small@example.test",
                                             max_connections="1"),
                   "device d": {"match": "127.0.0.2", "upstream": "small, default"}})
    with px.client(source="127.0.0.2") as held:
        assert held.read_reply().code == 220
        assert len(small.connections) == 1
        r = send_from(px, "127.0.0.2")
        assert r.code == 250
        fail, = px.wait_event("upstream.fail", reason="max_connections")
        assert fail["upstream"] == "small" and fail["next"] == "default", fail
        assert len(small.connections) == 1 and len(main.messages) == 1
        assert send_from(px, "127.0.0.1").code == 250     # no profile: default
        held.expect("QUIT", 221)
    assert small.wait_closed()
    end = time.monotonic() + 10
    while time.monotonic() < end:
        # The held session's slot is given back when it ends (the log says it ended).
        if px.events("session.close") and len(px.events("session.close")) >= 3:
            break
        time.sleep(0.05)
    assert send_from(px, "127.0.0.2").code == 250
    assert len(small.messages) == 1, "small takes a session again once the first ended"
