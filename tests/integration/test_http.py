"""HTTP endpoints (http_listen): /health, /ready following the upstream by
itself (pg_private is stopped and started), /metrics parsed strictly as
Prometheus text format 0.0.4 and following the traffic the tests send, the
health checks' backoff, 404/405, /ready during a graceful shutdown, no secret
in any output, and every metric the Grafana dashboard queries is exported."""

import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import time

import psycopg
import pytest

import harness
from harness import free_port, wait_port

DASHBOARD = os.path.join(harness.SRCDIR, "doc", "grafana", "berth.json")


# --- helpers ------------------------------------------------------------------

def start(berth, pool_mode="transaction", **settings):
    """berth in zero-file mode with the HTTP endpoints on a port of their own."""
    hp = free_port()
    b = berth(pool_mode, http_listen="127.0.0.1:%d" % hp, **settings)
    wait_port("127.0.0.1", hp, 10, b.proc, "berth's HTTP listener")
    b.http_port = hp
    return b


def get(b, path, method="GET"):
    """(status, headers dict with lower-case names, body text)."""
    c = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read().decode()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def wait_ready(b, want, timeout):
    """Poll /ready until its status is want; returns (status, body) and the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        st, _h, body = get(b, "/ready")
        last = (st, body)
        if st == want:
            return last, time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError("/ready did not answer %d within %ss; last: %r" % (want, timeout, last))


def assert_no_secret(text):
    for s in harness.SECRETS:
        assert s not in text, "a password appears in HTTP output"


# --- a strict parser of the Prometheus text format 0.0.4 ------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
SAMPLE = re.compile(r"^(%s)(\{(.*)\})? (\S+)$" % NAME)
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def parse_labels(s):
    """Label pairs name="value" with \\\\, \\" and \\n escapes, comma separated."""
    labels, i = {}, 0
    while i < len(s):
        m = re.compile(r"(%s)=\"" % LABEL).match(s, i)
        assert m, "bad label at %r" % s[i:]
        name, i, val = m.group(1), m.end(), []
        while True:
            assert i < len(s), "unterminated label value in %r" % s
            ch = s[i]
            if ch == "\\":
                nxt = s[i + 1]
                assert nxt in "\\\"n", "bad escape \\%s in %r" % (nxt, s)
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif ch == '"':
                i += 1
                break
            else:
                assert ch != "\n"
                val.append(ch)
                i += 1
        assert name not in labels, "label %s twice" % name
        labels[name] = "".join(val)
        if i < len(s):
            assert s[i] == ",", "expected , at %r" % s[i:]
            i += 1
    return labels


