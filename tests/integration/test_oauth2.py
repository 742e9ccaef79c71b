"""OAuth2 upstream login: the proxy gets and renews its own tokens, devices never AUTH.

Real parts: the built daemon; tests/lib/tokenserver.py, an HTTPS token endpoint that checks
every form field and the JWT signature and issues short-lived tokens; the test upstream,
which checks the XOAUTH2 / OAUTHBEARER string byte for byte and asks the token server
whether the token is valid. Every test's proxy log is searched for every secret.
"""
import base64
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from conftest import USER, check_config
from test_fail_closed import expect_421_greeting

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import tokenserver  # noqa: E402

BODY = b"Subject: oauth2\r\n\r\nscan attached\r\n.\r\n"




@pytest.fixture
def oproxy(proxy, tokens, tmp_path):
    """proxy(...) whose log, and every reply its clients got, is searched at teardown for
    every secret of every token server."""
    made = []
    servers = []
    clients = []

    def make(*a, **kw):
        px = proxy(*a, **kw)
        made.append(px)
        plain_client = px.client

        def client(*ca, **ckw):
            c = plain_client(*ca, **ckw)
            clients.append(c)
            return c
        px.client = client
        return px

    make.servers = servers
    yield make
    for c in clients:
        got = bytes(c.received).decode("latin-1")
        for ts in servers:
            for secret in ts.secrets():
                assert secret not in got, "a secret in a reply: %s..." % secret[:12]
    for px in made:
        text = px.stderr()
        for ts in servers:
            for secret in ts.secrets():
                assert secret not in text, "a secret in the log: %s..." % secret[:12]
                for tok, _ in ts.issued:
                    x = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" %
                                          (USER, tok)).encode()).decode()
                    assert x[:40] not in text


def oauth(ts, certs, flow="client_credentials", mech="xoauth2", **kw):
    d = {"username": USER, "auth_mechanism": mech, "oauth2_flow": flow,
         "oauth2_token_url": ts.url, "oauth2_client_id": ts.client_id,
         "oauth2_scope": ts.scope, "oauth2_ca_file": certs["ca"][0]}
    if flow == "client_credentials":
        d["oauth2_client_secret"] = ts.client_secret
    d.update(kw)
    return d


def start(oproxy, up, ts, certs, tmp_path, proxy=None, **kw):
    oproxy.servers.append(ts)
    p = {"state_dir": str(tmp_path), "timeout": "5", "workers": "2"}
    p.update(proxy or {})
    return oproxy(up, proxy=p, upstream=oauth(ts, certs, **kw), log={"level": "debug"})


def deliver(px, subject=b"oauth2"):
    with px.client(timeout=15) as c:
        r = c.read_reply()
        assert r.code == 220, r
        r = c.send_mail("scanner@example.test", ["boss@example.test"],
                        b"Subject: " + subject + b"\r\n\r\nscan attached\r\n.\r\n",
                        ehlo="printer.test")
        assert r.code == 250, r


def token_logins(up):
    return [a for c in up.connections for a in c.auth]


# ---- the four flows ------------------------------------------------------------------------

def test_client_credentials_xoauth2_device_never_auths(upstream, tokens, oproxy, certs,
                                                      tmp_path):
    ts = tokens(lifetime=60)
    up = upstream("starttls", token_check=ts.valid)
    px = start(oproxy, up, ts, certs, tmp_path)
    with px.client() as c:
        assert c.read_reply().code == 220
        ehlo = c.expect("EHLO printer.test", 250)
        assert "AUTH" not in ehlo.text
        c.expect("AUTH PLAIN " + base64.b64encode(b"\0dev\0pw").decode(), 235)
        r = c.send_mail("scanner@example.test", ["boss@example.test"], BODY, ehlo="p.test")
        assert r.code == 250
    assert up.wait_messages(1)
    (mech, user, tok, ok), = token_logins(up)
    assert (mech, user, ok) == ("XOAUTH2", USER, True)
    assert tok == ts.issued[0][0]
    assert ts.count("client_credentials") == 1
    line, = px.wait_event("oauth2.token")
    assert line["upstream"] == "default" and line["flow"] == "client_credentials"
    assert line["expires_in"] == "60"
    assert px.wait_event("auth.ok")


