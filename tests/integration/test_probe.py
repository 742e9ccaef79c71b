"""`smtp-tls-proxy probe`: one command that says why an upstream fails, and what to change.

Real parts: the built binary (its upstream.c preparation with a report attached), the test
upstream with its certificates and fault modes, and tests/lib/tokenserver.py for OAuth2.
Every probe must leave the upstream without a MAIL, RCPT or DATA: it never sends mail.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import PASSWORD, PROXY_BIN, USER, free_port
from proxylog import render_ini

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

MAIL_VERBS = {"MAIL", "RCPT", "DATA", "BDAT"}
SECTIONS = ("upstream default:", "address", "greeting", "before TLS", "TLS", "verify",
            "chain", "subject", "issuer", "SANs", "notAfter", "pin       sha256//",
            "after TLS", "AUTH", "QUIT", "times", "result")




@pytest.fixture
def probe(tmp_path, proxy_config):
    """probe(up, *args, **sections) -> CompletedProcess of `probe -c FILE args...`."""
    def run(up, *args, **over):
        s = proxy_config(up, **over)
        path = tmp_path / "probe.ini"
        path.write_text(render_ini(s))
        return subprocess.run([PROXY_BIN, "probe", "-c", str(path)] + list(args),
                              capture_output=True, text=True, timeout=60)
    return run


def login(**kw):
    d = {"username": USER, "password": PASSWORD}
    d.update(kw)
    return d


def no_mail(*ups):
    for up in ups:
        for c in up.connections:
            assert not MAIL_VERBS & set(c.verbs()), c.verbs()
        assert up.all_messages == []


def failure(p, stage, detail):
    """The text report failed first at ${stage} with ${detail} and gives a fix line."""
    assert p.returncode == 1, p.stdout + p.stderr
    res = [l for l in p.stdout.splitlines() if l.strip().startswith("result")]
    assert res and "FAILED at " + stage in res[0] and detail in res[0], p.stdout
    fix = [l for l in p.stdout.splitlines() if l.strip().startswith("fix")]
    assert fix and len(fix[0].split(None, 1)[1]) > 10, p.stdout
    return fix[0]


# ---- success ----------------------------------------------------------------------------

def test_good_upstream_reports_every_section_and_exits_0(upstream, probe):
    up = upstream("starttls")
    p = probe(up, upstream=login())
    assert p.returncode == 0, p.stdout + p.stderr
    for s in SECTIONS:
        assert s in p.stdout, (s, p.stdout)
    assert "OK: a session would succeed" in p.stdout
    assert "PLAIN as %s: ok (235" % USER in p.stdout
    assert "STARTTLS" in p.stdout.split("before TLS")[1].split("\n")[0]
    verbs = [c.verbs() for c in up.connections]
    assert verbs == [["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"]], verbs
    no_mail(up)


def test_pin_is_curls_sha256_of_the_spki(upstream, probe, certs):
    """The pin printed for the leaf is what `openssl ... | base64` (curl's --pinnedpubkey) gives."""
    up = upstream("starttls")
    p = probe(up, "--json", upstream=login())
    leaf = json.loads(p.stdout)["upstreams"][0]["chain"][0]
    pub = subprocess.run(["openssl", "x509", "-in", certs["good"][0], "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    import base64
    import hashlib
    assert leaf["pin"] == "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_json_has_the_fields_for_scripts(upstream, probe):
    up = upstream("implicit")
    p = probe(up, "--json", upstream=login())
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] is True
    r, = doc["upstreams"]
    assert r["upstream"] == "default" and r["tls"] == "implicit" and r["ok"] is True
    assert r["addresses"] == [{"addr": "127.0.0.1:%d" % up.port, "error": None}]
    assert r["greeting"].startswith("220 ")
    assert r["capabilities_before_tls"] is None          # implicit: nothing before TLS
    assert "AUTH PLAIN LOGIN" in r["capabilities_after_tls"]
    assert r["tls_session"]["version"].startswith("TLSv1.")
    assert r["tls_session"]["verify"] == "ok" and r["tls_session"]["chain_verified"]
    leaf = r["chain"][0]
    assert "mail.test" in leaf["subject"] and "DNS:mail.test" in leaf["sans"]
    assert leaf["days_left"] > 0 and leaf["pin"].startswith("sha256//")
    assert r["auth"]["ok"] is True and r["auth"]["mechanism"] == "PLAIN"
    assert r["quit"].startswith("221")
    assert [s["step"] for s in r["steps"]] == ["resolve", "connect", "tls", "greeting",
                                               "ehlo-tls", "auth", "quit"]
    assert all(s["ms"] >= 0 for s in r["steps"]) and r["total_ms"] > 0
    assert r["failure"] is None
    no_mail(up)


def test_no_login_configured_is_reported_and_succeeds(upstream, probe):
    up = upstream("starttls")
    p = probe(up)
    assert p.returncode == 0, p.stdout
    assert "none configured" in p.stdout
    assert [c.verbs() for c in up.connections] == [["EHLO", "STARTTLS", "EHLO", "QUIT"]]


# ---- each failure: non-zero, the first failure, a fix -------------------------------------

def test_unreachable_reports_each_address_and_why(probe):
    port = free_port()
    p = probe(None, upstream={"port": str(port)})
    fix = failure(p, "connect (connect)", "127.0.0.1:%d refused" % port)
    assert "127.0.0.1:%d refused" % port in p.stdout.split("address")[1].split("\n")[0]
    assert "host and port" in fix


def test_no_starttls(upstream, probe):
    up = upstream("starttls", starttls=False)
    p = probe(up, upstream=login())
    fix = failure(p, "ehlo (no-starttls)", "STARTTLS not in the EHLO reply")
    assert "before TLS" in p.stdout and "587" in fix
    assert "STARTTLS" not in up.connections[0].verbs()
    no_mail(up)


@pytest.mark.parametrize("cert,detail,words", [
    ("untrusted", "unable to get local issuer certificate", "ca_file"),
    ("selfsigned", "self-signed certificate", "self-signed"),
    ("wrongname", "hostname mismatch", "server_name"),
    ("expired", "certificate has expired", "renew"),
])
def test_bad_certificate_gives_openssl_reason_and_fix(upstream, probe, cert, detail, words):
    up = upstream("starttls", cert=cert)
    p = probe(up, upstream=login())
    fix = failure(p, "tls (verify)", detail)
    assert words in fix
    assert "verify      FAILED: " + detail in p.stdout
    assert "as sent by the server" in p.stdout and "pin       sha256//" in p.stdout
    if cert == "expired":
        assert "EXPIRED" in p.stdout
    assert [c.verbs(True) for c in up.connections] == [[]]     # nothing over that TLS
    no_mail(up)


def test_wrong_password(upstream, probe):
    up = upstream("starttls", auth_fail=True)
    p = probe(up, upstream=login())
    fix = failure(p, "auth-plain (auth)", "credentials refused")
    assert "password" in fix
    assert "PLAIN as %s: refused (535" % USER in p.stdout
    no_mail(up)


def test_implicit_port_probed_as_starttls_gives_upstreams_hint(upstream, probe):
    up = upstream("implicit")
    p = probe(up, upstream={"tls": "starttls"}, proxy={"timeout": "3"})
    fix = failure(p, "greeting", "")
    assert "set tls = implicit" in fix


# ---- OAuth2 ---------------------------------------------------------------------------------

def oauth(ts, certs):
    return {"username": USER, "password": None, "auth_mechanism": "xoauth2",
            "oauth2_flow": "client_credentials", "oauth2_token_url": ts.url,
            "oauth2_client_id": ts.client_id, "oauth2_client_secret": ts.client_secret,
            "oauth2_scope": ts.scope, "oauth2_ca_file": certs["ca"][0]}


def test_oauth2_token_login_succeeds(upstream, probe, tokens, certs, tmp_path):
    ts = tokens(lifetime=60)
    up = upstream("starttls", token_check=ts.valid)
    p = probe(up, "--json", upstream=oauth(ts, certs), proxy={"state_dir": str(tmp_path)})
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)["upstreams"][0]
    assert r["auth"]["kind"] == "oauth2" and r["auth"]["mechanism"] == "XOAUTH2"
    assert r["auth"]["ok"] is True
    assert [a[3] for c in up.connections for a in c.auth] == [True]
    for tok, _ in ts.issued:                 # the token is a secret: never printed
        assert tok not in p.stdout and tok not in p.stderr
    no_mail(up)


def test_token_endpoint_down(upstream, probe, tokens, certs, tmp_path):
    ts = tokens()
    ts.fail = "down"
    up = upstream("starttls", token_check=ts.valid)
    p = probe(up, upstream=oauth(ts, certs), proxy={"state_dir": str(tmp_path)})
    fix = failure(p, "token (oauth2)", "")
    assert "oauth2_token_url" in fix
    assert [a for c in up.connections for a in c.auth] == []    # no AUTH without a token
    no_mail(up)


def test_refused_token_asks_the_probe_itself_for_a_fresh_one(upstream, probe, tokens, certs,
                                                           tmp_path):
    """The server refuses every token: upstream.c asks for a fresh one with SIGUSR2, which
    must reach the probe's own fetcher (not kill the shell that ran it), then fails AUTH."""
    ts = tokens(lifetime=60)
    up = upstream("starttls", token_check=lambda tok: False)
    p = probe(up, upstream=oauth(ts, certs), proxy={"state_dir": str(tmp_path)})
    failure(p, "auth-xoauth2 (auth)", "credentials refused")
    assert len(ts.issued) == 2, ts.issued          # a fresh token for the second try
    assert len([a for c in up.connections for a in c.auth]) == 2


# ---- every upstream ---------------------------------------------------------------------------

def test_no_upstream_named_probes_all_one_at_a_time(upstream, probe, certs):
    good, bad = upstream("starttls"), upstream("starttls", cert="selfsigned")
    named = {"host": "127.0.0.1", "tls": "starttls", "server_name": "mail.test",
             "ca_file": certs["ca"][0]}
    p = probe(good, **{"upstream": login(),
                       "upstream good2": dict(named, port=str(good.port)),
                       "upstream bad": dict(named, port=str(bad.port))})
    assert p.returncode == 1, p.stdout
    heads = [l for l in p.stdout.splitlines() if l.startswith("upstream ")]
    assert [h.split(":")[0] for h in heads] == ["upstream default", "upstream good2",
                                                "upstream bad"], heads
    results = [l.split(None, 1)[1] for l in p.stdout.splitlines()
               if l.strip().startswith("result")]
    assert results[0].startswith("OK") and results[1].startswith("OK")
    assert "self-signed certificate" in results[2]
    # No failover: the bad upstream was probed alone, the good one twice (default, good2).
    assert len(good.connections) == 2 and len(bad.connections) == 1
    no_mail(good, bad)

    p = probe(good, "--json", "bad", **{"upstream": login(),
                                        "upstream bad": dict(named, port=str(bad.port))})
    doc = json.loads(p.stdout)
    assert p.returncode == 1 and doc["ok"] is False
    assert [r["upstream"] for r in doc["upstreams"]] == ["bad"]
    assert doc["upstreams"][0]["failure"]["reason"] == "verify"
    assert "ca_file" in doc["upstreams"][0]["failure"]["hint"] or \
        "self-signed" in doc["upstreams"][0]["failure"]["hint"]


def test_unknown_upstream_and_usage(probe, upstream):
    up = upstream("starttls")
    p = probe(up, "nosuch")
    assert p.returncode == 1 and "no upstream nosuch" in p.stderr
    p = probe(up, "a", "b")
    assert p.returncode == 2 and "usage" in p.stderr
