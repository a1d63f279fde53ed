"""CancelRequest through berth: reaches the right query, and only that."""

import random
import threading
import time

import psycopg
import pytest

import pgwire


class Running:
    """Runs a query on conn in a thread; result is (value|None, exception|None, seconds)."""

    def __init__(self, conn, sql):
        self.result = None
        self.t = threading.Thread(target=self.run, args=(conn, sql), daemon=True)
        self.t.start()

    def run(self, conn, sql):
        t0 = time.monotonic()
        try:
            v = conn.execute(sql).fetchone()
            self.result = (v, None, time.monotonic() - t0)
        except psycopg.Error as e:
            self.result = (None, e, time.monotonic() - t0)

    def join(self, timeout=40):
        self.t.join(timeout)
        assert not self.t.is_alive(), "query thread still running"
        return self.result


def wait_active(pg, query_part, n=1, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pg.sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                     "AND query LIKE %s", ["%" + query_part + "%"])[0][0]
        if got >= n:
            return
        time.sleep(0.05)
    raise AssertionError("query %r not running on the server" % query_part)


@pytest.mark.parametrize("in_txn", [False, True])
def test_cancel_running_query(berth, pg, pool_mode, in_txn):
    b = berth(pool_mode, pool_size=2)
    with b.connect(autocommit=not in_txn) as c:
        if in_txn:
            c.execute("SELECT 1")
        r = Running(c, "SELECT pg_sleep(30) /* cancel-me */")
        wait_active(pg, "cancel-me")
        t0 = time.monotonic()
        c.cancel()
        _, err, _ = r.join()
        assert time.monotonic() - t0 < 3
        assert isinstance(err, psycopg.errors.QueryCanceled), err
        assert err.sqlstate == "57014"
        if in_txn:
            c.rollback()
        assert c.execute("SELECT 'alive'").fetchone() == ("alive",)


def test_cancel_of_idle_client_does_not_hit_others(berth, pg):
    """Transaction mode, one server: A ran a query on it, then B runs a long one
    there. A's cancel must not reach B's query."""
    b = berth("transaction", pool_size=1)
    with b.connect() as a, b.connect() as bb:
        pid_a = a.execute("SELECT pg_backend_pid()").fetchone()[0]
        r = Running(bb, "SELECT pg_sleep(1.5), pg_backend_pid() /* b-runs */")
        wait_active(pg, "b-runs")
        a.cancel()
        a.cancel()
        v, err, _ = r.join()
        assert err is None, err
        assert v[1] == pid_a  # it really was the server A had used
        assert a.execute("SELECT 1").fetchone() == (1,)


def test_cancel_idle_session_client(berth, pg):
    b = berth("session", pool_size=2)
    with b.connect() as a, b.connect() as bb:
        a.execute("SELECT 1")
        r = Running(bb, "SELECT pg_sleep(1.2) /* b-session */")
        wait_active(pg, "b-session")
        a.cancel()
        _, err, _ = r.join()
        assert err is None, err
        assert a.execute("SELECT 2").fetchone() == (2,)


def test_cancel_with_wrong_key(berth, pg, pool_mode):
    b = berth(pool_mode, pool_size=2)
    with b.connect() as c:
        r = Running(c, "SELECT pg_sleep(1.5) /* wrong-key */")
        wait_active(pg, "wrong-key")
        pid = c.info.backend_pid & 0xFFFFFFFF  # berth's pid for this client, from BackendKeyData
        for p, k in [(pid, random.getrandbits(32)), (pid ^ 1, random.getrandbits(32)),
                     (random.getrandbits(32), random.getrandbits(32))]:
            s = pgwire.Conn(b.host, b.port)
            s.send(pgwire.cancel_packet(p, k))
            assert s.is_closed(5)
            s.close()
        _, err, elapsed = r.join()
        assert err is None, err
        assert elapsed >= 1.4


def test_raw_cancel_with_right_key(berth, pg, pool_mode):
    """Our own CancelRequest with the key berth gave us at login."""
    b = berth(pool_mode, pool_size=2)
    c = pgwire.Conn(b.host, b.port, timeout=30)
    try:
        c.login("app", pg.password, "app")
        assert c.backend_key is not None
        c.send(pgwire.query_msg("SELECT pg_sleep(30) /* raw-cancel */"))
        wait_active(pg, "raw-cancel")
        t0 = time.monotonic()
        s = pgwire.Conn(b.host, b.port)
        s.send(pgwire.cancel_packet(*c.backend_key))
        s.is_closed(5)
        s.close()
        msgs = c.read_until({b"Z"})
        assert time.monotonic() - t0 < 3
        errs = [pgwire.parse_error_fields(p) for t, p in msgs if t == b"E"]
        assert errs and errs[0]["C"] == "57014"
    finally:
        c.close()


def test_backend_keys_differ_per_client(berth):
    b = berth("transaction", pool_size=1)
    conns = [b.connect() for _ in range(5)]
    try:
        assert len({c.info.backend_pid for c in conns}) == 5
    finally:
        for c in conns:
            c.close()


@pytest.mark.timeout(60)
def test_many_cancels_under_load(berth, pg):
    """Cancel storms while other clients work: only the cancelled ones fail."""
    b = berth("transaction", pool_size=4)
    errors = []

    def victim(i):
        with b.connect() as c:
            r = Running(c, "SELECT pg_sleep(20) /* storm-%d */" % i)
            wait_active(pg, "storm-%d " % i, timeout=10)
            c.cancel()
            _, err, _ = r.join()
            if not isinstance(err, psycopg.errors.QueryCanceled):
                errors.append(("victim", i, repr(err)))

    def worker(i):
        with b.connect() as c:
            for n in range(30):
                try:
                    assert c.execute("SELECT %s::int", [n]).fetchone() == (n,)
                except Exception as e:  # noqa: BLE001
                    errors.append(("worker", i, repr(e)))
                    return

    ts = [threading.Thread(target=victim, args=(i,)) for i in range(2)] + \
         [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(50)
    assert not errors, errors