def test_refresh_token_oauthbearer_rotation_survives_restart(upstream, tokens, oproxy, certs,
                                                            tmp_path):
    ts = tokens(lifetime=60, rotate=True)
    first = ts.refresh_token
    rt = tmp_path / "rt"
    rt.write_text(first + "\n")
    os.chmod(rt, 0o600)
    up = upstream("starttls", token_check=ts.valid)
    kw = dict(flow="refresh_token", mech="oauthbearer", oauth2_refresh_token_file=str(rt))
    px = start(oproxy, up, ts, certs, tmp_path, **kw)
    deliver(px)
    assert token_logins(up)[0][:2] == ("OAUTHBEARER", USER)
    line, = px.wait_event("oauth2.token", rotated="yes")
    kept = tmp_path / "default.refresh_token"
    assert kept.read_text() == ts.refresh_token + "\n" and ts.refresh_token != first
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    px.stop()
    # The old token in oauth2_refresh_token_file is dead now: only the kept one works, even
    # when the file looks newer (LoadCredential= copies it anew at every start).
    os.utime(rt, (time.time() + 100, time.time() + 100))
    px2 = start(oproxy, up, ts, certs, tmp_path, **kw)
    deliver(px2)
    assert px2.wait_event("oauth2.token", rotated="yes")
    assert ts.count("refresh_token") == 2
    assert not [d for d in ts.requests if d[1] == "refresh_token" and
                d[2].get("refresh_token") == first][1:]


def test_refresh_token_file_replaced_by_admin_wins_over_kept_one(upstream, tokens, oproxy,
                                                                  certs, tmp_path):
    ts = tokens(lifetime=60, rotate=True)
    rt = tmp_path / "rt"
    rt.write_text(ts.refresh_token + "\n")
    os.chmod(rt, 0o600)
    up = upstream("starttls", token_check=ts.valid)
    kw = dict(flow="refresh_token", oauth2_refresh_token_file=str(rt))
    px = start(oproxy, up, ts, certs, tmp_path, **kw)
    assert px.wait_event("oauth2.token", rotated="yes")
    px.stop()
    # A new consent: the admin writes the new token into the file (an old mtime on purpose).
    ts.refresh_token = "rt-admin-" + "n" * 40
    rt.write_text(ts.refresh_token + "\n")
    os.utime(rt, (1, 1))
    px2 = start(oproxy, up, ts, certs, tmp_path, **kw)
    assert px2.wait_event("oauth2.token", rotated="yes")
    assert not px2.events("oauth2.fail")
    deliver(px2)


def service_account(tmp_path, ts_url=None):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    email = "relay@project.iam.gserviceaccount.com"
    doc = {"type": "service_account", "project_id": "project", "private_key_id": "abc",
           "private_key": pem, "client_email": email, "client_id": "1234",
           "token_uri": ts_url or "https://oauth2.googleapis.com/token"}
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    return path, pub, email


def test_jwt_bearer_service_account(upstream, tokens, oproxy, certs, tmp_path):
    path, pub, email = service_account(tmp_path)
    ts = tokens(lifetime=60, scope="https://mail.google.com/", jwt_public_key_pem=pub,
                jwt_email=email, jwt_subject=USER)
    # token_uri in the key points at Google: oauth2_token_url overrides it (and is the aud).
    up = upstream("starttls", token_check=ts.valid, token_style="google")
    px = start(oproxy, up, ts, certs, tmp_path, flow="jwt_bearer",
               oauth2_key_file=str(path), oauth2_client_id=None)
    deliver(px)
    assert ts.count(tokenserver.GRANT_JWT) == 1
    assert token_logins(up)[0][3] is True


