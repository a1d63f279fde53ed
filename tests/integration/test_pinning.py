"""Session state that cannot be pooled (issue 4): in transaction mode berth pins a
client to its server connection while the client holds a session-level advisory
lock, LISTENs, has a session SET in force or a temporary table, until the state
is released; it logs one warning per pinned client saying why; a setting turns
pinning off. Includes what `prisma migrate deploy` does, emulated step by step.

Each test runs [direct] against PostgreSQL itself (the client-side facts: the
lock is held, notifications arrive, the setting and the temp table stay) and
[transaction] through berth with a pool of 2 that other clients keep busy, where
it also checks the pooling facts: the pinned client's statements all run on the
one server connection, nobody else runs on it meanwhile, nobody else sees its
state, and once released the server serves others again.
"""

import datetime
import hashlib
import re
import threading
import time
import uuid

import pytest

import pgwire

from drivers import target  # noqa: F401 - fixture

LOCK = 72707369  # Prisma Migrate's advisory lock key
POOL = 2


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def lock_holders(pg, key=LOCK):
    return [r[0] for r in pg.sql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
                                 "objid = %s AND granted", [key])]


def one(c, sql, params=None):
    return c.execute(sql, params).fetchone()[0]


class Busy:
    """n clients keeping the pool busy with short transactions. Each records
    (sent, done, server pid) and what it sees of session state that is not its
    own: work_mem, a temp table pin_tmp, the advisory lock, notifications,
    application_name, TimeZone."""

    def __init__(self, t, n=3):
        self.t, self.n = t, n
        self.stop = threading.Event()
        self.samples, self.bad, self.notifies, self.errors = [], [], [], []
        self.threads = []
        with t.connect() as c:
            self.work_mem = one(c, "SHOW work_mem")
            self.timezone = one(c, "SHOW TimeZone")

    def run(self, i):
        try:
            with self.t.connect(application_name="busy%d" % i) as c:
                c.add_notify_handler(lambda n: self.notifies.append((i, n.channel, n.payload)))
                while not self.stop.is_set():
                    t0 = time.monotonic()
                    row = c.execute(
                        "SELECT pg_backend_pid(), current_setting('work_mem'), "
                        "to_regclass('pin_tmp') IS NULL, current_setting('application_name'), "
                        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid()), current_setting('TimeZone')").fetchone()
                    self.samples.append((t0, time.monotonic(), row[0]))
                    if row[1:] != (self.work_mem, True, "busy%d" % i, False, self.timezone):
                        self.bad.append((i, row))
                    if i % 2:
                        with c.transaction():
                            c.execute("SELECT pg_sleep(0.002)")
                    time.sleep(0.003)
        except BaseException as e:  # noqa: B902
            self.errors.append((i, repr(e)))

    def __enter__(self):
        for i in range(self.n):
            th = threading.Thread(target=self.run, args=(i,), daemon=True)
            th.start()
            self.threads.append(th)
        time.sleep(0.2)
        return self

    def __exit__(self, *a):
        self.stop.set()
        for th in self.threads:
            th.join(15)

    def check(self):
        """Nothing of another client's session ever reached these clients."""
        assert not self.errors, self.errors[:5]
        assert not self.bad, "busy clients saw another client's session state: %r" % self.bad[:5]
        assert not self.notifies, "busy clients got notifications: %r" % self.notifies[:5]
        assert len(self.samples) > 20, "the busy clients hardly ran: %d queries" % len(self.samples)

    def ran_on(self, pid, t_from, t_to):
        """Busy queries sent after t_from and answered before t_to that ran on pid."""
        return [s for s in self.samples if s[0] > t_from and s[1] < t_to and s[2] == pid]


