"""TLS toward devices ([listener NAME], issue 11), with the clients devices and admins use:
swaks -tls / -tlsc, Python's smtplib starttls() and SMTP_SSL, openssl s_client -starttls smtp,
raw sockets where the bytes matter.

Debian 12's OpenSSL 3 clients refuse TLS 1.0/1.1 at their default security level ("legacy
sigalg disallowed"): every old-version client here says DEFAULT:@SECLEVEL=0, so it really
offers the old version and a refusal is the proxy's doing.
"""
import hashlib
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import warnings

import pytest

from conftest import check_config, swaks

LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"
S_CLIENT_VERSIONS = {"tls1": "TLSv1", "tls1_1": "TLSv1.1", "tls1_2": "TLSv1.2",
                     "tls1_3": "TLSv1.3"}
SSL_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
# What each profile accepts (the spec: modern 1.3, intermediate 1.2+, legacy 1.0+).
ACCEPTS = {"modern": {"TLSv1.3"}, "intermediate": {"TLSv1.2", "TLSv1.3"},
           "legacy": {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}}
HANDSHAKE_KEYS = ("sid", "client", "listener", "version", "cipher", "group", "sni", "ms",
                  "resumed")


def listener(certs, tls, profile=None, cert="device", **keys):
    d = {"listen": "127.0.0.1:0", "tls": tls, "tls_profile": profile,
         "cert_file": certs[cert][0], "key_file": certs[cert][1]}
    d.update(keys)
    return d


def start(make, up, **listeners):
    """A proxy in front of up with [listener NAME] sections (name -> keys); extra sections
    ("proxy", "limits", ...) pass through."""
    return make(up, **{("listener " + k if k not in ("proxy", "limits", "log", "upstream")
                         else k): v for k, v in listeners.items()})


def port_of(px, name):
    """The port the proxy.listen line of [listener name] reports."""
    for d in px.events("proxy.listen"):
        if d.get("listener") == name:
            return int(d["addr"].rsplit(":", 1)[1])
    raise KeyError("no proxy.listen line for listener %s:\n%s" % (name, px.stderr()))


def client_ctx(certs, version=None, legacy=False):
    """A verifying client context (the test CA), optionally pinned to one version."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs["ca"][0])
    if legacy:
        ctx.set_ciphers(LEGACY_CIPHERS)
    if version:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = SSL_VERSIONS[version]
    return ctx


def s_client(port, version, starttls, timeout=20):
    """openssl s_client -VERSION -cipher DEFAULT:@SECLEVEL=0 [-starttls smtp]; EHLO + QUIT
    over TLS. Returns (negotiated protocol or None, output)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-" + version,
           "-cipher", LEGACY_CIPHERS, "-servername", "mail.test", "-ign_eof"]
    if starttls:
        cmd += ["-starttls", "smtp"]
    p = subprocess.run(cmd, input=b"EHLO s-client.test\r\nQUIT\r\n", capture_output=True,
                       timeout=timeout)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    ok = "221 " in out and "Cipher is (NONE)" not in out
    for line in out.splitlines():
        if ok and line.strip().startswith("Protocol  :"):
            return line.split(":", 1)[1].strip(), out
    return None, out


class TLSClient:
    """A raw SMTP client that can go TLS (STARTTLS or implicit) with a chosen context and
    session; every reply read in one piece, bytes as they came."""

    def __init__(self, port, ctx=None, implicit=False, session=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if implicit:
            self.tls(ctx, session)
        self.greeting = self.reply()

    def tls(self, ctx, session=None):
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mail.test", session=session)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        while True:
            lines = self.buf.split(b"\r\n")
            for i, l in enumerate(lines[:-1]):
                if len(l) >= 4 and l[3:4] == b" ":
                    raw = b"\r\n".join(lines[:i + 1]) + b"\r\n"
                    self.buf = self.buf[len(raw):]
                    return raw.decode("utf-8", "replace")
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("closed; unparsed %r" % self.buf)
            self.buf += data

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def code(self, line):
        return int(self.cmd(line)[:3])

    def close(self):
        self.sock.close()


def fingerprint(sock):
    return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()


def cert_fingerprint(pem_file):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(pem_file).read().split(
        "-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")).hexdigest()