def test_jwt_bearer_uses_token_uri_of_the_key(upstream, tokens, oproxy, certs, tmp_path):
    ts = tokens(lifetime=60, scope="https://mail.google.com/")
    path, pub, email = service_account(tmp_path, ts.url)
    ts.jwt_email, ts.jwt_subject = email, "other@example.test"
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    ts.jwt_key = load_pem_public_key(pub)
    up = upstream("starttls", token_check=ts.valid)
    px = start(oproxy, up, ts, certs, tmp_path, flow="jwt_bearer", oauth2_token_url=None,
               oauth2_key_file=str(path), oauth2_client_id=None,
               oauth2_subject="other@example.test")
    deliver(px)
    assert ts.count(tokenserver.GRANT_JWT) == 1


def token_script(tmp_path, ts, certs, body=None):
    """An admin's token command: a script that asks the token server itself."""
    script = tmp_path / "get-token"
    if body is None:
        body = """
import json, ssl, sys, urllib.parse, urllib.request
ctx = ssl.create_default_context(cafile=%r)
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": %r,
                               "client_secret": %r, "scope": %r}).encode()
with urllib.request.urlopen(%r, form, context=ctx, timeout=10) as r:
    sys.stdout.write(r.read().decode())
""" % (certs["ca"][0], ts.client_id, ts.client_secret, ts.scope, ts.url)
    script.write_text("#!/usr/bin/python3\n" + body)
    os.chmod(script, 0o700)
    return script


def start_command(oproxy, up, ts, certs, tmp_path, command, **kw):
    """A proxy whose token comes from ${command}: no token endpoint keys."""
    return start(oproxy, up, ts, certs, tmp_path, flow="command", oauth2_token_command=command,
                 oauth2_token_url=None, oauth2_client_id=None, oauth2_scope=None, **kw)


def test_command_flow_json_output(upstream, tokens, oproxy, certs, tmp_path):
    ts = tokens(lifetime=60)
    script = token_script(tmp_path, ts, certs)
    up = upstream("starttls", token_check=ts.valid)
    px = start_command(oproxy, up, ts, certs, tmp_path, "%s --profile 'office printer'" % script)
    deliver(px)
    line, = px.wait_event("oauth2.token", flow="command")
    assert line["expires_in"] == "60"


def test_command_flow_bare_token(upstream, tokens, oproxy, certs, tmp_path):
    ts = tokens(lifetime=600)
    tok = ts._issue(False)["access_token"]
    script = token_script(tmp_path, ts, certs, body="print(%r)\n" % tok)
    up = upstream("starttls", token_check=ts.valid)
    px = start_command(oproxy, up, ts, certs, tmp_path, str(script))
    deliver(px)
    assert px.wait_event("oauth2.token", flow="command", expires_in="300")


@pytest.mark.parametrize("body,reason", [
    ("import sys; sys.exit(3)\n", "exited 3"),
    ("pass\n", "printed nothing"),
    ("import time; time.sleep(60)\n", "timeout after 2 s, killed"),
    ("print('not a token, two words')\n", "not a bearer token"),
])
def test_command_flow_failures_give_421(upstream, tokens, oproxy, certs, tmp_path, body,
                                        reason):
    ts = tokens()
    script = token_script(tmp_path, ts, certs, body=body)
    up = upstream("starttls", token_check=ts.valid)
    px = start_command(oproxy, up, ts, certs, tmp_path, str(script), proxy={"timeout": "2"})
    line, = px.wait_event("oauth2.fail", timeout=15)[:1]
    assert reason in line["reason"], line
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    assert "MAIL" not in [v for c in up.connections for v in c.verbs()]


# ---- unattended: each flow across token expiries and a restart ------------------------------

@pytest.mark.parametrize("flow", ["client_credentials", "refresh_token", "jwt_bearer",
                                  "command"])
