"""Client authentication per auth_type, in file mode (auth_file) and zero-file
mode (DATABASE_URL's credentials), and the errors PostgreSQL would send."""

import struct

import psycopg
import pytest

import pgwire
from harness import attempt

AUTH_CODE = {"trust": 0, "plain": 3, "md5": 5, "scram-sha-256": 10}


def first_auth_request(b, user, dbname="app"):
    """The Authentication request code berth sends right after StartupMessage."""
    c = pgwire.Conn(b.host, b.port)
    try:
        c.startup({"user": user, "database": dbname})
        t, p = c.read_msg()
        assert t == b"R", (t, p)
        return struct.unpack("!I", p[:4])[0]
    finally:
        c.close()


def connect_error(b, user=None, password=None, dbname=None):
    """libpq (psycopg) must fail to connect; the SQLSTATE comes from a raw login
    (psycopg 3.1 has none for connect-time errors)."""
    kw = {k: v for k, v in (("user", user), ("password", password), ("dbname", dbname)) if v}
    if password is None and user is None and dbname is None:
        raise ValueError("nothing wrong to test")
    with pytest.raises(psycopg.OperationalError):
        b.connect(**kw).close()
    ok, state, _ = attempt(b, user=user, password=password, dbname=dbname)
    assert not ok
    return state, None


# --- zero-file mode ---------------------------------------------------------

def test_zero_file_scram_default(berth, pg):
    b = berth()
    assert first_auth_request(b, "app") == AUTH_CODE["scram-sha-256"]
    with b.connect() as c:
        assert c.execute("SELECT current_user, current_database()").fetchone() == ("app", "app")


def test_zero_file_raw_scram_login(berth, pg):
    """Our own SCRAM client (not libpq) logs in and runs a query."""
    b = berth()
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", pg.password, "app")
        rows, err = c.simple_query("SELECT 40 + 2")
        assert err is None and rows == [["42"]]
    finally:
        c.close()


def test_zero_file_wrong_password(berth):
    b = berth()
    state, _ = connect_error(b, password="not-the-password")
    assert state == "28P01"


def test_zero_file_unknown_user(berth):
    b = berth()
    state, _ = connect_error(b, user="nobody", password="x")
    assert state == "28P01"


def test_zero_file_unknown_database(berth):
    b = berth()
    state, _ = connect_error(b, dbname="no_such_db")
    assert state == "3D000"


def test_wrong_password_sends_nothing_more(berth):
    """After the ErrorResponse for a bad password berth closes the connection."""
    b = berth()
    c = pgwire.Conn(b.host, b.port)
    try:
        with pytest.raises(pgwire.ProtocolError) as ei:
            c.login("app", "wrong", "app")
        assert ei.value.fields["C"] == "28P01"
        assert ei.value.fields["S"] == "FATAL"
        assert c.is_closed(5)
    finally:
        c.close()


# --- file mode, each auth_type -----------------------------------------------

@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5", "plain"])
def test_file_mode_password_auth(berth, pg, auth_type):
    b = berth.file(settings={"auth_type": auth_type})
    assert first_auth_request(b, "app") == AUTH_CODE[auth_type]
    with b.connect() as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)
    assert connect_error(b, password="wrong")[0] == "28P01"
    assert connect_error(b, user="nobody", password="x")[0] == "28P01"
    assert connect_error(b, dbname="no_such_db")[0] == "3D000"


def test_file_mode_trust(berth, pg):
    b = berth.file(settings={"auth_type": "trust"}, users={"app": ""}, login=("app", ""))
    c = pgwire.Conn(b.host, b.port)
    try:
        c.startup({"user": "app", "database": "app"})
        t, p = c.read_msg()
        assert t == b"R" and struct.unpack("!I", p[:4])[0] == 0  # AuthenticationOk at once
        c.finish_login("app", "")
        assert c.simple_query("SELECT current_user") == ([["app"]], None)
    finally:
        c.close()
    with b.connect(password=None) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert connect_error(b, user="nobody", password="")[0] == "28000"
    assert connect_error(b, dbname="no_such_db", password="")[0] == "3D000"


def test_file_mode_md5_hash_in_auth_file(berth, pg):
    """Client user alice (md5 hash in auth_file); the entry logs in to the server as app."""
    users = {"alice": pgwire.md5_hash("alice", "md5secret")}
    b = berth.file(settings={"auth_type": "md5"}, users=users, login=("alice", "md5secret"))
    with b.connect() as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)
    assert connect_error(b, password="md5secreT")[0] == "28P01"


