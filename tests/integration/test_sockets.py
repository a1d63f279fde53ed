"""Socket options on berth's own sockets, read from the running process:
TCP_DEFER_ACCEPT on the listen socket (tcp_defer_accept), TCP_NODELAY and
SO_KEEPALIVE on every accepted client socket (set once on the listen socket,
inherited on Linux), tcp_keepalive on reload, and accept running out of file
descriptors without spinning or hurting clients already in.

The sockets are duplicated out of berth with pidfd_getfd(2) (root, as the
suite runs), so the options checked are the kernel's, not berth's idea of them."""
import ctypes
import os
import resource
import signal
import socket
import time

import psycopg
import pytest

import pgwire

SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture but alpha
TCP_DEFER_ACCEPT = getattr(socket, "TCP_DEFER_ACCEPT", 9)
_libc = ctypes.CDLL(None, use_errno=True)


def _tcp_table():
    """inode -> (local port, remote port, state) for every IPv4/IPv6 TCP socket."""
    rows = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
                rows[inode] = (int(local.split(":")[1], 16), int(remote.split(":")[1], 16),
                               int(state, 16))
    return rows


def _berth_socket(pid, want):
    """A duplicate of berth's socket whose (local, remote, state) satisfies want."""
    table = _tcp_table()
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, name))
            except OSError:
                continue
            if not link.startswith("socket:["):
                continue
            row = table.get(int(link[8:-1]))
            if row is None or not want(*row):
                continue
            fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
            return socket.socket(fileno=fd)
    finally:
        os.close(pidfd)
    raise AssertionError("berth (pid %d) has no such socket" % pid)


def listen_socket(b):
    return _berth_socket(b.pid, lambda lport, rport, st: lport == b.port and st == 0x0A)


def accepted_socket(b, client_port):
    return _berth_socket(b.pid, lambda lport, rport, st: lport == b.port and rport == client_port
                         and st == 0x01)


def client_port(conn):
    s = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        return s.getsockname()[1]
    finally:
        s.close()


def opt(s, level, name):
    return s.getsockopt(level, name)


def client_socket_opts(b, conn):
    """(TCP_NODELAY, SO_KEEPALIVE) of the socket berth accepted for conn."""
    s = accepted_socket(b, client_port(conn))
    try:
        return (opt(s, socket.IPPROTO_TCP, socket.TCP_NODELAY),
                opt(s, socket.SOL_SOCKET, socket.SO_KEEPALIVE))
    finally:
        s.close()


