"""A real PostgreSQL server for tests: initdb in a temp dir, started on 127.0.0.1 with a random port, stopped after.

Uses Debian's postgresql binaries (/usr/lib/postgresql/<v>/bin). When they are missing the tests that need it skip
with a message saying how to install them. As root, the server runs as the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.service_process import free_port


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _run_as(user: str | None, args: list[str]) -> None:
    cmd = ["runuser", "-u", user, "--", *args] if user else args
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bindir = _bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL not installed: `apt-get install postgresql` (or `make system-deps`) to run these tests")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL tests need the `postgres` system user when run as root")
        user = "postgres"
    workdir = tempfile.mkdtemp(prefix="cds-onnx-pg-")
    data, sockets = os.path.join(workdir, "data"), os.path.join(workdir, "sock")
    os.makedirs(sockets)
    if user:
        shutil.chown(workdir, user)
        shutil.chown(sockets, user)
    port = free_port()
    _run_as(user, [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "cds", "--no-sync", "-E", "UTF8"])
    _run_as(user, [f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(workdir, "log"), "-w", "-t", "60", "start",
                   "-o", f"-p {port} -h 127.0.0.1 -k {sockets} -c fsync=off"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"postgresql+psycopg://cds@127.0.0.1:{port}/postgres"
    finally:
        _run_as(user, [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(workdir, ignore_errors=True)