def test_file_mode_scram_verifier_in_auth_file(berth, pg):
    users = {"bob": pgwire.scram_verifier("scramsecret")}
    b = berth.file(settings={"auth_type": "scram-sha-256"}, users=users,
                   login=("bob", "scramsecret"))
    with b.connect() as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)
    assert connect_error(b, password="scramsecreT")[0] == "28P01"


def test_file_mode_pgbouncer_section_name(berth, pg, tmp_path):
    """A PgBouncer user moves over by renaming the file: [pgbouncer] is accepted."""
    b = berth.file(settings={"pool_mode": "session"}, start=False)
    with open(b.ini_path) as f:
        ini = f.read()
    with open(b.ini_path, "w") as f:
        f.write(ini.replace("[berth]", "[pgbouncer]"))
    b.start()
    with b.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


# --- server-side logins -------------------------------------------------------

def test_server_login_md5_and_url_entries(berth, pg):
    """[databases] entries as conninfo (server login with an md5 password) and as a
    postgres:// URL; the server-side user is the entry's."""
    dbs = {
        "app": pg.conninfo(),
        "viamd5": pg.conninfo(user="md5user", password=pg.md5password),
        "viaurl": pg.url(user="app2", password=pg.password2),
    }
    b = berth.file(databases=dbs)
    for db, user in [("app", "app"), ("viamd5", "md5user"), ("viaurl", "app2")]:
        with b.connect(dbname=db) as c:
            assert c.execute("SELECT current_user, current_database()").fetchone() == (user, "app")


def test_server_login_as_client_user(berth, pg):
    """An entry without user= logs in to the server as the client, with the
    password from auth_file."""
    dbs = {"app": "host=%s port=%d dbname=app" % (pg.host, pg.port)}
    users = {"app": pg.password, "app2": pg.password2}
    b = berth.file(databases=dbs, users=users)
    with b.connect() as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)
    with b.connect(user="app2", password=pg.password2) as c:
        assert c.execute("SELECT current_user").fetchone() == ("app2",)


# --- auth_type hba ------------------------------------------------------------

def login_error(b, user, password="x", dbname="app", **conn):
    """A raw login that must fail: the ErrorResponse's fields."""
    c = pgwire.Conn(b.host, b.port, **conn)
    try:
        with pytest.raises(pgwire.ProtocolError) as ei:
            c.login(user, password, dbname)
        return ei.value.fields
    finally:
        c.close()


def test_auth_type_hba_picks_the_method_per_login(berth, pg, tmp_path):
    """PgBouncer's auth_type hba: the first auth_hba_file line matching a login's
    connection type, database, user and address picks its method; a reject line or
    no line refuses it with PostgreSQL's words; the file is read again on RELOAD,
    and a bad one fails the reload and keeps the rules in force."""
    sock = tmp_path / "sock"
    sock.mkdir()
    (tmp_path / "md5users").write_text("# users that answer md5\nmd5user\n")
    hba = tmp_path / "hba.conf"
    hba.write_text(
        "# TYPE  DATABASE  USER  ADDRESS  METHOD\n"
        "local   all       all                      trust\n"
        "host    all       blocked   127.0.0.1/32   reject\n"
        "host    app,other @md5users 127.0.0.1 255.255.255.255 md5\n"
        'host    "app"     app   127.0.0.0/8 \\\n'
        "        scram-sha-256\n"
        "host    all       app2  ::1/128        password\n")
    dbs = {"app": pg.conninfo(), "other": pg.conninfo()}
    users = {"app": pg.password, "md5user": pg.md5password, "app2": pg.password2,
             "blocked": pg.password}
    b = berth.file(settings={"auth_type": "hba", "auth_hba_file": str(hba),
                             "unix_socket_dir": str(sock), "admin_users": "app"},
                   databases=dbs, users=users)
    assert first_auth_request(b, "app") == AUTH_CODE["scram-sha-256"]
    assert first_auth_request(b, "md5user") == AUTH_CODE["md5"]
    assert first_auth_request(b, "md5user", dbname="other") == AUTH_CODE["md5"]
    with b.connect() as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)
    assert login_error(b, "app", password="wrong")["C"] == "28P01"

    f = login_error(b, "blocked")
    assert f["C"] == "28000"
    assert f["M"] == ('pg_hba.conf rejects connection for host "127.0.0.1", user "blocked", '
                      'database "app", no encryption')
    f = login_error(b, "app2")  # its only line is for ::1
    assert f["M"] == ('no pg_hba.conf entry for host "127.0.0.1", user "app2", '
                      'database "app", no encryption')
    f = login_error(b, "app", dbname="other")  # "app" quoted: the database named app only
    assert f["C"] == "28000" and "no pg_hba.conf entry" in f["M"]

    # the unix socket: local lines, trust without a password
    with psycopg.connect(host=str(sock), port=b.port, user="app2", dbname="app",
                         autocommit=True) as c:
        assert c.execute("SELECT current_user").fetchone() == ("app",)

    # RELOAD reads the file again: app2 is now let in over TCP with a password
    hba.write_text(hba.read_text().replace("::1/128", "127.0.0.1/32"))
    with b.connect(host=str(sock), user="app", password=None, dbname="berth") as admin:
        admin.execute("RELOAD")
        assert first_auth_request(b, "app2") == AUTH_CODE["plain"]
        with b.connect(user="app2", password=pg.password2) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        # a broken file fails the reload; the rules in force stay
        hba.write_text("host all all 127.0.0.1/32 ident\n")
        with pytest.raises(psycopg.Error, match="ident"):
            admin.execute("RELOAD")
    assert first_auth_request(b, "app2") == AUTH_CODE["plain"]
    assert first_auth_request(b, "app") == AUTH_CODE["scram-sha-256"]


