"""pool_mode = statement, as in PgBouncer: a server is lent per statement
(per transaction that ends with its statement), and a request that leaves a
transaction block open gets FATAL 08P01 "transaction blocks not allowed in
statement pooling mode"; the block is rolled back with its server."""

import psycopg
import pytest

import pgwire
from harness import NOT_HEALTH_CHECK
from drivers import run_threads

REFUSAL = "transaction blocks not allowed in statement pooling mode"


@pytest.fixture
def stmt_table(pg):
    pg.sql("DROP TABLE IF EXISTS stmt_mode; CREATE TABLE stmt_mode (id int, who text); "
           "GRANT ALL ON stmt_mode TO PUBLIC")
    yield "stmt_mode"
    pg.sql("DROP TABLE IF EXISTS stmt_mode")


def backend_pid(conn):
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_autocommit_statements_share_servers(berth, pg, stmt_table):
    """20 autocommit clients, simple and extended protocol, on a pool of 2."""
    b = berth(pool_mode="statement", pool_size=2)

    def client(i):
        with b.connect() as c:
            for k in range(15):
                c.execute("INSERT INTO stmt_mode VALUES (%s, %s)", [i * 100 + k, "c%d" % i])
                got = c.execute("SELECT %s::int * 2", [i * 100 + k]).fetchone()[0]
                assert got == 2 * (i * 100 + k)
                c.execute("SELECT 1; SELECT 2")  # one Query, still autocommit

    errors = run_threads(20, client)
    assert not errors, errors
    assert pg.sql("SELECT count(*) FROM stmt_mode")[0][0] == 20 * 15
    assert pg.server_conns() <= 2


def test_transaction_block_is_refused_and_rolled_back(berth, pg, stmt_table):
    b = berth(pool_mode="statement", pool_size=1)
    with b.connect() as c:
        first_pid = backend_pid(c)
    c = b.connect()
    with pytest.raises(psycopg.OperationalError) as ei:
        c.execute("BEGIN; INSERT INTO stmt_mode VALUES (1, 'in block')")
    # libpq reports a FATAL that ends the connection with its text, not as a
    # result with a SQLSTATE (test_extended_protocol_block_is_refused checks that).
    assert REFUSAL in str(ei.value)
    assert c.closed or c.broken
    c.close()
    # The block never committed, and its server connection was closed, not pooled.
    assert pg.sql("SELECT count(*) FROM stmt_mode")[0][0] == 0
    with b.connect() as c2:
        assert backend_pid(c2) != first_pid
        c2.execute("INSERT INTO stmt_mode VALUES (2, 'autocommit')")
    assert pg.sql("SELECT who FROM stmt_mode") == [("autocommit",)]


def test_driver_transaction_is_refused(berth, pg):
    """psycopg outside autocommit opens a block with BEGIN: refused the same way."""
    b = berth(pool_mode="statement", pool_size=1)
    with psycopg.connect(b.url(), autocommit=False) as c:
        with pytest.raises(psycopg.OperationalError) as ei:
            c.execute("SELECT 1")
        assert REFUSAL in str(ei.value)
    # Other clients go on using the pool.
    with b.connect() as c:
        assert c.execute("SELECT 41 + 1").fetchone()[0] == 42


def test_extended_protocol_block_is_refused(berth, pg):
    """BEGIN through Parse/Bind/Execute/Sync ends 'T' too: the client gets the
    error instead of that ReadyForQuery, then the connection closes."""
    b = berth(pool_mode="statement", pool_size=1)
    c = pgwire.Conn(b.host, b.port)
    c.login(b.user, b.password, b.dbname)
    c.send(pgwire.parse_msg("BEGIN") + pgwire.bind_msg() + pgwire.execute_msg() +
           pgwire.sync_msg())
    msgs = c.read_until({b"E", b"Z"})
    tag, payload = msgs[-1]
    assert tag == b"E", msgs
    fields = pgwire.parse_error_fields(payload)
    assert fields["S"] == "FATAL" and fields["C"] == "08P01", fields
    assert fields["M"] == REFUSAL
    assert c.is_closed()
    c.close()
    with b.connect() as c2:
        assert c2.execute("SELECT %s::text", ["ok"]).fetchone()[0] == "ok"
    # No session was left inside a block on the server.
    assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in%%' "
                  "AND usename = 'app'" + NOT_HEALTH_CHECK)[0][0] == 0


def test_per_database_statement_mode_in_file(berth, pg):
    """[databases] app = ... pool_mode=statement beside a transaction-mode default."""
    b = berth.file(settings={"auth_type": "plain", "pool_mode": "transaction",
                             "admin_users": "app"},
                   databases={"app": pg.conninfo() + " pool_mode=statement",
                              "app_tx": pg.conninfo()})
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
        with pytest.raises(psycopg.OperationalError) as ei:
            c.execute("BEGIN")
        assert REFUSAL in str(ei.value)
    with b.connect(dbname="app_tx") as c:
        c.execute("BEGIN")
        assert c.execute("SELECT 2").fetchone()[0] == 2
        c.execute("COMMIT")
    with psycopg.connect(host=b.host, port=b.port, user="app", password=pg.password,
                         dbname="pgbouncer", autocommit=True) as a:
        modes = {r[0]: r[9] for r in a.execute("SHOW DATABASES").fetchall()}
    assert modes["app"] == "statement"
