#!/usr/bin/python3
"""testssl.sh (Debian's 3.0.8) against one TLS endpoint, its JSON findings as a summary.

    r = testssl.scan("127.0.0.1", port, starttls=True, ca="ca.pem", workdir=d)
    r.protocols      ["TLS1_2", "TLS1_3"]            offered, in order
    r.ciphers        [Cipher(proto="TLS1_2", name=..., kx=..., enc=..., bits=...), ...]
    r.weakest        the weakest offered Cipher (RC4/3DES/DES first, then fewest bits, CBC
                     before AEAD, SHA-1 MAC, no forward secrecy)
    r.issues()       findings of severity >= MEDIUM about the TLS configuration
    r.cert_issues()  the same about the certificate (the test PKI has no CRL or OCSP URI)
    r.seconds        how long the scan took

Only the checks that say something about a server's TLS policy, so a scan of a loopback
server takes about 25-30 s on a busy 2-core machine instead of minutes: protocols (-p),
cipher categories (-s), every suite per protocol (-E), server defaults (-S: tickets,
resumption, certificate) and the vulnerability checks that cost a handshake or two each
(Heartbleed, CCS, renegotiation, CRIME, fallback SCSV, SWEET32, FREAK, Logjam, BEAST,
Lucky13, RC4). Left out: ROBOT (dozens of RSA handshakes), DROWN (SSLv2 and a lookup of the
certificate elsewhere), POODLE (SSLv3: no OpenSSL here has it), BREACH (HTTP), client
simulation (-c: minutes) and server preference (-P: testssl 3.0.8 rates "no server order" as
HIGH whatever the suites are; -E lists the suites themselves).

Debian's OpenSSL 3 client will not finish a TLS 1.0/1.1 handshake at its default security
level (SHA-1 and MD5+SHA-1 signatures are refused: "legacy sigalg disallowed"), and testssl.sh
empties OPENSSL_CONF before it runs openssl, so an environment setting does not reach it.
It is therefore given --openssl=WRAPPER, a script that runs /usr/bin/openssl with a config at
security level 0: the scanner offers everything, and what is refused is the server's doing.

CLI: python3 tests/lib/testssl.py [-t smtp] [--ca FILE] HOST:PORT
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TESTSSL = shutil.which("testssl") or "/usr/bin/testssl"
CHECKS = ["-p", "-s", "-E", "-S",
          "-H", "-I", "-R", "-C", "-Z", "-W", "-F", "-J", "-A", "-L", "-4"]
SEVERITIES = ["OK", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
PROTOCOLS = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]
PROTO_NAMES = {"TLS1": "TLSv1", "TLS1_1": "TLSv1.1", "TLS1_2": "TLSv1.2", "TLS1_3": "TLSv1.3",
               "SSLv2": "SSLv2", "SSLv3": "SSLv3"}

_OPENSSL_CNF = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = ALL:@SECLEVEL=0
"""
# "TLS 1.2   xc02b   ECDHE-ECDSA-AES128-GCM-SHA256   ECDH 253   AESGCM   128   TLS_ECDHE_..."
_CIPHER = re.compile(r"^(?:TLS|SSL)\s*[\d.v]*\s+x([0-9a-f]+)\s+(\S+)\s+(\S+)(?:\s+(\d+))?\s+"
                     r"(\S+)\s+(\d+)\s+(\S+)")


class ScanError(RuntimeError):
    pass


class Cipher:
    def __init__(self, proto, hexcode, name, kx, enc, bits, iana):
        self.proto, self.hexcode, self.name, self.kx = proto, hexcode, name, kx
        self.enc, self.bits, self.iana = enc, bits, iana

    @property
    def aead(self):
        return self.enc.upper() in ("AESGCM", "CHACHA20", "AESCCM", "AESCCM8") or \
            self.proto == "TLS1_3"

    @property
    def sha1(self):
        """A SHA-1 MAC (the suites named ..._SHA, not _SHA256/_SHA384)."""
        return self.iana.endswith("_SHA")

    @property
    def forward_secret(self):
        return self.kx.startswith(("ECDH", "DH")) or self.proto == "TLS1_3"

    def weakness(self):
        """Smaller is weaker."""
        broken = self.enc.upper() in ("RC4", "3DES", "DES", "RC2", "IDEA", "NULL")
        return (not broken, self.bits, self.aead, not self.sha1, self.forward_secret)

    def __repr__(self):
        return "%s %s" % (PROTO_NAMES.get(self.proto, self.proto), self.name)


