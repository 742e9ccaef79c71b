"""Fixtures for the TLS scan suite (tests/tls, `make tlsscan`): the test CA, a test upstream
and the built daemon, as in tests/integration; testssl.sh does the talking.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q -s tests/tls
Not part of `make check` (so not run under the sanitizer or valgrind): a scan is hundreds of
handshakes that prove nothing more about memory than the integration suite does, and costs
minutes there.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import pytest  # noqa: E402

from daemon import proxy_factory, sections  # noqa: E402
from fixtures import certs, upstream  # noqa: E402,F401


@pytest.fixture
def proxy(tmp_path, certs):  # noqa: F811
    """Factory: proxy(up, **sections) -> started Proxy; stopped (and checked) at teardown."""
    yield from proxy_factory(tmp_path, lambda up, **over: sections(certs, up, None, **over))
