"""Logging (issue 5): log_level as the gate, text and JSON lines, query lines
for simple and extended protocol, log_min_duration, log_parameters,
log_query_max_length, password masking, logfile rotation with SIGHUP, and a
stderr nobody reads that must not stall berth.

Query lines are read from berth's stderr (a file here: berth writes it
before it relays the reply, so the line is there when the client has its
answer) or from its logfile.
"""

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import psycopg
import pytest

import harness
import pgwire

QUERY = "error,warn,query"

# C-7 client=127.0.0.1:5000 db=app user=app app="x" protocol=simple duration=0.1 ms tag="SELECT 1" ...
TEXT_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[(?P<pid>\d+)\] QUERY C-(?P<conn>\d+) "
    r"client=(?P<client>\S+) db=(?P<db>\S+) user=(?P<user>\S+) app=\"(?P<app>(?:[^\"\\]|\\.)*)\" "
    r"protocol=(?P<protocol>simple|extended) duration=(?P<ms>\d+\.\d{3}) ms "
    r"(?:tag=\"(?P<tag>(?:[^\"\\]|\\.)*)\"|error=(?P<error>\S+))"
    r"(?: parameters: (?P<params>.*?))?"
    r" statement(?P<trunc> \(truncated(?:, (?P<full>\d+) bytes)?\))?: (?P<stmt>.*)$")


def text_queries(log):
    """Query lines of a text-format log, parsed; every QUERY line must match."""
    out = []
    for line in log.splitlines():
        if " QUERY " not in line:
            continue
        m = TEXT_RE.match(line)
        assert m, "query line does not match the format: %r" % line
        out.append(m.groupdict())
    return out


def json_records(log):
    """Every line of a JSON-format log, parsed (each must be one JSON object)."""
    out = []
    for line in log.splitlines():
        rec = json.loads(line)
        assert isinstance(rec, dict)
        assert {"ts", "level", "pid", "msg"} <= set(rec), rec
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["ts"]), rec["ts"]
        out.append(rec)
    return out


def json_queries(log):
    return [r for r in json_records(log) if r["level"] == "query"]


def stmts(lines, key="stmt"):
    return [q[key] for q in lines]


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def logged(read, n=None, marker=None, timeout=5.0):
    """read() once the log holds n query lines, or marker. Query lines reach the
    sinks when berth's loop round that answered ends (one write() per round),
    so a test that reads the log right after its reply must wait a moment."""
    def ready():
        t = read()
        if marker is not None:
            return marker in t
        return t.count(" QUERY ") + t.count('"level":"query"') >= n
    wait_for(ready, timeout)
    return read()


# --- level gate ---------------------------------------------------------------

def test_default_level_logs_no_query_lines(berth):
    b = berth(log_level="error,warn,info")
    with b.connect() as c:
        c.execute("SELECT 1 /*nolog*/")
        c.execute("SELECT %s::int /*nolog*/", [5])
    log = b.stderr()
    assert "nolog" not in log
    assert " QUERY " not in log


STATS_RE = re.compile(
    r"LOG stats: (?P<xacts>\d+) xacts/s, (?P<queries>\d+) queries/s, (?P<cparse>\d+) client "
    r"parses/s, (?P<sparse>\d+) server parses/s, (?P<binds>\d+) binds/s, in (?P<inb>\d+) B/s, "
    r"out (?P<outb>\d+) B/s, xact (?P<xact_us>\d+) us, query (?P<query_us>\d+) us, "
    r"wait (?P<wait_us>\d+) us$")


def stats_lines(log):
    return [{k: int(v) for k, v in m.groupdict().items()}
            for m in (STATS_RE.search(line) for line in log.splitlines()) if m]


