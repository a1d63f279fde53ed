"""Signals, reload and port takeover: what operators and orchestrators do to a
running berth. Shutdown follows PgBouncer 1.23+: SIGTERM waits for clients to
leave, SIGINT for server connections to be released, a second signal or
SIGQUIT exits at once, shutdown_timeout bounds the wait. SIGHUP reloads.
"""

import os
import signal
import socket
import threading
import time

import psycopg
import pytest

from drivers import MaxSampler
from harness import Berth, free_port, make_ini, sqlstate, write_userlist, zero_file_env


def wait_exit(b, timeout):
    try:
        return b.proc.wait(timeout)
    except Exception:
        raise AssertionError("berth still running %ss after the signal:\n%s"
                             % (timeout, b.stderr()[-3000:]))


def refuses_connections(b):
    try:
        with socket.create_connection((b.host, b.port), timeout=1):
            return False
    except OSError:
        return True


@pytest.fixture
def ledger(pg):
    """A table the tests commit rows to, so commits can be checked on the server."""
    pg.sql("CREATE TABLE IF NOT EXISTS lifecycle_ledger (test text, n int)")
    pg.sql("GRANT ALL ON lifecycle_ledger TO app")
    yield lambda test: [r[0] for r in pg.sql(
        "SELECT n FROM lifecycle_ledger WHERE test = %s ORDER BY n", [test])]
    pg.sql("DROP TABLE IF EXISTS lifecycle_ledger")


# --- shutdown ---------------------------------------------------------------

@pytest.mark.timeout(60)
def test_sigterm_lets_open_transaction_commit(berth, ledger):
    b = berth("transaction", pool_size=2)
    c = b.connect()
    c.execute("BEGIN")
    c.execute("INSERT INTO lifecycle_ledger VALUES ('term', 1)")
    os.kill(b.pid, signal.SIGTERM)
    time.sleep(0.5)
    assert b.alive(), "SIGTERM must wait for clients, not exit"
    assert refuses_connections(b), "no new clients after SIGTERM"
    # The client goes on, on the same server connection, and commits.
    c.execute("INSERT INTO lifecycle_ledger VALUES ('term', 2)")
    c.execute("COMMIT")
    assert c.execute("SELECT 42").fetchone() == (42,)
    assert b.alive()
    c.close()
    assert wait_exit(b, 5) == 0
    assert ledger("term") == [1, 2]
    assert "no clients left" in b.stderr()


@pytest.mark.timeout(60)
def test_sigint_waits_for_servers_only(berth, ledger):
    b = berth("transaction", pool_size=3)
    busy = b.connect()
    idle = b.connect()
    idle.execute("SELECT 1")
    busy.execute("BEGIN")
    busy.execute("INSERT INTO lifecycle_ledger VALUES ('int', 1)")
    os.kill(b.pid, signal.SIGINT)
    time.sleep(0.5)
    assert b.alive(), "SIGINT must wait for the transaction in progress"
    # An idle client asking for a server now is told berth is going away.
    with pytest.raises(psycopg.OperationalError) as e:
        idle.execute("SELECT 1")
    assert sqlstate(e.value) in ("57P01", None)  # psycopg may only see the closed socket
    busy.execute("COMMIT")
    # Its server is released: berth exits although clients are still connected.
    assert wait_exit(b, 5) == 0
    assert ledger("int") == [1]
    busy.close()
    idle.close()


