"""Shell completion as the user guide documents it: bash sources the
script click generates, and completes inkind's commands with it."""

from __future__ import annotations

import subprocess

from restore_page import Page


def test_bash_completion_script_completes_commands(tmp_path):
    env = Page(tmp_path).env  # `inkind` on PATH, as after setup
    script = 'eval "$(_INKIND_COMPLETE=bash_source inkind)"\n'
    script += (
        'COMP_WORDS=(inkind sna); COMP_CWORD=1; _inkind_completion inkind; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    script += 'COMP_WORDS=(inkind snapshots ""); COMP_CWORD=2; COMPREPLY=(); _inkind_completion inkind; printf "%s\\n" "${COMPREPLY[@]}"\n'
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["snapshots", "list", "prune"]
    assert (
        "complete -o nosort -F _inkind_completion inkind"
        in subprocess.run(
            ["inkind"], capture_output=True, text=True, env={**env, "_INKIND_COMPLETE": "bash_source"}
        ).stdout
    )
