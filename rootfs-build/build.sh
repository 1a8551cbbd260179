#!/usr/bin/env bash
# Build the default runimage rootfs: Debian bookworm (minbase) with the
# in-container helpers, from the apt sources this machine is configured with.
#
#   rootfs-build/build.sh OUTDIR
#
# Environment:
#   ROOTFS_SUITE        Debian suite (default: bookworm)
#   ROOTFS_APT_SOURCES  space-separated apt sources files to build from
#                       (default: /etc/apt/sources.list and
#                       /etc/apt/sources.list.d/debian.sources, those present)
#   ROOTFS_FORCE=1      rebuild even when OUTDIR is up to date
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=rootfs-build/common.sh
source "$here/common.sh"

[[ $# == 1 ]] || die "usage: build.sh OUTDIR"
out=$(realpath -m "$1")
suite=${ROOTFS_SUITE:-bookworm}

[[ $EUID == 0 ]] || die "must run as root (the rootfs must be owned by root; try: sudo $0 $1)"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"

sources=()
find_sources() {
    local f found=()

    if [[ -n ${ROOTFS_APT_SOURCES:-} ]]; then
        read -ra found <<<"$ROOTFS_APT_SOURCES"
    else
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/debian.sources; do
            [[ -s $f ]] && found+=("$f")
        done
    fi
    ((${#found[@]})) || die "no apt sources found (set ROOTFS_APT_SOURCES to a sources file)"
    for f in "${found[@]}"; do
        [[ -r $f ]] || die "cannot read apt sources file $f"
    done
    sources=("${found[@]}")
}

find_sources
mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt")

# Everything that decides the result, so an unchanged rootfs is not rebuilt.
inputs_hash() {
    (
        cd "$here"
        echo "suite $suite"
        find build.sh common.sh packages.txt files -type f,l | LC_ALL=C sort |
            while read -r f; do
                echo "== $f $(stat -c %a "$f")"
                if [[ -L $f ]]; then readlink "$f"; else cat "$f"; fi
            done
        for f in "${sources[@]}"; do
            echo "== $f"
            cat "$f"
        done
    ) | sha256sum | cut -d' ' -f1
}

hash=$(inputs_hash)
if [[ ${ROOTFS_FORCE:-0} != 1 && -f $out/.inputs-hash && $(<"$out/.inputs-hash") == "$hash" ]]; then
    echo "rootfs up to date: $out"
    exit 0
fi

mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "$out.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rmdir "$tmp"   # mmdebstrap wants to create the directory itself

# Documentation and translations are not kept, now and for later installs
# (the options stay in the rootfs's dpkg.cfg.d).
dpkg_opts=(
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --dpkgopt='path-exclude=/usr/share/lintian/*'
)
# Set up merged /usr directly, as debootstrap does: otherwise
# init-system-helpers pulls in usrmerge and with it the whole of perl.
merged_usr_hook=/usr/share/mmdebstrap/hooks/merged-usr
[[ -d $merged_usr_hook ]] || die "$merged_usr_hook not found (mmdebstrap 1.x is needed)"

mmdebstrap_args=(
    --variant=minbase
    --hook-dir="$merged_usr_hook"
    --include="$(IFS=,; echo "${packages[*]}")"
    --aptopt='APT::Install-Recommends "false"'
    --aptopt='APT::Install-Suggests "false"'
    "${dpkg_opts[@]}"
    "$suite" "$tmp" "${sources[@]}"
)

echo "building $suite rootfs into $out (sources: ${sources[*]})"
start=$SECONDS
if ! mmdebstrap --mode=unshare "${mmdebstrap_args[@]}"; then
    echo "mmdebstrap --mode=unshare failed; trying --mode=root" >&2
    rm -rf "$tmp"
    mmdebstrap --mode=root "${mmdebstrap_args[@]}"
fi

# The in-container helpers and configuration.
cp -a --no-preserve=ownership "$here/files/." "$tmp/"
ln -sf sudo "$tmp/usr/bin/pkexec"
if ! grep -q /etc/runimage/bashrc "$tmp/etc/bash.bashrc"; then
    printf '\n# runimage: prompt, aliases\n[ -r /etc/runimage/bashrc ] && . /etc/runimage/bashrc\n' \
        >>"$tmp/etc/bash.bashrc"
fi

# Host-specific files left by the build: the launcher binds the host's own.
: >"$tmp/etc/resolv.conf"
: >"$tmp/etc/machine-id"
echo runimage >"$tmp/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$tmp/etc/hosts"
chmod 644 "$tmp/etc/resolv.conf" "$tmp/etc/machine-id" "$tmp/etc/hostname" "$tmp/etc/hosts"
make_bind_targets "$tmp"

# Caches, package lists and logs only make the image bigger.
rm -rf "$tmp"/var/cache/apt/* "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/debconf/*-old \
    "$tmp"/var/lib/dpkg/*-old "$tmp"/var/cache/ldconfig/aux-cache "$tmp"/tmp/* "$tmp"/var/tmp/*
mkdir -p "$tmp/var/lib/apt/lists/partial" "$tmp/var/cache/apt/archives/partial"
find "$tmp/var/log" -type f -exec truncate -s 0 {} +

rm -f "$tmp"/etc/{passwd,group,shadow,gshadow}-

# The image is packed and read back by an ordinary user (root is not mapped
# inside the container): everything stays root-owned but readable by all.
chmod -R o+rX "$tmp"

write_metadata "$tmp" debian
echo "$hash" >"$tmp/.inputs-hash"
chmod 755 "$tmp"

replace_dir "$tmp" "$out"
trap - EXIT
echo "rootfs built in $((SECONDS - start)) s: $out ($(du -sh "$out" | cut -f1))"
