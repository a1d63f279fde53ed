"""Client startup on raw sockets: SSLRequest, GSSENCRequest, protocol
versions, NegotiateProtocolVersion, junk, and client_login_timeout."""

import socket
import struct
import time

import psycopg
import pytest

import pgwire
from harness import attempt


@pytest.fixture(scope="module")
def b(module_berth):
    return module_berth(pool_size=2, client_login_timeout=1)


def raw(b):
    return pgwire.Conn(b.host, b.port, timeout=10)


@pytest.mark.parametrize("code", [pgwire.SSL_REQUEST, pgwire.GSSENC_REQUEST])
def test_encryption_request_answered_n_then_login(b, pg, code):
    c = raw(b)
    try:
        c.send(struct.pack("!II", 8, code))
        assert c.read_byte() == b"N"
        # the same connection goes on with a plain StartupMessage
        c.login("app", pg.password, "app")
        assert c.simple_query("SELECT 1") == ([["1"]], None)
    finally:
        c.close()


def test_ssl_then_gss_request(b, pg):
    """libpq may send GSSENCRequest, get 'N', then SSLRequest on the same socket."""
    c = raw(b)
    try:
        c.send(struct.pack("!II", 8, pgwire.GSSENC_REQUEST))
        assert c.read_byte() == b"N"
        c.send(struct.pack("!II", 8, pgwire.SSL_REQUEST))
        assert c.read_byte() == b"N"
        c.login("app", pg.password, "app")
    finally:
        c.close()


def test_libpq_sslmode_prefer_and_require(b):
    with b.connect(sslmode="prefer", gssencmode="prefer") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as ei:
        b.connect(sslmode="require").close()
    assert time.monotonic() - t0 < 5
    assert "SSL" in str(ei.value)


def test_protocol_3_1_negotiated_down(b, pg):
    c = raw(b)
    try:
        c.startup({"user": "app", "database": "app"}, version=(3 << 16) | 1)
        t, p = c.read_msg()
        assert t == b"v", (t, p)
        newest, n = struct.unpack("!II", p[:8])
        assert newest == (3 << 16) | 0
        assert n == 0
        c.finish_login("app", pg.password)
        assert c.simple_query("SELECT 7") == ([["7"]], None)
    finally:
        c.close()


def test_unknown_pq_option_listed(b, pg):
    c = raw(b)
    try:
        c.startup({"user": "app", "database": "app", "_pq_.foo": "bar", "_pq_.baz": "1"})
        t, p = c.read_msg()
        assert t == b"v", (t, p)
        newest, n = struct.unpack("!II", p[:8])
        assert newest == (3 << 16) | 0
        names = [x.decode() for x in p[8:].split(b"\0") if x]
        assert n == 2 and sorted(names) == ["_pq_.baz", "_pq_.foo"]
        c.finish_login("app", pg.password)
        assert c.simple_query("SELECT 8") == ([["8"]], None)
    finally:
        c.close()


@pytest.mark.parametrize("version", [2 << 16, 4 << 16, 1234])
def test_unsupported_protocol_refused(b, version):
    c = raw(b)
    try:
        c.startup({"user": "app", "database": "app"}, version=version)
        t, p = c.read_msg()
        assert t == b"E"
        assert pgwire.parse_error_fields(p)["C"] in ("08P01", "0A000")
        assert c.is_closed(5)
    finally:
        c.close()


@pytest.mark.parametrize("junk", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                   # length field absurd
    struct.pack("!I", 3),                                   # length below 8
    struct.pack("!II", 12, 3 << 16) + b"user",              # params not terminated
])
def test_garbage_startup_closed(b, junk):
    c = raw(b)
    try:
        c.send(junk)
        # berth may send an ErrorResponse first; it must then close.
        data = b""
        c.sock.settimeout(5)
        try:
            while True:
                chunk = c.sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pytest.fail("berth kept a garbage connection open (got %r)" % data)
        except ConnectionResetError:
            pass
        if data:
            assert data[:1] == b"E"
            fields = pgwire.parse_error_fields(data[5:])
            assert fields.get("C") in ("08P01", "0A000")
    finally:
        c.close()


def test_startup_without_user_refused(b):
    c = raw(b)
    try:
        c.startup({"database": "app"})
        t, p = c.read_msg()
        assert t == b"E"
        assert pgwire.parse_error_fields(p)["C"] in ("08P01", "28000")
    finally:
        c.close()


def test_silent_client_closed_after_login_timeout(b):
    c = raw(b)
    try:
        t0 = time.monotonic()
        assert c.is_closed(6), "a client that sent nothing was not closed"
        assert 0.5 <= time.monotonic() - t0 <= 5
    finally:
        c.close()


def test_client_stuck_in_auth_closed_after_login_timeout(b):
    c = raw(b)
    try:
        c.startup({"user": "app", "database": "app"})
        t0 = time.monotonic()
        assert c.is_closed(6), "a client that never answered the auth request was not closed"
        assert time.monotonic() - t0 <= 5
    finally:
        c.close()


def test_login_timeout_spares_logged_in_clients(b):
    with b.connect() as conn:
        time.sleep(1.6)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_request_for_nobody_is_harmless(b):
    """A CancelRequest with an unknown key: berth closes that socket, nothing else."""
    c = raw(b)
    try:
        c.send(pgwire.cancel_packet(123456, 654321))
        assert c.is_closed(5)
    finally:
        c.close()
    with b.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
