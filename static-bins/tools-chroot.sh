#!/bin/sh
# Make the tools chroot that static-bins/bundle.py takes its binaries from.
#
#   static-bins/tools-chroot.sh OUTDIR
#
# A minimal Debian bookworm made with mmdebstrap from the build machine's own
# apt sources (no mirror host is written here). The hash of the inputs (this
# script, the package list and the sources files) is kept in OUTDIR/.inputs-hash;
# an OUTDIR with the same hash is left as it is. The chroot is built in a
# temporary directory next to OUTDIR and renamed into place when complete.
set -eu

die() {
    echo "tools-chroot: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
out=${1%/}

packages="
bubblewrap
squashfuse
fuse3
fuse-overlayfs
unionfs-fuse
squashfs-tools
slirp4netns
bash
socat
python3
python3-click
python3-psutil
python3-pyroute2
python3-xlib
python3-pyelftools
"

# The machine's apt sources: deb822 .sources files and one-line .list files.
sources=""
[ -f /etc/apt/sources.list ] && [ -s /etc/apt/sources.list ] && sources=/etc/apt/sources.list
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && sources="$sources $f"
done
[ -n "$sources" ] || die "no apt sources found in /etc/apt (configure apt first)"

# shellcheck disable=SC2086
hash=$(
    {
        cat "$0"
        echo "$packages"
        for f in $sources; do echo "== $f"; cat "$f"; done
    } | sha256sum | cut -d' ' -f1
)

if [ -f "$out/.inputs-hash" ] && [ "$(cat "$out/.inputs-hash")" = "$hash" ]; then
    echo "tools-chroot: $out is up to date"
    exit 0
fi

command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -rf "$tmp"' EXIT INT TERM
rm -rf "$tmp"

# shellcheck disable=SC2086 # one package per word
include=$(echo $packages | tr ' ' ',')
echo "tools-chroot: building $out"
# shellcheck disable=SC2086
mmdebstrap --variant=minbase --mode=unshare --include="$include" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$tmp" $sources

echo "$hash" >"$tmp/.inputs-hash"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT INT TERM
echo "tools-chroot: $out done"