def parse_value(v):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.match(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$", v), "bad value %r" % v
    return float(v)


class Metrics:
    """families: name -> {"type", "help", "samples": [(sample name, labels, value)]}."""

    def __init__(self, text):
        assert text.endswith("\n"), "exposition must end with a newline"
        self.families = {}
        current = None
        closed = set()  # families whose samples ended: they must not come back
        for line in text.split("\n")[:-1]:
            assert line == line.strip() and line, "blank or padded line %r" % line
            if line.startswith("#"):
                m = re.match(r"^# (HELP|TYPE) (%s) (.+)$" % NAME, line)
                assert m, "bad comment line %r" % line
                kind, name, rest = m.groups()
                f = self.families.setdefault(name, {"type": None, "help": None, "samples": []})
                assert not f["samples"], "%s after samples of %s" % (kind, name)
                if kind == "TYPE":
                    assert f["type"] is None, "two TYPE lines for %s" % name
                    assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), rest
                    f["type"] = rest
                else:
                    assert f["help"] is None, "two HELP lines for %s" % name
                    f["help"] = rest
                if current and current != name:
                    closed.add(current)
                current = name
                continue
            m = SAMPLE.match(line)
            assert m, "bad sample line %r" % line
            sname, _braces, labels, value = m.groups()
            fam = self.family_of(sname)
            assert fam is not None, "sample %s has no TYPE" % sname
            assert fam not in closed and fam == current, \
                "samples of %s are not together under its TYPE" % fam
            self.families[fam]["samples"].append(
                (sname, parse_labels(labels or ""), parse_value(value)))
        self.check()

    def family_of(self, sname):
        f = self.families.get(sname)
        if f and f["type"]:
            return sname
        for suf in HIST_SUFFIXES:
            if sname.endswith(suf):
                base = sname[:-len(suf)]
                f = self.families.get(base)
                if f and f["type"] == "histogram":
                    return base
        return None

    def check(self):
        for name, f in self.families.items():
            assert f["type"], "%s has HELP but no TYPE" % name
            seen = set()
            for sname, labels, value in f["samples"]:
                key = (sname, tuple(sorted(labels.items())))
                assert key not in seen, "duplicate series %r" % (key,)
                seen.add(key)
                assert not math.isnan(value), "%s is NaN" % sname
            if f["type"] == "counter":
                assert name.endswith("_total"), "counter %s lacks _total" % name
                for sname, _labels, value in f["samples"]:
                    assert sname == name and value >= 0, (sname, value)
            if f["type"] == "histogram":
                self.check_histogram(name, f["samples"])

    @staticmethod
    def check_histogram(name, samples):
        series = {}
        for sname, labels, value in samples:
            assert sname in (name + s for s in HIST_SUFFIXES), sname
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if sname.endswith("_bucket"):
                s["buckets"].append((parse_value(labels["le"]), value))
            elif sname.endswith("_sum"):
                s["sum"] = value
            else:
                s["count"] = value
        for rest, s in series.items():
            b = s["buckets"]
            assert b and b[-1][0] == math.inf, "%s%r: buckets do not end in +Inf" % (name, rest)
            bounds = [le for le, _ in b]
            assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), bounds
            counts = [c for _, c in b]
            assert counts == sorted(counts), "%s%r: buckets not cumulative: %r" % (name, rest, counts)
            assert s["count"] == counts[-1], "%s%r: _count != +Inf bucket" % (name, rest)
            assert s["sum"] is not None and s["sum"] >= 0

    def value(self, name, **labels):
        fam = self.family_of(name)
        assert fam, "no family for %s" % name
        for sname, ls, v in self.families[fam]["samples"]:
            if sname == name and all(ls.get(k) == str(val) for k, val in labels.items()):
                return v
        raise KeyError("%s%r not exported" % (name, labels))

    def names_with_samples(self):
        return {n for n, f in self.families.items() if f["samples"]}


def scrape(b):
    st, h, body = get(b, "/metrics")
    assert st == 200, (st, body)
    assert h["content-type"].startswith("text/plain; version=0.0.4"), h["content-type"]
    assert_no_secret(body)
    return Metrics(body)


# --- tests ------------------------------------------------------------------------

@pytest.fixture
def upstream(pg_private):
    """pg_private, guaranteed running again after the test."""
    yield pg_private
    if not pg_private.running:
        pg_private.start()


@pytest.mark.timeout(60)
def test_ready_follows_upstream_by_itself(berth, upstream):
    b = start(berth, pg=upstream, health_check_period=0.5, health_check_timeout=1,
              health_check_backoff_max=1)
    st, h, body = get(b, "/health")
    assert (st, body) == (200, "ok\n")
    assert h["content-type"].startswith("text/plain")
    (st, body), _ = wait_ready(b, 200, 10)
    assert json.loads(body) == {"ready": True}
    assert scrape(b).value("berth_upstream_up", database="app") == 1

    upstream.stop("fast")
    (st, body), took = wait_ready(b, 503, 10)
    assert took < 3, "down noticed after %.1fs (period 0.5 s)" % took
    doc = json.loads(body)
    assert doc["ready"] is False
    assert doc["reason"].startswith("upstream down: app: "), doc
    assert_no_secret(body)
    assert get(b, "/health")[0] == 200  # the process still serves
    m = scrape(b)
    assert m.value("berth_upstream_up", database="app") == 0
    assert m.value("berth_upstream_check_failures_total", database="app") >= 1

    upstream.start()
    (st, body), took = wait_ready(b, 200, 10)
    assert took < 5, "recovered after %.1fs (backoff max 1 s)" % took
    assert json.loads(body) == {"ready": True}
    assert scrape(b).value("berth_upstream_up", database="app") == 1
    assert "upstream app is down" in b.stderr()


