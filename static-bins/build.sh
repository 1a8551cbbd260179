#!/bin/sh
# Build the portable tools for RunDir/static.
#
#   static-bins/build.sh OUTDIR        (the Makefile: build/RunDir/static)
#
# The tools chroot is kept in build/tools-chroot and rebuilt only when its
# inputs change; the bundle in OUTDIR is made anew from it each time.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

"$here/tools-chroot.sh" "$repo/build/tools-chroot"

# pyelftools from the host's Python, else the chroot's own copy.
python=${PYTHON:-python3}
if ! "$python" -c 'import elftools' 2>/dev/null; then
    PYTHONPATH="$repo/build/tools-chroot/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
fi
exec "$python" "$here/bundle.py" --chroot "$repo/build/tools-chroot" --out "$1"
