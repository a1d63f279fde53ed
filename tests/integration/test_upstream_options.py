"""libpq options in [databases] entries reach the upstream login: TLS with
sslmode=verify-full and sslrootcert against a PostgreSQL that serves TLS only
(the certificate is checked against the entry's host name while berth's evdns
supplies hostaddr), a wrong CA refused, several hosts with
target_session_attrs, passfile, and connect_timeout (which libpq ignores
under PQconnectPoll, so berth enforces it)."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest

import pgwire
from harness import RUN_AS, PgServer, free_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=berth test CA %s" % name, "-keyout", name + ".key", "-out", name + ".crt",
            cwd=d)
    return os.path.join(d, name + ".crt")


@pytest.fixture(scope="module")
def tls_pg():
    """A PostgreSQL that accepts TCP logins over TLS only, with a certificate for
    localhost and 127.0.0.1 signed by a throwaway CA."""
    certs = tempfile.mkdtemp(prefix="berth-certs-")
    ca = make_ca(certs, "ca")
    other_ca = make_ca(certs, "otherca")
    with open(os.path.join(certs, "san.cnf"), "w") as f:
        f.write("subjectAltName = DNS:localhost, IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr", cwd=certs)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.crt",
            cwd=certs)
    server = PgServer("tls")
    try:
        for name in ("server.crt", "server.key"):
            dst = os.path.join(server.data, name)
            shutil.copy(os.path.join(certs, name), dst)
            shutil.chown(dst, RUN_AS, RUN_AS)
            os.chmod(dst, 0o600)
        with open(os.path.join(server.data, "postgresql.conf"), "a") as f:
            f.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        with open(os.path.join(server.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n"
                    "hostssl all all 127.0.0.1/32 md5\n"
                    "hostnossl all all 127.0.0.1/32 reject\n")
        server.stop()
        server.start()
        yield server, ca, other_ca
    finally:
        server.destroy()
        shutil.rmtree(certs, ignore_errors=True)


def entry(pg, host=None, **opts):
    s = "host=%s port=%d dbname=app user=app password=%s" % (host or pg.host, pg.port,
                                                             pg.password)
    return " ".join([s] + ["%s=%s" % kv for kv in opts.items()])


def test_verify_full_tls_upstream(berth, tls_pg):
    pg, ca, other_ca = tls_pg
    b = berth.file(pg=pg, databases={
        "app": entry(pg, host="localhost", sslmode="verify-full", sslrootcert=ca),
        "badca": entry(pg, host="localhost", sslmode="verify-full", sslrootcert=other_ca),
        "plain": entry(pg, sslmode="disable"),
    })
    with b.connect() as c:
        ssl, version = c.execute("SELECT ssl, version FROM pg_stat_ssl "
                                 "WHERE pid = pg_backend_pid()").fetchone()
        assert ssl is True and version.startswith("TLS"), version
    # The wrong CA and the plain-text login fail with the reason, quickly;
    # berth keeps serving the good entry.
    for db, needle in (("badca", "certificate verify failed"), ("plain", "no encryption")):
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as ei:
            b.connect(dbname=db).close()
        assert needle in str(ei.value), ei.value
        assert time.monotonic() - t0 < 10
        assert pg.password not in str(ei.value)
    with b.connect() as c:
        assert c.execute("SELECT 7").fetchone()[0] == 7


def test_pgbouncer_server_tls_settings(berth, tls_pg):
    """PgBouncer's server_tls_sslmode, _ca_file and _protocols become libpq
    options for entries that set none; an entry's own sslmode wins."""
    pg, ca, other_ca = tls_pg
    plain = "host=localhost port=%d dbname=app user=app password=%s" % (pg.port, pg.password)
    b = berth.file(pg=pg, settings={"server_tls_sslmode": "verify-full",
                                    "server_tls_ca_file": ca,
                                    "server_tls_protocols": "tlsv1.2"},
                   databases={"app": plain, "own": plain + " sslmode=disable"})
    with b.connect() as c:
        ssl, version = c.execute("SELECT ssl, version FROM pg_stat_ssl "
                                 "WHERE pid = pg_backend_pid()").fetchone()
        assert ssl is True
        assert version == "TLSv1.2"  # server_tls_protocols capped it
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(dbname="own").close()
    assert "no encryption" in str(ei.value), ei.value
    # The wrong CA in server_tls_ca_file: refused by verify-full.
    b2 = berth.file(pg=pg, settings={"server_tls_sslmode": "verify-full",
                                     "server_tls_ca_file": other_ca},
                    databases={"app": plain})
    with pytest.raises(psycopg.OperationalError) as ei:
        b2.connect().close()
    assert "certificate verify failed" in str(ei.value), ei.value


