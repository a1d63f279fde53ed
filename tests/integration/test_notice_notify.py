"""NoticeResponse and NotificationResponse pass through berth."""

import time

import pytest


def test_notice(berth, pool_mode):
    b = berth(pool_mode, pool_size=2)
    with b.connect() as c:
        notices = []
        c.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.sqlstate,
                                                       d.message_primary)))
        c.execute("DO $$BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END$$")
        assert ("NOTICE", "00000", "hello 42") in notices
        assert ("WARNING", "01000", "careful") in notices
        # notices in the middle of a result
        rows = c.execute("SELECT g FROM generate_series(1, 3) g").fetchall()
        assert rows == [(1,), (2,), (3,)]


def test_notice_inside_transaction(berth):
    b = berth("transaction", pool_size=1)
    with b.connect() as c:
        notices = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        c.execute("BEGIN")
        c.execute("DO $$BEGIN RAISE NOTICE 'in txn'; END$$")
        c.execute("COMMIT")
        c.execute("COMMIT")  # WARNING: there is no transaction in progress
        assert "in txn" in notices
        assert any("no transaction in progress" in n for n in notices)


@pytest.mark.timeout(30)
def test_listen_notify_session_mode(berth):
    b = berth("session", pool_size=3)
    with b.connect() as listener, b.connect() as sender:
        got = []
        listener.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        listener.execute("LISTEN berth_chan")
        sender.execute("NOTIFY berth_chan, 'payload-1'")
        sender.execute("SELECT pg_notify('berth_chan', 'payload-2')")
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            listener.execute("SELECT 1")  # notifications arrive with the next answer
            time.sleep(0.05)
        assert got == [("berth_chan", "payload-1"), ("berth_chan", "payload-2")]


@pytest.mark.timeout(30)
def test_notify_arrives_while_idle_session_mode(berth):
    """An asynchronous NotificationResponse reaches an idle client without it
    sending anything (psycopg's notifies() generator reads the socket)."""
    b = berth("session", pool_size=3)
    with b.connect() as listener, b.connect() as sender:
        listener.execute("LISTEN idle_chan")
        sender.execute("NOTIFY idle_chan, 'wake'")
        gen = listener.notifies()
        n = next(gen)
        gen.close()
        assert (n.channel, n.payload) == ("idle_chan", "wake")
