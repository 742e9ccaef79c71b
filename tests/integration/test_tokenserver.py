"""The test token endpoint itself (tests/lib/tokenserver.py): every grant type, every check it
makes, every fail mode, rotation, revocation and the device flow.  Python only, no proxy:
the OAuth2 tests trust this endpoint to refuse what a real one refuses."""
import base64
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import tokenserver
import upstream as upstream_mod
from smtpwire import Client
from tokenserver import GRANT_CC, GRANT_DEVICE, GRANT_JWT, GRANT_RT, TokenServer

B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
EMAIL = "proxy@project.iam.gserviceaccount.test"
SUBJECT = "device@example.test"
GSCOPE = "https://mail.google.com/"


@pytest.fixture(scope="module")
def rsakey():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def ts_factory(certs):
    made = []

    def make(**kw):
        t = TokenServer(*certs["good"], **kw).start()
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


@pytest.fixture
def ts(ts_factory):
    return ts_factory()


@pytest.fixture
def post(certs):
    """post(url, form, ctype=..., method="POST", timeout=5) -> (status, parsed JSON or bytes)."""
    ctx = ssl.create_default_context(cafile=certs["ca"][0])

    def do(url, form, ctype="application/x-www-form-urlencoded", method="POST", timeout=5):
        data = urllib.parse.urlencode(form).encode() if isinstance(form, dict) else form
        req = urllib.request.Request(url, data=data if method == "POST" else None,
                                     method=method)
        if ctype:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    return do


def cc_form(ts, **over):
    f = {"grant_type": GRANT_CC, "client_id": ts.client_id, "client_secret": ts.client_secret,
         "scope": ts.scope}
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


def wait_for(cond, timeout=10):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)
    return cond()


# ---- client credentials --------------------------------------------------------------------

def test_client_credentials_issues_a_short_lived_microsoft_sized_token(ts_factory, post):
    ts = ts_factory(lifetime=1)
    assert ts.url == "https://127.0.0.1:%d/token" % ts.port
    st, b = post(ts.url, cc_form(ts))
    assert st == 200, b
    assert b["token_type"] == "Bearer" and b["expires_in"] == 1 and "refresh_token" not in b
    tok = b["access_token"]
    assert B64TOKEN.match(tok) and tok.startswith("eyJ") and 2000 <= len(tok) <= 3000
    assert ts.valid(tok) and ts.valid(tok.encode()) and not ts.valid(tok + "x")
    assert ts.issued[0][0] == tok
    assert ts.count() == 1 and ts.count(GRANT_CC) == 1 and ts.count(GRANT_RT) == 0
    assert ts.requests[0] == ("/token", GRANT_CC, cc_form(ts))
    assert wait_for(lambda: not ts.valid(tok), 5), "the token outlived its lifetime"


@pytest.mark.parametrize("field,value,status,error", [
    ("client_secret", "wrong", 401, "invalid_client"),
    ("client_secret", None, 401, "invalid_client"),
    ("client_id", "someone-else", 401, "invalid_client"),
    ("scope", "https://graph.microsoft.com/.default", 400, "invalid_scope"),
    ("scope", None, 400, "invalid_scope"),
])
def test_client_credentials_checks_every_field(ts, post, field, value, status, error):
    st, b = post(ts.url, cc_form(ts, **{field: value}))
    assert (st, b["error"]) == (status, error)
    if field == "client_secret":
        assert b["error_description"].startswith("AADSTS7000215: Invalid client secret")
    assert not ts.issued


def test_form_transport_checks(ts, post):
    good = cc_form(ts)
    assert post(ts.url, good, ctype="application/json")[0] == 400
    assert post(ts.url, json.dumps(good).encode(), ctype="application/json")[0] == 400
    assert post(ts.url, good, ctype="application/x-www-form-urlencoded; charset=utf-8")[0] == 200
    assert post(ts.url, urllib.parse.urlencode(good).encode() + b"&scope=x")[0] == 400
    assert post(ts.url, None, method="GET")[0] == 405
    assert post(ts.url.replace("/token", "/oauth2/v2.0/token"), good)[0] == 404
    assert post(ts.url, {"grant_type": "password", "username": "u", "password": "p"})[1][
        "error"] == "unsupported_grant_type"
    assert len(ts.issued) == 1


# ---- refresh token ---------------------------------------------------------------------------