def handshakes(px, listener_name, **match):
    return px.events("tls.client-handshake", listener=listener_name, **match)


# ---- the everyday clients ------------------------------------------------------------------

def test_swaks_starttls_and_tls_on_connect_deliver(certs, upstream, proxy):
    up = upstream()
    px = start(proxy, up, st=listener(certs, "starttls"), imp=listener(certs, "implicit"))
    for name, flag in (("st", "-tls"), ("imp", "-tlsc")):
        r = swaks(port_of(px, name), flag, "--tls-verify", "--tls-ca-path", certs["ca"][0],
                  "--tls-sni", "mail.test", "--header", "Subject: via " + name)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "TLS started with cipher TLSv1.3" in r.stdout, r.stdout
        hs = px.wait_event("tls.client-handshake", listener=name)
        assert len(hs) == 1, px.stderr()
        assert hs[0]["version"] == "TLSv1.3" and hs[0]["sni"] == "mail.test", hs
        assert hs[0]["resumed"] == "no"
        assert all(k in hs[0] for k in HANDSHAKE_KEYS), hs[0]
    up.wait_messages(2)
    assert [b"Subject: via st" in m.body for m in up.messages] == [True, False]
    assert b"Subject: via imp" in up.messages[1].body


def test_smtplib_starttls_and_smtp_ssl_deliver(certs, upstream, proxy):
    up = upstream()
    px = start(proxy, up, st=listener(certs, "starttls"), imp=listener(certs, "implicit"))
    ctx = client_ctx(certs)
    with smtplib.SMTP("127.0.0.1", port_of(px, "st"), timeout=10) as s:
        assert s.ehlo()[0] == 250 and s.has_extn("starttls")
        assert s.starttls(context=ctx)[0] == 220
        assert s.sock.version() == "TLSv1.3"
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS offered again inside TLS"
        s.sendmail("dev@example.test", ["rcpt@example.test"], b"Subject: starttls\r\n\r\nx\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", port_of(px, "imp"), context=ctx, timeout=10) as s:
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS offered on an implicit listener"
        s.sendmail("dev@example.test", ["rcpt@example.test"], b"Subject: implicit\r\n\r\nx\r\n")
    up.wait_messages(2)
    assert len(up.messages) == 2
    # Python sends no SNI for an address: the log says so with an empty value.
    for name in ("st", "imp"):
        assert [h["sni"] for h in handshakes(px, name)] == [""], px.stderr()


def test_ehlo_offers_starttls_only_before_tls_on_a_starttls_listener(certs, upstream, proxy):
    up = upstream()
    px = start(proxy, up, st=listener(certs, "starttls"), imp=listener(certs, "implicit"))
    plain = TLSClient(px.port)              # the [proxy] listen plaintext listener
    assert "STARTTLS" not in plain.cmd("EHLO d.test")
    assert plain.code("STARTTLS") == 502
    plain.close()
    imp = TLSClient(port_of(px, "imp"), client_ctx(certs), implicit=True)
    assert "STARTTLS" not in imp.cmd("EHLO d.test")
    # Not a starttls listener: 502 as on a plaintext one (README), not "TLS already active".
    assert imp.code("STARTTLS") == 502
    imp.close()
    st = TLSClient(port_of(px, "st"))
    assert re.search(r"^250[- ]STARTTLS\r$", st.cmd("EHLO d.test"), re.M)
    assert st.cmd("STARTTLS").startswith("220 2.0.0")
    st.tls(client_ctx(certs))
    assert "STARTTLS" not in st.cmd("EHLO d.test")
    st.close()


# ---- versions per profile ------------------------------------------------------------------

