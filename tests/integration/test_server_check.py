"""Server health and lifetimes: server_check_query after server_check_delay of
idleness, server_lifetime, server_idle_timeout; a broken idle server
connection is replaced without any client seeing it."""

import time

import pytest


@pytest.fixture
def check_table(pg):
    pg.sql("DROP TABLE IF EXISTS berth_check")
    pg.sql("CREATE TABLE berth_check (n int)")
    pg.sql("GRANT ALL ON berth_check TO app")
    yield
    pg.sql("DROP TABLE IF EXISTS berth_check")


def backend_pid(b):
    with b.connect() as c:
        return c.execute("SELECT pg_backend_pid()").fetchone()[0]


@pytest.mark.timeout(60)
def test_check_query_runs_only_after_idle_delay(berth, pg, check_table):
    b = berth("transaction", pool_size=1, server_check_delay=0.5,
              server_check_query="INSERT INTO berth_check VALUES (1)")
    first = backend_pid(b)
    assert backend_pid(b) == first  # reused at once: no check
    assert pg.sql("SELECT count(*) FROM berth_check")[0][0] == 0
    time.sleep(1.0)
    assert backend_pid(b) == first  # idle past the delay: checked, then lent
    assert pg.sql("SELECT count(*) FROM berth_check")[0][0] == 1


@pytest.mark.timeout(60)
def test_failed_check_replaces_server_unseen(berth, pg, check_table):
    # The check divides by the row count: with the table empty it fails.
    b = berth("transaction", pool_size=1, server_check_delay=0.3,
              server_check_query="SELECT 1 / (SELECT count(*) FROM berth_check)::int")
    first = backend_pid(b)
    time.sleep(0.8)
    with b.connect() as c:  # no error reaches the client
        assert c.execute("SELECT 41 + 1").fetchone() == (42,)
        second = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert second != first
    assert "berth's own query failed" in b.stderr()


@pytest.mark.timeout(60)
def test_idle_server_killed_is_replaced_unseen(berth, pg, pool_mode):
    b = berth(pool_mode, pool_size=1, server_check_query="")
    first = backend_pid(b)
    pg.sql("SELECT pg_terminate_backend(%s)", [first])
    time.sleep(0.5)
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] != first


@pytest.mark.timeout(60)
def test_server_lifetime(berth, pg):
    b = berth("transaction", pool_size=2, server_lifetime=0.5, server_check_query="")
    first = backend_pid(b)
    time.sleep(1.2)
    assert backend_pid(b) != first  # too old: closed when idle, a new one opened


@pytest.mark.timeout(60)
def test_server_idle_timeout(berth, pg):
    b = berth("transaction", pool_size=2, server_idle_timeout=0.5, server_check_query="")
    with b.connect() as c:
        c.execute("SELECT 1")
    assert pg.server_conns("app") == 1
    pg.wait_server_conns(lambda n: n == 0, timeout=5)


@pytest.mark.timeout(60)
def test_waiting_clients_get_every_checked_server(berth, pg):
    """All idle servers are due for a check and more clients than servers
    send at once: each waiting client gets a check of its own, so the whole
    pool serves them (not one checked server while the others sit idle).
    The check sleeps, so every client is queued before the first one ends."""
    import threading
    b = berth("transaction", pool_size=4, server_check_delay=0.5,
              server_check_query="SELECT pg_sleep(0.3)")

    def crowd(n, rounds):
        pids, errors = [], []
        conns = [b.connect() for _ in range(n)]
        start = threading.Barrier(n)

        def busy(c):
            try:
                start.wait()
                for _ in range(rounds):
                    pids.append(c.execute("SELECT pg_backend_pid(), pg_sleep(0.1)").fetchone()[0])
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=busy, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in conns:
            c.close()
        assert not errors, errors
        return pids

    assert len(set(crowd(4, 1))) == 4  # four servers, all opened
    assert pg.server_conns() == 4
    time.sleep(1.0)  # every one idle past server_check_delay
    pids = crowd(10, 3)
    assert len(pids) == 30
    # Ten clients keep the queue full for the whole run: with one check at a
    # time, one server would have served them all.
    assert len(set(pids)) == 4, sorted(set(pids))
    assert pg.server_conns() == 4