@pytest.mark.timeout(60)
def test_log_stats_every_period(berth):
    """log_stats (on by default, as in PgBouncer) logs each stats_period's averages at info."""
    b = berth(log_level="error,warn,info", stats_period="1")
    sent = 0
    with b.connect() as c:
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            c.execute("SELECT 1")
            sent += 1
    assert wait_for(lambda: any(s["queries"] for s in stats_lines(b.stderr())), timeout=5)
    lines = stats_lines(b.stderr())
    # one line per second; each query was its own transaction and nothing waited
    assert all(s["xacts"] == s["queries"] for s in lines), lines
    assert 0 < sum(s["queries"] for s in lines) <= sent
    busy = [s for s in lines if s["queries"]]
    assert all(s["inb"] > 0 and s["outb"] > 0 and s["query_us"] > 0 for s in busy), busy
    # switched off, or with info not logged: no lines
    quiet = berth(log_level="error,warn,info", stats_period="1", log_stats="0")
    hidden = berth(stats_period="1", log_level="error,warn")
    with quiet.connect() as c1, hidden.connect() as c2:
        c1.execute("SELECT 1")
        c2.execute("SELECT 1")
    time.sleep(2.2)
    assert "stats:" not in quiet.stderr() and "stats:" not in hidden.stderr()


# --- simple protocol ----------------------------------------------------------

def test_simple_protocol_text(berth):
    b = berth(log_level=QUERY)
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login(b.user, b.password, b.dbname, extra={"application_name": "logtest app"})
        rows, err = c.simple_query("SELECT 41 + 1 /*one*/")
        assert rows == [["42"]] and err is None
        rows, err = c.simple_query("SELECT 1 /*multi*/; SELECT 2; CREATE TEMP TABLE t_multi(a int)")
        assert err is None
        rows, err = c.simple_query("SELECT * FROM no_such_table /*bad*/")
        assert err["C"] == "42P01"
        rows, err = c.simple_query("")
        assert err is None
    finally:
        c.close()
    q = text_queries(logged(b.stderr, 4))
    assert len(q) == 4, q
    one, multi, bad, empty = q
    assert one["stmt"] == "SELECT 41 + 1 /*one*/"
    assert one["tag"] == "SELECT 1" and one["error"] is None
    assert one["protocol"] == "simple"
    assert one["db"] == "app" and one["user"] == "app" and one["app"] == "logtest app"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", one["client"])
    assert float(one["ms"]) > 0
    assert int(one["pid"]) == b.pid
    # One line per Query message, with the tag of its last statement.
    assert multi["stmt"].startswith("SELECT 1 /*multi*/; SELECT 2;")
    assert multi["tag"] == "CREATE TABLE"
    assert bad["error"] == "42P01" and bad["tag"] is None
    assert empty["tag"] == "EMPTY" and empty["stmt"] == ""
    assert len({x["conn"] for x in q}) == 1


def test_simple_protocol_json(berth):
    b = berth(log_level=QUERY, log_format="json")
    with b.connect(application_name='json "quoted" \\ app') as c:
        c.execute("SELECT 'tab\there', 'line\nbreak', 'quote\"', 'back\\slash', 'é✓' /*j1*/")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0 /*j2*/")
    q = json_queries(logged(b.stderr, 2))
    assert len(q) == 2, q
    ok, bad = q
    assert ok["statement"] == ("SELECT 'tab\there', 'line\nbreak', 'quote\"', 'back\\slash', "
                               "'é✓' /*j1*/")
    assert ok["tag"] == "SELECT 1" and ok["sqlstate"] is None
    assert ok["protocol"] == "simple"
    assert ok["database"] == "app" and ok["user"] == "app"
    assert ok["application_name"] == 'json "quoted" \\ app'
    assert re.fullmatch(r"127\.0\.0\.1:\d+", ok["client"])
    assert isinstance(ok["duration_ms"], float) and ok["duration_ms"] > 0
    assert ok["truncated"] is False and ok["statement_length"] == len(ok["statement"].encode())
    assert ok["parameters"] is None
    assert ok["pid"] == b.pid and ok["conn"].startswith("C-")
    assert bad["tag"] is None and bad["sqlstate"] == "22012"
    assert bad["statement"] == "SELECT 1/0 /*j2*/"