@pytest.mark.timeout(60)
def test_checks_back_off_while_down(berth, upstream):
    """With the upstream stopped, checks slow down (0.25 s doubling, jittered, up to
    backoff_max) instead of running every health_check_period."""
    b = start(berth, pg=upstream, health_check_period=0.2, health_check_backoff_max=2)
    wait_ready(b, 200, 10)
    upstream.stop("fast")
    wait_ready(b, 503, 10)
    f0 = scrape(b).value("berth_upstream_check_failures_total", database="app")
    time.sleep(4)
    f1 = scrape(b).value("berth_upstream_check_failures_total", database="app")
    # delays after failure n: [0.125,0.25], [0.25,0.5], [0.5,1], [1,2], [1,2]...: 3 to 7 in 4 s;
    # a check every period would make 20
    assert 3 <= f1 - f0 <= 8, "%d failed checks in 4 s" % (f1 - f0)
    upstream.start()
    wait_ready(b, 200, 10)


@pytest.mark.timeout(60)
def test_metrics_follow_traffic(berth, pg):
    b = start(berth, pool_size=3)
    with b.connect() as c:
        c.execute("SELECT 1")
        m0 = scrape(b)
        n = 7
        for i in range(n):
            assert c.execute("SELECT %s::int", [i]).fetchone() == (i,)
        m1 = scrape(b)
        pool = dict(database="app", user="app")
        assert m1.value("berth_queries_total", **pool) - m0.value("berth_queries_total", **pool) == n
        assert m1.value("berth_transactions_total", **pool) - \
            m0.value("berth_transactions_total", **pool) == n
        assert m1.value("berth_query_duration_seconds_count", **pool) - \
            m0.value("berth_query_duration_seconds_count", **pool) == n
        assert m1.value("berth_query_duration_seconds_sum", **pool) > \
            m0.value("berth_query_duration_seconds_sum", **pool)
        assert m1.value("berth_client_wait_seconds_count", **pool) >= \
            m0.value("berth_client_wait_seconds_count", **pool)
        assert m1.value("berth_received_bytes_total", **pool) > \
            m0.value("berth_received_bytes_total", **pool)
        assert m1.value("berth_sent_bytes_total", **pool) > m0.value("berth_sent_bytes_total", **pool)
        # one client, idle between transactions; its server back in the pool
        assert m1.value("berth_clients", state="idle", **pool) == 1
        assert m1.value("berth_clients", state="active", **pool) == 0
        assert m1.value("berth_clients", state="waiting", **pool) == 0
        assert m1.value("berth_servers", state="idle", **pool) == 1
        assert m1.value("berth_servers", state="active", **pool) == 0
        assert m1.value("berth_pool_size", **pool) == 3
        assert m1.value("berth_server_connects_total") >= 1
        for _ in range(3):  # a client per request, as serverless functions do
            with b.connect() as one:
                one.execute("SELECT 1")
        assert scrape(b).value("berth_client_logins_total", **pool) - \
            m1.value("berth_client_logins_total", **pool) == 3

        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0")
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM no_such_table_here")
        m2 = scrape(b)
        errs = {labels["class"]: v for s, labels, v in m2.families["berth_errors_total"]["samples"]
                if labels["database"] == "app" and labels["user"] == "app"}
        assert errs.get("22") == 1 and errs.get("42") == 1, errs

        # a second client shows up while it is open, and in the accepted count
        with b.connect() as c2:
            c2.execute("SELECT 1")
            m3 = scrape(b)
            assert m3.value("berth_clients", state="idle", **pool) == 2
            assert m3.value("berth_clients_accepted_total") >= \
                m0.value("berth_clients_accepted_total") + 1
    assert m3.value("berth_up") == 1
    assert m3.value("berth_shutting_down") == 0
    assert m3.value("berth_build_info", version=m3.families["berth_build_info"]["samples"][0][1][
        "version"]) == 1
    assert m3.value("berth_log_dropped_total") == 0
    assert m3.value("berth_upstream_check_duration_seconds", database="app") > 0