def test_defaults_listen_socket(berth):
    b = berth("transaction", pool_size=2)
    ls = listen_socket(b)
    try:
        assert opt(ls, socket.IPPROTO_TCP, TCP_DEFER_ACCEPT) > 0
        assert opt(ls, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert opt(ls, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        ls.close()


def test_accepted_socket_has_nodelay_and_keepalive(berth):
    b = berth("transaction", pool_size=2)
    for _ in range(2):  # the first accept checks inheritance; the second relies on it
        with b.connect() as conn:
            assert conn.execute("SELECT 7").fetchone() == (7,)
            assert client_socket_opts(b, conn) == (1, 1)


def test_keepalive_off(berth):
    b = berth("transaction", pool_size=2, tcp_keepalive=0)
    with b.connect() as conn:
        assert client_socket_opts(b, conn) == (1, 0)


def test_defer_accept_off_still_serves(berth):
    b = berth("transaction", pool_size=2, tcp_defer_accept=0)
    ls = listen_socket(b)
    try:
        assert opt(ls, socket.IPPROTO_TCP, TCP_DEFER_ACCEPT) == 0
    finally:
        ls.close()
    with b.connect() as conn:
        assert conn.execute("SELECT 8").fetchone() == (8,)
    # A client that connects first and speaks later is served too.
    c = pgwire.Conn(b.host, b.port)
    try:
        time.sleep(0.3)
        c.login("app", b.password, "app")
        assert c.simple_query("SELECT 9") == ([["9"]], None)
    finally:
        c.close()


def test_no_defer_accept_with_so_reuseport(berth):
    """A takeover drains the accept queue; a deferred connection is not in it yet."""
    b = berth("transaction", pool_size=2, so_reuseport=1)
    ls = listen_socket(b)
    try:
        assert opt(ls, socket.IPPROTO_TCP, TCP_DEFER_ACCEPT) == 0
        assert opt(ls, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        ls.close()


def test_startup_packet_in_pieces_with_defer_accept(berth):
    """Deferred accept hands over the first bytes; the rest of the packet comes later."""
    b = berth("transaction", pool_size=2)
    c = pgwire.Conn(b.host, b.port)
    try:
        pkt = pgwire.startup_packet({"user": "app", "database": "app"})
        c.send(pkt[:3])
        time.sleep(0.2)
        c.send(pkt[3:])
        c.finish_login("app", b.password)
        assert c.simple_query("SELECT 10") == ([["10"]], None)
    finally:
        c.close()


def test_reload_turns_keepalive_off_for_new_clients(berth):
    b = berth.file(settings={"pool_mode": "transaction", "tcp_keepalive": "1"})
    with b.connect() as conn:
        assert client_socket_opts(b, conn)[1] == 1
    with open(b.ini_path) as f:
        text = f.read()
    with open(b.ini_path, "w") as f:
        f.write(text.replace("tcp_keepalive = 1", "tcp_keepalive = 0"))
    os.kill(b.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while True:
        with b.connect() as conn:
            off = client_socket_opts(b, conn)[1] == 0
        if off or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert off, "tcp_keepalive = 0 after RELOAD did not reach new client sockets"


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(60)
def test_out_of_descriptors_pauses_accept_and_recovers(berth):
    b = berth("transaction", pool_size=2)
    keep = b.connect()
    assert keep.execute("SELECT 1").fetchone() == (1,)
    nfds = len(os.listdir("/proc/%d/fd" % b.pid))
    # Room for two more descriptors: clients beyond that hit EMFILE in accept.
    soft, hard = resource.prlimit(b.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(b.pid, resource.RLIMIT_NOFILE, (nfds + 2, hard))
    extra = []
    try:
        for _ in range(6):
            s = socket.create_connection((b.host, b.port))
            s.sendall(pgwire.startup_packet({"user": "app", "database": "app"}))
            extra.append(s)
        time.sleep(0.5)
        cpu0 = _cpu_seconds(b.pid)
        time.sleep(2)
        spent = _cpu_seconds(b.pid) - cpu0
        assert spent < 0.5, "berth spun on a listen socket it could not accept from (%.2f s)" % spent
        # The client already in is served as before.
        assert keep.execute("SELECT 2").fetchone() == (2,)
        assert "accept failed" in b.stderr()
    finally:
        for s in extra:
            s.close()
        resource.prlimit(b.pid, resource.RLIMIT_NOFILE, (soft, hard))
    # Descriptors back: new clients get in again (after the pause).
    deadline = time.monotonic() + 10
    while True:
        try:
            with b.connect(connect_timeout=3) as conn:
                assert conn.execute("SELECT 3").fetchone() == (3,)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    keep.close()


TCP_TUNING = [(socket.TCP_KEEPIDLE, "tcp_keepalive_time"), (socket.TCP_KEEPINTVL, "tcp_keepalive_intvl"),
              (socket.TCP_KEEPCNT, "tcp_keepalive_probes"), (socket.TCP_USER_TIMEOUT, None)]


def tuning(s):
    return tuple(opt(s, socket.IPPROTO_TCP, o) for o, _ in TCP_TUNING)


def system_tuning():
    out = []
    for _, name in TCP_TUNING:
        if name is None:
            out.append(0)
        else:
            with open("/proc/sys/net/ipv4/" + name) as f:
                out.append(int(f.read()))
    return tuple(out)


def client_tuning(b):
    """The four options on the socket berth accepts for a new client."""
    with b.connect() as conn:
        s = accepted_socket(b, client_port(conn))
        try:
            return tuning(s)
        finally:
            s.close()


def server_socket(b, pg):
    return _berth_socket(b.pid, lambda lport, rport, st: rport == pg.port and st == 0x01)


def test_tcp_keepalive_tuning_on_client_and_server_sockets(berth, pg):
    """tcp_keepidle, tcp_keepintvl, tcp_keepcnt and tcp_user_timeout reach the
    kernel on client sockets (inherited from the listen socket) and on server
    sockets (through libpq's keepalives_* and tcp_user_timeout)."""
    b = berth("transaction", pool_size=1, tcp_keepidle=7, tcp_keepintvl=3, tcp_keepcnt=4,
              tcp_user_timeout=6000, health_check_period=3600)
    for _ in range(2):  # the first accept checks inheritance; the second relies on it
        with b.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            s = accepted_socket(b, client_port(conn))
            try:
                assert tuning(s) == (7, 3, 4, 6000)
            finally:
                s.close()
            s = server_socket(b, pg)
            try:
                assert tuning(s) == (7, 3, 4, 6000)
            finally:
                s.close()


def test_tcp_keepalive_tuning_defaults_and_reload(berth):
    """Unset, sockets keep the system's values; set and then unset again by
    RELOAD (SIGHUP), the next client follows."""
    b = berth.file(settings={"tcp_keepidle": 0})
    assert client_tuning(b) == system_tuning()

    def reload_with(value):
        with open(b.ini_path) as f:
            text = f.read()
        text = text.replace("tcp_keepidle = %d" % (0 if value else 9),
                            "tcp_keepidle = %d" % value)
        with open(b.ini_path, "w") as f:
            f.write(text)
        os.kill(b.pid, signal.SIGHUP)
        time.sleep(0.5)

    reload_with(9)
    assert client_tuning(b)[0] == 9
    reload_with(0)
    assert client_tuning(b) == system_tuning()


def test_tcp_socket_buffer_on_client_and_server_sockets(berth, pg):
    """tcp_socket_buffer sets SO_SNDBUF and SO_RCVBUF (Linux reports twice the
    value asked for) on accepted client sockets and on server sockets."""
    want = 50000
    b = berth("transaction", pool_size=1, tcp_socket_buffer=str(want), health_check_period=3600)
    plain = berth("transaction", pool_size=1, health_check_period=3600)
    for _ in range(2):  # the first accept checks inheritance; the second relies on it
        with b.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            for s in (accepted_socket(b, client_port(conn)), server_socket(b, pg)):
                try:
                    assert opt(s, socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * want
                    assert opt(s, socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * want
                finally:
                    s.close()
    with plain.connect() as conn:  # 0: the kernel's own sizes
        assert conn.execute("SELECT 1").fetchone() == (1,)
        s = accepted_socket(plain, client_port(conn))
        try:
            assert opt(s, socket.SOL_SOCKET, socket.SO_RCVBUF) != 2 * want
        finally:
            s.close()