def test_refresh_token_rotates_and_the_old_one_dies(ts_factory, post):
    ts = ts_factory(refresh_token="rt-initial", client_secret="s")
    assert ts.refresh_token == "rt-initial"
    form = {"grant_type": GRANT_RT, "client_id": ts.client_id, "refresh_token": "rt-initial"}
    st, b = post(ts.url, form)
    assert st == 200 and b["refresh_token"] != "rt-initial"
    assert ts.refresh_token == b["refresh_token"] and ts.valid(b["access_token"])
    st, b2 = post(ts.url, form)             # the old one, again
    assert st == 400 and b2["error"] == "invalid_grant"
    assert "AADSTS70000" in b2["error_description"] and "expired or revoked" in \
        b2["error_description"]
    # the secret is optional, but a wrong one is refused; the right one is accepted
    form = dict(form, refresh_token=ts.refresh_token)
    assert post(ts.url, dict(form, client_secret="bad"))[1]["error"] == "invalid_client"
    assert post(ts.url, dict(form, client_id="bad"))[0] == 400
    assert post(ts.url, dict(form, scope="bad"))[1]["error"] == "invalid_scope"
    st, b3 = post(ts.url, dict(form, client_secret="s"))
    assert st == 200 and b3["refresh_token"] == ts.refresh_token
    assert {"rt-initial", b["refresh_token"], b3["refresh_token"]} <= set(ts.secrets())
    assert ts.count(GRANT_RT) == 6


def test_refresh_token_without_rotation(ts_factory, post):
    ts = ts_factory(rotate=False)
    rt = ts.refresh_token
    assert rt.startswith("rt-") and len(rt) > 20
    for _ in range(2):
        st, b = post(ts.url, {"grant_type": GRANT_RT, "client_id": ts.client_id,
                              "refresh_token": rt})
        assert st == 200 and "refresh_token" not in b
    assert ts.refresh_token == rt


def test_revoke_all(ts, post):
    a = post(ts.url, cc_form(ts))[1]["access_token"]
    ts.revoke_all()
    assert not ts.valid(a)
    b = post(ts.url, cc_form(ts))[1]["access_token"]
    assert ts.valid(b) and not ts.valid(a)


# ---- JWT bearer --------------------------------------------------------------------------------

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(key, claims, header=None):
    h = b64u(json.dumps(header or {"alg": "RS256", "typ": "JWT"}).encode())
    c = b64u(json.dumps(claims).encode())
    sig = key.sign((h + "." + c).encode(), padding.PKCS1v15(), hashes.SHA256())
    return h + "." + c + "." + b64u(sig)


@pytest.fixture
def jwt_ts(ts_factory, rsakey):
    pem = rsakey.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return ts_factory(jwt_public_key_pem=pem.decode(), jwt_email=EMAIL, jwt_subject=SUBJECT,
                      scope=GSCOPE)


def claims(ts, **over):
    now = int(time.time())
    c = {"iss": EMAIL, "sub": SUBJECT, "scope": GSCOPE, "aud": ts.url, "iat": now,
         "exp": now + 3600}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def test_jwt_bearer_good(jwt_ts, post, rsakey):
    st, b = post(jwt_ts.url, {"grant_type": GRANT_JWT,
                              "assertion": make_jwt(rsakey, claims(jwt_ts))})
    assert st == 200 and jwt_ts.valid(b["access_token"]) and "refresh_token" not in b
    assert jwt_ts.count(GRANT_JWT) == 1


def _bad_jwts(ts, key):
    now = int(time.time())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = make_jwt(key, claims(ts))
    h, c, s = good.split(".")
    yield "signature", make_jwt(other, claims(ts))
    yield "signature", h + "." + b64u(json.dumps(claims(ts, sub="x@y")).encode()) + "." + s
    yield "header", make_jwt(key, claims(ts), {"alg": "RS512", "typ": "JWT"})
    yield "header", make_jwt(key, claims(ts), {"alg": "none", "typ": "JWT"})
    yield "header", make_jwt(key, claims(ts), {"alg": "RS256"})
    yield "base64url", h + "=." + c + "." + s
    yield "three", h + "." + c
    yield "iss", make_jwt(key, claims(ts, iss="other@x.test"))
    yield "sub", make_jwt(key, claims(ts, sub="other@example.test"))
    yield "sub", make_jwt(key, claims(ts, sub=None))
    yield "scope", make_jwt(key, claims(ts, scope="https://www.googleapis.com/auth/gmail"))
    yield "aud", make_jwt(key, claims(ts, aud="https://oauth2.googleapis.com/token"))
    yield "iat", make_jwt(key, claims(ts, iat=now - 120, exp=now + 600))
    yield "iat", make_jwt(key, claims(ts, iat=now + 120))
    yield "expired", make_jwt(key, claims(ts, iat=now - 30, exp=now - 1))
    yield "3600", make_jwt(key, claims(ts, exp=now + 3700))
    yield "integer", make_jwt(key, claims(ts, iat=str(now)))
    yield "missing", ""


