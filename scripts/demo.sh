#!/usr/bin/env bash
# Back up the bundled example tree into ./inkind-store and show the restore.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A store exists only once `init` made it: a run never fills the empty
# mount point of an unmounted backup disk.
.venv/bin/inkind -c examples/quickstart.toml init
.venv/bin/inkind -c examples/quickstart.toml backup
echo
echo "Stored in ./inkind-store/quickstart. Run it again: nothing is rewritten."
.venv/bin/inkind -c examples/quickstart.toml backup
echo
echo "Each run left a snapshot of the store (history):"
.venv/bin/inkind -c examples/quickstart.toml snapshots list
echo
echo "To restore, run the standard-tool command that inkind prints:"
.venv/bin/inkind -c examples/quickstart.toml restore quickstart --to /tmp/quickstart-restore
