"""A raw-socket SMTP client for tests where bytes matter.

Every reply it reads is checked for strict framing (three digits, '-' or ' ', CRLF, one code
per reply), so any test using it also proves the proxy's replies are well formed.
"""
import re
import socket
import time

REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -])([^\r\n]*)\r\n$")


class Reply:
    def __init__(self, code, lines, raw):
        self.code = code          # int
        self.lines = lines        # text after the code, one str per line
        self.raw = raw            # the exact bytes

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def first(self):
        """The first line as it came, e.g. '421 4.7.0 ...'."""
        return self.raw.split(b"\r\n", 1)[0].decode("utf-8", "replace")

    def __repr__(self):
        return "<Reply %r>" % self.raw


class Client:
    def __init__(self, port, host="127.0.0.1", timeout=10, source=None):
        """source: the local address to connect from (another device on loopback's /8)."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.received = bytearray()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed; unparsed %r" % bytes(self.buf))
        self.buf.extend(data)
        self.received.extend(data)

    def read_line(self):
        while b"\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\n")
        line = bytes(self.buf[:i + 1])
        del self.buf[:i + 1]
        return line

    def read_reply(self):
        """Read one (possibly multi-line) reply; assert it is well formed."""
        raw, lines, code = b"", [], None
        while True:
            line = self.read_line()
            raw += line
            m = REPLY_LINE.match(line)
            assert m, "malformed reply line from proxy: %r" % line
            assert code in (None, m.group(1)), "inconsistent multi-line reply: %r" % raw
            code = m.group(1)
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) == b" ":
                return Reply(int(code), lines, raw)

    def cmd(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.read_reply()

    def expect(self, line, code):
        r = self.cmd(line)
        assert r.code == code, "%r -> %r, wanted %d" % (line, r.raw, code)
        return r

    def at_eof(self, timeout=10):
        """Wait for the peer to close; return True when it did (no more bytes)."""
        self.sock.settimeout(timeout)
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf.extend(data)
                self.received.extend(data)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return False

    def send_mail(self, mail_from, rcpts, body, ehlo="client.test"):
        """A whole transaction; body is raw bytes sent as-is and must end with CRLF.CRLF."""
        self.expect("EHLO " + ehlo, 250)
        self.expect("MAIL FROM:<%s>" % mail_from, 250)
        for r in rcpts:
            self.expect("RCPT TO:<%s>" % r, 250)
        self.expect("DATA", 354)
        self.send(body)
        return self.read_reply()
