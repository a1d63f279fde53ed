"""harness.py - throwaway PostgreSQL clusters and berth processes for the
integration tests. Fixtures in conftest.py wrap these; tests import the
helpers (connect, sqlstate, ...) from here.

Every process started here is stopped here, by PID.
"""

import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

import psycopg
from psycopg import sql as pgsql

PG_BIN = "/usr/lib/postgresql/15/bin"
RUN_AS = "berth-test"  # PostgreSQL refuses to run as root; tests run as root in CI
BERTH_BIN = os.environ.get("BERTH_BIN", "")
SRCDIR = os.environ.get("BERTH_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
NODE_DIR = os.path.join(SRCDIR, "tests", "node")

# Every berth ever started in this run; conftest scans their stderr for secrets.
ALL_BERTHS = []
# Those currently running; conftest attaches their stderr to failure reports.
LIVE_BERTHS = []
# Strings that must never appear in any berth's stderr.
SECRETS = set()
# berth's upstream health checks log in with this application_name every
# health_check_period; counts of pool connections leave them out.
HEALTH_CHECK_APP = "berth-health"
NOT_HEALTH_CHECK = " AND application_name <> '%s'" % HEALTH_CHECK_APP


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout, proc=None, what="process"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with status %s before accepting connections"
                               % (what, proc.returncode))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not accept connections on %s:%d within %ss"
                       % (what, host, port, timeout))


def ensure_run_as_user():
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        RUN_AS], check=True)
        return pwd.getpwnam(RUN_AS)


def as_test_user(cmd):
    if os.geteuid() == 0:
        return ["runuser", "-u", RUN_AS, "--"] + cmd
    return cmd


def sqlstate(exc):
    """SQLSTATE of a psycopg error (also when raised at connect time)."""
    return getattr(exc, "sqlstate", None)


# ---------------------------------------------------------------- PostgreSQL

