"""Drivers that use named prepared statements, with their default settings and
their code unchanged, through berth in transaction mode with fewer server
connections than clients (issue 4): 20 concurrent connections on a pool of 4,
every result checked per connection, so no statement or result may reach the
wrong client.

Each test runs twice: [direct] against PostgreSQL itself (proves the test right;
there it also checks that the driver really made named statements, which only
PostgreSQL can show) and [transaction] through berth. Both runs also read
PostgreSQL's log for prepared-statement errors (26000, 42P05, 0A000, ...) that a
self-healing driver (pgjdbc, postgres.js) would retry and hide.
"""

import asyncio
import os
import re
import shutil
import subprocess
import tempfile

import psycopg
import pytest

from drivers import JAVA_DIR, PRISMA_DIR, MaxSampler, PgLog, target  # noqa: F401 - fixture
from harness import NODE_DIR, PG_BIN

POOL = 4
CLIENTS = 20


def fresh_table(pg, name, cols="c int, k int"):
    pg.sql("DROP TABLE IF EXISTS %s; CREATE TABLE %s (%s); GRANT ALL ON %s TO app"
           % (name, name, cols, name))


def check_after(t, pg, log, sampler):
    errs = log.prepared_errors()
    assert not errs, "PostgreSQL logged prepared-statement errors:\n" + "\n".join(errs[:10])
    if t.kind != "direct":
        assert sampler.max <= POOL, "berth opened %d server connections, pool is %d" % (
            sampler.max, POOL)


# --- asyncpg ---------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_asyncpg_defaults(target, pg):
    """asyncpg with default settings: every query a named statement
    (__asyncpg_stmt_N__, the same names on every connection), a statement cache of
    100 that Closes what falls out of it, transactions, executemany."""
    import asyncpg

    t = target(pool_size=POOL)
    fresh_table(pg, "apg_t")
    log = PgLog(pg)

    async def client(i):
        conn = await asyncpg.connect(t.url(), timeout=20)
        try:
            own = "SELECT $1::int + %d AS v, 'c%d'::text AS who" % (i, i)
            shared = "SELECT $1::int * 2 AS v, $2::text AS tag"
            committed = 0
            for k in range(30):
                r = await conn.fetchrow(own, k)
                assert (r["v"], r["who"]) == (k + i, "c%d" % i)
                r = await conn.fetchrow(shared, k, "%d-%d" % (i, k))
                assert (r["v"], r["tag"]) == (2 * k, "%d-%d" % (i, k))
                if k % 5 == 0:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO apg_t VALUES ($1, $2)", i, k)
                        n = await conn.fetchval("SELECT count(*) FROM apg_t WHERE c = $1", i)
                        assert n == committed + 1
                    committed += 1
            with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO apg_t VALUES ($1, -1)", i)
                    await conn.fetchval("SELECT 1 / $1::int", 0)
            assert await conn.fetchval("SELECT count(*) FROM apg_t WHERE c = $1", i) == committed
            stmt = await conn.prepare("SELECT g + %d AS v FROM generate_series(1, $1::int) g"
                                      % (i * 1000))
            for n in (1, 10, 100):
                assert [r["v"] for r in await stmt.fetch(n)] == \
                    [i * 1000 + g for g in range(1, n + 1)]
            # more distinct statements than asyncpg's cache holds: it Closes the oldest
            for k in range(130):
                assert await conn.fetchval("SELECT $1::int + %d" % k, i) == i + k
            await conn.executemany("INSERT INTO apg_t VALUES ($1, $2)",
                                   [(1000 + i, j) for j in range(20)])
            assert await conn.fetchval("SELECT sum(k) FROM apg_t WHERE c = $1", 1000 + i) == 190
            if t.kind == "direct":
                n = await conn.fetchval("SELECT count(*) FROM pg_prepared_statements "
                                        "WHERE name LIKE '\\_\\_asyncpg\\_stmt\\_%'")
                assert n >= 50, n
        finally:
            await conn.close()
        return i

    async def main():
        return await asyncio.gather(*(client(i) for i in range(CLIENTS)))

    with MaxSampler(pg) as s:
        assert asyncio.run(main()) == list(range(CLIENTS))
    check_after(t, pg, log, s)


