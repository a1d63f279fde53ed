"""pgbench through berth in transaction mode, simple and extended protocol."""

import re
import subprocess

import pytest

from harness import PG_BIN


@pytest.fixture(scope="module")
def pgbench_db(pg):
    env = {"PGPASSWORD": pg.password, "PATH": "/usr/bin:/bin"}
    r = subprocess.run([PG_BIN + "/pgbench", "-i", "-s", "1", "-q", "-h", pg.host, "-p",
                        str(pg.port), "-U", "app", "app"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return pg


@pytest.mark.timeout(120)
@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_pgbench(berth, pgbench_db, protocol):
    b = berth("transaction", pool_size=5)
    clients, per_client = 10, 300
    r = subprocess.run([PG_BIN + "/pgbench", "-n", "-M", protocol, "-c", str(clients), "-j", "2",
                        "-t", str(per_client), "-h", b.host, "-p", str(b.port), "-U", "app",
                        "app"], env=b.libpq_env(), capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    total = clients * per_client
    assert re.search(r"number of transactions actually processed: %d/%d" % (total, total),
                     r.stdout), r.stdout
    m = re.search(r"number of failed transactions: (\d+)", r.stdout)
    assert m and m.group(1) == "0", r.stdout
    assert "error" not in r.stderr.lower(), r.stderr
    assert pgbench_db.server_conns("app") <= 5


@pytest.mark.timeout(120)
def test_pgbench_select_only_connect_per_transaction(berth, pgbench_db):
    """-C: a new connection per transaction, the serverless pattern."""
    b = berth("transaction", pool_size=3)
    r = subprocess.run([PG_BIN + "/pgbench", "-n", "-S", "-C", "-c", "4", "-j", "2", "-t", "100",
                        "-h", b.host, "-p", str(b.port), "-U", "app", "app"],
                       env=b.libpq_env(), capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "actually processed: 400/400" in r.stdout, r.stdout