@pytest.mark.parametrize("version", ["tls1", "tls1_1", "tls1_2", "tls1_3"])
def test_s_client_versions_per_profile(certs, upstream, proxy, version):
    """openssl s_client -tls1 ... -tls1_3 against a starttls and an implicit listener of each
    profile: accepted exactly where the profile allows it; each refusal is logged with
    OpenSSL's reason, and a refused implicit handshake makes no upstream connection."""
    up = upstream()
    ls = {}
    for prof in ACCEPTS:
        ls[prof + "-st"] = listener(certs, "starttls", prof)
        ls[prof + "-imp"] = listener(certs, "implicit", prof)
    px = start(proxy, up, **ls)
    want = S_CLIENT_VERSIONS[version]
    for prof, accepted in ACCEPTS.items():
        for mode in ("st", "imp"):
            name = "%s-%s" % (prof, mode)
            before = len(up.connections)
            got, out = s_client(port_of(px, name), version, starttls=(mode == "st"))
            if want in accepted:
                assert got == want, "%s refused %s:\n%s\n%s" % (name, version, out,
                                                                px.stderr()[-3000:])
                hs = px.wait_event("tls.client-handshake", listener=name)
                assert hs and hs[-1]["version"] == want, px.stderr()
            else:
                assert got is None, "%s accepted %s:\n%s" % (name, version, out)
                fail = px.wait_event("tls.client-handshake-failed", listener=name)
                assert len(fail) == 1 and fail[0]["level"] == "warn", px.stderr()
                assert "unsupported protocol" in fail[0]["error"], fail
                assert px.wait_event("session.close", sid=fail[0]["sid"],
                                     reason="client-tls"), px.stderr()
                assert not handshakes(px, name)
                if mode == "imp":
                    assert len(up.connections) == before, \
                        "a refused implicit handshake cost an upstream connection"


def test_python_ssl_legacy_client_on_the_legacy_listener(certs, upstream, proxy):
    """Python's ssl at TLS 1.0 (SECLEVEL=0) through STARTTLS and SMTP_SSL, with an RSA
    certificate as devices of that age need; delivered, logged as TLSv1."""
    up = upstream()
    px = start(proxy, up, st=listener(certs, "starttls", "legacy", cert="device_rsa"),
               imp=listener(certs, "implicit", "legacy", cert="device_rsa"))
    ctx = client_ctx(certs, "TLSv1", legacy=True)
    with smtplib.SMTP("127.0.0.1", port_of(px, "st"), timeout=10) as s:
        s.starttls(context=ctx)
        assert s.sock.version() == "TLSv1"
        s.sendmail("dev@example.test", ["rcpt@example.test"], b"Subject: a\r\n\r\nx\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", port_of(px, "imp"), context=ctx, timeout=10) as s:
        assert s.sock.version() == "TLSv1"
        s.sendmail("dev@example.test", ["rcpt@example.test"], b"Subject: b\r\n\r\nx\r\n")
    up.wait_messages(2)
    for name in ("st", "imp"):
        hs = handshakes(px, name)
        assert [h["version"] for h in hs] == ["TLSv1"], px.stderr()
    # The upstream side never goes below its own minimum.
    assert all(c.tls_version in ("TLSv1.2", "TLSv1.3") for c in up.connections if c.tls)


# ---- STARTTLS state machine -----------------------------------------------------------------

