"""``inkind devices``: LVM volumes from lvs, with the sources covering them."""

from __future__ import annotations

from lvm_helpers import BLOCK

from inkind.cli.devices import human


def test_devices_lists_volumes_and_coverage(fake_lvm, inkind_config, inkind_cli, tmp_path) -> None:
    fake_lvm.linear("vg0", "root", 4 * BLOCK)
    fake_lvm.pool("vg0", "pool")
    fake_lvm.thin("vg0", "pool", "db", 8 * BLOCK)
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"x" * BLOCK)
    config = inkind_config(
        {
            "vols": {"type": "lvm", "volumes": ["vg0/d*"]},
            "everything": {"type": "lvm", "volumes": ["vg0/*"]},
            "disk": {"type": "image", "path": disk},
        }
    )
    r = inkind_cli("-c", config, "devices", "--json")
    assert r.returncode == 0, r.stderr
    rows = {d["volume"]: d for d in r.json()["devices"] if d["volume"]}
    assert sorted(rows) == ["vg0/db", "vg0/root"]  # no pool, no hidden metadata volume
    assert rows["vg0/db"]["kind"] == "lvm thin" and rows["vg0/db"]["size"] == 8 * BLOCK
    assert rows["vg0/db"]["sources"] == ["vols", "everything"]
    assert rows["vg0/root"]["sources"] == ["everything"]
    text = inkind_cli("-c", config, "devices")
    assert "vg0/root" in text.stdout and "1.0M" in text.stdout


def test_devices_without_lvm_or_config(inkind_cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no lvs
    r = inkind_cli("-c", tmp_path / "missing.toml", "devices", "--json")
    assert r.returncode == 0
    notes = r.json()["notes"]
    assert any("command not found: lvs" in n for n in notes)
    assert any("no usable config" in n for n in notes)
    assert all(d["sources"] is None for d in r.json()["devices"])


def test_human_sizes() -> None:
    assert [human(n) for n in (0, 1023, 1024, 5 << 20, 3 << 40, 5000 << 40)] == [
        "0B",
        "1023B",
        "1.0K",
        "5.0M",
        "3.0T",
        "5000.0T",
    ]