class Result:
    def __init__(self, findings, seconds, target):
        self.findings = findings
        self.seconds = seconds
        self.target = target
        by = {f["id"]: f for f in findings}
        self.protocols = [p for p in PROTOCOLS
                          if by.get(p, {}).get("finding", "").startswith("offered")]
        self.ciphers = []
        for f in findings:
            m = re.match(r"^cipher-(tls1(?:_[0-3])?|ssl[23])_x[0-9a-f]+$", f["id"])
            c = _CIPHER.match(f["finding"]) if m else None
            if c:
                proto = {"tls1": "TLS1", "ssl2": "SSLv2", "ssl3": "SSLv3"}.get(
                    m.group(1), m.group(1).upper())
                self.ciphers.append(Cipher(proto, c.group(1), c.group(2), c.group(3),
                                           c.group(5), int(c.group(6)), c.group(7)))
        self.weakest = min(self.ciphers, key=Cipher.weakness) if self.ciphers else None
        problems = [f for f in findings if f["id"] in ("scanProblem", "optimal_proto") or
                    f["id"] == "scanTime" and not f["finding"].isdigit()]
        if problems:
            raise ScanError("testssl.sh could not scan %s: %s" % (
                target, "; ".join("%s: %s" % (f["id"], f["finding"]) for f in problems)))
        if not self.protocols:
            raise ScanError("testssl.sh found no protocol offered on %s" % target)

    def _at_least(self, sev, cert):
        floor = SEVERITIES.index(sev)
        return [f for f in self.findings if f["severity"] in SEVERITIES and
                SEVERITIES.index(f["severity"]) >= floor and
                f["id"].startswith(("cert", "DNS_CAA")) == cert]

    def issues(self, sev="MEDIUM"):
        """Findings at or above sev about protocols, suites and known weaknesses."""
        return self._at_least(sev, False)

    def cert_issues(self, sev="MEDIUM"):
        return self._at_least(sev, True)

    def ciphers_of(self, proto):
        return [c for c in self.ciphers if c.proto == proto]

    def summary(self):
        """A few lines for a human (and the issue's closing note)."""
        out = ["%s: %s" % (self.target, ", ".join(PROTO_NAMES[p] for p in self.protocols))]
        for p in self.protocols:
            cs = self.ciphers_of(p)
            out.append("  %-8s %d suites: %s" % (PROTO_NAMES[p], len(cs),
                                                  " ".join(c.name for c in cs)))
        out.append("  weakest  %r (%s, %d bits)" % (self.weakest, self.weakest.kx,
                                                      self.weakest.bits)
                   if self.weakest else "  weakest  -")
        for f in self.issues():
            out.append("  %-8s %s: %s" % (f["severity"], f["id"], f["finding"]))
        for f in self.cert_issues():
            out.append("  %-8s %s: %s (certificate)" % (f["severity"], f["id"], f["finding"]))
        out.append("  scan     %.1f s" % self.seconds)
        return "\n".join(out)


def version():
    """testssl.sh's version, e.g. '3.0.8'."""
    p = subprocess.run([TESTSSL, "--version"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    m = re.search(r"testssl\S*\s+(\d[\w.+-]*)\s+from", p.stdout)
    return m.group(1) if m else "?"


def openssl_wrapper(workdir):
    """Write (once) the openssl wrapper at security level 0 into workdir; return its path."""
    path = os.path.join(workdir, "openssl-seclevel0")
    if not os.path.exists(path):
        cnf = os.path.join(workdir, "openssl-seclevel0.cnf")
        fd, tmp = tempfile.mkstemp(dir=workdir)
        with os.fdopen(fd, "w") as f:
            f.write(_OPENSSL_CNF)
        os.replace(tmp, cnf)
        fd, tmp = tempfile.mkstemp(dir=workdir)     # two scans may start side by side
        with os.fdopen(fd, "w") as f:
            f.write("#!/bin/sh\nOPENSSL_CONF='%s' exec /usr/bin/openssl \"$@\"\n" % cnf)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return path


def scan(host, port, starttls=False, ca=None, workdir=None, checks=None, timeout=240):
    """Run testssl.sh against host:port (STARTTLS SMTP when starttls); return a Result.
    Raises ScanError when the scan did not run through."""
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="testssl-")
    try:
        return _scan(host, port, starttls, ca, workdir, checks or CHECKS, timeout)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def _scan(host, port, starttls, ca, workdir, checks, timeout):
    target = "%s:%d" % (host, port)
    fd, jsonfile = tempfile.mkstemp(prefix="testssl-%d-" % port, suffix=".json", dir=workdir)
    os.close(fd)
    os.unlink(jsonfile)         # testssl.sh refuses to write over a file
    cmd = [TESTSSL, "--openssl", openssl_wrapper(workdir), "--quiet", "--color", "0",
           "--warnings", "batch", "--nodns", "none", "--connect-timeout", "10",
           "--openssl-timeout", "10", "--jsonfile", jsonfile]
    if starttls:
        cmd += ["-t", "smtp"]
    if ca:
        cmd += ["--add-ca", os.path.abspath(ca)]
    cmd += list(checks) + [target]
    t0 = time.monotonic()
    # testssl.sh keeps its temporary files in TMPDIR.
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout, cwd=workdir, env=dict(os.environ, TMPDIR=workdir))
    seconds = time.monotonic() - t0
    try:
        with open(jsonfile) as f:
            findings = json.load(f)
    except (OSError, ValueError) as e:
        raise ScanError("testssl.sh wrote no JSON (%s), exit %d:\n%s%s" % (
            e, p.returncode, p.stdout[-3000:], p.stderr[-2000:]))
    try:
        return Result(findings, seconds, ("smtp://" if starttls else "tls://") + target)
    except ScanError as e:
        raise ScanError("%s\n%s" % (e, p.stdout[-3000:]))


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-t", dest="starttls", choices=["smtp"])
    ap.add_argument("--ca")
    ap.add_argument("target", help="HOST:PORT")
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    print(scan(host, int(port), starttls=bool(a.starttls), ca=a.ca).summary())


if __name__ == "__main__":
    sys.exit(main())
