#!/usr/bin/python3
"""Test PKI made at test time: a root CA, an intermediate and server certificates.

make_ca(dir) writes PEM files into dir and returns {name: (certfile, keyfile)}:
  ca              the root (ca.pem is what the proxy's ca_file points at)
  good            SAN mail.test, localhost, 127.0.0.1, ::1; signed by the root
  wrongname       SAN other.test only
  selfsigned      self-signed, SAN mail.test
  expired         notAfter in the past
  notyet          notBefore in the future
  cnonly          CN=mail.test, no SAN at all
  ipOnly          SAN IP:127.0.0.1 only
  wildcard        SAN *.test
  chain           leaf (SAN mail.test) + intermediate in one file
  chain_leafonly  the same leaf without its intermediate
  untrusted       SAN mail.test, signed by a second CA nobody trusts
  partialwild     SAN m*.test (a partial-label wildcard)
  partialwild3    SAN m*.example.test (a partial-label wildcard OpenSSL would otherwise honour)
  wildsub         SAN *.mail.test (matches a.mail.test only)
  clientonly      SAN mail.test, extendedKeyUsage clientAuth only
  noncaissuer     leaf (SAN mail.test) + its issuer, a CA:FALSE certificate, in one file
  dnsip           SAN DNS:127.0.0.1 (an address spelt as a DNS name, no IP entry)
  rsa1024         SAN mail.test on a 1024-bit RSA key
  sha1            SAN mail.test, signed with SHA-1
  manynames       60 SANs (long DNS names and addresses), none of them mail.test
  device          SAN mail.test, localhost, 127.0.0.1, ::1; valid a year (a [listener NAME]
                  certificate -t does not warn about; the 30-day ones above would)
  device2         the same names on another key (a renewed certificate)
  device_rsa      the same names on a 2048-bit RSA key (devices from ~2010 know only RSA),
                  keyEncipherment allowed (their static RSA key exchange)
  expiring        the same names, expires in 20 days (-t warns 30 days ahead)
  client          CN=device-relay.test, extendedKeyUsage clientAuth: a client certificate
  client_untrusted  the same, signed by the untrusted CA

spki_pin(certfile, index=0) is the curl-style pin ("sha256//" + base64 of the SHA-256 of
the DER SubjectPublicKeyInfo) of the index-th certificate in a PEM file, computed here
with the cryptography package, independently of the proxy.

CLI: python3 tests/lib/testca.py DIR
"""
import base64
import datetime
import hashlib
import ipaddress
import os
import sys
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtp-tls-proxy tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(entries):
    out = []
    for e in entries:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(e)))
        except ValueError:
            out.append(x509.DNSName(e))
    return x509.SubjectAlternativeName(out)


def _cert(subject_cn, key, issuer_cert, issuer_key, *, ca=False, san=None,
          not_before=None, not_after=None, pathlen=None, eku=None, hash_alg=None,
          san_ext=None, key_encipherment=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = _name(subject_cn)
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before or now - DAY)
         .not_valid_after(not_after or now + 90 * DAY)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False))
    if issuer_key is not None and issuer_cert is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_cert.public_key()), False)
    if ca:
        b = (b.add_extension(x509.BasicConstraints(ca=True, path_length=pathlen), True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                          False, False), True))
    else:
        b = (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
             .add_extension(x509.KeyUsage(True, False, key_encipherment, False, False, False,
                                          False, False, False), True)
             .add_extension(x509.ExtendedKeyUsage(eku or [ExtendedKeyUsageOID.SERVER_AUTH]),
                            False))
    if san:
        b = b.add_extension(_san(san), False)
    if san_ext is not None:
        b = b.add_extension(san_ext, False)
    return b.sign(issuer_key or key, hash_alg or hashes.SHA256())


