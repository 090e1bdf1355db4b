"""The tests' fork server (inkind.testing.forkserver) stands in for a new
interpreter: the same exit codes, output, environment, working directory
and stored files, and a run past its timeout is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from inkind.testing import forkserver, render_config, run_inkind


def interpreter(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``inkind ARGS`` in a new interpreter."""
    # verify-after: compared with the fork's run of the same command, which verifies
    p = subprocess.run([sys.executable, "-m", "inkind", *args], capture_output=True, text=True)
    return outcome(p)


def outcome(p: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def client():
    c = forkserver.Client()
    yield c
    c.close()


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["-c", "/nonexistent/inkind.toml", "backup"],
        ["backup", "--no-such-option"],
        ["no-such-command"],
    ],
)
def test_a_fork_answers_as_an_interpreter_does(client, args):
    assert outcome(client.run(args, dict(os.environ), 60)) == interpreter(*args)


def test_a_fork_sees_the_runs_environment_and_directory(client, tmp_path, monkeypatch):
    env = {**os.environ, "INKIND_CONFIG": str(tmp_path / "from-env.toml")}
    assert "from-env.toml" in client.run(["backup"], env, 60).stderr
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.toml").write_text("[store\n")
    done = client.run(["-c", "here.toml", "backup"], dict(os.environ), 60)
    assert done.returncode == 2 and "here.toml" in done.stderr
    assert outcome(done) == interpreter("-c", "here.toml", "backup")


def test_a_forked_backup_stores_what_an_interpreter_verifies(tmp_path, inkind_store):
    src = tmp_path / "tree"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"x" * 5000)
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(inkind_store, {"home": {"type": "files", "path": src}}))
    assert forkserver.usable(dict(os.environ))
    assert run_inkind("-c", cfg, "backup").returncode == 0
    assert (inkind_store / "home" / "d" / "f").read_bytes() == b"x" * 5000
    assert interpreter("-c", str(cfg), "verify")[0] == 0


def test_a_run_past_its_timeout_is_killed_and_the_next_one_runs(client):
    with pytest.raises(subprocess.TimeoutExpired):
        client.run(["--version"], dict(os.environ), 0)
    assert client.run(["--version"], dict(os.environ), 60).returncode == 0


def test_what_a_fork_cannot_copy_gets_an_interpreter(monkeypatch):
    env = dict(os.environ)
    assert not forkserver.usable({**env, "PYTHONPATH": "/elsewhere"})
    monkeypatch.setenv("INKIND_TEST_FORK", "0")
    assert not forkserver.usable(dict(os.environ))


def test_a_started_run_is_waited_for_and_killed_as_a_popen_is(client, tmp_path):
    fifo = tmp_path / "c.toml"
    os.mkfifo(fifo)  # reading the config waits for a writer that never comes
    with open(os.devnull, "wb") as null:
        running = client.start(["-c", str(fifo), "backup"], dict(os.environ), null.fileno(), null.fileno())
    with running:
        assert running.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            running.wait(0.2)
        running.send_signal(signal.SIGKILL)
        assert running.wait() == -signal.SIGKILL
        assert running.poll() == -signal.SIGKILL
