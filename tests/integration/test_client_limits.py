"""max_db_client_connections and max_user_client_connections (PgBouncer 1.24):
client connections per database and per user, globally, per [databases]
entry and per [users] entry; the client past the limit gets FATAL 53300 as
PostgreSQL refuses past max_connections, and a freed slot is taken again."""

import psycopg
import pytest

from harness import attempt


def refused(b, limit, dbname=None):
    """The login is refused with 53300 naming the limit (psycopg gives no
    SQLSTATE at connect time, so the code comes from the raw client)."""
    ok, state, _ = attempt(b, dbname=dbname)
    assert (ok, state) == (False, "53300")
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(**({"dbname": dbname} if dbname else {})).close()
    assert "no more connections allowed (%s)" % limit in str(ei.value), ei.value


def test_max_db_client_connections(berth):
    b = berth(max_db_client_connections=2)
    c1, c2 = b.connect(), b.connect()
    refused(b, "max_db_client_connections")
    assert c1.execute("SELECT 1").fetchone()[0] == 1  # the others are untouched
    c1.close()
    with b.connect() as c3:
        assert c3.execute("SELECT 3").fetchone()[0] == 3
    c2.close()


def test_per_entry_and_per_user_limits(berth, pg):
    b = berth.file(settings={"admin_users": "app"},
                   databases={"app": pg.conninfo() + " max_db_client_connections=1",
                              "other": pg.conninfo()},
                   start=False)
    with open(b.ini_path, "a") as f:
        f.write("\n[users]\napp = max_user_client_connections=3\n")
    b.start()
    a1 = b.connect()
    refused(b, "max_db_client_connections")
    o1, o2 = b.connect(dbname="other"), b.connect(dbname="other")
    refused(b, "max_user_client_connections", dbname="other")  # app's third, across databases
    with psycopg.connect(host=b.host, port=b.port, user="app", password=pg.password,
                         dbname="pgbouncer", autocommit=True) as adm:
        dbs = {r[0]: r for r in adm.execute("SHOW DATABASES").fetchall()}
        assert dbs["app"][13:15] == (1, 1)  # max_client_connections, current_client_connections
        assert dbs["other"][13:15] == (0, 2)
        users = {r[0]: r for r in adm.execute("SHOW USERS").fetchall()}
        assert users["app"][6] == 3  # max_user_client_connections
    o2.close()
    with b.connect(dbname="other") as o3:
        assert o3.execute("SELECT 2").fetchone()[0] == 2
    a1.close()
    o1.close()


def open_file_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        line = next(ln for ln in f if ln.startswith("Max open files"))
    return [int(v) for v in line.split()[3:5]]


def test_open_file_limit_is_raised_to_serve_max_client_conn(berth, pg):
    """Clients and servers are open files. Started with the soft limit many systems
    give (here 256, hard 4096), berth would turn clients away with EMFILE long before
    max_client_conn: it raises the soft limit to the hard one, so 400 clients hold
    connections at once and each runs a query; when even the hard limit is short it
    warns, naming the setting, and serves the clients it can."""
    b = berth(max_client_conn=1000, pool_size=5, start=False)
    b.nofile = (256, 4096)
    b.start()
    assert open_file_limits(b.pid) == [4096, 4096]
    conns = []
    try:
        for _ in range(400):
            conns.append(b.connect())
        for i, c in enumerate(conns):
            assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    finally:
        for c in conns:
            c.close()
    assert "open files" not in b.stderr()

    short = berth(max_client_conn=1000, pool_size=5, start=False)
    short.nofile = (256, 300)
    short.start()
    assert open_file_limits(short.pid) == [300, 300]
    assert "max_client_conn 1000 and the pools need about" in short.stderr()
    with short.connect() as c:
        assert c.execute("SELECT 'still serving'").fetchone() == ("still serving",)
