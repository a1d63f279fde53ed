"""The clients users run, with their code unchanged, through berth in
transaction mode: psycopg 3 with psycopg_pool, and node-postgres."""

import os
import subprocess
import threading

import psycopg
import psycopg_pool
import pytest

from harness import NODE_DIR


@pytest.mark.timeout(90)
def test_psycopg_pool(berth, pg):
    # prepare_threshold=None is psycopg's documented setting behind a transaction
    # pooler; named prepared statements in transaction mode are the next issue.
    b = berth("transaction", pool_size=4)
    pg.sql("DROP TABLE IF EXISTS py_mix; CREATE TABLE py_mix (id int PRIMARY KEY, v text); "
           "GRANT ALL ON py_mix TO app")
    pool = psycopg_pool.ConnectionPool(b.url(), min_size=4, max_size=16, timeout=30,
                                       kwargs={"prepare_threshold": None}, open=True)
    errors = []
    try:
        def work(i):
            try:
                with pool.connection() as c:
                    assert c.execute("SELECT %s::int, %s::text", [i, "s%d" % i]).fetchone() == \
                        (i, "s%d" % i)
                with pool.connection() as c:  # the pool's default: a transaction per block
                    c.execute("INSERT INTO py_mix VALUES (%s, %s)", [i, "v"])
                    if i % 3 == 0:
                        c.rollback()
                with pool.connection() as c:
                    with pytest.raises(psycopg.errors.UndefinedColumn):
                        c.execute("SELECT no_such_column")
                with pool.connection() as c:
                    n = c.execute("SELECT count(*) FROM py_mix WHERE id = %s", [i]).fetchone()[0]
                    assert n == (0 if i % 3 == 0 else 1), (i, n)
            except Exception as e:  # noqa: BLE001
                errors.append((i, repr(e)))

        ts = [threading.Thread(target=work, args=(i,)) for i in range(60)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    finally:
        pool.close()
    assert not errors, errors[:5]
    assert pg.sql("SELECT count(*) FROM py_mix") == [(40,)]


@pytest.mark.timeout(90)
def test_psycopg_async(berth):
    import asyncio

    b = berth("transaction", pool_size=3)

    async def client(i):
        async with await psycopg.AsyncConnection.connect(
                b.url(), autocommit=True, prepare_threshold=None) as c:
            for n in range(5):
                cur = await c.execute("SELECT %s::int * 1000 + %s::int", [i, n])
                assert (await cur.fetchone()) == (i * 1000 + n,)
            async with c.transaction():
                cur = await c.execute("SELECT txid_current() = txid_current()")
                assert (await cur.fetchone()) == (True,)
            return i

    async def main():
        return await asyncio.gather(*(client(i) for i in range(50)))

    assert asyncio.run(main()) == list(range(50))


@pytest.mark.timeout(120)
def test_node_postgres_pool(berth, pg):
    b = berth("transaction", pool_size=5, max_client_conn=100)
    env = dict(os.environ, DATABASE_URL=b.url(), MIX_TABLE="node_mix")
    r = subprocess.run(["node", os.path.join(NODE_DIR, "pool_mix.js")], env=env, cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=100)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checks passed" in r.stdout
    assert pg.server_conns("app") <= 5
