#!/usr/bin/python3
"""A test upstream SMTP server on raw sockets and Python's ssl module.

It shares no code with the proxy, controls every byte it sends and records every byte it
receives.  One thread per connection; binds 127.0.0.1 on an ephemeral port.

    up = Upstream(certfile, keyfile, mode="starttls", **faults).start()
    ... up.port, up.connections, up.messages ...
    up.stop()

Stages (for close_at / rst_at / stall_at, fault fires AFTER the reply of that stage unless noted):
  connect    right after accept, before the greeting
  greeting   220 sent (plaintext, or over TLS in implicit mode)
  ehlo       reply to the plaintext EHLO sent (starttls mode)
  starttls   reply to STARTTLS sent, before the handshake
  handshake  mid handshake: after the first bytes of the ClientHello were read
  tls_ehlo   reply to EHLO over TLS sent
  helo, auth, mail, rcpt, rset, noop   after that command's reply
  data       354 sent
  body       some body bytes read, end of data not yet seen
  dot        final dot read, BEFORE the reply
  dot_reply  the reply to the final dot sent (the message is recorded)

override={stage: bytes} replaces the reply of a stage with raw bytes (greeting, ehlo, helo,
starttls, tls_ehlo, auth, mail, rcpt, data, dot, rset, noop, quit).  A STARTTLS override that
starts with b"220" is followed by the handshake (or by the plaintext
handshake_garbage bytes, when given); a DATA override that does not start with
b"354" does not enter the data phase.

More faults (adversarial suite):
  notify_at=stage     TLS close_notify (SSL shutdown) after that stage, then close
  garbage_at=stage    a garbage TLS application-data record written on the raw socket
                      after that stage; then wait for the peer to go away
  inject_after={stage: (delay, bytes)}   after the reply of stage (or the 220 to
                      STARTTLS, before the handshake), wait delay seconds and send bytes in
                      their own segment (over TLS when TLS is up)
  reply_delay={stage: seconds}           wait before sending the reply of stage
  pipeline_probe=s    before every reply over TLS wait s seconds and record in
                      conn.pipelined any command bytes that arrived ahead of that reply
  drip_delay, drip_stages                with drip: seconds per byte, and the stages dripped
                      (None = every reply)
  ciphers             server cipher string (e.g. "DEFAULT:@SECLEVEL=0" for weak keys)
  client_ca           a CA file: the handshake asks the client for a certificate and
                      requires one issued by this CA (a relay that authenticates senders
                      by certificate); conn.client_cert is then the subject the client
                      presented, as a dict of its attributes

OAuth2 (issue 9): with token_check (a callable token -> bool, e.g. TokenServer.valid) the
upstream also offers AUTH XOAUTH2 and AUTH OAUTHBEARER (RFC 7628), initial response on the
AUTH line or after a "334 ", and checks the decoded string byte for byte:
  XOAUTH2      "user=" USER "\x01auth=Bearer " TOKEN "\x01\x01"
  OAUTHBEARER  "n,a=" USER "," "\x01host=" HOST "\x01port=" PORT "\x01auth=Bearer " TOKEN
               "\x01\x01"   (USER with "," and "=" as =2C and =3D; PORT our port; HOST
               oauthbearer_host when given, else any name)
A malformed string gets 501; a wrong user or a token token_check refuses is answered as the
provider does (token_style): "microsoft" 535 5.7.3 at once; "google" a 334 with the base64
JSON error, then, after the client's empty line ("*", or "AQ==" for OAUTHBEARER), 535 5.7.8.
Each attempt is recorded in conn.auth as (mech, user, token, ok).
"""
import argparse
import base64
import os
import random
import re
import select
import signal
import socket
import ssl
import string
import struct
import sys
import threading
import time
import warnings

