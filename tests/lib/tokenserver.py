#!/usr/bin/python3
"""A local HTTPS OAuth2 token endpoint for the tests (http.server + ssl, loopback, ephemeral port).

    ts = TokenServer(certfile, keyfile, lifetime=5).start()
    ... ts.url (POST /token), ts.device_url (POST /devicecode), ts.requests, ts.count() ...
    ts.stop()

It speaks what Microsoft's and Google's endpoints speak, and checks every form field:
  grant_type=client_credentials       client_id, client_secret, scope must equal ours
                                      (else 401 invalid_client, or 400 invalid_scope)
  grant_type=refresh_token            the current refresh token and our client_id (the secret
                                      is optional, but if sent must be ours); with rotate, the
                                      answer carries a new refresh token and the old one dies
  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
                                      the assertion's RS256 signature (jwt_public_key_pem) and
                                      its claims: iss, sub, scope, aud (= url), iat, exp
  grant_type=urn:ietf:params:oauth:grant-type:device_code
                                      RFC 8628 after POST /devicecode: authorization_pending
                                      until approve(), slow_down once when slow_down_once,
                                      expired_token after device_expires seconds, then a token
                                      with a refresh token
Access tokens look like Microsoft's (a JWT-shaped b64token of about 2,500 bytes) and expire
after `lifetime` seconds; valid(token) is what a test upstream asks.

fail (settable at any time) makes every request fail one way:
  "down"            the listener is closed (connection refused) and open connections are cut;
                    back to None re-binds the same port
  "hang"            the request is read and never answered (until fail changes or stop())
  "invalid_client"  401 with Microsoft's AADSTS7000215 error JSON
  "invalid_grant"   400 with an AADSTS70000 error JSON
  "malformed"       200 whose body is not JSON
  "server_error"    500 with an HTML body

CLI: python3 tests/lib/tokenserver.py --certs DIR   (serves until interrupted)
"""
import argparse
import base64
import http.server
import json
import os
import secrets as _secrets
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

GRANT_CC = "client_credentials"
GRANT_RT = "refresh_token"
GRANT_JWT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
FAIL_MODES = (None, "down", "hang", "invalid_client", "invalid_grant", "malformed",
              "server_error")
TOKEN_SIZE = 2500       # Microsoft's access tokens for Exchange Online run 2-3 KB


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s):
    if "=" in s or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789-_" for c in s):
        raise ValueError("not base64url without padding")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def new_access_token():
    """A random b64token shaped like Microsoft's JWT access tokens (header.payload.signature)."""
    head = b64url(b'{"typ":"JWT","nonce":"%s","alg":"RS256","x5t":"test","kid":"test"}'
                  % _secrets.token_hex(16).encode())
    sig = b64url(os.urandom(256))
    payload_len = TOKEN_SIZE - len(head) - len(sig) - 2
    payload = ("eyJ" + b64url(os.urandom(payload_len)))[:payload_len]
    return "%s.%s.%s" % (head, payload, sig)


def _ms_error(error, code, text):
    """An error body as Microsoft's identity platform sends it."""
    return {"error": error,
            "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s"
                                 % (code, text, _uuid(), _uuid(),
                                    time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())),
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": _uuid(), "correlation_id": _uuid(),
            "error_uri": "https://login.microsoftonline.com/error?code=%d" % code}


def _uuid():
    h = _secrets.token_hex(16)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


INVALID_CLIENT = ("invalid_client", 7000215,
                  "Invalid client secret provided. Ensure the secret being sent in the request "
                  "is the client secret value, not the client secret ID, for a secret added to "
                  "app 'proxy-client-id'.")
INVALID_GRANT = ("invalid_grant", 70000,
                 "The provided value for the input parameter 'refresh_token' or 'assertion' is "
                 "not valid. The refresh token has expired or revoked due to inactivity.")


class _Refused(Exception):
    """A request refused: (status, body dict)."""

    def __init__(self, status, body):
        super().__init__(status)
        self.status, self.body = status, body


