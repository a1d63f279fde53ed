"""pgwire.py - a tiny raw PostgreSQL protocol 3 client for the integration tests.

Used where a driver hides what we need to see: the single-byte answer to
SSLRequest/GSSENCRequest, NegotiateProtocolVersion, odd startup packets,
CancelRequest with a chosen key, and a client that stops reading.
It speaks just enough: startup, cleartext/md5/SCRAM-SHA-256 login, simple
and extended query messages, and message reading.
"""

import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTO_30 = 3 << 16
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


class ProtocolError(Exception):
    pass


def startup_packet(params, version=PROTO_30):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def cancel_packet(pid, key):
    return struct.pack("!IIII", 16, CANCEL_REQUEST, pid, key)


def msg(tag, payload=b""):
    return tag + struct.pack("!I", len(payload) + 4) + payload


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def query_msg(sql):
    return msg(b"Q", cstr(sql))


def parse_msg(sql, name="", param_oids=()):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack("!H", len(param_oids))
               + b"".join(struct.pack("!I", o) for o in param_oids))


def bind_msg(params=(), portal="", stmt="", result_format=0):
    """params: list of bytes/str/None (text format)."""
    p = cstr(portal) + cstr(stmt) + struct.pack("!HH", 0, len(params))
    for v in params:
        if v is None:
            p += struct.pack("!i", -1)
        else:
            b = v.encode() if isinstance(v, str) else v
            p += struct.pack("!i", len(b)) + b
    p += struct.pack("!HH", 1, result_format)
    return msg(b"B", p)


def describe_msg(kind=b"P", name=""):
    return msg(b"D", kind + cstr(name))


def execute_msg(portal="", max_rows=0):
    return msg(b"E", cstr(portal) + struct.pack("!I", max_rows))


def sync_msg():
    return msg(b"S")


def flush_msg():
    return msg(b"H")


def terminate_msg():
    return msg(b"X")


def parse_error_fields(payload):
    """ErrorResponse / NoticeResponse payload -> {field_char: str}."""
    out = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode(errors="replace")
    return out


