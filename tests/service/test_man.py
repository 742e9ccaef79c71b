"""The manual pages render cleanly and document everything the source has: every option,
signal, environment variable, notify message, log event and config key with its default."""
import glob
import os
import re
import subprocess

import pytest

from servicelib import REPO

MAN8 = os.path.join(REPO, "man", "smtp-tls-proxy.8")
MAN5 = os.path.join(REPO, "man", "smtp-tls-proxy.ini.5")
SECTION_TITLES = {"proxy": "PROXY SECTION", "upstream": "UPSTREAM SECTION",
                  "device": "DEVICE SECTION", "limits": "LIMITS SECTION", "log": "LOG SECTION",
                  "metrics": "METRICS SECTION", "listener": "LISTENER SECTION",
                  "intercept": "INTERCEPT SECTION"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def source():
    return "\n".join(read(p) for p in sorted(glob.glob(os.path.join(REPO, "src", "*.c"))))


def config_keys():
    """[(section, key, default)] from the one table in src/config.c."""
    keys = re.findall(r'\b(?:UINT|UINT_OR|ENUM|BOOL|STR|PATH|FUNC)\(\s*"(\w+)",\s*"(\w+)",\s*"([^"]*)"',
                      read(os.path.join(REPO, "src", "config.c")))
    assert len(keys) >= 20, keys
    return keys


def man_items(text, section_title):
    """{key: item source} of the .It entries under one .Sh of the ini(5) page."""
    m = re.search(r"^\.Sh %s\n(.*?)(?=^\.Sh )" % re.escape(section_title), text, re.M | re.S)
    assert m, "no .Sh %s in the ini(5) page" % section_title
    items = {}
    for block in re.split(r"^\.It ", m.group(1), flags=re.M)[1:]:
        k = re.match(r"Cm (\w+)", block)
        if k:
            items[k.group(1)] = block
    return items


@pytest.mark.parametrize("page", [MAN8, MAN5], ids=["8", "5"])
def test_man_page_renders_without_warnings(page):
    g = subprocess.run(["groff", "-mdoc", "-Tutf8", "-ww", "-z", page], capture_output=True,
                       text=True, timeout=30)
    assert g.returncode == 0 and g.stderr == "", g.stderr
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    m = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                       timeout=30, env=env)
    assert m.returncode == 0 and m.stderr == "", m.stderr
    for h in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
        assert re.search(r"^%s$" % h, m.stdout, re.M), h


def test_ini5_documents_every_config_key_with_its_default():
    text = read(MAN5)
    missing = []
    for section, key, default in config_keys():
        item = man_items(text, SECTION_TITLES[section]).get(key)
        if item is None:
            missing.append("[%s] %s: not documented" % (section, key))
            continue
        if "Default" not in item and "Required" not in item:
            missing.append("[%s] %s: no default stated" % (section, key))
        elif default and default not in item:
            missing.append("[%s] %s: default %r not stated" % (section, key, default))
    assert not missing, missing


def test_reference_config_has_every_key():
    conf = read(os.path.join(REPO, "conf", "smtp-tls-proxy.ini"))
    missing = [k for _, k, _ in config_keys()
               if not re.search(r"^;?%s\s*=" % k, conf, re.M)]
    assert not missing, missing


def test_man8_documents_options_signals_environment_and_notify():
    text, src = read(MAN8), source()
    main = read(os.path.join(REPO, "src", "main.c"))
    opts = re.search(r'getopt\(argc, argv, "([^"]+)"\)', main).group(1).replace(":", "")
    assert opts
    missing = ["-" + o for o in opts if not re.search(r"^\.It Fl %s\b" % o, text, re.M)]
    for sig in set(re.findall(r"ev_signal_init\([^;]*?(SIG[A-Z]+)\)", src)):
        if not re.search(r"Dv %s\b" % sig, text):
            missing.append(sig)
    for var in set(re.findall(r'getenv\("([A-Z_]+)"\)', src)):
        if not re.search(r"Ev %s\b" % var, text):
            missing.append("$" + var)
    for msg in set(re.findall(r'notify_send\("([A-Z_]+)=', src)):
        if msg + "=" not in text:
            missing.append(msg + "=")
    for n in ("RELOADING", "MONOTONIC_USEC", "STATUS"):
        assert n + "=" in text, n
    assert not missing, missing


def log_events():
    """Every event name the code can log."""
    events = set()
    for call in re.findall(r"\b(?:log_begin|log_simple|debug_line)\((.*?)\);", source(), re.S):
        events |= set(re.findall(r'"([a-z]+(?:\.[a-z-]+)*)"', call))
    assert {"worker.exit", "auth.fail", "proxy.start", "message"} <= events, events
    return events


def test_man8_documents_every_log_event():
    events, text = log_events(), read(MAN8)
    logging = re.search(r"^\.Sh LOGGING\n(.*?)(?=^\.Sh )", text, re.M | re.S).group(1)
    missing = sorted(e for e in events if "Ql %s" % e not in logging)
    assert not missing, missing


def test_readme_log_table_has_every_log_event():
    """The README's table is the log reference: every event the code can emit is in it."""
    events = log_events()
    readme = read(os.path.join(REPO, "README.md"))
    table = re.search(r"^## Logs\n(.*?)(?=^## )", readme, re.M | re.S).group(1)
    rows = "\n".join(l for l in table.splitlines() if l.startswith("| `"))
    missing = sorted(e for e in events if "`%s`" % e not in rows)
    assert not missing, missing


def test_man_pages_name_the_installed_paths():
    text = read(MAN8)
    for path in ("/etc/smtp-tls-proxy/smtp-tls-proxy.ini",
                 "/usr/local/lib/systemd/system/smtp-tls-proxy.service",
                 "/usr/local/share/doc/smtp-tls-proxy/examples/"):
        assert path in text, path
    unit = read(os.path.join(REPO, "systemd", "smtp-tls-proxy.service"))
    for ref in re.findall(r"man:([\w.-]+)\((\d)\)", unit):
        assert os.path.exists(os.path.join(REPO, "man", "%s.%s" % ref)), ref


def _nested_quotes(text):
    """Lines of rendered text where a quote opens inside another of the same kind."""
    bad = []
    for line in text.splitlines():
        for op, cl in (("\u2018", "\u2019"), ("\u201c", "\u201d")):
            depth = 0
            for ch in line:
                if ch == op:
                    depth += 1
                    if depth > 1:
                        bad.append(line.strip())
                        break
                elif ch == cl:
                    depth = max(depth - 1, 0)
    return bad


@pytest.mark.parametrize("page", [MAN8, MAN5], ids=["8", "5"])
def test_man_page_quotes_are_not_nested_when_rendered(page):
    """groff's mdoc Ql does not end at the next macro on its line: `.Ql a , Ql b` renders as
    ‘a, ‘b’’. The rendered page must show each quoted literal closed on its own."""
    g = subprocess.run(["groff", "-mdoc", "-Tutf8", "-P-cbou", page], capture_output=True,
                       text=True, timeout=30, env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert g.returncode == 0, g.stderr
    assert "\u2018" in g.stdout, "no quoted literal rendered at all: is this the UTF-8 output?"
    bad = _nested_quotes(g.stdout)
    assert not bad, bad
