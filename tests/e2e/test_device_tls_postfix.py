"""End-to-end, issue 11's "done when": a printer that speaks only TLS 1.0, on implicit TLS
(465 in real life, an ephemeral port here), delivers through a legacy-profile listener to a
provider that accepts TLS 1.2 and newer only -- here a second private Postfix with
smtpd_tls_protocols / smtpd_tls_mandatory_protocols >= TLSv1.2 -- and both handshakes are
logged: the device's (tls.client-handshake version=TLSv1) and the upstream's (tls.handshake
TLSv1.2+).

The printer is swaks with TLS 1.0 only and the one suite every TLS 1.0 stack has,
TLS_RSA_WITH_AES_128_CBC_SHA (static RSA: no forward secrecy, as devices of that age do),
at OpenSSL security level 0: Debian 12's OpenSSL 3 client refuses TLS 1.0 otherwise.
"""
import os
import re

import pytest

import postfix as postfix_mod
from conftest import run_postfix
from test_postfix import check_tls_and_auth, delivered, new_marker, swaks, upstream_conf

PRINTER = ["--tls-on-connect", "--tls-protocol", "tlsv1",
           "--tls-cipher", "AES128-SHA:@SECLEVEL=0"]


class ModernPostfix(postfix_mod.Postfix):
    """The same private Postfix, refusing anything below TLS 1.2 on both ports."""

    def configure(self):
        super().configure()
        with open(os.path.join(self.etc, "main.cf"), "a") as f:
            f.write("smtpd_tls_protocols = >=TLSv1.2\n"
                    "smtpd_tls_mandatory_protocols = >=TLSv1.2\n")


@pytest.fixture(scope="module")
def modern_postfix(pki):
    yield from run_postfix(pki, ModernPostfix)


def test_the_provider_really_refuses_tls_1_0(modern_postfix):
    """Else the scenario below would prove nothing about the proxy. (Debian's Postfix refuses
    TLS 1.0 even without the setting, through OpenSSL's default security level; the setting
    makes it the provider's stated policy, as at the big providers.)"""
    marker = new_marker()
    r = swaks(modern_postfix.smtps_port, marker, *PRINTER)
    assert r.returncode != 0, r.stdout
    assert "TLS started" not in r.stdout, r.stdout
    assert modern_postfix.find_message(marker) is None


@pytest.mark.parametrize("upstream_tls", ["starttls", "implicit"])
def test_tls10_printer_delivers_to_a_tls12_provider(modern_postfix, pki, start_proxy,
                                                    upstream_tls):
    cf, kf = pki["device_rsa"]
    proxy = start_proxy(more={"listener printers": {
        "listen": "127.0.0.1:0", "tls": "implicit", "tls_profile": "legacy",
        "cert_file": cf, "key_file": kf}}, **upstream_conf(modern_postfix, pki, upstream_tls))
    port = [int(d["addr"].rsplit(":", 1)[1]) for d in proxy.events("proxy.listen")
            if d.get("listener") == "printers"][0]
    marker = new_marker()
    r = swaks(port, marker, *PRINTER)
    assert r.returncode == 0, r.stdout + r.stderr + proxy.stderr()
    assert "TLS started with cipher TLSv1:AES128-SHA" in r.stdout, r.stdout

    msg = delivered(modern_postfix, marker, r.stdout + proxy.stderr())
    assert "body " + marker in msg
    check_tls_and_auth(modern_postfix, msg)     # Postfix's Received: says TLSv1.2 or 1.3

    dev = proxy.events("tls.client-handshake", listener="printers")
    assert len(dev) == 1, proxy.stderr()
    assert dev[0]["version"] == "TLSv1" and dev[0]["cipher"] == "AES128-SHA", dev
    up = proxy.events("tls.handshake", sid=dev[0]["sid"])
    assert len(up) == 1, proxy.stderr()
    assert up[0]["version"] in ("TLSv1.2", "TLSv1.3") and up[0]["verify"] == "ok", up
    sent = proxy.events("message", sid=dev[0]["sid"])
    assert sent and sent[0]["result"] == "ok", proxy.stderr()
    # Postfix's own log of the proxy's connection.
    assert re.search(r"TLS connection established from \S+: TLSv1\.[23] with cipher",
                     modern_postfix.log()), modern_postfix.log_tail()
