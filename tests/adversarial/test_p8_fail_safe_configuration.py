"""Promise 8: fail-safe configuration.

A configuration that would weaken a promise is refused twice: `-t` exits 1 with a FILE:LINE
message pointing at the offending line, and the daemon itself refuses to start (exit 1,
nothing listening on the configured port).
"""
import os
import socket
import subprocess
import time

import pytest

from adv import PASSWORD, PROXY_BIN, USER, record_log, render_ini
from daemon import free_port
from adv import sections




def _line_of(text, section, key):
    """1-based line number of `key = ...` inside [section]."""
    cur = None
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("["):
            cur = line.strip("[]")
        elif cur == section and line.split("=", 1)[0].strip() == key:
            return i
    raise KeyError(key)


def creds():
    return {"username": USER, "password": PASSWORD}


BAD = [
    # (id, section overrides, (section, key) the error must point at)
    ("missing-ca-file", {"upstream": {"ca_file": "/nonexistent/ca.pem"}},
     ("upstream", "ca_file")),
    ("ctrl-x01-in-hostname", {"proxy": {"hostname": "proxy\x01.test"}}, ("proxy", "hostname")),
    ("ctrl-esc-in-server-name", {"upstream": {"server_name": "mail\x1b[2J.test"}},
     ("upstream", "server_name")),
    ("ctrl-del-in-username", {"upstream": {"username": "dev\x7fice", "password": "x"}},
     ("upstream", "username")),
    ("ctrl-x01-in-password", {"upstream": {"username": USER, "password": PASSWORD + "\x01"}},
     ("upstream", "password")),
    ("creds-with-0.0.0.0/0", {"proxy": {"allow": "0.0.0.0/0"}, "upstream": creds()},
     ("proxy", "allow")),
    ("creds-with-::/0", {"proxy": {"allow": "::/0"}, "upstream": creds()},
     ("proxy", "allow")),
    ("creds-with-a-public-net-among-private",
     {"proxy": {"allow": "127.0.0.0/8, 10.0.0.0/8, 8.8.8.0/24"}, "upstream": creds()},
     ("proxy", "allow")),
    ("creds-with-v4-mapped-public", {"proxy": {"allow": "::ffff:0.0.0.0/96"},
                                     "upstream": creds()}, ("proxy", "allow")),
    ("hostname-localhost", {"proxy": {"hostname": "localhost"}}, ("proxy", "hostname")),
]


def _write(tmp_path, over, port, name):
    s = sections(_certs_holder["certs"], None,
                 proxy=dict({"listen": "127.0.0.1:%d" % port}, **over.get("proxy", {})),
                 upstream=dict({"port": "587"}, **over.get("upstream", {})))
    text = render_ini(s)
    path = tmp_path / (name + ".ini")
    path.write_text(text)
    return str(path), text


_certs_holder = {}


@pytest.fixture(autouse=True)
def _certs(certs):
    _certs_holder["certs"] = certs


@pytest.mark.parametrize("over,where", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_unsafe_configuration_is_refused_by_check_and_by_the_daemon(tmp_path, over, where):
    port = free_port()
    path, text = _write(tmp_path, over, port, "bad")
    p = subprocess.run([PROXY_BIN, "-t", "-c", path], capture_output=True, text=True,
                       timeout=10)
    out = p.stdout + p.stderr
    record_log(out)
    assert p.returncode == 1, out
    assert "configuration OK" not in out
    line = _line_of(text, *where)
    assert "%s:%d:" % (path, line) in out, "no %s:%d: in %r" % (path, line, out)
    assert PASSWORD not in out

    t0 = time.monotonic()
    d = subprocess.Popen([PROXY_BIN, "-c", path], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        rc = d.wait(10)
    except subprocess.TimeoutExpired:
        d.kill()
        d.wait(5)
        pytest.fail("the daemon started on a configuration -t refuses")
    finally:
        dout = d.stdout.read().decode(errors="replace")
        d.stdout.close()
        record_log(dout)
    assert rc == 1, (rc, dout)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert PASSWORD not in dout


@pytest.mark.parametrize("allow", ["127.0.0.0/8, ::1/128", "10.0.0.0/8, 192.168.0.0/16",
                                   "172.16.0.0/12, fc00::/7, 100.64.0.0/10"])
def test_credentials_with_private_allow_lists_are_accepted_control(tmp_path, allow):
    """Control for the table above: the same credentials with private networks pass -t."""
    path, _ = _write(tmp_path, {"proxy": {"allow": allow}, "upstream": creds()}, 2525, "ok")
    p = subprocess.run([PROXY_BIN, "-t", "-c", path], capture_output=True, text=True,
                       timeout=10)
    record_log(p.stdout + p.stderr)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "configuration OK" in p.stdout + p.stderr


@pytest.mark.parametrize("content", ["", "\n", PASSWORD + "\x07\n"],
                         ids=["empty", "only-newline", "control-char"])
def test_unusable_password_file_is_refused(tmp_path, content):
    pw = tmp_path / "pw"
    pw.write_text(content)
    os.chmod(pw, 0o600)
    path, text = _write(tmp_path, {"upstream": {"username": USER, "password_file": str(pw)}},
                        free_port(), "pwf")
    p = subprocess.run([PROXY_BIN, "-t", "-c", path], capture_output=True, text=True,
                       timeout=10)
    out = p.stdout + p.stderr
    record_log(out)
    assert p.returncode == 1, out
    assert "%s:%d:" % (path, _line_of(text, "upstream", "password_file")) in out, out
    assert PASSWORD not in out
