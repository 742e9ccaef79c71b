"""End-to-end: legacy client (swaks, plaintext) -> smtp-tls-proxy -> real Postfix.

The first tests talk to Postfix directly and prove the harness: a message
arrives only over verified TLS with SASL AUTH.  Everything after that goes
through the proxy, so a delivered message means the proxy did TLS and AUTH.
"""
import email
import re
import subprocess
import time
import uuid

import pytest

from postfix import PostfixError

SENDER = "device@legacy.test"


def new_marker():
    return "e2e-" + uuid.uuid4().hex


def swaks(port, marker, *extra, timeout=60):
    """One swaks session to 127.0.0.1:port carrying marker in Subject and body."""
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port), "--timeout", "15",
           "--helo", "legacy.test", "--from", SENDER, "--to", "inbox@example.test",
           "--header", "Subject: " + marker, "--body", "body " + marker, *extra]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def delivered(postfix, marker, context):
    try:
        return postfix.wait_for_message(marker, timeout=20)
    except PostfixError as e:
        pytest.fail("%s\n--- client/proxy side ---\n%s" % (e, context), pytrace=False)


def check_tls_and_auth(postfix, msg, mechanism="(?:PLAIN|LOGIN)"):
    """Postfix's own (topmost) Received: header records TLS and SASL; its log
    records who authenticated, with which mechanism."""
    received = email.message_from_string(msg).get_all("Received")[0]
    assert re.search(r"using TLSv1\.[23] with cipher", received), received
    assert "with ESMTPSA" in received, received
    queue_id = re.search(r"with ESMTPSA id (\w+)", received).group(1)
    assert re.search(r"%s: client=\S+, sasl_method=%s, sasl_username=%s@mail\.test"
                     % (queue_id, mechanism, postfix.user), postfix.log()), postfix.log_tail()


def upstream_conf(postfix, pki, tls, with_credentials=True, password=None):
    port = postfix.submission_port if tls == "starttls" else postfix.smtps_port
    return dict(host="127.0.0.1", port=port, tls=tls, server_name="mail.test",
                ca_file=pki["ca"][0],
                username=postfix.user if with_credentials else None,
                password=(password or postfix.password) if with_credentials else None)


# ---- the harness itself, swaks straight to Postfix ---------------------------

def test_postfix_starttls_submission_delivers(postfix, pki):
    marker = new_marker()
    r = swaks(postfix.submission_port, marker, "--tls", "--tls-verify",
              "--tls-ca-path", pki["ca"][0], "--auth", "PLAIN",
              "--auth-user", postfix.user, "--auth-password", postfix.password)
    assert r.returncode == 0, r.stdout + r.stderr
    check_tls_and_auth(postfix, delivered(postfix, marker, r.stdout), "PLAIN")


def test_postfix_implicit_tls_delivers(postfix, pki):
    marker = new_marker()
    r = swaks(postfix.smtps_port, marker, "--tls-on-connect", "--tls-verify",
              "--tls-ca-path", pki["ca"][0], "--auth", "LOGIN",
              "--auth-user", postfix.user, "--auth-password", postfix.password)
    assert r.returncode == 0, r.stdout + r.stderr
    check_tls_and_auth(postfix, delivered(postfix, marker, r.stdout), "LOGIN")


def test_postfix_refuses_plaintext_unauthenticated_and_bad_password(postfix):
    # Otherwise a proxy that skipped TLS or AUTH could still get mail through.
    marker = new_marker()
    plain = swaks(postfix.submission_port, marker)
    assert plain.returncode != 0 and "530 5.7.0 Must issue a STARTTLS" in plain.stdout, \
        plain.stdout
    anon = swaks(postfix.submission_port, marker, "--tls")
    assert anon.returncode != 0 and "554 5.7.1" in anon.stdout, anon.stdout
    failures = postfix.log().count("authentication failed")
    bad = swaks(postfix.submission_port, marker, "--tls", "--auth", "PLAIN",
                "--auth-user", postfix.user, "--auth-password", "wrong")
    assert bad.returncode != 0 and "535 5.7.8" in bad.stdout, bad.stdout
    assert wait_until(lambda: postfix.log().count("authentication failed") > failures)
    assert postfix.find_message(marker) is None


# ---- through the proxy: swaks speaks plaintext to it -------------------------

@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_proxy_with_its_own_credentials(postfix, pki, start_proxy, tls):
    proxy = start_proxy(**upstream_conf(postfix, pki, tls))
    marker = new_marker()
    r = swaks(proxy.port, marker)  # no --tls, no --auth: a legacy device
    assert r.returncode == 0, r.stdout + r.stderr + proxy.stderr()
    msg = delivered(postfix, marker, r.stdout + proxy.stderr())
    assert "body " + marker in msg
    check_tls_and_auth(postfix, msg)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_proxy_passes_client_auth_through(postfix, pki, start_proxy, mechanism):
    proxy = start_proxy(**upstream_conf(postfix, pki, "starttls", with_credentials=False))
    marker = new_marker()
    r = swaks(proxy.port, marker, "--auth", mechanism,
              "--auth-user", postfix.user, "--auth-password", postfix.password)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.stderr()
    check_tls_and_auth(postfix, delivered(postfix, marker, r.stdout + proxy.stderr()),
                       mechanism)


def test_proxy_wrong_password_gives_421_and_delivers_nothing(postfix, pki, start_proxy):
    failures = postfix.log().count("authentication failed")
    proxy = start_proxy(**upstream_conf(postfix, pki, "starttls", password="wrong-pass"))
    marker = new_marker()
    r = swaks(proxy.port, marker)
    assert r.returncode != 0, r.stdout + proxy.stderr()
    # The greeting itself is the 421: the proxy authenticates before it.
    first_reply = re.search(r"^<\S*\s+(\d{3})", r.stdout, re.M)
    assert first_reply and first_reply.group(1) == "421", r.stdout + proxy.stderr()
    # Postfix saw (and rejected) the proxy's AUTH; the session is over by then.
    assert wait_until(lambda: postfix.log().count("authentication failed") > failures), \
        postfix.log_tail()
    assert postfix.find_message(marker) is None


def test_proxy_refuses_postfix_under_a_name_its_cert_lacks(postfix, pki, start_proxy):
    # Verification is real: the same Postfix, expected as other.test, is refused.
    conf = upstream_conf(postfix, pki, "starttls")
    proxy = start_proxy(**dict(conf, server_name="other.test"))
    marker = new_marker()
    r = swaks(proxy.port, marker)
    first_reply = re.search(r"^<\S*\s+(\d{3})", r.stdout, re.M)
    assert first_reply and first_reply.group(1) == "421", r.stdout + proxy.stderr()
    assert postfix.find_message(marker) is None


def wait_until(cond, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False