def others_get_every_server(t, n=POOL, timeout=10):
    """n new clients each hold a transaction open at the same time: each must get a
    server connection (so no client is pinned to any of them). Returns their pids."""
    pids, errs = [None] * n, []
    barrier = threading.Barrier(n + 1, timeout=timeout + 5)

    def hold(i):
        try:
            with t.connect(autocommit=False) as c:
                pids[i] = one(c, "SELECT pg_backend_pid()")
                barrier.wait()  # all n hold their servers at once
                barrier.wait()
                c.rollback()
        except BaseException as e:  # noqa: B902
            errs.append(repr(e))

    ths = [threading.Thread(target=hold, args=(i,), daemon=True) for i in range(n)]
    for th in ths:
        th.start()
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        raise AssertionError("only %d of %d clients got a server within %ds (still pinned?) %r"
                             % (len([p for p in pids if p]), n, timeout, errs)) from None
    barrier.wait()
    for th in ths:
        th.join(10)
    assert not errs, errs
    assert len(set(pids)) == n, pids
    return pids


PINNED = re.compile(r"\bpinned\b", re.I)  # not "unpinned"


def pinned_lines(t):
    """berth's warnings that a client is pinned."""
    return [line for line in t.stderr().splitlines() if "WARNING" in line and PINNED.search(line)]


def check_pin_log(t, *reasons):
    """One warning for the one pinned client, saying why (one of reasons)."""
    if t.kind == "direct":
        return
    lines = pinned_lines(t)
    assert len(lines) == 1, "want one 'pinned' warning for the one pinned client:\n%s" % (
        "\n".join(lines) or t.stderr()[-3000:])
    assert any(r.lower() in lines[0].lower() for r in reasons), (reasons, lines[0])


def run_pinned(a, checks):
    """While pinned: run `checks(i)` in 12 transactions (autocommit and explicit),
    each must run on the same server; returns that pid."""
    pids = set()
    for i in range(12):
        if i % 3 == 0:
            with a.transaction():
                pids.add(one(a, "SELECT pg_backend_pid()"))
                checks(i)
        else:
            pids.add(one(a, "SELECT pg_backend_pid()"))
            checks(i)
        time.sleep(0.02)  # the busy clients come and go meanwhile
    assert len(pids) == 1, "the pinned client ran on several servers: %s" % pids
    return pids.pop()


# --- advisory lock --------------------------------------------------------------

@pytest.mark.timeout(60)
def test_advisory_lock_pins_until_unlock(target, pg):
    t = target(pool_size=POOL, query_wait_timeout=20)
    with Busy(t) as busy, t.connect() as a:
        assert one(a, "SELECT pg_advisory_lock(%d)" % LOCK) == ""
        t_pin = time.monotonic()
        (x,) = lock_holders(pg)

        def checks(i):
            assert lock_holders(pg) == [x]
            assert one(a, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                          "objid = %s AND pid = pg_backend_pid()", [LOCK]) == 1

        assert run_pinned(a, checks) == x
        t_unpin = time.monotonic()
        # True only on the session that holds the lock (elsewhere: false and a WARNING)
        assert one(a, "SELECT pg_advisory_unlock(%d)" % LOCK) is True
        assert lock_holders(pg) == []
        if t.kind == "transaction":
            assert busy.ran_on(x, t_pin, t_unpin) == [], "another client ran on the pinned server"
            assert x in others_get_every_server(t)
    busy.check()
    check_pin_log(t, "advisory")


# --- LISTEN -------------------------------------------------------------------------

