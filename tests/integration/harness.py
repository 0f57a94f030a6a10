"""harness.py: what every integration test of mall stands on.

An integration test is a Python file tests/integration/test_<what>.py run by
ctest (through /usr/bin/python3, standard library only).  It imports this
module, starts real processes (our binaries, PostgreSQL databases in the
throwaway cluster script/test made, Redis), talks to them over HTTP, nng (via
mallctl) or raw sockets, and ends with `harness.run()`:

    import harness

    def test_listing_answers():
        cat = harness.start_catalog()
        gw = harness.start_gateway(catalog=[cat])
        r = harness.http("GET", gw.url + "/api/v1/products")
        assert r.status == 200, r

    harness.run()

Environment (set by script/test and ctest): MALL_TEST_PG_ADMIN (libpq
conninfo of a superuser), MALL_TEST_REDIS (host:port), MALL_BUILD_DIR (the
build tree with our binaries), MALL_SOURCE_DIR (the source tree).  A test that
needs one that is missing FAILS saying so; nothing is skipped.

Everything a test starts is cleaned up when the test program ends, however it
ends: processes get SIGTERM (then SIGKILL) and also die with the harness if it
is killed (PR_SET_PDEATHSIG); databases and roles are dropped.  Logs of the
processes go to a temporary folder, kept and named when something failed
(MALL_IT_KEEP=1 keeps it always).

The runner (run) runs the module's test_* functions in order, prints "ok" or
"FAIL" for each with the assertion message and, after a failure, the end of
every process log; then stops the processes still running with SIGTERM and
counts as failures a process that crashed on its own, did not exit 0 on
SIGTERM, or printed a sanitizer report; and prints "N passed, M failed".
"""

import atexit
import base64
import ctypes
import glob
import http.client as httpclient
import io
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

__all__ = [
    "HarnessError", "free_port", "Cluster", "Database", "cluster", "redis_addr",
    "Redis", "start_redis", "Process", "start_process", "wait_http", "wait_until",
    "http", "Response", "raw", "RawConnection", "parse_response", "Service",
    "start_service", "start_catalog", "Gateway", "start_gateway", "SandboxPG",
    "start_sandbox_pg", "mallctl", "binary", "build_dir", "source_dir", "workdir", "run",
]


class HarnessError(AssertionError):
    """A test cannot go on: a missing variable or binary, a process that did
    not become ready.  An AssertionError, so the runner reports it as FAIL."""


# --------------------------------------------------------------------------
# Paths and environment

def source_dir():
    """The source tree (MALL_SOURCE_DIR, set by ctest; else from this file)."""
    return os.environ.get("MALL_SOURCE_DIR") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    """The build tree holding our binaries (MALL_BUILD_DIR, set by ctest)."""
    d = os.environ.get("MALL_BUILD_DIR")
    if not d:
        raise HarnessError("MALL_BUILD_DIR is not set: run the integration tests "
                           "through script/test (or ctest in the build tree)")
    return d


def binary(relpath):
    """The path of a built binary, e.g. binary("services/catalog/mall-catalog");
    fails clearly when it was not built."""
    path = os.path.join(build_dir(), relpath)
    if not os.access(path, os.X_OK):
        raise HarnessError("%s was not built (is its source complete?)" % path)
    return path


def _need_env(name):
    v = os.environ.get(name)
    if not v:
        raise HarnessError("%s is not set: run the integration tests through "
                           "script/test (it starts PostgreSQL and Redis)" % name)
    return v


_workdir = None


def workdir():
    """This test program's temporary folder (process logs, scratch files)."""
    global _workdir
    if _workdir is None:
        prog = os.path.splitext(os.path.basename(sys.argv[0] or "test"))[0]
        _workdir = tempfile.mkdtemp(prefix="mall-it-%s-" % prog)
    return _workdir


# --------------------------------------------------------------------------
# Ports

_ports_given = set()