def _write(dirname, name, certs, key):
    cf = os.path.join(dirname, name + ".pem")
    kf = os.path.join(dirname, name + ".key")
    with open(cf, "wb") as f:
        for c in certs:
            f.write(c.public_bytes(serialization.Encoding.PEM))
    with open(kf, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(kf, 0o600)
    return cf, kf


def spki_pin(certfile, index=0):
    """The pin of the index-th certificate of the PEM file certfile."""
    with open(certfile, "rb") as f:
        pems = f.read().split(b"-----END CERTIFICATE-----")
    cert = x509.load_pem_x509_certificate(pems[index] + b"-----END CERTIFICATE-----\n")
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def make_ca(dirname):
    """Write the test PKI into dirname; return {name: (certfile, keyfile)}."""
    os.makedirs(dirname, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = {}
    ca_key = _key()
    ca = _cert("Test Root CA", ca_key, None, None, ca=True)
    out["ca"] = _write(dirname, "ca", [ca], ca_key)

    def leaf(name, cn, san, **kw):
        k = _key()
        out[name] = _write(dirname, name, [_cert(cn, k, ca, ca_key, san=san, **kw)], k)

    leaf("good", "mail.test", ["mail.test", "localhost", "127.0.0.1", "::1"])
    # The proxy's own certificate toward devices ([listener NAME]): a year, so -t does not
    # warn that it expires within 30 days as it rightly does for "good".
    leaf("device", "proxy.test", ["proxy.test", "localhost", "127.0.0.1", "::1"],
         not_before=now - DAY, not_after=now + 365 * DAY)
    leaf("wrongname", "other.test", ["other.test"])
    leaf("expired", "mail.test", ["mail.test", "localhost", "127.0.0.1"],
         not_before=now - 60 * DAY, not_after=now - 30 * DAY)
    leaf("notyet", "mail.test", ["mail.test", "localhost", "127.0.0.1"],
         not_before=now + 30 * DAY, not_after=now + 60 * DAY)
    leaf("cnonly", "mail.test", None)
    leaf("ipOnly", "127.0.0.1", ["127.0.0.1"])
    leaf("wildcard", "*.test", ["*.test"])

    k = _key()
    out["selfsigned"] = _write(dirname, "selfsigned",
                               [_cert("mail.test", k, None, None, san=["mail.test"])], k)

    ik = _key()
    inter = _cert("Test Intermediate CA", ik, ca, ca_key, ca=True, pathlen=0)
    out["intermediate"] = _write(dirname, "intermediate", [inter], ik)
    k = _key()
    lc = _cert("mail.test", k, inter, ik, san=["mail.test", "localhost", "127.0.0.1"])
    out["chain"] = _write(dirname, "chain", [lc, inter], k)
    out["chain_leafonly"] = _write(dirname, "chain_leafonly", [lc], k)

    leaf("partialwild", "m*.test", ["m*.test"])
    leaf("partialwild3", "m*.example.test", ["m*.example.test"])
    leaf("wildsub", "*.mail.test", ["*.mail.test"])
    leaf("clientonly", "mail.test", ["mail.test"], eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    leaf("dnsip", "127.0.0.1", None,
         san_ext=x509.SubjectAlternativeName([x509.DNSName("127.0.0.1")]))
    with warnings.catch_warnings():     # SHA-1 is deprecated: that is the point
        warnings.simplefilter("ignore")
        leaf("sha1", "mail.test", ["mail.test"], hash_alg=hashes.SHA1())
    k = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    out["rsa1024"] = _write(dirname, "rsa1024",
                            [_cert("mail.test", k, ca, ca_key, san=["mail.test"])], k)
    leaf("manynames", "many.test",
         ["host-%02d.a-rather-long-subdomain.example.test" % i for i in range(50)] +
         ["192.0.2.%d" % i for i in range(1, 6)] + ["2001:db8::%d" % i for i in range(1, 6)])
    names = ["mail.test", "localhost", "127.0.0.1", "::1"]
    leaf("device", "mail.test", names, not_after=now + 365 * DAY)
    leaf("device2", "mail.test", names, not_after=now + 365 * DAY)
    leaf("expiring", "mail.test", names, not_after=now + 20 * DAY)
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    c = _cert("mail.test", k, ca, ca_key, san=names, not_after=now + 365 * DAY,
              key_encipherment=True)    # static RSA key exchange encrypts to this key
    out["device_rsa"] = _write(dirname, "device_rsa", [c], k)
    fk = _key()
    fake = _cert("Not A CA", fk, ca, ca_key, san=["notaca.test"])    # CA:FALSE
    k = _key()
    out["noncaissuer"] = _write(dirname, "noncaissuer",
                                [_cert("mail.test", k, fake, fk, san=["mail.test"]), fake], k)

    leaf("client", "device-relay.test", ["device-relay.test"],
         eku=[ExtendedKeyUsageOID.CLIENT_AUTH])

    ok = _key()
    other_ca = _cert("Untrusted Root CA", ok, None, None, ca=True)
    k = _key()
    out["untrusted"] = _write(dirname, "untrusted",
                              [_cert("mail.test", k, other_ca, ok, san=["mail.test"])], k)
    k = _key()
    out["client_untrusted"] = _write(
        dirname, "client_untrusted", [_cert("device-relay.test", k, other_ca, ok,
                                            san=["device-relay.test"],
                                            eku=[ExtendedKeyUsageOID.CLIENT_AUTH])], k)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: testca.py DIR")
    for n, (c, k) in sorted(make_ca(sys.argv[1]).items()):
        print(n, c, k)
