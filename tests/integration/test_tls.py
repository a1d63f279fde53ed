"""TLS between clients and berth (client_tls_*): libpq's sslmodes against each
client_tls_sslmode, client certificates, the self-signed default, the unix
socket, data in volume over TLS, reload, and clients that misbehave during
the handshake. Certificates come from the openssl command, made per module."""

import hashlib
import os
import re
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

import pgwire
from harness import NODE_DIR, PG_BIN
from test_drivers_tx import PGJDBC_JAR, fresh_table, pgjdbc_classes  # noqa: F401 - fixture


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_cert(d, name, cn, ca, san=None, digest=None):
    """name.key/name.crt signed by ca (a name made earlier), EC P-256; digest e.g. "-sha384"."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    ext = []
    if san:
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n" % san)
        ext = ["-extfile", name + ".ext"]
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".crt", "-days", "2", *ext,
            *([digest] if digest else []), cwd=d)
    os.chmod(os.path.join(d, name + ".key"), 0o600)


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".crt", "-days", "2", "-subj", "/CN=" + cn,
            cwd=d)


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="berth-tls-")
    make_ca(d, "ca", "berth test CA")
    make_ca(d, "rogue", "someone else's CA")
    make_cert(d, "server", "localhost", "ca", san="DNS:localhost,IP:127.0.0.1")
    make_cert(d, "server2", "localhost", "ca", san="DNS:localhost,IP:127.0.0.1")
    make_cert(d, "server384", "localhost", "ca", san="DNS:localhost,IP:127.0.0.1",
              digest="-sha384")
    make_cert(d, "client_app", "app", "ca")
    make_cert(d, "client_other", "other", "ca")
    make_cert(d, "client_rogue", "app", "rogue")
    yield lambda name: os.path.join(d, name)
    subprocess.run(["rm", "-rf", d])


def served_cert(certs):
    return dict(client_tls_cert_file=certs("server.crt"), client_tls_key_file=certs("server.key"))


def verify_full(certs, **kw):
    return dict(sslmode="verify-full", sslrootcert=certs("ca.crt"), **kw)


def tls_in_use(conn):
    return conn.pgconn.ssl_in_use


def ended_with_error(c, sqlstate):
    """The next message is an ErrorResponse with sqlstate, then berth closes; its fields."""
    t, p = c.read_msg()
    assert t == b"E"
    fields = pgwire.parse_error_fields(p)
    assert fields["C"] == sqlstate, fields
    assert c.is_closed()
    return fields


def test_require_serves_tls_clients_in_volume(berth, certs):
    b = berth(client_tls_sslmode="require", **served_cert(certs))
    with b.connect(**verify_full(certs)) as conn:
        assert tls_in_use(conn)
        # a result far larger than berth's buffers and TLS records, byte for byte
        rows = conn.execute("SELECT g, md5(g::text) || repeat('x', 900) FROM "
                            "generate_series(1, 20000) g").fetchall()
        assert len(rows) == 20000
        assert rows[12344] == (12345, conn.execute(
            "SELECT md5('12345') || repeat('x', 900)").fetchone()[0])
        # COPY out
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT g, repeat('y', 200) FROM generate_series(1, 30000) g) "
                          "TO STDOUT") as cp:
                n = sum(1 for _ in cp.rows())
        assert n == 30000
        # a pipeline of extended-protocol statements
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int * 2", (i,)) for i in range(200)]
        assert [c.fetchone()[0] for c in curs] == [i * 2 for i in range(200)]


def test_copy_in_over_tls_in_a_transaction(berth, certs, pg):
    b = berth(client_tls_sslmode="require", **served_cert(certs))
    with b.connect(sslmode="require") as conn:
        conn.execute("DROP TABLE IF EXISTS tls_copy")
        conn.execute("CREATE TABLE tls_copy (a int, b text)")
    try:
        with b.connect(sslmode="require", autocommit=False) as conn:
            with conn.cursor() as cur:
                with cur.copy("COPY tls_copy FROM STDIN") as cp:
                    for i in range(50000):
                        cp.write_row((i, "z" * 100))
            conn.commit()
        assert pg.sql("SELECT count(*), sum(a), min(length(b)) FROM tls_copy") == \
            [(50000, sum(range(50000)), 100)]
    finally:
        pg.sql("DROP TABLE IF EXISTS tls_copy")


def test_require_refuses_plain_clients_and_keeps_serving(berth, certs, pg):
    b = berth(client_tls_sslmode="require", **served_cert(certs))
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(sslmode="disable").close()
    assert "SSL required" in str(ei.value)
    # on the wire: an ErrorResponse 28000, then the connection ends
    c = pgwire.Conn(b.host, b.port)
    try:
        c.startup({"user": "app", "database": "app"})
        assert ended_with_error(c, "28000")["M"] == "SSL required"
    finally:
        c.close()
    with b.connect(sslmode="require") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_prefer_with_the_self_signed_default(berth, certs):
    """No certificate configured: berth makes one, enough for sslmode=require,
    while plain clients still log in (prefer) and verifying clients refuse it."""
    b = berth(client_tls_sslmode="prefer")
    with b.connect(sslmode="require") as conn:
        assert tls_in_use(conn)
        assert conn.execute("SELECT 2").fetchone() == (2,)
    with b.connect(sslmode="prefer") as conn:
        assert tls_in_use(conn)  # libpq's default asks, and berth now says yes
    with b.connect(sslmode="disable") as conn:
        assert not tls_in_use(conn)
        assert conn.execute("SELECT 3").fetchone() == (3,)
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(**verify_full(certs)).close()
    assert "certificate verify failed" in str(ei.value)


def test_unix_socket_clients_do_not_use_tls(berth, certs):
    d = tempfile.mkdtemp(prefix="berth-tls-sock-")
    os.chmod(d, 0o755)
    b = berth(client_tls_sslmode="require", unix_socket_dir=d, **served_cert(certs))
    with b.connect(host=d, sslmode="prefer") as conn:
        assert not tls_in_use(conn)  # 'N' over the socket, as PostgreSQL
        assert conn.execute("SELECT 4").fetchone() == (4,)
    with b.connect(sslmode="require") as conn:  # TCP beside it still needs TLS
        assert tls_in_use(conn)


def test_verify_ca_needs_a_client_certificate_from_the_ca(berth, certs):
    b = berth(client_tls_sslmode="verify-ca", client_tls_ca_file=certs("ca.crt"),
              **served_cert(certs))
    with b.connect(**verify_full(certs, sslcert=certs("client_app.crt"),
                                 sslkey=certs("client_app.key"))) as conn:
        assert conn.execute("SELECT 5").fetchone() == (5,)
    # verify-ca does not look at the name: CN=other may log in as app
    with b.connect(**verify_full(certs, sslcert=certs("client_other.crt"),
                                 sslkey=certs("client_other.key"))) as conn:
        assert conn.execute("SELECT 6").fetchone() == (6,)
    for extra in ({}, dict(sslcert=certs("client_rogue.crt"), sslkey=certs("client_rogue.key"))):
        with pytest.raises(psycopg.OperationalError):
            b.connect(**verify_full(certs, **extra)).close()
    assert b.alive()
    time.sleep(0.3)
    log = b.stderr()  # the operator sees why (info is in the tests' log_level)
    assert "TLS handshake with a client failed" in log
    assert "peer did not return a certificate" in log and "certificate verify failed" in log
    with b.connect(**verify_full(certs, sslcert=certs("client_app.crt"),
                                 sslkey=certs("client_app.key"))) as conn:
        assert conn.execute("SELECT 7").fetchone() == (7,)


def test_verify_full_needs_the_users_name_in_the_certificate(berth, certs):
    b = berth(client_tls_sslmode="verify-full", client_tls_ca_file=certs("ca.crt"),
              **served_cert(certs))
    with b.connect(**verify_full(certs, sslcert=certs("client_app.crt"),
                                 sslkey=certs("client_app.key"))) as conn:
        assert conn.execute("SELECT 8").fetchone() == (8,)
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(**verify_full(certs, sslcert=certs("client_other.crt"),
                                sslkey=certs("client_other.key"))).close()
    assert "CN mismatch" in str(ei.value)


def raw_tls(b, certs=None):
    """SSLRequest on a raw socket, 'S', then a TLS session (verified when certs is given)."""
    c = pgwire.Conn(b.host, b.port)
    c.send(struct.pack("!II", 8, pgwire.SSL_REQUEST))
    assert c.read_byte() == b"S"
    ctx = ssl.create_default_context(cafile=certs("ca.crt")) if certs else \
        ssl._create_unverified_context()
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
    return c


def served_der(b, certs):
    """The certificate berth shows a TLS client now (DER)."""
    c = raw_tls(b, certs)
    try:
        return c.sock.getpeercert(binary_form=True)
    finally:
        c.close()


def file_der(certs, name):
    with open(certs(name)) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_raw_tls_login_and_cancel_key(berth, certs, pg):
    b = berth(client_tls_sslmode="require", **served_cert(certs))
    c = raw_tls(b, certs)
    try:
        c.login("app", pg.password, "app")
        assert c.simple_query("SELECT 'over tls'") == ([["over tls"]], None)
        # a second SSLRequest inside TLS is a protocol violation, not a second 'S'
    finally:
        c.close()
    c = raw_tls(b)
    try:
        c.send(struct.pack("!II", 8, pgwire.SSL_REQUEST))
        ended_with_error(c, "08P01")
    finally:
        c.close()


def test_unencrypted_bytes_after_sslrequest_are_refused(berth, certs):
    b = berth(client_tls_sslmode="require", **served_cert(certs))
    c = pgwire.Conn(b.host, b.port)
    try:
        # SSLRequest and a StartupMessage in one write: the second was never encrypted
        c.send(struct.pack("!II", 8, pgwire.SSL_REQUEST) +
               pgwire.startup_packet({"user": "app", "database": "app"}))
        assert "unencrypted data after SSL request" in ended_with_error(c, "08P01")["M"]
    finally:
        c.close()
    with b.connect(sslmode="require") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_broken_and_stalled_handshakes_end_and_others_go_on(berth, certs):
    b = berth(client_tls_sslmode="require", client_login_timeout=1, **served_cert(certs))
    # junk where a ClientHello belongs
    junk = pgwire.Conn(b.host, b.port)
    junk.send(struct.pack("!II", 8, pgwire.SSL_REQUEST))
    assert junk.read_byte() == b"S"
    junk.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
    # a client that stops after 'S'
    stalled = pgwire.Conn(b.host, b.port)
    stalled.send(struct.pack("!II", 8, pgwire.SSL_REQUEST))
    assert stalled.read_byte() == b"S"
    # a client that goes away in the middle of its handshake
    half = socket.create_connection((b.host, b.port))
    half.sendall(struct.pack("!II", 8, pgwire.SSL_REQUEST))
    assert half.recv(1) == b"S"
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    half.close()
    try:
        with b.connect(sslmode="require") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert junk.is_closed(5)
        t0 = time.monotonic()
        assert stalled.is_closed(5)  # client_login_timeout covers the handshake
        assert time.monotonic() - t0 < 4
    finally:
        junk.close()
        stalled.close()
    assert b.alive()


def test_pgbench_over_tls_extended_and_connect_per_transaction(berth, certs):
    b = berth(client_tls_sslmode="require", pool_size=4, **served_cert(certs))
    env = b.libpq_env(PGSSLMODE="require")
    script = os.path.join(b.workdir, "tls.sql")
    with open(script, "w") as f:
        f.write("\\set x random(1, 1000000)\nSELECT :x * 2, repeat('t', 3000);\n")
    for args in (["-M", "extended", "-c", "8", "-T", "3"], ["-C", "-c", "4", "-T", "2"]):
        out = subprocess.run([PG_BIN + "/pgbench", "-n", "-f", script, "-j", "2"] + args,
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "error" not in out.stderr.lower()
        done = int(out.stdout.split("number of transactions actually processed: ")[1].split()[0]
                   .split("/")[0])
        assert done > 50


def test_show_clients_names_the_tls_session(berth, certs, pg):
    b = berth.file(settings=dict(client_tls_sslmode="prefer", admin_users="app",
                                 client_tls_cert_file=certs("server.crt"),
                                 client_tls_key_file=certs("server.key")))
    with b.connect(sslmode="require", application_name="tls-client") as tls_conn, \
            b.connect(sslmode="disable", application_name="plain-client") as plain_conn:
        assert tls_conn.execute("SELECT 1").fetchone() == (1,)
        assert plain_conn.execute("SELECT 1").fetchone() == (1,)
        with b.connect(dbname="pgbouncer", sslmode="disable") as admin:
            cur = admin.execute("SHOW CLIENTS")
            cols = [d.name for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    by_app = {r["application_name"]: r for r in rows}
    tls = by_app["tls-client"]["tls"]
    assert tls.startswith("TLSv1.3/TLS_") and "/ECDH=" in tls, tls  # PgBouncer's form
    assert by_app["plain-client"]["tls"] in ("", None)


def test_reload_switches_certificates_for_new_connections(berth, certs):
    b = berth.file(settings=dict(client_tls_sslmode="require",
                                 client_tls_cert_file=certs("server.crt"),
                                 client_tls_key_file=certs("server.key")))

    assert served_der(b, certs) == file_der(certs, "server.crt")
    kept = b.connect(sslmode="require")
    with open(b.ini_path) as f:
        ini = f.read()
    with open(b.ini_path, "w") as f:
        f.write(ini.replace("server.crt", "server2.crt").replace("server.key", "server2.key"))
    os.kill(b.pid, 1)  # SIGHUP
    deadline = time.monotonic() + 10
    while served_der(b, certs) != file_der(certs, "server2.crt") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served_der(b, certs) == file_der(certs, "server2.crt")
    assert kept.execute("SELECT 'still here'").fetchone() == ("still here",)
    kept.close()
    # a reload naming a file that is not there is refused; the old certificate stays
    with open(b.ini_path, "w") as f:
        f.write(ini.replace("server.crt", "missing.crt"))
    os.kill(b.pid, 1)
    time.sleep(1)
    assert "missing.crt" in b.stderr()
    assert served_der(b, certs) == file_der(certs, "server2.crt")
    assert b.alive()


def test_bad_certificate_file_is_a_configuration_error(berth, certs):
    b = berth(client_tls_sslmode="require", client_tls_cert_file=certs("nope.crt"),
              client_tls_key_file=certs("server.key"), start=False)
    out = subprocess.run([os.environ["BERTH_BIN"]], env=b.env, capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 2
    assert "environment variable BERTH_CLIENT_TLS_CERT_FILE" in out.stderr
    assert "No such file or directory" in out.stderr


def test_node_postgres_and_asyncpg_verify_berth_over_tls(berth, certs, pg):
    """Drivers with their own TLS stacks (Node's, Python's ssl) verify berth's
    certificate and run their usual traffic through transaction pooling."""
    b = berth("transaction", pool_size=5, max_client_conn=100, client_tls_sslmode="require",
              **served_cert(certs))
    env = dict(os.environ, MIX_TABLE="node_mix_tls",
               DATABASE_URL=b.url(sslmode="verify-full", sslrootcert=certs("ca.crt")))
    r = subprocess.run(["node", os.path.join(NODE_DIR, "pool_mix.js")], env=env, cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=100)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checks passed" in r.stdout
    assert pg.server_conns("app") <= 5

    import asyncio

    import asyncpg

    async def main():
        ctx = ssl.create_default_context(cafile=certs("ca.crt"))
        conns = [await asyncpg.connect(host=b.host, port=b.port, user=b.user,
                                       password=b.password, database=b.dbname, ssl=ctx)
                 for _ in range(8)]
        try:
            got = await asyncio.gather(*[c.fetchval("SELECT $1::int * 3", i)
                                         for i, c in enumerate(conns)])
            assert got == [i * 3 for i in range(8)]
            big = await conns[0].fetch("SELECT g, repeat('a', 1000) FROM generate_series(1, 5000) g")
            assert len(big) == 5000 and big[-1][0] == 5000
        finally:
            for c in conns:
                await c.close()

    asyncio.run(main())


def test_auth_type_cert_logs_in_by_certificate(berth, certs, pg):
    """auth_type cert (PgBouncer's): no password asked; the verified certificate's
    CN must be the user. Server logins still use berth's own credentials."""
    b = berth.file(settings=dict(auth_type="cert", client_tls_sslmode="verify-ca",
                                 client_tls_ca_file=certs("ca.crt"),
                                 client_tls_cert_file=certs("server.crt"),
                                 client_tls_key_file=certs("server.key")),
                   login=("app", "not-the-password"))
    ok = verify_full(certs, sslcert=certs("client_app.crt"), sslkey=certs("client_app.key"))
    with b.connect(**ok) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    # a valid certificate for another name
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(**verify_full(certs, sslcert=certs("client_other.crt"),
                                sslkey=certs("client_other.key"))).close()
    assert 'certificate authentication failed for user "app"' in str(ei.value)
    # no certificate at all: the handshake itself fails (verify-ca)
    with pytest.raises(psycopg.OperationalError):
        b.connect(**verify_full(certs)).close()
    # a user berth does not know, even with a matching certificate name
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(user="other", **verify_full(certs, sslcert=certs("client_other.crt"),
                                              sslkey=certs("client_other.key"))).close()
    assert 'role "other" does not exist' in str(ei.value)
    with b.connect(**ok) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_console_set_turns_tls_on_and_off_as_pgbouncer(berth, certs, pg):
    """PgBouncer's own TLS tests drive client TLS with SET on the console: the
    files one by one, then client_tls_sslmode; later a new key and certificate
    one at a time (passing through a key that does not fit the certificate)."""
    b = berth.file(settings=dict(admin_users="app"))

    def admin(stmt):
        with b.connect(dbname="pgbouncer", sslmode="prefer") as a:
            a.execute(stmt)

    admin("SET client_tls_key_file = '%s'" % certs("server.key"))
    admin("SET client_tls_cert_file = '%s'" % certs("server.crt"))
    admin("SET client_tls_ca_file = '%s'" % certs("ca.crt"))
    with b.connect(sslmode="prefer") as conn:
        assert not tls_in_use(conn)  # still disable
    admin("SET client_tls_sslmode = require")
    with b.connect(**verify_full(certs)) as conn:
        assert tls_in_use(conn) and conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        b.connect(sslmode="disable").close()

    admin("SET client_tls_sslmode = disable")
    with b.connect(sslmode="prefer") as conn:
        assert not tls_in_use(conn)
    admin("SET client_tls_sslmode = require")
    assert served_der(b, certs) == file_der(certs, "server.crt")

    # a new key first: it does not fit the certificate in use, so that one stays...
    admin("SET client_tls_key_file = '%s'" % certs("server2.key"))
    assert served_der(b, certs) == file_der(certs, "server.crt")
    assert "client TLS goes on as before" in b.stderr()
    # ...until its certificate comes
    admin("SET client_tls_cert_file = '%s'" % certs("server2.crt"))
    assert served_der(b, certs) == file_der(certs, "server2.crt")
    with b.connect(**verify_full(certs)) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)

    # the switch itself is refused when the settings cannot work, and stays as it was
    admin("SET client_tls_ca_file = ''")
    with pytest.raises(psycopg.Error, match="verify-ca needs client_tls_ca_file"):
        admin("SET client_tls_sslmode = 'verify-ca'")
    with pytest.raises(psycopg.Error, match="auth_type cert needs client_tls_sslmode"):
        admin("SET auth_type = cert")
    with b.connect(dbname="pgbouncer", sslmode="require") as a:
        cfg = {r[0]: r[1] for r in a.execute("SHOW CONFIG").fetchall()}
    assert cfg["client_tls_sslmode"] == "require" and cfg["auth_type"] == "scram-sha-256"
    with b.connect(sslmode="require") as conn:
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_client_leaving_without_close_notify_is_a_plain_logout(berth, certs):
    """A TLS client that closes its socket without a TLS goodbye (Python's
    SSLSocket.close, many drivers on exit) logs no TLS error; berth goes on."""
    b = berth(client_tls_sslmode="require", log_level="error,warn,info,debug",
              **served_cert(certs))
    for _ in range(3):
        c = raw_tls(b, certs)
        c.close()
    with b.connect(sslmode="require") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    time.sleep(0.5)
    err = b.stderr()
    assert "unexpected eof" not in err.lower()
    assert "TLS receive failed" not in err