def test_jwt_bearer_every_check_refuses(jwt_ts, post, rsakey):
    for what, a in _bad_jwts(jwt_ts, rsakey):
        form = {"grant_type": GRANT_JWT}
        if a:
            form["assertion"] = a
        st, b = post(jwt_ts.url, form)
        assert st == 400 and b["error"] == "invalid_grant", (what, b)
        assert what.lower() in b["error_description"].lower(), (what, b)
    assert not jwt_ts.issued


# ---- device code -------------------------------------------------------------------------------

def test_device_flow(ts_factory, post):
    ts = ts_factory(device_interval=0.2)
    assert ts.device_url == "https://127.0.0.1:%d/devicecode" % ts.port
    assert post(ts.device_url, {"client_id": "nope"})[0] == 400
    st, d = post(ts.device_url, {"client_id": ts.client_id, "scope": ts.scope})
    assert st == 200 and d["expires_in"] == 300 and d["interval"] == 0.2
    assert d["verification_uri"].startswith("https://") and re.match("^[A-Z]{8}$",
                                                                     d["user_code"])
    poll = {"grant_type": GRANT_DEVICE, "client_id": ts.client_id,
            "device_code": d["device_code"]}
    st, b = post(ts.url, poll)
    assert (st, b["error"]) == (400, "authorization_pending")
    ts.slow_down_once = True
    time.sleep(0.25)
    assert post(ts.url, poll)[1]["error"] == "slow_down"
    assert not ts.slow_down_once and ts.too_fast == 0
    assert post(ts.url, poll)[1]["error"] == "authorization_pending"     # too soon now
    assert ts.too_fast == 1
    ts.approve()
    st, b = post(ts.url, poll)
    assert st == 200 and ts.valid(b["access_token"]) and b["refresh_token"] == ts.refresh_token
    assert post(ts.url, poll)[1]["error"] == "invalid_grant"      # redeemed already
    assert d["device_code"] in ts.secrets()
    # the refresh token the device flow gave works
    st, b = post(ts.url, {"grant_type": GRANT_RT, "client_id": ts.client_id,
                          "refresh_token": ts.refresh_token})
    assert st == 200
    assert ts.count(path="/devicecode") == 2


def test_device_flow_expires_and_approve_before_the_code(ts_factory, post):
    ts = ts_factory(device_expires=1)
    d = post(ts.device_url, {"client_id": ts.client_id})[1]
    poll = {"grant_type": GRANT_DEVICE, "client_id": ts.client_id,
            "device_code": d["device_code"]}
    time.sleep(1.1)
    assert post(ts.url, poll)[1]["error"] == "expired_token"
    ts.approve()                # nothing pending: the next code is approved at once
    d = post(ts.device_url, {"client_id": ts.client_id})[1]
    st, b = post(ts.url, dict(poll, device_code=d["device_code"]))
    assert st == 200 and "refresh_token" in b


# ---- fail modes --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,status,check", [
    ("invalid_client", 401, lambda b: b["error"] == "invalid_client" and
     b["error_description"].startswith("AADSTS7000215")),
    ("invalid_grant", 400, lambda b: b["error"] == "invalid_grant" and
     "AADSTS70000" in b["error_description"]),
    ("malformed", 200, lambda b: isinstance(b, bytes)),
    ("server_error", 500, lambda b: isinstance(b, bytes) and b"<html>" in b.lower()),
])
def test_fail_modes_answering(ts, post, mode, status, check):
    ts.fail = mode
    st, b = post(ts.url, cc_form(ts))
    assert st == status and check(b), b
    assert post(ts.device_url, {"client_id": ts.client_id})[0] == status
    ts.fail = None
    assert post(ts.url, cc_form(ts))[0] == 200
    assert ts.count() == 3 and len(ts.issued) == 1


