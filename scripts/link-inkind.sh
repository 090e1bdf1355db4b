#!/usr/bin/env bash
# Put the venv's inkind on PATH: as root, a symlink $INKIND_BIN_DIR/inkind
# (default /usr/local/bin) to .venv/bin/inkind, made only when nothing else
# is there. Says what it did, or how to do it by hand. Run by setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$PWD/.venv/bin/inkind"
bin_dir=${INKIND_BIN_DIR:-/usr/local/bin}
link="$bin_dir/inkind"
by_hand="put it on PATH with: export PATH=\"$PWD/.venv/bin:\$PATH\""
if [[ ! -x $target ]]; then
  echo "setup: $target missing (the venv is not set up)" >&2
  exit 2
fi
if [[ -L $link && $(readlink "$link") == "$target" ]]; then
  echo "setup: $link -> $target (already there)"
elif [[ -L $link && ! -e $link && -w $bin_dir ]]; then
  # A link to a checkout that is gone (a removed clone): nothing to keep.
  gone=$(readlink "$link")
  ln -sfn "$target" "$link"
  echo "setup: relinked $link -> $target (it pointed to $gone, which is gone)"
elif [[ -e $link || -L $link ]]; then
  echo "setup: $link exists and is not this checkout's inkind: left alone; $by_hand"
elif [[ $(id -u) -ne 0 || ! -d $bin_dir || ! -w $bin_dir ]]; then
  echo "setup: inkind is $target; $by_hand"
else
  ln -s "$target" "$link"
  echo "setup: linked $link -> $target"
fi