def test_pipeline_decrypted_ahead_resumes_after_waiting_for_a_server(berth, certs, pg):
    """A TLS client's pipeline that OpenSSL has already decrypted (so the socket
    has nothing left to wake berth) must go on when the client, paused waiting
    for a server, gets one."""
    b = berth(client_tls_sslmode="require", pool_size=1, **served_cert(certs))
    holder = b.connect(sslmode="require", autocommit=False)
    holder.execute("SELECT 1")  # in a transaction: the only server is taken
    c = raw_tls(b, certs)
    try:
        c.login("app", pg.password, "app")
        n = 300
        batch = b"".join(pgwire.query_msg("SELECT %d, repeat('p', 40)" % i) for i in range(n))
        assert 2 * 4096 < len(batch) < 16384  # one TLS record, more than berth's buffer (pkt_buf)
        c.send(batch)
        time.sleep(0.5)
        holder.commit()
        holder.close()
        got = 0
        c.sock.settimeout(10)
        while got < n:
            t, p = c.read_msg()
            assert t != b"E", pgwire.parse_error_fields(p)
            got += t == b"Z"
        assert got == n
    finally:
        c.close()


@pytest.mark.timeout(150)
def test_pgjdbc_over_tls(berth, certs, pg, pgjdbc_classes):
    """pgjdbc (Java's own TLS) with sslmode=require through transaction pooling,
    its named server-side statements included."""
    b = berth(client_tls_sslmode="require", pool_size=3, **served_cert(certs))
    fresh_table(pg, "jdbc_tls", "t int, i int")
    try:
        url = "jdbc:postgresql://%s:%d/%s?connectTimeout=20&sslmode=require" % (
            b.host, b.port, b.dbname)
        r = subprocess.run(["java", "-cp", "%s:%s" % (PGJDBC_JAR, pgjdbc_classes),
                            "PgjdbcPrepared", url, b.user, b.password, "3", "30", "jdbc_tls"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        m = re.search(r"checks passed: (\d+)", r.stdout)
        assert m and int(m.group(1)) >= 3 * 90, r.stdout
        # and it did use TLS: a plain pgjdbc login is refused
        r = subprocess.run(["java", "-cp", "%s:%s" % (PGJDBC_JAR, pgjdbc_classes),
                            "PgjdbcPrepared", url.replace("sslmode=require", "sslmode=disable"),
                            b.user, b.password, "1", "1", "jdbc_tls"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "SSL required" in r.stdout + r.stderr
    finally:
        pg.sql("DROP TABLE IF EXISTS jdbc_tls")


def test_cancel_reaches_a_tls_client_query_under_require(berth, certs):
    """libpq sends CancelRequest on a new plain connection even when the session
    uses TLS: require must not refuse it (PostgreSQL does not either)."""
    b = berth(client_tls_sslmode="require", **served_cert(certs))
    with b.connect(sslmode="require") as conn:
        assert tls_in_use(conn)

        def cancel_soon():
            time.sleep(0.5)
            conn.cancel()

        t = threading.Thread(target=cancel_soon)
        t.start()
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(20)")
        t.join()
        assert time.monotonic() - t0 < 10
        assert conn.execute("SELECT 'after'").fetchone() == ("after",)


BIND = "p=tls-server-end-point,,"


def refused_login(b, certs, scram_as, sqlstate, tls=True):
    """A login with these SCRAM choices ends in an ErrorResponse with sqlstate and a
    closed connection; returns the error's message."""
    c = raw_tls(b, certs) if tls else pgwire.Conn(b.host, b.port)
    try:
        with pytest.raises(pgwire.ProtocolError) as ei:
            c.login("app", b.password, "app", scram_as=scram_as)
        assert ei.value.fields["C"] == sqlstate, ei.value.fields
        assert c.is_closed()
        return ei.value.fields["M"]
    finally:
        c.close()


def test_scram_channel_binding_over_tls(berth, certs, pg):
    """SCRAM-SHA-256-PLUS, as PostgreSQL offers it over TLS: listed first, used by
    libpq's channel_binding=require, and bound to the certificate berth showed. A
    client whose binding names another certificate (its TLS session ends at someone
    else) is refused whatever its password; one that says it could bind but thinks
    berth cannot ("y") was shown a list with -PLUS struck out, and is refused too."""
    b = berth(client_tls_sslmode="prefer", **served_cert(certs))
    with b.connect(**verify_full(certs, channel_binding="require")) as conn:
        assert tls_in_use(conn)
        assert conn.execute("SELECT 'bound'").fetchone() == ("bound",)

    right = hashlib.sha256(served_der(b, certs)).digest()
    c = raw_tls(b, certs)
    try:
        c.login("app", pg.password, "app", scram_as=("SCRAM-SHA-256-PLUS", BIND, right))
        assert c.sasl_mechanisms == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
        assert c.simple_query("SELECT 'plus'") == ([["plus"]], None)
    finally:
        c.close()

    elsewhere = hashlib.sha256(file_der(certs, "server2.crt")).digest()
    assert refused_login(b, certs, ("SCRAM-SHA-256-PLUS", BIND, elsewhere),
                         "28000") == "SCRAM channel binding check failed"
    assert refused_login(b, certs, ("SCRAM-SHA-256", "y,,", b""),
                         "08P01") == "SCRAM channel binding negotiation error"
    # -PLUS chosen with a plain gs2 header, or plain SCRAM with binding data: malformed
    refused_login(b, certs, ("SCRAM-SHA-256-PLUS", "n,,", b""), "08P01")
    refused_login(b, certs, ("SCRAM-SHA-256", BIND, right), "08P01")
    # a client that does not bind ("n") still logs in over TLS
    c = raw_tls(b, certs)
    try:
        c.login("app", pg.password, "app")
    finally:
        c.close()

    # Without TLS there is nothing to bind to: -PLUS is neither offered nor taken.
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", pg.password, "app")
        assert c.sasl_mechanisms == ["SCRAM-SHA-256"]
    finally:
        c.close()
    refused_login(b, certs, ("SCRAM-SHA-256-PLUS", BIND, right), "08P01", tls=False)
    # berth went on serving
    with b.connect(sslmode="disable") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_channel_binding_follows_the_certificates_signature(berth, certs, pg):
    """tls-server-end-point hashes with the digest of the certificate's signature
    (SHA-384 here), as libpq and PostgreSQL do; berth's self-signed default binds too;
    node-postgres binds when asked to."""
    b = berth(client_tls_sslmode="require", client_tls_cert_file=certs("server384.crt"),
              client_tls_key_file=certs("server384.key"))
    with b.connect(**verify_full(certs, channel_binding="require")) as conn:
        assert conn.execute("SELECT 384").fetchone() == (384,)
    der = served_der(b, certs)
    assert der == file_der(certs, "server384.crt")
    c = raw_tls(b, certs)
    try:
        c.login("app", pg.password, "app",
                scram_as=("SCRAM-SHA-256-PLUS", BIND, hashlib.sha384(der).digest()))
    finally:
        c.close()
    refused_login(b, certs, ("SCRAM-SHA-256-PLUS", BIND, hashlib.sha256(der).digest()), "28000")

    script = """
const fs = require('fs');
const { Client } = require('pg');
(async () => {
  const c = new Client({ connectionString: process.env.URL, enableChannelBinding: true,
                         ssl: { ca: fs.readFileSync(process.env.CA), servername: 'localhost' } });
  await c.connect();
  const r = await c.query("SELECT 'node bound' AS v");
  console.log(r.rows[0].v);
  await c.end();
})().catch(e => { console.error(e.message); process.exit(1); });
"""
    r = subprocess.run(["node", "-e", script], cwd=NODE_DIR, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, URL=b.url(), CA=certs("ca.crt")))
    assert r.returncode == 0 and r.stdout.strip() == "node bound", r.stdout + r.stderr

    d = berth(client_tls_sslmode="prefer")  # the self-signed certificate made at start
    with d.connect(sslmode="require", channel_binding="require") as conn:
        assert tls_in_use(conn)
        assert conn.execute("SELECT 'self-signed'").fetchone() == ("self-signed",)


def direct_tls(b, certs=None, alpn=("postgresql",)):
    """PostgreSQL 17's sslnegotiation=direct: a ClientHello straight away, no SSLRequest."""
    c = pgwire.Conn(b.host, b.port)
    ctx = ssl.create_default_context(cafile=certs("ca.crt")) if certs else \
        ssl._create_unverified_context()
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    try:
        c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
    except BaseException:
        c.close()
        raise
    return c


def test_tls_without_sslrequest_as_postgresql_17(berth, certs, pg):
    """sslnegotiation=direct (libpq 17, node-postgres): TLS from the first byte, with
    ALPN "postgresql" required as PostgreSQL 17 requires it; a TLS client of another
    protocol is refused in the handshake; cancel requests work inside direct TLS; a
    berth without client TLS refuses it and serves everyone else."""
    b = berth(client_tls_sslmode="require", **served_cert(certs))
    c = direct_tls(b, certs)
    try:
        assert c.sock.selected_alpn_protocol() == "postgresql"
        c.login("app", pg.password, "app")
        assert c.simple_query("SELECT 'direct'") == ([["direct"]], None)
        # a cancel request on another direct TLS connection reaches this client's query
        c.send(pgwire.query_msg("SELECT pg_sleep(20)"))
        time.sleep(0.5)
        k = direct_tls(b, certs)
        k.send(pgwire.cancel_packet(*c.backend_key))
        assert k.is_closed()
        k.close()
        t, p = c.read_msg()
        while t == b"T":  # RowDescription comes before the sleep starts
            t, p = c.read_msg()
        assert t == b"E" and pgwire.parse_error_fields(p)["C"] == "57014", (t, p)
        c.read_until([b"Z"])
    finally:
        c.close()

    c = direct_tls(b, certs, alpn=None)
    try:
        c.startup({"user": "app", "database": "app"})
        fields = ended_with_error(c, "08P01")
        assert "without ALPN" in fields["M"]
    finally:
        c.close()
    with pytest.raises(ssl.SSLError, match="NO_APPLICATION_PROTOCOL|no application protocol"):
        direct_tls(b, certs, alpn=("http/1.1",))
    # the SSLRequest way with ALPN, as libpq 17 does it by default
    c = raw_tls(b, certs)
    c.close()

    script = """
const { Client } = require('pg');
(async () => {
  const c = new Client({ connectionString: process.env.URL });
  await c.connect();
  const r = await c.query("SELECT 'node direct' AS v, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  console.log(r.rows[0].v);
  await c.end();
})().catch(e => { console.error(e.message); process.exit(1); });
"""
    url = b.url(sslmode="verify-full", sslrootcert=certs("ca.crt"), sslnegotiation="direct")
    r = subprocess.run(["node", "-e", script], cwd=NODE_DIR, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, URL=url))
    assert r.returncode == 0 and r.stdout.strip() == "node direct", r.stdout + r.stderr

    off = berth()  # client_tls_sslmode disable
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        direct_tls(off)
    deadline = time.monotonic() + 5
    while "TLS is not offered" not in off.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "direct TLS connection requested, but TLS is not offered" in off.stderr()
    with off.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