@pytest.mark.timeout(30)
def test_label_values_are_escaped(berth, pg):
    """A database name with a quote and a backslash still gives valid text."""
    odd = 'odd"n\\ame'
    hp = free_port()
    b = berth.file(settings={"http_listen": "127.0.0.1:%d" % hp},
                   databases={"app": pg.conninfo(),
                              '"%s"' % odd.replace('"', '""'): pg.conninfo()})  # quoted INI name
    wait_port("127.0.0.1", hp, 10, b.proc, "berth's HTTP listener")
    b.http_port = hp
    wait_ready(b, 200, 10)
    m = scrape(b)
    assert m.value("berth_upstream_up", database=odd) == 1
    assert 'database="odd\\"n\\\\ame"' in get(b, "/metrics")[2]


@pytest.mark.timeout(30)
def test_reload_adds_and_drops_checked_databases(berth, pg):
    """SIGHUP: a new [databases] entry is checked at once, a removed one is no longer
    reported, and the others stay up."""
    hp = free_port()
    b = berth.file(settings={"http_listen": "127.0.0.1:%d" % hp},
                   databases={"app": pg.conninfo(), "old": pg.conninfo()})
    wait_port("127.0.0.1", hp, 10, b.proc, "berth's HTTP listener")
    b.http_port = hp
    wait_ready(b, 200, 10)
    with open(b.ini_path) as f:
        ini = f.read()
    ini = ini.replace("old = ", "new = ")
    with open(b.ini_path, "w") as f:
        f.write(ini)
    os.kill(b.pid, signal.SIGHUP)
    deadline = time.monotonic() + 3  # the next periodic check is 5 s away: the reload did it
    while True:
        m = scrape(b)
        ups = {labels["database"]: v for _s, labels, v in m.families["berth_upstream_up"]["samples"]}
        if ups == {"app": 1, "new": 1} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert ups == {"app": 1, "new": 1}, ups
    assert "configuration reloaded" in b.stderr()


@pytest.mark.timeout(30)
def test_not_found_and_method_not_allowed(berth, pg):
    b = start(berth)
    for path in ("/", "/nope", "/metrics/x", "/healthz"):
        assert get(b, path)[0] == 404, path
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for path in ("/health", "/ready", "/metrics"):
            st, h, _ = get(b, path, method)
            assert st == 405, (method, path, st)
            assert h.get("allow") == "GET, HEAD"
    st, h, body = get(b, "/health", "HEAD")
    assert st == 200 and body == ""
    # a query string does not change the path
    assert get(b, "/health?verbose=1")[:3:2] == (200, "ok\n")
    assert b.alive()


@pytest.mark.timeout(30)
def test_no_secret_in_outputs(berth, pg):
    """Neither /metrics nor /ready (up, or down with an authentication error that
    libpq reports) shows a password."""
    b = start(berth)
    wait_ready(b, 200, 10)
    assert_no_secret(get(b, "/metrics")[2])
    assert_no_secret(get(b, "/ready")[2])
    # a wrong password for the health check's login: the error text names the user only
    wrong = "Wrong" + pg.password[::-1]
    harness.SECRETS.add(wrong)
    hp = free_port()
    b2 = berth.file(settings={"http_listen": "127.0.0.1:%d" % hp},
                    databases={"app": pg.conninfo(password=wrong)})
    wait_port("127.0.0.1", hp, 10, b2.proc, "berth's HTTP listener")
    b2.http_port = hp
    deadline = time.monotonic() + 10
    while True:  # 503 "not checked yet" comes first; wait for the check's verdict
        st, _h, body = get(b2, "/ready")
        if "upstream down" in body or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert st == 503
    assert "upstream down: app:" in json.loads(body)["reason"]
    assert "password authentication failed" in body
    assert_no_secret(body)
    assert_no_secret(get(b2, "/metrics")[2])