@pytest.mark.parametrize("injected", [b"MAIL FROM:<injected@evil.test>\r\n", b"RSET\r\n"])
def test_starttls_injection_is_discarded_and_logged(certs, upstream, proxy, injected):
    """CVE-2011-0411: a command pipelined in the same write as STARTTLS is never executed."""
    up = upstream()
    px = start(proxy, up, st=listener(certs, "starttls"))
    c = TLSClient(port_of(px, "st"))
    c.cmd("EHLO d.test")
    c.send(b"STARTTLS\r\n" + injected)
    assert c.reply().startswith("220 2.0.0")
    assert c.buf == b"", "a reply to the injected command came in plaintext: %r" % c.buf
    c.tls(client_ctx(certs))
    # The first reply over TLS is the one to our EHLO, not to the injected command.
    r = c.cmd("EHLO d.test")
    assert r.startswith("250-"), r
    assert c.code("MAIL FROM:<real@example.test>") == 250
    assert c.code("RCPT TO:<rcpt@example.test>") == 250
    assert c.code("DATA") == 354
    assert c.cmd("Subject: x\r\n\r\nbody\r\n.").startswith("250")
    c.cmd("QUIT")
    c.close()
    up.wait_messages(1)
    ev = px.wait_event("tls.starttls-injection", listener="st")
    assert len(ev) == 1 and ev[0]["bytes"] == str(len(injected)), px.stderr()
    assert ev[0]["level"] == "warn"
    seen = b"\n".join(l for conn in up.connections for _, l in conn.commands)
    assert b"injected@evil.test" not in seen
    assert [m.mail_from for m in up.messages] == ["real@example.test"]


def test_starttls_twice_in_a_transaction_and_mail_without_ehlo(certs, upstream, proxy):
    up = upstream()
    px = start(proxy, up, st=listener(certs, "starttls"))
    c = TLSClient(port_of(px, "st"))
    c.cmd("EHLO d.test")
    assert c.code("MAIL FROM:<a@example.test>") == 250
    r = c.cmd("STARTTLS")
    assert r.startswith("503 5.5.1"), r             # inside a mail transaction
    assert c.code("RSET") == 250
    assert c.code("STARTTLS") == 220
    c.tls(client_ctx(certs))
    r = c.cmd("MAIL FROM:<a@example.test>")         # the EHLO before TLS is forgotten
    assert r.startswith("503 5.5.1"), r
    c.cmd("EHLO d.test")
    r = c.cmd("STARTTLS")
    assert r.startswith("503 5.5.1") and "TLS already active" in r, r
    assert c.code("MAIL FROM:<a@example.test>") == 250   # the session goes on
    c.close()


def test_require_tls_refuses_mail_rcpt_data_auth_before_starttls(certs, upstream, proxy):
    up = upstream()
    px = start(proxy, up, st=listener(certs, "starttls", require_tls="yes"))
    c = TLSClient(port_of(px, "st"))
    ehlo = c.cmd("EHLO d.test")
    assert "STARTTLS" in ehlo and "AUTH" not in ehlo, ehlo
    for line in ("MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA",
                 "AUTH PLAIN AGRldmljZQBzZWNyZXQ="):
        r = c.cmd(line)
        assert r == "530 5.7.0 Must issue a STARTTLS command first\r\n", (line, r)
    assert c.code("STARTTLS") == 220
    c.tls(client_ctx(certs))
    assert "AUTH" in c.cmd("EHLO d.test")       # the upstream's AUTH, offered once in TLS
    assert c.code("MAIL FROM:<a@example.test>") == 250
    assert c.code("RCPT TO:<b@example.test>") == 250
    c.close()
    assert not up.messages


def test_a_denied_device_on_an_implicit_listener_gets_no_plaintext(certs, upstream, proxy):
    """Outside allow: closed before any byte, not a plaintext 554 a TLS client would choke
    on; logged as a deny like everywhere."""
    up = upstream()
    px = start(proxy, up, imp=listener(certs, "implicit"), proxy={"allow": "127.0.0.1/32"})
    s = socket.create_connection(("127.0.0.1", port_of(px, "imp")), timeout=10,
                                 source_address=("127.0.0.2", 0))
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass
    finally:
        s.close()
    deny = px.wait_event("session.deny")
    assert deny and deny[0].get("listener") == "imp", px.stderr()
    assert not up.connections


# ---- certificates and reload ---------------------------------------------------------------

