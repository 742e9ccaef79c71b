"""Upstream public key pins (pin = sha256//BASE64, ...) and client certificates
(client_cert_file / client_key_file).

Pins are computed by tests/lib/testca.py with the cryptography package, never by the
proxy. With verify = yes a pin may name any certificate of the verified chain, up to the
trust anchor in ca_file; with verify = no only the chain the server sent counts.
"""
import base64
import hashlib
import json
import os
import signal
import subprocess

import pytest

from conftest import PROXY_BIN, check_config
from proxylog import render_ini
from test_fail_closed import expect_421_greeting
from testca import spki_pin

# A pin of no certificate anywhere in the test PKI.
NOBODY = "sha256//" + base64.b64encode(hashlib.sha256(b"nobody").digest()).decode()


def deliver(px, n=1):
    """n sessions, each with one message; every one accepted."""
    for i in range(n):
        with px.client() as c:
            r = c.read_reply()
            assert r.code == 220, r
            r = c.send_mail("a@example.test", ["b@example.test"], b"pin %d\r\n.\r\n" % i)
            assert r.code == 250, r
            c.expect("QUIT", 221)


def pins(certs, name, *idx):
    return [spki_pin(certs[name][0], i) for i in idx]


# ---- pins that match --------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_pin_of_the_leaf_delivers_and_is_logged(upstream, proxy, certs, mode):
    up = upstream(mode, cert="chain")
    leaf, = pins(certs, "chain", 0)
    px = proxy(up, upstream={"pin": leaf})
    deliver(px)
    assert up.wait_messages(1)
    hs, = px.wait_event("tls.handshake")
    assert hs["pin"] == leaf and hs["verify"] == "ok", hs


def test_pin_of_the_intermediate_delivers(upstream, proxy, certs):
    up = upstream("starttls", cert="chain")
    inter, = pins(certs, "chain", 1)
    # A backup pin first that nothing matches: any pin of the list will do.
    px = proxy(up, upstream={"pin": NOBODY + ", " + inter})
    deliver(px)
    assert up.wait_messages(1)
    assert px.wait_event("tls.handshake")[0]["pin"] == inter


def test_pin_of_the_trust_anchor_counts_with_verify(upstream, proxy, certs):
    """The root is not sent by the server; it is in the verified chain (from ca_file)."""
    up = upstream("starttls", cert="chain")
    root = spki_pin(certs["ca"][0])
    px = proxy(up, upstream={"pin": root})
    deliver(px)
    assert px.wait_event("tls.handshake")[0]["pin"] == root


def test_no_pin_field_without_pins(upstream, proxy):
    up = upstream("starttls")
    px = proxy(up)
    deliver(px)
    hs, = px.wait_event("tls.handshake")
    assert "pin" not in hs, hs


# ---- pins that do not match ------------------------------------------------------------

@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_pin_mismatch_gives_421_and_names_expected_and_seen_pins(upstream, proxy, certs, mode):
    up = upstream(mode, cert="chain")
    px = proxy(up, upstream={"pin": NOBODY})
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    assert up.wait_closed()
    for conn in up.connections:
        assert conn.verbs(True) == [], "commands sent over a session that failed its pin"
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "pin" and fail["stage"] == "tls", fail
    # One line says it all: what was expected, and every pin of the verified chain.
    chain = pins(certs, "chain", 0, 1) + [spki_pin(certs["ca"][0])]
    assert "expected " + NOBODY in fail["detail"], fail
    assert "the chain has " + ", ".join(chain) in fail["detail"], fail
    assert fail["subject"].endswith("CN=mail.test") or "mail.test" in fail["subject"], fail
    assert px.events("tls.handshake") == []


def test_pins_do_not_override_verification(upstream, proxy, certs):
    """A matching pin on a certificate that fails verification: still refused, as verify."""
    up = upstream("starttls", cert="untrusted")
    px = proxy(up, upstream={"pin": spki_pin(certs["untrusted"][0])})
    expect_421_greeting(px)
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "verify", fail


# ---- verify = no: the pins alone decide, on the chain the server sent -----------------------