def test_several_hosts_and_target_session_attrs(berth, pg):
    dead = free_port()  # nothing listens there: the first host refuses
    hosts = "host=127.0.0.1,127.0.0.1 port=%d,%d dbname=app user=app password=%s" % (
        dead, pg.port, pg.password)
    b = berth.file(databases={
        "app": hosts + " target_session_attrs=read-write",
        "standby": hosts + " target_session_attrs=standby",
    })
    with b.connect() as c:
        assert c.execute("SELECT inet_server_port()").fetchone()[0] == pg.port
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(dbname="standby").close()
    assert "standby" in str(ei.value), ei.value
    assert time.monotonic() - t0 < 10


def test_hung_first_host_is_passed_over(berth, pg):
    """The first host accepts TCP but never answers (a hung server: the kernel
    completes the handshake, nobody reads). libpq would wait on it for ever;
    the login times out (server_connect_timeout) and the next login starts at
    the next host and stays there, as PgBouncer's load_balance_hosts=disable."""
    hung = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    try:
        b = berth.file(settings={"server_connect_timeout": 1, "server_login_retry": 0.2,
                                 "query_wait_timeout": 20},
                       databases={"app": "host=127.0.0.1,127.0.0.1 port=%d,%d dbname=app "
                                         "user=app password=%s" % (
                                             hung.getsockname()[1], pg.port, pg.password)})
        t0 = time.monotonic()
        while True:
            try:
                with b.connect() as c:
                    assert c.execute("SELECT inet_server_port()").fetchone()[0] == pg.port
                break
            except psycopg.OperationalError:
                assert time.monotonic() - t0 < 15, "never got past the hung host"
                time.sleep(0.2)
        # from now on new server connections start at the working host: no waiting
        conns = [b.connect() for _ in range(3)]
        t1 = time.monotonic()
        for c in conns:
            c.execute("BEGIN")  # each holds its own server connection
            assert c.execute("SELECT inet_server_port()").fetchone()[0] == pg.port
        assert time.monotonic() - t1 < 0.9, "a new login waited on the hung host"
        for c in conns:
            c.close()
    finally:
        hung.close()


def test_passfile(berth, pg):
    """No password in the entry, and only a SCRAM verifier in auth_file (enough to
    check clients, useless for logging in upstream): libpq reads the passfile."""
    d = tempfile.mkdtemp(prefix="berth-passfile-")
    path = os.path.join(d, "pgpass")
    with open(path, "w") as f:
        f.write("127.0.0.1:%d:app:app:%s\n" % (pg.port, pg.password))
    os.chmod(path, 0o600)
    try:
        b = berth.file(users={"app": pgwire.scram_verifier(pg.password)}, databases={
            "app": "host=127.0.0.1 port=%d dbname=app user=app passfile=%s" % (pg.port, path),
            "nopass": "host=127.0.0.1 port=%d dbname=app user=app passfile=%s" % (
                pg.port, os.path.join(d, "missing")),
        })
        with b.connect() as c:
            assert c.execute("SELECT current_user").fetchone()[0] == "app"
        with pytest.raises(psycopg.OperationalError) as ei:
            b.connect(dbname="nopass").close()
        assert "password" in str(ei.value), ei.value
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_connect_timeout_in_entry(berth, pg):
    """A server that takes the TCP connection and never answers the startup
    packet: the entry's connect_timeout=2 ends the login long before
    server_connect_timeout (15 s)."""
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)  # the kernel completes handshakes; nobody reads
    try:
        b = berth.file(settings={"server_connect_timeout": 15}, databases={
            "app": entry(pg),
            "mute": "host=127.0.0.1 port=%d dbname=app user=app password=x "
                    "connect_timeout=2" % mute.getsockname()[1],
        })
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as ei:
            b.connect(dbname="mute", connect_timeout=20).close()
        took = time.monotonic() - t0
        assert "connect_timeout" in str(ei.value), ei.value
        assert 1.5 < took < 8, took
        with b.connect() as c:
            assert c.execute("SELECT 1").fetchone()[0] == 1
    finally:
        mute.close()