class PgServer:
    """A throwaway PostgreSQL 15 cluster: TCP on 127.0.0.1 and a unix socket.

    Roles: postgres (superuser, trust over the unix socket only), app (SCRAM,
    owns database app), app2 (SCRAM), md5user (md5-hashed password)."""

    def __init__(self, name="pg"):
        ensure_run_as_user()
        self.dir = tempfile.mkdtemp(prefix="berth-%s-" % name)
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, RUN_AS, RUN_AS)
        self.data = os.path.join(self.dir, "data")
        self.sockdir = os.path.join(self.dir, "sock")
        os.mkdir(self.sockdir)
        shutil.chown(self.sockdir, RUN_AS, RUN_AS)
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user, self.dbname = "app", "app"
        self.password = "Pw" + secrets.token_hex(10)
        self.user2, self.password2 = "app2", "Pw2" + secrets.token_hex(10)
        self.md5user, self.md5password = "md5user", "Pw5" + secrets.token_hex(10)
        SECRETS.update([self.password, self.password2, self.md5password])
        self.running = False
        subprocess.run(as_test_user([PG_BIN + "/initdb", "-D", self.data, "-U", "postgres",
                                     "-A", "trust", "-E", "UTF8", "--locale=C", "-N"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# berth integration tests\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "password_encryption = 'scram-sha-256'\n"
                    "max_connections = 300\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 64MB\n"
                    "log_min_messages = warning\n" % (self.port, self.sockdir))
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            # md5 here means: SCRAM for SCRAM-stored passwords, md5 for md5 ones.
            f.write("local all all trust\nhost all all 127.0.0.1/32 md5\n"
                    "local replication all trust\nhost replication all 127.0.0.1/32 md5\n")
        self.start()
        try:
            self._create_roles()
        except BaseException:
            self.destroy()
            raise

    def _create_roles(self):
        lit = pgsql.Literal
        with self.connect(dbname="postgres") as c:
            c.execute(pgsql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(lit(self.password)))
            c.execute("CREATE DATABASE app OWNER app")
            c.execute(pgsql.SQL("CREATE ROLE app2 LOGIN PASSWORD {}").format(lit(self.password2)))
            c.execute("SET password_encryption = 'md5'")
            c.execute(pgsql.SQL("CREATE ROLE md5user LOGIN PASSWORD {}").format(
                lit(self.md5password)))
        self.sql("GRANT ALL ON SCHEMA public TO PUBLIC", dbname="app")

    def url(self, user=None, password=None, dbname=None):
        return "postgres://%s:%s@%s:%d/%s" % (
            urllib.parse.quote(user or self.user), urllib.parse.quote(password or self.password),
            self.host, self.port, dbname or self.dbname)

    def conninfo(self, user=None, password=None, dbname=None):
        return "host=%s port=%d dbname=%s user=%s password=%s" % (
            self.host, self.port, dbname or self.dbname, user or self.user,
            password or self.password)

    def start(self):
        subprocess.run(as_test_user([PG_BIN + "/pg_ctl", "-D", self.data, "-l", self.logfile,
                                     "-w", "-t", "30", "start"]),
                       check=True, stdout=subprocess.DEVNULL)
        self.running = True

    def stop(self, mode="fast"):
        if not self.running:
            return
        subprocess.run(as_test_user([PG_BIN + "/pg_ctl", "-D", self.data, "-m", mode, "-w",
                                     "-t", "30", "stop"]),
                       check=True, stdout=subprocess.DEVNULL)
        self.running = False

    def destroy(self):
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, dbname="app", **kw):
        """A direct superuser connection over the unix socket (not through berth)."""
        return psycopg.connect(host=self.sockdir, port=self.port, user="postgres",
                               dbname=dbname, autocommit=True, connect_timeout=10, **kw)

    def sql(self, query, params=None, dbname="app"):
        with self.connect(dbname=dbname) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else None

    def server_conns(self, usename="app", datname=None, state=None):
        """Client backends of usename (and datname/state if given), not counting the
        connection that counts."""
        q = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
             "AND pid <> pg_backend_pid() AND usename = %s" + NOT_HEALTH_CHECK)
        args = [usename]
        if datname:
            q += " AND datname = %s"
            args.append(datname)
        if state:
            q += " AND state = %s"
            args.append(state)
        return self.sql(q, args)[0][0]

    def wait_server_conns(self, pred, usename="app", timeout=10.0, state=None):
        deadline = time.monotonic() + timeout
        n = self.server_conns(usename, state=state)
        while not pred(n) and time.monotonic() < deadline:
            time.sleep(0.05)
            n = self.server_conns(usename, state=state)
        return n

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-5000:]
        except OSError:
            return ""


# --------------------------------------------------------------------- berth

