"""`smtp-tls-proxy -t -c FILE`: configuration check."""
import json
import os
import re
import signal
import subprocess

import pytest

from conftest import PROXY_BIN, REPO, check_config, render_ini


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


# ---- warnings: what loads but is probably a mistake ----------------------------------------

SHIPPED = os.path.join(REPO, "conf", "smtp-tls-proxy.ini")


def _line_of(text, line):
    return text.splitlines().index(line) + 1


def test_warnings_are_printed_and_the_check_still_passes(tmp_path, good_sections):
    good_sections["upstream"]["server_name"] = '"mail.test"'
    good_sections["proxy"]["allow"] = "127.0.0.0/8, 203.0.113.0/24"
    text = render_ini(good_sections)
    path, p = check_config(str(tmp_path), text)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == "configuration OK\n"
    assert p.stderr == (
        "%s:%d: warning: server_name: value is quoted; quotes are kept as part of the value\n"
        "%s:%d: warning: allow has a public network (203.0.113.0/24) and no username: an open "
        "relay wherever the upstream trusts this gateway's address\n" % (
            path, _line_of(text, 'server_name = "mail.test"'),
            path, _line_of(text, "allow = 127.0.0.0/8, 203.0.113.0/24")))


def test_misspelt_section_is_one_error_at_its_header(tmp_path, good_sections):
    text = render_ini(good_sections).replace("[upstream]", "[upstrem]")
    path, p = check_config(str(tmp_path), text)
    assert p.returncode == 1
    assert p.stderr == "%s:%d: unknown section [upstrem] (did you mean [upstream]?)\n" % (
        path, _line_of(text, "[upstrem]"))


def test_shipped_config_untouched_says_host_is_required(tmp_path):
    """The installed file must not pass -t while it still names smtp.example.com."""
    with open(SHIPPED) as f:
        text = f.read()
    p = subprocess.run([PROXY_BIN, "-t", "-c", SHIPPED], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout == ""
    assert p.stderr == "%s:%d: [upstream] host is required\n" % (
        SHIPPED, _line_of(text, "[upstream]"))


def test_shipped_config_with_a_host_passes_without_warnings(tmp_path):
    with open(SHIPPED) as f:
        text = f.read()
    assert "\n;host = smtp.example.com\n" in text
    path, p = check_config(str(tmp_path), text.replace(
        "\n;host = smtp.example.com\n", "\nhost = smtp.example.com\n"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (p.stdout, p.stderr) == ("configuration OK\n", "")


def test_daemon_logs_config_warnings_at_start_and_on_reload(proxy):
    px = proxy(None, proxy={"allow": "127.0.0.0/8, ::1/128, 203.0.113.0/24"})
    warned = px.wait_event("config.warning")
    assert len(warned) == 1 and warned[0]["level"] == "warn", px.stderr()
    assert warned[0]["msg"].startswith("%s:" % px.conf)
    assert "warning: allow has a public network (203.0.113.0/24)" in warned[0]["msg"]

    with open(px.conf) as f:
        text = f.read()
    with open(px.conf, "w") as f:
        f.write(text.replace("203.0.113.0/24", "198.51.100.0/24"))
    px.proc.send_signal(signal.SIGHUP)
    assert px.wait_event("config.reload", timeout=20), px.stderr()
    warned = px.wait_event("config.warning", n=2)
    assert len(warned) == 2 and "(198.51.100.0/24)" in warned[1]["msg"], px.stderr()

    # A refused reload: its errors as config.reload-refused, its warnings still config.warning.
    with open(px.conf, "w") as f:
        f.write(text.replace("[log]", "[log]\nno_such_key = 1").replace(
            "[upstream]", "[upstream]\ntls_ciphers = 'ECDHE+AESGCM'"))
    px.proc.send_signal(signal.SIGHUP)
    refused = px.wait_event("config.reload-refused", timeout=20)
    assert len(refused) == 1 and "unknown key 'no_such_key'" in refused[0]["msg"], px.stderr()
    warned = px.wait_event("config.warning", n=3)
    assert len(warned) == 3 and "warning: tls_ciphers: value is quoted" in warned[2]["msg"], \
        px.stderr()


# ---- conf/examples: complete configurations admins start from ------------------------------

EXAMPLES = os.path.join(REPO, "conf", "examples")
EXAMPLE_SETUPS = {             # file: lines it must hold (what the admin came for)
    "gmail-app-password.ini": ["host = smtp.gmail.com", "port = 587", "tls = starttls"],
    "gmail-oauth2.ini": ["host = smtp.gmail.com", "port = 587", "auth_mechanism = xoauth2",
                         "oauth2_flow = jwt_bearer", "oauth2_scope = https://mail.google.com/"],
    "m365-oauth2.ini": ["host = smtp.office365.com", "port = 587", "auth_mechanism = xoauth2",
                        "oauth2_flow = client_credentials",
                        "oauth2_token_url = "
                        "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token",
                        "oauth2_scope = https://outlook.office365.com/.default"],
    "microsoft365.ini": ["host = smtp.office365.com", "port = 587", "auth_mechanism = login"],
    "smarthost-465.ini": ["port = 465", "tls = implicit"],
    "two-listeners.ini": ["listen = 0.0.0.0:25, 0.0.0.0:2525"],
    "three-devices.ini": ["[upstream m365]", "auth_mechanism = xoauth2",
                          "[device scanner]", "upstream = m365, default",
                          "force_sender = scanner@example.com", "[device plcs]",
                          "[device nas]", "client_auth = required"],
}
# A users_file as `openssl passwd -6` writes its hashes (the password is "stub").
STUB_USERS = "nas:$6$stubsalt$eB55ayFwrdLxbXEI4NY.MsVsOANX3fZIZQuRPL2b5D2KzlmCuxzzlUlrB/bfpKXQ" \
    "gK..2cHFB8zO2YXK/20K6.\n"


def _service_account_key():
    """A Google service-account key as the console hands it out, with a fresh RSA key (-t
    loads the key, so a stub string would not do)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "stub",
                       "client_email": "stub@stub.iam.gserviceaccount.com", "private_key": pem,
                       "token_uri": "https://oauth2.googleapis.com/token"})


def _stub_credentials(tmp_path, text):
    """A CREDENTIALS_DIRECTORY holding a root-only stub for every credential the file names,
    as systemd's LoadCredential= would (only uncommented lines count)."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    names = re.findall(r"^[^;#\n]*\$\{CREDENTIALS_DIRECTORY\}/([\w.-]+)", text, re.M)
    for name in names:
        (creds / name).write_text(_service_account_key() if name.endswith(".json") else
                                  STUB_USERS if name.startswith("users") else "stub-secret\n")
        os.chmod(creds / name, 0o600)
    return str(creds), names


def test_every_example_is_tested():
    assert sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".ini")) == \
        sorted(EXAMPLE_SETUPS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_SETUPS))
