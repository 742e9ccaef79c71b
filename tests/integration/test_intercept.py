"""Transparent listeners and [intercept NAME] rules, what loopback can show: the checks of
-t, -t -v, and the loop refusal (a device that connects to the transparent port itself). The
interception proper (nftables redirect and tproxy between network namespaces) is in
tests/gateway/."""
import subprocess

from conftest import PROXY_BIN, check_config

BASE = ("[proxy]\nhostname = proxy.test\nlisten = 127.0.0.1:0\n\n"
        "[upstream]\nhost = 127.0.0.1\nca_file = %s\n\n"
        "[upstream isp]\nhost = 127.0.0.1\nport = 2587\nca_file = %s\n\n"
        "[listener gw]\nlisten = 127.0.0.1:0\ntransparent = yes\n\n")


def base(certs, more):
    ca = certs["ca"][0]
    return BASE % (ca, ca) + more


def line_of(text, needle):
    return text.splitlines().index(needle) + 1


def test_check_accepts_rules_and_verbose_lists_them(tmp_path, certs):
    text = base(certs, "[intercept isp-smtp]\ndestination = 203.0.113.0/24:25\nupstream = isp\n\n"
                "[intercept rest]\ndestination = 0.0.0.0/0\nupstream = original\n"
                "tls_policy = opportunistic\n\n"
                "[intercept v6]\ndestination = [2001:db8::/32]:587\nupstream = default\n")
    path = tmp_path / "ok.ini"
    path.write_text(text)
    p = subprocess.run([PROXY_BIN, "-t", "-v", "-c", str(path)], capture_output=True,
                       text=True, timeout=10)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert ("  127.0.0.1:0           [listener gw] plaintext, transparent\n"
            "intercepts\n"
            "  203.0.113.0/24:25     [intercept isp-smtp] -> isp\n"
            "  0.0.0.0/0             [intercept rest] -> original, tls_policy = opportunistic\n"
            "  [2001:db8::/32]:587   [intercept v6] -> default\n") in p.stdout, p.stdout


def test_check_refuses_bad_rules_with_their_lines(tmp_path, certs):
    cases = [
        ("[intercept a]\nupstream = isp\n", "[intercept a]", "[intercept a] destination is required"),
        ("[intercept a]\ndestination = 203.0.113.0/24\n", "[intercept a]",
         "[intercept a] upstream is required"),
        ("[intercept a]\ndestination = 203.0.113.0/24\nupstream = nosuch\n", "upstream = nosuch",
         "[intercept a] upstream nosuch: no such upstream"),
        ("[intercept a]\ndestination = 203.0.113.0/24:99999\nupstream = isp\n",
         "destination = 203.0.113.0/24:99999", "destination = 203.0.113.0/24:99999: expected a port"),
        ("[intercept a]\ndestination = mail.example.com:25\nupstream = isp\n",
         "destination = mail.example.com:25",
         "destination = mail.example.com:25: expected an address or network"),
        ("[intercept a]\ndestination = 203.0.113.0/24\nupstream = isp\n\n"
         "[intercept b]\ndestination = 203.0.113.0/24\nupstream = default\n", "[intercept b]",
         "[intercept b] and [intercept a] (line"),
        ("[intercept a]\ndestination = 203.0.113.0/24\nupstream = isp\ntls_policy = maybe\n",
         "tls_policy = maybe", "tls_policy = maybe"),
    ]
    for more, needle, msg in cases:
        text = base(certs, more)
        path, p = check_config(str(tmp_path), text)
        assert p.returncode == 1, (more, p.stderr)
        assert "%s:%d: %s" % (path, line_of(text, needle), msg) in p.stderr, (more, p.stderr)


def test_check_transparent_needs_rules_and_no_proxy_protocol(tmp_path, certs):
    text = base(certs, "")
    _, p = check_config(str(tmp_path), text)
    assert p.returncode == 1 and "transparent = yes but there is no [intercept NAME] rule" \
        in p.stderr, p.stderr
    text = base(certs, "[intercept a]\ndestination = 203.0.113.0/24\nupstream = isp\n").replace(
        "transparent = yes\n", "transparent = yes\nproxy_protocol = v2\nproxy_from = 10.0.0.0/8\n")
    path, p = check_config(str(tmp_path), text)
    assert p.returncode == 1 and "%s:%d: [listener gw] transparent and proxy_protocol cannot " \
        "be combined" % (path, line_of(text, "transparent = yes")) in p.stderr, p.stderr
    # Rules without a transparent listener load, with a warning; tls_policy on a named one too.
    text = base(certs, "[intercept a]\ndestination = 203.0.113.0/24\nupstream = isp\n"
                "tls_policy = opportunistic\n").replace("transparent = yes\n", "")
    path, p = check_config(str(tmp_path), text)
    assert p.returncode == 0, p.stderr
    assert "warning: [intercept a]: no listener has transparent = yes" in p.stderr
    assert "%s:%d: warning: [intercept a] tls_policy is for upstream = original" % (
        path, line_of(text, "tls_policy = opportunistic")) in p.stderr


def test_a_connection_to_the_transparent_port_itself_is_a_loop(upstream, proxy):
    """Without interception the original destination is the proxy's own socket (and the
    sender this machine): relaying would connect the proxy to itself. 554, nothing upstream."""
    up = upstream("starttls")
    px = proxy(up, **{"listener gw": {"listen": "127.0.0.1:0", "transparent": "yes"},
                      "intercept all": {"destination": "0.0.0.0/0", "upstream": "default"}})
    port = [int(d["addr"].rsplit(":", 1)[1]) for d in px.events("proxy.listen")
            if d.get("listener") == "gw"][0]
    with px.client(port=port) as c:
        r = c.read_reply()
        assert r.code == 554 and "loop" in r.text, r
    deny = px.wait_event("session.deny", reason="loop")
    assert deny and deny[0]["orig_dst"] == "127.0.0.1:%d" % port and deny[0]["listener"] == "gw"
    assert up.connections == []
    # The plain listener of the same proxy is not transparent: business as usual.
    with px.client() as c:
        assert c.read_reply().code == 220
