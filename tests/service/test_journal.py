"""Under journald ($JOURNAL_STREAM set) every line carries a <N> priority and no timestamp."""
import re
import signal

from servicelib import send_message

PRIO = {"error": "3", "warn": "4", "info": "6", "debug": "7"}


def run_a_little(p, up):
    send_message(p.port, "journal")
    c = p.client()                       # one warn: a command line the proxy refuses
    c.read_reply()
    c.expect("STARTTLS", 502)
    c.expect("QUIT", 221)
    c.close()
    with open(p.conf, "a") as f:
        f.write("bogus = 1\n")          # one error: a refused reload
    p.signal(signal.SIGHUP)
    assert p.wait_event("config.reload-refused")
    assert up.wait_messages(1)
    assert p.stop() == 0


def test_journal_stream_lines_have_priority_prefix_and_no_timestamp(upstream, proxy):
    up = upstream()
    p = proxy(up, env={"JOURNAL_STREAM": "1:2"}, proxy={"workers": "2"})
    run_a_little(p, up)
    lines = p.stderr().splitlines()
    assert len(lines) >= 10
    for line in lines:
        m = re.match(r"^<([3467])>(error|warn|info|debug) (sid=\S+ )?event=", line)
        assert m, "line without a journal prefix: %r" % line
        assert PRIO[m.group(2)] == m.group(1), line
    prios = {l[1] for l in lines}
    assert {"3", "6"} <= prios, prios


def test_journal_stream_json_lines_have_priority_prefix(upstream, proxy):
    up = upstream()
    p = proxy(up, env={"JOURNAL_STREAM": "1:2"}, log={"format": "json"})
    run_a_little(p, up)
    lines = p.stderr().splitlines()
    assert lines
    for line in lines:
        assert re.match(r'^<[3467]>\{"ts":"', line), line


def test_without_journal_stream_lines_start_with_a_timestamp(upstream, proxy):
    up = upstream()
    p = proxy(up)
    run_a_little(p, up)
    for line in p.stderr().splitlines():
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) ",
                        line), line
