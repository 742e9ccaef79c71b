"""Socket activation: sockets passed as fd 3.. with LISTEN_FDS / LISTEN_PID (sd_listen_fds)."""
import signal

from servicelib import listen_socket, send_message


def test_inherited_socket_serves_next_to_configured_listener_and_survives_reload(
        upstream, proxy):
    up = upstream()
    ls = listen_socket()
    inherited = ls.getsockname()[1]
    try:
        p = proxy(up, listen_fd=ls.fileno(), proxy={"listen": "127.0.0.1:0", "workers": "2"})
    finally:
        ls.close()          # the daemon has its own copy now, as with systemd
    listens = p.listens()
    assert ("127.0.0.1", inherited, "systemd") in listens, listens
    own = [l for l in listens if l[2] is None]
    assert len(own) == 1 and own[0][1] not in (0, inherited), listens

    assert send_message(inherited, "via-systemd-socket").startswith("220 proxy.test")
    assert send_message(own[0][1], "via-own-socket").startswith("220 proxy.test")

    # A reload keeps the inherited socket (systemd will not pass it again).
    p.signal(signal.SIGHUP)
    assert p.wait_event("config.reload"), p.stderr()
    assert not p.events("proxy.unlisten"), p.stderr()
    assert send_message(inherited, "via-systemd-after-reload").startswith("220 proxy.test")
    assert up.wait_messages(3)
    assert sorted(m.body.split(b"\r\n")[0] for m in up.messages) == [
        b"Subject: via-own-socket", b"Subject: via-systemd-after-reload",
        b"Subject: via-systemd-socket"]


def test_configured_address_covered_by_inherited_socket_is_not_bound_again(upstream, proxy):
    """listen = the socket unit's address: the daemon uses systemd's socket, binds nothing."""
    up = upstream()
    ls = listen_socket()
    port = ls.getsockname()[1]
    try:
        p = proxy(up, listen_fd=ls.fileno(), proxy={"listen": "127.0.0.1:%d" % port})
    finally:
        ls.close()
    assert p.listens() == [("127.0.0.1", port, "systemd")], p.stderr()
    assert send_message(port, "covered").startswith("220 proxy.test")
    assert up.wait_messages(1)


def test_sockets_meant_for_another_pid_are_not_taken(upstream, proxy):
    """LISTEN_PID must be our own pid: an inherited environment is not an invitation."""
    up = upstream()
    ls = listen_socket()
    try:
        p = proxy(up, start=False)
        # fd 3 is a listening socket, but LISTEN_PID names another process.
        p.start(listen_fd=ls.fileno(), listen_pid="1")
    finally:
        ls.close()
    assert all(l[2] is None for l in p.listens()), p.listens()
    assert len(p.listens()) == 1
    assert send_message(p.port, "own-only").startswith("220 proxy.test")