def test_new_certificate_on_sighup_open_session_keeps_going(certs, upstream, proxy, tmp_path):
    up = upstream()
    cf, kf = str(tmp_path / "dev.pem"), str(tmp_path / "dev.key")
    shutil.copy(certs["device"][0], cf)
    shutil.copy(certs["device"][1], kf)
    px = start(proxy, up, st={"listen": "127.0.0.1:0", "tls": "starttls", "cert_file": cf,
                              "key_file": kf})
    port = port_of(px, "st")
    ctx = client_ctx(certs)
    old = TLSClient(port)
    old.cmd("EHLO d.test")
    old.cmd("STARTTLS")
    old.tls(ctx)
    assert fingerprint(old.sock) == cert_fingerprint(certs["device"][0])
    old.cmd("EHLO d.test")
    assert old.code("MAIL FROM:<old@example.test>") == 250

    # Renewal: the new pair is written in place, then SIGHUP.
    for src, dst in ((certs["device2"][0], cf), (certs["device2"][1], kf)):
        shutil.copy(src, dst + ".new")
        os.replace(dst + ".new", dst)
    px.signal(signal.SIGHUP)
    assert px.wait_event("config.reload"), px.stderr()
    assert px.wait_event("worker.start", 1, generation="2"), px.stderr()
    port = port_of(px, "st")
    new = TLSClient(port)
    new.cmd("EHLO d.test")
    new.cmd("STARTTLS")
    new.tls(ctx)
    assert fingerprint(new.sock) == cert_fingerprint(certs["device2"][0])
    new.close()

    # The session opened before the reload still delivers.
    assert old.code("RCPT TO:<rcpt@example.test>") == 250
    assert old.code("DATA") == 354
    assert old.cmd("Subject: old\r\n\r\nx\r\n.").startswith("250")
    old.close()
    up.wait_messages(1)
    assert up.messages[0].mail_from == "old@example.test"

    # A broken certificate refuses the reload; the renewed one stays in service.
    with open(cf, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    px.signal(signal.SIGHUP)
    assert px.wait_event("config.reload-refused"), px.stderr()
    again = TLSClient(port_of(px, "st"))
    again.cmd("EHLO d.test")
    again.cmd("STARTTLS")
    again.tls(ctx)
    assert fingerprint(again.sock) == cert_fingerprint(certs["device2"][0])
    again.close()
    assert len(px.events("config.reload")) == 1


# ---- resumption ------------------------------------------------------------------------------

def _implicit_session(port, ctx, session=None):
    """One implicit-TLS session with an EHLO (so TLS 1.3 tickets arrive); return the
    TLS session and whether it was resumed."""
    c = TLSClient(port, ctx, implicit=True, session=session)
    c.cmd("EHLO d.test")
    c.cmd("QUIT")
    sess, reused = c.sock.session, c.sock.session_reused
    c.close()
    return sess, reused


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_resumption_across_workers(certs, upstream, proxy, version):
    """A device that reconnects resumes its TLS session, whichever of two workers takes it:
    the ticket keys are shared. Each worker's session ids carry its own random prefix, so
    the log shows which worker served which handshake."""
    up = upstream()
    px = start(proxy, up, imp=listener(certs, "implicit"), proxy={"workers": "2"})
    port = port_of(px, "imp")
    ctx = client_ctx(certs, version)
    sess, reused = _implicit_session(port, ctx)
    assert not reused and sess is not None
    first = px.wait_event("tls.client-handshake", 1, listener="imp")[0]["sid"][:4]
    n, others = 0, 0
    # Both workers accept on the same socket: reconnect until the other one has resumed
    # a few (bounded: the kernel may favour one worker for a while).
    while n < 8 or (others < 3 and n < 60):
        _, reused = _implicit_session(port, ctx, sess)
        assert reused, "not resumed:\n" + px.stderr()[-3000:]
        n += 1
        hs = px.wait_event("tls.client-handshake", n + 1, listener="imp")
        others = sum(1 for h in hs if h["sid"][:4] != first)
    hs = px.wait_event("tls.client-handshake", n + 1, listener="imp")
    assert [h["resumed"] for h in hs] == ["no"] + ["yes"] * n, px.stderr()
    assert all(h["version"] == version for h in hs)
    if not others:
        pytest.skip("the kernel gave all %d connections to one worker" % (n + 1))


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_resumption_survives_a_reload(certs, upstream, proxy, version):
    """The ticket keys live in the shared mapping, not in a TLS context: the workers of the
    next generation (new contexts, made after SIGHUP) still open a ticket issued before.
    (Within one generation the contexts are made before the fork, so even OpenSSL's own
    per-context keys would be shared: only a reload tells the two apart.)"""
    up = upstream()
    px = start(proxy, up, imp=listener(certs, "implicit"), proxy={"workers": "2"})
    ctx = client_ctx(certs, version)
    sess, reused = _implicit_session(port_of(px, "imp"), ctx)
    assert not reused
    px.signal(signal.SIGHUP)
    assert px.wait_event("config.reload"), px.stderr()
    assert px.wait_event("worker.start", 2, generation="2"), px.stderr()
    _, reused = _implicit_session(port_of(px, "imp"), ctx, sess)
    assert reused, "a ticket from before the reload was not accepted:\n" + px.stderr()[-3000:]
    hs = px.wait_event("tls.client-handshake", 2, listener="imp")
    assert [h["resumed"] for h in hs] == ["no", "yes"], px.stderr()


def test_openssl_s_client_resumes_with_a_saved_session(certs, upstream, proxy, tmp_path):
    up = upstream()
    px = start(proxy, up, st=listener(certs, "starttls"))
    port = port_of(px, "st")
    sess = str(tmp_path / "sess.pem")
    outs = []
    for extra in (["-sess_out", sess], ["-sess_in", sess]):
        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-starttls", "smtp", "-tls1_2", "-ign_eof"] + extra,
                           input=b"EHLO o.test\r\nQUIT\r\n", capture_output=True, timeout=20)
        outs.append(p.stdout.decode("utf-8", "replace"))
    assert "New, TLSv1.2" in outs[0], outs[0]
    assert "Reused, TLSv1.2" in outs[1], outs[1]
    hs = px.wait_event("tls.client-handshake", 2, listener="st")
    assert [h["resumed"] for h in hs] == ["no", "yes"], px.stderr()


