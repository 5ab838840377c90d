"""When another process holds the DuckDB file, the message says who holds it, how (read-only
or read-write) and how to let the run through (issue 23, point 5)."""

import subprocess
import sys

import duckdb
import pytest

from pipelines.io.store import Store, StoreBusy

fault = pytest.mark.reliability(kind="fault")

#: An analyst's session in another process: the file open (read-only or not) with an open
#: transaction, until its stdin closes.
HOLDER = r"""
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
con.execute("BEGIN TRANSACTION")
con.execute("SELECT count(*) FROM runs").fetchall()
print("open", flush=True)
sys.stdin.read()
con.close()
"""


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "capplan.duckdb"
    Store(path).init()
    return path


def hold(path, mode):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), mode], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "open"
    return holder


def release(holder):
    holder.stdin.close()
    holder.wait(timeout=30)


@fault
def test_a_notebooks_read_only_connection_is_named_with_its_pid_and_the_way_out(database):
    holder = hold(database, "ro")
    try:
        with pytest.raises(StoreBusy) as exc:
            Store(database, busy_timeout_s=0.5).init()  # what a run's first write does
        message = str(exc.value)
        assert f"PID {holder.pid}" in message and "read-only connection" in message, message
        assert "read-write" not in message and "con.close()" in message and "kernel" in message, message
        assert str(database) in message and "\n" not in message
        with Store(database, busy_timeout_s=0.5).connect(read_only=True) as con:  # readers still get in
            assert con.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]
    finally:
        release(holder)
    Store(database, busy_timeout_s=5).init()  # once it is closed, the run gets through


@fault
def test_a_read_write_holder_is_named_as_such(database):
    holder = hold(database, "rw")
    try:
        for read_only in (False, True):
            with pytest.raises(StoreBusy) as exc:
                with Store(database, busy_timeout_s=0.5).connect(read_only=read_only):
                    pass
            message = str(exc.value)
            assert f"PID {holder.pid}" in message and "read-write connection" in message, message
            assert ("cannot read it" if read_only else "cannot write") in message and "cp " in message, message
    finally:
        release(holder)
    with duckdb.connect(str(database)) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]
