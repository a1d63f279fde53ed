"""Extended query protocol through berth: unnamed statements, binary
parameters, pipelines (with errors inside), raw Parse/Bind/Describe/Execute/
Sync/Flush/Close. Named prepared statements only in session mode (transaction
mode gets them in the next issue)."""

import datetime
import decimal
import struct
import uuid

import psycopg
import pytest

import pgwire


@pytest.fixture(scope="module")
def berths(module_berth):
    return {m: module_berth(m, pool_size=3) for m in ("session", "transaction")}


@pytest.fixture
def b(berths, pool_mode):
    return berths[pool_mode]


def test_unnamed_statements_and_types(b):
    with b.connect(prepare_threshold=None) as c:
        vals = [1, -2**40, "tekst ünïcödé", b"\x00\x01\xff", 3.5, decimal.Decimal("1.10"),
                True, None, datetime.date(2024, 2, 29), uuid.UUID(int=12345), [1, 2, 3]]
        for v in vals:
            assert c.execute("SELECT %s", [v]).fetchone()[0] == v
        for _ in range(10):  # repeated, never prepared with a name
            assert c.execute("SELECT %s::int * 2", [21]).fetchone() == (42,)
        assert c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0


def test_binary_params_and_results(b):
    with b.connect() as c:
        cur = c.cursor(binary=True)
        cur.execute("SELECT %b::int8, %b::text, %b::bytea, %b::float8",
                    [2**62, "bin", b"\x00\xfe", 0.25])
        assert cur.fetchone() == (2**62, "bin", b"\x00\xfe", 0.25)
        cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 2000) g WHERE g > %b", [10])
        rows = cur.fetchall()
        assert len(rows) == 1990 and rows[0][0] == 11


def test_pipeline(b):
    with b.connect() as c:
        with c.pipeline():
            curs = [c.execute("SELECT %s::int, pg_backend_pid()", [i]) for i in range(50)]
        vals = [cur.fetchone()[0] for cur in curs]
        assert vals == list(range(50))


def test_pipeline_in_transaction(b, pg):
    with b.connect(autocommit=False) as c:
        with c.pipeline():
            c.execute("CREATE TEMP TABLE pt (x int)")
            for i in range(20):
                c.execute("INSERT INTO pt VALUES (%s)", [i])
            cur = c.execute("SELECT sum(x), count(*) FROM pt")
        assert cur.fetchone() == (190, 20)
        c.rollback()


def test_pipeline_with_error(b):
    with b.connect() as c:
        with pytest.raises(psycopg.errors.DivisionByZero):
            with c.pipeline():
                c.execute("SELECT 1")
                c.execute("SELECT 1/0")
                c.execute("SELECT 2")  # skipped by the server until Sync
        # the connection is fine afterwards
        with c.pipeline():
            cur = c.execute("SELECT %s::int", [3])
        assert cur.fetchone() == (3,)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_pipeline_error_in_transaction_rolls_back(b, pg):
    with b.connect(autocommit=False) as c:
        c.execute("CREATE TEMP TABLE pe (x int)")
        c.commit()
        with pytest.raises(psycopg.errors.UniqueViolation):
            with c.pipeline():
                c.execute("CREATE UNIQUE INDEX ON pe (x)")
                c.execute("INSERT INTO pe VALUES (1)")
                c.execute("INSERT INTO pe VALUES (1)")
        c.rollback()
        assert c.execute("SELECT count(*) FROM pe").fetchone() == (0,)
        c.rollback()