# ---- -t ----------------------------------------------------------------------------------------

def _listener_conf(certs, cert_file, key_file):
    return ("[proxy]\nlisten = 127.0.0.1:0\nhostname = proxy.test\nallow = 127.0.0.0/8\n"
            "[upstream]\nhost = 127.0.0.1\nport = 25\ntls = starttls\nserver_name = mail.test\n"
            "ca_file = %s\n[listener devices]\nlisten = 127.0.0.1:0\ntls = implicit\n"
            "cert_file = %s\nkey_file = %s\n" % (certs["ca"][0], cert_file, key_file))


def test_check_listener_certificates(certs, tmp_path):
    good = _listener_conf(certs, *certs["device"])
    path, p = check_config(str(tmp_path), good, "good")
    assert p.returncode == 0 and "warn" not in (p.stdout + p.stderr).lower(), p.stdout + p.stderr

    text = _listener_conf(certs, certs["device"][0], certs["device2"][1])
    path, p = check_config(str(tmp_path), text, "mismatch")
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "%s:" % path in out, out
    assert "match" in out.lower(), out

    path, p = check_config(str(tmp_path), _listener_conf(certs, *certs["expired"]), "expired")
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "expired" in out.lower() and "%s:" % path in out, out

    path, p = check_config(str(tmp_path), _listener_conf(certs, *certs["expiring"]), "soon")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "warn" in out.lower() and "expires" in out.lower(), out

    text = good.replace("tls = implicit", "tls = implicit\ntls_profile = ancient")
    path, p = check_config(str(tmp_path), text, "profile")
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "%s:" % path in out and "ancient" in out, out

    # require_tls needs STARTTLS to mean something: the spec says error, the daemon warns;
    # either way -t names the line.
    text = good.replace("tls = implicit", "tls = implicit\nrequire_tls = yes")
    path, p = check_config(str(tmp_path), text, "requiretls")
    out = p.stdout + p.stderr
    assert "%s:" % path in out and "require_tls" in out, out