def test_each_flow_unattended_across_expiries_and_a_restart(upstream, tokens, oproxy, certs,
                                                            tmp_path, flow):
    """Tokens of 2 s: messages for 5 s (two renewals and more), a restart, messages again;
    every message delivered with a token the server accepts, no device ever sent AUTH."""
    kw = {}
    ts_kw = {"lifetime": 2}
    if flow == "jwt_bearer":
        path, pub, email = service_account(tmp_path)
        ts_kw.update(jwt_public_key_pem=pub, jwt_email=email, jwt_subject=USER)
        kw = dict(oauth2_key_file=str(path), oauth2_client_id=None)
    ts = tokens(**ts_kw)
    if flow == "refresh_token":
        rt = tmp_path / "rt"
        rt.write_text(ts.refresh_token + "\n")
        os.chmod(rt, 0o600)
        kw = dict(oauth2_refresh_token_file=str(rt))
    up = upstream("starttls", token_check=ts.valid)
    n = 0
    for run in range(2):
        if flow == "command":
            px = start_command(oproxy, up, ts, certs, tmp_path,
                               str(token_script(tmp_path, ts, certs)))
        else:
            px = start(oproxy, up, ts, certs, tmp_path, flow=flow, **kw)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            deliver(px, b"%s %d" % (flow.encode(), n))
            n += 1
            time.sleep(0.2)
        assert len(px.events("oauth2.token")) >= 3, px.events("oauth2.token")
        assert not px.events("oauth2.fail") and not px.events("auth.fail")
        px.stop()
    assert up.wait_messages(n)
    logins = token_logins(up)
    # Kept sessions (reuse is on) spare logins, never one per token: see the next test.
    assert 0 < len(logins) <= n and all(ok for *_, ok in logins)
    # Fresh tokens, not one reused: at least two per run (fewer sessions under valgrind).
    assert len({tok for _, _, tok, _ in logins}) >= 4
    # One login per upstream session, under TLS, before the device's MAIL.
    for c in up.connections:
        v = c.verbs(True)
        assert v.count("AUTH") == 1 and v.index("AUTH") < v.index("MAIL"), v


# ---- the cache: one request per renewal, never a wait --------------------------------------

def test_many_sessions_over_several_lifetimes_one_request_per_renewal(upstream, tokens,
                                                                     oproxy, certs, tmp_path):
    ts = tokens(lifetime=3)
    up = upstream("starttls", token_check=ts.valid)
    px = start(oproxy, up, ts, certs, tmp_path)
    assert px.wait_event("oauth2.token")
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 10 or n < 30:
        deliver(px, b"msg %d" % n)
        n += 1
        if n > 400:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    assert up.wait_messages(n)
    assert all(ok for _, _, _, ok in token_logins(up))
    workers = {d["pid"] for d in px.events("worker.start")}
    assert len(workers) == 2
    # Renewed at 80 % of 3 s: one request per 2.4 s, and no more.
    renewals = ts.count("client_credentials")
    print("figures: %d sessions in %.1f s over 2 workers, %d token requests, %d tokens" % (
        n, elapsed, renewals, len(px.events("oauth2.token"))))
    assert renewals == len(px.events("oauth2.token"))
    assert elapsed / 2.4 - 1 <= renewals <= elapsed / 2.4 + 3, (renewals, elapsed)
    # No session ever waited for a token after the first one was there.
    waits = [d for d in px.events("upstream.state") if d.get("to") == "token"]
    assert waits == [], waits
    assert not px.events("auth.retry") and not px.events("auth.fail")


def test_a_kept_session_never_outlives_the_token_it_logged_in_with(upstream, tokens, oproxy,
                                                                  certs, tmp_path):
    """Providers check a token's lifetime on open sessions too: once the main process has
    renewed the token, a session logged in with the old one is closed, not handed out."""
    ts = tokens(lifetime=8)
    up = upstream("starttls", token_check=ts.valid)
    px = start(oproxy, up, ts, certs, tmp_path, proxy={"workers": "1"})
    deliver(px, b"first")
    end = time.monotonic() + 10
    while sum(c.verbs(True).count("RSET") for c in up.connections) < 1:
        assert time.monotonic() < end, "the first session was never kept"
        time.sleep(0.02)
    time.sleep(0.1)
    deliver(px, b"second")      # same token: the kept session
    assert len(up.connections) == 1 and px.wait_event("upstream.reuse")
    px.wait_event("oauth2.token", 2, timeout=15)    # renewed at 80 % of its 8 s
    deliver(px, b"third")
    assert up.wait_messages(3)
    close, = px.wait_event("upstream.reuse-close", reason="token renewed since its login")
    assert close["upstream"] == "default", close
    logins = token_logins(up)
    assert len(up.connections) == 2 and len(logins) == 2, logins
    assert logins[0][2] != logins[1][2] and all(ok for *_, ok in logins), logins
    assert up.connections[0].verbs(True).count("MAIL") == 2