def test_fail_down_refuses_and_comes_back_on_the_same_port(ts, post):
    port = ts.port
    assert post(ts.url, cc_form(ts))[0] == 200
    ts.fail = "down"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises(urllib.error.URLError):
        post(ts.url, cc_form(ts))
    ts.fail = None
    assert ts.port == port
    assert post(ts.url, cc_form(ts))[0] == 200
    assert ts.count() == 2


def test_fail_hang_reads_and_never_answers(ts, post):
    ts.fail = "hang"
    t0 = time.monotonic()
    with pytest.raises((socket.timeout, urllib.error.URLError, TimeoutError)):
        post(ts.url, cc_form(ts), timeout=1)
    assert time.monotonic() - t0 >= 0.9
    assert wait_for(lambda: ts.count() == 1)     # the request was read
    ts.fail = None
    assert post(ts.url, cc_form(ts))[0] == 200


def test_stop_ends_a_hung_request(ts_factory, post):
    ts = ts_factory()
    ts.fail = "hang"
    s = socket.create_connection(("127.0.0.1", ts.port), timeout=5)
    t0 = time.monotonic()
    ts.stop()
    assert time.monotonic() - t0 < 5
    s.close()


def test_secrets_lists_everything(ts, post):
    rt0 = ts.refresh_token
    a = post(ts.url, cc_form(ts))[1]["access_token"]
    b = post(ts.url, {"grant_type": GRANT_RT, "client_id": ts.client_id,
                      "refresh_token": rt0})[1]
    s = ts.secrets()
    for x in (ts.client_secret, rt0, a, b["access_token"], b["refresh_token"]):
        assert x in s
    assert tokenserver.INVALID_CLIENT[0] == "invalid_client"


# ---- the test upstream's XOAUTH2 / OAUTHBEARER, against this endpoint's tokens ----------------

def tls_client(certs, up):
    """An SMTP client over implicit TLS to Upstream ${up}, greeted and EHLO'd; (client, caps)."""
    c = Client(up.port)
    ctx = ssl.create_default_context(cafile=certs["ca"][0])
    c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.test")
    assert c.read_reply().code == 220
    return c, c.expect("EHLO device.test", 250).lines


def xoauth2(user, tok):
    return base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (user, tok)).encode()).decode()


def oauthbearer(user, tok, port, host="mail.test"):
    u = user.replace("=", "=3D").replace(",", "=2C")
    s = "n,a=%s,\x01host=%s\x01port=%d\x01auth=Bearer %s\x01\x01" % (u, host, port, tok)
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def oauth_up(upstream, ts):
    """(upstream that checks tokens with ts, a valid token)."""
    up = upstream("implicit", token_check=ts.valid)
    return up, ts._issue(False)["access_token"]


def test_upstream_offers_token_mechanisms_only_when_asked(certs, upstream, ts):
    plain = upstream("implicit")
    c, caps = tls_client(certs, plain)
    assert "AUTH PLAIN LOGIN" in caps and not any("XOAUTH2" in l for l in caps)
    assert c.expect("AUTH XOAUTH2 " + xoauth2("u", "t"), 504)
    c.close()
    up = upstream("implicit", token_check=ts.valid)
    c, caps = tls_client(certs, up)
    assert "AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER" in caps
    assert "AUTH=PLAIN LOGIN XOAUTH2 OAUTHBEARER" in caps
    c.close()


def test_upstream_xoauth2_accepts_a_valid_token_both_ways(certs, oauth_up):
    up, tok = oauth_up
    user = upstream_mod.DEFAULT_USER
    c, _ = tls_client(certs, up)
    c.expect("AUTH XOAUTH2 " + xoauth2(user, tok), 235)
    c.close()
    c, _ = tls_client(certs, up)
    assert c.expect("AUTH XOAUTH2", 334).raw == b"334 \r\n"
    c.expect(xoauth2(user, tok), 235)
    c.expect("MAIL FROM:<a@b.test>", 250)
    c.close()
    assert wait_for(lambda: len(up.connections) == 2 and all(x.auth for x in up.connections))
    assert [x.auth for x in up.connections] == [[("XOAUTH2", user, tok, True)]] * 2


