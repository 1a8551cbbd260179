#!/bin/sh
# Drives a built runimage runtime against a tiny busybox RunDir; TAP output.
#
#   tests/runtime/test_runtime.sh RUNTIME SCRATCH_DIR
#
# Runs everything as the calling user. Needs busybox and mksquashfs; the
# user-namespace and no-FUSE cases need bwrap, the mount cases /dev/fuse.
set -u

RUNTIME=${1:?usage: test_runtime.sh RUNTIME SCRATCH_DIR}
SCRATCH=${2:?usage: test_runtime.sh RUNTIME SCRATCH_DIR}

n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check() { # check DESCRIPTION COMMAND...
	desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
diag() { sed 's/^/# /' "$@"; }

case $SCRATCH in
*' '*) echo "Bail out! scratch dir must not contain spaces (it holds Run's interpreter)"; exit 1 ;;
esac
BUSYBOX=$(command -v busybox) || { echo "1..0 # SKIP no busybox"; exit 0; }
command -v mksquashfs >/dev/null || { echo "1..0 # SKIP no mksquashfs"; exit 0; }

RUNTIME=$(cd "$(dirname "$RUNTIME")" && pwd)/$(basename "$RUNTIME")
mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
rm -rf "$SCRATCH/rt"
W=$SCRATCH/rt
mkdir -p "$W/tmp" "$W/bin"
export TMPDIR="$W/tmp"
cp "$BUSYBOX" "$W/bin/busybox"
BB=$W/bin/busybox

has_fuse=no
[ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] && has_fuse=yes
has_bwrap=no
command -v bwrap >/dev/null && bwrap --dev-bind / / true 2>/dev/null && has_bwrap=yes

# The payload: Run prints its environment and arguments, then acts on $1.
make_payload() {
	d=$W/RunDir
	mkdir -p "$d/static" "$d/rootfs" "$d/config/deep/er"
	cp "$BB" "$d/static/busybox"
	cat >"$d/Run" <<RUN
#!$BB sh
echo "RUNIMAGE=\$RUNIMAGE"
echo "RUNOFFSET=\$RUNOFFSET"
echo "ARGV0=\$ARGV0"
echo "RUNDIR=\$RUNDIR"
for a in "\$@"; do printf 'arg=[%s]\n' "\$a"; done
case "\${1-}" in
exit) exit "\$2" ;;
sleep) exec $BB sleep "\$2" ;;
selfkill) kill -"\$2" \$\$ ;;
cat) cat "\$RUNDIR/\$2" ;;
ino) shift; for f in "\$@"; do $BB stat -c 'ino %i %h' "\$RUNDIR/\$f"; done ;;
esac
exit 0
RUN
	chmod 755 "$d/Run"
	echo "payload config" >"$d/config/Run.rcfg"
	echo deep >"$d/config/deep/er/file"
	chmod 555 "$d/config/deep"
	ln -s ../static/busybox "$d/rootfs/sh"
	head -c 3000000 /dev/urandom >"$d/rootfs/blob"
	# Compressible data over several blocks with a fragment tail, and a
	# sparse file whose zero blocks the image stores as holes.
	seq 1 400000 >"$d/rootfs/counts"
	truncate -s 700000 "$d/rootfs/sparse"
	echo end >>"$d/rootfs/sparse"
	for i in $(seq 1 40); do echo "small $i" >"$d/rootfs/small$i"; done
	# Twins: files of the launcher's bundle and their identical copies
	# elsewhere, stored once, with the same attributes (twin-c's mode
	# differs). same1 and same2 are identical but have no copy in the
	# bundle. hole0 has only holes, so no data of its own: hole1, the same
	# size, starts where hole0 does, yet they are not twins.
	b=$d/static/.bundle/lib
	mkdir -p "$b"
	cp "$d/rootfs/blob" "$b/libtwin.so"
	for f in twin-a twin-b twin-c; do cp "$d/rootfs/blob" "$d/rootfs/$f"; done
	chmod 600 "$d/rootfs/twin-c"
	head -c 100000 /dev/urandom >"$d/rootfs/same1"
	cp "$d/rootfs/same1" "$d/rootfs/same2"
	truncate -s 262144 "$b/hole0"
	head -c 262144 /dev/urandom >"$b/hole1"
	touch -r "$d/rootfs/blob" "$d/rootfs/twin-a" "$d/rootfs/twin-b" "$d/rootfs/twin-c" \
		"$b/libtwin.so" "$b/hole0" "$b/hole1" "$d/rootfs/same1" "$d/rootfs/same2"
	offset=$(stat -c %s "$RUNTIME")
	mksquashfs "$d" "$W/img" -root-owned -noappend -comp lz4 -quiet -no-progress \
		-offset "$offset" >/dev/null || return 1
	dd if="$RUNTIME" of="$W/img" conv=notrunc status=none || return 1
	chmod 755 "$W/img"
	chmod 755 "$d/config/deep"
}