def test_revoked_token_one_refresh_then_success(upstream, tokens, oproxy, certs, tmp_path):
    for style in ("microsoft", "google"):
        ts = tokens(lifetime=300)
        up = upstream("starttls", token_check=ts.valid, token_style=style)
        px = start(oproxy, up, ts, certs, tmp_path, reuse="0")     # a login per session
        deliver(px)
        ts.revoke_all()
        deliver(px)
        deliver(px)
        assert ts.count("client_credentials") == 2
        retry, = px.wait_event("auth.retry")
        assert retry["upstream"] == "default"
        logins = token_logins(up)
        assert [ok for *_, ok in logins] == [True, False, True, True], (style, logins)
        assert not px.events("auth.fail")
        px.stop()


def test_token_refused_twice_gives_421_and_auth_fail(upstream, tokens, oproxy, certs,
                                                     tmp_path):
    ts = tokens(lifetime=300)
    up = upstream("starttls", token_check=lambda tok: False)
    px = start(oproxy, up, ts, certs, tmp_path)
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    assert px.wait_event("auth.retry") and px.wait_event("auth.fail")
    assert ts.count("client_credentials") == 2


# ---- the endpoint fails --------------------------------------------------------------------

def test_endpoint_down_421_then_recovers(upstream, tokens, oproxy, certs, tmp_path):
    ts = tokens(lifetime=300)
    ts.fail = "down"
    up = upstream("starttls", token_check=ts.valid)
    px = start(oproxy, up, ts, certs, tmp_path)
    line, = px.wait_event("oauth2.fail")[:1]
    assert "Connection refused" in line["reason"] or "connect" in line["reason"].lower(), line
    assert line["retry_in"] == "5"
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    assert "token" in r.text.lower()
    ts.fail = None
    t0 = time.monotonic()
    assert px.wait_event("oauth2.token", timeout=20)
    assert time.monotonic() - t0 < 20
    deliver(px)


@pytest.mark.parametrize("mode,words", [
    ("invalid_client", ["HTTP 401", "invalid_client", "AADSTS7000215", "client secret"]),
    ("malformed", ["HTTP 200", "not JSON"]),
    ("server_error", ["HTTP 500", "not JSON"]),
    ("hang", ["timeout after 2 s"]),
])
def test_endpoint_errors_are_explained_and_never_5xx(upstream, tokens, oproxy, certs,
                                                     tmp_path, mode, words):
    ts = tokens()
    ts.fail = mode
    up = upstream("starttls", token_check=ts.valid)
    px = start(oproxy, up, ts, certs, tmp_path, proxy={"timeout": "2"})
    line, = px.wait_event("oauth2.fail", timeout=15)[:1]
    for w in words:
        assert w in line["reason"], (w, line)
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    ts.fail = None


def dead_refresh_token(upstream, tokens, oproxy, certs, tmp_path):
    """A proxy whose oauth2_refresh_token_file holds a token the server no longer knows."""
    ts = tokens(lifetime=300)
    rt = tmp_path / "rt"
    rt.write_text("rt-long-dead\n")
    os.chmod(rt, 0o600)
    up = upstream("starttls", token_check=ts.valid)
    px = start(oproxy, up, ts, certs, tmp_path, flow="refresh_token",
               oauth2_refresh_token_file=str(rt))
    return ts, rt, px


def test_expired_refresh_token_says_run_oauth2_login(upstream, tokens, oproxy, certs,
                                                     tmp_path):
    ts, rt, px = dead_refresh_token(upstream, tokens, oproxy, certs, tmp_path)
    line, = px.wait_event("oauth2.fail")[:1]
    assert "invalid_grant" in line["reason"] and "oauth2-login" in line["reason"], line
    expect_421_greeting(px)


