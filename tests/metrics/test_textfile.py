"""The Prometheus textfile and status as a monitoring check."""

import json
import re

from inkind.testing import render_config


def config_with_metrics(tmp_path, store, src, table="metrics", **extra):
    text = render_config(store, {"home": {"type": "files", "path": src, **extra}})
    text += f'\n[{table}]\ntextfile = "{tmp_path / "inkind.prom"}"\n'
    cfg = tmp_path / "inkind.toml"
    cfg.write_text(text)
    return cfg


def test_textfile_after_a_run(tmp_path, inkind_store, inkind_cli):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("12345")
    cfg = config_with_metrics(tmp_path, inkind_store, src)
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    prom = (tmp_path / "inkind.prom").read_text()
    assert re.search(
        r'^inkind_last_success_timestamp_seconds\{source="home",type="files"\} 1\d{9}\.0$', prom, re.M
    )
    assert 'inkind_last_run_bytes_written{source="home",type="files"} 5' in prom
    assert 'inkind_last_run_outcome{source="home",type="files",outcome="ok"} 1' in prom
    assert 'inkind_last_run_outcome{source="home",type="files",outcome="failed"} 0' in prom
    assert 'inkind_last_run_objects_corrupt{source="home",type="files"} 0' in prom
    assert "# TYPE inkind_last_run_duration_seconds gauge" in prom
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".prom.tmp")]


def test_textfile_from_the_plugins_table(tmp_path, inkind_store, inkind_cli):
    """``[plugins.metrics]``, the table the metrics plugin declares
    (``[metrics]`` above is its older spelling)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("123")
    cfg = config_with_metrics(tmp_path, inkind_store, src, table="plugins.metrics")
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    prom = (tmp_path / "inkind.prom").read_text()
    assert 'inkind_last_run_bytes_written{source="home",type="files"} 3' in prom


def test_textfile_counts_corruption(tmp_path, inkind_store, inkind_cli):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("content")
    cfg = config_with_metrics(tmp_path, inkind_store, src)
    inkind_cli("-c", cfg, "backup")
    stored = inkind_store / "home" / "f"
    st = stored.stat()
    stored.write_text("CONTENT")
    import os

    os.utime(stored, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert inkind_cli("-c", cfg, "backup", "--scrub-fraction", "1").returncode == 2
    prom = (tmp_path / "inkind.prom").read_text()
    assert 'inkind_last_run_objects_corrupt{source="home",type="files"} 1' in prom
    assert 'inkind_last_run_outcome{source="home",type="files",outcome="failed"} 1' in prom


def test_status_fails_when_last_success_is_too_old(tmp_path, inkind_store, inkind_cli):
    src = tmp_path / "src"
    src.mkdir()
    cfg = config_with_metrics(tmp_path, inkind_store, src, max_age="1h")
    r = inkind_cli("-c", cfg, "status", "--json")
    assert r.returncode == 2 and r.json()["sources"][0]["stale"] is True  # never backed up
    assert inkind_cli("-c", cfg, "backup").returncode == 0
    r = inkind_cli("-c", cfg, "status", "--json")
    assert r.returncode == 0 and r.json()["sources"][0]["stale"] is False
    state_file = inkind_store / ".inkind" / "sources" / "home.json"
    state = json.loads(state_file.read_text())
    state["last_success"] = "2020-01-01T00:00:00Z"
    state_file.write_text(json.dumps(state))
    r = inkind_cli("-c", cfg, "status")
    assert r.returncode == 2
    assert "home: last success 2020-01-01T00:00:00Z is older than max_age" in r.stdout


def test_bad_max_age_names_the_key(tmp_path, inkind_store, inkind_cli):
    cfg = config_with_metrics(tmp_path, inkind_store, tmp_path, max_age="soon")
    r = inkind_cli("-c", cfg, "status")
    assert r.returncode == 2 and "sources.home.max_age" in r.stderr