DEFAULT_CAPS = ["PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                "DSN", "CHUNKING", "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN"]
PLAIN_CAPS = ["PIPELINING", "SIZE 52428800", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME"]
DEFAULT_USER = "device@example.test"
DEFAULT_PASSWORD = "s3cret-Pa55"
TLS_VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
                "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class Closed(Exception):
    """The peer went away, or a fault closed the connection."""


class Message:
    """One DATA transaction as received: envelope, raw wire bytes, de-stuffed body, our reply."""

    def __init__(self, mail_from, mail_params, rcpts, raw, reply):
        self.mail_from = mail_from
        self.mail_params = mail_params
        self.rcpts = list(rcpts)
        self.raw = raw          # bytes between the DATA line and the terminating ".\r\n"
        self.body = destuff(raw)
        self.reply = reply
        self.accepted = reply.startswith(b"2")

    def __repr__(self):
        return "<Message from=%r rcpts=%r %d bytes %r>" % (
            self.mail_from, self.rcpts, len(self.raw), self.reply)


def destuff(raw):
    """Undo dot-stuffing of CRLF-framed lines."""
    lines = raw.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


class Conn:
    """What one upstream connection received."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.tls = False
        self.raw_plain = bytearray()    # every byte received before TLS
        self.raw_tls = bytearray()      # every decrypted byte received over TLS
        self.commands = []              # (tls: bool, line bytes without CRLF)
        self.ehlo_names = []            # (tls, name) for EHLO and HELO
        self.auth = []                  # (mech, user, password, ok)
        self.messages = []
        self.after_starttls = b""       # bytes pipelined behind our STARTTLS command
        self.tls_version = self.cipher = self.sni = self.client_cert = None
        self.resumed = None
        self.error = None
        self.closed = threading.Event()
        self.buf = bytearray()
        self.mail_from = None
        self.mail_params = b""
        self.rcpts = []
        self.greeted = False
        self.pipelined = []             # (stage, bytes) that arrived before that stage's reply
        self.stage = None               # the stage whose reply is being sent

    @property
    def transcript(self):
        return bytes(self.raw_plain) + bytes(self.raw_tls)

    @property
    def ehlo(self):
        return self.ehlo_names[-1][1] if self.ehlo_names else None

    def verbs(self, tls=None):
        """Command verbs received, upper-cased, optionally only before (False) / in (True) TLS."""
        return [l.split(b" ", 1)[0].upper().decode("latin-1")
                for t, l in self.commands if tls is None or t == tls]


class Upstream:
    def __init__(self, certfile=None, keyfile=None, mode="starttls", *, host="127.0.0.1",
                 port=0, caps=None, plain_caps=None, user=DEFAULT_USER,
                 password=DEFAULT_PASSWORD, min_tls=None, max_tls=None, starttls=True,
                 implicit_plaintext=False, inject_after_starttls=b"", close_at=None,
                 rst_at=None, stall_at=None, auth_fail=False, override=None,
                 rcpt_replies=None, drip=False, io_timeout=30, on_message=None,
                 hostname="mail.test", handshake_garbage=None, notify_at=None,
                 garbage_at=None, inject_after=None, reply_delay=None, pipeline_probe=0.0,
                 drip_delay=0.002, drip_stages=None, ciphers=None, token_check=None,
                 token_style="microsoft", oauthbearer_host=None, client_ca=None):
        assert mode in ("starttls", "implicit")
        self.mode = mode
        self.caps = list(DEFAULT_CAPS if caps is None else caps)
        assert token_style in ("microsoft", "google")
        self.token_check, self.token_style = token_check, token_style
        self.oauthbearer_host = oauthbearer_host
        if token_check is not None:
            self.caps = [c + " XOAUTH2 OAUTHBEARER" if re.match(r"(?i)AUTH[ =]", c) else c
                         for c in self.caps]
        self.plain_caps = list(PLAIN_CAPS if plain_caps is None else plain_caps)
        if not starttls:
            self.plain_caps = [c for c in self.plain_caps if c.upper() != "STARTTLS"]
        self.starttls = starttls
        self.user, self.password = user, password
        self.implicit_plaintext = implicit_plaintext
        self.inject_after_starttls = inject_after_starttls
        self.close_at, self.rst_at, self.stall_at = close_at, rst_at, stall_at
        self.auth_fail = auth_fail
        self.override = dict(override or {})
        self.rcpt_replies = {k.lower(): v for k, v in (rcpt_replies or {}).items()}
        self.drip = drip
        self.io_timeout = io_timeout
        self.on_message = on_message
        self.hostname = hostname
        self.handshake_garbage = handshake_garbage
        self.notify_at, self.garbage_at = notify_at, garbage_at
        self.inject_after = dict(inject_after or {})
        self.reply_delay = dict(reply_delay or {})
        self.pipeline_probe = pipeline_probe
        self.drip_delay, self.drip_stages = drip_delay, drip_stages
        self.connections = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self.ctx = None
        if certfile:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            if ciphers:     # before the key is loaded: the security level checks it
                self.ctx.set_ciphers(ciphers)
            elif (min_tls or "1.2") < "1.2" or (max_tls or "1.3") < "1.2":
                self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            self.ctx.load_cert_chain(certfile, keyfile)
            with warnings.catch_warnings():     # TLS 1.0/1.1 are deprecated: that's the point
                warnings.simplefilter("ignore", DeprecationWarning)
                if min_tls:
                    self.ctx.minimum_version = TLS_VERSIONS[min_tls]
                if max_tls:
                    self.ctx.maximum_version = TLS_VERSIONS[max_tls]
            self.ctx.sni_callback = self._sni
            if client_ca:
                self.ctx.load_verify_locations(client_ca)
                self.ctx.verify_mode = ssl.CERT_REQUIRED
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(128)
        self.lsock.settimeout(0.1)
        self.host = host
        self.port = self.lsock.getsockname()[1]

    # ---- life ----------------------------------------------------------------------------

    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True, name="upstream-accept")
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for c in list(self.connections):
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in list(self._threads):
            t.join(5)
        self.lsock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    @property
    def messages(self):
        """Messages the upstream accepted (2xx to the final dot), in arrival order."""
        return [m for m in self.all_messages if m.accepted]

    @property
    def all_messages(self):
        with self._lock:
            return [m for c in self.connections for m in c.messages]

    def wait_connections(self, n, timeout=10):
        """Wait until n connections have been accepted; return whether they were."""
        end = time.monotonic() + timeout
        while len(self.connections) < n and time.monotonic() < end:
            time.sleep(0.01)
        return len(self.connections) >= n

    def wait_closed(self, timeout=10):
        """Wait until every accepted connection is closed; return whether they are."""
        end = time.monotonic() + timeout
        return all(c.closed.wait(max(0, end - time.monotonic())) for c in list(self.connections))

    def wait_messages(self, n, timeout=10):
        end = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < end:
            time.sleep(0.01)
        return len(self.messages) >= n

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(self.io_timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(s, peer)
            with self._lock:
                self.connections.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True,
                                 name="upstream-conn")
            t.start()
            self._threads.append(t)

    # ---- faults and I/O --------------------------------------------------------------------

    def _sni(self, sslsock, name, ctx):
        sslsock.sni_seen = name

    def _fault(self, c, stage):
        if self.stall_at == stage:
            self._stop.wait(self.io_timeout)
            raise Closed("stalled at " + stage)
        if self.rst_at == stage:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raise Closed("rst at " + stage)
        if self.close_at == stage:
            raise Closed("closed at " + stage)
        if self.notify_at == stage and c.tls:
            c.sock.settimeout(1)
            try:
                c.sock = c.sock.unwrap()    # close_notify out; the peer's may not come
            except (OSError, ValueError):
                pass
            raise Closed("close_notify at " + stage)
        if self.garbage_at == stage:
            # A record no TLS stack can decrypt, bypassing ours; then wait for the peer.
            os.write(c.sock.fileno(), b"\x17\x03\x03\x00\x20" + os.urandom(32))
            select.select([c.sock.fileno()], [], [], self.io_timeout)
            raise Closed("garbage record at " + stage)
        if stage in self.inject_after:
            delay, data = self.inject_after[stage]
            time.sleep(delay)
            c.sock.sendall(data)

    def _send(self, c, data, stage=None):
        if self.drip and (self.drip_stages is None or stage in self.drip_stages):
            for i in range(len(data)):
                c.sock.sendall(data[i:i + 1])
                time.sleep(self.drip_delay)
        else:
            c.sock.sendall(data)

    def _probe(self, c, stage):
        """Before a reply: wait, pull in whatever already arrived, and record commands that
        came ahead of the reply (pipelining)."""
        if stage in self.reply_delay:
            time.sleep(self.reply_delay[stage])
        if not (self.pipeline_probe and c.tls):
            return
        time.sleep(self.pipeline_probe)
        c.sock.settimeout(0.0)
        try:
            while True:
                data = c.sock.recv(65536)
                if not data:
                    break
                c.raw_tls.extend(data)
                c.buf.extend(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        finally:
            c.sock.settimeout(self.io_timeout)
        if c.buf:
            c.pipelined.append((stage, bytes(c.buf)))

    def _reply(self, c, stage, default, fault=True):
        data = self.override.get(stage, default)
        self._probe(c, stage)
        self._send(c, data, stage)
        if fault:
            self._fault(c, stage)
        return data

    def _recv(self, c):
        data = c.sock.recv(65536)
        if not data:
            raise Closed("eof")
        (c.raw_tls if c.tls else c.raw_plain).extend(data)
        return data

    def _readline(self, c):
        while True:
            i = c.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(c.buf[:i])
                del c.buf[:i + 2]
                c.commands.append((c.tls, line))
                return line
            c.buf.extend(self._recv(c))

    def _start_tls(self, c):
        if self.stall_at == "handshake" or self.close_at == "handshake" or \
                self.rst_at == "handshake":
            c.sock.recv(5)      # the start of the ClientHello, then the fault
            self._fault(c, "handshake")
        if self.handshake_garbage is not None:
            c.sock.recv(5)      # answer the ClientHello with plaintext
            c.sock.sendall(self.handshake_garbage)
            raise Closed("garbage instead of a handshake")
        s = self.ctx.wrap_socket(c.sock, server_side=True, do_handshake_on_connect=False)
        s.settimeout(self.io_timeout)
        c.sock = s
        s.do_handshake()
        c.tls = True
        c.tls_version = s.version()
        c.cipher = (s.cipher() or [None])[0]
        c.sni = getattr(s, "sni_seen", None)
        c.resumed = s.session_reused
        peer = s.getpeercert()
        if peer:
            c.client_cert = {k: v for rdn in peer.get("subject", ()) for k, v in rdn}

    # ---- the session -----------------------------------------------------------------------

    def _serve(self, c):
        try:
            self._fault(c, "connect")
            if self.mode == "implicit" and not self.implicit_plaintext:
                self._start_tls(c)
            self._reply(c, "greeting", b"220 %s ESMTP test upstream\r\n" % self.hostname.encode())
            while True:
                line = self._readline(c)
                if not self._command(c, line):
                    break
        except Exception as e:      # the peer's doing or a fault; recorded, never raised
            c.error = repr(e)
        finally:
            try:
                c.sock.close()
            except OSError:
                pass
            c.closed.set()

    def _ehlo_reply(self, c, name):
        caps = self.caps if c.tls else self.plain_caps
        lines = [self.hostname] + caps
        return b"".join(b"250%s%s\r\n" % (b"-" if i < len(lines) - 1 else b" ", l.encode())
                        for i, l in enumerate(lines))

    def _reset(self, c):
        c.mail_from, c.mail_params, c.rcpts = None, b"", []

    def _command(self, c, line):
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        if verb == b"EHLO":
            c.ehlo_names.append((c.tls, arg.decode("latin-1")))
            c.greeted = True
            self._reset(c)
            self._reply(c, "tls_ehlo" if c.tls else "ehlo", self._ehlo_reply(c, arg))
        elif verb == b"HELO":
            c.ehlo_names.append((c.tls, arg.decode("latin-1")))
            c.greeted = True
            self._reset(c)
            self._reply(c, "helo", b"250 %s\r\n" % self.hostname.encode())
        elif verb == b"STARTTLS":
            if c.tls:
                self._send(c, b"554 5.5.1 Error: TLS already active\r\n")
            elif not self.starttls or self.ctx is None:
                self._send(c, b"502 5.5.1 Error: command not implemented\r\n")
            else:
                r = self.override.get("starttls", b"220 2.0.0 Ready to start TLS\r\n")
                self._send(c, r + self.inject_after_starttls, "starttls")
                self._fault(c, "starttls")     # also after a refusal or a partial reply
                if r.startswith(b"220"):
                    c.after_starttls = bytes(c.buf)
                    c.buf.clear()
                    self._start_tls(c)
                    c.greeted = False
                    self._reset(c)
        elif verb == b"AUTH":
            self._auth(c, arg)
        elif verb == b"MAIL":
            if not c.greeted:
                self._reply(c, "mail", b"503 5.5.1 Error: send HELO/EHLO first\r\n")
            elif c.mail_from is not None:
                self._reply(c, "mail", b"503 5.5.1 Error: nested MAIL command\r\n")
            elif not arg.upper().startswith(b"FROM:"):
                self._reply(c, "mail", b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            else:
                addr, _, params = arg[5:].strip().partition(b" ")
                c.mail_from, c.mail_params = addr.strip(b"<>").decode("utf-8", "replace"), params
                self._reply(c, "mail", b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            if c.mail_from is None:
                self._reply(c, "rcpt", b"503 5.5.1 Error: need MAIL command\r\n")
            else:
                addr = arg[3:].strip().split(b" ")[0].strip(b"<>").decode("utf-8", "replace")
                r = self.rcpt_replies.get(addr.lower(), b"250 2.1.5 Ok\r\n")
                if r.startswith(b"2"):
                    c.rcpts.append(addr)
                self._reply(c, "rcpt", r)
        elif verb == b"DATA":
            self._data(c)
        elif verb == b"RSET":
            self._reset(c)
            self._reply(c, "rset", b"250 2.0.0 Ok\r\n")
        elif verb == b"NOOP":
            self._reply(c, "noop", b"250 2.0.0 Ok\r\n")
        elif verb == b"VRFY":
            self._send(c, b"252 2.0.0 Cannot VRFY user\r\n")
        elif verb == b"QUIT":
            self._reply(c, "quit", b"221 2.0.0 Bye\r\n", fault=False)
            return False
        else:
            self._send(c, b"502 5.5.2 Error: command not recognized\r\n")
        return True

    def _auth(self, c, arg):
        mech, _, ir = arg.partition(b" ")
        mech = mech.upper()
        if not c.tls:
            self._reply(c, "auth", b"538 5.7.11 Encryption required for requested authentication mechanism\r\n")
            return
        try:
            if mech == b"PLAIN":
                ir = self._initial_response(c, ir)
                if ir is None:
                    return
                _, user, pw = base64.b64decode(ir, validate=True).split(b"\0")
            elif mech in (b"XOAUTH2", b"OAUTHBEARER") and self.token_check is not None:
                self._auth_token(c, mech.decode(), ir)
                return
            elif mech == b"LOGIN":
                if not ir:
                    self._send(c, b"334 VXNlcm5hbWU6\r\n")
                    ir = self._readline(c)
                user = base64.b64decode(ir, validate=True)
                self._send(c, b"334 UGFzc3dvcmQ6\r\n")
                pw = base64.b64decode(self._readline(c), validate=True)
            else:
                self._reply(c, "auth", b"504 5.5.4 Unrecognized authentication type\r\n")
                return
        except (ValueError, TypeError):
            self._reply(c, "auth", b"501 5.5.2 Cannot decode response\r\n")
            return
        user, pw = user.decode("utf-8", "replace"), pw.decode("utf-8", "replace")
        ok = not self.auth_fail and user == self.user and pw == self.password
        c.auth.append((mech.decode(), user, pw, ok))
        self._reply(c, "auth", b"235 2.7.0 Authentication successful\r\n" if ok
                    else b"535 5.7.8 Error: authentication failed\r\n")

    def _initial_response(self, c, ir):
        """The response given on the AUTH line, else asked for with an empty 334; None
        (answered 501) when the client cancels with "*"."""
        if not ir:
            self._send(c, b"334 \r\n")
            ir = self._readline(c)
        if ir == b"*":
            self._reply(c, "auth", b"501 5.7.0 Authentication aborted\r\n")
            return None
        return ir

    def _auth_token(self, c, mech, ir):
        """AUTH XOAUTH2 / OAUTHBEARER: the string checked byte for byte, then the token."""
        ir = self._initial_response(c, ir)
        if ir is None:
            return
        m = None
        try:
            s = base64.b64decode(ir, validate=True).decode("utf-8")
            if mech == "XOAUTH2":
                m = re.fullmatch(r"user=([^\x01]+)\x01auth=Bearer ([^\x01 ]+)\x01\x01", s)
                user = m and m.group(1)
            else:
                m = re.fullmatch(r"n,a=((?:[^,=\x01]|=2C|=3D)+),\x01host=([^\x01]+)"
                                 r"\x01port=([0-9]+)\x01auth=Bearer ([^\x01 ]+)\x01\x01", s)
                if m and (m.group(3) != str(self.port) or self.oauthbearer_host not in (
                        None, m.group(2))):
                    m = None
                user = m and m.group(1).replace("=2C", ",").replace("=3D", "=")
        except (ValueError, TypeError):
            pass
        if m is None:
            self._reply(c, "auth", b"501 5.5.2 Cannot decode response or malformed %s "
                        b"string\r\n" % mech.encode())
            return
        token = m.group(m.lastindex)
        ok = not self.auth_fail and user == self.user and bool(self.token_check(token))
        c.auth.append((mech, user, token, ok))
        if ok:
            self._reply(c, "auth", b"235 2.7.0 Authentication successful\r\n")
        elif self.token_style == "microsoft":
            self._reply(c, "auth", b"535 5.7.3 Authentication unsuccessful "
                        b"[SN4PR0501CA0054.namprd05.prod.outlook.com 2026-01-01T00:00:00.000Z "
                        b"08DC1A2B3C4D5E6F]\r\n")
        else:
            err = b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
            self._send(c, b"334 " + base64.b64encode(err) + b"\r\n")
            if self._readline(c) not in (b"", b"*", b"AQ=="):
                self._reply(c, "auth", b"501 5.5.2 Cannot decode response\r\n")
                return
            self._reply(c, "auth", b"535-5.7.8 Username and Password not accepted. For more "
                        b"information, go to\r\n535 5.7.8  https://support.google.com/mail/"
                        b"?p=BadCredentials a1-20020a05600c000000b0040e000000sm0000000wmq.0 - "
                        b"gsmtp\r\n")

    def _data(self, c):
        if c.mail_from is None or not c.rcpts:
            self._reply(c, "data", b"554 5.5.1 Error: no valid recipients\r\n")
            return
        r = self._reply(c, "data", b"354 End data with <CR><LF>.<CR><LF>\r\n")
        if not r.startswith(b"354"):
            return
        buf, start, body_seen = c.buf, 0, False
        while True:
            if len(buf) >= 3 and buf[:3] == b".\r\n":
                raw, rest = b"", buf[3:]
                break
            i = buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                raw, rest = bytes(buf[:i + 2]), buf[i + 5:]
                break
            if buf and not body_seen:
                body_seen = True
                self._fault(c, "body")
            start = max(0, len(buf) - 4)
            buf.extend(self._recv(c))
        c.buf = bytearray(rest)
        self._fault(c, "dot")
        qid = "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(10))
        reply = self.override.get("dot", b"250 2.0.0 Ok: queued as %s\r\n" % qid.encode())
        m = Message(c.mail_from, c.mail_params, c.rcpts, raw, reply)
        with self._lock:
            c.messages.append(m)
        self._reset(c)
        self._probe(c, "dot")
        self._send(c, reply, "dot")
        if self.on_message:
            self.on_message(m)
        self._fault(c, "dot_reply")


def main():
    ap = argparse.ArgumentParser(description="test upstream SMTP server")
    ap.add_argument("--certs", required=True, help="testca directory (made when missing)")
    ap.add_argument("--cert", default="good", help="testca certificate name")
    ap.add_argument("--starttls-port", type=int)
    ap.add_argument("--implicit-port", type=int)
    ap.add_argument("--user", default=DEFAULT_USER)
    ap.add_argument("--password", default=DEFAULT_PASSWORD)
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.certs, a.cert + ".pem")):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import testca
        testca.make_ca(a.certs)
    cf, kf = (os.path.join(a.certs, a.cert + e) for e in (".pem", ".key"))
    lock = threading.Lock()

    def show(m):
        with lock:
            print("message from=<%s> rcpts=%s bytes=%d" % (m.mail_from, ",".join(
                "<%s>" % r for r in m.rcpts), len(m.raw)))
            sys.stdout.write(m.body.decode("utf-8", "replace").replace("\r\n", "\n"))
            print("-- end of message", flush=True)

    servers = []
    for mode, port in (("starttls", a.starttls_port), ("implicit", a.implicit_port)):
        if port is not None:
            s = Upstream(cf, kf, mode, port=port, user=a.user, password=a.password,
                         on_message=show).start()
            servers.append(s)
            print("upstream %s 127.0.0.1:%d" % (mode, s.port), flush=True)
    if not servers:
        ap.error("give --starttls-port and/or --implicit-port")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.2):
        pass
    for s in servers:
        s.stop()


if __name__ == "__main__":
    main()
