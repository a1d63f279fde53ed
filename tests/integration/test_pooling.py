"""Transaction and session pooling: many clients on few server connections,
no mixed-up results, server connections handed over only when clean."""

import random
import socket
import threading
import time

import psycopg
import pytest

from drivers import run_threads
from harness import NOT_HEALTH_CHECK, attempt


class MaxSampler:
    """Samples pg_stat_activity in the background, keeps the maximum."""

    def __init__(self, pg, usename="app"):
        self.pg, self.usename, self.max = pg, usename, 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with self.pg.connect() as c:
            while not self.stop.is_set():
                n = c.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                              "'client backend' AND usename = %s" + NOT_HEALTH_CHECK,
                              [self.usename]).fetchone()[0]
                self.max = max(self.max, n)
                time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join(5)


@pytest.mark.timeout(150)
def test_200_clients_on_pool_of_5(berth, pg):
    b = berth("transaction", pool_size=5, max_client_conn=400)
    pg.sql("DROP TABLE IF EXISTS mix; CREATE TABLE mix (client int, n int)")
    pg.sql("GRANT ALL ON mix TO app")
    barrier = threading.Barrier(200, timeout=60)

    def client(i):
        with b.connect() as c:
            barrier.wait()  # all 200 connected at once
            for n in range(5):
                v, _pid = c.execute("SELECT %s::int, pg_backend_pid()", [i * 1000 + n]).fetchone()
                assert v == i * 1000 + n
                s = c.execute("SELECT %s::text || '-' || %s::text", [str(i), "x" * (i % 7)])
                assert s.fetchone()[0] == "%d-%s" % (i, "x" * (i % 7))
            with c.transaction():
                c.execute("INSERT INTO mix VALUES (%s, 1), (%s, 2)", [i, i])
                rows = c.execute("SELECT n FROM mix WHERE client = %s ORDER BY n", [i]).fetchall()
                assert rows == [(1,), (2,)]
                # a multi-statement simple query: both results are ours
                cur = c.cursor()
                cur.execute("SELECT %d; SELECT %d" % (i, -i))
                assert cur.fetchone() == (i,)
                assert cur.nextset() and cur.fetchone() == (-i,)

    with MaxSampler(pg) as s:
        errors = run_threads(200, client)
    assert not errors, errors[:5]
    assert 1 <= s.max <= 5, "server connections for app: %d" % s.max
    assert pg.sql("SELECT count(*), count(DISTINCT client) FROM mix") == [(400, 200)]


def test_transaction_keeps_its_server(berth, pg):
    """In BEGIN a client keeps its backend across statements while other
    clients keep running; they never run on it meanwhile, nor see its
    uncommitted state."""
    b = berth("transaction", pool_size=2)
    pg.sql("DROP TABLE IF EXISTS keep; CREATE TABLE keep (v text); GRANT ALL ON keep TO app")
    stop = threading.Event()
    seen = []  # (pid, server clock) of every query the others ran

    def other(i):
        with b.connect() as c:
            while not stop.is_set():
                seen.append(c.execute("SELECT pg_backend_pid(), clock_timestamp(), "
                                      "(SELECT count(*) FROM keep)").fetchone())

    ts = [threading.Thread(target=other, args=(i,), daemon=True) for i in range(4)]
    for t in ts:
        t.start()
    try:
        with b.connect() as a:
            with a.transaction():
                pid0, t_start = a.execute("SELECT pg_backend_pid(), clock_timestamp()").fetchone()
                a.execute("INSERT INTO keep VALUES ('uncommitted')")
                a.execute("CREATE TEMP TABLE mine (x int) ON COMMIT DROP")
                xid = a.execute("SELECT txid_current()").fetchone()[0]
                for _ in range(10):
                    time.sleep(0.05)
                    assert a.execute("SELECT pg_backend_pid()").fetchone()[0] == pid0
                    assert a.execute("SELECT txid_current()").fetchone()[0] == xid
                    assert a.execute("SELECT count(*) FROM mine").fetchone()[0] == 0
                t_end = a.execute("SELECT clock_timestamp()").fetchone()[0]
                a.execute("DELETE FROM keep")
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    during = [r for r in seen if t_start <= r[1] <= t_end]
    assert len(during) > 10, "the other clients got no work done meanwhile"
    assert not [r for r in during if r[0] == pid0], "another client ran on a server in a transaction"
    assert {r[2] for r in seen} == {0}


@pytest.mark.parametrize("how", ["terminate", "abrupt"])
def test_disconnect_mid_transaction_rolls_back(berth, pg, how):
    b = berth("transaction", pool_size=1)
    pg.sql("DROP TABLE IF EXISTS gone; CREATE TABLE gone (v text); GRANT ALL ON gone TO app")
    a = b.connect(autocommit=False)
    a.execute("INSERT INTO gone VALUES ('dirty')")
    a.execute("SET LOCAL statement_timeout = '1234ms'")
    if how == "abrupt":
        # no Terminate: the TCP connection just goes away
        s = socket.socket(fileno=a.pgconn.socket)
        s.shutdown(socket.SHUT_RDWR)
        s.detach()
    a.close()
    with b.connect() as c:
        in_txn, xid, st, rows = c.execute(
            "SELECT now() = statement_timestamp(), txid_current_if_assigned(), "
            "current_setting('statement_timeout'), (SELECT count(*) FROM gone)").fetchone()
        assert (in_txn, xid, rows) == (True, None, 0)
        assert st == "0"
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert pg.sql("SELECT count(*) FROM gone") == [(0,)]
    n = pg.wait_server_conns(lambda n: n == 0, usename="app", state="idle in transaction",
                             timeout=5)
    assert n == 0