# --- psycopg 3 --------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_psycopg_prepare_threshold_0(target, pg):
    """psycopg 3 with prepare_threshold=0: every query a named statement (_pg3_N),
    in autocommit and in transaction mode, and a prepared_max small enough that
    psycopg DEALLOCATEs (by SQL) what falls out of its cache."""
    t = target(pool_size=POOL)
    fresh_table(pg, "psy_t")
    log = PgLog(pg)

    async def client(i):
        autocommit = i % 2 == 0
        async with await psycopg.AsyncConnection.connect(
                t.url(), autocommit=autocommit, prepare_threshold=0, connect_timeout=20) as c:
            c.prepared_max = 10
            own = "SELECT %%s::int + %d AS v, 'c%d'::text AS who" % (i, i)
            shared = "SELECT %s::int * 2 AS v, %s::text AS tag"
            committed = 0
            for k in range(25):
                cur = await c.execute(own, [k])
                assert await cur.fetchone() == (k + i, "c%d" % i)
                cur = await c.execute(shared, [k, "%d-%d" % (i, k)])
                assert await cur.fetchone() == (2 * k, "%d-%d" % (i, k))
                if not autocommit:
                    await c.commit()
                if k % 5 == 0:
                    async with c.transaction():
                        await c.execute("INSERT INTO psy_t VALUES (%s, %s)", [i, k])
                        cur = await c.execute("SELECT count(*) FROM psy_t WHERE c = %s", [i])
                        assert (await cur.fetchone())[0] == committed + 1
                    committed += 1
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with c.transaction():
                    await c.execute("INSERT INTO psy_t VALUES (%s, -1)", [i])
                    await c.execute("SELECT 1 / %s::int", [0])
            cur = await c.execute("SELECT count(*) FROM psy_t WHERE c = %s", [i])
            assert (await cur.fetchone())[0] == committed
            for k in range(30):  # three times prepared_max
                cur = await c.execute("SELECT %%s::int + %d" % k, [i])
                assert (await cur.fetchone())[0] == i + k
            if t.kind == "direct":
                cur = await c.execute("SELECT count(*) FROM pg_prepared_statements "
                                      "WHERE name LIKE '\\_pg3\\_%%'", [])
                n = (await cur.fetchone())[0]
                assert 2 <= n <= 11, n
            if not autocommit:
                await c.commit()
        return i

    async def main():
        return await asyncio.gather(*(client(i) for i in range(CLIENTS)))

    with MaxSampler(pg) as s:
        assert asyncio.run(main()) == list(range(CLIENTS))
    check_after(t, pg, log, s)


# --- pgjdbc -----------------------------------------------------------------------

PGJDBC_JAR = "/usr/share/java/postgresql.jar"


