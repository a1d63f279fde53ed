"""Fixtures for berth's integration tests: a throwaway PostgreSQL, berth
launchers for zero-file and file mode, a per-test time limit, berth's stderr
on every failure, and a scan of every berth log for leaked passwords."""

import os
import shutil
import signal

import pytest

import harness
from harness import Berth, PgServer, free_port, make_ini, write_userlist, zero_file_env

DEFAULT_TEST_TIMEOUT = 60


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test time limit (default %d s)"
                            % DEFAULT_TEST_TIMEOUT)


# --- a per-test time limit (no pytest-timeout on Debian's list we use) ------

class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    m = item.get_closest_marker("timeout")
    limit = m.args[0] if m else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise TestTimeout("test ran longer than %d s (a hang?)" % limit)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- berth's stderr (and PostgreSQL's log tail) on failures -----------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        shown = []
        for b in list(getattr(item, "_berths_seen", [])) + list(harness.LIVE_BERTHS):
            if b in shown:
                continue
            shown.append(b)
            txt = b.stderr()
            rep.sections.append(("berth pid %s stderr (%s)" % (
                b.proc.pid if b.proc else "?", b.workdir), txt[-8000:] or "(empty)"))


# --- PostgreSQL --------------------------------------------------------------

@pytest.fixture(scope="session")
def pg():
    """The shared throwaway PostgreSQL. Never stopped by a test: upstream-down
    tests use pg_private."""
    server = PgServer("main")
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def pg_private():
    """A PostgreSQL of the module's own, which its tests may stop and start."""
    server = PgServer("private")
    yield server
    server.destroy()


# --- berth launchers ---------------------------------------------------------

class BerthFactory:
    def __init__(self, default_pg, node=None):
        self.default_pg = default_pg
        self.started = []
        self.node = node

    def _track(self, b):
        self.started.append(b)
        if self.node is not None:
            seen = getattr(self.node, "_berths_seen", [])
            seen.append(b)
            self.node._berths_seen = seen
        return b

    def __call__(self, pool_mode="transaction", pool_size=None, pg=None, start=True,
                 **settings):
        """Zero-file mode: DATABASE_URL plus BERTH_<KEY> variables."""
        pg = pg or self.default_pg
        port = free_port()
        env = zero_file_env(pg, port, pool_mode, pool_size, **settings)
        b = self._track(Berth(env, port=port, user=pg.user, password=pg.password,
                              dbname=pg.dbname))
        return b.start() if start else b

    def file(self, settings=None, databases=None, users=None, pg=None, env=None,
             login=("app", None), dbname="app", start=True):
        """File mode: `berth berth.ini`. databases default to `app` (forced user app);
        users (an auth_file) default to app with its plain password. login is the
        (user, password) clients use; password None means pg's app password."""
        pg = pg or self.default_pg
        port = free_port()
        b = Berth(env or {}, port=port, user=login[0],
                  password=login[1] if login[1] is not None else pg.password, dbname=dbname)
        if databases is None:
            databases = {"app": pg.conninfo()}
        if users is None:
            users = {pg.user: pg.password}
        auth_file = write_userlist(os.path.join(b.workdir, "userlist.txt"), users) \
            if users else None
        s = {"pool_mode": "transaction"}
        s.update(settings or {})
        ini = make_ini(port, s, databases, auth_file)
        b.ini_path = os.path.join(b.workdir, "berth.ini")
        with open(b.ini_path, "w") as f:
            f.write(ini)
        self._track(b)
        return b.start() if start else b

    def stop_all(self):
        leaks = []
        for b in self.started:
            b.stop()
            err = b.stderr()
            for s in harness.SECRETS:
                if s in err:
                    leaks.append("berth (%s) logged a password: ...%s..." % (
                        b.workdir, err[max(0, err.find(s) - 80):err.find(s) + 40]))
            shutil.rmtree(b.workdir, ignore_errors=True)
        return leaks


def _berth_fixture(request, pg):
    f = BerthFactory(pg, request.node)
    yield f
    leaks = f.stop_all()
    # Leave PostgreSQL without this test's server connections before the next test.
    if pg.running:
        for u in ("app", "app2", "md5user"):
            pg.wait_server_conns(lambda n: n == 0, usename=u, timeout=5)
    assert not leaks, "\n".join(leaks)


@pytest.fixture
def berth(request, pg):
    """Factory: berth(pool_mode=, pool_size=, **BERTH_settings) and
    berth.file(settings=, databases=, users=, login=). Stopped after the test."""
    yield from _berth_fixture(request, pg)


@pytest.fixture(scope="module")
def module_berth(request, pg):
    """Like berth, but instances live for the whole module (for read-only tests)."""
    yield from _berth_fixture(request, pg)


@pytest.fixture(params=["session", "transaction"])
def pool_mode(request):
    return request.param
