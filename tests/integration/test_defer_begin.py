"""defer_begin (transaction mode): a plain BEGIN is answered by berth and
reaches a server only with the transaction's first statement, so a
transaction holds its server one client round trip less. What must not
change: everything the client sees, and what commits or rolls back."""

import contextlib
import time

import pytest

import pgwire

REPLY_TIMEOUT = 0.5


@pytest.fixture
def table(pg):
    pg.sql("DROP TABLE IF EXISTS deferred; CREATE TABLE deferred (n int); "
           "GRANT ALL ON deferred TO app")
    return lambda: sorted(r[0] for r in pg.sql("SELECT n FROM deferred"))


def raw(b, pg):
    c = pgwire.Conn(b.host, b.port)
    c.login("app", pg.password, "app")
    return c


def replies(c, n_ready):
    """(tag, payload) of every message up to the n_ready-th ReadyForQuery."""
    out = []
    while n_ready:
        t, p = c.read_msg()
        out.append((t, p))
        n_ready -= t == b"Z"
    return out


def assert_waits(c):
    """Nothing comes back for REPLY_TIMEOUT."""
    c.sock.settimeout(REPLY_TIMEOUT)
    with pytest.raises(OSError):
        c.read_msg()
    c.sock.settimeout(15)


@contextlib.contextmanager
def busy_pool(berth, pg, holder_sql="SELECT 1", **settings):
    """A pool of one server, held by an open transaction: (berth, holder, raw client)."""
    b = berth("transaction", pool_size=1, **settings)
    with b.connect() as holder:
        holder.execute("BEGIN")
        holder.execute(holder_sql)
        c = raw(b, pg)
        try:
            yield b, holder, c
        finally:
            c.close()


def test_begin_answered_without_a_server(berth, pg, table):
    """With the only server held by another transaction, BEGIN is answered at
    once; the first statement waits for the server and runs inside the
    transaction, which then rolls back or commits as the client says."""
    with busy_pool(berth, pg, "INSERT INTO deferred VALUES (0)") as (b, holder, c):
        c.sock.settimeout(REPLY_TIMEOUT)
        c.send(pgwire.query_msg("BEGIN"))
        assert [(t, p) for t, p in replies(c, 1)] == [(b"C", b"BEGIN\0"), (b"Z", b"T")]
        c.send(pgwire.query_msg("INSERT INTO deferred VALUES (1)"))
        assert_waits(c)  # the server is busy
        holder.execute("COMMIT")
        assert replies(c, 1) == [(b"C", b"INSERT 0 1\0"), (b"Z", b"T")]
        assert c.simple_query("SELECT count(*) FROM deferred WHERE n = 1")[0] == [["1"]]
        c.send(pgwire.query_msg("ROLLBACK"))
        assert replies(c, 1) == [(b"C", b"ROLLBACK\0"), (b"Z", b"I")]
        assert table() == [0]
        for tag_sql, tag in (("begin work;", b"BEGIN\0"),
                             ("START TRANSACTION", b"START TRANSACTION\0")):
            c.send(pgwire.query_msg(tag_sql))
            assert replies(c, 1) == [(b"C", tag), (b"Z", b"T")]
            c.send(pgwire.query_msg("INSERT INTO deferred VALUES (2)"))
            assert replies(c, 1)[-1] == (b"Z", b"T")
            c.send(pgwire.query_msg("COMMIT"))
            assert replies(c, 1) == [(b"C", b"COMMIT\0"), (b"Z", b"I")]
        assert table() == [0, 2, 2]


def test_pipelined_transaction_and_errors(berth, pg, table):
    b = berth("transaction", pool_size=1)
    c = raw(b, pg)
    try:
        c.send(pgwire.query_msg("BEGIN") + pgwire.query_msg("INSERT INTO deferred VALUES (1)")
               + pgwire.query_msg("COMMIT"))
        got = replies(c, 3)
        assert [t for t, _ in got] == [b"C", b"Z", b"C", b"Z", b"C", b"Z"]
        assert [p for t, p in got if t == b"Z"] == [b"T", b"T", b"I"]
        # An error inside the transaction: failed state, then ROLLBACK, as on PostgreSQL.
        c.send(pgwire.query_msg("BEGIN"))
        replies(c, 1)
        rows, err = c.simple_query("INSERT INTO deferred VALUES (1/0)")
        assert err["C"] == "22012"
        rows, err = c.simple_query("SELECT 1")
        assert err["C"] == "25P02"
        c.send(pgwire.query_msg("ROLLBACK"))
        assert replies(c, 1)[-1] == (b"Z", b"I")
        # BEGIN twice: the second reaches PostgreSQL, which warns.
        c.send(pgwire.query_msg("BEGIN") + pgwire.query_msg("BEGIN"))
        got = replies(c, 2)
        assert [t for t, _ in got] == [b"C", b"Z", b"N", b"C", b"Z"]
        assert pgwire.parse_error_fields(got[2][1])["C"] == "25001"
        c.send(pgwire.query_msg("COMMIT"))
        replies(c, 1)
        # BEGIN with options is PostgreSQL's to answer (it may fail).
        rows, err = c.simple_query("BEGIN ISOLATION LEVEL NONSENSE")
        assert err["C"] == "42601"
        assert table() == [1]
    finally:
        c.close()


def test_drivers_transactions(berth, pg, table):
    """psycopg opens its transactions with BEGIN; extended protocol and named
    prepared statements inside them; commit and rollback as asked."""
    b = berth("transaction", pool_size=2)
    for threshold in (None, 0):
        with b.connect(autocommit=False, prepare_threshold=threshold) as c:
            for i in range(4):
                c.execute("INSERT INTO deferred VALUES (%s)", [i])
                assert c.execute("SELECT count(*) FROM deferred WHERE n = %s",
                                 [i]).fetchone()[0] >= 1
                if i % 2:
                    c.commit()
                else:
                    c.rollback()
    assert table() == [1, 1, 3, 3]