class Conn:
    """A raw socket speaking the protocol; messages are (tag bytes, payload bytes)."""

    def __init__(self, host, port, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.params = {}
        self.backend_key = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise EOFError("connection closed by peer after %d of %d bytes"
                               % (len(self.buf), n))
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_byte(self):
        return self.recv_exact(1)

    def read_msg(self):
        hdr = self.recv_exact(5)
        tag = hdr[:1]
        (length,) = struct.unpack("!I", hdr[1:])
        if length < 4:
            raise ProtocolError("bad message length %d" % length)
        return tag, self.recv_exact(length - 4)

    def read_until(self, tags, limit=100000):
        """Read messages until one whose tag is in tags; returns all read."""
        out = []
        for _ in range(limit):
            t, p = self.read_msg()
            out.append((t, p))
            if t in tags:
                return out
        raise ProtocolError("no %r within %d messages" % (tags, limit))

    def is_closed(self, timeout=5.0):
        """True if the peer closes within timeout (reading and discarding anything sent)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        return False

    # --- login -----------------------------------------------------------

    def startup(self, params, version=PROTO_30):
        self.send(startup_packet(params, version))

    def login(self, user, password, database, extra=None, version=PROTO_30, scram_as=None):
        """Full login; returns the list of messages before ReadyForQuery
        (inclusive). Raises ProtocolError carrying the error fields on an
        ErrorResponse."""
        params = {"user": user, "database": database}
        params.update(extra or {})
        self.startup(params, version)
        return self.finish_login(user, password, scram_as)

    def finish_login(self, user, password, scram_as=None):
        """scram_as: (mechanism, gs2 header, binding data) for SCRAM; default
        SCRAM-SHA-256 without channel binding. self.sasl_mechanisms: what was offered."""
        mech, gs2, cbind = scram_as or ("SCRAM-SHA-256", "n,,", b"")
        seen = []
        scram = None
        while True:
            t, p = self.read_msg()
            seen.append((t, p))
            if t == b"E":
                e = ProtocolError("login failed: %r" % parse_error_fields(p))
                e.fields = parse_error_fields(p)
                e.messages = seen
                raise e
            if t == b"R":
                (code,) = struct.unpack("!I", p[:4])
                if code == 0:
                    continue
                if code == 3:
                    self.send(msg(b"p", cstr(password)))
                elif code == 5:
                    salt = p[4:8]
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send(msg(b"p", cstr("md5" + outer)))
                elif code == 10:
                    mechs = [m for m in p[4:].split(b"\0") if m]
                    self.sasl_mechanisms = [m.decode() for m in mechs]
                    if b"SCRAM-SHA-256" not in mechs:
                        raise ProtocolError("no SCRAM-SHA-256 in %r" % mechs)
                    scram = ScramClient(password, gs2, cbind)
                    first = scram.client_first()
                    self.send(msg(b"p", cstr(mech) + struct.pack("!i", len(first)) + first))
                elif code == 11:
                    self.send(msg(b"p", scram.client_final(p[4:])))
                elif code == 12:
                    scram.verify_server_final(p[4:])
                else:
                    raise ProtocolError("unsupported auth request %d" % code)
            elif t == b"S":
                k, v = p.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
            elif t == b"K":
                self.backend_key = struct.unpack("!II", p[:8])
            elif t == b"Z":
                return seen

    def simple_query(self, sql):
        """Run one simple query; returns (rows as list of lists of str/None, error fields or None)."""
        self.send(query_msg(sql))
        rows, err = [], None
        while True:
            try:
                t, p = self.read_msg()
            except EOFError:
                if err is not None:  # a FATAL error, then the connection closed
                    return rows, err
                raise
            if t == b"D":
                rows.append(parse_data_row(p))
            elif t == b"E":
                err = parse_error_fields(p)
            elif t == b"Z":
                return rows, err


def parse_data_row(p):
    (n,) = struct.unpack("!H", p[:2])
    off, vals = 2, []
    for _ in range(n):
        (ln,) = struct.unpack("!i", p[off:off + 4])
        off += 4
        if ln < 0:
            vals.append(None)
        else:
            vals.append(p[off:off + ln].decode())
            off += ln
    return vals


class ScramClient:
    """gs2 is the client-first's gs2 header ("n,,", "y,,", "p=tls-server-end-point,,");
    cbind the channel-binding data its client-final signs after it (with "p")."""
    def __init__(self, password, gs2="n,,", cbind=b""):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = "n=,r=" + self.nonce
        self.gs2 = gs2
        self.cbind = cbind

    def client_first(self):
        return (self.gs2 + self.first_bare).encode()

    def client_final(self, server_first):
        sf = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise ProtocolError("server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        iters = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        c = base64.b64encode(self.gs2.encode() + self.cbind).decode()
        final_wo_proof = "c=" + c + ",r=" + attrs["r"]
        auth_msg = ",".join([self.first_bare, sf, final_wo_proof]).encode()
        sig = hmac.new(stored_key, auth_msg, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.expected_server_sig = base64.b64encode(
            hmac.new(server_key, auth_msg, "sha256").digest()).decode()
        return (final_wo_proof + ",p=" + base64.b64encode(proof).decode()).encode()

    def verify_server_final(self, data):
        attrs = dict(kv.split("=", 1) for kv in data.decode().split(","))
        if attrs.get("v") != self.expected_server_sig:
            raise ProtocolError("bad SCRAM server signature")


def scram_verifier(password, iterations=4096, salt=None):
    """A PostgreSQL-format SCRAM-SHA-256 verifier, as stored in pg_authid/userlist.txt."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored_key), b64(server_key))


def md5_hash(user, password):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()