leftovers() { # no FUSE mount of ours and nothing in our TMPDIR
	! grep -q "$TMPDIR" /proc/mounts && [ -z "$(ls -A "$TMPDIR")" ]
}

wait_mounted() { # wait_mounted OUTFILE: until Run has printed RUNDIR
	i=0
	while ! grep -q '^RUNDIR=' "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 100 ] && return 1
		sleep 0.05
	done
}



if ! make_payload; then
	echo "Bail out! cannot build the payload"
	exit 1
fi
IMG=$W/img
OFFSET=$(stat -c %s "$RUNTIME")
cd "$W" || exit 1

# --- options -------------------------------------------------------------
check "--runtime-version" sh -c '"$1" --runtime-version | grep -q "^runimage-runtime [0-9]"' _ "$IMG"
check "--runtime-help" sh -c '"$1" --runtime-help | grep -q -- --runtime-extract' _ "$IMG"
check "--runtime-offset is the runtime's size" test "$("$IMG" --runtime-offset)" = "$OFFSET"
if command -v unsquashfs >/dev/null; then
	check "unsquashfs -o OFFSET agrees" sh -c \
		'unsquashfs -o "$("$1" --runtime-offset)" -l "$1" | grep -q "squashfs-root/Run$"' _ "$IMG"
else
	skip "unsquashfs -o OFFSET agrees" "no unsquashfs"
fi