def free_port():
    """A loopback TCP port nobody listens on, chosen at random below the
    kernel's ephemeral range (so an outgoing connection cannot take it before
    our process binds it) and never handed out twice by this program."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    if low <= 12000:
        low = 32768
    for _ in range(1000):
        port = random.randrange(10000, low)
        if port in _ports_given:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # as servers bind: SO_REUSEADDR ignores TIME_WAIT, not listeners
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _ports_given.add(port)
        return port
    raise HarnessError("could not find a free port")


# --------------------------------------------------------------------------
# Processes

_processes = []
_libc = None


def _die_with_parent():
    # runs in the child between fork and exec: SIGKILL when the harness dies,
    # even by SIGKILL (a ctest timeout), so nothing outlives the test
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _describe_status(code):
    if code is None:
        return "still running"
    if code < 0:
        try:
            return "signal %s" % signal.Signals(-code).name
        except ValueError:
            return "signal %d" % -code
    return "status %d" % code


class Process:
    """A process started by start_process, its output in .log_path.

    kill9/stop/cont/signal/terminate/wait tell the harness that an exit is
    expected; an exit nobody asked for is reported by the runner as a crash.
    """

    def __init__(self, name, argv, env, log_path, cwd, check):
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.check = check
        self.exit_expected = False
        with open(log_path, "ab") as log:
            log.write(("[harness] %s: %s\n" % (time.strftime("%H:%M:%S"),
                                                " ".join(self.argv))).encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent)
        self.pid = self.popen.pid

    def __repr__(self):
        return "<Process %s pid %d %s>" % (self.name, self.pid,
                                           _describe_status(self.returncode))

    @property
    def returncode(self):
        """The exit status (negative: killed by that signal), None if running."""
        return self.popen.poll()

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        """Sends sig (exits it causes are expected)."""
        self.exit_expected = True
        if self.alive():
            self.popen.send_signal(sig)

    def kill9(self, timeout=10):
        """SIGKILL, then waits for the exit; returns the exit status."""
        self.signal(signal.SIGKILL)
        return self.wait(timeout)

    def stop(self):
        """SIGSTOP: the process freezes (holds its sockets, answers nothing)."""
        if self.alive():
            self.popen.send_signal(signal.SIGSTOP)

    def cont(self):
        """SIGCONT: a stopped process goes on."""
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)

    def terminate(self, timeout=15):
        """SIGTERM (after SIGCONT, should it be stopped) and waits for the exit;
        fails if it takes longer than timeout (the process is then killed).
        Returns the exit status (0 is a clean drain)."""
        self.exit_expected = True
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise HarnessError("%s (pid %d) did not exit within %gs of SIGTERM"
                               % (self.name, self.pid, timeout))

    def wait(self, timeout=30):
        """Waits for the process to exit; returns its exit status."""
        self.exit_expected = True
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError("%s (pid %d) did not exit within %gs"
                               % (self.name, self.pid, timeout))

    def log(self):
        """Everything the process printed so far (text)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def output(self):
        """What the process printed, without the harness's own lines."""
        return "".join(line for line in self.log().splitlines(True)
                       if not line.startswith("[harness] "))

    def tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_log(self, pattern, timeout=10):
        """Waits until the process's output matches the regular expression
        pattern; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.output())
            if m:
                return m
            if time.monotonic() > deadline:
                raise HarnessError("%s did not log /%s/ within %gs; its log ends:\n%s"
                                   % (self.name, pattern, timeout, self.tail(20)))
            time.sleep(0.05)


def start_process(name, argv, env=None, cwd=None, inherit_env=True, check=True):
    """Starts argv as NAME, stdout and stderr to a log file in workdir(); the
    environment is ours plus env (a value None removes a variable).  The
    process is stopped at exit.  check=False: the runner does not judge how
    it ends (a helper, a fake)."""
    full = dict(os.environ) if inherit_env else {}
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = str(v)
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    log_path = os.path.join(workdir(), base + ".log")
    n = 1
    while os.path.exists(log_path):
        n += 1
        log_path = os.path.join(workdir(), "%s.%d.log" % (base, n))
    p = Process(name, argv, full, log_path, cwd, check)
    _processes.append(p)
    return p


# --------------------------------------------------------------------------
# Waiting

def wait_until(predicate, timeout=10, what="the condition", interval=0.05):
    """Polls predicate() until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise HarnessError("%s did not happen within %gs" % (what, timeout))
        time.sleep(interval)


def wait_http(url, status=200, timeout=30, proc=None):
    """Polls GET url until it answers status; returns that Response.  proc (a
    Process, Service, or a list of them): fails at once, with its log, when
    it exits meanwhile."""
    procs = proc if isinstance(proc, (list, tuple)) else ([proc] if proc else [])
    procs = [getattr(p, "proc", p) for p in procs]
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            r = http("GET", url, timeout=2)
            if r.status == status:
                return r
            last = "status %d" % r.status
        except OSError as e:
            last = str(e) or type(e).__name__
        for p in procs:
            if not p.alive():
                raise HarnessError("%s exited (%s) while waiting for %s; its log ends:\n%s"
                                   % (p.name, _describe_status(p.returncode), url, p.tail(30)))
        if time.monotonic() > deadline:
            logs = "".join("\n--- %s ---\n%s" % (p.name, p.tail(30)) for p in procs)
            raise HarnessError("%s did not answer %d within %gs (last: %s)%s"
                               % (url, status, timeout, last, logs))
        time.sleep(0.05)


# --------------------------------------------------------------------------
# HTTP

class Response(tuple):
    """(status, headers, body): headers is an http.client.HTTPMessage (case
    insensitive; get_all("Set-Cookie")), body the parsed JSON when the answer
    is JSON, else bytes.  .raw is the body as bytes, .text as text."""

    def __new__(cls, status, headers, body, raw_body):
        r = tuple.__new__(cls, (status, headers, body))
        r.raw = raw_body
        return r

    status = property(lambda self: self[0])
    headers = property(lambda self: self[1])
    body = property(lambda self: self[2])

    @property
    def text(self):
        return self.raw.decode("utf-8", "replace")

    def __repr__(self):
        body = self.raw[:500].decode("utf-8", "replace")
        return "<HTTP %d %s>" % (self.status, body)


def _decode_body(headers, raw_body):
    ctype = (headers.get("Content-Type") or "").lower()
    if raw_body and ("json" in ctype):
        try:
            return json.loads(raw_body.decode("utf-8"))
        except ValueError:
            pass
    return raw_body


