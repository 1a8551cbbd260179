# Shared by build.sh and build-busybox.sh (sourced, not run).

# Version of the rootfs layout the launcher can rely on (mount targets,
# helpers in /usr/bin, metadata files). Raise it when that contract changes.
ROOTFS_VERSION=0.1.0

# Everything the launcher binds onto. The rootfs is read-only at run time
# (squashfs) and bwrap cannot create a missing mount target there, so each
# one must already exist, with the right kind (file or directory).
BIND_FILES=(
    etc/hosts etc/resolv.conf etc/hostname etc/nsswitch.conf etc/localtime
    etc/machine-id var/lib/dbus/machine-id etc/passwd etc/group
    etc/ld.so.cache etc/X11/xorg.conf var/log/wtmp var/log/lastlog
)
BIND_DIRS=(
    proc sys dev run tmp home root opt mnt media
    run/media run/udev run/dbus run/systemd run/user
    usr/lib/modules usr/bin/nvidia usr/lib/nvidia/64 usr/lib/nvidia/32
    var/RunDir var/mnt var/home var/roothome var/tmp var/log
)

die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# make_bind_targets ROOT: create every mount target as a real file or dir.
make_bind_targets() {
    local root=$1 path target

    for path in "${BIND_DIRS[@]}"; do
        [[ -L $root/$path ]] && rm -f "$root/$path"
        mkdir -p "$root/$path"
    done
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 755 "$root/root"

    for path in "${BIND_FILES[@]}"; do
        mkdir -p "$root/${path%/*}"
        if [[ -L $root/$path ]]; then
            # An absolute symlink points into the host once bound; keep its
            # content (e.g. the zoneinfo of /etc/localtime) as a plain file.
            target=$(readlink "$root/$path")
            [[ $target == /* ]] || target=/${path%/*}/$target
            rm -f "$root/$path"
            if [[ -f $root$target ]]; then
                cp "$root$target" "$root/$path"
            fi
        fi
        [[ -e $root/$path ]] || : >"$root/$path"
    done
}

# write_metadata ROOT TYPE: the .version, .type and .build files.
write_metadata() {
    local root=$1 type=$2

    echo "$ROOTFS_VERSION" >"$root/.version"
    echo "$type" >"$root/.type"
    date -u +%y.%m.%d.%H%M%S >"$root/.build"
}

# replace_dir NEW OUT: move a finished tree NEW over OUT.
replace_dir() {
    local new=$1 out=$2 old

    if [[ -e $out ]]; then
        old=$(mktemp -d "$out.old.XXXXXX")
        mv "$out" "$old/tree"
        mv "$new" "$out"
        rm -rf "$old"
    else
        mv "$new" "$out"
    fi
}
