"""pytest fixtures every suite shares: the test CA and test upstreams.

A suite's conftest.py imports them (`from fixtures import certs, upstream`), which is how
pytest picks up fixtures defined outside a conftest.
"""
import pytest

import testca
import tokenserver
import upstream as upstream_mod


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """{name: (certfile, keyfile)} from testca; certs['ca'][0] is the CA file."""
    return testca.make_ca(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def upstream(certs):
    """Factory: upstream(mode='starttls', cert='good', **faults) -> started Upstream."""
    made = []

    def make(mode="starttls", cert="good", **kw):
        cf, kf = certs[cert]
        u = upstream_mod.Upstream(cf, kf, mode, io_timeout=kw.pop("io_timeout", 15), **kw)
        made.append(u)
        return u.start()

    yield make
    for u in made:
        u.stop()
        for i, c in enumerate(u.connections):   # shown by pytest only when the test failed
            print("upstream %s:%d conn %d tls=%s error=%s commands=%r" % (
                u.mode, u.port, i, c.tls, c.error, [l[:80] for _, l in c.commands]))


@pytest.fixture
def tokens(certs):
    """Factory: tokens(**kw) -> a started TokenServer (tests/lib/tokenserver.py) with the
    test CA's 'good' certificate; stopped at teardown."""
    made = []

    def make(**kw):
        cf, kf = certs["good"]
        ts = tokenserver.TokenServer(cf, kf, **kw).start()
        made.append(ts)
        return ts

    yield make
    for ts in made:
        ts.stop()