def test_reload_takes_a_new_refresh_token_at_once(upstream, tokens, oproxy, certs, tmp_path):
    """The refresh token died (invalid_grant); the admin puts a new one in place and reloads:
    it is tried at the reload, not at the next retry (10 s away after two failures)."""
    import signal
    ts, rt, px = dead_refresh_token(upstream, tokens, oproxy, certs, tmp_path)
    assert len(px.wait_event("oauth2.fail", n=2, timeout=15)) >= 2
    assert px.events("oauth2.fail")[-1]["retry_in"] == "10"
    rt.write_text(ts.refresh_token + "\n")
    t0 = time.monotonic()
    px.signal(signal.SIGHUP)
    assert px.wait_event("oauth2.token", timeout=10)
    assert time.monotonic() - t0 < 6
    deliver(px)


def test_session_arriving_during_fetch_waits_for_it(upstream, tokens, oproxy, certs,
                                                    tmp_path):
    """The first token takes 2 s to come (a slow token command): a device that connects
    meanwhile waits in the 'token' state and is greeted 220 once it is there."""
    ts = tokens(lifetime=300)
    tok = ts._issue(False)["access_token"]
    script = token_script(tmp_path, ts, certs,
                          body="import time; time.sleep(2); print(%r)\n" % tok)
    up = upstream("starttls", token_check=ts.valid)
    px = start_command(oproxy, up, ts, certs, tmp_path, str(script), proxy={"timeout": "10"})
    t0 = time.monotonic()
    with px.client(timeout=15) as c:
        r = c.read_reply()
        waited = time.monotonic() - t0
        assert r.code == 220, r
    assert 0.5 <= waited < 8, waited
    assert [d for d in px.events("upstream.state") if d.get("to") == "token"]
    assert len(px.events("oauth2.token")) == 1


# ---- reload keeps the token ----------------------------------------------------------------

def test_reload_keeps_the_token_when_the_settings_stay(upstream, tokens, oproxy, certs,
                                                       tmp_path):
    import signal
    ts = tokens(lifetime=300)
    up = upstream("starttls", token_check=ts.valid)
    px = start(oproxy, up, ts, certs, tmp_path)
    deliver(px)
    px.signal(signal.SIGHUP)
    assert px.wait_event("config.reload")
    assert len(px.wait_event("worker.start", n=4)) >= 4
    deliver(px)
    assert ts.count("client_credentials") == 1


# ---- -t ------------------------------------------------------------------------------------

def base_ini(certs, extra):
    return ("[proxy]\nhostname = gw.example.test\nstate_dir = /nonexistent-state\n"
            "[upstream]\nhost = 127.0.0.1\nca_file = %s\nusername = %s\n%s" %
            (certs["ca"][0], USER, extra))


