#!/usr/bin/env bash
# Set up inkind on a fresh Debian/Ubuntu machine: system packages that are
# missing (installed with apt-get, as root), then a virtual environment in
# .venv with inkind installed in editable mode.
#   scripts/setup.sh          what `inkind backup` needs (rsync, attr)
#   scripts/setup.sh --test   also everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

# command-that-must-exist:debian-package
runtime=(rsync:rsync getfattr:attr)
testing=(
  setfacl:acl mkfs.btrfs:btrfs-progs mkfs.xfs:xfsprogs mkfs.ext4:e2fsprogs losetup:mount
  thin_delta:thin-provisioning-tools thin_restore:thin-provisioning-tools sqlite3:sqlite3
  mariadb-install-db:mariadb-server mariadb:mariadb-client pg_dump:postgresql-client
  git:git udevadm:udev systemd-analyze:systemd sshd:openssh-server ssh:openssh-client sudo:sudo
  ip:iproute2 tc:iproute2
)
wanted=("${runtime[@]}")
[[ "${1:-}" == "--test" ]] && wanted+=("${testing[@]}")

missing=()
for pair in "${wanted[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd || -x /sbin/$cmd ]] || missing+=("$pkg")
done
# The PostgreSQL server binaries live outside PATH.
if [[ "${1:-}" == "--test" ]] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
# GNU time (the load test measures peak RSS with it); `command -v time` finds the shell keyword.
if [[ "${1:-}" == "--test" && ! -x /usr/bin/time ]]; then missing+=(time); fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi

if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install ${missing[*]} (run with sudo, or install them)" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# An editable install leaves bytecode to the first import, and an
# environment with PYTHONDONTWRITEBYTECODE never keeps it: every `inkind`
# would compile its modules again (0.2 s a start). Compile them once here.
.venv/bin/python -m compileall -q src plugins examples >/dev/null
scripts/link-inkind.sh
