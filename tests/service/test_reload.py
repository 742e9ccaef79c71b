"""Reload under load: SIGHUP with clients connecting all the time loses nothing."""
import signal
import threading
import time

from servicelib import Client, free_port, render_ini, send_message

THREADS, PER_THREAD, PAUSE = 3, 50, 0.1     # 150 sessions over about 6 s


def listen_inode(port):
    """The inode of the LISTEN socket on 127.0.0.1:port, from /proc/net/tcp."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                return fields[9]
    return None


def client_loop(port, tid, results, stop_at):
    """PER_THREAD whole sessions, one after another; record (time, banner or error)."""
    for k in range(PER_THREAD):
        if time.monotonic() > stop_at:
            results.append((time.monotonic(), "ERROR: out of time before session %d" % k))
            return
        t = time.monotonic()
        try:
            banner = send_message(port, "load-%d-%d" % (tid, k))
            results.append((t, banner))
        except Exception as e:          # any failure is counted and shown, not raised here
            results.append((t, "ERROR: %s: %s" % (type(e).__name__, e)))
        time.sleep(PAUSE)


def test_reload_under_load_refuses_nothing_and_loses_nothing(upstream, proxy):
    up = upstream()
    port = free_port()
    p = proxy(up, proxy={"listen": "127.0.0.1:%d" % port, "workers": "2",
                         "shutdown_timeout": "10"})
    inode = listen_inode(port)
    assert inode is not None

    # A session that stays open across the first reload: it must keep the old config.
    long = Client(port)
    assert long.read_reply().first.startswith("220 proxy.test ")
    assert long.expect("EHLO device.test", 250).first.startswith("250-proxy.test")

    results = []
    stop_at = time.monotonic() + 60
    threads = [threading.Thread(target=client_loop, args=(port, i, results, stop_at),
                                daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()

    # 1: a change clients can see (the name in our replies).
    time.sleep(1.5)
    p.sections["proxy"]["hostname"] = "new.test"
    p.write_config(p.sections)
    t_reload1 = time.monotonic()
    p.signal(signal.SIGHUP)
    assert p.wait_event("config.reload", 1), p.stderr()
    t_reloaded1 = time.monotonic()
    assert send_message(port, "after-reload-1").startswith("220 new.test ")
    # The old session still speaks with the old name, and its message goes through.
    assert long.expect("EHLO device.test", 250).first.startswith("250-proxy.test")
    r = long.send_mail("device@example.test", ["rcpt@example.test"],
                       b"Subject: long-session\r\n\r\nopen across a reload\r\n.\r\n",
                       ehlo="device.test")
    assert r.code == 250, r.raw
    long.expect("QUIT", 221)
    long.close()

    # 2: a broken file is refused; the running config keeps serving.
    time.sleep(1.0)
    with open(p.conf, "a") as f:
        f.write("[proxy]\nbare_newline = sometimes\n")
    p.signal(signal.SIGHUP)
    assert p.wait_event("config.reload-refused", 1), p.stderr()
    assert send_message(port, "after-refused").startswith("220 new.test ")

    # 3: a valid file again (another value changed).
    time.sleep(1.0)
    p.sections["proxy"]["max_sessions"] = "500"
    p.write_config(render_ini(p.sections))
    p.signal(signal.SIGHUP)
    assert p.wait_event("config.reload", 2), p.stderr()

    for t in threads:
        t.join(max(0, stop_at - time.monotonic()) + 1)
    assert not any(t.is_alive() for t in threads), "client threads did not finish"

    errors = [r for r in results if r[1].startswith("ERROR")]
    assert len(results) == THREADS * PER_THREAD
    assert not errors, "%d of %d sessions failed: %r" % (len(errors), len(results), errors[:5])
    refused = [e for e in errors if "ConnectionRefused" in e[1]]
    assert not refused
    # Every session started after reload 1 was done saw the new name; before it, the old.
    for t, banner in results:
        name = banner.split()[1]
        if t > t_reloaded1:
            assert name == "new.test", (t - t_reload1, banner)
        elif t < t_reload1:
            assert name == "proxy.test", (t - t_reload1, banner)
    assert {b.split()[1] for _, b in results} == {"proxy.test", "new.test"}

    # Every message delivered exactly once, and whole.
    want = THREADS * PER_THREAD + 3
    assert up.wait_messages(want, timeout=10), "%d of %d delivered" % (len(up.messages), want)
    subjects = [m.body.split(b"\r\n")[0] for m in up.all_messages]
    assert len(subjects) == len(set(subjects)) == want, "duplicates or extra messages"
    assert all(m.accepted for m in up.all_messages)
    long_conn = [c for c in up.connections
                 if any(m.body.startswith(b"Subject: long-session") for m in c.messages)]
    assert len(long_conn) == 1 and long_conn[0].ehlo == "proxy.test", "old session, new config"

    # The unchanged listener was never closed: same socket, same port, no unlisten.
    assert listen_inode(port) == inode
    assert not p.events("proxy.unlisten")
    assert [l[1] for l in p.listens()] == [port]
    # Generations: 1 at start, 2 and 3 from the good reloads, none for the refused one; the
    # old generations exit on their own (expected: info, restart=no).
    gens = sorted({d["generation"] for d in p.events("worker.start")})
    assert gens == ["1", "2", "3"], gens
    exits = p.wait_event("worker.exit", 4, timeout=15)
    assert len(exits) >= 4, p.stderr()
    assert all(d["restart"] == "no" and d["level"] == "info" and d.get("status") == "0"
               for d in exits), exits
    assert sorted(d["generation"] for d in exits) == ["1", "1", "2", "2"]
