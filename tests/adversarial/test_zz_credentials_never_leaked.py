"""Promise 3, suite-wide: runs last (file order). Over every proxy log and every byte any
client received during the whole adversarial run so far, the test password never appears,
nor any base64 form of it (AUTH PLAIN "\\0user\\0pass", AUTH LOGIN b64(pass), any alignment).

conftest.pytest_sessionfinish repeats the check at the very end and fails the run on a hit, so
a leak in a test that runs after this one (or under -k) is caught as well.
"""
import pytest

from adv import RECORD, find_secrets, secret_forms


def test_no_credential_in_any_log_line_or_reply_of_the_whole_suite():
    logs, client = RECORD["logs"], RECORD["client"]
    if len(logs) < 50:
        pytest.skip("run with the whole adversarial suite (only %d logs recorded)" % len(logs))
    text = "".join(logs)
    # The record must cover the sensitive paths, or its silence proves nothing.
    assert "event=auth.ok" in text or '"event":"auth.ok"' in text
    assert "event=auth.fail" in text
    assert "masked=yes" in text, "no debug-level AUTH line was logged"
    assert sum(len(c) for c in client) > 10000
    assert len(secret_forms()) >= 4
    hits = find_secrets(logs + client)
    assert hits == [], "credential forms found: %r" % hits[:5]