@pytest.fixture(scope="module")
def pgjdbc_classes():
    """tests/java/PgjdbcPrepared.java compiled against Debian's pgjdbc."""
    assert os.path.exists(PGJDBC_JAR), "libpostgresql-jdbc-java is not installed"
    out = tempfile.mkdtemp(prefix="berth-java-")
    r = subprocess.run(["javac", "-d", out, "-cp", PGJDBC_JAR,
                        os.path.join(JAVA_DIR, "PgjdbcPrepared.java")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    yield out
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("threads", [5, CLIENTS])
def test_pgjdbc_default_prepare_threshold(target, pg, pgjdbc_classes, threads):
    """pgjdbc, default prepareThreshold: each statement run 50 times per thread,
    the later runs as named server-side statements S_n."""
    t = target(pool_size=POOL)
    fresh_table(pg, "jdbc_t", "t int, i int")
    log = PgLog(pg)
    url = "jdbc:postgresql://%s:%d/%s?connectTimeout=20" % (t.host, t.port, t.dbname)
    cmd = ["java", "-cp", "%s:%s" % (PGJDBC_JAR, pgjdbc_classes), "PgjdbcPrepared", url, t.user,
           t.password, str(threads), "50", "jdbc_t"] + (["direct"] if t.kind == "direct" else [])
    with MaxSampler(pg) as s:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"checks passed: (\d+)", r.stdout)
    assert m and int(m.group(1)) >= threads * 150, r.stdout
    check_after(t, pg, log, s)


# --- node-postgres and postgres.js ------------------------------------------------

def run_node(script, t, timeout=100, **env):
    e = dict(os.environ, DATABASE_URL=t.url(), TARGET=t.kind, **env)
    r = subprocess.run(["node", os.path.join(NODE_DIR, script)], env=e, cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checks passed" in r.stdout, r.stdout
    return r.stdout


@pytest.mark.timeout(120)
def test_node_postgres_named_queries(target, pg):
    t = target(pool_size=POOL)
    fresh_table(pg, "node_named")
    log = PgLog(pg)
    with MaxSampler(pg) as s:
        run_node("named_queries.js", t, NAMED_TABLE="node_named")
    check_after(t, pg, log, s)


@pytest.mark.timeout(120)
def test_postgresjs_defaults(target, pg):
    t = target(pool_size=POOL)
    fresh_table(pg, "pgjs_t")
    log = PgLog(pg)
    with MaxSampler(pg) as s:
        run_node("postgresjs.js", t, PGJS_TABLE="pgjs_t")
    check_after(t, pg, log, s)


# --- pgbench -M prepared -----------------------------------------------------------

CHECK_SCRIPT = r"""
\set r random(1, 1000000)
SELECT :r::int + :client_id::int AS got, 'c' || :client_id::text AS who \gset
\if :got != :r + :client_id
SELECT 1 / 0;
\endif
"""


@pytest.fixture(scope="module")
def pgbench_tables(pg):
    env = {"PGPASSWORD": pg.password, "PATH": "/usr/bin:/bin"}
    r = subprocess.run([PG_BIN + "/pgbench", "-i", "-s", "1", "-q", "-h", pg.host, "-p",
                        str(pg.port), "-U", "app", "app"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return pg


@pytest.mark.timeout(60)
def test_pgbench_prepared(target, pgbench_tables, tmp_path):
    """pgbench -M prepared (named statements P_n on every connection): the TPC-B-like
    script plus one that checks each answer (a wrong one divides by zero, which
    aborts the client), 20 clients for 3 s, 0 failed transactions.

    One thread per client (-j 20): pgbench prepares a client's statements with a
    blocking PQprepare, which stalls every other client of that thread; with more
    clients per thread than server connections, a client blocked waiting for a
    server stalls the clients holding them (in their transactions), and pgbench
    hangs through any transaction pooler - PostgreSQL alone has no such limit."""
    pg = pgbench_tables
    t = target(pool_size=POOL)
    script = tmp_path / "check.sql"
    script.write_text(CHECK_SCRIPT)
    log = PgLog(pg)
    with MaxSampler(pg) as s:
        r = subprocess.run([PG_BIN + "/pgbench", "-n", "-M", "prepared", "-c", str(CLIENTS),
                            "-j", str(CLIENTS), "-T", "3", "-b", "tpcb-like@1", "-f", "%s@1" % script,
                            "-h", t.host, "-p", str(t.port), "-U", t.user, t.dbname],
                           env=t.libpq_env(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    assert m and int(m.group(1)) > 100, r.stdout
    m = re.search(r"number of failed transactions: (\d+)", r.stdout)
    assert m and m.group(1) == "0", r.stdout
    assert "aborted" not in r.stderr and "ERROR" not in r.stderr, r.stderr
    check_after(t, pg, log, s)


# --- Prisma ORM 7 -------------------------------------------------------------------

@pytest.fixture(scope="module")
def prisma_client():
    """`prisma generate` for tests/prisma. The Prisma CLI will not start without its
    native schema engine, which downloads only from Prisma's servers (out of reach
    here); generate never runs it, so a stub that fails when run stands in."""
    env = dict(os.environ, PRISMA_SCHEMA_ENGINE_BINARY=os.path.join(PRISMA_DIR,
                                                                     "stub-schema-engine"),
               PRISMA_HIDE_UPDATE_MESSAGE="1", CHECKPOINT_DISABLE="1")
    shutil.rmtree(os.path.join(PRISMA_DIR, "generated"), ignore_errors=True)
    r = subprocess.run(["node", os.path.join(PRISMA_DIR, "node_modules", "prisma", "build",
                                             "index.js"), "generate"],
                       cwd=PRISMA_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.exists(os.path.join(PRISMA_DIR, "generated", "client", "index.js"))
    return PRISMA_DIR


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flavour", ["unnamed", "named"])
def test_prisma_orm7_app(target, pg, prisma_client, flavour):
    """tests/prisma/app.js with @prisma/adapter-pg's default unnamed statements, and
    with named ones (statementNameGenerator)."""
    t = target(pool_size=POOL)
    with open(os.path.join(prisma_client, "schema.sql")) as f:
        ddl = f.read()
    with psycopg.connect(pg.conninfo(), autocommit=True) as c:  # as app, owner of the tables
        c.execute(ddl)
    log = PgLog(pg)
    env = dict(os.environ, DATABASE_URL=t.url(), TARGET=t.kind, FLAVOUR=flavour)
    with MaxSampler(pg) as s:
        r = subprocess.run(["node", os.path.join(prisma_client, "app.js")], env=env,
                           cwd=prisma_client, capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checks passed" in r.stdout, r.stdout
    assert "abandoned clients: 30" in r.stdout, r.stdout
    backends = int(re.search(r"server backends after storm: (\d+)", r.stdout).group(1))
    if t.kind != "direct":
        assert backends <= POOL, r.stdout
    else:
        assert backends > POOL, r.stdout  # without a pooler, the storm's connections are real
    check_after(t, pg, log, s)
