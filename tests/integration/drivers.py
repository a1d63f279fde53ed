"""drivers.py - helpers for the tests of issue 4 (named prepared statements and
session state in transaction mode): test_drivers_tx.py, test_prepared.py,
test_pinning.py.

Every such test runs against PostgreSQL directly as well as through berth, so a
failure through berth means berth is wrong, not the test. `Direct` gives
PostgreSQL itself the client-side API of harness.Berth (params, connect, url,
libpq_env), and the `target` fixture hands a test either one.
"""

import os
import re
import struct
import threading
import time

import pytest

import pgwire
from harness import NOT_HEALTH_CHECK, Berth

JAVA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "java")
PRISMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "prisma")


class Direct:
    """PostgreSQL itself over TCP as the `app` role, with harness.Berth's client API."""

    kind = "direct"

    def __init__(self, pg):
        self.pg = pg
        self.host, self.port = pg.host, pg.port
        self.user, self.password, self.dbname = pg.user, pg.password, pg.dbname

    params = Berth.params
    connect = Berth.connect
    url = Berth.url
    libpq_env = Berth.libpq_env

    def stderr(self):
        return ""


def make_target(kind, berth, pg, pool_size, **settings):
    """Direct, or berth in `kind` mode. pool_size is for transaction mode; session
    mode gets at least 6 so that the few clients of a test each have a server."""
    if kind == "direct":
        return Direct(pg)
    if kind == "session":
        pool_size = max(pool_size, 6)
    b = berth(kind, pool_size=pool_size, **settings)
    b.kind = kind
    return b


@pytest.fixture(params=["direct", "transaction"])
def target(request, berth, pg):
    """Factory: target(pool_size=, **BERTH_settings) -> Direct or a berth in
    transaction mode. Test ids end in [direct] or [transaction]."""
    def make(pool_size=4, **settings):
        return make_target(request.param, berth, pg, pool_size, **settings)
    make.kind = request.param
    return make


@pytest.fixture(params=["direct", "session", "transaction"])
def target3(request, berth, pg):
    """Like target, plus berth in session mode."""
    def make(pool_size=4, **settings):
        return make_target(request.param, berth, pg, pool_size, **settings)
    make.kind = request.param
    return make


# --- PostgreSQL's own log: errors a self-healing driver would hide -------------

# pgjdbc re-prepares after 26000/0A000 and postgres.js retries after
# FetchPreparedStatement/RevalidateCachedQuery errors, so a broken pooler can look
# fine to them. PostgreSQL logs every such error; a test reads the log it wrote.
PREPARED_ERRORS = re.compile(
    r"ERROR:\s+(prepared statement \S+ (does not exist|already exists)"
    r"|cached plan must not change result type"
    r"|bind message supplies \d+ parameters"
    r"|portal \S+ does not exist)")


class PgLog:
    def __init__(self, pg):
        self.path = pg.logfile
        self.start = os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def text(self):
        with open(self.path, errors="replace") as f:
            f.seek(self.start)
            return f.read()

    def prepared_errors(self):
        return [line for line in self.text().splitlines() if PREPARED_ERRORS.search(line)]


# --- server connections ---------------------------------------------------------

class MaxSampler:
    """Samples the app role's server connections in the background, keeps the maximum."""

    def __init__(self, pg, usename="app"):
        self.pg, self.usename, self.max = pg, usename, 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with self.pg.connect() as c:
            while not self.stop.is_set():
                n = c.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                              "'client backend' AND usename = %s AND pid <> pg_backend_pid()"
                              + NOT_HEALTH_CHECK,
                              [self.usename]).fetchone()[0]
                self.max = max(self.max, n)
                time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.t.join(5)


def run_threads(n, fn, timeout=90):
    """fn(i) in n threads; returns [(i, repr(exception))]."""
    errors = []

    def wrap(i):
        try:
            fn(i)
        except BaseException as e:  # noqa: B902 - report everything
            errors.append((i, repr(e)))

    ts = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not [t for t in ts if t.is_alive()], "client threads hung"
    return errors


