"""`smtp-tls-proxy oauth2-login [-c FILE] UPSTREAM`: the device authorization grant (RFC 8628)
against the test token endpoint (tests/lib/tokenserver.py) over verified HTTPS.

The sign-in is done by the test calling approve() once the command is polling; what the
command prints, what it sends, how it spaces its polls and what it leaves in state_dir are
checked, and every way it can fail must end in exit 1 with one line that says why, without
a secret on stdout or stderr."""
import os
import re
import stat
import subprocess
import time

import pytest

from conftest import PROXY_BIN, render_ini, sections
import tokenserver

GRANT_DEVICE = tokenserver.GRANT_DEVICE
USER_CODE = re.compile(r"enter the code\s+([A-Z]{8})\s")


class Server(tokenserver.TokenServer):
    """The test endpoint, plus two answers a real one gives that it has no switch for:
    `refuse` = an error code for every device-code poll (access_denied when the admin
    declines, expired_token), and `no_refresh` = a token answer without a refresh token
    (Microsoft without offline_access in the scope)."""
    refuse = None
    no_refresh = False

    def _device_token(self, form):
        if self.refuse is not None:
            raise tokenserver._Refused(400, {"error": self.refuse,
                                             "error_description": "AADSTS-test: refused"})
        body = super()._device_token(form)
        if self.no_refresh:
            body.pop("refresh_token", None)
        return body