@pytest.mark.parametrize("extra,words", [
    ("auth_mechanism = xoauth2\n", ["needs oauth2_flow"]),
    ("auth_mechanism = xoauth2\noauth2_flow = client_credentials\n",
     ["needs oauth2_token_url", "needs oauth2_client_id", "oauth2_client_secret_file",
      "needs oauth2_scope"]),
    ("auth_mechanism = xoauth2\noauth2_flow = client_credentials\n"
     "oauth2_token_url = http://login.example/token\noauth2_client_id = a\n"
     "oauth2_client_secret = s\noauth2_scope = x\n", ["not an https:// URL"]),
    ("auth_mechanism = xoauth2\noauth2_flow = client_credentials\n"
     "oauth2_token_url = https://login.example/token\noauth2_client_id = a\n"
     "oauth2_client_secret_file = /nonexistent/secret\noauth2_scope = x\n",
     ["oauth2_client_secret_file /nonexistent/secret", "No such file"]),
    ("auth_mechanism = xoauth2\noauth2_flow = refresh_token\n"
     "oauth2_token_url = https://login.example/token\noauth2_client_id = a\n",
     ["oauth2_refresh_token_file", "oauth2-login default"]),
    ("auth_mechanism = oauthbearer\noauth2_flow = command\n"
     "oauth2_token_command = get-token --x\n", ["absolute path"]),
    ("auth_mechanism = oauthbearer\noauth2_flow = command\n"
     "oauth2_token_command = /bin/echo 'unclosed\n", ["unclosed quote"]),
    ("auth_mechanism = xoauth2\noauth2_flow = jwt_bearer\noauth2_scope = s\n"
     "oauth2_key_file = /etc/hostname\n", ["oauth2_key_file /etc/hostname", "not JSON"]),
    ("auth_mechanism = xoauth2\noauth2_flow = command\noauth2_token_command = /bin/true\n"
     "password = pw\n", ["a password is not used"]),
    ("auth_mechanism = plain\npassword = pw\noauth2_scope = x\n", None),
])
def test_check_oauth2_config(certs, tmp_path, extra, words):
    path, p = check_config(str(tmp_path), base_ini(certs, extra))
    if words is None:
        assert p.returncode == 0 and "oauth2_scope is set but auth_mechanism" in p.stderr, \
            p.stderr
        return
    assert p.returncode == 1, p.stdout + p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)
    assert ":" in p.stderr.split("\n")[0] and path in p.stderr


def test_check_secret_value_never_echoed(certs, tmp_path):
    ini = base_ini(certs, "auth_mechanism = xoauth2\noauth2_flow = client_credentials\n"
                   "oauth2_client_secret = S3cr3t-value\noauth2_client_secret_file = /x\n")
    path, p = check_config(str(tmp_path), ini)
    assert p.returncode == 1 and "not both" in p.stderr, p.stderr
    assert "S3cr3t" not in p.stderr + p.stdout


def test_check_key_file_ok_and_world_readable_secret_warns(certs, tmp_path):
    path, pub, email = service_account(tmp_path)
    sec = tmp_path / "secret"
    sec.write_text("s\n")
    os.chmod(sec, 0o644)
    ini = base_ini(certs, "auth_mechanism = xoauth2\noauth2_flow = jwt_bearer\n"
                   "oauth2_scope = https://mail.google.com/\noauth2_key_file = %s\n"
                   "oauth2_client_secret_file = %s\n" % (path, sec))
    cfg, p = check_config(str(tmp_path), ini)
    assert p.returncode == 0, p.stderr
    assert "readable by every user" in p.stderr
    assert "BEGIN PRIVATE KEY" not in p.stderr + p.stdout


def test_named_upstream_with_oauth2_behind_a_profile(upstream, tokens, oproxy, certs, tmp_path):
    """[upstream m365] logs in with its own token (its own slot, its own oauth2.token line),
    for the devices of the profile that routes to it; [upstream] keeps its password."""
    ts = tokens(lifetime=60)
    up_tok = upstream("starttls", token_check=ts.valid)
    up_pw = upstream("starttls")
    oproxy.servers.append(ts)
    keys = oauth(ts, certs)
    keys.update({"host": "127.0.0.1", "port": str(up_tok.port), "server_name": "mail.test",
                 "ca_file": certs["ca"][0]})
    px = oproxy(up_pw, proxy={"state_dir": str(tmp_path), "timeout": "5"},
                upstream={"username": USER, "password": "pw"},
                **{"upstream m365": keys, "device scanner": {"match": "127.0.0.2",
                                                              "upstream": "m365"}})
    with px.client(source="127.0.0.2") as c:
        assert c.read_reply().code == 220
        r = c.send_mail("scanner@example.test", ["boss@example.test"], BODY, ehlo="p.test")
        assert r.code == 250
    line, = px.wait_event("oauth2.token")
    assert line["upstream"] == "m365"
    (mech, user, tok, ok), = token_logins(up_tok)
    assert (mech, ok) == ("XOAUTH2", True)
    msg, = px.wait_event("message")
    assert msg["upstream"] == "m365" and msg["device"] == "scanner"
