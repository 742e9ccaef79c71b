"""Promise 3: credentials stay confined.

The proxy's own password goes nowhere but into a verified TLS session, and neither it nor a
device's password ever shows up in a log line or a reply. The suite-wide part of this promise
is checked over the WHOLE adversarial run: every proxy's stderr and every byte every client
received are recorded (conftest.py) and the session-finish hook looks for the password and
its base64 forms in them, after every test, whatever their order. The tests here make sure there is plenty to look at:
debug logging, both mechanisms, failures, JSON logs.
"""
import os

import pytest

from adv import (PASSWORD, USER, assert_upstream_got_nothing_of_the_client, b64,
                 expect_421_greeting, find_secrets, secret_forms, wait_upstream_fail)

PLAIN_IR = b64(b"\0" + USER.encode() + b"\0" + PASSWORD.encode())


def creds(**kw):
    d = {"username": USER, "password": PASSWORD}
    d.update(kw)
    return d


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize("cert,name", [("selfsigned", None), ("wrongname", None),
                                       ("expired", None), ("untrusted", None),
                                       ("good", "other.test")])
def test_configured_credentials_never_reach_an_unverified_upstream(upstream, proxy, mode,
                                                                   cert, name):
    up = upstream(mode, cert=cert)
    conf = creds()
    if name:
        conf["server_name"] = name
    px = proxy(up, upstream=conf)
    expect_421_greeting(px)
    assert wait_upstream_fail(px)["reason"] == "verify"
    assert up.wait_closed()
    assert_upstream_got_nothing_of_the_client(up)      # includes: no AUTH, no password form
    assert not px.events("auth.ok") and not px.events("auth.fail")


def test_configured_credentials_never_sent_when_starttls_is_refused(upstream, proxy):
    up = upstream("starttls", override={"starttls": b"454 4.7.0 no TLS today\r\n"},
                  plain_caps=["STARTTLS", "AUTH PLAIN LOGIN"])
    px = proxy(up, upstream=creds())
    expect_421_greeting(px)
    assert_upstream_got_nothing_of_the_client(up)


@pytest.mark.parametrize("mech", ["plain", "login"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_proxy_login_at_debug_level_logs_no_secret(upstream, proxy, mech, fmt):
    up = upstream("starttls")
    px = proxy(up, upstream=creds(auth_mechanism=mech), log={"format": fmt})
    with px.client() as c:
        assert c.read_reply().code == 220
        c.expect("EHLO d.test", 250)
        c.expect("AUTH PLAIN " + PLAIN_IR, 235)          # answered locally
        r = c.send_mail("a@example.test", ["b@example.test"], b"x\r\n.\r\n", ehlo="d.test")
        assert r.code == 250
    assert up.connections[0].auth == [(mech.upper(), USER, PASSWORD, True)]
    assert px.wait_event("auth.ok") and px.wait_event("message")
    px.stop()
    assert find_secrets([px.stderr(), c.received]) == []


def test_refused_proxy_login_logs_no_secret(upstream, proxy):
    up = upstream("starttls", auth_fail=True)
    px = proxy(up, upstream=creds(auth_mechanism="login"))
    expect_421_greeting(px)
    assert px.wait_event("auth.fail")
    px.stop()
    assert find_secrets([px.stderr()]) == []


def test_upstream_echoing_the_credentials_in_its_refusal_is_not_logged(upstream, proxy):
    """A server that quotes the AUTH line back in its 535: the auth.fail line carries the
    server's reply, which must not carry the password's base64 with it."""
    up = upstream("starttls", override={
        "auth": b"535 5.7.8 authentication failed for AUTH PLAIN " + PLAIN_IR.encode() +
        b"\r\n"})
    px = proxy(up, upstream=creds())
    expect_421_greeting(px)
    assert px.wait_event("auth.fail")
    px.stop()
    assert find_secrets([px.stderr()]) == [], "echoed credential logged"


@pytest.mark.parametrize("how", ["plain-ir", "plain-cont", "login"])
def test_device_auth_passed_through_logs_no_secret_at_debug(upstream, proxy, how):
    up = upstream("starttls")
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d.test", 250)
        if how == "plain-ir":
            c.expect("AUTH PLAIN " + PLAIN_IR, 235)
        elif how == "plain-cont":
            c.expect("AUTH PLAIN", 334)
            c.expect(PLAIN_IR, 235)
        else:
            c.expect("AUTH LOGIN", 334)
            c.expect(b64(USER), 334)
            c.expect(b64(PASSWORD), 235)
        c.expect("QUIT", 221)
    assert up.connections[0].auth and up.connections[0].auth[0][3]
    px.stop()
    assert find_secrets([px.stderr()]) == []


def test_device_auth_with_bad_continuation_logs_no_secret(upstream, proxy):
    """A continuation line with a bare CR (refused locally) and a failed AUTH LOGIN."""
    up = upstream("starttls")
    px = proxy(up)
    with px.client() as c:
        c.read_reply()
        c.expect("EHLO d.test", 250)
        c.expect("AUTH LOGIN", 334)
        c.send(b64(USER).encode() + b"\r\n")
        c.read_reply()
        c.send(b64(PASSWORD + "x").encode() + b"\r" + b64(PASSWORD).encode() + b"\r\n")
        r = c.read_reply()
        assert r.code in (500, 501, 535), r
    px.stop()
    assert find_secrets([px.stderr()]) == []


def test_config_check_output_never_shows_the_password(tmp_path, proxy, certs):
    """`-t` on configurations with a password and a mistake: errors name keys, not secrets."""
    import subprocess
    from adv import PROXY_BIN, render_ini
    from adv import sections
    outs = []
    for over in ({"allow": "0.0.0.0/0"}, {"allow": "8.8.8.0/24"}):
        s = sections(certs, None, proxy=over, upstream=creds(port="587"))
        path = tmp_path / "c.ini"
        path.write_text(render_ini(s))
        p = subprocess.run([PROXY_BIN, "-t", "-c", str(path)], capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 1
        outs.append(p.stdout + p.stderr)
    s = sections(certs, None, upstream=creds(port="587", password=PASSWORD + "\x01"))
    path = tmp_path / "c.ini"
    path.write_text(render_ini(s))
    p = subprocess.run([PROXY_BIN, "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1
    outs.append(p.stdout + p.stderr)
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n\n" + PASSWORD + "\n")
    os.chmod(pw, 0o600)
    s = sections(certs, None, upstream={"port": "587", "username": USER,
                                        "password_file": str(pw)})
    path.write_text(render_ini(s))
    p = subprocess.run([PROXY_BIN, "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    outs.append(p.stdout + p.stderr)
    from adv import record_log
    for o in outs:
        record_log(o)
    assert find_secrets(outs) == [], outs


def test_suite_wide_leak_check_finds_every_form_of_the_password():
    """The session-finish check (conftest.py) is only as good as its detector: each form the
    password can leak in is found, in text and in bytes, and clean text gives nothing."""
    forms = secret_forms()
    assert len(forms) >= 4
    leaks = ["reply=\"535 " + PASSWORD + "\"",
             "line=\"AUTH PLAIN " + b64(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()) + "\"",
             "334 " + b64(PASSWORD.encode()),
             "x" + b64(b"\0\0" + PASSWORD.encode())[4:]]
    for leak in leaks:
        assert find_secrets([leak]), leak
        assert find_secrets([leak.encode("latin-1")]), leak
    assert find_secrets(["event=auth.ok user=%s mechanism=PLAIN masked=yes" % USER]) == []