@pytest.fixture
def tokensrv(certs):
    made = []

    def make(**kw):
        kw.setdefault("device_interval", 1)
        s = Server(certs["good"][0], certs["good"][1], **kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def login_config(tmp_path, certs, ts, upstream=None, proxy=None):
    """The config file of an upstream signed in through ${ts}; returns (path, state_dir)."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    up = {"host": "127.0.0.1", "port": "1", "username": "printer@example.test",
          "auth_mechanism": "xoauth2", "oauth2_flow": "refresh_token",
          "oauth2_token_url": ts.url if ts else "https://127.0.0.1:1/token",
          "oauth2_device_url": ts.device_url if ts else "https://127.0.0.1:1/devicecode",
          "oauth2_client_id": ts.client_id if ts else "proxy-client-id",
          "oauth2_scope": ts.scope if ts else "offline_access",
          "oauth2_ca_file": certs["ca"][0]}
    up.update(upstream or {})
    s = sections(certs, None, {"proxy": {"state_dir": str(state)}}, upstream=up,
                 proxy=proxy)
    path = tmp_path / "login.ini"
    path.write_text(render_ini(s))
    return str(path), state


def start(path, name="default"):
    return subprocess.Popen([PROXY_BIN, "oauth2-login", "-c", path, name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def finish(p, timeout=60):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    return p.returncode, out, err


def run(path, name="default", timeout=60):
    return finish(start(path, name), timeout)


def wait_for(cond, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def assert_no_secret(ts, *texts):
    for s in ts.secrets():
        for t in texts:
            assert s not in t, "a secret reached the output"


def assert_one_line(err):
    """The one line the command printed about its failure (config warnings aside)."""
    lines = [l for l in err.splitlines() if l.strip() and ": warning: " not in l]
    assert len(lines) == 1, err
    assert lines[0].startswith("smtp-tls-proxy oauth2-login: "), err
    return lines[0]


# ---- the sign-in ----------------------------------------------------------------------------

@pytest.mark.parametrize("secret", [None, "client-secret-XYZ"], ids=["public", "confidential"])
def test_login_after_approval_stores_the_refresh_token_0600_and_prints_no_secret(
        tmp_path, certs, tokensrv, secret):
    ts = tokensrv(client_secret="client-secret-XYZ")
    path, state = login_config(tmp_path, certs, ts,
                               upstream={"oauth2_client_secret": secret})
    # Before the first login the daemon's own check refuses the config (no refresh token
    # anywhere) and says what to run; oauth2-login itself must load it.
    t = subprocess.run([PROXY_BIN, "-t", "-c", path], capture_output=True, text=True,
                       timeout=30)
    assert t.returncode == 1 and "oauth2-login default" in t.stderr, t.stderr
    p = start(path)
    # The admin signs in while the command is polling: after its second poll.
    assert wait_for(lambda: ts.count(GRANT_DEVICE) >= 2), ts.requests
    ts.approve()
    rc, out, err = finish(p)
    assert rc == 0, (out, err)
    f = state / "default.refresh_token"
    assert f.read_text() == ts.refresh_token + "\n"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    # No temp file left; beside the token, which file token it replaced (none here).
    assert sorted(x.name for x in state.iterdir()) == ["default.refresh_token",
                                                       "default.refresh_token.origin"]
    assert (state / "default.refresh_token.origin").read_text() == "none\n"
    assert "https://microsoft.com/devicelogin" in out
    assert USER_CODE.search(out), out
    assert str(f) in out
    assert_no_secret(ts, out, err)
    assert err == ""
    # What went over the wire: the device request, then polls with the device code; the
    # secret only when configured (a public client sends none).
    (p0, g0, form0), polls = ts.requests[0], ts.requests[1:]
    assert p0 == "/devicecode" and form0["client_id"] == ts.client_id
    assert form0["scope"] == ts.scope
    assert len(polls) >= 3 and all(p == "/token" and g == GRANT_DEVICE for p, g, _ in polls)
    assert all(f["device_code"].startswith("DAQABAAEAAAD") for _, _, f in polls)
    for _, _, form in ts.requests:
        assert form.get("client_secret") == secret
    assert ts.too_fast == 0     # every poll waited the interval


def test_login_honours_slow_down_by_polling_five_seconds_slower(tmp_path, certs, tokensrv):
    ts = tokensrv()
    ts.slow_down_once = True
    ts.approve()            # signed in at once: the first poll gets slow_down, the next the token
    path, state = login_config(tmp_path, certs, ts)
    rc, out, err = run(path)
    assert rc == 0, (out, err)
    assert (state / "default.refresh_token").read_text() == ts.refresh_token + "\n"
    polls = [t for (p, _, _), t in zip(ts.requests, ts.times) if p == "/token"]
    assert len(polls) == 2, ts.requests
    # interval 1 s + 5 s: a client that ignored slow_down would come back after 1 s.
    assert polls[1] - polls[0] >= 5.9, polls
    assert ts.too_fast == 0


@pytest.mark.parametrize("error,says", [("access_denied", "declined"),
                                        ("expired_token", "expired")])
def test_login_stops_with_exit_1_on_a_refused_or_expired_sign_in(tmp_path, certs, tokensrv,
                                                                  error, says):
    ts = tokensrv()
    path, state = login_config(tmp_path, certs, ts)
    p = start(path)
    assert wait_for(lambda: ts.count(GRANT_DEVICE) >= 1)
    ts.refuse = error
    rc, out, err = finish(p)
    assert rc == 1
    line = assert_one_line(err)
    assert error in line and "AADSTS-test: refused" in line and says in line, line
    assert list(state.iterdir()) == []
    n = ts.count(GRANT_DEVICE)
    time.sleep(1.5)
    assert ts.count(GRANT_DEVICE) == n      # no poll after the refusal
    assert_no_secret(ts, out, err)


def test_login_gives_up_when_the_device_code_expires(tmp_path, certs, tokensrv):
    ts = tokensrv(device_expires=3)     # never approved
    path, state = login_config(tmp_path, certs, ts)
    t0 = time.monotonic()
    rc, out, err = run(path, timeout=30)
    assert rc == 1
    assert "expired" in assert_one_line(err)
    assert time.monotonic() - t0 < 15
    assert 1 <= ts.count(GRANT_DEVICE) <= 3, ts.requests
    assert list(state.iterdir()) == []


def test_login_without_refresh_token_in_the_answer_names_offline_access(tmp_path, certs,
                                                                        tokensrv):
    ts = tokensrv()
    ts.no_refresh = True
    ts.approve()
    path, state = login_config(tmp_path, certs, ts)
    rc, out, err = run(path)
    assert rc == 1
    assert "offline_access" in assert_one_line(err)
    assert list(state.iterdir()) == []
    assert_no_secret(ts, out, err)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_login_as_root_gives_the_token_file_to_the_state_dir_owner(tmp_path, certs,
                                                                   tokensrv):
    ts = tokensrv()
    ts.approve()
    path, state = login_config(tmp_path, certs, ts)
    os.chown(state, 65534, 65534)   # the service's (dynamic) user owns StateDirectory=
    rc, out, err = run(path)
    assert rc == 0, (out, err)
    st = (state / "default.refresh_token").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o600)


# ---- the endpoint fails -------------------------------------------------------------------

@pytest.mark.parametrize("fail,says", [
    ("malformed", "not JSON"),
    ("server_error", "HTTP 500"),
    ("invalid_client", "HTTP 401 invalid_client: AADSTS7000215"),
    ("down", "onnect"),
])
def test_device_request_failure_is_one_line_and_exit_1(tmp_path, certs, tokensrv, fail, says):
    ts = tokensrv()
    ts.fail = fail
    path, state = login_config(tmp_path, certs, ts)
    rc, out, err = run(path)
    assert rc == 1
    line = assert_one_line(err)
    assert says in line and ts.device_url in line, line
    assert out == "" and list(state.iterdir()) == []
    assert_no_secret(ts, out, err)


def test_token_endpoint_failing_mid_poll_stops_with_its_error(tmp_path, certs, tokensrv):
    ts = tokensrv()
    path, state = login_config(tmp_path, certs, ts)
    p = start(path)
    assert wait_for(lambda: ts.count(GRANT_DEVICE) >= 1)
    ts.fail = "invalid_grant"
    rc, out, err = finish(p)
    assert rc == 1
    line = assert_one_line(err)
    assert "invalid_grant" in line and ts.url in line, line
    assert USER_CODE.search(out)
    assert_no_secret(ts, out, err)


def test_hung_endpoint_is_bounded_by_the_proxy_timeout(tmp_path, certs, tokensrv):
    ts = tokensrv()
    ts.fail = "hang"
    path, _ = login_config(tmp_path, certs, ts, proxy={"timeout": "2"})
    t0 = time.monotonic()
    rc, out, err = run(path, timeout=30)
    took = time.monotonic() - t0
    ts.fail = None
    assert rc == 1 and "imeout" in assert_one_line(err), err
    assert took < 15, took


def test_endpoint_certificate_from_another_ca_is_refused_before_any_request(tmp_path, certs,
                                                                           tokensrv):
    ts = tokensrv()
    # A trust anchor that did not sign the endpoint's certificate.
    path, state = login_config(tmp_path, certs, ts,
                               upstream={"oauth2_ca_file": certs["selfsigned"][0]})
    rc, out, err = run(path)
    assert rc == 1
    line = assert_one_line(err)
    assert "certificate" in line.lower(), line
    assert ts.count() == 0 and ts.count(path="/token") == 0
    assert list(state.iterdir()) == []


# ---- what cannot be signed in ---------------------------------------------------------------

@pytest.mark.parametrize("upstream,says", [
    ({"auth_mechanism": None, "oauth2_flow": None, "oauth2_token_url": None,
      "oauth2_device_url": None, "oauth2_client_id": None, "oauth2_scope": None,
      "oauth2_ca_file": None, "password": "pw"}, "does not log in with OAuth2"),
    ({"oauth2_device_url": None}, "needs oauth2_device_url"),
    ({"oauth2_flow": "command", "oauth2_token_command": "/bin/true"},
     "oauth2_flow = command"),
], ids=["password-upstream", "no-device-url", "command-flow"])
def test_upstream_that_cannot_use_a_device_login_is_refused(tmp_path, certs, tokensrv,
                                                            upstream, says):
    ts = tokensrv()
    path, state = login_config(tmp_path, certs, ts, upstream=upstream)
    rc, out, err = run(path)
    assert rc == 1
    assert says in assert_one_line(err), err
    assert ts.count() == 0 and out == ""


def test_unknown_upstream_name_and_usage_errors(tmp_path, certs, tokensrv):
    ts = tokensrv()
    path, _ = login_config(tmp_path, certs, ts)
    rc, out, err = run(path, name="nosuch")
    assert rc == 1 and "no upstream nosuch" in assert_one_line(err)
    p = subprocess.run([PROXY_BIN, "oauth2-login", "-c", path], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2 and "usage: smtp-tls-proxy oauth2-login" in p.stderr
    assert ts.count() == 0


def test_state_dir_that_cannot_be_written_is_refused_before_the_sign_in(tmp_path, certs,
                                                                       tokensrv):
    ts = tokensrv()
    path, state = login_config(tmp_path, certs, ts,
                               proxy={"state_dir": str(tmp_path / "missing")})
    rc, out, err = run(path)
    assert rc == 1
    assert "state_dir" in assert_one_line(err)
    assert ts.count() == 0 and out == ""