def test_example_passes_check_with_its_credentials_stubbed(tmp_path, name):
    path = os.path.join(EXAMPLES, name)
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    for want in EXAMPLE_SETUPS[name]:
        assert want in lines, "%s: no line %r" % (name, want)
    assert "providers reject a MAIL FROM that is not the authenticated\n; mailbox" in text
    creds, names = _stub_credentials(tmp_path, text)
    assert names, "%s: the password should come from a credential, not the file" % name
    assert not re.search(r"^password\s*=", text, re.M)
    env = dict(os.environ, CREDENTIALS_DIRECTORY=creds)
    p = subprocess.run([PROXY_BIN, "-t", "-c", path], capture_output=True, text=True,
                       timeout=10, env=env)
    assert (p.returncode, p.stdout, p.stderr) == (0, "configuration OK\n", ""), p.stderr
    # Without systemd's credentials the check says what is missing, where.
    env.pop("CREDENTIALS_DIRECTORY")
    p = subprocess.run([PROXY_BIN, "-t", "-c", path], capture_output=True, text=True,
                       timeout=10, env=env)
    assert p.returncode == 1 and "${CREDENTIALS_DIRECTORY} is not set" in p.stderr, p.stderr


def test_microsoft365_example_says_basic_auth_is_being_turned_off():
    with open(os.path.join(EXAMPLES, "microsoft365.ini")) as f:
        text = " ".join(l.lstrip("; ") for l in f.read().splitlines())
    assert "Basic authentication (a password) for SMTP AUTH off by default at the end of " \
        "December 2026" in text


def test_gmail_oauth2_example_refresh_token_alternative_passes_check(tmp_path):
    """The commented refresh_token block of gmail-oauth2.ini, swapped in as it tells the admin
    to, passes -t once a token is in state_dir (and says where one is missing before)."""
    with open(os.path.join(EXAMPLES, "gmail-oauth2.ini")) as f:
        head, alt = f.read().split("; --- Or")
    head = re.sub(r"^;?oauth2_.*\n", "", head, flags=re.M)
    alt = re.sub(r"^;(oauth2_)", r"\1", alt, flags=re.M)
    state = tmp_path / "state"
    state.mkdir()
    text = (head + "; --- Or" + alt).replace("[proxy]\n", "[proxy]\nstate_dir = %s\n" % state)
    assert "oauth2_flow = refresh_token\n" in text
    path = tmp_path / "alt.ini"
    path.write_text(text)
    creds, names = _stub_credentials(tmp_path, text)
    assert names == ["oauth2-client-secret"]
    env = dict(os.environ, CREDENTIALS_DIRECTORY=creds)
    p = subprocess.run([PROXY_BIN, "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=10, env=env)
    assert p.returncode == 1 and "default.refresh_token" in p.stderr, p.stderr
    (state / "default.refresh_token").write_text("stub-refresh-token\n")
    os.chmod(state / "default.refresh_token", 0o600)
    p = subprocess.run([PROXY_BIN, "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=10, env=env)
    assert (p.returncode, p.stdout, p.stderr) == (0, "configuration OK\n", ""), p.stderr
