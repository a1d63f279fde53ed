"""The client-side timeouts PgBouncer has, each against a real PostgreSQL:
client_idle_timeout, idle_transaction_timeout, transaction_timeout and
query_timeout. Each closes the client with its own error, leaves committed
work committed and rolls back the rest with the server connection, and leaves
clients within the limit alone."""

import threading
import time

import pytest

import pgwire
from harness import NOT_HEALTH_CHECK


@pytest.fixture
def tmo_table(pg):
    pg.sql("DROP TABLE IF EXISTS tmo; CREATE TABLE tmo (v text); GRANT ALL ON tmo TO PUBLIC")
    yield
    # A session a failed test left inside a transaction would block the DROP.
    pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app' "
           "AND state LIKE 'idle in transaction%%'")
    pg.sql("SET lock_timeout = '10s'; DROP TABLE IF EXISTS tmo")


def login(b):
    c = pgwire.Conn(b.host, b.port)
    c.login(b.user, b.password, b.dbname)
    return c


def ok(c, sql):
    rows, err = c.simple_query(sql)
    assert err is None, err
    return rows


def closed_with(c, code, name):
    """The next message is the FATAL ErrorResponse, then the socket closes."""
    tag, payload = c.read_msg()
    assert tag == b"E", (tag, payload)
    f = pgwire.parse_error_fields(payload)
    assert (f["S"], f["C"]) == ("FATAL", code), f
    assert name in f["M"], f
    assert c.is_closed()


def in_transaction_sessions(pg):
    return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state LIKE "
                  "'idle in transaction%%'" + NOT_HEALTH_CHECK)[0][0]


def test_client_idle_timeout(berth):
    b = berth(client_idle_timeout=1)
    idle, busy = login(b), login(b)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:  # busy keeps talking, idle says nothing
        ok(busy, "SELECT 1")
        time.sleep(0.2)
    closed_with(idle, "57P05", "client_idle_timeout")
    assert ok(busy, "SELECT 2") == [["2"]]
    busy.close()


def test_idle_transaction_timeout(berth, pg, tmo_table):
    b = berth(idle_transaction_timeout=1)
    c = login(b)
    ok(c, "INSERT INTO tmo VALUES ('committed')")
    ok(c, "BEGIN")
    ok(c, "INSERT INTO tmo VALUES ('rolled back')")
    time.sleep(2.0)
    closed_with(c, "25P03", "idle_transaction_timeout")
    assert pg.sql("SELECT v FROM tmo") == [("committed",)]
    assert in_transaction_sessions(pg) == 0
    # A transaction that keeps talking is not idle.
    c = login(b)
    ok(c, "BEGIN")
    for _ in range(8):
        ok(c, "SELECT 1")
        time.sleep(0.25)
    ok(c, "COMMIT")
    c.close()


def test_transaction_timeout(berth, pg, tmo_table):
    b = berth(transaction_timeout=1)
    c = login(b)
    ok(c, "BEGIN")
    ok(c, "INSERT INTO tmo VALUES ('rolled back')")
    err = None
    t0 = time.monotonic()
    while err is None and time.monotonic() - t0 < 5:  # busy, never idle long
        _rows, err = c.simple_query("SELECT 1")
        time.sleep(0.1)
    assert err and (err["S"], err["C"]) == ("FATAL", "25P04"), err
    assert "transaction_timeout" in err["M"]
    assert 0.9 < time.monotonic() - t0 < 3
    assert c.is_closed()
    assert pg.sql("SELECT count(*) FROM tmo")[0][0] == 0
    # A statement outside a transaction block is query_timeout's business, not this.
    c = login(b)
    ok(c, "SELECT pg_sleep(1.5)")
    ok(c, "BEGIN")
    ok(c, "INSERT INTO tmo VALUES ('quick')")
    ok(c, "COMMIT")
    c.close()
    assert pg.sql("SELECT v FROM tmo") == [("quick",)]


def test_query_timeout(berth, pg):
    b = berth(query_timeout=1)
    c = login(b)
    assert ok(c, "SELECT pg_sleep(0.3), 1")[0][1] == "1"
    t0 = time.monotonic()
    c.send(pgwire.query_msg("SELECT pg_sleep(30) /* berth query_timeout test */"))
    closed_with(c, "57014", "query_timeout")
    assert time.monotonic() - t0 < 5
    # The cancel stopped the backend's query, not just berth's side of it.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
            "'%%berth query_timeout test%%' AND pid <> pg_backend_pid()")[0][0]:
        time.sleep(0.1)
    assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                  "'%%berth query_timeout test%%' AND pid <> pg_backend_pid()")[0][0] == 0
    c = login(b)
    assert ok(c, "SELECT 3") == [["3"]]
    c.close()


QUEUED = "No server connection available in postgres backend, client being queued"


@pytest.mark.timeout(60)
def test_query_wait_notify(berth):
    """A client that waits longer than query_wait_notify for a server gets
    PgBouncer's NOTICE, once per wait; a shorter wait gets none."""
    b = berth(pool_size=1, query_wait_notify="1")
    notices = []
    with b.connect() as holder, b.connect() as waiter:
        waiter.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate,
                                                            d.message_primary)))
        assert waiter.execute("SELECT 1").fetchone() == (1,)  # a quick query: no notice
        for expected in (1, 2):
            holder.execute("BEGIN")
            holder.execute("SELECT 1")  # holds the only server connection
            t = threading.Timer(2.5, lambda: holder.execute("COMMIT"))
            t.start()
            try:
                assert waiter.execute("SELECT 2").fetchone() == (2,)  # waits 2.5 s
            finally:
                t.join()
            assert notices == [("NOTICE", "00000", QUEUED)] * expected
    quiet = berth(pool_size=1)  # default 5 s: a 2.5 s wait says nothing
    seen = []
    with quiet.connect() as holder, quiet.connect() as waiter:
        waiter.add_notice_handler(lambda d: seen.append(d.message_primary))
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        t = threading.Timer(2.5, lambda: holder.execute("COMMIT"))
        t.start()
        try:
            assert waiter.execute("SELECT 3").fetchone() == (3,)
        finally:
            t.join()
    assert seen == []