@pytest.mark.timeout(30)
def test_ready_says_shutting_down_during_graceful_shutdown(berth, pg):
    b = start(berth, shutdown_timeout=20)
    wait_ready(b, 200, 10)
    with b.connect() as c:
        c.execute("SELECT 1")
        b.proc.send_signal(signal.SIGTERM)  # waits for this client to leave
        (st, body), _ = wait_ready(b, 503, 5)
        assert json.loads(body) == {"ready": False, "reason": "shutting down"}
        assert get(b, "/health")[:3:2] == (200, "ok\n")
        assert scrape(b).value("berth_shutting_down") == 1
        assert c.execute("SELECT 2").fetchone() == (2,)  # the client is still served
    b.proc.wait(10)  # its leaving ends the wait
    assert b.proc.returncode == 0


@pytest.mark.timeout(30)
def test_dashboard_metrics_are_exported(berth, pg):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["schemaVersion"] >= 36
    assert any(i["name"] == "DS_PROMETHEUS" for i in dash["__inputs"])

    exprs = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
                exprs.append(t["expr"])
    walk(dash["panels"])
    for v in dash["templating"]["list"]:
        exprs.append(v["query"]["query"] if isinstance(v["query"], dict) else v["query"])
    names = set()
    for e in exprs:
        for n in re.findall(r"\bberth_[a-z0-9_]+", e):
            for suf in HIST_SUFFIXES:
                if n.endswith(suf):
                    n = n[:-len(suf)]
            names.add(n)
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for want in ("clients per pool", "servers per pool", "transactions, queries and client logins",
                 "client wait", "query duration", "upstream health", "sqlstate", "log lines dropped"):
        assert want in titles, want
    assert len(names) >= 15, names

    b = start(berth)
    wait_ready(b, 200, 10)
    with b.connect() as c:
        c.execute("SELECT 1")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0")  # so berth_errors_total has a sample
    m = scrape(b)
    missing = sorted(n for n in names if n not in m.names_with_samples())
    assert not missing, "dashboard queries metrics /metrics does not export: %s" % missing


def test_parser_is_strict():
    """The parser above refuses what Prometheus would (so the /metrics checks can fail)."""
    good = ("# HELP h_seconds x\n# TYPE h_seconds histogram\n"
            'h_seconds_bucket{a="1",le="0.1"} 1\nh_seconds_bucket{a="1",le="+Inf"} 2\n'
            'h_seconds_sum{a="1"} 0.5\nh_seconds_count{a="1"} 2\n'
            "# TYPE c_total counter\nc_total 3\n")
    Metrics(good)
    bad = [
        "c_total 3\n",                                                   # no TYPE
        "# TYPE c_total counter\nc_total -1\n",                          # negative counter
        "# TYPE c counter\nc 1\n",                                       # counter without _total
        "# TYPE g gauge\ng{a=\"x\"} 1\ng{a=\"x\"} 2\n",                  # duplicate series
        "# TYPE g gauge\ng{a=\"x\\q\"} 1\n",                             # bad escape
        "# TYPE g gauge\ng{a=x} 1\n",                                    # unquoted value
        "# TYPE g gauge\ng 1",                                           # no final newline
        "# TYPE g gauge\n# TYPE k gauge\nk 1\ng 1\n",                    # family split
        good.replace('le="0.1"} 1', 'le="0.1"} 3'),                      # not cumulative
        good.replace('le="+Inf"', 'le="1"'),                             # no +Inf
        good.replace("h_seconds_count{a=\"1\"} 2", "h_seconds_count{a=\"1\"} 5"),  # _count
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            Metrics(text)


@pytest.mark.timeout(30)
def test_http_listen_in_use_fails_start(berth, pg):
    """A taken http_listen port stops berth at start with status 1 and says why."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        taken = s.getsockname()[1]
        b = berth("transaction", http_listen="127.0.0.1:%d" % taken, start=False)
        r = subprocess.run([harness.BERTH_BIN], env=b.env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=20, cwd=b.workdir)
    assert r.returncode == 1, r
    err = r.stderr.decode()
    assert "http_listen 127.0.0.1:%d" % taken in err, err
    assert_no_secret(err)
