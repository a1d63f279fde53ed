"""The admin console on the virtual database berth (alias pgbouncer): PgBouncer
1.25's SHOW columns and types, rows checked against what the test opened,
permissions, control commands (PAUSE, RESUME, KILL, KILL_CLIENT, DISABLE, SET,
RECONNECT, WAIT_CLOSE, SUSPEND, RELOAD, SHUTDOWN), the unix-socket console user
and psql. Counters of SHOW STATS are checked against the exact traffic sent."""

import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

import harness
import pgwire
from harness import BERTH_BIN, RUN_AS, attempt

TEXT, INT4, INT8, NUMERIC = 25, 23, 20, 1700

# Column names, order and type OIDs of PgBouncer 1.25 (doc/usage.md "SHOW commands";
# types as its RowDescription sends them: i = int4, s = text, N = numeric, T = text).
SOCKET_COLS = [("type", TEXT), ("user", TEXT), ("database", TEXT), ("replication", TEXT),
               ("state", TEXT), ("addr", TEXT), ("port", INT4), ("local_addr", TEXT),
               ("local_port", INT4), ("connect_time", TEXT), ("request_time", TEXT),
               ("wait", INT4), ("wait_us", INT4), ("close_needed", INT4), ("ptr", TEXT),
               ("link", TEXT), ("remote_pid", INT4), ("tls", TEXT), ("application_name", TEXT),
               ("prepared_statements", INT4), ("id", INT4)]
BUFFER_COLS = [(n, INT4) for n in ("recv_pos", "pkt_pos", "pkt_remain", "send_pos",
                                    "send_remain", "pkt_avail", "send_avail")]
EXPECTED = {
    "POOLS": [("database", TEXT), ("user", TEXT), ("cl_active", INT4), ("cl_waiting", INT4),
              ("cl_active_cancel_req", INT4), ("cl_waiting_cancel_req", INT4),
              ("sv_active", INT4), ("sv_active_cancel", INT4), ("sv_being_canceled", INT4),
              ("sv_idle", INT4), ("sv_used", INT4), ("sv_tested", INT4), ("sv_login", INT4),
              ("maxwait", INT4), ("maxwait_us", INT4), ("pool_mode", TEXT),
              ("load_balance_hosts", TEXT)],
    "CLIENTS": SOCKET_COLS,
    "SERVERS": SOCKET_COLS,
    "DATABASES": [("name", TEXT), ("host", TEXT), ("port", INT4), ("database", TEXT),
                  ("force_user", TEXT), ("pool_size", INT4), ("min_pool_size", INT4),
                  ("reserve_pool_size", INT4), ("server_lifetime", INT4), ("pool_mode", TEXT),
                  ("load_balance_hosts", TEXT), ("max_connections", INT4),
                  ("current_connections", INT4), ("max_client_connections", INT4),
                  ("current_client_connections", INT4), ("paused", INT4), ("disabled", INT4)],
    "USERS": [("name", TEXT), ("pool_size", TEXT), ("reserve_pool_size", TEXT),
              ("pool_mode", TEXT), ("max_user_connections", INT4),
              ("current_connections", INT4), ("max_user_client_connections", INT4),
              ("current_client_connections", INT4)],
    "CONFIG": [("key", TEXT), ("value", TEXT), ("default", TEXT), ("changeable", TEXT)],
    "LISTS": [("list", TEXT), ("items", INT4)],
    "VERSION": [("version", TEXT)],
    # berth's own command (PgBouncer has none): the upstream health loop's view.
    "HEALTH": [("database", TEXT), ("state", TEXT), ("last_check", TEXT),
               ("last_success", TEXT), ("latency_us", INT8), ("consecutive_failures", INT8),
               ("checks", INT8), ("failures", INT8), ("last_error", TEXT)],
    "STATS": [("database", TEXT), ("total_server_assignment_count", NUMERIC),
              ("total_xact_count", NUMERIC), ("total_query_count", NUMERIC),
              ("total_received", NUMERIC), ("total_sent", NUMERIC), ("total_xact_time", NUMERIC),
              ("total_query_time", NUMERIC), ("total_wait_time", NUMERIC),
              ("total_client_parse_count", NUMERIC), ("total_server_parse_count", NUMERIC),
              ("total_bind_count", NUMERIC), ("total_client_login_count", NUMERIC),
              ("avg_server_assignment_count", NUMERIC),
              ("avg_xact_count", NUMERIC), ("avg_query_count", NUMERIC), ("avg_recv", NUMERIC),
              ("avg_sent", NUMERIC), ("avg_xact_time", NUMERIC), ("avg_query_time", NUMERIC),
              ("avg_wait_time", NUMERIC), ("avg_client_parse_count", NUMERIC),
              ("avg_server_parse_count", NUMERIC), ("avg_bind_count", NUMERIC),
              ("avg_client_login_count", NUMERIC)],
    "STATS_TOTALS": [("database", TEXT), ("server_assignment_count", NUMERIC),
                     ("xact_count", NUMERIC), ("query_count", NUMERIC),
                     ("bytes_received", NUMERIC), ("bytes_sent", NUMERIC), ("xact_time", NUMERIC),
                     ("query_time", NUMERIC), ("wait_time", NUMERIC),
                     ("client_parse_count", NUMERIC), ("server_parse_count", NUMERIC),
                     ("bind_count", NUMERIC), ("client_login_count", NUMERIC)],
    "STATS_AVERAGES": [("database", TEXT), ("server_assignment_count", NUMERIC),
                       ("xact_count", NUMERIC), ("query_count", NUMERIC),
                       ("bytes_received", NUMERIC), ("bytes_sent", NUMERIC),
                       ("xact_time", NUMERIC), ("query_time", NUMERIC), ("wait_time", NUMERIC),
                       ("avg_client_parse_count", NUMERIC), ("avg_server_parse_count", NUMERIC),
                       ("avg_bind_count", NUMERIC), ("avg_client_login_count", NUMERIC)],
    "SOCKETS": SOCKET_COLS + BUFFER_COLS,
    "ACTIVE_SOCKETS": SOCKET_COLS + BUFFER_COLS,
    "TOTALS": [("name", TEXT), ("value", NUMERIC)],
    "MEM": [("name", TEXT), ("size", INT4), ("used", INT4), ("free", INT4), ("memtotal", INT4)],
    "DNS_HOSTS": [("hostname", TEXT), ("ttl", INT8), ("addrs", TEXT)],
    "DNS_ZONES": [("zonename", TEXT), ("serial", INT8), ("count", INT4)],
    "STATE": [("key", TEXT), ("value", TEXT)],
    "PEERS": [("peer_id", INT4), ("host", TEXT), ("port", INT4), ("pool_size", INT4)],
    "PEER_POOLS": [("peer_id", INT4), ("cl_active_cancel_req", INT4),
                   ("cl_waiting_cancel_req", INT4), ("sv_active_cancel", INT4),
                   ("sv_login", INT4)],
}
LIST_ROWS = ["databases", "users", "peers", "pools", "peer_pools", "free_clients", "used_clients",
             "login_clients", "free_servers", "used_servers", "dns_names", "dns_zones",
             "dns_queries", "dns_pending"]

