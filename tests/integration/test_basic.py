"""Basic passthrough: psql and psycopg through berth in both pool modes, the
command line, the unix socket."""

import os
import shutil
import subprocess
import tempfile

import harness
from harness import PG_BIN


def test_version_and_help():
    v = subprocess.run([harness.BERTH_BIN, "--version"], capture_output=True, text=True,
                       timeout=10)
    assert v.returncode == 0, v.stderr
    assert v.stdout.startswith("berth "), v.stdout
    h = subprocess.run([harness.BERTH_BIN, "--help"], capture_output=True, text=True, timeout=10)
    assert h.returncode == 0, h.stderr
    assert "berth" in h.stdout.lower() and len(h.stdout.splitlines()) >= 1


def test_psycopg_select(berth, pool_mode, pg):
    b = berth(pool_mode, pool_size=2)
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
        user, db, addr = c.execute(
            "SELECT current_user, current_database(), inet_server_port()").fetchone()
        assert (user, db) == ("app", "app")
        assert addr == pg.port  # the query ran on the real server
        assert c.execute("SELECT %s::text || %s::text", ["a", "b"]).fetchone() == ("ab",)


def test_psql(berth, pool_mode):
    b = berth(pool_mode, pool_size=2)
    r = subprocess.run([PG_BIN + "/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                        "-c", "SELECT 1", "-c", "SELECT current_user || '@' || current_database()"],
                       env=b.libpq_env(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "app@app"]


def test_psql_script_with_error_keeps_going(berth, pool_mode):
    b = berth(pool_mode, pool_size=1)
    script = ("SELECT 1/0;\n"
              "BEGIN; SELECT 2; ROLLBACK;\n"
              "SELECT 'after';\n")
    r = subprocess.run([PG_BIN + "/psql", "-X", "-At"], input=script, env=b.libpq_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "division by zero" in r.stderr
    assert r.stdout.split() == ["BEGIN", "2", "ROLLBACK", "after"]


def test_many_sequential_connections(berth, pool_mode, pg):
    """Connect/disconnect repeatedly: server connections are reused, not leaked."""
    b = berth(pool_mode, pool_size=3)
    for i in range(30):
        with b.connect() as c:
            assert c.execute("SELECT %s::int", [i]).fetchone() == (i,)
    n = pg.server_conns("app")
    assert 1 <= n <= 3


def test_unix_socket(berth, pg):
    sockdir = tempfile.mkdtemp(prefix="berth-sock-")
    try:
        os.chmod(sockdir, 0o777)
        b = berth.file(settings={"unix_socket_dir": sockdir, "pool_mode": "session"})
        with harness.psycopg.connect(host=sockdir, port=b.port, user="app",
                                     password=pg.password, dbname="app", autocommit=True,
                                     connect_timeout=10) as c:
            assert c.execute("SELECT current_user").fetchone() == ("app",)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
