"""Startup parameters and ParameterStatus: what clients see at login, what is
in force on whichever server connection they get, and that one client's SET
never leaks into another's session."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading

import psycopg
import pytest

import pgwire
from harness import PG_BIN


def test_parameter_status_at_login(berth, pg, pool_mode):
    b = berth(pool_mode, pool_size=2)
    direct_version = pg.sql("SHOW server_version")[0][0]
    with b.connect(application_name="my-app") as c:
        ps = c.info.parameter_status
        assert ps("server_version") == direct_version
        assert ps("client_encoding") == "UTF8"
        assert ps("DateStyle") == "ISO, MDY"
        assert ps("TimeZone")
        assert ps("integer_datetimes") == "on"
        assert ps("standard_conforming_strings") == "on"
        assert ps("application_name") == "my-app"
        assert ps("server_encoding") == "UTF8"
        assert c.info.backend_pid != 0


def test_raw_login_messages(berth, pg):
    """BackendKeyData and ParameterStatus come before the first ReadyForQuery."""
    b = berth("transaction", pool_size=1)
    c = pgwire.Conn(b.host, b.port)
    try:
        msgs = c.login("app", pg.password, "app", extra={"application_name": "raw"})
        tags = [t for t, _ in msgs]
        assert tags[-1] == b"Z" and msgs[-1][1] == b"I"
        assert b"K" in tags
        assert c.params["application_name"] == "raw"
        for k in ("server_version", "client_encoding", "DateStyle", "TimeZone",
                  "integer_datetimes", "standard_conforming_strings", "IntervalStyle",
                  "is_superuser", "session_authorization"):
            assert k in c.params, k
        assert c.params["session_authorization"] == "app"
    finally:
        c.close()


STARTUP = [
    {"application_name": "c0", "timezone": "Asia/Tokyo", "datestyle": "SQL, DMY"},
    {"application_name": "c1", "timezone": "America/New_York", "datestyle": "German, DMY"},
    {"application_name": "c2", "timezone": "UTC", "datestyle": "Postgres, MDY"},
]


def test_startup_params_in_force(berth, pool_mode):
    b = berth(pool_mode, pool_size=1)
    for p in STARTUP:
        with b.connect(application_name=p["application_name"],
                       options="-c TimeZone=%s -c DateStyle=%s" % (
                           p["timezone"], p["datestyle"].replace(" ", "\\ "))) as c:
            got = c.execute("SELECT current_setting('application_name'), "
                            "current_setting('TimeZone'), current_setting('DateStyle')")
            assert got.fetchone() == (p["application_name"], p["timezone"], p["datestyle"])


def test_startup_params_raw(berth, pg, pool_mode):
    """Startup parameters sent the way drivers send them (pgjdbc, node-postgres):
    as StartupMessage fields, not through options."""
    b = berth(pool_mode, pool_size=1)
    for i, p in enumerate(STARTUP):
        c = pgwire.Conn(b.host, b.port)
        try:
            c.login("app", pg.password, "app",
                    extra={"application_name": p["application_name"], "TimeZone": p["timezone"],
                           "DateStyle": p["datestyle"], "client_encoding": "LATIN1",
                           "search_path": "s%d, public" % i})
            assert c.params["TimeZone"] == p["timezone"]
            assert c.params["client_encoding"] == "LATIN1"
            rows, err = c.simple_query(
                "SELECT current_setting('application_name'), current_setting('TimeZone'), "
                "current_setting('DateStyle'), current_setting('client_encoding'), "
                "current_setting('search_path')")
            assert err is None
            assert rows == [[p["application_name"], p["timezone"], p["datestyle"], "LATIN1",
                             "s%d, public" % i]]
        finally:
            c.close()


@pytest.mark.timeout(90)
def test_ten_clients_own_params_on_pool_of_two(berth):
    b = berth("transaction", pool_size=2)
    zones = ["Asia/Tokyo", "Europe/Paris", "America/Chicago", "UTC", "Australia/Sydney",
             "Africa/Cairo", "Asia/Kolkata", "Europe/Lisbon", "America/Sao_Paulo", "Pacific/Fiji"]
    styles = ["ISO, DMY", "SQL, MDY", "German, DMY", "Postgres, YMD", "ISO, YMD"]
    errors = []
    barrier = threading.Barrier(10, timeout=30)

    def client(i):
        try:
            opts = "-c search_path=sp%d,public -c DateStyle=%s" % (
                i, styles[i % 5].replace(" ", "\\ "))
            with b.connect(application_name="client-%d" % i, options=opts) as c:
                c.execute("SET TimeZone = '%s'" % zones[i])
                barrier.wait()
                for n in range(15):
                    with c.transaction():
                        row = c.execute(
                            "SELECT current_setting('application_name'), "
                            "current_setting('TimeZone'), current_setting('DateStyle'), "
                            "current_setting('search_path'), pg_backend_pid()").fetchone()
                        assert row[:4] == ("client-%d" % i, zones[i], styles[i % 5],
                                           "sp%d,public" % i), row
                    assert c.execute("SHOW TimeZone").fetchone()[0] == zones[i]
                    assert c.info.parameter_status("TimeZone") == zones[i]
        except Exception as e:  # noqa: BLE001
            errors.append((i, repr(e)))

    ts = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:5]


def test_set_does_not_leak_transaction_mode(berth, pg):
    """A's SET TimeZone / application_name stays A's: B on the same server sees
    its own values, and A keeps its value on another server connection."""
    b = berth("transaction", pool_size=2)
    a = b.connect(application_name="A")
    bb = b.connect(application_name="B")
    try:
        default_tz = bb.execute("SHOW TimeZone").fetchone()[0]
        a.execute("SET TimeZone = 'Asia/Tokyo'")
        a.execute("SET application_name = 'A2'")
        a.execute("SET DateStyle = 'German'")
        assert a.info.parameter_status("TimeZone") == "Asia/Tokyo"
        # Pin one of the two servers: B, then A, must both take the other one.
        with b.connect() as pin:
            with pin.transaction():
                pin_pid = pin.execute("SELECT pg_backend_pid()").fetchone()[0]
                got = bb.execute("SELECT pg_backend_pid(), current_setting('TimeZone'), "
                                 "current_setting('application_name'), "
                                 "current_setting('DateStyle')").fetchone()
                assert got[0] != pin_pid
                assert got[1:] == (default_tz, "B", "ISO, MDY")
                row = a.execute("SELECT pg_backend_pid(), current_setting('TimeZone'), "
                                "current_setting('application_name'), "
                                "current_setting('DateStyle')").fetchone()
                assert row == (got[0], "Asia/Tokyo", "A2", "German, DMY")  # German implies DMY
        # A on a server B has used keeps its values; B keeps its own after A
        for _ in range(5):
            assert a.execute("SELECT current_setting('TimeZone'), "
                             "current_setting('application_name')").fetchone() == \
                ("Asia/Tokyo", "A2")
            assert bb.execute("SELECT current_setting('TimeZone'), "
                              "current_setting('application_name')").fetchone() == \
                (default_tz, "B")
    finally:
        a.close()
        bb.close()


def test_reset_returns_to_startup_value(berth):
    """As on a direct connection, RESET goes back to the client's own startup
    value, whichever server connection it runs on."""
    b = berth("transaction", pool_size=1)
    with b.connect(application_name="A") as a, b.connect(application_name="B") as bb:
        a.execute("SET application_name = 'A2'")
        assert bb.execute("SELECT current_setting('application_name')").fetchone() == ("B",)
        a.execute("RESET application_name")
        assert a.execute("SELECT current_setting('application_name')").fetchone() == ("A",)
        assert a.info.parameter_status("application_name") == "A"
        assert bb.execute("SELECT current_setting('application_name')").fetchone() == ("B",)


def test_set_local_does_not_stick(berth):
    b = berth("transaction", pool_size=1)
    with b.connect() as a, b.connect() as bb:
        default_tz = bb.execute("SHOW TimeZone").fetchone()[0]
        with a.transaction():
            a.execute("SET LOCAL TimeZone = 'Asia/Tokyo'")
            assert a.execute("SHOW TimeZone").fetchone() == ("Asia/Tokyo",)
        assert a.execute("SHOW TimeZone").fetchone() == (default_tz,)
        assert bb.execute("SHOW TimeZone").fetchone() == (default_tz,)


def test_options_search_path(berth, pg, pool_mode):
    """options=-c search_path=... (how Prisma sends ?schema=) is in force."""
    pg.sql("CREATE SCHEMA IF NOT EXISTS myschema AUTHORIZATION app")
    pg.sql("DROP TABLE IF EXISTS myschema.only_here; CREATE TABLE myschema.only_here (x int); "
           "INSERT INTO myschema.only_here VALUES (7); GRANT ALL ON myschema.only_here TO app")
    b = berth(pool_mode, pool_size=1)
    with b.connect() as plain:
        with pytest.raises(psycopg.errors.UndefinedTable):
            plain.execute("SELECT x FROM only_here")
    with b.connect(options="-c search_path=myschema") as c:
        for _ in range(3):
            assert c.execute("SELECT x FROM only_here").fetchone() == (7,)
            assert c.execute("SHOW search_path").fetchone() == ("myschema",)
    # the URL form a Prisma/libpq user writes
    with psycopg.connect(b.url(options="-c search_path=myschema"), autocommit=True,
                         prepare_threshold=None) as c:
        assert c.execute("SELECT x FROM only_here").fetchone() == (7,)


def test_real_guc_in_startup(berth, pg, pool_mode):
    """Any real GUC as a startup parameter is in force (node-postgres sends
    statement_timeout that way)."""
    b = berth(pool_mode, pool_size=1)
    for ms in (1234, 4321):
        c = pgwire.Conn(b.host, b.port)
        try:
            c.login("app", pg.password, "app", extra={"statement_timeout": str(ms)})
            assert c.simple_query("SHOW statement_timeout") == ([["%dms" % ms]], None)
        finally:
            c.close()


def test_ignore_startup_parameters(berth, pg):
    b = berth.file(settings={"ignore_startup_parameters": "extra_float_digits"})
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", pg.password, "app", extra={"extra_float_digits": "2"})
        rows, err = c.simple_query("SELECT 1")
        assert err is None and rows == [["1"]]
    finally:
        c.close()


def test_bad_startup_guc_value_refused(berth, pg):
    """A startup parameter the server rejects gets the server's error (at login
    or at the first query), not a hang, and berth goes on serving others."""
    b = berth("transaction", pool_size=1)
    c = pgwire.Conn(b.host, b.port)
    try:
        try:
            c.login("app", pg.password, "app", extra={"TimeZone": "Not/AZone"})
        except pgwire.ProtocolError as e:
            code = e.fields["C"]
        else:
            try:
                _, err = c.simple_query("SELECT 1")
                code = err and err["C"]
            except EOFError:
                code = "closed without error"
        assert code in ("22023", "08P01"), code
    finally:
        c.close()
    with b.connect() as ok:
        assert ok.execute("SELECT 1").fetchone() == (1,)


def _own_addr(c):
    """(host, port) of the client end of a psycopg connection's socket."""
    s = socket.socket(fileno=os.dup(c.pgconn.socket))
    try:
        return s.getsockname()[:2]
    finally:
        s.close()