ADMIN_PW = "Adm" + secrets.token_hex(8)
STATS_PW = "Sts" + secrets.token_hex(8)
OTHER_PW = "Oth" + secrets.token_hex(8)
harness.SECRETS.update([ADMIN_PW, STATS_PW, OTHER_PW])


class Result:
    def __init__(self):
        self.sets = []      # [(columns [(name, oid)], rows, tag)]
        self.errors = []    # error field dicts
        self.notices = []
        self.tags = []
        self.empty = False

    @property
    def cols(self):
        return self.sets[0][0]

    @property
    def rows(self):
        return self.sets[0][1]

    def dicts(self, i=0):
        cols, rows, _ = self.sets[i]
        return [dict(zip([c[0] for c in cols], r)) for r in rows]


def parse_row_desc(p):
    (n,) = struct.unpack("!H", p[:2])
    off, cols = 2, []
    for _ in range(n):
        end = p.index(b"\0", off)
        name = p[off:end].decode()
        off = end + 1
        _table, _attnum, oid, _typlen, _typmod, _fmt = struct.unpack("!IHIhiH", p[off:off + 18])
        off += 18
        cols.append((name, oid))
    return cols


class Console:
    """A raw protocol connection to the console: every message of a reply is seen."""

    def __init__(self, b, user="admin", password=ADMIN_PW, dbname="pgbouncer"):
        self.conn = pgwire.Conn(b.host, b.port, timeout=15)
        self.conn.login(user, password, dbname)

    def send(self, sql):
        self.conn.send(pgwire.query_msg(sql))

    def read_reply(self):
        r, cur = Result(), None
        while True:
            t, p = self.conn.read_msg()
            if t == b"T":
                cur = [parse_row_desc(p), [], None]
                r.sets.append(cur)
            elif t == b"D":
                cur[1].append(pgwire.parse_data_row(p))
            elif t == b"C":
                tag = p[:-1].decode()
                r.tags.append(tag)
                if cur is not None and cur[2] is None:
                    cur[2] = tag
            elif t == b"E":
                r.errors.append(pgwire.parse_error_fields(p))
            elif t == b"N":
                r.notices.append(pgwire.parse_error_fields(p))
            elif t == b"I":
                r.empty = True
            elif t == b"Z":
                return r

    def run(self, sql):
        self.send(sql)
        return self.read_reply()

    def ok(self, sql):
        r = self.run(sql)
        assert not r.errors, (sql, r.errors)
        return r

    def close(self):
        self.conn.close()


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="berth-admin-sock-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(berth, pg, sockdir=None, pool_mode="transaction", **settings):
    s = {"admin_users": "admin", "stats_users": "stats", "pool_mode": pool_mode}
    if sockdir:
        s["unix_socket_dir"] = sockdir
    s.update(settings)
    users = {pg.user: pg.password, "admin": ADMIN_PW, "stats": STATS_PW, "other": OTHER_PW}
    return berth.file(settings=s, users=users, pg=pg)


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def pool_row(con, db="app", user="app"):
    rows = [r for r in con.ok("SHOW POOLS").dicts() if r["database"] == db and r["user"] == user]
    assert len(rows) == 1, rows
    return rows[0]


def stats_row(con, cmd="SHOW STATS", db="app"):
    rows = [r for r in con.ok(cmd).dicts() if r["database"] == db]
    assert len(rows) == 1, rows
    return {k: (int(v) if k != "database" else v) for k, v in rows[0].items()}


# --- columns and types --------------------------------------------------------

@pytest.mark.parametrize("what", sorted(EXPECTED))
def test_show_columns_and_types(berth, pg, what):
    b = start(berth, pg)
    with b.connect() as c:  # a pool, a client and a server exist, so every SHOW has rows
        c.execute("SELECT 1")
        con = Console(b)
        try:
            r = con.ok("SHOW " + what)
            assert r.cols == EXPECTED[what]
            assert r.tags == ["SHOW"]
            if what in ("POOLS", "CLIENTS", "SERVERS", "DATABASES", "USERS", "CONFIG", "LISTS",
                        "VERSION", "STATS", "STATS_TOTALS", "STATS_AVERAGES", "STATE",
                        "SOCKETS", "ACTIVE_SOCKETS", "TOTALS", "MEM"):
                assert r.rows, what
            for row in r.rows:
                assert len(row) == len(EXPECTED[what])
                for (name, oid), v in zip(r.cols, row):
                    if v is not None and oid in (INT4, INT8, NUMERIC):
                        int(v)  # integer text
        finally:
            con.close()


def test_psycopg_reads_console(berth, pg):
    """psycopg (as pgbouncer_exporter-style scripts use it) sees the same names and types."""
    b = start(berth, pg)
    with psycopg.connect(host=b.host, port=b.port, user="stats", password=STATS_PW,
                         dbname="pgbouncer", autocommit=True) as c:
        cur = c.execute("SHOW STATS")
        assert [(d.name, d.type_code) for d in cur.description] == EXPECTED["STATS"]
        cur = c.execute("SHOW POOLS")
        assert [(d.name, d.type_code) for d in cur.description] == EXPECTED["POOLS"]
        cur = c.execute("SHOW VERSION")
        assert cur.fetchall()[0][0].startswith("berth ")