# --- running through FUSE -------------------------------------------------
if [ $has_fuse = yes ]; then
	out=$("$IMG" "a b" "$(printf 'line1\nline2')" "" '*' 2>&1)
	check "arguments arrive unchanged" test "$out" = "$(printf '%s\n' \
		"RUNIMAGE=$IMG" "RUNOFFSET=$OFFSET" "ARGV0=$IMG" \
		"RUNDIR=$(echo "$out" | sed -n 's/^RUNDIR=//p')" \
		"arg=[a b]" "arg=[line1" "line2]" "arg=[]" "arg=[*]")"
	check "RUNDIR is a private mount point in TMPDIR" sh -c \
		'echo "$1" | grep -q "^RUNDIR=$TMPDIR/\.mount_img\."' _ "$out"
	check "files are read through the mount" sh -c \
		'"$1" cat config/deep/er/file | grep -q "^deep$"' _ "$IMG"
	for f in blob counts sparse small7; do
		check "$f reads back byte for byte" sh -c \
			'"$1" cat "rootfs/$2" | tail -n +7 | cmp -s - "$3/RunDir/rootfs/$2"' \
			_ "$IMG" "$f" "$W"
	done
	inos() { "$IMG" ino "$@" | sed -n 's/^ino //p' | tr '\n' ' '; }
	set -- $(inos rootfs/twin-a rootfs/twin-b rootfs/twin-c static/.bundle/lib/hole0 \
		static/.bundle/lib/hole1 rootfs/blob static/.bundle/lib/libtwin.so rootfs/same1 rootfs/same2)
	check "copies of a bundle file share its inode number, one link each" \
		test "$1 $2" = "$3 $4" -a "$1 $2" = "${13} ${14}" -a "$2" = 1
	check "a twin with another mode keeps its own inode number" test "$5" != "$1"
	check "a file of holes and one starting at its place are no twins" test "$7" != "$9"
	check "blob, stored once with its twins, shares their inode number" test "${11}" = "$1"
	check "identical files without a copy in the bundle keep their own" test "${15}" != "${17}"
	check "twin-b reads back byte for byte" sh -c \
		'"$1" cat rootfs/twin-b | tail -n +7 | cmp -s - "$2/RunDir/rootfs/blob"' _ "$IMG" "$W"
	set -- $(RUNTIME_NO_TWINS=1 inos rootfs/twin-a rootfs/twin-b)
	check "RUNTIME_NO_TWINS=1: inode numbers of their own" test "$1" != "$3"
	for st in 0 1 7; do
		"$IMG" exit $st >/dev/null 2>&1
		check "exit status $st passes through" test $? = $st
	done
	"$IMG" selfkill KILL >/dev/null 2>&1
	check "Run killed by SIGKILL gives 137" test $? = 137
	check "no mount or directory left after runs" leftovers

	"$IMG" sleep 30 >"$W/out" 2>&1 &
	pid=$!
	wait_mounted "$W/out"
	kill -INT $pid
	wait $pid
	check "SIGINT to the runtime reaches Run: 130" test $? = 130
	"$IMG" sleep 30 >"$W/out" 2>&1 &
	pid=$!
	wait_mounted "$W/out"
	kill -TERM $pid
	wait $pid
	check "SIGTERM to the runtime reaches Run: 143" test $? = 143

	"$IMG" sleep 30 >"$W/out" 2>&1 &
	pid=$!
	wait_mounted "$W/out"
	kill -KILL $pid
	wait $pid 2>/dev/null
	sleep 0.5
	check "kill -9 of the runtime leaves no mount and no directory" leftovers

	"$IMG" sleep 30 >"$W/out" 2>&1 &
	pid=$!
	wait_mounted "$W/out"
	# Run alone: the runtime's other child, the FUSE server, has a session of its own.
	sid=$(ps -o sid= -p $pid | tr -d " ")
	for c in $(ps -o pid=,sid= --ppid $pid | awk -v sid=$sid '$2 == sid { print $1 }'); do
		kill -KILL $c
	done
	wait $pid
	rc=$?
	check "kill -9 of Run: runtime returns 137" test $rc = 137
	check "kill -9 of Run leaves no mount and no directory" leftovers

	"$IMG" sleep 1 >"$W/out1" 2>&1 &
	p1=$!
	"$IMG" sleep 1 >"$W/out2" 2>&1 &
	p2=$!
	wait $p1
	r1=$?
	wait $p2
	r2=$?
	check "two instances at once" sh -c '[ $1 = 0 ] && [ $2 = 0 ] &&
		[ "$(grep ^RUNDIR= "$3")" != "$(grep ^RUNDIR= "$4")" ]' _ $r1 $r2 "$W/out1" "$W/out2"
	check "two instances leave nothing behind" leftovers

	odd="$W/dir with spaces/naïve ünïcödé"
	mkdir -p "$odd"
	cp "$IMG" "$odd/my image"
	out=$("$odd/my image" x 2>&1)
	check "a path with spaces and non-ASCII" sh -c \
		'echo "$1" | grep -qx "RUNIMAGE=$2" && echo "$1" | grep -qx "arg=\[x\]"' _ "$out" "$odd/my image"
	check "nothing left after the odd path" leftovers

	if [ -x /usr/bin/fusermount ] && [ -u /usr/bin/fusermount ]; then
		out=$(RUNTIME_DEBUG=1 RUNTIME_FUSERMOUNT=/usr/bin/fusermount "$IMG" exit 4 2>&1)
		check "mounts with fusermount (FUSE 2), status 4" sh -c \
			'[ $1 = 4 ] && echo "$2" | grep -q "with fusermount"' _ $? "$out"
	else
		skip "mounts with fusermount (FUSE 2)" "no setuid /usr/bin/fusermount"
	fi

	"$IMG" --runtime-mount >"$W/mnt" 2>&1 &
	pid=$!
	i=0
	while [ ! -s "$W/mnt" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	mnt=$(cat "$W/mnt")
	check "--runtime-mount serves the image" test -x "$mnt/Run"
	kill -INT $pid
	wait $pid
	check "--runtime-mount unmounts on SIGINT" sh -c '[ $1 = 0 ] && ! [ -e "$2" ]' _ $? "$mnt"
else
	for i in $(seq 20); do skip "FUSE case $i" "no usable /dev/fuse"; done
fi

# --- without fusermount: user namespace -----------------------------------
if [ $has_fuse = yes ] && [ $has_bwrap = yes ]; then
	hide=""
	for h in /usr/bin/fusermount3 /usr/bin/fusermount /bin/fusermount3 /bin/fusermount; do
		[ -e "$h" ] && hide="$hide --ro-bind /dev/null $h"
	done
	# shellcheck disable=SC2086
	out=$(bwrap --dev-bind / / $hide env RUNTIME_DEBUG=1 PATH=/nonexistent "$IMG" exit 5 2>&1)
	rc=$?
	check "no fusermount: mounted in a user namespace, status 5" sh -c \
		'[ $1 = 5 ] && echo "$2" | grep -q "with a user namespace"' _ $rc "$out"
	check "user namespace run leaves nothing behind" leftovers
else
	skip "no fusermount: user namespace" "needs bwrap and /dev/fuse"
	skip "user namespace run leaves nothing behind" "needs bwrap and /dev/fuse"
fi

# --- without FUSE: extraction ---------------------------------------------
if [ $has_bwrap = yes ]; then
	bwrap --dev-bind / / --ro-bind /dev/null /dev/fuse "$IMG" exit 6 >"$W/out" 2>"$W/err"
	rc=$?
	check "no /dev/fuse: runs extracted, status 6" sh -c \
		'[ $1 = 6 ] && grep -q "^RUNDIR=$TMPDIR/\.runimage_extract\." "$2"' _ $rc "$W/out"
	check "no /dev/fuse: exactly one warning line" test "$(wc -l <"$W/err")" = 1
	check "no /dev/fuse: the extracted copy is removed" leftovers
else
	for i in 1 2 3; do skip "no /dev/fuse case $i" "needs bwrap"; done
fi

out=$(RUNTIME_EXTRACT_AND_RUN=1 "$IMG" cat config/deep/er/file 2>&1)
check "RUNTIME_EXTRACT_AND_RUN=1 runs from an extracted copy" sh -c \
	'echo "$1" | grep -q "^RUNDIR=$TMPDIR/\.runimage_extract\." && echo "$1" | grep -qx deep' _ "$out"
"$IMG" --runtime-extract-and-run exit 3 >/dev/null 2>&1
check "--runtime-extract-and-run passes status, removes the copy" sh -c '[ $1 = 3 ]' _ $?
check "extract-and-run leaves nothing behind" leftovers

if [ $has_bwrap = yes ]; then
	# A disk too small for the copy: one error line, and the partial copy gone by the time
	# the runtime ends (a tmpfs of 1 MiB in a user and mount namespace).
	mkdir -p "$W/small"
	out=$(bwrap --unshare-user --dev-bind / / --size 1048576 --tmpfs "$W/small" sh -c \
		'TMPDIR=$2 "$1" --runtime-extract-and-run exit 0; echo "rc=$?"; ls -A "$2"' \
		_ "$IMG" "$W/small" 2>&1)
	check "a full disk while extracting: 127, the partial copy removed" sh -c \
		'echo "$1" | grep -q "No space left on device" && echo "$1" | tail -n 1 | grep -qx rc=127' \
		_ "$out"
else
	skip "a full disk while extracting" "needs bwrap"
fi

mkdir -p "$W/x1" "$W/x2"
(cd "$W/x1" && "$IMG" --runtime-extract) >/dev/null 2>&1
check "--runtime-extract writes ./RunDir with modes and links" sh -c \
	'cmp -s "$1/RunDir/static/busybox" "$2/RunDir/static/busybox" && [ -x "$1/RunDir/Run" ] &&
	 [ "$(readlink "$1/RunDir/rootfs/sh")" = ../static/busybox ] &&
	 [ "$(stat -c %a "$1/RunDir/config/deep")" = 555 ] &&
	 cmp -s "$1/RunDir/rootfs/blob" "$2/RunDir/rootfs/blob"' _ "$W/x1" "$W"
(cd "$W/x2" && "$IMG" --runtime-extract 'config/*') >/dev/null 2>&1
check "--runtime-extract PATTERN writes only matching paths" sh -c \
	'[ -f "$1/RunDir/config/deep/er/file" ] && ! [ -e "$1/RunDir/Run" ] &&
	 ! [ -e "$1/RunDir/static" ]' _ "$W/x2"
chmod -R u+w "$W/x1" "$W/x2"

cp "$IMG" "$W/port"
(cd "$W" && ./port --runtime-portable-home && ./port --runtime-portable-config) >/dev/null
check "--runtime-portable-home and --runtime-portable-config" sh -c \
	'[ -d "$1/portable-home/port" ] && [ -d "$1/port.config" ]' _ "$W"

# --- damaged files ----------------------------------------------------------
size=$(stat -c %s "$IMG")
damage() { # damage NAME: a copy of the image in $W/bad, damaged
	cp "$IMG" "$W/bad"
	case $1 in
	half) truncate -s $((OFFSET + (size - OFFSET) / 2)) "$W/bad" ;;
	bare) truncate -s "$OFFSET" "$W/bad" ;;
	magic) printf 'XXXX' | dd of="$W/bad" bs=1 seek="$OFFSET" conv=notrunc status=none ;;
	tables) printf '\377\377\377\177' | dd of="$W/bad" bs=1 seek=$((OFFSET + 64)) \
		conv=notrunc status=none ;;
	size) # a size far beyond the tables: damaged, not cut short
		printf '\377\377\377\377\377\377\377\177' |
			dd of="$W/bad" bs=1 seek=$((OFFSET + 40)) conv=notrunc status=none ;;
	inodes) # garbage over the start of the inode table
		it=$(od -An -t u8 -j $((OFFSET + 64)) -N 8 "$IMG" | tr -d ' ')
		printf '\377\377\377\377\377\377\377\377' |
			dd of="$W/bad" bs=1 seek=$((OFFSET + it)) conv=notrunc status=none ;;
	fragments) # garbage over the fragment table's index
		ft=$(od -An -t u8 -j $((OFFSET + 80)) -N 8 "$IMG" | tr -d ' ')
		printf '\377\377\377\377\377\377\377\377' |
			dd of="$W/bad" bs=1 seek=$((OFFSET + ft)) conv=notrunc status=none ;;
	esac
}
for kind in half bare magic tables size inodes fragments; do
	damage $kind
	timeout 20 "$W/bad" exit 0 >"$W/out" 2>"$W/err"
	rc=$?
	check "damaged file ($kind): one error line, exit 127" sh -c \
		'[ $1 = 127 ] && [ "$(wc -l <"$2")" = 1 ] && ! [ -s "$3" ]' _ $rc "$W/err" "$W/out"
	diag "$W/err"
	case $kind in
	half) check "a file cut short is called truncated" grep -q "image truncated" "$W/err" ;;
	size) check "a damaged size is called corrupt" grep -q "superblock is corrupt" "$W/err" ;;
	esac
done
check "damaged files leave nothing behind" leftovers

cd / || exit 1
chmod -R u+w "$W" 2>/dev/null
rm -rf "$W"
echo "1..$n"
[ $failed = 0 ]