def test_verify_no_with_matching_pin_delivers(upstream, proxy, certs):
    up = upstream("starttls", cert="selfsigned")
    pin = spki_pin(certs["selfsigned"][0])
    px = proxy(up, upstream={"verify": "no", "pin": pin})
    deliver(px)
    assert up.wait_messages(1)
    hs, = px.wait_event("tls.handshake")
    assert hs["pin"] == pin and hs["verify"] != "ok", hs


def test_verify_no_with_wrong_pin_gives_421(upstream, proxy, certs):
    up = upstream("starttls", cert="selfsigned")
    px = proxy(up, upstream={"verify": "no", "pin": NOBODY})
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    for conn in up.connections:
        assert conn.verbs(True) == []
    fail, = px.wait_event("upstream.fail")
    assert fail["reason"] == "pin", fail
    assert "sent chain" in fail["detail"] and spki_pin(certs["selfsigned"][0]) in \
        fail["detail"], fail


def test_verify_no_counts_only_the_sent_chain(upstream, proxy, certs):
    """The root is not sent: without verification nothing proves the chain leads to it."""
    up = upstream("starttls", cert="chain")
    px = proxy(up, upstream={"verify": "no", "pin": spki_pin(certs["ca"][0])})
    expect_421_greeting(px)
    assert px.wait_event("upstream.fail")[0]["reason"] == "pin"


# ---- resumption and reloads -----------------------------------------------------------------

def reload(px, n):
    px.proc.send_signal(signal.SIGHUP)
    assert px.wait_event("config.reload", n), px.stderr()
    assert px.wait_event("worker.start", 1, generation=str(n + 1)), px.stderr()


def test_resumed_session_logs_the_pin_of_its_full_handshake(upstream, proxy, certs):
    up = upstream("starttls", cert="chain")
    inter, = pins(certs, "chain", 1)
    px = proxy(up, proxy={"workers": "1"}, upstream={"pin": inter})
    deliver(px, 3)
    hss = px.wait_event("tls.handshake", 3)
    assert [h["resumed"] for h in hss][:1] == ["no"], hss
    assert any(h["resumed"] == "yes" for h in hss[1:]), "no resumption to test: %r" % hss
    assert all(h["pin"] == inter for h in hss), hss


def test_session_cached_under_old_pins_is_not_resumed_under_new_ones(upstream, proxy, certs):
    """A reload to a pin the server does not match fails, though a session to resume
    (made under the old pin) is there: resumption must not skip the new pin check."""
    up = upstream("starttls", cert="chain")
    inter, = pins(certs, "chain", 1)
    px = proxy(up, proxy={"workers": "1"}, upstream={"pin": inter})
    deliver(px, 2)
    assert any(h["resumed"] == "yes" for h in px.wait_event("tls.handshake", 2))
    conf = open(px.conf).read().replace("pin = " + inter, "pin = " + NOBODY)
    assert NOBODY in conf
    px.write_config(conf)
    reload(px, 1)
    r = expect_421_greeting(px)
    assert r.lines[0].startswith("4.7.0"), r
    assert px.wait_event("upstream.fail")[0]["reason"] == "pin"


# ---- -t: malformed pins -----------------------------------------------------------------------

