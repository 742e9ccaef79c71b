"""make install / uninstall: exactly the expected files, the config never overwritten."""
import os
import re
import stat
import subprocess

import pytest

from servicelib import make_cmd, unit_settings

EXPECTED = {                      # path under DESTDIR with default PREFIX/SYSCONFDIR: mode
    "etc/smtp-tls-proxy/smtp-tls-proxy.ini": 0o644,
    "usr/local/sbin/smtp-tls-proxy": 0o755,
    "usr/local/lib/systemd/system/smtp-tls-proxy.service": 0o644,
    "usr/local/lib/systemd/system/smtp-tls-proxy.socket": 0o644,
    "usr/local/share/man/man8/smtp-tls-proxy.8": 0o644,
    "usr/local/share/man/man5/smtp-tls-proxy.ini.5": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/README.md": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/smtp-tls-proxy.ini": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/socket-activation.conf": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/credentials.conf": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/alerts.example.yml": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/haproxy.cfg.example": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/gmail-app-password.ini": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/gmail-oauth2.ini": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/m365-oauth2.ini": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/microsoft365.ini": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/smarthost-465.ini": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/three-devices.ini": 0o644,
    "usr/local/share/doc/smtp-tls-proxy/examples/two-listeners.ini": 0o644,
}
CONF = "etc/smtp-tls-proxy/smtp-tls-proxy.ini"


def make(*args):
    p = subprocess.run(make_cmd() + list(args), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            path = os.path.join(d, n)
            out[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


def test_install_puts_exactly_the_expected_files(tmp_path):
    dest = str(tmp_path / "root")
    make("install", "DESTDIR=" + dest)
    assert files(dest) == EXPECTED
    # The unit names the paths installed to.
    s = unit_settings(os.path.join(dest, "usr/local/lib/systemd/system/smtp-tls-proxy.service"))
    assert s["Service.ExecStart"] == [
        "/usr/local/sbin/smtp-tls-proxy -c /etc/smtp-tls-proxy/smtp-tls-proxy.ini"]
    # The installed binary is the daemon, and runs.
    p = subprocess.run([os.path.join(dest, "usr/local/sbin/smtp-tls-proxy"), "-V"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith("smtp-tls-proxy "), p.stdout
    with open(os.path.join(dest, CONF)) as a, open(
            os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                         "smtp-tls-proxy.ini")) as b:
        assert a.read() == b.read()


def test_second_install_keeps_a_modified_config_and_uninstall_keeps_only_it(tmp_path):
    dest = str(tmp_path / "root")
    make("install", "DESTDIR=" + dest)
    conf = os.path.join(dest, CONF)
    with open(conf, "a") as f:
        f.write("; edited by the administrator\n")
    with open(conf) as f:
        edited = f.read()
    out = make("install", "DESTDIR=" + dest)
    assert "keeping" in out
    with open(conf) as f:
        assert f.read() == edited, "install overwrote a modified configuration"
    assert set(files(dest)) == set(EXPECTED)

    make("uninstall", "DESTDIR=" + dest)
    assert files(dest) == {CONF: 0o644}
    with open(conf) as f:
        assert f.read() == edited
    # Our own doc directory goes too; shared directories (sbin, man8...) stay.
    assert not os.path.exists(os.path.join(dest, "usr/local/share/doc/smtp-tls-proxy"))


def test_install_with_prefix_usr_rewrites_unit_paths(tmp_path):
    dest = str(tmp_path / "root")
    make("install", "DESTDIR=" + dest, "PREFIX=/usr", "SYSCONFDIR=/etc")
    got = files(dest)
    assert "usr/sbin/smtp-tls-proxy" in got
    assert "usr/lib/systemd/system/smtp-tls-proxy.service" in got
    assert "usr/share/man/man8/smtp-tls-proxy.8" in got
    s = unit_settings(os.path.join(dest, "usr/lib/systemd/system/smtp-tls-proxy.service"))
    assert s["Service.ExecStart"] == [
        "/usr/sbin/smtp-tls-proxy -c /etc/smtp-tls-proxy/smtp-tls-proxy.ini"]
    assert s["Service.ExecStartPre"][0].startswith("/usr/sbin/smtp-tls-proxy -t ")
    assert "file:/usr/share/doc/smtp-tls-proxy/README.md" in s["Unit.Documentation"]
    text = open(os.path.join(dest, "usr/lib/systemd/system/smtp-tls-proxy.service")).read()
    assert not [l for l in text.splitlines() if "/usr/local" in l and not l.startswith("#")]
    make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr", "SYSCONFDIR=/etc")
    assert files(dest) == {CONF: 0o644}


def test_install_with_prefix_usr_rewrites_man_page_paths(tmp_path):
    """The man pages name the paths installed to, not the default /usr/local ones."""
    dest = str(tmp_path / "root")
    make("install", "DESTDIR=" + dest, "PREFIX=/usr", "SYSCONFDIR=/etc")
    man8 = open(os.path.join(dest, "usr/share/man/man8/smtp-tls-proxy.8")).read()
    man5 = open(os.path.join(dest, "usr/share/man/man5/smtp-tls-proxy.ini.5")).read()
    assert "/usr/local" not in man8 and "/usr/local" not in man5
    for path in ("/usr/sbin/smtp-tls-proxy", "/usr/lib/systemd/system/smtp-tls-proxy.service",
                 "/usr/share/doc/smtp-tls-proxy/examples/",
                 "/etc/smtp-tls-proxy/smtp-tls-proxy.ini"):
        assert ".It Pa %s\n" % path in man8, path
    assert ".It Pa /usr/share/doc/smtp-tls-proxy/smtp-tls-proxy.ini\n" in man5
    # And SYSCONFDIR reaches them too.
    dest2 = str(tmp_path / "root2")
    make("install", "DESTDIR=" + dest2, "SYSCONFDIR=/opt/etc")
    man8 = open(os.path.join(dest2, "usr/local/share/man/man8/smtp-tls-proxy.8")).read()
    assert "/opt/etc/smtp-tls-proxy/smtp-tls-proxy.ini" in man8
    assert not re.search(r"(?<!/opt)/etc/smtp-tls-proxy/", man8)


@pytest.mark.parametrize("page", ["man8/smtp-tls-proxy.8", "man5/smtp-tls-proxy.ini.5"])
def test_installed_man_pages_render_without_warnings(tmp_path, page):
    dest = str(tmp_path / "root")
    make("install", "DESTDIR=" + dest)
    path = os.path.join(dest, "usr/local/share/man", page)
    g = subprocess.run(["groff", "-mdoc", "-Tutf8", "-ww", "-z", path], capture_output=True,
                       text=True, timeout=30)
    assert g.returncode == 0 and g.stderr == "", g.stderr
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    m = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                       timeout=30, env=env)
    assert m.returncode == 0 and m.stderr == "", m.stderr
    assert re.search(r"^NAME\n\s+smtp-tls-proxy", m.stdout, re.M), m.stdout[:500]
    # man finds it by name in the installed tree, as users will call it.
    name = os.path.basename(page).rsplit(".", 1)
    m = subprocess.run(["man", "-M", os.path.join(dest, "usr/local/share/man"), name[1],
                        name[0]], capture_output=True, text=True, timeout=30, env=env)
    assert m.returncode == 0 and "SYNOPSIS" in m.stdout, m.stderr