def test_show_lists_rows(berth, pg):
    b = start(berth, pg)
    with b.connect() as c1, b.connect() as c2:
        c1.execute("SELECT 1")
        c2.execute("SELECT 1")
        con = Console(b, dbname="berth")
        try:
            lists = dict((r[0], int(r[1])) for r in con.ok("SHOW LISTS").rows)
            assert list(lists) == LIST_ROWS
            assert lists["databases"] == 2  # app and the console's pgbouncer, as PgBouncer
            assert lists["pools"] == 2
            assert lists["used_clients"] == 3  # two app clients and this console
            assert lists["login_clients"] == 0
            assert lists["used_servers"] == pg.server_conns("app")
            # users: auth_file's four
            assert lists["users"] == 4
            assert lists["peers"] == 0 and lists["peer_pools"] == 0
        finally:
            con.close()


# --- rows against reality -------------------------------------------------------

def test_show_pools_counts(berth, pg):
    b = start(berth, pg)
    with b.connect() as held, b.connect() as idle:
        held.execute("BEGIN")
        held.execute("SELECT 1")  # holds a server inside its transaction
        idle.execute("SELECT 1")  # borrowed a second server and gave it back
        con = Console(b)
        try:
            p = pool_row(con)
            assert p["cl_active"] == "2" and p["cl_waiting"] == "0"
            assert p["sv_active"] == "1" and p["sv_idle"] == "1"
            assert p["sv_login"] == "0" and p["sv_tested"] == "0" and p["sv_used"] == "0"
            assert p["maxwait"] == "0" and p["maxwait_us"] == "0"
            assert p["pool_mode"] == "transaction"
            assert p["load_balance_hosts"] is None
            assert pg.server_conns("app") == 2
            # PgBouncer's admin pool: the console's clients, no servers, statement mode
            second = Console(b, dbname="berth")
            try:
                adm = pool_row(con, db="pgbouncer", user="pgbouncer")
            finally:
                second.close()
            assert adm["cl_active"] == "2" and adm["sv_idle"] == "0" and adm["sv_active"] == "0"
            assert adm["pool_mode"] == "statement"
        finally:
            con.close()
        held.execute("COMMIT")


def test_idle_servers_past_check_delay_are_used(berth, pg):
    """PgBouncer's sv_used / "used": idle longer than server_check_delay, checked before lending."""
    b = start(berth, pg, server_check_delay=0.2)
    con = Console(b)
    try:
        with b.connect() as c:
            c.execute("SELECT 1")
            p = pool_row(con)
            assert (p["sv_idle"], p["sv_used"]) == ("1", "0")
            time.sleep(0.4)
            p = pool_row(con)
            assert (p["sv_idle"], p["sv_used"]) == ("0", "1")
            assert [s["state"] for s in con.ok("SHOW SERVERS").dicts()] == ["used"]
            assert c.execute("SELECT 2").fetchone()[0] == 2
    finally:
        con.close()


def test_show_clients_and_servers_rows(berth, pg):
    b = start(berth, pg, pool_mode="session")
    raw = pgwire.Conn(b.host, b.port)
    try:
        raw.login("app", pg.password, "app", extra={"application_name": "admin-test-app"})
        rows, err = raw.simple_query("SELECT pg_backend_pid()")
        assert err is None
        backend_pid = int(rows[0][0])
        my_port = raw.sock.getsockname()[1]
        con = Console(b)
        try:
            clients = con.ok("SHOW CLIENTS").dicts()
            mine = [c for c in clients if c["application_name"] == "admin-test-app"]
            assert len(mine) == 1, clients
            m = mine[0]
            assert (m["type"], m["user"], m["database"], m["replication"]) == \
                ("C", "app", "app", "none")
            assert m["state"] == "active"  # session mode: linked to its server
            assert m["addr"] == "127.0.0.1" and int(m["port"]) == my_port
            assert m["local_addr"] == "127.0.0.1" and int(m["local_port"]) == b.port
            assert m["link"] != "" and m["close_needed"] == "0"
            assert int(m["id"]) > 0
            consoles = [c for c in clients if c["database"] == "pgbouncer"]
            assert len(consoles) == 1 and consoles[0]["user"] == "admin"
            servers = con.ok("SHOW SERVERS").dicts()
            assert len(servers) == 1
            s = servers[0]
            assert (s["type"], s["user"], s["database"], s["state"]) == ("S", "app", "app", "active")
            assert int(s["remote_pid"]) == backend_pid
            assert s["addr"] == "127.0.0.1" and int(s["port"]) == pg.port
            assert s["link"] == m["ptr"] and m["link"] == s["ptr"]
            assert s["application_name"] == "admin-test-app"
        finally:
            con.close()
    finally:
        raw.close()


def test_show_databases_and_users_rows(berth, pg):
    b = start(berth, pg, default_pool_size=7)
    with b.connect() as c:
        c.execute("SELECT 1")
        con = Console(b)
        try:
            dbs = con.ok("SHOW DATABASES").dicts()
            assert [r["name"] for r in dbs] == ["app", "pgbouncer"]
            d = dbs[0]
            console = dbs[1]  # PgBouncer's admin database row
            assert (console["host"], int(console["port"]), console["force_user"],
                    console["pool_mode"], console["current_client_connections"]) == \
                (None, b.port, "pgbouncer", "statement", "1")
            assert (d["name"], d["host"], int(d["port"]), d["database"], d["force_user"]) == \
                ("app", "127.0.0.1", pg.port, "app", "app")
            assert d["pool_size"] == "7" and d["pool_mode"] is None
            assert d["current_connections"] == str(pg.server_conns("app"))
            assert d["current_client_connections"] == "1"
            assert d["paused"] == "0" and d["disabled"] == "0"
            users = {u["name"]: u for u in con.ok("SHOW USERS").dicts()}
            assert set(users) == {"app", "admin", "stats", "other"}
            assert users["app"]["current_client_connections"] == "1"
            assert users["app"]["current_connections"] == str(pg.server_conns("app"))
            assert users["admin"]["current_client_connections"] == "0"
        finally:
            con.close()