def http(method, url, body=None, headers=None, timeout=10):
    """One HTTP request on a new connection.  body: bytes/str as is, anything
    else as JSON (Content-Type application/json).  Returns a Response."""
    u = urllib.parse.urlsplit(url)
    hdrs = dict(headers or {})
    data = body
    if body is not None and not isinstance(body, (bytes, bytearray, str)):
        data = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"
    elif isinstance(body, str):
        data = body.encode()
    conn = httpclient.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw_body = resp.read()
        return Response(resp.status, resp.msg, _decode_body(resp.msg, raw_body), raw_body)
    finally:
        conn.close()


def parse_response(data, head=False):
    """Parses one HTTP/1.x response from bytes (chunked bodies decoded);
    returns a Response, whose .rest holds any bytes after it.  Fails on an
    incomplete response."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise HarnessError("incomplete HTTP response: %r" % data[:300])
    head_bytes, rest = data[:end + 2], data[end + 4:]
    first, _, header_block = head_bytes.partition(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", first)
    if not m:
        raise HarnessError("not an HTTP response: %r" % data[:300])
    status = int(m.group(1))
    headers = httpclient.parse_headers(io.BytesIO(header_block + b"\r\n"))
    if head or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        body = b""
        while True:
            line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                raise HarnessError("incomplete chunked body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # trailers, then an empty line
                while True:
                    line, sep, rest = rest.partition(b"\r\n")
                    if not sep:
                        raise HarnessError("incomplete chunked body")
                    if not line:
                        break
                break
            if len(rest) < size + 2:
                raise HarnessError("incomplete chunked body")
            body, rest = body + rest[:size], rest[size + 2:]
    elif headers.get("Content-Length") is not None:
        n = int(headers.get("Content-Length"))
        if len(rest) < n:
            raise HarnessError("incomplete body: %d of %d bytes" % (len(rest), n))
        body, rest = rest[:n], rest[n:]
    else:
        body, rest = rest, b""
    r = Response(status, headers, _decode_body(headers, body), body)
    r.rest = rest
    return r


def _runs_to_close(r, head):
    # a response without Content-Length or chunking ends when the connection does
    return (not head and r.status not in (204, 304) and r.status >= 200 and
            r.headers.get("Content-Length") is None and
            "chunked" not in (r.headers.get("Transfer-Encoding") or "").lower())


class RawConnection:
    """A TCP connection for hand-written requests: no Host header, broken
    framing, chunked bodies, slow clients, pipelining."""

    def __init__(self, host, port, timeout=5):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.closed_by_peer = False

    def send(self, data, delay=0.0):
        """Sends bytes, or a list of byte strings delay seconds apart."""
        pieces = [data] if isinstance(data, (bytes, bytearray)) else list(data)
        for i, piece in enumerate(pieces):
            if i and delay:
                time.sleep(delay)
            self.sock.sendall(piece)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.closed_by_peer:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed_by_peer = True
            return False
        self.buf += chunk
        return True

    def read_response(self, timeout=None, head=False):
        """Reads one complete response; returns a Response (.bytes: the
        response as it came), or None if the server closed the connection or
        the timeout passed first (what arrived stays in .buf)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                r = parse_response(self.buf, head=head)
                if not _runs_to_close(r, head) or self.closed_by_peer:
                    n = len(self.buf) - len(r.rest)
                    r.bytes, self.buf = self.buf[:n], self.buf[n:]
                    return r
            except HarnessError:
                if self.closed_by_peer:
                    return None
            if not self._fill(deadline):
                if not self.closed_by_peer:
                    return None

    def read_until_close(self, timeout=None):
        """Reads until the server closes the connection; returns everything
        read (including what is still in .buf).  Fails on timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._fill(deadline):
            pass
        if not self.closed_by_peer:
            raise HarnessError("the server did not close the connection within %gs"
                               % (self.timeout if timeout is None else timeout))
        data, self.buf = self.buf, b""
        return data

    def wait_closed(self, timeout=None):
        """True when the server closes the connection within timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._fill(deadline):
            pass
        return self.closed_by_peer

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw(host, port, data, timeout=5, delay=0.0, head=False):
    """Sends data (bytes, or a list of byte strings sent delay seconds apart:
    a slow client) on a new connection and returns the bytes of the first
    complete response, or, when none came, whatever the server sent before
    it closed the connection or timeout passed (parse with parse_response)."""
    with RawConnection(host, port, timeout) as c:
        try:
            c.send(data, delay)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response(timeout, head=head)
        return r.bytes if r is not None else c.buf


# --------------------------------------------------------------------------
# PostgreSQL