def test_application_name_add_host(berth, pg, pool_mode):
    """PgBouncer's application_name_add_host: '<name> - <ip>:<port>' at login
    ('app' with no name), in force on the server; a later SET stays the client's."""
    b = berth(pool_mode, pool_size=1, application_name_add_host=1)
    with b.connect(application_name="my-app") as c, b.connect() as d:
        want_c = "my-app - %s:%d" % _own_addr(c)
        want_d = "app - %s:%d" % _own_addr(d)
        assert want_c != want_d
        assert c.info.parameter_status("application_name") == want_c
        assert d.info.parameter_status("application_name") == want_d
        # One server for both: each sees its own name, and so does the server.
        for _ in range(2):
            for conn, want in ((c, want_c), (d, want_d)):
                if pool_mode == "session" and conn is d:
                    continue  # session mode: d waits for c's server
                got = conn.execute("SELECT current_setting('application_name'), application_name "
                                   "FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
                assert got == (want, want)
        c.execute("SET application_name = 'renamed'")
        assert c.info.parameter_status("application_name") == "renamed"
        assert c.execute("SHOW application_name").fetchone() == ("renamed",)
        if pool_mode == "transaction":
            assert d.execute("SHOW application_name").fetchone() == (want_d,)
            assert c.execute("SHOW application_name").fetchone() == ("renamed",)


def test_application_name_add_host_unix_and_ipv6(berth, pg):
    """Unix-socket clients get PgBouncer's 'unix(<pid>@<hostname>):<port>';
    IPv6 ones '[addr]:port'."""
    sockdir = tempfile.mkdtemp(prefix="berth-sock-")
    try:
        os.chmod(sockdir, 0o777)
        b = berth.file(settings={"unix_socket_dir": sockdir, "application_name_add_host": "1"})
        with psycopg.connect(host=sockdir, port=b.port, user="app", password=pg.password,
                             dbname="app", application_name="sock", autocommit=True,
                             connect_timeout=10) as c:
            want = "sock - unix(%d@%s):%d" % (os.getpid(), socket.gethostname(), b.port)
            assert c.info.parameter_status("application_name") == want
            assert c.execute("SHOW application_name").fetchone() == (want,)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)

    b6 = berth("transaction", start=False, application_name_add_host=1)
    b6.env["BERTH_LISTEN"] = "[::1]:%d" % b6.port
    b6.host = "::1"
    b6.start()
    with b6.connect(application_name="six") as c:
        host, port = _own_addr(c)
        assert host == "::1"
        want = "six - [::1]:%d" % port
        assert c.execute("SHOW application_name").fetchone() == (want,)


def test_application_name_add_host_off(berth):
    """Off (the default): the name is the client's, unchanged."""
    b = berth("transaction", pool_size=1)
    with b.connect(application_name="plain") as c:
        assert c.info.parameter_status("application_name") == "plain"
        assert c.execute("SHOW application_name").fetchone() == ("plain",)


def test_login_notify_message(berth):
    """PgBouncer 1.25's login_notify_message: a NOTICE at every login, none when unset.
    psql shows it (psycopg drops notices that come before the first ReadyForQuery)."""
    def psql_login(b):
        return subprocess.run([PG_BIN + "/psql", "-X", "-At", "-c", "SELECT 'in'"],
                              env=b.libpq_env(), capture_output=True, text=True, timeout=30)

    b = berth(login_notify_message="Maintenance at 22:00 UTC, expect a short pause")
    for _ in range(2):  # the first login waits for the pool's own; the second does not
        r = psql_login(b)
        assert r.returncode == 0 and r.stdout.strip() == "in"
        assert r.stderr.strip() == "NOTICE:  Maintenance at 22:00 UTC, expect a short pause"
    plain = berth()
    r = psql_login(plain)
    assert r.returncode == 0 and r.stdout.strip() == "in" and r.stderr == ""