def test_failed_transaction_not_returned(berth, pg):
    """A server in a failed transaction ('E') stays with its client until ROLLBACK."""
    b = berth("transaction", pool_size=1, query_wait_timeout=2)
    with b.connect(autocommit=False) as a:
        pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
        with pytest.raises(psycopg.errors.DivisionByZero):
            a.execute("SELECT 1/0")
        # another client cannot get the only server while a is in 'E'
        ok, state, _ = attempt(b)
        assert (ok, state) == (False, "57014")
        a.rollback()
        assert a.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        a.rollback()
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_session_mode_one_server_per_client(berth, pg):
    b = berth("session", pool_size=3)
    conns = [b.connect() for _ in range(3)]
    try:
        pids = [c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns]
        assert len(set(pids)) == 3
        for _ in range(5):
            for c, p in zip(conns, pids):
                assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == p
        assert pg.server_conns("app") == 3
    finally:
        for c in conns:
            c.close()


def test_session_mode_reset_query(berth, pg):
    """A's session state (SET work_mem, temp table, prepared statement) is gone
    for B on the same backend: server_reset_query ran."""
    b = berth("session", pool_size=1)
    with b.connect() as a:
        pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
        a.execute("SET work_mem = '77MB'")
        a.execute("CREATE TEMP TABLE t_a (x int)")
        a.execute("PREPARE p_a AS SELECT 1")
    with b.connect() as bb:
        assert bb.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        assert bb.execute("SHOW work_mem").fetchone()[0] != "77MB"
        assert bb.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0
        assert bb.execute("SELECT to_regclass('pg_temp.t_a')").fetchone()[0] is None


def test_session_mode_custom_reset_query(berth, pg):
    b = berth.file(settings={"pool_mode": "session", "default_pool_size": 1,
                             "server_reset_query": "RESET work_mem"})
    with b.connect() as a:
        a.execute("SET work_mem = '77MB'")
        a.execute("SET maintenance_work_mem = '99MB'")
    with b.connect() as bb:
        assert bb.execute("SHOW work_mem").fetchone()[0] != "77MB"
        # only the configured reset ran, not DISCARD ALL
        assert bb.execute("SHOW maintenance_work_mem").fetchone()[0] == "99MB"


def test_session_mode_clients_wait_for_a_free_server(berth, pg):
    b = berth("session", pool_size=2)
    order = []

    def client(i):
        with b.connect() as c:
            c.execute("SELECT pg_sleep(0.3)")
            order.append(i)

    with MaxSampler(pg) as s:
        errors = run_threads(6, client)
    assert not errors, errors
    assert sorted(order) == list(range(6))
    assert s.max <= 2


@pytest.mark.timeout(90)
def test_random_workload_many_clients(berth, pg, pool_mode):
    """Randomised mix on both modes: every answer belongs to its asker."""
    b = berth(pool_mode, pool_size=4 if pool_mode == "transaction" else 30)
    rnd = random.Random(7)
    plans = [[rnd.randint(0, 3) for _ in range(15)] for _ in range(30)]

    def client(i):
        with b.connect() as c:
            for step, kind in enumerate(plans[i]):
                tag = i * 100 + step
                if kind == 0:
                    assert c.execute("SELECT %s::int", [tag]).fetchone() == (tag,)
                elif kind == 1:
                    with c.transaction():
                        assert c.execute("SELECT %s::int", [tag]).fetchone() == (tag,)
                        assert c.execute("SELECT %s::int + 1", [tag]).fetchone() == (tag + 1,)
                elif kind == 2:
                    with pytest.raises(psycopg.errors.RaiseException):
                        c.execute("DO $$BEGIN RAISE EXCEPTION 'x%s'; END$$" % tag)
                    assert c.execute("SELECT %s::int", [tag]).fetchone() == (tag,)
                else:
                    rows = c.execute("SELECT g, %s::int FROM generate_series(1, 500) g",
                                     [tag]).fetchall()
                    assert len(rows) == 500 and all(r[1] == tag for r in rows)
                    assert rows[-1][0] == 500

    errors = run_threads(30, client)
    assert not errors, errors[:5]


@pytest.mark.parametrize("in_turn", [False, True])
def test_server_round_robin(berth, pg, in_turn):
    """Default: the most recently used idle server is lent again, so a lone client
    stays on one backend. server_round_robin = 1 lends the longest idle one."""
    b = berth(pool_size=3, server_round_robin="1" if in_turn else "0")
    # three servers: three transactions open at once
    holders = [b.connect() for _ in range(3)]
    try:
        for h in holders:
            h.execute("BEGIN")
            h.execute("SELECT 1")
        for h in holders:
            h.execute("COMMIT")
        with b.connect() as c:
            pids = [c.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(6)]
    finally:
        for h in holders:
            h.close()
    if in_turn:
        assert len(set(pids[:3])) == 3 and pids[3:] == pids[:3], pids
    else:
        assert len(set(pids)) == 1, pids