@pytest.mark.timeout(60)
def test_second_signal_exits_at_once_and_rolls_back(berth, ledger, pg):
    b = berth("transaction", pool_size=2)
    c = b.connect()
    c.execute("BEGIN")
    c.execute("INSERT INTO lifecycle_ledger VALUES ('twice', 1)")
    os.kill(b.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert b.alive()
    t0 = time.monotonic()
    os.kill(b.pid, signal.SIGTERM)
    assert wait_exit(b, 5) == 0
    assert time.monotonic() - t0 < 3
    with pytest.raises(psycopg.OperationalError):
        c.execute("COMMIT")
    # The server connection closed mid-transaction: PostgreSQL rolled it back.
    pg.wait_server_conns(lambda n: n == 0, timeout=10)
    assert ledger("twice") == []


@pytest.mark.timeout(60)
def test_sigquit_exits_at_once(berth):
    b = berth("session", pool_size=2)
    c = b.connect()
    c.execute("SELECT 1")
    t0 = time.monotonic()
    os.kill(b.pid, signal.SIGQUIT)
    assert wait_exit(b, 5) == 0
    assert time.monotonic() - t0 < 3
    c.close()


@pytest.mark.timeout(60)
def test_shutdown_timeout_bounds_the_wait(berth):
    b = berth("transaction", pool_size=2, shutdown_timeout=1)
    c = b.connect()
    c.execute("SELECT 1")
    t0 = time.monotonic()
    os.kill(b.pid, signal.SIGTERM)
    assert wait_exit(b, 10) == 0
    took = time.monotonic() - t0
    assert 0.8 <= took < 5, took
    assert "shutdown_timeout" in b.stderr()
    with pytest.raises(psycopg.OperationalError):
        c.execute("SELECT 1")
    c.close()


@pytest.mark.timeout(60)
def test_sigterm_with_no_clients_exits_promptly(berth):
    b = berth("transaction", pool_size=2)
    with b.connect() as c:
        c.execute("SELECT 1")
    t0 = time.monotonic()
    os.kill(b.pid, signal.SIGTERM)
    assert wait_exit(b, 5) == 0
    assert time.monotonic() - t0 < 2


# --- reload -----------------------------------------------------------------

def rewrite_ini(b, pg, settings, databases=None):
    users = os.path.join(b.workdir, "userlist.txt")
    s = {"pool_mode": "transaction"}
    s.update(settings)
    with open(b.ini_path, "w") as f:
        f.write(make_ini(b.port, s, databases or {"app": pg.conninfo()}, users))


def concurrent_sleeps(b, n, seconds):
    errors = []

    def run():
        try:
            with b.connect() as c:
                c.execute("SELECT pg_sleep(%s)" % seconds)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=run) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors


@pytest.mark.timeout(90)
def test_sighup_resizes_pool_live(berth, pg):
    b = berth.file(settings={"default_pool_size": 2})
    with MaxSampler(pg) as m:
        concurrent_sleeps(b, 6, 0.5)
    assert m.max == 2, m.max
    rewrite_ini(b, pg, {"default_pool_size": 5})
    os.kill(b.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "configuration reloaded" not in b.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "configuration reloaded" in b.stderr()
    with MaxSampler(pg) as m:
        concurrent_sleeps(b, 8, 0.8)
    assert m.max == 5, m.max
    # Shrinking closes the surplus idle connections.
    rewrite_ini(b, pg, {"default_pool_size": 1})
    os.kill(b.pid, signal.SIGHUP)
    pg.wait_server_conns(lambda n: n <= 1, timeout=5)
    with b.connect() as c:
        assert c.execute("SELECT 7").fetchone() == (7,)


@pytest.mark.timeout(60)
def test_bad_reload_changes_nothing(berth, pg):
    b = berth.file(settings={"default_pool_size": 2})
    with open(b.ini_path) as f:
        good = f.read()
    with open(b.ini_path, "a") as f:
        f.write("default_pool_size = lots\n")
    os.kill(b.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "reload failed" not in b.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    err = b.stderr()
    assert "reload failed" in err
    assert "berth.ini:%d" % (good.count("\n") + 1) in err, err[-2000:]
    assert "default_pool_size" in err
    assert b.alive()
    with MaxSampler(pg) as m:
        concurrent_sleeps(b, 4, 0.5)
    assert m.max == 2, m.max


@pytest.mark.timeout(60)
def test_reload_adds_and_removes_databases(berth, pg):
    b = berth.file(settings={"default_pool_size": 2})
    with pytest.raises(psycopg.OperationalError) as e:
        b.connect(dbname="extra")
    rewrite_ini(b, pg, {"default_pool_size": 2},
                {"app": pg.conninfo(), "extra": pg.conninfo()})
    os.kill(b.pid, signal.SIGHUP)
    time.sleep(0.5)
    stay = b.connect(dbname="extra")
    assert stay.execute("SELECT current_database()").fetchone() == ("app",)
    # Removed again: new clients are refused, the connected one drains normally.
    rewrite_ini(b, pg, {"default_pool_size": 2})
    os.kill(b.pid, signal.SIGHUP)
    time.sleep(0.5)
    with pytest.raises(psycopg.OperationalError) as e:
        b.connect(dbname="extra")
    assert "extra" in str(e.value)
    assert stay.execute("SELECT 5").fetchone() == (5,)
    stay.close()
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.timeout(60)
def test_reload_keeps_restart_only_settings(berth, pg):
    b = berth.file(settings={"default_pool_size": 2, "pkt_buf": 16384})
    rewrite_ini(b, pg, {"default_pool_size": 2, "pkt_buf": 8192})
    os.kill(b.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "pkt_buf changed" not in b.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "pkt_buf changed; it applies only after a restart" in b.stderr()
    with b.connect() as c:
        assert c.execute("SELECT repeat('x', 50000)").fetchone()[0] == "x" * 50000


# --- port takeover ----------------------------------------------------------

@pytest.mark.timeout(90)
def test_so_reuseport_takeover_drops_no_connection(pg):
    port = free_port()
    env = zero_file_env(pg, port, "transaction", 4, so_reuseport=1)
    old = Berth(env, port=port, user=pg.user, password=pg.password, dbname=pg.dbname).start()
    new = None
    stop = threading.Event()
    results = {"ok": 0, "after_old_exit": 0, "errors": []}

    def clients():
        while not stop.is_set():
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user=pg.user,
                                     password=pg.password, dbname=pg.dbname,
                                     connect_timeout=5, autocommit=True) as c:
                    assert c.execute("SELECT 1").fetchone() == (1,)
                results["ok"] += 1
                if old.proc.poll() is not None:
                    results["after_old_exit"] += 1
            except Exception as e:  # noqa: BLE001 - counted and reported
                results["errors"].append(repr(e))

    ts = [threading.Thread(target=clients) for _ in range(3)]
    try:
        for t in ts:
            t.start()
        time.sleep(0.5)
        new = Berth(env, port=port, user=pg.user, password=pg.password,
                    dbname=pg.dbname).start()
        time.sleep(0.5)
        os.kill(old.pid, signal.SIGTERM)
        assert wait_exit(old, 15) == 0
        time.sleep(1.0)
    finally:
        stop.set()
        for t in ts:
            t.join(20)
        old.stop()
        if new is not None:
            new.stop()
    assert results["errors"] == [], results["errors"][:5]
    assert results["ok"] > 20
    assert results["after_old_exit"] > 0


def test_without_so_reuseport_second_berth_cannot_bind(berth, pg):
    b = berth("transaction", pool_size=2)
    env = zero_file_env(pg, b.port, "transaction", 2)
    second = Berth(env, port=b.port, user=pg.user, password=pg.password, dbname=pg.dbname)
    try:
        second.start(timeout=5)  # the port answers: the first berth is on it
    except RuntimeError:
        pass
    assert second.proc.wait(5) == 1
    assert "Address already in use" in second.stderr()
    second.stop()
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


# --- reload with new connection settings, RECONNECT, server_fast_close ------

def backend_pids(pg):
    return {r[0] for r in pg.sql("SELECT pid FROM pg_stat_activity WHERE usename = 'app' "
                                 "AND pid <> pg_backend_pid()")}


def wait_backend_gone(pg, pid, what):
    deadline = time.monotonic() + 5
    while pid in backend_pids(pg):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def wait_reload(b, n_before):
    deadline = time.monotonic() + 5
    while b.stderr().count("reloading the configuration") <= n_before:
        assert time.monotonic() < deadline, "no reload logged"
        time.sleep(0.05)
    time.sleep(0.2)


@pytest.mark.timeout(60)
def test_reload_with_new_connection_settings_replaces_servers(berth, pg):
    """As PgBouncer: a reload that changes a database's connection settings
    replaces its servers (idle ones at once, busy ones once released); one
    that changes nothing of them keeps them."""
    b = berth.file(settings={"default_pool_size": 2})
    with b.connect() as idle, b.connect() as busy:
        busy.execute("BEGIN")
        pid_busy = busy.execute("SELECT pg_backend_pid()").fetchone()[0]
        pid_idle = idle.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pid_idle != pid_busy
        # Same connection settings, another setting changed: servers stay.
        rewrite_ini(b, pg, {"default_pool_size": 3})
        os.kill(b.pid, signal.SIGHUP)
        wait_reload(b, 0)
        assert idle.execute("SELECT pg_backend_pid()").fetchone()[0] == pid_idle
        assert "connection settings changed" not in b.stderr()
        # A new libpq keyword for the database: new servers.
        rewrite_ini(b, pg, {"default_pool_size": 3},
                    {"app": pg.conninfo() + " connect_timeout=11"})
        os.kill(b.pid, signal.SIGHUP)
        wait_reload(b, 1)
        assert "database app: connection settings changed, reconnecting" in b.stderr()
        assert pid_idle not in backend_pids(pg)
        assert idle.execute("SELECT pg_backend_pid()").fetchone()[0] not in (pid_idle, pid_busy)
        # The open transaction is not cut: it commits on its server, which then goes.
        assert busy.execute("SELECT pg_backend_pid()").fetchone()[0] == pid_busy
        busy.execute("COMMIT")
        wait_backend_gone(pg, pid_busy, "old server kept after its transaction")
        assert busy.execute("SELECT pg_backend_pid()").fetchone()[0] != pid_busy


def test_server_tls_settings_changed_by_reload_or_set_replace_servers(berth, pg):
    """PgBouncer closes servers when a reload changes server_tls_* ("database
    configuration changed"); berth replaces them, and does the same for SET."""
    b = berth.file(settings={"admin_users": "admin"},
                   users={pg.user: pg.password, "admin": "adminpw"})
    with b.connect() as c:
        pid0 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        # PostgreSQL here has no TLS: prefer logs in without it, but the setting changed
        rewrite_ini(b, pg, {"admin_users": "admin", "server_tls_sslmode": "prefer"})
        os.kill(b.pid, signal.SIGHUP)
        wait_reload(b, 0)
        assert "database app: connection settings changed, reconnecting" in b.stderr()
        wait_backend_gone(pg, pid0, "server of the old TLS settings kept")
        pid1 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pid1 != pid0
        _console(b, "SET server_tls_sslmode = allow")
        wait_backend_gone(pg, pid1, "server of the old TLS settings kept after SET")
        pid2 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pid2 not in (pid0, pid1)
        # the same value again changes nothing
        _console(b, "SET server_tls_sslmode = allow")
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == pid2


def _console(b, cmd):
    with psycopg.connect(host=b.host, port=b.port, user="admin", password="adminpw",
                         dbname="pgbouncer", autocommit=True) as adm:
        adm.execute(cmd)


def _session_berth(berth, pg, **settings):
    s = {"pool_mode": "session", "admin_users": "admin"}
    s.update(settings)
    return berth.file(settings=s, users={pg.user: pg.password, "admin": "adminpw"})


@pytest.mark.timeout(60)
def test_server_fast_close_ends_idle_sessions_after_reconnect(berth, pg):
    b = _session_berth(berth, pg, server_fast_close=1)
    with b.connect() as idle, b.connect() as busy:
        pid_idle = idle.execute("SELECT pg_backend_pid()").fetchone()[0]
        busy.execute("BEGIN")
        pid_busy = busy.execute("SELECT pg_backend_pid()").fetchone()[0]
        _console(b, "RECONNECT")
        wait_backend_gone(pg, pid_idle, "idle session's server not closed")
        with pytest.raises(psycopg.OperationalError) as e:
            idle.execute("SELECT 1")
        assert "server_fast_close" in str(e.value)
        # The transaction runs to its end on its server; then the session ends.
        time.sleep(0.3)
        assert busy.execute("SELECT pg_backend_pid()").fetchone()[0] == pid_busy
        busy.execute("COMMIT")
        wait_backend_gone(pg, pid_busy, "server kept after the transaction")
        with pytest.raises(psycopg.OperationalError):
            busy.execute("SELECT 1")
    with b.connect() as c:
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] not in (pid_idle, pid_busy)


@pytest.mark.timeout(60)
def test_reconnect_without_server_fast_close_waits_for_session_end(berth, pg):
    b = _session_berth(berth, pg)
    with b.connect() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        _console(b, "RECONNECT")
        time.sleep(0.5)
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    wait_backend_gone(pg, pid, "marked server kept after its session")
    with b.connect() as c:
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
