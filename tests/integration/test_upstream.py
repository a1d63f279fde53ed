"""Upstream down and back: clients get a clear error quickly, and berth
reconnects by itself. Uses a PostgreSQL of its own (pg_private)."""

import os
import signal
import subprocess
import time

import psycopg
import pytest

from harness import NODE_DIR, attempt


def try_query(b, timeout=15):
    """(ok, sqlstate, seconds) for a fresh client's SELECT 1."""
    return attempt(b, timeout=timeout)


def wait_ok(b, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = try_query(b, timeout=5)
        if last[0]:
            return True
        time.sleep(0.2)
    raise AssertionError("berth did not recover within %ss: %r" % (timeout, last))


@pytest.fixture
def upstream(pg_private):
    """pg_private, guaranteed running again after the test."""
    yield pg_private
    if not pg_private.running:
        pg_private.start()


@pytest.mark.timeout(90)
def test_upstream_down_then_back(berth, upstream, pool_mode):
    b = berth(pool_mode, pool_size=2, pg=upstream, server_login_retry=1, server_connect_timeout=2)
    assert try_query(b)[0]
    upstream.stop("fast")
    for _ in range(3):
        ok, state, took = try_query(b)
        assert not ok
        assert took < 5, "a client waited %.1fs for a server that is down" % took
        assert state == "08006", state
    upstream.start()
    t0 = time.monotonic()
    wait_ok(b, 15)
    assert time.monotonic() - t0 < 15
    assert b.alive()
    # and it keeps working
    with b.connect() as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)


@pytest.mark.timeout(60)
def test_server_killed_under_client(berth, upstream, pool_mode):
    """A client whose server goes away mid-session gets an error, not a hang;
    new clients get fresh server connections."""
    b = berth(pool_mode, pool_size=2, pg=upstream, server_login_retry=1)
    with b.connect() as c:
        c.execute("SELECT 1")
        upstream.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE usename = 'app' AND backend_type = 'client backend'")
        time.sleep(0.3)
        t0 = time.monotonic()
        try:
            c.execute("SELECT 1")
            # transaction mode may hand the client a new server: also fine
            assert pool_mode == "transaction"
        except psycopg.Error as e:
            assert e.sqlstate in ("08006", "57P01", None), e.sqlstate
        assert time.monotonic() - t0 < 5
    wait_ok(b, 10)


@pytest.mark.timeout(60)
def test_query_in_flight_when_server_dies(berth, upstream):
    b = berth("transaction", pool_size=1, pg=upstream, server_login_retry=1)
    with b.connect() as c:
        import threading
        res = {}

        def run():
            try:
                c.execute("SELECT pg_sleep(20)")
                res["ok"] = True
            except psycopg.Error as e:
                res["err"] = e

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.5)
        upstream.stop("immediate")
        t.join(10)
        assert not t.is_alive(), "client hangs after its server died"
        assert "err" in res
        assert res["err"].sqlstate in ("08006", "57P01", None)
    upstream.start()
    wait_ok(b, 15)


def run_healthcheck(b, timeout=60):
    env = dict(os.environ, DATABASE_URL=b.url())
    t0 = time.monotonic()
    r = subprocess.run(["node", os.path.join(NODE_DIR, "healthcheck.js")], env=env,
                       capture_output=True, text=True, timeout=timeout, cwd=NODE_DIR)
    return r, time.monotonic() - t0


@pytest.mark.timeout(90)
def test_healthcheck_through_berth(berth, upstream):
    b = berth("transaction", pool_size=2, pg=upstream, server_login_retry=1,
              server_connect_timeout=2)
    r, took = run_healthcheck(b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout.lower()
    upstream.stop("fast")
    r, took = run_healthcheck(b)
    assert r.returncode != 0
    assert took < 10, "health check took %.1fs to fail" % took
    msg = r.stderr
    assert "08006" in msg or "server" in msg.lower(), msg
    assert "timeout" not in msg.lower(), "berth made the client time out: " + msg
    upstream.start()
    deadline = time.monotonic() + 15
    while True:
        r, _ = run_healthcheck(b)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
    assert r.returncode == 0, r.stderr


def upstream_pids(pg):
    """The postmaster and every process it started."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        top = int(f.readline())
    pids = [top]
    with open("/proc/%d/task/%d/children" % (top, top)) as f:
        pids += [int(p) for p in f.read().split()]
    return pids


@pytest.mark.timeout(90)
def test_frozen_upstream_fails_a_client_in_seconds(berth, upstream):
    """The upstream stops answering without closing anything (a frozen host,
    a cut network): TCP stays up, so a server connection left idle in the
    pool would take a query and hang until TCP gives up. Once a health check
    fails, idle servers are checked before use, within health_check_timeout,
    so the client gets an error in seconds; and berth serves again once the
    upstream answers."""
    b = berth("transaction", pool_size=3, pg=upstream, health_check_period=0.3,
              health_check_timeout=0.5, server_connect_timeout=2, server_login_retry=1)
    conns = [b.connect() for _ in range(3)]
    for c in conns:  # three servers open at once, then idle in the pool
        c.execute("BEGIN")
        c.execute("SELECT 1")
    for c in conns:
        c.execute("COMMIT")
        c.close()
    pids = upstream_pids(upstream)
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        time.sleep(1.5)  # a health check times out
        ok, state, took = try_query(b, timeout=30)
        assert not ok
        assert state == "08006", state
        assert took < 8, "a client waited %.1fs on a frozen upstream" % took
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    wait_ok(b, 15)
    assert b.alive()
