"""PgBouncer's per-database and per-user options, so that a PgBouncer file
moves over unchanged: connect_query, server_lifetime, query_wait_timeout and
load_balance_hosts in [databases]; reserve_pool_size and the timeouts in
[users]. Each against a real PostgreSQL, with the global setting left
different so that only the entry's value can explain the result."""

import os
import subprocess
import time

import psycopg
import pytest

from harness import BERTH_BIN

CQ = r"connect_query='SET enable_seqscan = off; SET work_mem = \'7MB\''"


def start(berth, pg, settings=None, databases=None, users_section=""):
    b = berth.file(settings=settings, databases=databases, start=False)
    if users_section:
        with open(b.ini_path, "a") as f:
            f.write("\n[users]\n" + users_section + "\n")
    return b.start()


def server_settings(c):
    return c.execute("SELECT current_setting('enable_seqscan'), current_setting('work_mem'), "
                     "pg_backend_pid()").fetchone()


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_connect_query_on_every_server_and_after_reset(berth, pg, pool_mode):
    b = start(berth, pg, settings={"pool_mode": pool_mode, "query_wait_timeout": 5},
              databases={"app": pg.conninfo() + " pool_size=1 " + CQ})
    with b.connect() as c:
        seqscan, work_mem, pid = server_settings(c)
        assert (seqscan, work_mem) == ("off", "7MB")
        # A statement that makes berth look for session state: connect_query's
        # own settings do not pin the client, so a second client still gets in.
        c.execute("CREATE TEMP TABLE t (a int)")
        c.execute("DROP TABLE t")
        with b.connect() as c2:
            if pool_mode == "transaction":
                assert server_settings(c2) == ("off", "7MB", pid)
        c.execute("SET enable_seqscan = on")  # the client's own change
        assert server_settings(c)[0] == "on"
    # Session mode resets the server (DISCARD ALL) and runs connect_query again;
    # transaction mode pinned the client for its SET and resets the same way.
    with b.connect() as c3:
        assert server_settings(c3) == ("off", "7MB", pid)


def test_connect_query_errors_are_logged_not_fatal(berth, pg):
    b = start(berth, pg, databases={
        "app": pg.conninfo() + " connect_query='SELECT no_such_function()'",
        "txn": pg.conninfo() + " connect_query='BEGIN'"})
    with b.connect() as c:
        assert c.execute("SELECT 41 + 1").fetchone()[0] == 42
    assert "no_such_function" in b.stderr()
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(dbname="txn").close()
    assert "connect_query left a transaction open" in str(ei.value)
    assert time.monotonic() - t0 < 10


def test_entry_server_lifetime_and_query_wait_timeout(berth, pg):
    b = start(berth, pg, settings={"server_lifetime": 3600, "query_wait_timeout": 120,
                                   "admin_users": "app"},
              databases={"app": pg.conninfo() + " pool_size=1 server_lifetime=1 "
                                                "query_wait_timeout=1"})
    with b.connect() as c:
        c.execute("BEGIN")
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]  # holds the only server
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as ei:
            with b.connect() as c2:
                c2.execute("SELECT 1")
        waited = time.monotonic() - t0
        assert "query_wait_timeout" in str(ei.value)
        assert 0.8 < waited < 10, waited
        c.execute("COMMIT")
    time.sleep(2.5)  # past the entry's server_lifetime: the connection is replaced
    with b.connect() as c:
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    with psycopg.connect(host=b.host, port=b.port, user="app", password=pg.password,
                         dbname="pgbouncer", autocommit=True) as adm:
        cur = adm.execute("SHOW DATABASES")
        cols = [d.name for d in cur.description]
        row = dict(zip(cols, [r for r in cur.fetchall() if r[0] == "app"][0]))
        assert row["server_lifetime"] == 1


def test_user_timeouts_and_reserve_pool(berth, pg):
    b = start(berth, pg, settings={"query_timeout": 0, "idle_transaction_timeout": 0,
                                   "admin_users": "app"},
              users_section="app = query_timeout=1 reserve_pool_size=3")
    with b.connect() as c:
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as ei:
            c.execute("SELECT pg_sleep(30)")
        assert "query_timeout" in str(ei.value)
        assert time.monotonic() - t0 < 10
    with b.connect() as c:  # others are served as before
        assert c.execute("SELECT 7").fetchone()[0] == 7
    with psycopg.connect(host=b.host, port=b.port, user="app", password=pg.password,
                         dbname="pgbouncer", autocommit=True) as adm:
        cur = adm.execute("SHOW USERS")
        cols = [d.name for d in cur.description]
        row = dict(zip(cols, [r for r in cur.fetchall() if r[0] == "app"][0]))
        assert row["reserve_pool_size"].strip() == "3"


def backend_routes(pg):
    """How berth's server connections reached PostgreSQL: unix socket or TCP."""
    rows = pg.sql("SELECT client_addr IS NULL FROM pg_stat_activity WHERE usename = 'app' "
                  "AND datname = 'app' AND backend_type = 'client backend' "
                  "AND application_name <> 'berth-health'", dbname="postgres")
    return sorted("unix" if r[0] else "tcp" for r in rows)


@pytest.mark.parametrize("mode", ["round-robin", "disable"])
def test_load_balance_hosts(berth, pg, mode):
    entry = "host=%s,127.0.0.1 port=%d dbname=app user=app password=%s pool_size=4 " \
            "load_balance_hosts=%s" % (pg.sockdir, pg.port, pg.password, mode)
    b = start(berth, pg, databases={"app": entry})
    conns = [b.connect() for _ in range(4)]
    try:
        for c in conns:  # four open transactions: four server connections
            c.execute("BEGIN")
            c.execute("SELECT 1")
        routes = backend_routes(pg)
        if mode == "round-robin":
            assert routes == ["tcp", "tcp", "unix", "unix"], routes
        else:
            assert routes == ["unix"] * 4, routes
    finally:
        for c in conns:
            c.close()


def test_pidfile(berth, pg, tmp_path):
    """pidfile: written at start, a second berth on the same file refuses to
    start while the first runs, removed at exit; a stale one is replaced."""
    path = str(tmp_path / "berth.pid")
    b = berth.file(settings={"pidfile": path})
    with open(path) as f:
        assert f.read() == "%d\n" % b.pid
    second = berth.file(settings={"pidfile": path}, start=False)
    proc = subprocess.run([BERTH_BIN, second.ini_path], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=20)
    assert proc.returncode == 1
    assert ("process %d is running" % b.pid) in proc.stdout.decode()
    with b.connect() as c:  # the first is untouched
        assert c.execute("SELECT 1").fetchone()[0] == 1
    b.stop()
    assert not os.path.exists(path)
    with open(path, "w") as f:
        f.write("999999999\n")  # no such process: stale
    third = berth.file(settings={"pidfile": path})
    with open(path) as f:
        assert f.read() == "%d\n" % third.pid