def _oauth_error(status, error, description):
    return _Refused(status, {"error": error, "error_description": description})


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive, as real endpoints do
    server_version = "test-token-endpoint"
    sys_version = ""
    timeout = 30

    def log_message(self, *a):
        pass

    def _send(self, status, body, ctype="application/json; charset=utf-8", extra=None):
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):
        self._refuse_method()

    do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _refuse_method(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        if self.path.split("?")[0] not in ("/token", "/devicecode"):
            self._send(404, {"error": "not_found"})
        else:
            self._send(405, {"error": "invalid_request",
                             "error_description": "the token endpoint takes POST only"},
                       extra={"Allow": "POST"})

    def do_POST(self):
        ts = self.server
        length = self.headers.get("Content-Length")
        try:
            n = int(length)
            if n < 0 or n > 1 << 20:
                raise ValueError
        except (TypeError, ValueError):
            self.close_connection = True
            self._send(411 if length is None else 400,
                       {"error": "invalid_request", "error_description": "bad Content-Length"})
            return
        raw = self.rfile.read(n)
        path = self.path
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            form = urllib.parse.parse_qs(raw.decode("ascii"), keep_blank_values=True,
                                         strict_parsing=bool(raw), errors="strict")
            form = {k: v[0] if len(v) == 1 else v for k, v in form.items()}
        except (UnicodeDecodeError, ValueError):
            form = {"_raw": raw.decode("latin-1")}
        ts._record(path, form.get("grant_type") if isinstance(form.get("grant_type"), str)
                   else None, form)
        fail = ts.fail
        if fail == "hang":
            ts._hang(self)
            self.close_connection = True
            return
        if fail == "down":      # a request that raced the listener's close
            self.close_connection = True
            return
        if fail in ("invalid_client", "invalid_grant"):
            err = INVALID_CLIENT if fail == "invalid_client" else INVALID_GRANT
            self._send(401 if fail == "invalid_client" else 400, _ms_error(*err))
            return
        if fail == "malformed":
            self._send(200, b"<html><body>Sign in to your account</body></html>",
                       ctype="application/json")
            return
        if fail == "server_error":
            self._send(500, b"<!DOCTYPE html><html><head><title>500 - Internal server error."
                       b"</title></head><body><h1>Server Error</h1></body></html>",
                       ctype="text/html")
            return
        if path not in ("/token", "/devicecode"):
            self._send(404, {"error": "not_found"})
            return
        try:
            if ctype != "application/x-www-form-urlencoded":
                raise _oauth_error(400, "invalid_request",
                                   "Content-Type must be application/x-www-form-urlencoded, "
                                   "not %r" % ctype)
            if "_raw" in form:
                raise _oauth_error(400, "invalid_request", "the body is not a form")
            dup = [k for k, v in form.items() if isinstance(v, list)]
            if dup:
                raise _oauth_error(400, "invalid_request", "parameter sent twice: %s" % dup)
            if path == "/devicecode":
                body = ts._device_authorize(form)
            else:
                body = ts._token(form)
        except _Refused as r:
            self._send(r.status, r.body)
            return
        self._send(200, body)


class TokenServer:
    def __init__(self, certfile, keyfile, *, lifetime=5, client_id="proxy-client-id",
                 client_secret="client-secret-XYZ",
                 scope="https://outlook.office365.com/.default", refresh_token=None,
                 rotate=True, jwt_public_key_pem=None, jwt_email=None, jwt_subject=None,
                 device_interval=1, device_expires=300, host="127.0.0.1", port=0):
        self.lifetime = lifetime
        self.client_id, self.client_secret, self.scope = client_id, client_secret, scope
        self.rotate = rotate
        self.jwt_email, self.jwt_subject = jwt_email, jwt_subject
        self.jwt_key = None
        if jwt_public_key_pem is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key
            pem = jwt_public_key_pem.encode() if isinstance(jwt_public_key_pem, str) \
                else jwt_public_key_pem
            self.jwt_key = load_pem_public_key(pem)
        self.device_interval, self.device_expires = device_interval, device_expires
        self.slow_down_once = False
        self.too_fast = 0               # device-code polls earlier than the interval allowed
        self.requests = []              # (path, grant_type, form) in arrival order
        self.times = []                 # time.monotonic() of each request, same order
        self.issued = []                # (access_token, expires_at_monotonic)
        self._lock = threading.RLock()
        self._tokens = {}               # access token -> expires_at
        self._revoked = set()
        self._secrets = [client_secret]
        self._refresh_token = None
        self.refresh_token = refresh_token or "rt-" + _secrets.token_urlsafe(32)
        self._devices = {}              # device_code -> dict
        self._approve_next = False
        self._fail = None
        self._stopping = threading.Event()
        self._unhang = threading.Condition(self._lock)
        self._conns = set()
        self._threads = []
        self._accept_thread = None
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.host = host
        self.lsock = None
        self.port = port
        self._bind()

    # ---- life ----------------------------------------------------------------------------

    @property
    def url(self):
        return "https://%s:%d/token" % (self.host, self.port)

    @property
    def device_url(self):
        return "https://%s:%d/devicecode" % (self.host, self.port)

    def _bind(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        s.settimeout(0.1)
        self.lsock = s
        self.port = s.getsockname()[1]

    def start(self):
        self._start_accept()
        return self

    def _start_accept(self):
        stop = threading.Event()
        t = threading.Thread(target=self._accept_loop, args=(self.lsock, stop), daemon=True,
                             name="tokenserver-accept")
        self._accept_thread = (t, stop)
        t.start()

    def _stop_accept(self):
        if self._accept_thread is not None:
            t, stop = self._accept_thread
            stop.set()
            t.join(5)
            self._accept_thread = None
        if self.lsock is not None:
            self.lsock.close()      # connections still in the backlog get a reset
            self.lsock = None

    def _cut_connections(self):
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stopping.set()
        with self._lock:
            self._unhang.notify_all()
        self._stop_accept()
        self._cut_connections()
        for t in list(self._threads):
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    @property
    def fail(self):
        return self._fail

    @fail.setter
    def fail(self, mode):
        assert mode in FAIL_MODES, mode
        with self._lock:
            old, self._fail = self._fail, mode
            self._unhang.notify_all()
        if mode == "down" and old != "down":
            self._stop_accept()
            self._cut_connections()     # a kept-alive connection must not outlive the listener
        elif old == "down" and mode != "down":
            self._bind()                # the same port: self.port is kept
            if not self._stopping.is_set():
                self._start_accept()

    def _accept_loop(self, lsock, stop):
        while not stop.is_set() and not self._stopping.is_set():
            try:
                s, peer = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(s, peer), daemon=True,
                                 name="tokenserver-conn")
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _serve(self, s, peer):
        s.settimeout(10)
        ts = self.ctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            # Accepted while stop() ran: stop() cut the others already, so cut this one.
            if self._stopping.is_set():
                ts.close()
                return
            self._conns.add(ts)     # from here on, stop() and "down" can cut it
        try:
            ts.do_handshake()
            _Handler(ts, peer, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._lock:
                self._conns.discard(ts)
            try:
                ts.close()
            except OSError:
                pass

    def _hang(self, handler):
        """Hold a read request unanswered until fail changes or the server stops."""
        end = time.monotonic() + 600
        with self._lock:
            while self._fail == "hang" and not self._stopping.is_set() \
                    and time.monotonic() < end:
                self._unhang.wait(0.5)

    # ---- what tests look at ----------------------------------------------------------------

    def _record(self, path, grant_type, form):
        with self._lock:
            self.requests.append((path, grant_type, dict(form)))
            self.times.append(time.monotonic())

    def count(self, grant_type=None, path=None):
        """Requests received, optionally only of one grant_type and/or to one path."""
        with self._lock:
            return sum(1 for p, g, _ in self.requests
                       if (grant_type is None or g == grant_type) and (path is None or p == path))

    def valid(self, token):
        """Whether ${token} is an access token we issued, not expired and not revoked."""
        if isinstance(token, bytes):
            token = token.decode("latin-1")
        with self._lock:
            exp = self._tokens.get(token)
            return exp is not None and token not in self._revoked and time.monotonic() < exp

    def revoke_all(self):
        """Every access token issued so far becomes invalid."""
        with self._lock:
            self._revoked.update(self._tokens)

    @property
    def refresh_token(self):
        with self._lock:
            return self._refresh_token

    @refresh_token.setter
    def refresh_token(self, rt):
        with self._lock:
            self._refresh_token = rt
            if rt is not None and rt not in self._secrets:
                self._secrets.append(rt)

    def approve(self):
        """Device flow: the user has signed in.  Approves every device code issued so far and
        not yet redeemed; when there is none yet, the next one issued."""
        with self._lock:
            now = time.monotonic()
            pending = [d for d in self._devices.values()
                       if not d["used"] and now < d["expires"]]
            for d in pending:
                d["approved"] = True
            self._approve_next = not pending

    def secrets(self):
        """Every secret ever used or issued: the client secret, refresh tokens, access tokens
        and device codes (what a leak check searches logs and replies for)."""
        with self._lock:
            return [s for s in self._secrets if s]

    # ---- the endpoint ------------------------------------------------------------------------

    def _issue(self, with_refresh):
        tok = new_access_token()
        with self._lock:
            exp = time.monotonic() + self.lifetime
            self._tokens[tok] = exp
            self.issued.append((tok, exp))
            self._secrets.append(tok)
            body = {"token_type": "Bearer", "scope": self.scope, "expires_in": self.lifetime,
                    "ext_expires_in": self.lifetime, "access_token": tok}
            if with_refresh:
                self.refresh_token = "rt-" + _secrets.token_urlsafe(48)
                body["refresh_token"] = self.refresh_token
        return body

    def _check_client(self, form, secret_required):
        if form.get("client_id") != self.client_id:
            raise _Refused(400 if not secret_required else 401, _ms_error(
                "unauthorized_client" if not secret_required else "invalid_client", 700016,
                "Application with identifier '%s' was not found in the directory."
                % str(form.get("client_id"))[:64]))
        secret = form.get("client_secret")
        if (secret_required or secret is not None) and secret != self.client_secret:
            raise _Refused(401, _ms_error(*INVALID_CLIENT))

    def _check_scope(self, form, required):
        scope = form.get("scope")
        if (required or scope is not None) and scope != self.scope:
            raise _Refused(400, _ms_error("invalid_scope", 70011,
                                          "The provided request must include a 'scope' input "
                                          "parameter equal to the configured one."))

    def _token(self, form):
        g = form.get("grant_type")
        if g == GRANT_CC:
            self._check_client(form, True)
            self._check_scope(form, True)
            return self._issue(False)
        if g == GRANT_RT:
            self._check_client(form, False)
            with self._lock:
                if form.get("refresh_token") != self._refresh_token:
                    raise _Refused(400, _ms_error(*INVALID_GRANT))
                self._check_scope(form, False)
                return self._issue(self.rotate)
        if g == GRANT_JWT:
            self._check_jwt(form)
            body = self._issue(False)
            del body["ext_expires_in"]
            return body
        if g == GRANT_DEVICE:
            return self._device_token(form)
        raise _oauth_error(400, "unsupported_grant_type",
                           "grant_type %r is not supported" % str(g)[:80])

    def _check_jwt(self, form):
        def bad(what):
            return _oauth_error(400, "invalid_grant", "Invalid JWT: " + what)

        if self.jwt_key is None:
            raise bad("no service account configured on this endpoint")
        a = form.get("assertion")
        if not isinstance(a, str):
            raise bad("assertion missing")
        parts = a.split(".")
        if len(parts) != 3:
            raise bad("assertion is not three base64url parts")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise bad("a part is not base64url JSON") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256" or \
                header.get("typ") != "JWT" or set(header) - {"alg", "typ", "kid"}:
            raise bad("header is not {\"alg\":\"RS256\",\"typ\":\"JWT\"}: %r" % (header,))
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        try:
            self.jwt_key.verify(sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(),
                                hashes.SHA256())
        except InvalidSignature:
            raise bad("Invalid signature") from None
        if not isinstance(claims, dict):
            raise bad("claims are not an object")
        if claims.get("iss") != self.jwt_email:
            raise bad("iss %r is not the service account %r" % (claims.get("iss"),
                                                                 self.jwt_email))
        if claims.get("sub") != self.jwt_subject:
            raise bad("sub %r is not %r" % (claims.get("sub"), self.jwt_subject))
        if claims.get("scope") != self.scope:
            raise bad("scope %r is not %r" % (claims.get("scope"), self.scope))
        if claims.get("aud") != self.url:
            raise bad("aud %r is not the token URL %r" % (claims.get("aud"), self.url))
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or isinstance(iat, bool) or \
                not isinstance(exp, int) or isinstance(exp, bool):
            raise bad("iat or exp is not an integer")
        now = time.time()
        if abs(now - iat) > 60:
            raise bad("iat is %d s from now (more than 60 s)" % (iat - now))
        if exp <= now:
            raise bad("exp is in the past: token expired")
        if exp - iat > 3600:
            raise bad("exp - iat is %d s, more than 3600" % (exp - iat))

    # ---- device authorization (RFC 8628) ----------------------------------------------------

    def _device_authorize(self, form):
        self._check_client(form, False)     # a public client: the secret is optional
        self._check_scope(form, False)
        code = "DAQABAAEAAAD" + _secrets.token_urlsafe(96)
        user_code = "".join(_secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(8))
        with self._lock:
            self._devices[code] = {"expires": time.monotonic() + self.device_expires,
                                   "approved": self._approve_next, "used": False,
                                   "interval": self.device_interval, "last": None}
            self._approve_next = False
            self._secrets.append(code)
        return {"device_code": code, "user_code": user_code,
                "verification_uri": "https://microsoft.com/devicelogin",
                "expires_in": self.device_expires, "interval": self.device_interval,
                "message": "To sign in, use a web browser to open the page "
                           "https://microsoft.com/devicelogin and enter the code %s to "
                           "authenticate." % user_code}

    def _device_token(self, form):
        self._check_client(form, False)     # a public client: the secret is optional
        now = time.monotonic()
        with self._lock:
            d = self._devices.get(form.get("device_code"))
            if d is None or d["used"]:
                raise _Refused(400, _ms_error("invalid_grant", 70000,
                                              "The provided value for 'device_code' is not "
                                              "valid."))
            # slack for timer granularity; a client that waits the interval is never caught
            if d["last"] is not None and now - d["last"] < d["interval"] - 0.05:
                self.too_fast += 1
            d["last"] = now
            if now >= d["expires"]:
                raise _Refused(400, _ms_error("expired_token", 70020,
                                              "The provided value for the input parameter "
                                              "'device_code' is expired."))
            if self.slow_down_once:
                self.slow_down_once = False
                d["interval"] += 5      # RFC 8628 3.5: for this and all later requests
                raise _Refused(400, {"error": "slow_down",
                                     "error_description": "polling too fast"})
            if not d["approved"]:
                raise _Refused(400, _ms_error("authorization_pending", 70016,
                                              "OAuth 2.0 device flow error. Authorization "
                                              "is pending. Continue polling."))
            d["used"] = True
            return self._issue(True)


def main():
    ap = argparse.ArgumentParser(description="test OAuth2 token endpoint")
    ap.add_argument("--certs", required=True, help="testca directory (made when missing)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--lifetime", type=int, default=300)
    a = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(a.certs, "good.pem")):
        import testca
        testca.make_ca(a.certs)
    ts = TokenServer(os.path.join(a.certs, "good.pem"), os.path.join(a.certs, "good.key"),
                     lifetime=a.lifetime, port=a.port).start()
    print("token endpoint %s device %s client_id=%s refresh_token=%s" % (
        ts.url, ts.device_url, ts.client_id, ts.refresh_token), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.2):
        pass
    ts.stop()


if __name__ == "__main__":
    main()
