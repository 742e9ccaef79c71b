"""`smtp-tls-proxy -t -c FILE`: configuration check."""
import os
import subprocess

import pytest

from conftest import PROXY_BIN, check_config, render_ini


@pytest.fixture
def good_sections(proxy_config):
    if not os.access(PROXY_BIN, os.X_OK):
        pytest.fail("daemon not built: %s" % PROXY_BIN)
    return proxy_config(None, upstream={"port": "587"})


def test_good_config_prints_configuration_ok(tmp_path, good_sections):
    _, p = check_config(str(tmp_path), render_ini(good_sections))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "configuration OK" in p.stdout + p.stderr


def test_unknown_key_is_reported_with_file_and_line(tmp_path, good_sections):
    text = render_ini(good_sections)
    lines = text.splitlines()
    at = lines.index("[upstream]") + 2
    lines.insert(at, "no_such_key = 1")
    path, p = check_config(str(tmp_path), "\n".join(lines) + "\n")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "%s:%d:" % (path, at + 1) in p.stdout + p.stderr, p.stdout + p.stderr
    assert "configuration OK" not in p.stdout + p.stderr


def test_credentials_with_open_allow_list_are_refused(tmp_path, good_sections):
    good_sections["proxy"]["allow"] = "0.0.0.0/0"
    good_sections["upstream"].update(username="device@example.test", password="s3cret-Pa55")
    _, p = check_config(str(tmp_path), render_ini(good_sections))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "configuration OK" not in p.stdout + p.stderr
    assert "s3cret-Pa55" not in p.stdout + p.stderr


@pytest.mark.parametrize("section,key,value", [
    ("upstream", "ca_file", "/nonexistent/ca.pem"),
    ("upstream", "tls", "sometimes"),
    ("upstream", "min_tls", "0.9"),
    ("proxy", "bare_newline", "ignore"),
    ("proxy", "allow", "300.0.0.0/8"),
    ("proxy", "timeout", "-1"),
    ("log", "level", "chatty"),
])
def test_bad_values_are_refused(tmp_path, good_sections, section, key, value):
    good_sections[section][key] = value
    path, p = check_config(str(tmp_path), render_ini(good_sections))
    assert p.returncode == 1, p.stdout + p.stderr
    assert path + ":" in p.stdout + p.stderr


def test_daemon_refuses_to_start_on_bad_config(tmp_path, good_sections):
    good_sections["proxy"]["no_such_key"] = "1"
    path = tmp_path / "bad.ini"
    path.write_text(render_ini(good_sections))
    p = subprocess.run([PROXY_BIN, "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