def _parse_conninfo(s):
    """libpq conninfo (key=value ... or postgresql://...) -> dict."""
    s = s.strip()
    if s.startswith(("postgres://", "postgresql://")):
        u = urllib.parse.urlsplit(s)
        d = {}
        if u.hostname:
            d["host"] = u.hostname
        if u.port:
            d["port"] = str(u.port)
        if u.username:
            d["user"] = urllib.parse.unquote(u.username)
        if u.path and u.path != "/":
            d["dbname"] = urllib.parse.unquote(u.path[1:])
        for k, v in urllib.parse.parse_qsl(u.query):
            d[k] = v
        return d
    d = {}
    for m in re.finditer(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", s):
        v = m.group(2)
        if v.startswith("'"):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        d[m.group(1)] = v
    return d


def _format_conninfo(d):
    out = []
    for k, v in d.items():
        v = str(v)
        if v == "" or re.search(r"[\s'\\]", v):
            v = "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        out.append("%s=%s" % (k, v))
    return " ".join(out)


def _psql_path():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"),
                   key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0))
    if found:
        return found[-1]
    p = shutil.which("psql")
    if not p:
        raise HarnessError("psql not found; install postgresql-client")
    return p


def _ident(name):
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise HarnessError("bad SQL name %r" % name)
    return '"%s"' % name


class Database:
    """A database with its own login role of the same name, made by
    Cluster.create_database.  .conninfo is what the service gets (its own
    role); .admin_conninfo reaches it as the superuser."""

    def __init__(self, cluster, service, name):
        self.cluster = cluster
        self.service = service
        self.name = name
        self.role = name
        self.conninfo = cluster.conninfo(user=name, dbname=name)
        self.admin_conninfo = cluster.conninfo(dbname=name)
        self.dropped = False

    def __repr__(self):
        return "<Database %s>" % self.name

    def sql(self, query, *more):
        """Runs SQL as the superuser in this database; rows of the last
        statement as tuples of strings (None for NULL)."""
        return self.cluster.sql(query, *more, dbname=self.name)

    def sql_as_owner(self, query, *more):
        """Runs SQL as the service's role."""
        return self.cluster.sql(query, *more, dbname=self.name, user=self.role)

    def drop(self):
        self.cluster.drop_database(self)


class Cluster:
    """The PostgreSQL cluster of MALL_TEST_PG_ADMIN (a superuser's conninfo)."""

    def __init__(self, admin=None):
        self.admin = _parse_conninfo(admin or _need_env("MALL_TEST_PG_ADMIN"))
        self.psql = _psql_path()
        self.databases = []

    def conninfo(self, **over):
        d = dict(self.admin)
        d.update(over)
        return _format_conninfo(d)

    def sql(self, query, *more, dbname=None, user=None, check=True):
        """Runs each statement (a separate psql -c: CREATE DATABASE may not
        share a transaction) as the superuser (or user); returns the rows of
        the last one as tuples of strings (None for NULL).  check=False returns
        (exit status, rows, stderr) instead of failing."""
        over = {}
        if dbname:
            over["dbname"] = dbname
        if user:
            over["user"] = user
        argv = [self.psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-P", "null=\x1d", "-F", "\x1f", "-R", "\x1e", "-d", self.conninfo(**over)]
        for q in (query,) + more:
            argv += ["-c", q]
        env = dict(os.environ, PGCONNECT_TIMEOUT="10")
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                           timeout=120)
        out = p.stdout.decode("utf-8", "replace")
        rows = []
        for rec in out.split("\x1e"):
            rec = rec.strip("\n")
            if rec:
                rows.append(tuple(None if f == "\x1d" else f for f in rec.split("\x1f")))
        err = p.stderr.decode("utf-8", "replace").strip()
        if not check:
            return p.returncode, rows, err
        if p.returncode != 0:
            raise HarnessError("SQL failed (%s as %s): %s\n%s" % (
                over.get("dbname", self.admin.get("dbname")),
                over.get("user", self.admin.get("user")), err, query))
        return rows

    def create_database(self, service):
        """A fresh database and role mall_<service>_<random> with the same
        isolation as script/server: only that role (and the superuser) may
        connect to it, PUBLIC may not connect to postgres/template1.  Dropped
        at exit (or with .drop())."""
        if not re.fullmatch(r"[a-z][a-z0-9_]*", service):
            raise HarnessError("bad service name %r" % service)
        name = "mall_%s_%s" % (service, secrets.token_hex(4))
        q = _ident(name)
        db = Database(self, service, name)
        self.databases.append(db)
        self.sql("CREATE ROLE %s LOGIN" % q,
                 "CREATE DATABASE %s OWNER %s" % (q, q),
                 "REVOKE CONNECT, TEMPORARY ON DATABASE %s FROM PUBLIC" % q)
        # Tests run in parallel against one cluster: two sessions granting on
        # the same database at once fail with "tuple concurrently updated",
        # which is harmless to retry.
        for attempt in range(10):
            code, _, err = self.sql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC",
                                    "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC",
                                    check=False)
            if code == 0:
                break
            if "tuple concurrently updated" not in err or attempt == 9:
                raise HarnessError("could not revoke CONNECT on postgres/template1: %s" % err)
            time.sleep(0.05 * (attempt + 1))
        # pg_trgm (the catalog's search) is trusted from PostgreSQL 13 on,
        # so the owner creates it; elsewhere create it here.
        rows = self.sql("SELECT trusted FROM pg_available_extension_versions v "
                        "JOIN pg_available_extensions e USING (name) "
                        "WHERE name = 'pg_trgm' AND v.version = e.default_version")
        if not rows:
            raise HarnessError("the pg_trgm extension is not available; install postgresql-contrib")
        if rows[0][0] != "t":
            self.sql("CREATE EXTENSION IF NOT EXISTS pg_trgm", dbname=name)
        return db

    def drop_database(self, db):
        if db.dropped:
            return
        q = _ident(db.name)
        self.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % q, "DROP ROLE IF EXISTS %s" % q)
        db.dropped = True

    def drop_all(self):
        errors = []
        for db in reversed(self.databases):
            try:
                self.drop_database(db)
            except Exception as e:  # keep dropping the others
                errors.append(str(e))
        return errors


