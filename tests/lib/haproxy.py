"""A real HAProxy (Debian's package) in front of the daemon, for the load-balancing tests.

HAProxy runs in the foreground (-db) as our child in its own session, with a config the test
writes, an admin socket in the work directory (server states through `show stat`) and its
log on stdout (one line per connection, in the format the test gives). It binds loopback
ephemeral ports only; stop() ends it (SIGTERM, then SIGKILL) and is safe to call twice.
Every wait is bounded.
"""
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import time

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def check_config(path, timeout=30):
    """`haproxy -c -f path`: (exit status, what it printed)."""
    r = subprocess.run([HAPROXY, "-c", "-f", path], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


class HAProxy:
    def __init__(self, workdir, config):
        """config: the config text; "{sock}" in it is replaced by the admin socket path."""
        self.workdir = workdir
        self.sock = os.path.join(workdir, "haproxy.sock")
        self.cfg = os.path.join(workdir, "haproxy.cfg")
        self.out = os.path.join(workdir, "haproxy.out")
        with open(self.cfg, "w") as f:
            f.write(config.replace("{sock}", self.sock))
        self.proc = None

    def start(self, timeout=15):
        rc, text = check_config(self.cfg)
        if rc != 0:
            raise AssertionError("haproxy -c refused the test config:\n" + text)
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                self.command("show info")
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("haproxy did not start:\n" + self.output())

    def command(self, line, timeout=5):
        """One command on the admin socket; its whole answer."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.sock)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode("utf-8", "replace")
        finally:
            s.close()

    def servers(self):
        """{(backend, server): row of `show stat`} for every server line."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {(r["pxname"], r["svname"]): r for r in rows
                if r.get("svname") not in (None, "FRONTEND", "BACKEND")}

    def status(self, backend, server):
        """'UP', 'DOWN', ... as HAProxy's checks see the server ('UP 1/2' while rising)."""
        return self.servers()[(backend, server)]["status"]

    def wait_status(self, pairs, want, timeout=20):
        """Wait until every (backend, server) in pairs has status `want`; False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.servers()
            if all(got[p]["status"] == want for p in pairs):
                return True
            time.sleep(0.1)
        return False

    def output(self):
        try:
            with open(self.out, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_records(self, prefix="hap "):
        """The connection log lines that start with prefix, as {key: value} (the test's
        log-format writes key=value pairs)."""
        out = []
        for line in self.output().splitlines():
            i = line.find(prefix)
            if i >= 0:
                out.append(dict(kv.split("=", 1) for kv in line[i + len(prefix):].split()
                                if "=" in kv))
        return out

    def stop(self, timeout=10):
        """SIGTERM (HAProxy's hard stop), then SIGKILL; -db keeps it one process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