def test_json_escapes_invalid_utf8_and_control_chars(berth):
    """A client may send any bytes as SQL text (here in a LATIN1 session): each line
    stays valid JSON, bad UTF-8 becomes U+FFFD."""
    b = berth(log_level=QUERY, log_format="json")
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login(b.user, b.password, b.dbname, extra={"client_encoding": "LATIN1"})
        c.send(pgwire.msg(b"Q", b"SELECT '\xe9t\xe9\x01\x1f' /*latin*/\0"))
        msgs = c.read_until({b"Z"})
        assert not [m for m in msgs if m[0] == b"E"], msgs
    finally:
        c.close()
    q = json_queries(logged(b.stderr, 1))
    assert len(q) == 1
    assert q[0]["statement"] == "SELECT '\ufffdt\ufffd\x01\x1f' /*latin*/"


# --- extended protocol ----------------------------------------------------------

@pytest.mark.parametrize("prepare", [False, True], ids=["unnamed", "prepared"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_extended_psycopg(berth, prepare, fmt):
    """psycopg with parameters: unnamed statements, or named ones it prepares
    (prepare_threshold=0: Parse and Sync first, then Bind/Execute)."""
    b = berth(log_level=QUERY, log_format=fmt)
    table = "log_ext_%s_%d" % (fmt, prepare)
    with b.connect(prepare_threshold=0 if prepare else None) as c:
        c.execute("CREATE TABLE %s(a int)" % table, prepare=False)
        try:
            for i in range(3):
                assert c.execute("SELECT %s::int * 2 AS x /*ext*/", [i],
                                 prepare=prepare).fetchone() == (i * 2,)
            c.execute("INSERT INTO " + table + " VALUES (%s), (%s) /*ins*/", [1, 2],
                      prepare=prepare)
            with pytest.raises(psycopg.errors.UndefinedColumn):
                c.execute("SELECT nope FROM " + table + " WHERE a = %s /*err*/", [1],
                          prepare=prepare)
        finally:
            c.execute("DROP TABLE %s" % table, prepare=False)
    log = logged(b.stderr, marker="DROP TABLE")
    if fmt == "json":
        q = [dict(stmt=r["statement"], tag=r["tag"], error=r["sqlstate"], protocol=r["protocol"],
                  params=r["parameters"]) for r in json_queries(log)]
    else:
        q = text_queries(log)
    ext = [x for x in q if "/*" in x["stmt"]]
    assert [x["stmt"] for x in ext] == ["SELECT $1::int * 2 AS x /*ext*/"] * 3 + [
        "INSERT INTO %s VALUES ($1), ($2) /*ins*/" % table,
        "SELECT nope FROM %s WHERE a = $1 /*err*/" % table]
    assert all(x["protocol"] == "extended" for x in ext)
    assert [x["tag"] for x in ext] == ["SELECT 1"] * 3 + ["INSERT 0 2", None]
    assert ext[-1]["error"] == "42703"
    assert all(x["params"] is None for x in ext)  # log_parameters is off
    # CREATE and DROP (no parameters, not prepared) went by the simple protocol;
    # psycopg forgets its prepared statements after DDL with DEALLOCATE ALL.
    assert [(x["stmt"], x["protocol"]) for x in q
            if "/*" not in x["stmt"] and x["stmt"] != "DEALLOCATE ALL"] == [
        ("CREATE TABLE %s(a int)" % table, "simple"), ("DROP TABLE %s" % table, "simple")]


def test_session_mode_prepared(berth):
    """Session mode passes named statements through: berth keeps the texts of the
    last few for query lines (a failed prepare too)."""
    b = berth("session", log_level=QUERY)
    with b.connect(prepare_threshold=0) as c:
        for i in range(2):
            for k in range(10):  # more statements than berth keeps texts of
                assert c.execute("SELECT %%s::int + %d /*s%d*/" % (k, k), [i]).fetchone() == (i + k,)
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM no_such_table WHERE a = %s /*bad*/", [1])
    q = text_queries(logged(b.stderr, 21))
    texts = ["SELECT $1::int + %d /*s%d*/" % (k, k) for k in range(10)]
    # The second round finds the texts of the last 8 statements prepared; psycopg's
    # first two (_pg3_0, _pg3_1) were pushed out and are shown by name.
    again = ['(prepared statement "_pg3_0")', '(prepared statement "_pg3_1")'] + texts[2:]
    assert [(x["stmt"], x["tag"] or x["error"]) for x in q] == [
        (t, "SELECT 1") for t in texts + again] + [
        ("SELECT * FROM no_such_table WHERE a = $1 /*bad*/", "42P01")]
    assert all(x["protocol"] == "extended" for x in q)


def test_extended_raw_pipeline(berth):
    """P/B/D/E for three statements then one Sync: one line per Execute in order;
    the second fails at Parse, the third is skipped by the server and not logged.
    Then a pipeline of two Syncs with a named statement executed twice."""
    b = berth(log_level=QUERY, log_parameters=1)
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login(b.user, b.password, b.dbname)
        m = pgwire
        c.send(m.parse_msg("SELECT $1::int AS a /*p1*/") + m.bind_msg(["7"]) +
               m.describe_msg() + m.execute_msg() +
               m.parse_msg("SELEC broken /*p2*/") + m.bind_msg() + m.execute_msg() +
               m.parse_msg("SELECT 3 /*p3*/") + m.bind_msg() + m.execute_msg() + m.sync_msg())
        msgs = c.read_until({b"Z"})
        assert [t for t, _ in msgs] == [b"1", b"2", b"T", b"D", b"C", b"E", b"Z"]
        c.send(m.parse_msg("SELECT $1::text || 'x' /*named*/", name="s1") + m.sync_msg() +
               m.bind_msg(["a"], stmt="s1") + m.execute_msg() +
               m.bind_msg(["b"], stmt="s1") + m.execute_msg() +
               m.parse_msg("") + m.bind_msg() + m.execute_msg() + m.sync_msg())
        msgs = c.read_until({b"Z"})
        msgs += c.read_until({b"Z"})
        assert [t for t, _ in msgs] == [b"1", b"Z", b"2", b"D", b"C", b"2", b"D", b"C", b"1",
                                        b"2", b"I", b"Z"]
    finally:
        c.close()
    q = text_queries(logged(b.stderr, 5))
    assert [(x["stmt"], x["tag"], x["error"], x["params"]) for x in q] == [
        ("SELECT $1::int AS a /*p1*/", "SELECT 1", None, "$1 = '7'"),
        ("SELEC broken /*p2*/", None, "42601", ""),
        ("SELECT $1::text || 'x' /*named*/", "SELECT 1", None, "$1 = 'a'"),
        ("SELECT $1::text || 'x' /*named*/", "SELECT 1", None, "$1 = 'b'"),
        ("", "EMPTY", None, ""),
    ]
    assert all(x["protocol"] == "extended" for x in q)


def test_pipeline_durations_do_not_add_up(berth):
    """In one pipeline a fast statement queued behind pg_sleep is not charged for
    the sleep: its duration counts from the completion of the one before."""
    b = berth(log_level=QUERY)
    c = pgwire.Conn(b.host, b.port)
    try:
        c.login(b.user, b.password, b.dbname)
        m = pgwire
        c.send(m.parse_msg("SELECT pg_sleep(0.3) /*slow*/") + m.bind_msg() + m.execute_msg() +
               m.parse_msg("SELECT 1 /*fast*/") + m.bind_msg() + m.execute_msg() + m.sync_msg())
        c.read_until({b"Z"})
    finally:
        c.close()
    q = text_queries(logged(b.stderr, 2))
    assert [x["stmt"] for x in q] == ["SELECT pg_sleep(0.3) /*slow*/", "SELECT 1 /*fast*/"]
    assert float(q[0]["ms"]) >= 300
    assert float(q[1]["ms"]) < 250


# --- filters and limits --------------------------------------------------------

def test_log_min_duration(berth):
    b = berth(log_level=QUERY, log_min_duration="200ms")
    with b.connect() as c:
        c.execute("SELECT 1 /*quick*/")
        c.execute("SELECT pg_sleep(0.25) /*slow*/")
        c.execute("SELECT %s::int /*quick ext*/", [1])
        c.execute("SELECT pg_sleep(%s) /*slow ext*/", [0.25])
    q = text_queries(logged(b.stderr, 2))
    assert [x["stmt"] for x in q] == ["SELECT pg_sleep(0.25) /*slow*/",
                                      "SELECT pg_sleep($1) /*slow ext*/"]
    assert all(float(x["ms"]) >= 250 for x in q)


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_log_parameters(berth, on):
    b = berth(log_level=QUERY, log_parameters=int(on), log_format="json")
    value = "ParamValue-%d" % os.getpid()
    with b.connect() as c:
        c.execute("SELECT %s::text, %t::int, %s::text, %b::bytea, %b::int /*params*/",
                  [value, 12, None, b"\x00\xff", 258])
    log = logged(b.stderr, 1)
    q = json_queries(log)
    assert len(q) == 1
    if on:
        # text values as literals, binary ones (bytea, psycopg's int2) in hex
        assert q[0]["parameters"] == ("$1 = '%s', $2 = '12', $3 = NULL, $4 = '\\x00ff', "
                                      "$5 = '\\x0102'" % value)
    else:
        assert q[0]["parameters"] is None
        assert value not in log


def test_truncation(berth):
    b = berth(log_level=QUERY, log_query_max_length=40)
    long_sql = "SELECT '" + "x" * 200 + "' /*long*/"
    with b.connect() as c:
        c.execute(long_sql)
        c.execute("SELECT 'short' /*s*/")
        c.execute("SELECT '" + "é" * 30 + "'")  # 2-byte characters: never cut in half
    q = text_queries(logged(b.stderr, 3))
    assert len(q) == 3
    assert q[0]["trunc"] and q[0]["full"] == str(len(long_sql))
    assert q[0]["stmt"] == long_sql[:40]
    assert not q[1]["trunc"] and q[1]["stmt"] == "SELECT 'short' /*s*/"
    assert q[2]["trunc"] and q[2]["stmt"] == "SELECT '" + "é" * 16


def test_truncation_json(berth):
    b = berth(log_level=QUERY, log_query_max_length=10, log_format="json")
    with b.connect() as c:
        c.execute("SELECT 123456789 /*j*/")
    q = json_queries(logged(b.stderr, 1))
    assert q[0]["statement"] == "SELECT 123" and q[0]["truncated"] is True
    assert q[0]["statement_length"] == len("SELECT 123456789 /*j*/")


# --- passwords --------------------------------------------------------------------

def test_password_literals_masked(berth, pg):
    """ALTER ROLE ... PASSWORD in every literal form is logged masked (the role
    gets its own password again, so nothing changes); conftest also scans the
    log for the password."""
    b = berth(log_level=QUERY, log_parameters=1, log_format="json")
    pw = pg.password
    forms = [
        "ALTER ROLE app PASSWORD '%s'" % pw,
        "alter role app with encrypted password E'%s'" % pw,
        "ALTER USER app PASSWORD $pw$%s$pw$" % pw,
        "DO $$BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''%s'''; END$$" % pw,
    ]
    with b.connect() as c:
        for f in forms:
            c.execute(f)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("CREATE ROLE logtest_nobody LOGIN PASSWORD '%s' VALID UNTIL '2100-01-01'"
                      % pw)
        # A parameter cannot carry a utility statement's password, but it must not
        # show up even so.
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("ALTER ROLE app PASSWORD %s", [pw])
    with b.connect() as c:  # the password still works
        assert c.execute("SELECT 1").fetchone() == (1,)
    log = logged(b.stderr, 7)
    assert pw not in log
    q = json_queries(log)
    pw_lines = [r for r in q if "password" in r["statement"].lower()]
    assert [r["statement"] for r in pw_lines] == [
        "ALTER ROLE app PASSWORD '***'",
        "alter role app with encrypted password E'***'",
        "ALTER USER app PASSWORD $pw$***$pw$",
        "DO $$BEGIN EXECUTE 'ALTER ROLE app PASSWORD ''***'''; END$$",
        "CREATE ROLE logtest_nobody LOGIN PASSWORD '***' VALID UNTIL '2100-01-01'",
        "ALTER ROLE app PASSWORD $1",
    ]
    assert [r["sqlstate"] for r in pw_lines] == [None] * 4 + ["42501", "42601"]
    assert pw_lines[-1]["parameters"] == "(hidden: the statement sets a password)"


# --- sinks -------------------------------------------------------------------------

def test_logfile_reopened_on_sighup(berth, tmp_path):
    path = tmp_path / "berth.log"
    b = berth(log_level=QUERY, logfile=str(path))
    with b.connect() as c:
        c.execute("SELECT 1 /*before rotation*/")
        os.rename(path, str(path) + ".1")
        c.execute("SELECT 2 /*after rename*/")  # still into the renamed file
        os.kill(b.pid, signal.SIGHUP)
        assert wait_for(path.exists), "no new log file after SIGHUP"
        c.execute("SELECT 3 /*after sighup*/")
    new = logged(path.read_text, marker="/*after sighup*/")
    old = open(str(path) + ".1").read()
    assert stmts(text_queries(old)) == ["SELECT 1 /*before rotation*/", "SELECT 2 /*after rename*/"]
    assert stmts(text_queries(new)) == ["SELECT 3 /*after sighup*/"]
    # stderr gets every line too
    assert stmts(text_queries(logged(b.stderr, 3))) == ["SELECT 1 /*before rotation*/",
                                               "SELECT 2 /*after rename*/",
                                               "SELECT 3 /*after sighup*/"]


@pytest.mark.timeout(60)
def test_unread_stderr_pipe_never_blocks(pg, tmp_path):
    """stderr is a pipe nobody reads (a container runtime that stopped reading):
    berth keeps answering, drops lines for stderr and counts them; the log file
    gets every line, and at exit the number of dropped lines."""
    port = harness.free_port()
    logfile = tmp_path / "berth.log"
    http_port = harness.free_port()
    env = harness.zero_file_env(pg, port, log_level=QUERY, logfile=str(logfile),
                                log_query_max_length=2000, http_listen="127.0.0.1:%d" % http_port)
    penv = dict(os.environ)
    penv = {k: v for k, v in penv.items() if not k.startswith("BERTH_") or k in
            ("BERTH_BIN", "BERTH_SRCDIR")}
    penv.pop("DATABASE_URL", None)
    penv.update(env)
    rfd, wfd = os.pipe()
    proc = subprocess.Popen([harness.BERTH_BIN], env=penv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=wfd)
    os.close(wfd)
    try:
        harness.wait_port("127.0.0.1", port, 10, proc, "berth")
        n = 600
        filler = "x" * 1500
        t0 = time.monotonic()
        with psycopg.connect(host="127.0.0.1", port=port, user=pg.user, password=pg.password,
                             dbname=pg.dbname, autocommit=True, connect_timeout=10) as c:
            for i in range(n):
                assert c.execute("SELECT %d /*%s*/" % (i, filler)).fetchone() == (i,)
        elapsed = time.monotonic() - t0
        assert elapsed < 30, elapsed
        # ~1 MB of lines against a 64 KiB pipe and berth's 256 KiB ring: most dropped,
        # and /metrics says so.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=10) as r:
            metrics = r.read().decode()
        m = re.search(r"^berth_log_dropped_total (\d+)$", metrics, re.M)
        assert m and int(m.group(1)) > n // 2, metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(rfd)
    text = logfile.read_text()
    assert len(text_queries(text)) == n
    m = re.search(r"WARNING (\d+) log lines were dropped because a log sink could not keep up",
                  text)
    assert m, text[-2000:]
    assert int(m.group(1)) > n // 2
    assert pg.password not in text


def test_reload_applies_log_settings(berth, pg, tmp_path):
    """SIGHUP reloads log_level, log_format and logfile like any other setting."""
    b = berth.file()
    path = tmp_path / "reloaded.log"
    users = os.path.join(b.workdir, "userlist.txt")

    def reload(settings, wait_for_text):
        with open(b.ini_path, "w") as f:
            f.write(harness.make_ini(b.port, dict({"pool_mode": "transaction"}, **settings),
                                     {"app": pg.conninfo()}, users))
        n = b.stderr().count(wait_for_text)
        os.kill(b.pid, signal.SIGHUP)
        assert wait_for(lambda: b.stderr().count(wait_for_text) > n), b.stderr()[-2000:]

    with b.connect() as c:
        c.execute("SELECT 1 /*before*/")
    reload({"log_level": "error,warn,info,query", "log_format": "json", "logfile": str(path)},
           '"msg":"configuration reloaded')
    with b.connect() as c:
        c.execute("SELECT 2 /*json*/")
    reload({"log_level": "error,warn,info"}, "LOG configuration reloaded")
    with b.connect() as c:
        c.execute("SELECT 3 /*after*/")
    err = b.stderr()
    assert "/*before*/" not in err and "/*after*/" not in err
    # Text lines before the first reload and after the second, JSON lines between.
    lines = err.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("{"))
    last = max(i for i, ln in enumerate(lines) if ln.startswith("{"))
    assert lines[last + 1].endswith("LOG configuration reloaded from %s" % b.ini_path)
    q = json_queries("\n".join(lines[first:last + 1]))
    assert [r["statement"] for r in q] == ["SELECT 2 /*json*/"]
    # The log file got the JSON lines from the first reload on, then was closed.
    in_file = json_queries("\n".join(ln for ln in path.read_text().splitlines()
                                     if ln.startswith("{")))
    assert [r["statement"] for r in in_file] == ["SELECT 2 /*json*/"]
    assert "configuration reloaded" not in path.read_text().split("SELECT 2")[1]


def test_console_set_applies_log_settings(berth, pg):
    """SET on the admin console switches query logging and the format at once."""
    b = berth(admin_users=pg.user, log_level="error,warn")
    con = pgwire.Conn(b.host, b.port)
    try:
        con.login(pg.user, pg.password, "berth")
        with b.connect() as c:
            c.execute("SELECT 1 /*off*/")
            for sql in ("SET log_level = 'error,warn,query'", "SET log_format = 'json'"):
                rows, err = con.simple_query(sql)
                assert err is None, err
            c.execute("SELECT 2 /*on*/")
    finally:
        con.close()
    err = logged(b.stderr, marker="/*on*/")
    assert "/*off*/" not in err
    q = json_queries("\n".join(ln for ln in err.splitlines() if ln.startswith("{")))
    assert [r["statement"] for r in q] == ["SELECT 2 /*on*/"]


def test_quiet_option_logs_to_file_only(berth, tmp_path):
    """-q (PgBouncer's): nothing on stderr, the logfile still gets every line."""
    logfile = tmp_path / "quiet.log"
    b = berth(log_level=QUERY + ",info", logfile=str(logfile), start=False)
    b.extra_args = ["-q"]
    b.start()
    with b.connect() as c:
        c.execute("SELECT 7 /*quiet*/")
    assert wait_for(lambda: logfile.exists() and "/*quiet*/" in logfile.read_text())
    assert "listening on" in logfile.read_text()
    b.stop()
    assert b.stderr() == ""


def test_concurrent_clients_every_line_whole(berth, tmp_path):
    """Many clients at once: lines of a loop round are written together, and
    every statement still gets exactly one whole line, in each client's order."""
    import threading
    logfile = tmp_path / "many.log"
    b = berth(log_level=QUERY, logfile=str(logfile), pool_size=4, log_query_max_length=4000)
    clients, per = 16, 40
    errors = []

    def run(k):
        try:
            with b.connect() as c:
                for i in range(per):
                    c.execute("SELECT %d /*c%d-%d*/" % (i, k, i) + " " + "x" * (k * 97))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for text in (logged(logfile.read_text, clients * per), logged(b.stderr, clients * per)):
        q = text_queries(text)
        assert len(q) == clients * per
        for k in range(clients):
            mine = [x["stmt"] for x in q if "/*c%d-" % k in x["stmt"]]
            assert mine == ["SELECT %d /*c%d-%d*/ %s" % (i, k, i, "x" * (k * 97))
                            for i in range(per)]
