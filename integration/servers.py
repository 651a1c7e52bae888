"""Real Redis and PostgreSQL servers for the integration suite, started on
127.0.0.1 as unprivileged processes in a temporary directory, and stopped
(and their directory removed) at the end of the session.

The programs come from Debian's packages (redis-server, postgresql), which
``integration/install-servers`` installs; without them the tests that need
them are skipped with a message saying so. Run as root, the servers run as
the packages' own users (``redis``, ``postgres``, else ``nobody``):
PostgreSQL refuses to run as root.
"""

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def _user(preferred):
    """The user to run a server as: ``preferred`` (or nobody) when this
    process is root, else this process's own user (None)."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise RuntimeError("no unprivileged user to run a server as")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _workdir(prefix, user):
    # Not under pytest's tmp_path: its parents are private to root, and the
    # server's user must reach its files.
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _start(argv, user, log_path, **kwargs):
    log = open(log_path, "ab")
    extra = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **extra, **kwargs)
    log.close()
    return proc


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(ready, proc, log_path, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            with open(log_path, errors="replace") as f:
                raise RuntimeError(f"{what} did not start:\n{f.read()}")
        time.sleep(0.05)


class Redis:
    def __init__(self, host, port):
        self.host, self.port = host, port


@contextlib.contextmanager
def redis_server(program):
    user = _user("redis")
    with _workdir("ferroloop-redis-", user) as d:
        port = _free_port()
        log = os.path.join(d, "redis.log")
        proc = _start(
            [program, "--bind", "127.0.0.1", "--port", str(port), "--dir", d,
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            user, log,
        )

        def ready():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        _wait(ready, proc, log, "redis-server")
        try:
            yield Redis("127.0.0.1", port)
        finally:
            _stop(proc)


class Postgres:
    def __init__(self, host, port, user, password, database):
        self.host, self.port, self.user = host, port, user
        self.password, self.database = password, database

    def dsn(self):
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"


@contextlib.contextmanager
def postgres_server(bindir, cert_file, key_file):
    """PostgreSQL with ``ssl = on`` (the given certificate), password
    (SCRAM) authentication over TCP, durability off (a throwaway cluster)."""
    user = _user("postgres")
    with _workdir("ferroloop-pg-", user) as d:
        owner = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        data = os.path.join(d, "data")
        password = "ferroloop-test"
        pwfile = os.path.join(d, "pw")
        with open(pwfile, "w") as f:
            f.write(password + "\n")
        cert = os.path.join(d, "server.pem")
        key = os.path.join(d, "server.key")
        shutil.copy(cert_file, cert)
        shutil.copy(key_file, key)
        os.chmod(key, 0o600)
        for path in (pwfile, cert, key):
            if user is not None:
                os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run(
            [os.path.join(bindir, "initdb"), "-D", data, "-U", "ferroloop", "-E", "UTF8",
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **owner,
        )
        port = _free_port()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{d}'",
            "ssl": "on",
            "ssl_cert_file": f"'{cert}'",
            "ssl_key_file": f"'{key}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
        }
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        log = os.path.join(d, "postgres.log")
        proc = _start([os.path.join(bindir, "postgres"), "-D", data], user, log)

        def ready():
            with open(log, errors="replace") as f:
                return "ready to accept connections" in f.read()

        _wait(ready, proc, log, "postgres")
        try:
            yield Postgres("127.0.0.1", port, "ferroloop", password, "postgres")
        finally:
            _stop(proc)