def wait_notifies(c, got, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        c.execute("SELECT 1")  # psycopg delivers notifications as it reads
        time.sleep(0.02)
    return got


@pytest.mark.timeout(60)
def test_listen_pins_until_unlisten(target, pg):
    t = target(pool_size=POOL, query_wait_timeout=20)
    with Busy(t) as busy, t.connect() as a, t.connect() as sender:
        got = []
        a.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        a.execute("LISTEN pin_chan")
        t_pin = time.monotonic()
        x = one(a, "SELECT pg_backend_pid()")
        sent = []
        for i in range(6):
            payload = "m%d" % i
            if i % 2:
                with sender.transaction():
                    sender.execute("SELECT pg_notify('pin_chan', %s)", [payload])
            else:
                sender.execute("NOTIFY pin_chan, '%s'" % payload)
            sent.append(("pin_chan", payload))
        assert wait_notifies(a, got, len(sent)) == sent

        def checks(i):
            assert one(a, "SELECT count(*) FROM pg_listening_channels() c WHERE c = 'pin_chan'") == 1

        assert run_pinned(a, checks) == x
        t_unpin = time.monotonic()
        a.execute("UNLISTEN pin_chan")
        sender.execute("NOTIFY pin_chan, 'after'")
        time.sleep(0.3)
        assert wait_notifies(a, got, len(sent) + 1, timeout=0.5) == sent
        if t.kind == "transaction":
            assert busy.ran_on(x, t_pin, t_unpin) == [], "another client ran on the pinned server"
            assert x in others_get_every_server(t)
    busy.check()
    check_pin_log(t, "LISTEN")


# --- session SET --------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_session_set_pins_until_reset(target, pg):
    t = target(pool_size=POOL, query_wait_timeout=20)
    with Busy(t) as busy, t.connect() as a:
        default = busy.work_mem
        assert default != "7MB"
        # SET LOCAL lasts for its transaction only: no pinning, nothing leaks
        for _ in range(5):
            with a.transaction():
                a.execute("SET LOCAL work_mem = '9MB'")
                assert one(a, "SHOW work_mem") == "9MB"
            assert one(a, "SHOW work_mem") == default
        if t.kind == "transaction":
            assert pinned_lines(t) == []
        a.execute("SET work_mem = '7MB'")
        t_pin = time.monotonic()
        x = one(a, "SELECT pg_backend_pid()")
        a.execute("SET work_mem = '7MB'")  # again: still one warning for this client

        def checks(i):
            assert one(a, "SHOW work_mem") == "7MB"

        assert run_pinned(a, checks) == x
        t_unpin = time.monotonic()
        a.execute("RESET work_mem")
        assert one(a, "SHOW work_mem") == default
        if t.kind == "transaction":
            assert busy.ran_on(x, t_pin, t_unpin) == [], "another client ran on the pinned server"
            assert x in others_get_every_server(t)
    busy.check()
    check_pin_log(t, "SET")


@pytest.mark.timeout(60)
def test_tracked_parameters_do_not_pin(target, pg):
    """SET of parameters berth tracks (application_name, TimeZone: PostgreSQL reports
    them) follows the client from server to server instead of pinning it."""
    t = target(pool_size=POOL, query_wait_timeout=20)
    with Busy(t) as busy, t.connect() as a:
        assert busy.timezone != "Asia/Tokyo"
        a.execute("SET application_name = 'client-a'")
        a.execute("SET TimeZone = 'Asia/Tokyo'")
        for i in range(10):
            if i % 2:
                with a.transaction():
                    assert one(a, "SHOW application_name") == "client-a"
            assert one(a, "SHOW TimeZone") == "Asia/Tokyo"
            time.sleep(0.01)
        if t.kind == "transaction":
            others_get_every_server(t)  # a holds none while idle
            assert pinned_lines(t) == []
        assert one(a, "SHOW application_name") == "client-a"
        assert one(a, "SHOW TimeZone") == "Asia/Tokyo"
    busy.check()


# --- temporary table ---------------------------------------------------------------

@pytest.mark.timeout(60)
def test_temp_table_pins_until_discard(target, pg):
    t = target(pool_size=POOL, query_wait_timeout=20)
    with Busy(t) as busy, t.connect() as a:
        a.execute("CREATE TEMP TABLE pin_tmp (x int)")
        t_pin = time.monotonic()
        x = one(a, "SELECT pg_backend_pid()")
        total = [0]

        def checks(i):
            a.execute("INSERT INTO pin_tmp VALUES (%s)", [i])
            total[0] += i
            assert one(a, "SELECT sum(x) FROM pin_tmp") == total[0]

        assert run_pinned(a, checks) == x
        t_unpin = time.monotonic()
        a.execute("DISCARD TEMP")
        assert one(a, "SELECT to_regclass('pin_tmp') IS NULL") is True
        if t.kind == "transaction":
            assert busy.ran_on(x, t_pin, t_unpin) == [], "another client ran on the pinned server"
            assert x in others_get_every_server(t)
    busy.check()
    check_pin_log(t, "temp")


# --- the setting that turns pinning off ---------------------------------------------

# The name of the setting in include/config_keys.h.
PIN_SETTING = "pin_session_state"


@pytest.mark.timeout(60)
def test_pinning_off(berth, pg):
    b = berth("transaction", pool_size=POOL, query_wait_timeout=20, **{PIN_SETTING: 0})
    key = LOCK + 1
    with b.connect() as a:
        assert one(a, "SELECT pg_advisory_lock(%d)" % key) == ""
        a.execute("SET work_mem = '7MB'")
        a.execute("LISTEN off_chan")
        # a is idle: with pinning off it holds no server connection
        others_get_every_server(b)


# --- prisma migrate deploy, emulated ------------------------------------------------

MIGRATIONS_TABLE = """CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);
"""

MIGRATIONS = [
    ("20240101000000_init", """-- CreateTable
CREATE TABLE "User" (
    "id" SERIAL NOT NULL,
    "email" TEXT NOT NULL,
    "name" TEXT,
    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Post" (
    "id" SERIAL NOT NULL,
    "title" TEXT NOT NULL,
    "authorId" INTEGER NOT NULL,
    CONSTRAINT "Post_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");

-- AddForeignKey
ALTER TABLE "Post" ADD CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
"""),
    ("20240201000000_bio", """-- AlterTable
ALTER TABLE "User" ADD COLUMN "bio" TEXT;
"""),
]


@pytest.mark.timeout(90)
def test_prisma_migrate_deploy_emulated(target, pg):
    """What `prisma migrate deploy` does (its schema engine, prisma-engines'
    sql-schema-connector), on one client connection, while 5 other clients keep a
    pool of 2 busy: SET search_path; pg_advisory_lock(72707369) (Prisma gives up
    after 10 s with P1002); list tables; create and fill _prisma_migrations; run
    each migration's SQL as one simple query; record the steps; unlock. Every step
    must run on the server connection that holds the lock.

    Emulated because the real `prisma migrate deploy` needs Prisma's native schema
    engine, which downloads only from Prisma's own servers, out of reach here (the
    Prisma CLI is installed from npm; tests/prisma shows the stub that lets
    `prisma generate` run)."""
    t = target(pool_size=POOL, query_wait_timeout=20)
    pg.sql("DROP SCHEMA IF EXISTS prisma_mig CASCADE; CREATE SCHEMA prisma_mig AUTHORIZATION app")
    steps = []

    with Busy(t, n=5) as busy, t.connect(prepare_threshold=0) as m:
        # prepare_threshold=0: the engine's parameterised queries are named statements
        # (tokio-postgres prepares them), its raw commands simple queries.
        holder = [None]

        def step(name, sql, params=None, prepare=None):
            t0 = time.monotonic()
            cur = m.execute(sql, params, prepare=prepare)
            rows = cur.fetchall() if cur.description else None
            pid = one(m, "SELECT pg_backend_pid()")
            held = lock_holders(pg)
            steps.append((name, pid, held, t0))
            return rows

        step("set search_path", 'SET search_path = "prisma_mig"', prepare=False)
        step("version", "SELECT version()", prepare=False)
        step("lock", "SELECT pg_advisory_lock(72707369)", prepare=False)
        t_locked = time.monotonic()
        holder[0] = one(m, "SELECT pg_backend_pid()")
        tables = step("table names", "SELECT tbl.relname AS table_name FROM pg_class AS tbl "
                      "INNER JOIN pg_namespace AS namespace ON namespace.oid = tbl.relnamespace "
                      "WHERE tbl.relkind = 'r' AND namespace.nspname = ANY ( %s )",
                      [["prisma_mig"]])
        assert tables == []
        step("create _prisma_migrations", MIGRATIONS_TABLE, prepare=False)
        applied = step("list migrations", 'SELECT "id", "checksum", "finished_at", '
                       '"migration_name", "logs", "rolled_back_at", "started_at", '
                       '"applied_steps_count" FROM "prisma_mig"."_prisma_migrations" '
                       'ORDER BY "started_at" ASC')
        assert applied == []
        for name, script in MIGRATIONS:
            mid = str(uuid.uuid4())
            step("record started " + name, 'INSERT INTO "prisma_mig"."_prisma_migrations" '
                 '("id","checksum","started_at","migration_name") VALUES (%s,%s,%s,%s)',
                 [mid, hashlib.sha256(script.encode()).hexdigest(), now(), name])
            step("apply " + name, script, prepare=False)
            step("record step " + name, 'UPDATE "prisma_mig"."_prisma_migrations" SET '
                 '"applied_steps_count" = ("applied_steps_count" + %s) WHERE "id" = %s',
                 [1, mid])
            step("record finished " + name, 'UPDATE "prisma_mig"."_prisma_migrations" SET '
                 '"finished_at" = %s WHERE "id" = %s',
                 [now(), mid])
        t_unlock = time.monotonic()
        assert one(m, "SELECT pg_advisory_unlock(72707369)") is True
        assert lock_holders(pg) == []

        x = holder[0]
        for name, pid, held, _t0 in steps:
            if name in ("set search_path", "version"):
                continue  # before the lock
            assert (pid, held) == (x, [x]), "step %r ran on %s, lock held by %s" % (name, pid, held)
        if t.kind == "transaction":
            assert busy.ran_on(x, t_locked, t_unlock) == [], \
                "another client ran on the migration's server"
    busy.check()

    rows = pg.sql('SELECT migration_name, applied_steps_count, finished_at IS NOT NULL '
                  'FROM prisma_mig._prisma_migrations ORDER BY started_at')
    assert rows == [(n, 1, True) for n, _ in MIGRATIONS]
    cols = pg.sql("SELECT column_name FROM information_schema.columns WHERE "
                  "table_schema = 'prisma_mig' AND table_name = 'User' ORDER BY ordinal_position")
    assert [c[0] for c in cols] == ["id", "email", "name", "bio"]
    # pinned by the lock; or already by SET search_path, should berth not track it
    check_pin_log(t, "advisory", "SET")
    pg.sql("DROP SCHEMA prisma_mig CASCADE")


def test_client_leaving_while_probe_runs_keeps_the_server(berth, pg):
    """A statement that may leave session state (TRUNCATE here) makes berth ask
    the server after its ReadyForQuery; a client that leaves at once, before the
    answer, does not cost the server connection: it is reset and lent again."""
    pg.sql("DROP TABLE IF EXISTS probe_t; CREATE TABLE probe_t (a int); "
           "GRANT ALL ON probe_t TO PUBLIC")
    b = berth("transaction", pool_size=1)
    with b.connect() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    for _ in range(20):
        w = pgwire.Conn(b.host, b.port)
        w.login(b.user, b.password, b.dbname)
        rows, err = w.simple_query("TRUNCATE probe_t")
        assert err is None, err
        w.send(b"X\x00\x00\x00\x04")
        w.close()
    with b.connect() as c:
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        assert c.execute("SELECT count(*) FROM probe_t").fetchone()[0] == 0
    pg.sql("DROP TABLE probe_t")