class Berth:
    """One berth process. Zero-file mode (env only) when ini is None, file mode
    (`berth FILE`) otherwise. user/password/dbname are what clients log in with."""

    def __init__(self, env, ini_text=None, user="app", password=None, dbname="app",
                 host="127.0.0.1", port=None, workdir=None, extra_files=None):
        if not BERTH_BIN:
            raise RuntimeError("BERTH_BIN is not set: run the suite with tests/integration/run "
                               "or `make check`")
        self.workdir = workdir or tempfile.mkdtemp(prefix="berth-run-")
        self.host, self.port = host, port
        self.user, self.password, self.dbname = user, password, dbname
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("BERTH_") and k not in ("BERTH_BIN", "BERTH_SRCDIR") or \
                    k == "DATABASE_URL":
                del self.env[k]
        self.env.update(env)
        self.ini_path = None
        if ini_text is not None:
            self.ini_path = os.path.join(self.workdir, "berth.ini")
            with open(self.ini_path, "w") as f:
                f.write(ini_text)
        self.stderr_path = os.path.join(self.workdir, "berth.stderr")
        self.extra_args = []  # command-line options before the config file
        self.nofile = None  # (soft, hard) RLIMIT_NOFILE to start berth with
        self.proc = None

    def start(self, timeout=10.0):
        args = [BERTH_BIN] + self.extra_args + ([self.ini_path] if self.ini_path else [])
        self._err = open(self.stderr_path, "wb")
        nofile = self.nofile
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None
        self.proc = subprocess.Popen(args, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._err, stderr=self._err, cwd=self.workdir,
                                     preexec_fn=limit)
        ALL_BERTHS.append(self)
        LIVE_BERTHS.append(self)
        try:
            wait_port(self.host, self.port, timeout, self.proc, "berth")
        except RuntimeError as e:
            self.stop()
            raise RuntimeError("%s\n--- berth stderr ---\n%s" % (e, self.stderr())) from None
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            # SIGQUIT: exit at once. SIGTERM would wait for the test's clients
            # to leave (test_lifecycle.py covers that).
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()
        if self in LIVE_BERTHS:
            LIVE_BERTHS.remove(self)
        return self.proc.returncode

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for berth")

    # --- clients ----------------------------------------------------------

    def params(self, **kw):
        p = dict(host=self.host, port=self.port, user=self.user, dbname=self.dbname,
                 connect_timeout=10)
        if self.password is not None:
            p["password"] = self.password
        p.update(kw)
        return {k: v for k, v in p.items() if v is not None}

    def connect(self, autocommit=True, **kw):
        """psycopg connection through berth. Unnamed statements only
        (prepare_threshold=None) unless the test asks otherwise."""
        threshold = kw.pop("prepare_threshold", None)
        return psycopg.connect(autocommit=autocommit, prepare_threshold=threshold,
                               **self.params(**kw))

    def url(self, user=None, password=None, dbname=None, **query):
        u = "postgres://%s:%s@%s:%d/%s" % (
            urllib.parse.quote(user or self.user),
            urllib.parse.quote(password if password is not None else (self.password or "")),
            self.host, self.port, dbname or self.dbname)
        if query:
            u += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        return u

    def libpq_env(self, **extra):
        """Environment for psql/pgbench/node through berth."""
        e = dict(os.environ)
        e.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user,
                 PGDATABASE=self.dbname, PGCONNECT_TIMEOUT="10")
        if self.password is not None:
            e["PGPASSWORD"] = self.password
        e.update(extra)
        return e


def zero_file_env(pg, listen_port, pool_mode="transaction", pool_size=None, **settings):
    env = {"DATABASE_URL": pg.url(), "BERTH_LISTEN": "127.0.0.1:%d" % listen_port,
           "BERTH_POOL_MODE": pool_mode, "BERTH_LOG_LEVEL": os.environ.get("BERTH_TEST_LOG_LEVEL", "error,warn,info")}
    if pool_size is not None:
        env["BERTH_POOL_SIZE"] = str(pool_size)
    for k, v in settings.items():
        env["BERTH_" + k.upper()] = str(v)
    return env


def make_ini(listen_port, settings, databases, auth_file=None):
    lines = ["; written by tests/integration", "[databases]"]
    for name, spec in databases.items():
        lines.append("%s = %s" % (name, spec))
    lines += ["", "[berth]", "listen_addr = 127.0.0.1", "listen_port = %d" % listen_port,
              "log_level = error,warn,info"]
    if auth_file:
        lines.append("auth_file = %s" % auth_file)
    for k, v in settings.items():
        lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


def write_userlist(path, users):
    with open(path, "w") as f:
        for u, p in users.items():
            f.write('"%s" "%s"\n' % (u.replace('"', '""'), p.replace('"', '""')))
    return path


def attempt(b, query="SELECT 1", user=None, password=None, dbname=None, extra=None, timeout=15):
    """Log in to b with the raw client and run query. Returns (ok, sqlstate,
    seconds): sqlstate is the first ErrorResponse's code, at login or at the
    query, or "closed" if berth closed the connection without one. (psycopg
    3.1 gives no SQLSTATE for errors at connect time, so tests use this.)"""
    import pgwire
    t0 = time.monotonic()
    c = None
    try:
        c = pgwire.Conn(b.host, b.port, timeout=timeout)
        c.login(user or b.user, b.password if password is None else password,
                dbname or b.dbname, extra=extra)
        _rows, err = c.simple_query(query)
        if err:
            return False, err.get("C"), time.monotonic() - t0
        return True, None, time.monotonic() - t0
    except pgwire.ProtocolError as e:
        return False, getattr(e, "fields", {}).get("C", "protocol"), time.monotonic() - t0
    except socket.timeout:
        return False, "timeout", time.monotonic() - t0
    except (EOFError, OSError):
        return False, "closed", time.monotonic() - t0
    finally:
        if c is not None:
            c.close()
