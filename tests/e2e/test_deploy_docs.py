"""``docs/deploy.md`` holds no untested advice: every command of its ``sh`` blocks is run here (or, for
``make bench``, the same make target in ``--tiny`` mode), and the sample files in ``deploy/`` are run as
written.

:data:`COMMANDS` maps each command of the document to the test below that runs it; the first test fails
when a block holds a command the table does not map (or the table names one the document dropped).
Each test takes the command's text from the document itself (:func:`doc_command`) and runs it with
``bash``; what it replaces is listed in a substitution table per test, and every replacement must match.

PostgreSQL tests use ``CGT_GATEWAY_TEST_DATABASE_URL`` (its schema is dropped and recreated, as the rest of
the suite does) and skip cleanly when it is unset.  The units are not run under systemd (none here): their
``ExecStart=`` is run with their ``Environment=`` and ``EnvironmentFile=`` (the file overriding, as systemd
specifies) and stopped the way systemd's default ``KillMode=control-group`` does (SIGTERM to every process
of the unit); ``systemd-analyze verify`` checks them when it is installed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bench.servers import descendants
from gateway.store.db import make_engine
from tests.conftest import ACME, PG_URL_VAR, order_body
from tests.e2e.serving import free_port, serve
from tests.e2e.test_inbound_serve import write_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
ADDRESS = "127.0.0.1:8080"  # the document's address of a gateway host
# systemd's environment for a service (systemd.exec(5): PATH is set, little else is inherited)
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Each command of the document's sh blocks -> the test of this module that runs it.
COMMANDS = {
    "cgt-gateway migrate": "test_migrate_once_then_again",
    "cgt-gateway serve --processes 2": "test_server_unit_runs_as_written",
    "systemd-analyze verify /etc/systemd/system/cgt-gateway.service "
    "/etc/systemd/system/cgt-gateway-worker.service": "test_units_pass_systemd_analyze_verify",
    "deploy/entrypoint.sh serve --processes 2": "test_entrypoint_migrates_then_becomes_the_server",
    "deploy/entrypoint.sh worker": "test_entrypoint_runs_a_worker",
    "cgt-gateway worker": "test_worker_unit_runs_as_written",
    f"curl -fsS http://{ADDRESS}/healthz": "test_server_unit_runs_as_written",
    f"curl -fsS http://{ADDRESS}/readyz": "test_server_unit_runs_as_written",
    f"curl -fsS http://{ADDRESS}/.well-known/smart-configuration": "test_server_unit_runs_as_written",
    'make bench BENCH_ARGS="--parts scale --pg-url postgresql://postgres@127.0.0.1:5432/bench_scale"':
        "test_make_bench_scale_part",
    "psql \"$CGT_GATEWAY_DATABASE_URL\" -Atc 'SHOW max_connections'": "test_server_unit_runs_as_written",
    'psql "$CGT_GATEWAY_DATABASE_URL" -Atc "SELECT count(*) FROM pg_stat_activity WHERE datname = '
    'current_database()"': "test_server_unit_runs_as_written",
    "cgt-gateway audit verify": "test_backup_restores_and_its_audit_chain_verifies",
    'pg_dump --format=custom --file=cgt-gateway.dump "$CGT_GATEWAY_DATABASE_URL"':
        "test_backup_restores_and_its_audit_chain_verifies",
    'createdb --maintenance-db="$CGT_GATEWAY_DATABASE_URL" cgt_gateway_restored':
        "test_backup_restores_and_its_audit_chain_verifies",
    'pg_restore --exit-on-error --no-owner --dbname="$RESTORED_URL" cgt-gateway.dump':
        "test_backup_restores_and_its_audit_chain_verifies",
    'CGT_GATEWAY_DATABASE_URL="$RESTORED_URL" cgt-gateway audit verify --anchor "$ANCHOR"':
        "test_backup_restores_and_its_audit_chain_verifies",
    'dropdb --maintenance-db="$CGT_GATEWAY_DATABASE_URL" cgt_gateway_restored':
        "test_backup_restores_and_its_audit_chain_verifies",
}


# ---------------------------------------------------------------------------------------------- the document


def shell_commands(text: str) -> list[str]:
    """The commands of every ```sh block: one per line (backslash continuations joined), comments and
    blank lines left out."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        pending = ""
        for line in block.splitlines():
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            commands.append(" ".join((pending + stripped).split()))
            pending = ""
        assert not pending, f"a block ends in a continuation: {pending!r}"
    return commands


def doc_command(command: str) -> str:
    """``command`` as the document has it (fails if the document no longer does)."""
    assert command in shell_commands(DOC.read_text(encoding="utf-8")), f"not in docs/deploy.md: {command}"
    return command


def substitute(command: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in command, f"{old!r} is not in {command!r}"
        command = command.replace(old, new)
    return command


def bash(command: str, env: dict[str, str], cwd: Path,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def tool_env(**extra: str) -> dict[str, str]:
    """An environment for the document's commands: the gateway's CLI first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGT_GATEWAY_")}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', SYSTEMD_PATH)}"
    env.update(extra)
    return env


def test_every_command_of_the_document_is_run_by_a_test() -> None:
    commands = shell_commands(DOC.read_text(encoding="utf-8"))
    assert commands, "no sh block found"
    unmapped = [c for c in commands if c not in COMMANDS]
    assert not unmapped, f"commands in docs/deploy.md no test runs: {unmapped}"
    stale = [c for c in COMMANDS if c not in commands]
    assert not stale, f"COMMANDS lists commands the document no longer has: {stale}"
    names = set(globals())
    assert not [t for t in COMMANDS.values() if t not in names], "COMMANDS names a test that does not exist"
    assert "SCALE_FIGURES" not in DOC.read_text(encoding="utf-8"), "the scale figures were not filled in"


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def pg_url() -> str:
    """The PostgreSQL test database, schema ``public`` dropped and recreated (empty, not migrated)."""
    url = os.environ.get(PG_URL_VAR)
    if not url:
        pytest.skip(f"{PG_URL_VAR} is not set")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return url


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _wait_for_log(log: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never logged (exit {process.poll()}): {log.read_text()[-4000:]}")
        time.sleep(0.1)


def _assert_clean_stop(status: int, log: Path, *, processes: int) -> None:
    """A server stopped by SIGTERM shut its app down.  ``serve --processes N`` (N > 1): the parent, having
    stopped its children, exits 0.  One process is uvicorn's server, which re-raises the SIGTERM it caught
    after shutting down, so it ends by SIGTERM (systemd counts that as a clean stop; docker shows 143)."""
    text = log.read_text()
    assert status == (0 if processes > 1 else -signal.SIGTERM), f"exit {status}: {text[-4000:]}"
    assert text.count("Application shutdown complete.") == processes, text[-4000:]


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"not ready (exit {process.poll()}): {log.read_text()[-4000:]}")
        time.sleep(0.2)


@contextmanager
def _running(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` in a session of its own (its process group is the unit's "control group"); killed if the
    test left it running."""
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _stop(process: subprocess.Popen[bytes], timeout_s: float, *, group: bool) -> int:
    """SIGTERM (to the whole process group when ``group``, as systemd's KillMode=control-group; else to
    the main process alone, as ``docker stop``); the exit status, every descendant gone."""
    children = descendants(process.pid)
    if group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    status = process.wait(timeout=timeout_s)
    deadline = time.monotonic() + 10
    while [c for c in children if _alive(c)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if _alive(c)], "a process of the server outlived it"
    return status


# ---------------------------------------------------------------------------------------------- units


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists, in order (keys such as Environment= repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def _one(entries: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in entries if k == key]
    assert len(values) == 1, f"{key}= appears {len(values)} times"
    return values[0]


class InstalledUnit:
    """A unit of ``deploy/`` with its absolute paths mapped into ``root`` (a scratch directory standing for
    the host): /opt/cgt-gateway/venv/bin -> this virtualenv, /etc/cgt-gateway and /var/lib/cgt-gateway ->
    directories under ``root``."""

    def __init__(self, name: str, root: Path) -> None:
        self.path = DEPLOY / name
        self.root = root
        self.mapping = {"/opt/cgt-gateway/venv/bin/": f"{VENV_BIN}/",
                        "/etc/cgt-gateway/": f"{root}/etc/cgt-gateway/",
                        "/var/lib/cgt-gateway": f"{root}/var/lib/cgt-gateway"}
        self.service = parse_unit(self.path)["Service"]
        (root / "etc" / "cgt-gateway").mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)

    def mapped(self, text: str) -> str:
        for old, new in self.mapping.items():
            text = text.replace(old, new)
        return text

    @property
    def exec_start(self) -> list[str]:
        return shlex.split(self.mapped(_one(self.service, "ExecStart")))

    @property
    def command(self) -> str:
        """ExecStart without the install prefix: ``cgt-gateway ...`` as the document writes it."""
        return _one(self.service, "ExecStart").replace("/opt/cgt-gateway/venv/bin/", "")

    @property
    def workdir(self) -> Path:
        return Path(self.mapped(_one(self.service, "WorkingDirectory")))

    @property
    def environment_file(self) -> Path:
        return Path(self.mapped(_one(self.service, "EnvironmentFile").lstrip("-")))

    @property
    def stop_timeout_s(self) -> float:
        return float(_one(self.service, "TimeoutStopSec"))

    def environment(self) -> dict[str, str]:
        """systemd's: PATH, then Environment= in order, then the EnvironmentFile= (which overrides)."""
        env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8"}
        for key, value in self.service:
            if key == "Environment":
                for assignment in shlex.split(value):
                    name, _, setting = assignment.partition("=")
                    env[name] = self.mapped(setting)
        for line in self.environment_file.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, _, setting = line.partition("=")
                env[name.strip()] = setting.strip()
        return env


def _host_files(root: Path, database_url: str, port: int) -> tuple[Path, int]:
    """/etc/cgt-gateway of the scratch host: gateway.yaml (the demo configuration, site-a listening for
    MLLP on a free port) and secrets.env; returns the secrets file and site-a's MLLP port."""
    etc = root / "etc" / "cgt-gateway"
    etc.mkdir(parents=True, exist_ok=True)
    mllp_port = free_port()
    write_config(etc, mllp_port, None)
    secrets_env = etc / "secrets.env"
    secrets_env.write_text(f"CGT_GATEWAY_DATABASE_URL={database_url}\n"
                           f"CGT_GATEWAY_CONSOLE_SESSION_KEY={secrets.token_urlsafe(36)}\n"
                           f"# this host's port: overrides the unit's Environment=CGT_GATEWAY_PORT=8080\n"
                           f"CGT_GATEWAY_PORT={port}\n", encoding="utf-8")
    secrets_env.chmod(0o600)
    return secrets_env, mllp_port


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = tmp_path / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for name in ("cgt-gateway.service", "cgt-gateway-worker.service"):
        unit = InstalledUnit(name, tmp_path)
        (units / name).write_text(unit.mapped(unit.path.read_text(encoding="utf-8")), encoding="utf-8")
    _host_files(tmp_path, "postgresql://unused@127.0.0.1/unused", free_port())
    command = substitute(doc_command("systemd-analyze verify /etc/systemd/system/cgt-gateway.service "
                                     "/etc/systemd/system/cgt-gateway-worker.service"),
                         {"/etc/systemd/system/": f"{units}/"})
    done = bash(command, tool_env(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cgt-gateway" not in done.stderr, done.stderr  # no warning about either unit


def test_server_unit_runs_as_written(pg_url: str, tmp_path: Path) -> None:
    for tool in ("curl", "psql"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    unit = InstalledUnit("cgt-gateway.service", tmp_path)
    assert unit.command == doc_command("cgt-gateway serve --processes 2")
    port = free_port()
    _host_files(tmp_path, pg_url, port)
    env = unit.environment()
    assert env["CGT_GATEWAY_PORT"] == str(port) and env["CGT_GATEWAY_STATIC_TOKENS"] == "false"
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with _running(unit.exec_start, env, unit.workdir, log) as process:
        _wait_ready(base, process, log)
        shell = tool_env(CGT_GATEWAY_DATABASE_URL=pg_url)
        here = {ADDRESS: f"127.0.0.1:{port}"}

        health = bash(substitute(doc_command(f"curl -fsS http://{ADDRESS}/healthz"), here), shell, tmp_path)
        assert health.returncode == 0 and json.loads(health.stdout) == {"status": "ok"}, health.stderr
        ready = bash(substitute(doc_command(f"curl -fsS http://{ADDRESS}/readyz"), here), shell, tmp_path)
        assert json.loads(ready.stdout) == {"status": "ready", "database": "ok"}, ready.stderr
        smart = bash(substitute(doc_command(f"curl -fsS http://{ADDRESS}/.well-known/smart-configuration"),
                                here), shell, tmp_path)
        assert smart.returncode == 0, smart.stderr
        assert json.loads(smart.stdout)["token_endpoint"] == "https://gateway.example.org/oauth/token"
        # static tokens are off: the demo's token is refused
        assert httpx.get(f"{base}/v1/orders", headers=ACME, timeout=10).status_code == 401

        limit = bash(doc_command("psql \"$CGT_GATEWAY_DATABASE_URL\" -Atc 'SHOW max_connections'"), shell,
                     tmp_path)
        assert limit.returncode == 0 and int(limit.stdout) > 0, limit.stderr
        in_use = bash(doc_command('psql "$CGT_GATEWAY_DATABASE_URL" -Atc "SELECT count(*) FROM '
                                  'pg_stat_activity WHERE datname = current_database()"'), shell, tmp_path)
        assert in_use.returncode == 0, in_use.stderr
        # the document's bound: 31 a process (30 pooled + the worker's LISTEN), plus psql itself
        assert 1 < int(in_use.stdout) <= 2 * 31 + 1, in_use.stdout

        status = _stop(process, unit.stop_timeout_s, group=True)
    _assert_clean_stop(status, log, processes=2)
    assert log.read_text().count("delivery worker stopped") == 2  # each child's worker gave its leases back


def test_several_processes_are_refused_on_sqlite(tmp_path: Path) -> None:
    done = bash("cgt-gateway serve --processes 2",
                tool_env(CGT_GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path / 'gateway.db'}"), tmp_path)
    assert done.returncode == 2 and "needs PostgreSQL" in done.stderr, done.stderr
    assert not (tmp_path / "gateway.db").exists()  # refused before anything started


def test_worker_unit_runs_as_written(pg_url: str, tmp_path: Path) -> None:
    unit = InstalledUnit("cgt-gateway-worker.service", tmp_path)
    assert unit.command == doc_command("cgt-gateway worker")
    _host_files(tmp_path, pg_url, free_port())
    migrated = bash("cgt-gateway migrate", tool_env(CGT_GATEWAY_DATABASE_URL=pg_url), tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "worker.log"
    with _running(unit.exec_start, unit.environment(), unit.workdir, log) as process:
        _wait_for_log(log, "delivery worker started", process)
        status = _stop(process, unit.stop_timeout_s, group=True)
    assert status == 0, log.read_text()[-4000:]
    assert "delivery worker stopped" in log.read_text()


# ---------------------------------------------------------------------------------------------- migrations


def test_migrate_once_then_again(pg_url: str, tmp_path: Path) -> None:
    from tests.conftest import _head

    command = doc_command("cgt-gateway migrate")
    env = tool_env(CGT_GATEWAY_DATABASE_URL=pg_url)
    for _ in range(2):  # the second run changes nothing
        done = bash(command, env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "database is at the newest migration"
        engine = make_engine(pg_url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == _head()
        finally:
            engine.dispose()


# ---------------------------------------------------------------------------------------------- container


def _container_env(database_url: str, port: int) -> dict[str, str]:
    return {"PATH": f"{VENV_BIN}:{SYSTEMD_PATH}", "LANG": "C.UTF-8",
            "CGT_GATEWAY_DATABASE_URL": database_url, "CGT_GATEWAY_PORT": str(port),
            "CGT_GATEWAY_INBOUND_MLLP_ENABLED": "false"}


def test_entrypoint_migrates_then_becomes_the_server(pg_url: str, tmp_path: Path) -> None:
    command = substitute(doc_command("deploy/entrypoint.sh serve --processes 2"),
                         {"deploy/": f"{DEPLOY}/"})
    port = free_port()
    log = tmp_path / "entrypoint.log"
    with _running(shlex.split(command), _container_env(pg_url, port), tmp_path, log) as process:
        _wait_ready(f"http://127.0.0.1:{port}", process, log)
        # exec: the process the container started is the gateway now, not the shell
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in argv and not any(b"entrypoint.sh" in a for a in argv), argv
        assert "database is at the newest migration" in log.read_text()
        status = _stop(process, 30, group=False)  # docker stop: SIGTERM to the main process only
    _assert_clean_stop(status, log, processes=2)
    assert log.read_text().count("delivery worker stopped") == 2  # the parent stopped each child


def test_entrypoint_runs_a_worker(pg_url: str, tmp_path: Path) -> None:
    command = substitute(doc_command("deploy/entrypoint.sh worker"), {"deploy/": f"{DEPLOY}/"})
    migrated = bash("cgt-gateway migrate", tool_env(CGT_GATEWAY_DATABASE_URL=pg_url), tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "worker.log"
    with _running(shlex.split(command), _container_env(pg_url, free_port()), tmp_path, log) as process:
        _wait_for_log(log, "delivery worker started", process)
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"worker" in argv and not any(b"entrypoint.sh" in a for a in argv), argv
        assert "migration" not in log.read_text()  # the worker alone: no migration
        status = _stop(process, 60, group=False)
    assert status == 0, log.read_text()[-4000:]
    assert "delivery worker stopped" in log.read_text()


def test_entrypoint_without_arguments_serves_on_sqlite(tmp_path: Path) -> None:
    """No argument: migrate, then ``serve`` (one process: SQLite's only choice)."""
    port = free_port()
    log = tmp_path / "entrypoint.log"
    env = _container_env(f"sqlite:///{tmp_path / 'gateway.db'}", port)
    with _running([str(DEPLOY / "entrypoint.sh")], env, tmp_path, log) as process:
        _wait_ready(f"http://127.0.0.1:{port}", process, log)
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in argv and not any(b"entrypoint.sh" in a for a in argv), argv
        status = _stop(process, 30, group=False)
    _assert_clean_stop(status, log, processes=1)
    # as docs/deploy.md says: the worker runs in the app's lifespan, so it stops (its leases given back)
    # before uvicorn re-raises the SIGTERM
    assert "delivery worker started" in log.read_text() and "delivery worker stopped" in log.read_text()


# ---------------------------------------------------------------------------------------------- backups


def test_backup_restores_and_its_audit_chain_verifies(pg_url: str, tmp_path: Path) -> None:
    for tool in ("pg_dump", "pg_restore", "createdb", "dropdb"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    restored_name = f"{sa.make_url(pg_url).database}_restored"
    restored_url = sa.make_url(pg_url).set(database=restored_name).render_as_string(hide_password=False)
    scratch = {"cgt_gateway_restored": restored_name}
    _drop_database(pg_url, restored_name)

    with serve(tmp_path, env_extra={"CGT_GATEWAY_DATABASE_URL": pg_url}) as served:
        created = httpx.post(f"{served.base}/v1/orders", json=order_body("DEPLOY-1"), headers=ACME,
                             timeout=30)
        assert created.status_code == 201, created.text
        event = {"event_id": "DEPLOY-EVT-1", "type": "order.confirmed", "occurred_at": "2026-11-25T09:00:00Z",
                 "coi": order_body()["coi"], "data": {"slot_id": "SLOT-7"}}
        posted = httpx.post(f"{served.base}/v1/orders/DEPLOY-1/events", json=event, headers=ACME, timeout=30)
        assert posted.status_code == 201, posted.text
        assert httpx.get(f"{served.base}/v1/orders/DEPLOY-1", headers=ACME, timeout=30).status_code == 200

        env = tool_env(CGT_GATEWAY_DATABASE_URL=pg_url, RESTORED_URL=restored_url)
        try:
            head = bash(doc_command("cgt-gateway audit verify"), env, tmp_path)
            assert head.returncode == 0, head.stderr
            match = re.fullmatch(r"audit chain intact: (\d+) records; head (\d+) ([0-9a-f]{64})\n",
                                 head.stdout)
            assert match and int(match.group(1)) > 0, head.stdout
            env["ANCHOR"] = f"{match.group(2)}:{match.group(3)}"
            for line in (
                'pg_dump --format=custom --file=cgt-gateway.dump "$CGT_GATEWAY_DATABASE_URL"',
                'createdb --maintenance-db="$CGT_GATEWAY_DATABASE_URL" cgt_gateway_restored',
                'pg_restore --exit-on-error --no-owner --dbname="$RESTORED_URL" cgt-gateway.dump',
                'CGT_GATEWAY_DATABASE_URL="$RESTORED_URL" cgt-gateway audit verify --anchor "$ANCHOR"',
            ):
                command = doc_command(line)
                done = bash(substitute(command, scratch) if "cgt_gateway_restored" in command else command,
                            env, tmp_path)
                assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"
            assert done.stdout.startswith("audit chain intact: "), done.stdout
            assert _orders(restored_url) == _orders(pg_url) != []

            # a restore that lost a record is caught
            engine = make_engine(restored_url)
            try:
                with engine.begin() as conn:
                    conn.execute(sa.text("DELETE FROM audit_record WHERE seq = (SELECT min(seq) FROM "
                                         "audit_record)"))
            finally:
                engine.dispose()
            broken = bash(doc_command('CGT_GATEWAY_DATABASE_URL="$RESTORED_URL" cgt-gateway audit verify '
                                      '--anchor "$ANCHOR"'), env, tmp_path)
            assert broken.returncode == 1 and "BROKEN" in broken.stderr, broken.stdout + broken.stderr
        finally:
            dropped = bash(substitute(doc_command('dropdb --maintenance-db="$CGT_GATEWAY_DATABASE_URL" '
                                                  'cgt_gateway_restored'), scratch), env, tmp_path)
    assert dropped.returncode == 0, dropped.stderr


def _orders(url: str) -> list[tuple[str, str, int]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT o.order_id, o.status, (SELECT count(*) FROM order_event e WHERE e.order_pk = o.id) "
                "FROM cgt_order o ORDER BY o.order_id")).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in rows]


def _drop_database(url: str, name: str) -> None:
    admin = make_engine(sa.make_url(url).set(database="postgres").render_as_string(hide_password=False),
                        isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


# ---------------------------------------------------------------------------------------------- readiness


def test_readiness_fails_while_the_database_is_unreachable(pg_url: str, tmp_path: Path) -> None:
    """A running server whose database connection is cut answers /readyz 503, then 200 once it is back."""
    target = sa.make_url(pg_url)
    proxy_port = free_port()
    via_proxy = target.set(host="127.0.0.1", port=proxy_port).render_as_string(hide_password=False)
    proxy_cmd = [sys.executable, "-m", "tests.e2e.tcp_proxy", str(proxy_port), target.host or "127.0.0.1",
                 str(target.port or 5432)]

    def start_proxy() -> subprocess.Popen[bytes]:
        proxy = subprocess.Popen(proxy_cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proxy.stdout is not None and proxy.stdout.readline() == b"ready\n"
        return proxy

    proxy = start_proxy()
    try:
        with serve(tmp_path, env_extra={"CGT_GATEWAY_DATABASE_URL": via_proxy}) as served:
            assert httpx.get(served.base + "/readyz", timeout=10).status_code == 200
            proxy.kill()
            proxy.wait()
            proxy.stdout.close()  # type: ignore[union-attr]
            down = httpx.get(served.base + "/readyz", timeout=30)
            assert down.status_code == 503
            assert down.headers["content-type"].startswith("application/problem+json")
            assert down.json()["code"] == "not-ready"
            assert httpx.get(served.base + "/healthz", timeout=10).status_code == 200  # alive, not ready
            proxy = start_proxy()
            deadline = time.monotonic() + 30
            while httpx.get(served.base + "/readyz", timeout=30).status_code != 200:
                assert time.monotonic() < deadline, "not ready again after the database came back"
                time.sleep(0.2)
    finally:
        if proxy.poll() is None:
            proxy.kill()
        proxy.wait()
        if proxy.stdout is not None:
            proxy.stdout.close()


def test_readiness_fails_while_the_schema_is_behind(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    from gateway.store.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_revision(script.get_current_head())
    assert isinstance(head.down_revision, str)
    with serve(tmp_path) as served:
        engine = make_engine(served.env["CGT_GATEWAY_DATABASE_URL"])
        try:
            set_version = sa.text("UPDATE alembic_version SET version_num = :v")
            with engine.begin() as conn:
                conn.execute(set_version, {"v": head.down_revision})
            behind = httpx.get(served.base + "/readyz", timeout=10)
            assert behind.status_code == 503 and "behind" in behind.json()["detail"], behind.text
            with engine.begin() as conn:
                conn.execute(set_version, {"v": head.revision})
            assert httpx.get(served.base + "/readyz", timeout=10).status_code == 200
        finally:
            engine.dispose()


# ---------------------------------------------------------------------------------------------- make bench


def test_make_bench_scale_part(pg_url: str, tmp_path: Path) -> None:
    """The document's ``make bench`` line, in ``--tiny`` mode (seconds) on the test database."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    command = substitute(
        doc_command('make bench BENCH_ARGS="--parts scale --pg-url '
                    'postgresql://postgres@127.0.0.1:5432/bench_scale"'),
        {"postgresql://postgres@127.0.0.1:5432/bench_scale": f"{pg_url} --tiny --output-dir {tmp_path}"})
    done = bash(command, tool_env(), ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    scale = result["scale"]["postgresql"]
    assert set(scale["runs"]) == {"1", "2"}
    for processes, run in scale["runs"].items():
        assert run["saturation"]["per_s"] > 0 and run["processes"] == int(processes)
        assert set(run["saturation"]["statuses"]) <= {"200", "201", "connections"}, run["saturation"]
    assert scale["runs"]["2"]["server_pids"] >= 2  # two serving processes were measured, not one
    assert scale["bytes_per_event"] > 0
    assert "Scale (postgresql): ingest events/s" in (tmp_path / "latest.md").read_text()
