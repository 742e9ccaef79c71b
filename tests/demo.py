#!/usr/bin/python3
"""make demo: one message from a plaintext client, through the proxy, to a TLS mail server.

Starts the test suite's upstream (STARTTLS and implicit TLS on loopback, with a test CA
made on the spot), starts the proxy with conf/demo.ini in front of the STARTTLS port,
sends a message in plaintext with swaks, shows the proxy's log (the handshake line
first) and the message as the server received it, then stops everything it started.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "lib"))

import testca  # noqa: E402
from upstream import Upstream  # noqa: E402


def wait_for(pred, seconds, what):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    sys.exit("demo: gave up waiting for %s" % what)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "smtp-tls-proxy")
    tmp = tempfile.mkdtemp(prefix="smtp-tls-proxy-demo.")
    proxy = None
    servers = []
    try:
        certs = testca.make_ca(os.path.join(tmp, "certs"))
        cert, key = certs["good"]
        got = []
        starttls = Upstream(cert, key, "starttls", on_message=got.append).start()
        implicit = Upstream(cert, key, "implicit", on_message=got.append).start()
        servers = [starttls, implicit]
        print("== test mail server (mail.test, test CA %s)" % os.path.join(tmp, "certs", "ca.pem"))
        print("   STARTTLS on 127.0.0.1:%d, implicit TLS on 127.0.0.1:%d" % (starttls.port, implicit.port))

        with open(os.path.join(ROOT, "conf", "demo.ini")) as f:
            ini = f.read().replace("@PORT@", str(starttls.port)).replace(
                "@CA@", os.path.join(tmp, "certs", "ca.pem"))
        conf = os.path.join(tmp, "demo.ini")
        with open(conf, "w") as f:
            f.write(ini)
        log = open(os.path.join(tmp, "proxy.log"), "w+")
        proxy = subprocess.Popen([binary, "-c", conf], stderr=log)

        def listen_port():
            log.seek(0)
            m = re.search(r"event=proxy.listen addr=127\.0\.0\.1:(\d+)", log.read())
            return m and int(m.group(1))
        port = wait_for(listen_port, 10, "the proxy to listen")
        print("== smtp-tls-proxy listening on 127.0.0.1:%d (plaintext), relaying to STARTTLS" % port)
        print("== swaks sends a message in plaintext:")
        swaks = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % port, "--helo", "printer.demo.test",
             "--from", "scanner@demo.test", "--to", "admin@example.test",
             "--header", "Subject: scan from the 3rd floor printer",
             "--body", "Your scanned document is attached (not really).",
             "--timeout", "20"],
            capture_output=True, text=True, timeout=60)
        for line in swaks.stdout.splitlines():
            if line.startswith((" -> ", "<-  ", "<** ", " ~> ", "*** ")):
                print("   " + line)
        wait_for(lambda: got, 10, "the message at the server")
        proxy.terminate()
        proxy.wait(timeout=40)
        proxy = None
        log.seek(0)
        lines = log.read().splitlines()
        print("== the proxy's log (tls.handshake: what it verified; message: the outcome):")
        for line in lines:
            if re.search(r"event=(tls\.handshake|message|session\.(open|close)|upstream\.fail)", line):
                print("   " + line)
        m = got[0]
        print("== the message as the mail server received it, over TLS:")
        print("   MAIL FROM:<%s>  RCPT TO:%s" % (m.mail_from, ", ".join("<%s>" % r for r in m.rcpts)))
        for line in m.body.decode("utf-8", "replace").splitlines():
            print("   | " + line)
        if swaks.returncode != 0 or not any("event=tls.handshake" in x for x in lines):
            sys.exit("demo: the message did not go through (swaks exit %d)" % swaks.returncode)
        print("== done: one message, plaintext in, verified TLS out.")
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