def test_now_is_the_transaction_start_on_the_server(berth):
    """now() stays constant within the transaction (it starts with the first statement)."""
    b = berth("transaction", pool_size=1)
    with b.connect(autocommit=False) as c:
        t1 = c.execute("SELECT now()").fetchone()[0]
        time.sleep(0.05)
        assert c.execute("SELECT now(), clock_timestamp() > now()").fetchone() == (t1, True)
        c.rollback()


def test_idle_in_deferred_transaction_times_out(berth, pg):
    b = berth("transaction", pool_size=1, idle_transaction_timeout="0.5",
              client_idle_timeout="30")
    c = raw(b, pg)
    try:
        c.send(pgwire.query_msg("BEGIN"))
        replies(c, 1)
        time.sleep(1.5)
        c.send(pgwire.query_msg("SELECT 1"))
        t, p = c.read_msg()
        assert t == b"E" and pgwire.parse_error_fields(p)["C"] == "25P03"
    finally:
        c.close()


def test_defer_begin_off_sends_begin_at_once(berth, pg):
    with busy_pool(berth, pg, defer_begin=0) as (b, holder, c):
        c.send(pgwire.query_msg("BEGIN"))
        assert_waits(c)  # BEGIN itself waits for the server
        holder.execute("COMMIT")
        assert replies(c, 1) == [(b"C", b"BEGIN\0"), (b"Z", b"T")]


def test_client_leaving_after_begin_costs_nothing(berth, pg):
    b = berth("transaction", pool_size=1)
    for _ in range(5):
        c = raw(b, pg)
        c.send(pgwire.query_msg("BEGIN"))
        replies(c, 1)
        c.close()
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert pg.server_conns("app") <= 1


def test_postgres_skips_a_query_after_a_failed_execute_without_sync(pg):
    """What makes defer_begin safe, checked on PostgreSQL itself: when the
    Execute berth sends ahead of the client's statement fails, the server
    skips the statement (until a Sync), so it can never run outside the
    transaction the client was told it had."""
    c = pgwire.Conn(pg.host, pg.port)
    try:
        c.login("app", pg.password, "app")
        c.simple_query("CREATE TEMP TABLE skipped (n int)")
        c.send(pgwire.parse_msg("SELECT 1/0") + pgwire.bind_msg() + pgwire.execute_msg()
               + pgwire.query_msg("INSERT INTO skipped VALUES (1)") + pgwire.sync_msg())
        got = replies(c, 1)
        assert [t for t, _ in got] == [b"1", b"E", b"Z"]
        assert c.simple_query("SELECT count(*) FROM skipped")[0] == [["0"]]
        # ...and when it succeeds, the statement runs inside the transaction it opened.
        c.send(pgwire.parse_msg("BEGIN") + pgwire.bind_msg() + pgwire.execute_msg()
               + pgwire.query_msg("INSERT INTO skipped VALUES (2)"))
        got = replies(c, 1)
        assert [t for t, _ in got] == [b"1", b"2", b"C", b"C", b"Z"] and got[-1][1] == b"T"
        c.simple_query("ROLLBACK")
        assert c.simple_query("SELECT count(*) FROM skipped")[0] == [["0"]]
    finally:
        c.close()


def test_isolation_level_set_after_begin(berth, pg):
    """SET TRANSACTION must come before the transaction's first query: the
    deferred BEGIN takes no snapshot, so it still does."""
    b = berth("transaction", pool_size=1)
    c = raw(b, pg)
    try:
        for level in ("serializable", "repeatable read"):
            c.send(pgwire.query_msg("BEGIN"))
            replies(c, 1)
            assert c.simple_query("SET TRANSACTION ISOLATION LEVEL " + level)[1] is None
            assert c.simple_query("SHOW transaction_isolation")[0] == [[level]]
            assert c.simple_query("COMMIT")[1] is None
        assert c.simple_query("SHOW transaction_isolation")[0] == [["read committed"]]
    finally:
        c.close()


def test_empty_transaction_ends_without_a_server(berth, pg, table):
    """BEGIN and a plain COMMIT/ROLLBACK with nothing between: nothing ran, so
    berth answers both, even while the only server is busy; what does more
    than end the transaction still goes to PostgreSQL."""
    with busy_pool(berth, pg) as (b, holder, c):
        c.sock.settimeout(REPLY_TIMEOUT)
        for sql, tag in (("COMMIT", b"COMMIT\0"), ("end;", b"COMMIT\0"),
                         ("ROLLBACK WORK", b"ROLLBACK\0"), ("abort", b"ROLLBACK\0")):
            c.send(pgwire.query_msg("BEGIN") + pgwire.query_msg(sql))
            assert replies(c, 2) == [(b"C", b"BEGIN\0"), (b"Z", b"T"),
                                     (b"C", tag), (b"Z", b"I")]
        # COMMIT AND CHAIN opens the next transaction: PostgreSQL's to answer.
        c.send(pgwire.query_msg("BEGIN") + pgwire.query_msg("COMMIT AND CHAIN"))
        replies(c, 1)
        assert_waits(c)
        holder.execute("COMMIT")
        assert replies(c, 1) == [(b"C", b"COMMIT\0"), (b"Z", b"T")]
        c.send(pgwire.query_msg("INSERT INTO deferred VALUES (7)") + pgwire.query_msg("ROLLBACK"))
        assert replies(c, 2)[-1] == (b"Z", b"I")
        assert table() == []
