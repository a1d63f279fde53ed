"""Replication connections through berth (PgBouncer 1.23+): a client whose
startup packet says replication=true (physical) or replication=database
(logical) gets a walsender of its own, opened with libpq's replication
option, in session mode; its bytes pass through both ways untouched
(BASE_BACKUP's COPY, START_REPLICATION's CopyBoth stream), and the walsender
is closed when the client leaves, never lent to anyone else."""

import os
import shutil
import subprocess
import tempfile
import time

import psycopg
import pytest

import pgwire
from harness import PG_BIN


@pytest.fixture
def repl_role(pg):
    pg.sql("ALTER ROLE app REPLICATION", dbname="postgres")
    yield
    pg.sql("ALTER ROLE app NOREPLICATION", dbname="postgres")


def psql(host, port, password, conninfo_extra, sql):
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    out = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|",
                          "host=%s port=%d user=app dbname=app %s" % (host, port, conninfo_extra),
                          "-c", sql], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode().strip()


def walsenders(pg):
    return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'",
                  dbname="postgres")[0][0]


def wait_no_walsender(pg):
    deadline = time.monotonic() + 10
    while walsenders(pg) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert walsenders(pg) == 0


def test_physical_and_logical_identify_system(berth, pg, repl_role):
    b = berth(admin_users="app")
    direct = psql(pg.host, pg.port, pg.password, "replication=true", "IDENTIFY_SYSTEM")
    through = psql(b.host, b.port, b.password, "replication=true", "IDENTIFY_SYSTEM")
    assert through.split("|")[0] == direct.split("|")[0]  # the same system identifier
    logical = psql(b.host, b.port, b.password, "replication=database", "IDENTIFY_SYSTEM")
    assert logical.split("|")[3] == "app"  # a logical walsender names its database
    assert psql(b.host, b.port, b.password, "replication=database", "SELECT 40 + 2") == "42"
    wait_no_walsender(pg)  # each closed when its client left
    with b.connect() as c:  # ordinary clients: ordinary backends
        assert c.execute("SELECT backend_type FROM pg_stat_activity "
                         "WHERE pid = pg_backend_pid()").fetchone()[0] == "client backend"


def test_pg_basebackup_streams_through_berth(berth, pg, repl_role):
    """BASE_BACKUP's COPY stream and, for -X stream, a second connection's
    START_REPLICATION CopyBoth stream, both through berth."""
    b = berth()
    d = tempfile.mkdtemp(prefix="berth-basebackup-")
    try:
        target = os.path.join(d, "data")
        env = dict(os.environ, PGPASSWORD=b.password)
        out = subprocess.run([PG_BIN + "/pg_basebackup", "-h", b.host, "-p", str(b.port),
                              "-U", "app", "-D", target, "-X", "stream", "-c", "fast",
                              "--no-sync"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        assert out.returncode == 0, out.stderr.decode()
        assert os.path.exists(os.path.join(target, "PG_VERSION"))
        out = subprocess.run([PG_BIN + "/pg_verifybackup", "-n", target],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        assert out.returncode == 0, out.stderr.decode()
        wals = os.listdir(os.path.join(target, "pg_wal"))
        assert any(len(w) == 24 for w in wals), wals  # WAL came through the CopyBoth stream
    finally:
        shutil.rmtree(d, ignore_errors=True)
    wait_no_walsender(pg)


def test_bad_replication_value_is_refused(berth, pg):
    b = berth()
    c = pgwire.Conn(b.host, b.port)
    c.startup({"user": b.user, "database": b.dbname, "replication": "sideways"})
    tag, payload = c.read_msg()
    assert tag == b"E"
    assert b"C22023" in payload and b"replication" in payload
    c.close()
    with b.connect() as ok:  # others unaffected
        assert ok.execute("SELECT 1").fetchone()[0] == 1


def test_replication_without_the_role_attribute_gets_the_servers_error(berth, pg):
    b = berth()
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(host=b.host, port=b.port, user=b.user, password=b.password,
                        dbname=b.dbname, replication="true", connect_timeout=10).close()
    assert "replication" in str(ei.value)


def test_pg_receivewal_streams_under_its_application_name(berth, pg, repl_role):
    """A walsender is matched by application_name (synchronous_standby_names):
    berth logs in with the client's. pg_receivewal keeps streaming until stopped."""
    b = berth()
    d = tempfile.mkdtemp(prefix="berth-receivewal-")
    env = dict(os.environ, PGPASSWORD=b.password)
    proc = subprocess.Popen([PG_BIN + "/pg_receivewal", "-D", d, "--no-sync", "-d",
                             "host=%s port=%d user=app application_name=standby_b" % (
                                 b.host, b.port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        rows = []
        while time.monotonic() < deadline and not rows:
            rows = pg.sql("SELECT application_name, state FROM pg_stat_replication",
                          dbname="postgres")
            time.sleep(0.1)
        assert rows and rows[0] == ("standby_b", "streaming"), rows
        pg.sql("SELECT pg_switch_wal()", dbname="postgres")  # a segment completes
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not [f for f in os.listdir(d)
                                                   if len(f) == 24]:
            time.sleep(0.1)
        assert [f for f in os.listdir(d) if len(f) == 24], os.listdir(d)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
        shutil.rmtree(d, ignore_errors=True)
    wait_no_walsender(pg)


def test_walsender_left_unused_is_closed(berth, pg, repl_role):
    """A replication client that logs in and leaves without a command does not
    leave the walsender opened for it idle in the pool, holding one of
    PostgreSQL's max_wal_senders slots until server_idle_timeout."""
    b = berth(server_idle_timeout=600)
    c = pgwire.Conn(b.host, b.port)
    c.login(b.user, b.password, "replication",
            extra={"replication": "true", "application_name": "left_early"})
    assert walsenders(pg) == 1  # opened at login, to learn the server's parameters
    c.close()
    t0 = time.monotonic()
    wait_no_walsender(pg)
    assert time.monotonic() - t0 < 5
