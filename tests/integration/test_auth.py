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
