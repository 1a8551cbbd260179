#!/usr/bin/env bash
# Runs the test suite as an ordinary user, never as root.
#
# As root (CI, a fresh machine), it creates the unprivileged user runimage-test, makes /dev/fuse
# usable (0666, as common distributions ship it), copies what the tests run into a directory that
# user owns (the checkout may sit where it cannot enter), and runs pytest there as that user.
# As an ordinary user, it runs pytest in place.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
user=${RUNIMAGE_TEST_USER:-runimage-test}
pytest_args=("$@")

run_in_place() {
    cd "$top"
    export RUNIMAGE_TEST_RUNDIR="$top/build/RunDir"
    export RUNIMAGE_TEST_IMAGE="$top/runimage"
    exec /usr/bin/python3 -m pytest -p no:cacheprovider "${pytest_args[@]}" tests
}

if [ "$(id -u)" != 0 ]; then
    run_in_place
fi

id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
[ -e /dev/fuse ] && chmod 0666 /dev/fuse

home=$(getent passwd "$user" | cut -d: -f6)
work="$home/runimage-tests"
rm -rf "$work"
mkdir -p "$work/build"
cp -a "$top/tests" "$top/src" "$top/pyproject.toml" "$work/"
[ -d "$top/static-bins" ] && cp -a "$top/static-bins" "$work/"
cp -a "$top/build/RunDir" "$work/build/RunDir"
[ -d "$top/build/busybox-rootfs" ] && cp -a "$top/build/busybox-rootfs" "$work/build/"
[ -f "$top/runimage" ] && cp -a "$top/runimage" "$work/runimage.img"
chown -R "$user:" "$work"

cd "$work"
exec runuser -u "$user" -- env \
    HOME="$home" \
    RUNIMAGE_TEST_RUNDIR="$work/build/RunDir" \
    RUNIMAGE_TEST_IMAGE="$work/runimage.img" \
    RUNIMAGE_TEST_BUSYBOX="$work/build/busybox-rootfs" \
    /usr/bin/python3 -m pytest -p no:cacheprovider "${pytest_args[@]}" tests
