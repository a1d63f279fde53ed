"""Clients that misbehave on the wire, found by scripts/fuzz-wire: each case failed
before its fix. A client that leaves between extended-protocol messages and their
Sync, an unknown message type, and a client that resets its connection while berth
still has an error queued for it."""
import socket
import struct
import time

import pgwire


def fresh_table(pg, name):
    """An empty table the app role may write (created anew by the superuser)."""
    pg.sql("DROP TABLE IF EXISTS %s; CREATE TABLE %s(x int)" % (name, name))
    pg.sql("GRANT ALL ON %s TO app" % name)


def test_leaving_before_sync_does_not_hand_over_an_open_implicit_transaction(berth, pg):
    """Parse/Bind/Execute run in an implicit transaction that only Sync ends. A
    client that leaves before its Sync must not have its INSERT (or SET) committed by
    whoever gets the server connection next."""
    fresh_table(pg, "fault_nosync")
    b = berth("transaction", pool_size=1)
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", b.password, "app")
        c.send(pgwire.parse_msg("INSERT INTO fault_nosync VALUES (1)") + pgwire.bind_msg() +
               pgwire.execute_msg() + pgwire.parse_msg("SET search_path = nowhere") +
               pgwire.bind_msg() + pgwire.execute_msg() + pgwire.flush_msg())
        tags = [t for t, _ in c.read_until([b"C"]) if t == b"C"]
        tags += [t for t, _ in c.read_until([b"C"]) if t == b"C"]
        assert len(tags) == 2  # both ran, inside the implicit transaction
    finally:
        c.close()
    time.sleep(0.2)
    with b.connect() as conn:  # the only server connection there is, or a new one
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SELECT now() = statement_timestamp()").fetchone() == (True,)
    assert pg.sql("SELECT count(*) FROM fault_nosync") == [(0,)]


def test_synced_extended_queries_still_reuse_the_server(berth):
    b = berth("transaction", pool_size=1)
    pids = set()
    for _ in range(3):
        c = pgwire.Conn(b.host, b.port)
        try:
            c.login("app", b.password, "app")
            c.send(pgwire.parse_msg("SELECT pg_backend_pid()") + pgwire.bind_msg() +
                   pgwire.execute_msg() + pgwire.sync_msg())
            msgs = c.read_until([b"Z"])
            pids.add(pgwire.parse_data_row([p for t, p in msgs if t == b"D"][0])[0])
        finally:
            c.close()
        time.sleep(0.1)
    assert len(pids) == 1, "a Sync'd client's server connection was not reused: %r" % pids


def test_unknown_message_type_is_refused_by_berth(berth):
    """PostgreSQL answers an unknown type with FATAL 08P01 and closes; berth does so
    itself, so the garbage never reaches (and kills) a pooled server connection."""
    b = berth("transaction", pool_size=1)
    with b.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", b.password, "app")
        assert c.simple_query("SELECT 1") == ([["1"]], None)
        c.send(bytes([17, 0, 0, 0, 4]))
        msgs = c.read_until([b"E"])
        err = pgwire.parse_error_fields([p for t, p in msgs if t == b"E"][-1])
        assert err["C"] == "08P01" and err["S"] == "FATAL"
        assert c.is_closed(5)
    finally:
        c.close()
    with b.connect() as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid


def test_client_reset_while_error_queued_keeps_berth_alive(berth):
    """An error for a client that already reset its connection: the send fails and
    berth closes the client (it recursed until the stack ran out)."""
    b = berth("transaction", pool_size=1)
    for _ in range(40):
        s = socket.create_connection((b.host, b.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(pgwire.startup_packet({"user": "app", "database": "app"}))
        # An invalid SASL response while auth is pending: berth answers FATAL...
        s.sendall(pgwire.msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", 3) + b"bad"))
        s.close()  # ...to a socket that is reset (linger 0)
    assert b.alive(), b.stderr()[-3000:]
    with b.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_server_not_lent_while_a_message_is_half_forwarded(berth):
    """A client's message whose body has not all come yet keeps its server: lent at the
    ReadyForQuery before it, the next client's bytes would be read as the rest of it."""
    import threading
    b = berth("transaction", pool_size=1, query_wait_timeout=20)
    c = pgwire.Conn(b.host, b.port)
    result = {}
    try:
        c.login("app", b.password, "app")
        body = b"z" * 27 + b"\0"  # CopyFail outside COPY: PostgreSQL ignores it whole
        c.send(pgwire.query_msg("SELECT 1") + b"f" + struct.pack("!I", 4 + len(body)) + body[:10])
        c.read_until([b"Z"])

        def second():
            t0 = time.monotonic()
            with b.connect() as conn:
                result["row"] = conn.execute("SELECT 2").fetchone()
            result["waited"] = time.monotonic() - t0

        t = threading.Thread(target=second)
        t.start()
        time.sleep(1.0)
        assert "row" not in result, "the server was lent with half a message in it"
        c.send(body[10:])
        c.send(pgwire.terminate_msg())
        t.join(15)
    finally:
        c.close()
    assert result.get("row") == (2,)
    assert result["waited"] >= 0.9


def test_simple_query_after_extended_messages_ends_their_transaction(berth, pg):
    """Parse/Bind/Execute then a simple Query: PostgreSQL commits the implicit
    transaction with the Query, so the server is clean at its ReadyForQuery and is
    reused; the INSERT stays committed."""
    fresh_table(pg, "fault_q")
    b = berth("transaction", pool_size=1)
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login("app", b.password, "app")
        c.send(pgwire.parse_msg("INSERT INTO fault_q VALUES (1)") + pgwire.bind_msg() +
               pgwire.execute_msg() + pgwire.query_msg("SELECT pg_backend_pid()"))
        msgs = c.read_until([b"Z"])
        pid = pgwire.parse_data_row([p for t, p in msgs if t == b"D"][0])[0]
    finally:
        c.close()
    time.sleep(0.2)
    with b.connect() as conn:
        assert str(conn.execute("SELECT pg_backend_pid()").fetchone()[0]) == pid
        assert conn.execute("SELECT now() = statement_timestamp()").fetchone() == (True,)
    assert pg.sql("SELECT count(*) FROM fault_q") == [(1,)]
