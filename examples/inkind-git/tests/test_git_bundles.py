"""inkind-git, tested the way any plugin author can: only the fixtures
inkind ships (inkind.testing, loaded through its pytest11 entry point)."""

import subprocess

import pytest


def git(*args, cwd):
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True, text=True).stdout


def commit(repo, name, text):
    (repo / name).write_text(text)
    git("add", name, cwd=repo)
    git("commit", "-q", "-m", f"add {name}", cwd=repo)


@pytest.fixture
def repos(tmp_path):
    out = []
    for n in ("alpha", "beta"):
        repo = tmp_path / "git" / n
        repo.mkdir(parents=True)
        git("init", "-q", "-b", "main", cwd=repo)
        commit(repo, "README", f"{n}\n")
        git("tag", "v1", cwd=repo)
        out.append(repo)
    return out


@pytest.fixture
def config(tmp_path, repos, inkind_config):
    return inkind_config({"code": {"type": "git", "repositories": [str(tmp_path / "git" / "*")]}})


def test_restore_with_git_clone_gives_the_same_history(
    tmp_path, repos, config, inkind_run, inkind_cli, inkind_store
):
    assert inkind_run(config).exit_status == 0
    assert sorted(p.name for p in (inkind_store / "code").iterdir()) == ["alpha.bundle", "beta.bundle"]
    r = inkind_cli("-c", config, "restore", "code", "--to", tmp_path / "back", "--run")
    assert r.returncode == 0, r.stderr
    for repo in repos:
        clone = tmp_path / "back" / repo.name
        assert git("log", "--format=%H %s", "--all", cwd=clone) == git(
            "log", "--format=%H %s", "--all", cwd=repo
        )
        assert git("tag", cwd=clone) == "v1\n"


def test_unchanged_repositories_cost_nothing(config, assert_second_run_writes_nothing):
    second = assert_second_run_writes_nothing(config)
    assert second.results[0].stats.bytes_read == 0  # git bundle did not even run


def test_a_new_commit_rewrites_only_that_bundle(repos, config, inkind_run, inkind_store):
    inkind_run(config)
    beta = (inkind_store / "code" / "beta.bundle").stat().st_ino
    commit(repos[0], "more", "new work\n")
    s = inkind_run(config).results[0].stats
    assert (s.objects_changed, s.objects_unchanged) == (1, 1)
    assert (inkind_store / "code" / "beta.bundle").stat().st_ino == beta


def test_full_pass_drops_the_bundle_of_a_removed_repository(repos, config, inkind_run, inkind_store):
    import shutil

    inkind_run(config)
    shutil.rmtree(repos[1])
    inkind_run(config)
    assert (inkind_store / "code" / "beta.bundle").exists()  # kept until a full pass
    assert inkind_run(config, full=True).results[0].stats.objects_deleted == 1
    assert not (inkind_store / "code" / "beta.bundle").exists()


def test_scrub_names_a_corrupt_bundle(config, inkind_run, inkind_store, inkind_scrub_corruption):
    inkind_run(config)
    inkind_scrub_corruption(config, "code", inkind_store / "code" / "alpha.bundle")


def test_a_killed_backup_leaves_a_sound_store(repos, config, inkind_run, inkind_kill_and_check):
    inkind_run(config)
    for i, delay in enumerate((0.3, 0.5, 0.7)):
        commit(repos[i % 2], f"k{i}", "x" * 10000)
        inkind_kill_and_check(config, "code", delay=delay)