_cluster = None


def cluster():
    """The test cluster (one Cluster object per test program)."""
    global _cluster
    if _cluster is None:
        _cluster = Cluster()
    return _cluster


# --------------------------------------------------------------------------
# Redis

def redis_addr():
    """host:port of the test Redis (MALL_TEST_REDIS), shared by every test
    program running at the time: use keys of your own, or start_redis()."""
    return _need_env("MALL_TEST_REDIS")


class Redis:
    """A minimal Redis client (RESP2) for tests to look inside Redis."""

    def __init__(self, addr=None, timeout=5):
        host, _, port = (addr or redis_addr()).rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def __call__(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise HarnessError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise HarnessError("Redis error: %s" % rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise HarnessError("bad Redis reply %r" % line)

    def close(self):
        self.f.close()
        self.sock.close()


def start_redis(name="redis"):
    """A private redis-server (nothing written to disk) on a free port, for a
    test that needs Redis to itself (FLUSHALL, restarts); returns a Process
    with .addr ("127.0.0.1:port")."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    p = start_process(name, [exe, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", workdir()],
                      check=False)
    p.addr = "127.0.0.1:%d" % port

    def pong():
        try:
            r = Redis(p.addr, timeout=1)
            try:
                return r("PING") == "PONG"
            finally:
                r.close()
        except (OSError, HarnessError):
            if not p.alive():
                raise HarnessError("redis-server exited: %s" % p.tail(20))
            return False
    wait_until(pong, 10, "redis-server on port %d answering" % port)
    return p


# --------------------------------------------------------------------------
# Our services

class Service:
    """An instance of a service (mall-<name>): .addr (nng URL of its RPC),
    .port, .ops_port, .ops_url, .events_addr (nng URL its event relay
    publishes on, for a service that emits events), .db (Database), .proc
    (Process).  The process helpers (kill9, stop, cont, terminate, alive) act
    on the current process; restart() starts it again with the same
    settings."""

    def __init__(self, name, argv, env, port, ops_port, db, events_port=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.ops_port = ops_port
        self.addr = "tcp://127.0.0.1:%d" % port
        self.ops_url = "http://127.0.0.1:%d" % ops_port
        self.events_port = events_port
        self.events_addr = "tcp://127.0.0.1:%d" % events_port if events_port else None
        self.db = db
        self.proc = None

    def __repr__(self):
        return "<Service %s %s>" % (self.name, self.addr)

    def start(self, wait=True, timeout=60):
        self.proc = start_process(self.name, self.argv, self.env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=60):
        wait_http(self.ops_url + "/readyz", 200, timeout, proc=self.proc)

    def restart(self, wait=True, timeout=60):
        if self.proc and self.proc.alive():
            self.proc.terminate()
        return self.start(wait, timeout)

    def kill9(self):
        return self.proc.kill9()

    def stop(self):
        self.proc.stop()

    def cont(self):
        self.proc.cont()

    def terminate(self, timeout=15):
        return self.proc.terminate(timeout)

    def alive(self):
        return self.proc.alive()

    def metrics(self):
        """The ops /metrics text."""
        return http("GET", self.ops_url + "/metrics").text


def start_service(service, db=None, env=None, name=None, wait=True, timeout=60):
    """Starts MALL_BUILD_DIR/services/<service>/mall-<service> on free ports,
    with a fresh database (or db, to share one between instances) and the
    test Redis when there is one (settings of the process contract:
    MALL_<SERVICE>_DB/_LISTEN/_OPS_LISTEN/_EVENTS_LISTEN, MALL_REDIS_ADDR;
    a service that emits no events ignores _EVENTS_LISTEN); waits until
    /readyz answers 200.  env adds or overrides variables."""
    exe = binary("services/%s/mall-%s" % (service, service))
    db = db or cluster().create_database(service)
    port, ops, events = free_port(), free_port(), free_port()
    up = service.upper()
    e = {"MALL_%s_DB" % up: db.conninfo,
         "MALL_%s_LISTEN" % up: "tcp://127.0.0.1:%d" % port,
         "MALL_%s_OPS_LISTEN" % up: "127.0.0.1:%d" % ops,
         "MALL_%s_EVENTS_LISTEN" % up: "tcp://127.0.0.1:%d" % events,
         "MALL_LOG_LEVEL": os.environ.get("MALL_LOG_LEVEL", "info")}
    if os.environ.get("MALL_TEST_REDIS"):
        e["MALL_REDIS_ADDR"] = os.environ["MALL_TEST_REDIS"]
    e.update(env or {})
    svc = Service(name or service, [exe], e, port, ops, db, events)
    return svc.start(wait, timeout)


def start_catalog(db=None, env=None, name="catalog", wait=True, timeout=60):
    """A mall-catalog instance (see start_service)."""
    return start_service("catalog", db=db, env=env, name=name, wait=wait, timeout=timeout)


def _addrs(x):
    items = x if isinstance(x, (list, tuple)) else [x]
    return ",".join(getattr(i, "addr", i) for i in items)


class Gateway:
    """A mall-gateway: .url ("http://127.0.0.1:port"), .port, .proc."""

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.host = "127.0.0.1"
        self.url = "http://127.0.0.1:%d" % port

    def __repr__(self):
        return "<Gateway %s>" % self.url

    def kill9(self):
        return self.proc.kill9()

    def stop(self):
        self.proc.stop()

    def cont(self):
        self.proc.cont()

    def terminate(self, timeout=15):
        return self.proc.terminate(timeout)

    def alive(self):
        return self.proc.alive()

    def get(self, path, **kw):
        return http("GET", self.url + path, **kw)

    def raw(self, data, **kw):
        return raw(self.host, self.port, data, **kw)


def start_gateway(catalog=None, env=None, wait=True, timeout=60, ready_path="/readyz",
                  name="gateway", **peers):
    """Starts MALL_BUILD_DIR/gateway/mall-gateway on a free port, pointing at
    catalog (Service objects or nng URLs, one or a list: MALL_CATALOG_ADDRS)
    and other peers given as keywords (member=[...] -> MALL_MEMBER_ADDRS, and
    MALL_MEMBER_EVENTS_ADDRS from Service objects' relays), serving the source
    tree's gateway/web; waits until ready_path answers 200."""
    exe = binary("gateway/mall-gateway")
    port = free_port()
    e = {"MALL_GATEWAY_LISTEN": "127.0.0.1:%d" % port,
         "MALL_GATEWAY_WEB_ROOT": os.path.join(source_dir(), "gateway", "web"),
         "MALL_LOG_LEVEL": os.environ.get("MALL_LOG_LEVEL", "info")}
    if os.environ.get("MALL_TEST_REDIS"):
        e["MALL_REDIS_ADDR"] = os.environ["MALL_TEST_REDIS"]
    if catalog is not None:
        e["MALL_CATALOG_ADDRS"] = _addrs(catalog)
    for peer, where in peers.items():
        e["MALL_%s_ADDRS" % peer.upper()] = _addrs(where)
        # the relays of peers started here (the gateway hears the order's)
        items = where if isinstance(where, (list, tuple)) else [where]
        relays = [i.events_addr for i in items if getattr(i, "events_addr", None)]
        if relays:
            e["MALL_%s_EVENTS_ADDRS" % peer.upper()] = ",".join(relays)
    e.update(env or {})
    gw = Gateway(start_process(name, [exe], e), port)
    if wait:
        wait_http(gw.url + ready_path, 200, timeout, proc=gw.proc)
    return gw


class SandboxPG:
    """The sandbox PG (tests/fakes/sandbox_pg.py, protocol in its README):
    .url ("http://127.0.0.1:port"), .port, .secret_key, .client_key,
    .webhook_url ("" when it sends no webhooks), .proc.  The helpers speak its
    API; api() is any request, with the secret key unless auth is False."""

    def __init__(self, proc, port, secret_key, client_key, webhook_url):
        self.proc = proc
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.secret_key = secret_key
        self.client_key = client_key
        self.webhook_url = webhook_url

    def __repr__(self):
        return "<SandboxPG %s>" % self.url

    def auth_header(self, key=None):
        """{"Authorization": "Basic base64(key:)"} (key: the secret key)."""
        raw = ("%s:" % (self.secret_key if key is None else key)).encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def api(self, method, path, body=None, idempotency_key=None, auth=True, headers=None,
            timeout=10):
        h = dict(self.auth_header() if auth else {})
        if idempotency_key is not None:
            h["Idempotency-Key"] = idempotency_key
        h.update(headers or {})
        return http(method, self.url + path, body=body, headers=h, timeout=timeout)

    def create_payment(self, order_id, amount, method="card", **fields):
        """What the browser's payment window does (POST /sandbox/v1/payments);
        fields: orderName, outcome, provider, dueInSeconds, bank, customerName.
        Returns the paymentKey."""
        body = dict(fields, orderId=order_id, amount=amount, method=method)
        r = http("POST", self.url + "/sandbox/v1/payments", body=body)
        if r.status != 200:
            raise HarnessError("sandbox PG: could not create a payment for order %s: %r"
                               % (order_id, r))
        return r.body["paymentKey"]

    def confirm(self, payment_key, order_id, amount, idempotency_key=None, timeout=10):
        return self.api("POST", "/v1/payments/confirm",
                        {"paymentKey": payment_key, "orderId": order_id, "amount": amount},
                        idempotency_key=idempotency_key, timeout=timeout)

    def payment(self, payment_key):
        return self.api("GET", "/v1/payments/" + urllib.parse.quote(payment_key, safe=""))

    def cancel(self, payment_key, reason="test", amount=None, refund_account=None,
               idempotency_key=None):
        body = {"cancelReason": reason}
        if amount is not None:
            body["cancelAmount"] = amount
        if refund_account is not None:
            body["refundReceiveAccount"] = refund_account
        return self.api("POST", "/v1/payments/%s/cancel" % urllib.parse.quote(payment_key, safe=""),
                        body, idempotency_key=idempotency_key)

    def deposit(self, payment_key):
        """The customer pays the virtual account: DONE, and the deposit webhook."""
        return http("POST", self.url + "/sandbox/v1/deposits", body={"paymentKey": payment_key})

    def fault(self, pattern, **spec):
        """Adds a fault (see the README): fault("POST /v1/payments/confirm",
        status=500, when="after", delayMs=2000, count=1, drop=False)."""
        r = http("POST", self.url + "/sandbox/v1/faults", body=dict(spec, pattern=pattern))
        if r.status != 200:
            raise HarnessError("sandbox PG: could not add the fault: %r" % (r,))
        return r

    def _get(self, path):
        r = http("GET", self.url + path)
        if r.status != 200:
            raise HarnessError("sandbox PG: GET %s answered %r" % (path, r))
        return r.body

    def stats(self):
        return self._get("/sandbox/v1/stats")

    def requests(self):
        return self._get("/sandbox/v1/requests")["requests"]

    def webhooks(self):
        return self._get("/sandbox/v1/webhooks")["deliveries"]

    def reset(self):
        r = http("POST", self.url + "/sandbox/v1/reset")
        if r.status != 200:
            raise HarnessError("sandbox PG: reset answered %r" % (r,))

    def kill9(self):
        return self.proc.kill9()

    def terminate(self, timeout=15):
        return self.proc.terminate(timeout)

    def alive(self):
        return self.proc.alive()


def start_sandbox_pg(env=None, webhook_url="", name="sandbox-pg", wait=True, timeout=30):
    """Starts the sandbox PG (tests/fakes/sandbox_pg.py) on a free port and
    waits until it answers.  webhook_url: where its deposit webhooks go (by
    default nowhere: a test never reaches a gateway it did not start).  env
    adds or overrides MALL_SANDBOX_PG_* settings (keys, retries, backoff...)."""
    port = free_port()
    e = {"MALL_SANDBOX_PG_LISTEN": "127.0.0.1:%d" % port,
         "MALL_SANDBOX_PG_WEBHOOK_URL": webhook_url or ""}
    e.update(env or {})

    def setting(var, default):
        return e.get(var) or os.environ.get(var) or default
    exe = os.path.join(source_dir(), "tests", "fakes", "sandbox_pg.py")
    proc = start_process(name, [sys.executable, "-u", exe], e)
    pg = SandboxPG(proc, port, setting("MALL_SANDBOX_PG_SECRET_KEY", "test_sk_sandbox"),
                   setting("MALL_SANDBOX_PG_CLIENT_KEY", "test_ck_sandbox"),
                   e["MALL_SANDBOX_PG_WEBHOOK_URL"])
    if wait:
        wait_http(pg.url + "/healthz", 200, timeout, proc=proc)
    return pg


def rpc_call(addr, service, method, req, key=None, mutating=False, timeout_ms=20000,
             try_timeout_ms=None, env=None):
    """One RPC through the rpc_call helper program: (ok, reply-or-error JSON)
    of service/method at addr (an nng URL or a Service).  key sends that
    idempotency key, mutating a new one.  A new rpc_call process that could
    not connect in time (many starting at once on a busy machine) sent
    nothing, so that one error is tried again, up to 5 times."""
    addr = getattr(addr, "addr", addr)
    argv = [binary("tests/integration/rpc_call"), "--addrs", addr, "--service", service,
            "--method", method, "--timeout-ms", str(timeout_ms),
            "--try-timeout-ms", str(try_timeout_ms or timeout_ms)]
    if key:
        argv += ["--key", key]
    elif mutating:
        argv.append("--mutating")
    e = None
    if env:
        e = dict(os.environ)
        e.update(env)
    for attempt in range(5):
        p = subprocess.run(argv + [json.dumps(req)], capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL, env=e)
        if p.returncode not in (0, 1):
            raise HarnessError("rpc_call %s: %d %s %s" % (method, p.returncode, p.stdout,
                                                          p.stderr))
        r = json.loads(p.stdout)
        err = r.get("error") if p.returncode == 1 else None
        if not (err and err.get("code") == "unavailable" and
                err.get("message", "").endswith("no connection")):
            break
        time.sleep(0.2 * (attempt + 1))
    return p.returncode == 0, r


def mallctl(*args, catalog=None, env=None, check=True, timeout=60):
    """Runs MALL_BUILD_DIR/tools/mallctl/mallctl ARGS (MALL_CATALOG_ADDRS from
    catalog); returns the CompletedProcess (text).  check: fail unless it
    exits 0."""
    e = dict(os.environ)
    if catalog is not None:
        e["MALL_CATALOG_ADDRS"] = _addrs(catalog)
    e.update(env or {})
    argv = [binary("tools/mallctl/mallctl")] + [str(a) for a in args]
    p = subprocess.run(argv, env=e, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise HarnessError("mallctl %s exited with status %d:\n%s%s" % (
            " ".join(argv[1:]), p.returncode, p.stdout, p.stderr))
    return p


# --------------------------------------------------------------------------
# Cleanup

_cleaned = False
_failed = False
_SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|"
                        r"WARNING: ThreadSanitizer|runtime error: ")


def _stop_all(graceful):
    """Stops every process still running; returns problems found (text)."""
    problems = []
    running = [p for p in _processes if p.alive()]
    for p in running:
        try:
            p.popen.send_signal(signal.SIGCONT)
            p.popen.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + (15 if graceful else 5)
    for p in running:
        try:
            code = p.popen.wait(max(0.1, deadline - time.monotonic()))
            if p.check and graceful and code != 0:
                problems.append("%s exited with %s on SIGTERM (a clean drain exits 0)"
                                % (p.name, _describe_status(code)))
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()
            if p.check and graceful:
                problems.append("%s did not exit within 15s of SIGTERM" % p.name)
    return problems


def _final_checks():
    """After the tests: crashes nobody asked for, unclean exits, sanitizer
    reports.  Returns a list of problems."""
    problems = []
    for p in _processes:
        if p.check and not p.exit_expected and not p.alive():
            problems.append("%s exited on its own with %s during the tests"
                            % (p.name, _describe_status(p.returncode)))
    problems += _stop_all(graceful=True)
    for p in _processes:
        if p.check and _SANITIZER.search(p.output()):
            problems.append("%s printed a sanitizer report (%s)" % (p.name, p.log_path))
    return problems


def _cleanup():
    global _cleaned
    if _cleaned:
        return
    _cleaned = True
    _stop_all(graceful=False)
    if _cluster is not None:
        for err in _cluster.drop_all():
            print("harness: could not drop a database: %s" % err, file=sys.stderr, flush=True)
    if _workdir is not None:
        if _failed or os.environ.get("MALL_IT_KEEP") == "1":
            print("harness: logs kept in %s" % _workdir, flush=True)
        else:
            shutil.rmtree(_workdir, ignore_errors=True)


def _on_signal(signum, frame):
    global _failed
    _failed = True
    signal.signal(signum, signal.SIG_IGN)
    print("harness: %s: stopping everything" % signal.Signals(signum).name, flush=True)
    raise SystemExit(128 + signum)


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


# --------------------------------------------------------------------------
# The runner

class _TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _TestTimeout()


def _failure_message(e, test_file):
    tb = traceback.extract_tb(e.__traceback__)
    where = [f for f in tb if f.filename == test_file] or tb
    loc = ("%s:%d" % (os.path.basename(where[-1].filename), where[-1].lineno)) if where else "?"
    if isinstance(e, _TestTimeout):
        return "timed out (MALL_IT_TEST_TIMEOUT) at %s" % loc
    if isinstance(e, AssertionError):
        msg = str(e) or ("assert failed: %s" % (where[-1].line if where else "?"))
        return "%s: %s" % (loc, msg)
    return "%s: %s: %s\n%s" % (loc, type(e).__name__, e,
                               "".join(traceback.format_exception(type(e), e, e.__traceback__)))


def _print_logs(lines=30):
    for p in _processes:
        print("    --- %s (pid %d, %s), last lines of %s ---" % (
            p.name, p.pid, _describe_status(p.returncode), p.log_path))
        for line in p.tail(lines).splitlines():
            print("    | " + line)
    sys.stdout.flush()


def run(module_globals=None):
    """Runs the test_* functions of the calling module in the order they are
    defined (command-line arguments: run only the tests whose names contain
    one of them), prints ok/FAIL for each and "N passed, M failed", and exits
    non-zero if anything failed.  MALL_IT_TEST_TIMEOUT: seconds a test may
    take (default 300)."""
    global _failed
    g = module_globals if module_globals is not None else sys._getframe(1).f_globals
    modname = g.get("__name__")
    test_file = g.get("__file__", "")
    tests = [(n, f) for n, f in list(g.items())
             if n.startswith("test_") and callable(f) and getattr(f, "__module__", None) == modname]
    wanted = [a for a in sys.argv[1:] if not a.startswith("-")]
    if wanted:
        tests = [(n, f) for n, f in tests if any(w in n for w in wanted)]
    limit = int(os.environ.get("MALL_IT_TEST_TIMEOUT", "300"))
    signal.signal(signal.SIGALRM, _on_alarm)
    passed = failed = 0
    for name, fn in tests:
        t0 = time.monotonic()
        signal.alarm(limit)
        try:
            fn()
            signal.alarm(0)
            passed += 1
            print("ok   %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
        except (KeyboardInterrupt, SystemExit):
            signal.alarm(0)
            raise
        except BaseException as e:
            signal.alarm(0)
            failed += 1
            _failed = True
            print("FAIL %s (%.2fs): %s" % (name, time.monotonic() - t0,
                                           _failure_message(e, test_file)), flush=True)
            _print_logs()
    problems = _final_checks()
    if problems:
        failed += 1
        _failed = True
        print("FAIL processes: " + "; ".join(problems), flush=True)
        _print_logs()
    if not tests:
        failed += 1
        _failed = True
        print("FAIL no test_* function to run", flush=True)
    _cleanup()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


main = run
