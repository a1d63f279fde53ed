"""COPY IN/OUT, large results, and backpressure: a client that stops reading
must not make berth buffer its result."""

import hashlib
import os
import subprocess
import threading
import time

import psycopg
import pytest

import pgwire
from harness import PG_BIN

MB = 1024 * 1024


def make_rows(n):
    return "".join("%d\t%s\n" % (i, hashlib.md5(str(i).encode()).hexdigest() * 3)
                   for i in range(n))


@pytest.mark.timeout(90)
def test_copy_in_out_psycopg(berth, pg, pool_mode):
    b = berth(pool_mode, pool_size=2)
    data = make_rows(50000)  # ~5 MB
    assert len(data) > 4 * MB
    table = "copy_%s" % pool_mode
    with b.connect() as c:
        c.execute("DROP TABLE IF EXISTS %s" % table)
        c.execute("CREATE TABLE %s (id int, v text)" % table)
        with c.cursor() as cur:
            with cur.copy("COPY %s FROM STDIN" % table) as cp:
                for off in range(0, len(data), 65536):
                    cp.write(data[off:off + 65536])
        assert c.execute("SELECT count(*) FROM %s" % table).fetchone() == (50000,)
        out = bytearray()
        with c.cursor() as cur:
            with cur.copy("COPY (SELECT * FROM %s ORDER BY id) TO STDOUT" % table) as cp:
                for chunk in cp:
                    out += chunk
        assert hashlib.sha256(bytes(out)).hexdigest() == \
            hashlib.sha256(data.encode()).hexdigest()
        # connection still fine, and a failing COPY leaves it usable
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with c.cursor() as cur:
                with cur.copy("COPY %s FROM STDIN" % table) as cp:
                    cp.write("not-a-number\tx\n")
        assert c.execute("SELECT count(*) FROM %s" % table).fetchone() == (50000,)
        c.execute("DROP TABLE %s" % table)


@pytest.mark.timeout(90)
def test_psql_copy(berth, pg, pool_mode, tmp_path):
    b = berth(pool_mode, pool_size=2)
    src = tmp_path / "in.tsv"
    dst = tmp_path / "out.tsv"
    data = make_rows(30000)
    src.write_text(data)
    table = "pcopy_%s" % pool_mode
    script = ("DROP TABLE IF EXISTS {t};\nCREATE TABLE {t} (id int, v text);\n"
              "\\copy {t} from '{src}'\n"
              "\\copy (select * from {t} order by id) to '{dst}'\n"
              "SELECT count(*) FROM {t};\nDROP TABLE {t};\n").format(t=table, src=src, dst=dst)
    r = subprocess.run([PG_BIN + "/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1"], input=script,
                       env=b.libpq_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "COPY 30000" in r.stdout and "\n30000\n" in r.stdout
    assert dst.read_text() == data


@pytest.mark.timeout(90)
def test_large_result(berth, pool_mode):
    b = berth(pool_mode, pool_size=2)
    with b.connect() as c:
        cur = c.execute("SELECT g, repeat(chr(65 + g %% 26), 1000) FROM generate_series(1, %s) g",
                        [50000])  # ~50 MB
        n = total = 0
        for g, s in cur:
            n += 1
            total += len(s)
            if g % 997 == 0:
                assert s == chr(65 + g % 26) * 1000
        assert (n, total) == (50000, 50000 * 1000)
        assert c.execute("SELECT 'after'").fetchone() == ("after",)


def _start_unread_query(b, pg, rows):
    c = pgwire.Conn(b.host, b.port, timeout=30, rcvbuf=4096)
    c.login("app", pg.password, "app")
    c.send(pgwire.query_msg("SELECT repeat('x', 1000) FROM generate_series(1, %d)" % rows))
    return c


@pytest.mark.timeout(150)
def test_backpressure_slow_reader(berth, pg, pool_mode):
    """A client that stops reading a ~200 MB result: berth's memory stays
    bounded, other clients are served, then the slow client gets every row."""
    b = berth(pool_mode, pool_size=3)
    with b.connect() as c:
        c.execute("SELECT 1")
    base = b.rss_kb()
    rows = 200000
    slow = _start_unread_query(b, pg, rows)
    try:
        peak = base
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            peak = max(peak, b.rss_kb())
            with b.connect() as other:
                assert other.execute("SELECT 42").fetchone() == (42,)
            time.sleep(0.2)
        assert (peak - base) < 32 * 1024, "berth RSS grew %d kB (from %d kB) while a client " \
            "did not read" % (peak - base, base)
        # the server is blocked on berth, not finished: the query is still active
        assert pg.server_conns("app", state="active") >= 1
        # now read everything
        slow.sock.settimeout(60)
        n = 0
        done = False
        while not done:
            t, p = slow.read_msg()
            if t == b"D":
                n += 1
                if n % 50000 == 0:
                    assert p.endswith(b"x" * 1000)
                    peak = max(peak, b.rss_kb())
            elif t == b"E":
                pytest.fail("error while reading: %r" % pgwire.parse_error_fields(p))
            elif t == b"Z":
                done = True
        assert n == rows
        assert (peak - base) < 32 * 1024
        assert slow.simple_query("SELECT 'still here'") == ([["still here"]], None)
    finally:
        slow.close()


@pytest.mark.timeout(90)
def test_slow_reader_disconnects(berth, pg, pool_mode):
    """The client gives up mid-result: berth frees the server connection (query
    cancelled or connection closed) and keeps serving."""
    b = berth(pool_mode, pool_size=1, query_wait_timeout=30)
    slow = _start_unread_query(b, pg, 200000)
    time.sleep(1)
    slow.close()
    t0 = time.monotonic()
    with b.connect() as c:
        assert c.execute("SELECT 'next'").fetchone() == ("next",)
        assert c.execute("SELECT now() = statement_timestamp()").fetchone() == (True,)
    assert time.monotonic() - t0 < 20
    n = pg.wait_server_conns(lambda n: n == 0, usename="app", state="active", timeout=10)
    assert n == 0
    assert b.alive()


def test_many_rows_small_messages(berth, pool_mode):
    """Lots of tiny DataRows split across reads: nothing lost or reordered."""
    b = berth(pool_mode, pool_size=2)
    with b.connect() as c:
        rows = c.execute("SELECT g FROM generate_series(1, 300000) g").fetchall()
        assert len(rows) == 300000
        assert rows[0] == (1,) and rows[-1] == (300000,)
        assert sum(r[0] for r in rows) == 300000 * 300001 // 2


def test_large_query_text_and_param(berth, pool_mode):
    b = berth(pool_mode, pool_size=2)
    big = os.urandom(3 * MB).hex()  # 6 MB parameter
    with b.connect() as c:
        assert c.execute("SELECT md5(%s)", [big]).fetchone()[0] == \
            hashlib.md5(big.encode()).hexdigest()
        q = "SELECT length('" + "y" * (2 * MB) + "')"
        assert c.execute(q).fetchone() == (2 * MB,)


def test_concurrent_large_results(berth, pool_mode):
    b = berth(pool_mode, pool_size=3)
    errors = []

    def client(i):
        try:
            with b.connect() as c:
                rows = c.execute("SELECT %s::int, g, repeat('z', 200) FROM "
                                 "generate_series(1, 20000) g", [i]).fetchall()
                assert len(rows) == 20000 and all(r[0] == i for r in rows)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