def test_upstream_oauthbearer_checks_the_gs2_header_byte_for_byte(certs, upstream, ts):
    user = "od,d=user@example.test"
    up = upstream("implicit", token_check=ts.valid, user=user, oauthbearer_host="mail.test")
    tok = ts._issue(False)["access_token"]
    c, _ = tls_client(certs, up)
    c.expect("AUTH OAUTHBEARER " + oauthbearer(user, tok, up.port), 235)
    c.close()
    c, _ = tls_client(certs, up)
    c.expect("AUTH OAUTHBEARER", 334)
    c.expect(oauthbearer(user, tok, up.port), 235)
    c.close()
    good = base64.b64decode(oauthbearer(user, tok, up.port)).decode()
    bad = [oauthbearer(user, tok, up.port + 1),                  # not our port
           oauthbearer(user, tok, up.port, host="other.test"),   # not the host
           b64u(good.replace("=2C", ",").encode()),              # user not escaped
           base64.b64encode(good[:-1].encode()).decode(),        # one \x01 short
           base64.b64encode(good.replace("n,a=", "y,a=").encode()).decode(),
           base64.b64encode(good.replace("Bearer ", "Bearer  ").encode()).decode(),
           xoauth2(user, tok),                                   # the other mechanism's string
           "not base64!", "*"]
    for b in bad:
        c, _ = tls_client(certs, up)
        assert c.cmd("AUTH OAUTHBEARER " + b).code == 501, b
        c.close()
    assert wait_for(lambda: up.wait_closed() and len(up.connections) == len(bad) + 2)
    assert [a for x in up.connections for a in x.auth] == [("OAUTHBEARER", user, tok, True)] * 2


def test_upstream_xoauth2_malformed(certs, oauth_up):
    up, tok = oauth_up
    user = upstream_mod.DEFAULT_USER
    good = "user=%s\x01auth=Bearer %s\x01\x01" % (user, tok)
    for s in (good[:-1], good.replace("Bearer", "bearer"), good.replace("user=", "usr="),
              good + "\x01", "user=\x01auth=Bearer %s\x01\x01" % tok):
        c, _ = tls_client(certs, up)
        assert c.cmd("AUTH XOAUTH2 " + base64.b64encode(s.encode()).decode()).code == 501
        c.close()


def test_upstream_refuses_like_microsoft(certs, upstream, ts):
    up = upstream("implicit", token_check=ts.valid)
    tok = ts._issue(False)["access_token"]
    ts.revoke_all()
    c, _ = tls_client(certs, up)
    r = c.cmd("AUTH XOAUTH2 " + xoauth2(upstream_mod.DEFAULT_USER, tok))
    assert r.first.startswith("535 5.7.3 Authentication unsuccessful [")
    tok = ts._issue(False)["access_token"]
    r = c.cmd("AUTH XOAUTH2 " + xoauth2("someone@else.test", tok))      # valid, wrong user
    assert r.code == 535
    c.expect("AUTH XOAUTH2 " + xoauth2(upstream_mod.DEFAULT_USER, tok), 235)
    c.close()
    assert wait_for(lambda: len(up.connections[0].auth) == 3)
    assert [a[3] for a in up.connections[0].auth] == [False, False, True]


@pytest.mark.parametrize("mech,ack", [("XOAUTH2", ""), ("XOAUTH2", "*"),
                                      ("OAUTHBEARER", "AQ==")])
def test_upstream_refuses_like_google(certs, upstream, ts_factory, mech, ack):
    ts = ts_factory(lifetime=0.5)
    up = upstream("implicit", token_check=ts.valid, token_style="google")
    tok = ts._issue(False)["access_token"]
    assert wait_for(lambda: not ts.valid(tok))      # expired
    c, _ = tls_client(certs, up)
    ir = xoauth2(upstream_mod.DEFAULT_USER, tok) if mech == "XOAUTH2" else \
        oauthbearer(upstream_mod.DEFAULT_USER, tok, up.port)
    r = c.cmd("AUTH %s %s" % (mech, ir))
    assert r.code == 334
    assert json.loads(base64.b64decode(r.lines[0])) == {
        "status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
    r = c.cmd(ack)
    assert r.code == 535 and r.lines[0].startswith("5.7.8 Username and Password not accepted")
    c.close()
    assert wait_for(lambda: up.connections[0].auth == [(mech, upstream_mod.DEFAULT_USER, tok,
                                                        False)])
