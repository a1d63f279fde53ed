"""Limits: pool size per database/user, max_client_conn, max_db_connections,
FIFO waiting and query_wait_timeout."""

import threading
import time

import psycopg
import pytest

import pgwire
from harness import attempt
from drivers import run_threads
from test_pooling import MaxSampler


def hold_transactions(b, n, seconds, **connkw):
    """n clients each run one transaction of `seconds`; returns errors."""
    def client(i):
        with b.connect(**connkw) as c:
            with c.transaction():
                c.execute("SELECT pg_sleep(%s)", [seconds])
    return run_threads(n, client)


def test_pool_size(berth, pg, pool_mode):
    b = berth(pool_mode, pool_size=3)
    with MaxSampler(pg) as s:
        errors = hold_transactions(b, 9 if pool_mode == "transaction" else 3, 0.3)
    assert not errors, errors
    assert s.max == 3


def test_pool_per_database_user_pair(berth, pg):
    dbs = {"one": pg.conninfo(), "two": pg.conninfo(user="app2", password=pg.password2)}
    b = berth.file(settings={"default_pool_size": 2}, databases=dbs, dbname="one")
    with MaxSampler(pg, "app") as s1, MaxSampler(pg, "app2") as s2:
        e1 = []
        t = threading.Thread(target=lambda: e1.extend(hold_transactions(b, 6, 0.3, dbname="two")))
        t.start()
        e2 = hold_transactions(b, 6, 0.3, dbname="one")
        t.join(60)
    assert not e1 and not e2, (e1, e2)
    assert (s1.max, s2.max) == (2, 2)


def test_max_db_connections(berth, pg):
    dbs = {"one": pg.conninfo(), "two": pg.conninfo()}
    b = berth.file(settings={"default_pool_size": 5, "max_db_connections": 2,
                             "query_wait_timeout": 20}, databases=dbs, dbname="one")
    with MaxSampler(pg) as s:
        errors = hold_transactions(b, 6, 0.3)
    assert not errors, errors
    assert s.max == 2


def test_max_client_conn(berth):
    b = berth("transaction", pool_size=2, max_client_conn=3)
    conns = [b.connect() for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError):
            b.connect().close()
        ok, state, _ = attempt(b)
        assert (ok, state) == (False, "53300")
        for c in conns:
            assert c.execute("SELECT 1").fetchone() == (1,)
        conns.pop().close()
        time.sleep(0.2)
        with b.connect() as c:  # a slot is free again
            assert c.execute("SELECT 1").fetchone() == (1,)
    finally:
        for c in conns:
            c.close()


def test_query_wait_timeout(berth, pg):
    b = berth("transaction", pool_size=1, query_wait_timeout=1)
    with b.connect() as holder:
        waiter = pgwire.Conn(b.host, b.port, timeout=15)
        try:
            waiter.login("app", pg.password, "app")
            with holder.transaction():
                holder.execute("SELECT 1")
                t0 = time.monotonic()
                _rows, err = waiter.simple_query("SELECT 'never'")
                took = time.monotonic() - t0
            assert err and err["C"] == "57014", err
            assert 0.8 <= took <= 4, took
        finally:
            waiter.close()
        # the holder is unaffected, and once free the pool serves new clients
        assert holder.execute("SELECT 'holder'").fetchone() == ("holder",)
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_query_wait_timeout_session_mode(berth, pg):
    b = berth("session", pool_size=1, query_wait_timeout=1)
    with b.connect() as holder:
        holder.execute("SELECT 1")
        ok, state, took = attempt(b)
        assert (ok, state) == (False, "57014")
        assert took <= 4


def test_waiters_served_in_fifo_order(berth, pg):
    """Clients queued one after another behind a held server are served in
    that order (as told by the server's clock)."""
    b = berth("transaction", pool_size=1, query_wait_timeout=30)
    served = {}
    conns = [b.connect() for _ in range(5)]
    holder = b.connect(autocommit=False)
    try:
        holder.execute("SELECT 1")  # holds the only server
        threads = []

        def run(i):
            served[i] = conns[i].execute("SELECT clock_timestamp()").fetchone()[0]

        for i in range(5):
            t = threading.Thread(target=run, args=(i,))
            t.start()
            threads.append(t)
            time.sleep(0.2)  # queue up in a known order
        holder.rollback()
        for t in threads:
            t.join(20)
        assert sorted(served, key=served.get) == [0, 1, 2, 3, 4]
    finally:
        holder.close()
        for c in conns:
            c.close()


def test_waiting_clients_all_served(berth, pg):
    """50 clients, pool of 2, each transaction 50 ms: everyone gets served."""
    b = berth("transaction", pool_size=2, query_wait_timeout=60)
    with MaxSampler(pg) as s:
        errors = hold_transactions(b, 50, 0.05)
    assert not errors, errors[:3]
    assert s.max <= 2


def test_client_login_timeout_raw(berth):
    b = berth("transaction", pool_size=1, client_login_timeout=1)
    c = pgwire.Conn(b.host, b.port)
    try:
        c.send(pgwire.startup_packet({"user": "app", "database": "app"})[:7])  # half a packet
        t0 = time.monotonic()
        assert c.is_closed(6)
        assert time.monotonic() - t0 <= 5
    finally:
        c.close()
