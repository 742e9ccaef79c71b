"""End-to-end device profiles: two devices (127.0.0.2, 127.0.0.3) go through two
[upstream NAME] sections, each with its own SASL user, to the real Postfix; and a device
whose first upstream is a dead port fails over to Postfix. Postfix's log names the SASL user
of each delivered message's queue id, so each profile's credentials are really checked."""
import email
import re

from daemon import refusing_port
from test_postfix import delivered, new_marker, swaks


def sasl_user_of(postfix, msg):
    """The SASL user Postfix logged for the delivered message `msg` (its topmost Received:
    carries the queue id; TLS is checked on the way)."""
    received = email.message_from_string(msg).get_all("Received")[0]
    assert re.search(r"using TLSv1\.[23] with cipher", received), received
    queue_id = re.search(r"with ESMTPSA id (\w+)", received).group(1)
    m = re.search(r"%s: client=\S+, sasl_method=\w+, sasl_username=(\S+)@mail\.test"
                  % queue_id, postfix.log())
    assert m, postfix.log_tail()
    return m.group(1)


def named_upstream(postfix, pki, user, password, port=None):
    return {"host": "127.0.0.1", "port": str(port or postfix.submission_port),
            "tls": "starttls", "server_name": "mail.test", "ca_file": pki["ca"][0],
            "username": user, "password": password}


def test_two_devices_two_upstreams_each_with_its_own_sasl_user(postfix, pki, start_proxy):
    # [upstream] is a dead port: a device that fell through to it would not deliver.
    proxy = start_proxy(host="127.0.0.1", port=str(refusing_port()), tls="starttls",
                        ca_file=pki["ca"][0], more={
        "upstream first": named_upstream(postfix, pki, postfix.user, postfix.password),
        "upstream second": named_upstream(postfix, pki, postfix.user2, postfix.password2),
        "device one": {"match": "127.0.0.2", "upstream": "first"},
        "device two": {"match": "127.0.0.3", "upstream": "second"}})
    got = {}
    for src, dev in (("127.0.0.2", "one"), ("127.0.0.3", "two")):
        marker = new_marker()
        r = swaks(proxy.port, marker, "--local-interface", src)
        assert r.returncode == 0, r.stdout + r.stderr + proxy.stderr()
        got[dev] = sasl_user_of(postfix, delivered(postfix, marker, r.stdout + proxy.stderr()))
    assert got == {"one": postfix.user, "two": postfix.user2}, got
    msgs = proxy.wait_event("message", 2)
    assert sorted((m["device"], m["upstream"], m["result"]) for m in msgs) == [
        ("one", "first", "ok"), ("two", "second", "ok")], proxy.stderr()


def test_failover_from_a_dead_port_to_postfix(postfix, pki, start_proxy):
    dead = refusing_port()
    proxy = start_proxy(host="127.0.0.1", port=str(dead), tls="starttls",
                        ca_file=pki["ca"][0], more={
        "upstream postfix": named_upstream(postfix, pki, postfix.user2, postfix.password2),
        "device dev": {"match": "127.0.0.2", "upstream": "default, postfix"}})
    marker = new_marker()
    r = swaks(proxy.port, marker, "--local-interface", "127.0.0.2")
    assert r.returncode == 0, r.stdout + r.stderr + proxy.stderr()
    msg = delivered(postfix, marker, r.stdout + proxy.stderr())
    assert sasl_user_of(postfix, msg) == postfix.user2
    f, = proxy.wait_event("upstream.fail")
    assert (f["upstream"], f["port"], f["reason"], f["next"]) == \
        ("default", str(dead), "connect", "postfix"), f