def test_show_config_values_and_no_secrets(berth, pg):
    b = start(berth, pg, default_pool_size=9)
    con = Console(b)
    try:
        cfg = {r[0]: r for r in con.ok("SHOW CONFIG").rows}
        assert cfg["default_pool_size"][1:] == ["9", "20", "yes"]
        assert cfg["listen_port"][1] == str(b.port) and cfg["listen_port"][3] == "no"
        assert cfg["admin_users"][1] == "admin"
        # No password of any kind appears in any SHOW output.
        everything = []
        for what in EXPECTED:
            r = con.ok("SHOW " + what)
            everything.append(repr(r.sets))
        text = "\n".join(everything)
        for s in harness.SECRETS | {pg.password}:
            assert s not in text
    finally:
        con.close()


def test_show_version_matches_binary(berth, pg):
    b = start(berth, pg)
    first = subprocess.run([BERTH_BIN, "--version"], capture_output=True, text=True,
                           check=True).stdout.splitlines()[0]
    con = Console(b)
    try:
        assert con.ok("SHOW VERSION").rows == [[first]]
    finally:
        con.close()


# --- the console's protocol -----------------------------------------------------

def test_help_unknown_multi_and_case(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        r = con.ok("SHOW HELP")
        assert r.notices and r.notices[0]["M"] == "Console usage" and "PAUSE" in r.notices[0]["D"]
        assert con.ok("SHOW").notices[0]["M"] == "Console usage"
        r = con.run("FROBNICATE")
        assert [e["C"] for e in r.errors] == ["08P01"] and "SHOW HELP" in r.errors[0]["M"]
        assert con.run("SHOW NOSUCHTHING").errors[0]["C"] == "08P01"
        assert con.run("PAUSE a b c").errors[0]["C"] == "08P01"
        # The connection still works, commands in any letter case, several per Query.
        r = con.ok("show version; ShOw StAtE;")
        assert len(r.sets) == 2 and r.tags == ["SHOW", "SHOW"]
        # An error stops the rest of the Query, as in PostgreSQL.
        r = con.run("SHOW VERSION; BOGUS; SHOW STATE")
        assert len(r.sets) == 1 and len(r.errors) == 1
        r = con.run("   ")
        assert r.empty and not r.errors
        assert con.ok("SHOW VERSION").rows[0][0].startswith("berth ")
    finally:
        con.close()


def test_extended_protocol_gets_error_not_disconnect(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        con.conn.send(pgwire.parse_msg("SHOW POOLS") + pgwire.bind_msg() + pgwire.execute_msg()
                      + pgwire.sync_msg())
        msgs = con.conn.read_until({b"Z"})
        types = [t for t, _ in msgs]
        assert types == [b"E", b"Z"]
        assert pgwire.parse_error_fields(msgs[0][1])["C"] == "08P01"
        assert con.ok("SHOW VERSION").rows
    finally:
        con.close()


def test_psql_against_console(berth, pg):
    b = start(berth, pg)
    env = b.libpq_env(PGUSER="admin", PGPASSWORD=ADMIN_PW, PGDATABASE="pgbouncer")
    out = subprocess.run(["psql", "-X", "-c", "SHOW POOLS"], env=env, capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0]
    assert [h.strip() for h in header.split("|")] == [n for n, _ in EXPECTED["POOLS"]]
    out = subprocess.run(["psql", "-X", "-c", "SHOW HELP"], env=env, capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0 and "Console usage" in out.stderr


# --- who may log in and do what ---------------------------------------------------

def test_permissions(berth, pg):
    b = start(berth, pg)
    # A user with valid credentials but in neither list is refused at login.
    ok, state, _ = attempt(b, query="SHOW POOLS", user="other", password=OTHER_PW,
                           dbname="pgbouncer")
    assert (ok, state) == (False, "08P01")
    ok, state, _ = attempt(b, query="SHOW POOLS", user="admin", password="wrong",
                           dbname="berth")
    assert (ok, state) == (False, "28P01")
    # The normal database still works for that user.
    ok, state, _ = attempt(b, user="other", password=OTHER_PW)
    assert ok, state
    st = Console(b, user="stats", password=STATS_PW)
    try:
        assert st.ok("SHOW POOLS").rows is not None
        for cmd in ("PAUSE", "PAUSE app", "RESUME", "DISABLE app", "ENABLE app", "KILL app",
                    "KILL_CLIENT 1", "RECONNECT", "RELOAD", "SUSPEND", "WAIT_CLOSE",
                    "SHUTDOWN", "SET default_pool_size = 3"):
            r = st.run(cmd)
            assert [e["C"] for e in r.errors] == ["08P01"], cmd
            assert r.errors[0]["M"] == "admin access needed", cmd
        # SET of a driver's session parameter is accepted and ignored, as PgBouncer does.
        r = st.ok("SET extra_float_digits = 3")
        assert r.tags == ["SET"] and r.notices[0]["M"] == "SET ignored"
        assert st.ok("SHOW DATABASES").dicts()[0]["paused"] == "0"
    finally:
        st.close()


def test_unix_socket_console_user(berth, pg, sockdir):
    b = start(berth, pg, sockdir=sockdir)
    for user in ("pgbouncer", "berth"):
        with psycopg.connect(host=sockdir, port=b.port, user=user, dbname="pgbouncer",
                             autocommit=True, connect_timeout=10) as c:
            assert c.execute("SHOW VERSION").fetchone()[0].startswith("berth ")
            c.execute("PAUSE app")  # an admin
            c.execute("RESUME app")
    # Not over TCP, not to another database, not from another uid.
    ok, state, _ = attempt(b, query="SHOW VERSION", user="pgbouncer", password="",
                           dbname="pgbouncer")
    assert not ok and state == "28P01"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=sockdir, port=b.port, user="pgbouncer", dbname="app",
                        connect_timeout=10).close()
    harness.ensure_run_as_user()
    out = subprocess.run(["runuser", "-u", RUN_AS, "--", "psql", "-X", "-w", "-h", sockdir,
                          "-p", str(b.port), "-U", "pgbouncer", "-d", "pgbouncer", "-c",
                          "SHOW VERSION"], capture_output=True, text=True, timeout=20)
    assert out.returncode != 0 and "berth " not in out.stdout


def test_zero_file_mode_console(berth, pg):
    """DATABASE_URL's user, named in BERTH_ADMIN_USERS, logs in to the console with its password."""
    b = berth(admin_users=pg.user)
    with b.connect() as c:
        c.execute("SELECT 1")
    con = Console(b, user=pg.user, password=pg.password, dbname="berth")
    try:
        assert pool_row(con)["cl_active"] == "0"
        assert con.ok("PAUSE").tags == ["PAUSE"]
        assert con.ok("RESUME").tags == ["RESUME"]
    finally:
        con.close()
    ok, state, _ = attempt(b, query="SHOW POOLS", password="wrong", dbname="pgbouncer")
    assert (ok, state) == (False, "28P01")


# --- control commands ---------------------------------------------------------------

def start_waiting_query(b, con):
    """A thread whose SELECT 42 waits (the pool is paused): (thread, result dict)."""
    result = {}

    def query():
        with b.connect() as c:
            result["v"] = c.execute("SELECT 42").fetchone()[0]

    t = threading.Thread(target=query)
    t.start()
    wait_for(lambda: pool_row(con)["cl_waiting"] == "1", what="a waiting client")
    time.sleep(0.3)
    assert "v" not in result
    return t, result


def test_pause_waits_for_release_then_resume(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        with b.connect() as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT 1")
            con.send("PAUSE app")
            con.conn.sock.settimeout(0.5)
            with pytest.raises(socket.timeout):  # the transaction still holds its server
                con.conn.read_msg()
            con.conn.sock.settimeout(15)
            holder.execute("COMMIT")
            r = con.read_reply()
            assert r.tags == ["PAUSE"] and not r.errors
        assert pg.wait_server_conns(lambda n: n == 0) == 0
        assert con.ok("SHOW DATABASES").dicts()[0]["paused"] == "1"
        # A new query waits while paused; RESUME lets it through.
        t, result = start_waiting_query(b, con)
        waiting = [c for c in con.ok("SHOW CLIENTS").dicts() if c["database"] == "app"]
        assert waiting[0]["state"] == "waiting"
        assert con.run("RESUME").errors[0]["M"] == "pooler is not paused/suspended"
        con.ok("RESUME app")
        t.join(10)
        assert result.get("v") == 42
        r = con.run("RESUME app")
        assert r.errors[0]["M"] == "database app is not paused"
        assert con.run("PAUSE nosuchdb").errors[0]["M"] == "no such database: nosuchdb"
        assert con.run("PAUSE pgbouncer").errors[0]["C"] == "08P01"
    finally:
        con.close()


def test_sigusr1_pauses_sigusr2_resumes(berth, pg):
    """PgBouncer's SIGUSR1 and SIGUSR2: PAUSE and RESUME without a console."""
    b = start(berth, pg)
    con = Console(b)
    state = lambda: {r["key"]: r["value"] for r in con.ok("SHOW STATE").dicts()}
    try:
        with b.connect() as c:
            c.execute("SELECT 1")
        os.kill(b.pid, signal.SIGUSR1)
        wait_for(lambda: state()["paused"] == "yes", what="paused by SIGUSR1")
        assert pg.wait_server_conns(lambda n: n == 0) == 0  # its idle server closed
        t, result = start_waiting_query(b, con)
        os.kill(b.pid, signal.SIGUSR1)  # already paused: logged, nothing else
        os.kill(b.pid, signal.SIGUSR2)
        t.join(10)
        assert result.get("v") == 42
        assert state() == {"active": "yes", "paused": "no", "suspended": "no"}
        os.kill(b.pid, signal.SIGUSR2)  # not paused: logged, nothing else
        with b.connect() as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        assert b.alive()
        wait_for(lambda: "got SIGUSR2: not resuming: pooler is not paused/suspended"
                 in b.stderr(), what="log line")
        err = b.stderr()
        assert "got SIGUSR1: pausing (PAUSE)" in err
        assert "got SIGUSR1: already paused or suspended" in err
        assert "got SIGUSR2: resuming (RESUME)" in err
    finally:
        con.close()


def test_cancel_of_waiting_pause(berth, pg):
    b = start(berth, pg)
    with b.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        with psycopg.connect(host=b.host, port=b.port, user="admin", password=ADMIN_PW,
                             dbname="pgbouncer", autocommit=True) as adm:
            threading.Timer(0.5, adm.cancel).start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                adm.execute("PAUSE")
            # The pause it began is over: the console works and nothing is paused.
            state = dict(adm.execute("SHOW STATE").fetchall())
            assert state == {"active": "yes", "paused": "no", "suspended": "no"}
        holder.execute("SELECT 1")
        holder.execute("COMMIT")


def test_kill_client(berth, pg):
    b = start(berth, pg)
    victim = b.connect(application_name="victim")
    bystander = b.connect(application_name="bystander")
    con = Console(b)
    try:
        victim.execute("SELECT 1")
        clients = con.ok("SHOW CLIENTS").dicts()
        vid = [c["id"] for c in clients if c["application_name"] == "victim"][0]
        assert con.ok("KILL_CLIENT " + vid).tags == ["KILL_CLIENT"]
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        names = [c["application_name"] for c in con.ok("SHOW CLIENTS").dicts()]
        assert "victim" not in names and "bystander" in names
        assert bystander.execute("SELECT 2").fetchone()[0] == 2
        assert con.run("KILL_CLIENT 999999").errors[0]["M"] == "client not found"
        assert con.run("KILL_CLIENT abc").errors[0]["M"] == "invalid client pointer supplied"
        # A console may end itself: FATAL, then the connection closes.
        me = [c["id"] for c in con.ok("SHOW CLIENTS").dicts() if c["database"] == "pgbouncer"]
        con.send("KILL_CLIENT " + me[0])
        t, p = con.conn.read_msg()
        assert t == b"E" and pgwire.parse_error_fields(p)["S"] == "FATAL"
        assert con.conn.is_closed(5)
    finally:
        con.close()
        victim.close()
        bystander.close()


def test_disable_enable(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        with b.connect() as existing:
            assert con.ok("DISABLE app").tags == ["DISABLE"]
            ok, state, _ = attempt(b)
            assert (ok, state) == (False, "08P01")
            with pytest.raises(psycopg.OperationalError, match='database "app" is disabled'):
                b.connect().close()  # PgBouncer's words
            assert existing.execute("SELECT 1").fetchone()[0] == 1  # connected ones go on
            assert con.ok("SHOW DATABASES").dicts()[0]["disabled"] == "1"
            assert con.ok("ENABLE app").tags == ["ENABLE"]
            ok, state, _ = attempt(b)
            assert ok, state
        assert con.run("DISABLE").errors[0]["M"] == "a database is required"
    finally:
        con.close()


def test_kill_database(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        c1 = b.connect()
        c1.execute("SELECT 1")
        assert con.ok("KILL app").tags == ["KILL"]
        with pytest.raises(psycopg.OperationalError):
            c1.execute("SELECT 1")
        c1.close()
        assert pg.wait_server_conns(lambda n: n == 0) == 0
        assert [c for c in con.ok("SHOW CLIENTS").dicts() if c["database"] == "app"] == []
        # New clients wait until RESUME.
        result = {}

        def query():
            with b.connect() as c:
                result["v"] = c.execute("SELECT 7").fetchone()[0]

        t = threading.Thread(target=query)
        t.start()
        time.sleep(0.5)
        assert "v" not in result
        con.ok("RESUME app")
        t.join(10)
        assert result.get("v") == 7
        assert con.run("KILL nosuch").errors[0]["M"] == "no such database: nosuch"
    finally:
        con.close()


def test_set_default_pool_size_live(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        r = con.ok("SET default_pool_size = 1")
        assert r.tags == ["SET default_pool_size=1"]
        assert {r[0]: r[1] for r in con.ok("SHOW CONFIG").rows}["default_pool_size"] == "1"
        with b.connect() as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT 1")
            result = {}

            def query():
                with b.connect() as c:
                    result["v"] = c.execute("SELECT 5").fetchone()[0]

            t = threading.Thread(target=query)
            t.start()
            wait_for(lambda: pool_row(con)["cl_waiting"] == "1", what="a queued client")
            assert pg.server_conns("app") == 1
            con.ok("SET default_pool_size TO '2'")  # the waiting client gets a second server
            t.join(10)
            assert result.get("v") == 5
            assert pg.server_conns("app") == 2
            holder.execute("COMMIT")
    finally:
        con.close()


def test_set_refusals(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        for sql, word in (("SET listen_port = 1234", "restart"), ("SET pkt_buf = 8192", "restart"),
                          ("SET no_such_key = 1", "unknown"),
                          ("SET default_pool_size = 0", "SET failed"),
                          ("SET default_pool_size = lots", "SET failed"),
                          ("SET auth_file = '/tmp/x'", "RELOAD")):
            r = con.run(sql)
            assert [e["C"] for e in r.errors] == ["08P01"], sql
            assert word in r.errors[0]["M"], (sql, r.errors)
        cfg = {r[0]: r[1] for r in con.ok("SHOW CONFIG").rows}
        assert cfg["default_pool_size"] == "20" and cfg["listen_port"] == str(b.port)
        con.ok("SET log_connections = 1")
        assert {r[0]: r[1] for r in con.ok("SHOW CONFIG").rows}["log_connections"] == "1"
    finally:
        con.close()


def test_reconnect_and_wait_close(berth, pg):
    b = start(berth, pg, pool_mode="session")
    con = Console(b)
    try:
        c1 = b.connect()
        old_pid = c1.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert con.ok("RECONNECT app").tags == ["RECONNECT"]
        servers = con.ok("SHOW SERVERS").dicts()
        assert [s["close_needed"] for s in servers] == ["1"]
        con.send("WAIT_CLOSE app")
        con.conn.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):  # the session still holds it
            con.conn.read_msg()
        con.conn.sock.settimeout(15)
        c1.close()
        assert con.read_reply().tags == ["WAIT_CLOSE"]
        with b.connect() as c2:
            assert c2.execute("SELECT pg_backend_pid()").fetchone()[0] != old_pid
        assert con.ok("WAIT_CLOSE").tags == ["WAIT_CLOSE"]
    finally:
        con.close()


def test_suspend_and_resume(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        with b.connect() as c:
            c.execute("SELECT 1")
            assert con.ok("SUSPEND").tags == ["SUSPEND"]
            assert dict(con.ok("SHOW STATE").rows)["suspended"] == "yes"
            assert con.run("PAUSE").errors[0]["M"] == "already suspended/paused"
            result = {}

            def query():
                result["v"] = c.execute("SELECT 3").fetchone()[0]

            t = threading.Thread(target=query)
            t.start()
            time.sleep(0.5)
            assert "v" not in result  # berth reads nothing while suspended
            con.ok("RESUME")
            t.join(10)
            assert result.get("v") == 3
            assert dict(con.ok("SHOW STATE").rows)["active"] == "yes"
    finally:
        con.close()


def test_reload_error_is_reported(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        with open(b.ini_path, "a") as f:
            f.write("default_pool_size = notanumber\n")
        r = con.run("RELOAD")
        assert [e["C"] for e in r.errors] == ["F0000"]
        assert "RELOAD failed" in r.errors[0]["M"]
        assert con.ok("SHOW VERSION").rows  # the console goes on
    finally:
        con.close()


def test_shutdown(berth, pg):
    b = start(berth, pg)
    st = Console(b, user="stats", password=STATS_PW)
    assert st.run("SHUTDOWN").errors[0]["M"] == "admin access needed"
    st.close()
    con = Console(b)
    con.send("SHUTDOWN")
    assert con.conn.is_closed(10)
    b.proc.wait(10)
    con.close()


def test_shutdown_wait_for_clients(berth, pg):
    b = start(berth, pg)
    client = b.connect()
    client.execute("SELECT 1")
    con = Console(b)
    assert con.ok("SHUTDOWN WAIT_FOR_CLIENTS").tags == ["SHUTDOWN"]
    assert client.execute("SELECT 2").fetchone()[0] == 2  # connected clients go on
    with pytest.raises(OSError):  # no new connections
        socket.create_connection((b.host, b.port), timeout=2).close()
    assert b.alive()
    client.close()
    con.close()
    assert b.proc.wait(10) == 0  # the last client left: berth exits


# --- SHOW STATS counts the traffic exactly ----------------------------------------------

def test_stats_count_queries_transactions_and_bytes(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    raw = pgwire.Conn(b.host, b.port)
    try:
        raw.login("app", pg.password, "app")
        raw.simple_query("SELECT 1")  # the pool exists, the login is over
        before = stats_row(con)
        queries = ["SELECT %d" % i for i in range(5)]
        sent_bytes = sum(len(pgwire.query_msg(q)) for q in queries)
        for q in queries:
            rows, err = raw.simple_query(q)
            assert err is None
        after = stats_row(con)
        assert after["total_query_count"] - before["total_query_count"] == 5
        assert after["total_xact_count"] - before["total_xact_count"] == 5
        assert after["total_received"] - before["total_received"] == sent_bytes
        assert after["total_sent"] > before["total_sent"]
        assert after["total_query_time"] > before["total_query_time"]
        totals = stats_row(con, "SHOW STATS_TOTALS")
        assert totals["query_count"] == after["total_query_count"]
        assert totals["xact_count"] == after["total_xact_count"]
        assert totals["bytes_received"] == after["total_received"]
    finally:
        raw.close()
        con.close()


def test_show_totals_sums_every_database_and_counts_logins(berth, pg):
    users = {pg.user: pg.password, "admin": ADMIN_PW}
    b = berth.file(settings={"admin_users": "admin"}, users=users,
                   databases={"app": pg.conninfo(), "other": pg.conninfo()})
    con = Console(b)
    try:
        for dbname, conns, queries in (("app", 3, 2), ("other", 2, 4)):
            for _ in range(conns):
                with b.connect(dbname=dbname) as c:
                    for i in range(queries):
                        assert c.execute("SELECT %s::int", [i]).fetchone() == (i,)
        per_db = {r["database"]: r for r in (stats_row(con, db=d) for d in ("app", "other"))}
        assert per_db["app"]["total_client_login_count"] == 3
        assert per_db["other"]["total_client_login_count"] == 2
        totals = {name: int(v) for name, v in con.ok("SHOW TOTALS").rows}
        # the console counts too, as PgBouncer's admin pool: one login, and its
        # commands (two SHOW STATS and this SHOW TOTALS, which counts itself)
        assert totals["total_client_login_count"] == 5 + 1
        assert totals["total_query_count"] == 3 * 2 + 2 * 4 + 3
        console = stats_row(con, db="pgbouncer")
        assert console["total_client_login_count"] == 1
        assert console["total_query_count"] == console["total_xact_count"] == 4
        assert console["total_server_assignment_count"] == 0
        assert totals["total_xact_count"] == \
            per_db["app"]["total_xact_count"] + per_db["other"]["total_xact_count"] + 3
        for name, col in (("total_client_bytes", "total_received"),
                          ("total_server_bytes", "total_sent"),
                          ("total_server_assignment_count", "total_server_assignment_count")):
            assert totals[name] == per_db["app"][col] + per_db["other"][col], name  # console: 0
        assert stats_row(con, "SHOW STATS_TOTALS", db="other")["client_login_count"] == 2
    finally:
        con.close()


def test_show_sockets_and_active_sockets(berth, pg):
    b = start(berth, pg, pool_mode="session")
    raw = pgwire.Conn(b.host, b.port)
    half = socket.create_connection((b.host, b.port), timeout=10)
    try:
        raw.login("app", pg.password, "app", extra={"application_name": "sockets-test"})
        rows, err = raw.simple_query("SELECT pg_backend_pid()")
        assert err is None
        backend_pid = int(rows[0][0])
        # a client that sent its startup packet and stopped at the password
        half.sendall(pgwire.startup_packet({"user": "app", "database": "app"}))
        assert half.recv(1) == b"R"
        con = Console(b)
        try:
            query = "SHOW SOCKETS"
            wait_for(lambda: any(r["state"] == "cl_login" for r in con.ok(query).dicts()),
                     what="the half-logged-in client in SHOW SOCKETS")
            socks = con.ok(query).dicts()
            mine = [r for r in socks if r["application_name"] == "sockets-test" and r["type"] == "C"]
            assert len(mine) == 1 and (mine[0]["type"], mine[0]["state"]) == ("C", "cl_active")
            server = [r for r in socks if r["type"] == "S"]
            assert len(server) == 1 and server[0]["state"] == "sv_active"
            assert int(server[0]["remote_pid"]) == backend_pid
            assert server[0]["link"] == mine[0]["ptr"]
            login = [r for r in socks if r["state"] == "cl_login"]
            assert len(login) == 1 and login[0]["type"] == "C"
            me = [r for r in socks if r["database"] == "pgbouncer"]
            assert len(me) == 1 and me[0]["state"] == "cl_active"
            # the console's own query sits in its buffer while it runs, at the parse cursor
            qlen = len(pgwire.query_msg(query))
            assert [int(me[0][k]) for k in ("recv_pos", "pkt_pos", "pkt_avail", "send_remain")] \
                == [qlen, 0, qlen, 0]
            for r in socks:
                for name, _ in BUFFER_COLS:
                    assert int(r[name]) >= 0, (name, r)
            # idle sockets hold no buffer: only the console is active
            active = con.ok("SHOW ACTIVE_SOCKETS").dicts()
            assert [r["database"] for r in active] == ["pgbouncer"]
            # SHOW CLIENTS keeps its own state names
            clients = {r["application_name"]: r for r in con.ok("SHOW CLIENTS").dicts()}
            assert clients["sockets-test"]["state"] == "active"
        finally:
            con.close()
    finally:
        half.close()
        raw.close()


def test_show_mem_counts_objects(berth, pg):
    b = start(berth, pg, default_pool_size=3)
    conns = [b.connect() for _ in range(3)]
    try:
        for c in conns:
            c.execute("SELECT 1")
        con = Console(b)
        try:
            mem = {r["name"]: {k: int(v) for k, v in r.items() if k != "name"}
                   for r in con.ok("SHOW MEM").dicts()}
            assert mem["client_cache"]["used"] == 4  # three clients and the console
            assert mem["server_cache"]["used"] == int(pool_row(con)["sv_idle"]) >= 1
            assert mem["pool_cache"]["used"] == 1 and mem["db_cache"]["used"] == 1
            assert mem["iobuf_cache"]["used"] >= 1  # the console's, holding this query
            for name, m in mem.items():
                assert m["memtotal"] == m["size"] * (m["used"] + m["free"]), name
                assert m["size"] > 0, name
        finally:
            con.close()
    finally:
        for c in conns:
            c.close()


def test_show_fds_and_dns(berth, pg):
    b = start(berth, pg)
    con = Console(b)
    try:
        r = con.run("SHOW FDS")
        assert [e["C"] for e in r.errors] == ["0A000"]
        assert "online restart" in r.errors[0]["M"]
        # berth resolves through libpq and caches nothing: no rows, and the console goes on
        assert con.ok("SHOW DNS_HOSTS").rows == [] and con.ok("SHOW DNS_ZONES").rows == []
        with b.connect() as c:
            assert c.execute("SELECT 41 + 1").fetchone() == (42,)
    finally:
        con.close()


def test_stats_wait_time_when_clients_queue(berth, pg):
    b = start(berth, pg, default_pool_size=1)
    con = Console(b)
    try:
        with b.connect() as holder, b.connect() as waiter:
            holder.execute("SELECT 1")
            waiter.execute("SELECT 1")
            before = stats_row(con)
            holder.execute("BEGIN")
            holder.execute("SELECT 1")
            threading.Timer(0.4, lambda: holder.execute("COMMIT")).start()
            waiter.execute("SELECT 2")  # queues until the COMMIT
            after = stats_row(con)
            assert after["total_wait_time"] - before["total_wait_time"] >= 300000
            assert after["total_server_assignment_count"] > before["total_server_assignment_count"]
    finally:
        con.close()


def test_show_health_follows_upstream(berth, pg_private):
    """SHOW HEALTH: up while PostgreSQL answers, down with the error while it is stopped."""
    b = start(berth, pg_private, health_check_period=1)
    con = Console(b)
    try:
        def health():
            rows = con.ok("SHOW HEALTH").dicts()
            assert [r["database"] for r in rows] == ["app"], rows
            return rows[0]

        wait_for(lambda: health()["state"] == "up", what="health up")
        h = health()
        assert int(h["checks"]) >= 1 and int(h["failures"]) == 0
        assert h["last_success"] is not None and int(h["latency_us"]) > 0
        assert h["last_error"] is None
        pg_private.stop("fast")
        try:
            wait_for(lambda: health()["state"] == "down", timeout=15, what="health down")
            h = health()
            assert int(h["consecutive_failures"]) >= 1 and int(h["failures"]) >= 1
            assert h["last_error"]
            assert pg_private.password not in h["last_error"]
        finally:
            pg_private.start()
        wait_for(lambda: health()["state"] == "up", timeout=20, what="health back up")
        assert int(health()["consecutive_failures"]) == 0
    finally:
        con.close()


def start_autodb(berth, pg, **settings):
    """berth with only a "*" entry: every database name is served, made on demand."""
    star = "host=%s port=%d user=%s password=%s" % (pg.host, pg.port, pg.user, pg.password)
    return berth.file(settings=dict(admin_users="admin", **settings),
                      users={pg.user: pg.password, "admin": ADMIN_PW}, databases={"*": star})


def _auto_dbs(con):
    return sorted(r["name"] for r in con.ok("SHOW DATABASES").dicts() if r["name"] != "pgbouncer")


def test_autodb_idle_timeout(berth, pg):
    """Databases made for the "*" entry go, with their pools, once they have had no
    client and no server for autodb_idle_timeout; one in use stays; a client
    asking again gets it back."""
    b = start_autodb(berth, pg, autodb_idle_timeout="1", server_idle_timeout="0.5")
    con = Console(b)
    try:
        with b.connect(dbname="app") as keep:
            with b.connect(dbname="postgres") as c:
                assert c.execute("SELECT current_database()").fetchone() == ("postgres",)
            keep.execute("SELECT 1")
            assert _auto_dbs(con) == ["app", "postgres"]
            assert {r["database"] for r in con.ok("SHOW POOLS").dicts()} >= {"app", "postgres"}
            # Its server closes after 0.5 s, then it is unused for 1 s: gone, pool too.
            wait_for(lambda: _auto_dbs(con) == ["app"], timeout=15, what="postgres freed")
            assert "postgres" not in {r["database"] for r in con.ok("SHOW POOLS").dicts()}
            assert "postgres" not in {r["database"] for r in con.ok("SHOW STATS").dicts()}
            # "app" has a client all along: kept.
            time.sleep(1.5)
            assert _auto_dbs(con) == ["app"]
            assert keep.execute("SELECT current_database()").fetchone() == ("app",)
        with b.connect(dbname="postgres") as c:
            assert c.execute("SELECT current_database()").fetchone() == ("postgres",)
        assert _auto_dbs(con) == ["app", "postgres"]
        wait_for(lambda: _auto_dbs(con) == [], timeout=15, what="both freed")
    finally:
        con.close()


def test_autodb_idle_timeout_zero_keeps(berth, pg):
    b = start_autodb(berth, pg, autodb_idle_timeout="0", server_idle_timeout="0.3")
    con = Console(b)
    try:
        with b.connect(dbname="app") as c:
            c.execute("SELECT 1")
        wait_for(lambda: pg.server_conns("app") == 0, what="server closed")
        time.sleep(1.0)
        assert _auto_dbs(con) == ["app"]
    finally:
        con.close()