BAD_PINS = [
    ("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "not sha256//BASE64"),
    ("sha1//2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "not sha256//BASE64"),
    ("sha256//2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "20 bytes, a SHA-256 is 32"),
    ("sha256//not*base64*at*all*not*base64*at*all*=", "not base64"),
    ("sha256//47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=", "not base64"),
    (NOBODY + ",", "expected sha256//BASE64 pins separated by commas"),
    (NOBODY + ", " + NOBODY, "listed twice"),
]


@pytest.mark.parametrize("section", ["upstream", "upstream backup"])
@pytest.mark.parametrize("value,why", BAD_PINS, ids=[w.split()[0] + str(i) for i, (_, w) in
                                                      enumerate(BAD_PINS)])
def test_check_refuses_malformed_pin_with_file_and_line(tmp_path, proxy_config, section, value,
                                                        why):
    s = proxy_config(None)
    if section != "upstream":
        s[section] = {"host": "127.0.0.1", "ca_file": s["upstream"]["ca_file"]}
    s[section]["pin"] = value
    text = render_ini(s)
    path, p = check_config(str(tmp_path), text)
    assert p.returncode == 1, p.stdout + p.stderr
    line = [i + 1 for i, l in enumerate(text.splitlines())
            if l.startswith("pin") and value in l]
    assert line, text
    assert "%s:%d: pin = " % (path, line[-1]) in p.stderr, p.stderr
    assert why in p.stderr, p.stderr


def test_check_accepts_good_pins(tmp_path, proxy_config, certs):
    s = proxy_config(None)
    s["upstream"]["pin"] = ", ".join(pins(certs, "chain", 0, 1))
    path, p = check_config(str(tmp_path), render_ini(s))
    assert p.returncode == 0 and "configuration OK" in p.stdout, p.stdout + p.stderr


# ---- client certificates ----------------------------------------------------------------------

@pytest.mark.parametrize("max_tls", ["1.2", "1.3"])
def test_upstream_requiring_a_client_certificate_fails_clearly_without_one(upstream, proxy,
                                                                          certs, max_tls):
    up = upstream("starttls", client_ca=certs["ca"][0], max_tls=max_tls)
    px = proxy(up)
    r = expect_421_greeting(px)
    assert r.code == 421
    fail, = px.wait_event("upstream.fail")
    assert "client_cert_file" in fail.get("hint", ""), fail
    assert up.messages == []
    for conn in up.connections:
        assert not {"MAIL", "RCPT", "DATA"} & set(conn.verbs(True))


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_client_certificate_is_presented_and_mail_goes_through(upstream, proxy, certs, mode):
    up = upstream(mode, client_ca=certs["ca"][0])
    cf, kf = certs["client"]
    px = proxy(up, upstream={"client_cert_file": cf, "client_key_file": kf})
    deliver(px)
    assert up.wait_messages(1)
    assert up.connections[0].client_cert["commonName"] == "device-relay.test"


def test_reload_rereads_the_client_certificate(upstream, proxy, certs, tmp_path):
    """Renewal: the files are replaced in place, SIGHUP, and the next session presents the
    new certificate (here: one the server trusts instead of one it refuses)."""
    up = upstream("starttls", client_ca=certs["ca"][0])
    cf, kf = str(tmp_path / "client.pem"), str(tmp_path / "client.key")

    def install(name):
        for src, dst in zip(certs[name], (cf, kf)):
            with open(src, "rb") as f:
                data = f.read()
            with open(dst + ".tmp", "wb") as f:
                f.write(data)
            os.chmod(dst + ".tmp", 0o600)
            os.replace(dst + ".tmp", dst)

    install("client_untrusted")
    px = proxy(up, proxy={"workers": "1"},
               upstream={"client_cert_file": cf, "client_key_file": kf})
    expect_421_greeting(px)
    install("client")
    reload(px, 1)
    deliver(px)
    assert up.wait_messages(1)
    assert up.connections[-1].client_cert["commonName"] == "device-relay.test"


def client_check(tmp_path, proxy_config, certs, **keys):
    s = proxy_config(None)
    s["upstream backup"] = {"host": "127.0.0.1", "ca_file": certs["ca"][0]}
    s["upstream backup"].update(keys)
    text = render_ini(s)
    path, p = check_config(str(tmp_path), text)
    lines = {l.split("=")[0].strip(): i + 1 for i, l in enumerate(text.splitlines())
             if "=" in l}
    return path, p, lines


def test_check_wants_client_cert_and_key_together(tmp_path, proxy_config, certs):
    path, p, lines = client_check(tmp_path, proxy_config, certs,
                                  client_cert_file=certs["client"][0])
    assert p.returncode == 1
    assert "%s:%d: set client_cert_file and client_key_file together" % (
        path, lines["client_cert_file"]) in p.stderr, p.stderr
    path, p, lines = client_check(tmp_path, proxy_config, certs,
                                  client_key_file=certs["client"][1])
    assert p.returncode == 1
    assert "%s:%d: set client_cert_file and client_key_file together" % (
        path, lines["client_key_file"]) in p.stderr, p.stderr


def test_check_names_an_unreadable_client_file(tmp_path, proxy_config, certs):
    missing = str(tmp_path / "nope.pem")
    path, p, lines = client_check(tmp_path, proxy_config, certs, client_cert_file=missing,
                                  client_key_file=certs["client"][1])
    assert p.returncode == 1
    assert "%s:%d: client_cert_file %s: No such file" % (
        path, lines["client_cert_file"], missing) in p.stderr, p.stderr
    path, p, lines = client_check(tmp_path, proxy_config, certs,
                                  client_cert_file=certs["client"][0], client_key_file=missing)
    assert "%s:%d: client_key_file %s: No such file" % (
        path, lines["client_key_file"], missing) in p.stderr, p.stderr


def test_check_refuses_a_key_that_does_not_match(tmp_path, proxy_config, certs):
    path, p, lines = client_check(tmp_path, proxy_config, certs,
                                  client_cert_file=certs["client"][0],
                                  client_key_file=certs["good"][1])
    assert p.returncode == 1
    assert "%s:%d: client_key_file %s:" % (path, lines["client_key_file"],
                                           certs["good"][1]) in p.stderr, p.stderr


def test_check_refuses_an_encrypted_key_without_asking(tmp_path, proxy_config, certs):
    from cryptography.hazmat.primitives import serialization
    with open(certs["client"][1], "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    enc = tmp_path / "enc.key"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw")))
    os.chmod(enc, 0o600)
    path, p, lines = client_check(tmp_path, proxy_config, certs,
                                  client_cert_file=certs["client"][0],
                                  client_key_file=str(enc))
    assert p.returncode == 1
    assert "%s:%d: client_key_file" % (path, lines["client_key_file"]) in p.stderr, p.stderr


def test_check_refuses_a_client_cert_file_that_is_no_certificate(tmp_path, proxy_config, certs):
    path, p, lines = client_check(tmp_path, proxy_config, certs,
                                  client_cert_file=certs["client"][1],
                                  client_key_file=certs["client"][1])
    assert p.returncode == 1
    assert "%s:%d: client_cert_file" % (path, lines["client_cert_file"]) in p.stderr, p.stderr


def test_check_warns_of_a_world_readable_client_key(tmp_path, proxy_config, certs):
    key = tmp_path / "open.key"
    key.write_bytes(open(certs["client"][1], "rb").read())
    os.chmod(key, 0o644)
    path, p, lines = client_check(tmp_path, proxy_config, certs,
                                  client_cert_file=certs["client"][0],
                                  client_key_file=str(key))
    assert p.returncode == 0, p.stderr
    assert "%s:%d: warning: client_key_file" % (path, lines["client_key_file"]) in p.stderr, \
        p.stderr


# ---- the probe ----------------------------------------------------------------------------------

def run_probe(tmp_path, proxy_config, up, *args, **over):
    path = tmp_path / "probe.ini"
    path.write_text(render_ini(proxy_config(up, **over)))
    return subprocess.run([PROXY_BIN, "probe", "-c", str(path)] + list(args),
                          capture_output=True, text=True, timeout=60)


def test_probe_reports_a_pin_mismatch_as_its_own_finding(tmp_path, proxy_config, upstream,
                                                         certs):
    up = upstream("starttls", cert="chain")
    p = run_probe(tmp_path, proxy_config, up, upstream={"pin": NOBODY})
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout
    assert "MISMATCH: no certificate of the chain above matches pin = " + NOBODY in out, out
    res = [l for l in out.splitlines() if l.strip().startswith("result")]
    assert res and "FAILED at tls (pin)" in res[0], out
    # The chain's own pins are there to copy into the config.
    for pin in pins(certs, "chain", 0, 1):
        assert "pin       " + pin in out, out
    assert "verify      ok" in out, out
    j = json.loads(run_probe(tmp_path, proxy_config, up, "--json",
                             upstream={"pin": NOBODY}).stdout)
    u, = j["upstreams"]
    assert u["pin"] == {"expected": [NOBODY], "matched": None, "mismatch": True}, u["pin"]
    assert u["failure"]["reason"] == "pin", u["failure"]
    assert up.all_messages == []


def test_probe_shows_the_pin_that_matched(tmp_path, proxy_config, upstream, certs):
    up = upstream("starttls", cert="chain")
    inter, = pins(certs, "chain", 1)
    p = run_probe(tmp_path, proxy_config, up, upstream={"pin": NOBODY + ", " + inter})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok: %s matches" % inter in p.stdout, p.stdout
