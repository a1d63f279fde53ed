"""Configuration: bad files exit 2 naming file, line and key; environment
overrides the file; zero-file mode settings."""

import os
import subprocess

import pytest

import harness
from harness import free_port


def run_berth(args, env=None, timeout=15):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("BERTH_") and k != "DATABASE_URL"}
    e.update(env or {})
    return subprocess.run([harness.BERTH_BIN] + args, env=e, capture_output=True, text=True,
                          timeout=timeout)


BAD = [
    ("pool_mode", "pool_mode = sometimes"),
    ("default_pool_size", "default_pool_size = lots"),
    ("max_client_conn", "max_client_conn = -5"),
    ("no_such_setting", "no_such_setting = 1"),
    ("query_wait_timeout", "query_wait_timeout = soon"),
]


@pytest.mark.parametrize("key,line", BAD, ids=[k for k, _ in BAD])
def test_bad_config_file(tmp_path, pg, key, line):
    ini = tmp_path / "bad.ini"
    text = ("[databases]\napp = %s\n\n[berth]\nlisten_addr = 127.0.0.1\nlisten_port = %d\n%s\n"
            % (pg.conninfo(), free_port(), line))
    ini.write_text(text)
    lineno = text.splitlines().index(line) + 1
    r = run_berth([str(ini)])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert str(ini) in r.stderr or "bad.ini" in r.stderr, r.stderr
    assert str(lineno) in r.stderr, r.stderr
    assert key in r.stderr, r.stderr
    assert pg.password not in r.stderr + r.stdout


def test_bad_database_entry(tmp_path, pg):
    ini = tmp_path / "baddb.ini"
    ini.write_text("[berth]\nlisten_port = %d\n[databases]\napp = hostt=nowhere port=x\n"
                   % free_port())
    r = run_berth([str(ini)])
    assert r.returncode == 2, r.stderr
    assert "baddb.ini" in r.stderr and "4" in r.stderr and "app" in r.stderr


def test_missing_config_file(tmp_path):
    r = run_berth([str(tmp_path / "nope.ini")])
    assert r.returncode == 2
    assert "nope.ini" in r.stderr


def test_bad_environment_setting(pg):
    r = run_berth([], env={"DATABASE_URL": pg.url(), "BERTH_POOL_MODE": "sometimes",
                           "BERTH_LISTEN": "127.0.0.1:%d" % free_port()})
    assert r.returncode == 2
    assert "BERTH_POOL_MODE" in r.stderr or "pool_mode" in r.stderr
    assert pg.password not in r.stderr + r.stdout


def test_bad_database_url(pg):
    r = run_berth([], env={"DATABASE_URL": "mysql://app:Sekr1tPass@127.0.0.1/app",
                           "BERTH_LISTEN": "127.0.0.1:%d" % free_port()})
    assert r.returncode == 2
    assert "DATABASE_URL" in r.stderr
    assert "Sekr1tPass" not in r.stderr + r.stdout


def test_environment_overrides_file(berth, pg):
    """File says session mode with one server; BERTH_POOL_MODE says transaction:
    two idle clients then share the one server."""
    b = berth.file(settings={"pool_mode": "session", "default_pool_size": 1,
                             "query_wait_timeout": 2},
                   env={"BERTH_POOL_MODE": "transaction"})
    with b.connect() as c1, b.connect() as c2:
        p1 = c1.execute("SELECT pg_backend_pid()").fetchone()[0]
        p2 = c2.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert p1 == p2


def test_zero_file_pool_size_and_listen(berth, pg):
    b = berth("transaction", pool_size=1)
    with b.connect() as c1, b.connect() as c2:
        assert c1.execute("SELECT pg_backend_pid()").fetchone() == \
            c2.execute("SELECT pg_backend_pid()").fetchone()
    assert pg.server_conns("app") == 1


def test_password_not_logged_at_info(berth, pg):
    """With info logging and some failed logins, DATABASE_URL's password is
    nowhere in stderr (the berth fixture also checks this after every test)."""
    b = berth("transaction", pool_size=1, log_level="error,warn,info,debug",
              log_connections=1)
    with b.connect() as c:
        c.execute("SELECT 1")
    for pw in ("wrong", pg.password + "x"):
        try:
            b.connect(password=pw).close()
        except Exception:  # noqa: BLE001
            pass
    b.stop()
    assert pg.password not in b.stderr()


def test_prisma_database_url_parameters(berth, pg):
    """The DATABASE_URL a Prisma app used, handed to its berth sidecar as is:
    Prisma's own parameters (schema, connection_limit, pgbouncer, pool_timeout,
    ...) are dropped with a warning naming them, libpq's (sslmode,
    connect_timeout) kept, and clients get through."""
    b = berth("transaction", start=False)
    b.env["DATABASE_URL"] = pg.url() + ("?schema=public&connection_limit=5&pgbouncer=true"
                                        "&pool_timeout=10&statement_cache_size=0"
                                        "&sslmode=disable&connect_timeout=5")
    b.start()
    with b.connect() as c:
        assert c.execute("SELECT current_user, inet_server_port()").fetchone() == \
            ("app", pg.port)
        assert c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                         ).fetchone()[0] is False  # sslmode=disable reached libpq
    err = b.stderr()
    assert ("DATABASE_URL: Prisma's URL parameters are ignored (they configure Prisma, not "
            "the connection): schema, connection_limit, pgbouncer, pool_timeout, "
            "statement_cache_size") in err, err
    assert pg.password not in err
    # Only a URL's Prisma parameters are forgiven: a typo still stops the start.
    r = run_berth([], env={"DATABASE_URL": pg.url() + "?schema=public&shcema=x",
                           "BERTH_LISTEN": "127.0.0.1:%d" % free_port()})
    assert r.returncode == 2 and 'unknown connection option "shcema"' in r.stderr