@pytest.mark.parametrize("line, says", [
    ("hostx all all 127.0.0.1/32 trust", 'invalid connection type "hostx"'),
    ("host all all 127.0.0.1/32 ident", 'authentication method "ident" is not supported'),
    ("host replication all 127.0.0.1/32 trust", '"replication" is not supported'),
    ("host all +admins 127.0.0.1/32 trust", "group user names"),
    ("host all all db.example.com trust", "host names are not supported"),
    ("host all all 127.0.0.1/33 trust", "invalid CIDR mask"),
    ("host all all 127.0.0.1/32 md5 map=x", "options such as \"map=x\""),
    ("host all all 127.0.0.1/32 peer", "peer authentication is only supported on local"),
    ("host all all 127.0.0.1/32 cert", "cert authentication is only supported on hostssl"),
    ("host all @missing 127.0.0.1/32 md5", "cannot read"),
    ('host "all all 127.0.0.1/32 md5', "unterminated quoted string"),
])
def test_bad_auth_hba_file_is_a_configuration_error(berth, tmp_path, line, says):
    """Whatever berth cannot honour in auth_hba_file stops it with the file and line,
    as any configuration error does, rather than skipping a rule."""
    hba = tmp_path / "hba.conf"
    hba.write_text("# comment\nlocal all all trust\n" + line + "\n")
    b = berth.file(settings={"auth_type": "hba", "auth_hba_file": str(hba)}, start=False)
    with pytest.raises(RuntimeError):
        b.start(timeout=5)
    assert b.proc.wait(10) == 2
    err = b.stderr()
    assert "%s:3:" % hba in err and says in err, err


def test_auth_hba_file_without_entries_or_unreadable_is_an_error(berth, tmp_path):
    """An HBA file with no rules would refuse every login, and a directory reads as
    nothing: both stop berth, as PostgreSQL refuses a pg_hba.conf without entries. An
    error in an @file names that file's line and the line that included it."""
    empty = tmp_path / "empty.conf"
    empty.write_text("# only a comment\n\n")
    names = tmp_path / "names.txt"
    names.write_text('alice\n"bob\n')
    included = tmp_path / "included.conf"
    included.write_text("host all @names.txt 127.0.0.1/32 md5\n")
    for path, says in ((empty, "contains no entries"), (tmp_path, "cannot read"),
                       (included, "%s:2: unterminated quoted string (included at %s:1)"
                        % (names, included))):
        b = berth.file(settings={"auth_type": "hba", "auth_hba_file": str(path)}, start=False)
        with pytest.raises(RuntimeError):
            b.start(timeout=5)
        assert b.proc.wait(10) == 2
        assert says in b.stderr() and "auth_hba_file" in b.stderr(), b.stderr()
