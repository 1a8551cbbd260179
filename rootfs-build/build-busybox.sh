#!/usr/bin/env bash
# Build a tiny busybox rootfs for fast tests: Debian's static busybox, its
# applets as symlinks, and the mount targets the launcher binds onto.
#
#   rootfs-build/build-busybox.sh OUTDIR
#
# Uses /bin/busybox when the busybox-static package is installed, otherwise
# downloads that package with apt-get.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=rootfs-build/common.sh
source "$here/common.sh"

[[ $# == 1 ]] || die "usage: build-busybox.sh OUTDIR"
out=$(realpath -m "$1")

mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "$out.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [[ $(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null) == "install ok installed" ]]; then
    busybox=/bin/busybox
else
    mkdir "$tmp/.deb"
    (cd "$tmp/.deb" && apt-get download -q busybox-static) ||
        die "cannot get busybox-static (apt-get install busybox-static)"
    dpkg-deb -x "$tmp/.deb"/busybox-static_*.deb "$tmp/.deb/x"
    busybox=$tmp/.deb/x/bin/busybox
fi

# Merged /usr, as in Debian: everything lives in /usr/bin.
mkdir -p "$tmp/usr/bin" "$tmp/usr/lib" "$tmp/etc"
install -m 755 "$busybox" "$tmp/usr/bin/busybox"
rm -rf "$tmp/.deb"
ln -s usr/bin "$tmp/bin"
ln -s usr/bin "$tmp/sbin"
ln -s bin "$tmp/usr/sbin"
ln -s usr/lib "$tmp/lib"

# Package manager applets are left out: the launcher tells rootfs types
# apart by their package manager, and this root has none.
"$tmp/usr/bin/busybox" --list | while read -r applet; do
    case $applet in
        busybox | dpkg | dpkg-deb | rpm | rpm2cpio) continue ;;
    esac
    ln -sf busybox "$tmp/usr/bin/$applet"
done
for applet in sh ls cat echo env true false id sleep kill printf test; do
    [[ -e $tmp/usr/bin/$applet ]] || die "busybox has no $applet applet"
done

cat >"$tmp/etc/os-release" <<'OS'
NAME="BusyBox"
ID=busybox
PRETTY_NAME="BusyBox (runimage test rootfs)"
OS
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$tmp/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$tmp/etc/nsswitch.conf"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost\n' >"$tmp/etc/hosts"
echo runimage >"$tmp/etc/hostname"
make_bind_targets "$tmp"

write_metadata "$tmp" busybox
chmod -R u+rwX,go+rX,go-w "$tmp"
[[ $EUID == 0 ]] && chown -R -h root:root "$tmp"
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"

replace_dir "$tmp" "$out"
trap - EXIT
echo "busybox rootfs built: $out"