def test_raw_extended_protocol(b, pg):
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", pg.password, "app")
        # Parse/Bind/Describe/Execute/Sync with text params, twice in one write
        batch = b""
        for v in ("5", "6"):
            batch += (pgwire.parse_msg("SELECT $1::int * 10, $2::text", param_oids=(23, 25))
                      + pgwire.bind_msg([v, "t" + v]) + pgwire.describe_msg(b"P")
                      + pgwire.execute_msg() + pgwire.sync_msg())
        c.send(batch)
        got = []
        for _ in range(2):
            msgs = c.read_until({b"Z"})
            tags = [t for t, _ in msgs]
            assert tags == [b"1", b"2", b"T", b"D", b"C", b"Z"], tags
            got.append(pgwire.parse_data_row(msgs[3][1]))
            assert msgs[-1][1] == b"I"
        assert got == [["50", "t5"], ["60", "t6"]]

        # Execute with a row limit: PortalSuspended, then the rest, in one transaction
        c.send(pgwire.query_msg("BEGIN"))
        c.read_until({b"Z"})
        c.send(pgwire.parse_msg("SELECT generate_series(1, 5)") + pgwire.bind_msg(portal="p1")
               + pgwire.execute_msg("p1", 2) + pgwire.flush_msg())
        msgs = [c.read_msg() for _ in range(5)]
        assert [t for t, _ in msgs] == [b"1", b"2", b"D", b"D", b"s"]
        c.send(pgwire.execute_msg("p1", 0) + pgwire.msg(b"C", b"P" + pgwire.cstr("p1"))
               + pgwire.sync_msg())
        msgs = c.read_until({b"Z"})
        assert [t for t, _ in msgs] == [b"D", b"D", b"D", b"C", b"3", b"Z"]
        assert msgs[-1][1] == b"T"
        c.send(pgwire.query_msg("COMMIT"))
        assert c.read_until({b"Z"})[-1][1] == b"I"

        # an error in Bind: ErrorResponse, the rest skipped until Sync
        c.send(pgwire.parse_msg("SELECT $1::int") + pgwire.bind_msg(["not-an-int"])
               + pgwire.execute_msg() + pgwire.sync_msg()
               + pgwire.query_msg("SELECT 'ok'"))
        msgs = c.read_until({b"Z"})
        assert [t for t, _ in msgs] == [b"1", b"E", b"Z"]
        assert pgwire.parse_error_fields(msgs[1][1])["C"] == "22P02"
        assert c.read_until({b"Z"})[-2:][0][0] == b"C"
    finally:
        c.close()


def test_raw_describe_statement_and_null_param(b, pg):
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", pg.password, "app")
        c.send(pgwire.parse_msg("SELECT $1::text IS NULL") + pgwire.describe_msg(b"S")
               + pgwire.bind_msg([None]) + pgwire.execute_msg() + pgwire.sync_msg())
        msgs = c.read_until({b"Z"})
        assert [t for t, _ in msgs] == [b"1", b"t", b"T", b"2", b"D", b"C", b"Z"]
        (n,) = struct.unpack("!H", msgs[1][1][:2])
        assert n == 1
        assert pgwire.parse_data_row(msgs[4][1]) == ["t"]
    finally:
        c.close()


def test_named_prepared_statements_session_mode(berths, pg):
    b = berths["session"]
    with b.connect(prepare_threshold=0) as c:
        for i in range(5):
            assert c.execute("SELECT %s::int + 1", [i], prepare=True).fetchone() == (i + 1,)
        names = c.execute("SELECT name FROM pg_prepared_statements").fetchall()
        assert any(n[0].startswith("_pg3_") for n in names)
        c.execute("PREPARE mine (int) AS SELECT $1 * 3")
        assert c.execute("EXECUTE mine (5)").fetchone() == (15,)
        c.execute("DEALLOCATE mine")


def test_raw_named_statement_session_mode(berths, pg):
    b = berths["session"]
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", pg.password, "app")
        c.send(pgwire.parse_msg("SELECT $1::int + 100", name="s1") + pgwire.sync_msg())
        assert [t for t, _ in c.read_until({b"Z"})] == [b"1", b"Z"]
        for v in range(3):
            c.send(pgwire.bind_msg([str(v)], stmt="s1") + pgwire.execute_msg()
                   + pgwire.sync_msg())
            msgs = c.read_until({b"Z"})
            assert pgwire.parse_data_row(msgs[1][1]) == [str(100 + v)]
        c.send(pgwire.msg(b"C", b"S" + pgwire.cstr("s1")) + pgwire.sync_msg())
        assert [t for t, _ in c.read_until({b"Z"})] == [b"3", b"Z"]
    finally:
        c.close()