# --- a raw protocol client with readable replies --------------------------------

def close_msg(kind, name):
    return pgwire.msg(b"C", kind + pgwire.cstr(name))


def describe_fields(payload):
    """RowDescription payload -> [(name, type oid)]."""
    (n,) = struct.unpack("!H", payload[:2])
    off, out = 2, []
    for _ in range(n):
        end = payload.index(b"\0", off)
        name = payload[off:end].decode()
        off = end + 1
        _table, _col, typ, _size, _mod, _fmt = struct.unpack("!IhIhih", payload[off:off + 18])
        off += 18
        out.append((name, typ))
    return out


def param_types(payload):
    (n,) = struct.unpack("!H", payload[:2])
    return list(struct.unpack("!%dI" % n, payload[2:2 + 4 * n]))


def readable(tag, payload):
    """One backend message as a comparable tuple. ErrorResponse keeps severity,
    SQLSTATE and message (which names the client's statement or portal)."""
    t = tag.decode()
    if t in ("E", "N"):
        f = pgwire.parse_error_fields(payload)
        return (t, f.get("V", f.get("S")), f.get("C"), f.get("M"))
    if t == "D":
        return ("D", tuple(pgwire.parse_data_row(payload)))
    if t == "T":
        return ("T", tuple(describe_fields(payload)))
    if t == "t":
        return ("t", tuple(param_types(payload)))
    if t == "C":
        return ("C", payload.rstrip(b"\0").decode())
    if t == "Z":
        return ("Z", payload.decode())
    if t == "A":
        _pid, = struct.unpack("!I", payload[:4])
        chan, msg = payload[4:].split(b"\0")[:2]
        return ("A", chan.decode(), msg.decode())
    return (t,)


class Raw:
    """pgwire.Conn logged in to a target; exchange() returns readable replies."""

    def __init__(self, t, **extra):
        self.c = pgwire.Conn(t.host, t.port, timeout=20)
        self.c.login(t.user, t.password, t.dbname, extra=extra or None)

    def close(self):
        try:
            self.c.send(pgwire.terminate_msg())
        except OSError:
            pass
        self.c.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def exchange(self, data, syncs=1, until=None):
        """Send data; read replies until `syncs` ReadyForQuery (or, with until, until a
        message with that tag). ParameterStatus and NoticeResponse are left out."""
        self.c.send(data)
        out, seen = [], 0
        while True:
            t, p = self.c.read_msg()
            if t in (b"S", b"N"):
                continue
            out.append(readable(t, p))
            if until is not None and t == until:
                return out
            if until is None and t == b"Z":
                seen += 1
                if seen == syncs:
                    return out

    def query(self, sql):
        return self.exchange(pgwire.query_msg(sql))

    def rows(self, sql):
        """Simple query; rows, or raises AssertionError with the error."""
        out = self.query(sql)
        errs = [m for m in out if m[0] == "E"]
        assert not errs, (sql, errs)
        return [list(m[1]) for m in out if m[0] == "D"]

    # extended-protocol shorthands
    def parse(self, name, sql, oids=()):
        return pgwire.parse_msg(sql, name, oids)

    def prepare(self, name, sql, oids=()):
        return self.exchange(self.parse(name, sql, oids) + pgwire.sync_msg())

    def run_prepared(self, name, params=()):
        return self.exchange(pgwire.bind_msg(params, stmt=name) + pgwire.execute_msg()
                             + pgwire.sync_msg())

    def close_stmt(self, name):
        return self.exchange(close_msg(b"S", name) + pgwire.sync_msg())


def data(out):
    """DataRows of readable replies, as lists."""
    return [list(m[1]) for m in out if m[0] == "D"]


def errors(out):
    return [m[2] for m in out if m[0] == "E"]


def kinds(out):
    return [m[0] for m in out]
