"""The usage text of --run-help (and of runimage without arguments)."""

from __future__ import annotations

import sys

USAGE = """\
runimage: a whole Linux userland in one file, run without root.

Usage:
    runimage {bwrap args} {executable} {args}   run a program inside the container

Modes:
    --run-help   |--rH                    print this text
    --run-bwhelp |--rBwh                  print the options of bwrap
    --run-version|--rV                    print the runimage, rootfs, static and runtime versions
    --run-pkglist|--rP                    list the packages installed in the rootfs
    --run-binlist|--rBin                  list the executables of /usr/bin in the rootfs
    --run-shell  |--rS  {args}            start the container's shell, or run a command with it
    --run-desktop|--rD                    start the desktop
    --overfs-list|--oL                    list the kept OverlayFS layers
    --overfs-rm  |--oR  {id id ...|all}   remove OverlayFS layers
    --run-build  |--rB  {build args}      pack a new runimage file
    --run-update |--rU  {build args}      update the packages, then pack a new runimage
    --run-kill   |--rK                    stop every running runimage container
    --run-procmon|--rPm {RUNPIDs}         watch the processes of running containers
    --run-attach |--rA  {RUNPID} {args}   enter a running container, or run a command in it

Options of the packed file (handled by its runtime):
    --runtime-extract {pattern}           unpack the image (or what matches pattern) to ./RunDir
    --runtime-extract-and-run {args}      unpack to $TMPDIR and run from there, without FUSE
    --runtime-help                        print the runtime's options
    --runtime-mount                       mount the image, print where, wait until interrupted
    --runtime-offset                      print the byte offset of the embedded image
    --runtime-portable-home               create a portable home beside the file, used as $HOME
    --runtime-portable-config             create a portable config beside the file
    --runtime-version                     print the runtime's version

Environment variables (1 turns a switch on):
    NO_NET=1                     no network inside
    TMP_HOME=1                   $HOME is a tmpfs (/home/$USER or /root), gone on exit
    TMP_HOME_DL=1                the same, with $HOME/Downloads of the host bound into it
    SANDBOX_HOME=1               a separate home directory beside the image, at /home/$USER
    SANDBOX_HOME_DL=1            the same, with $HOME/Downloads of the host bound into it
    SANDBOX_HOME_DIR=/path       the directory to use (created if missing) as sandbox home
    PORTABLE_HOME=1              a portable home directory beside the image, used as $HOME
    PORTABLE_HOME_DIR=/path      the directory to use (created if missing) as portable home
    PORTABLE_CONFIG=1            a portable config directory beside the image: $XDG_CONFIG_HOME
    NO_CLEANUP=1                 leave mounts and mount points in place on exit
    ALLOW_BG=1                   let background processes go on after the program ends
    UNSHARE_PIDS=1               a private process namespace
    UNSHARE_USERS=1              the rootfs's own passwd and group, not the host's
    SHARE_SYSTEMD=1              share /run/systemd of the host
    UNSHARE_DBUS=1               do not share the host's D-Bus
    UNSHARE_UDEV=1               do not share /run/udev of the host
    UNSHARE_MODULES=1            do not share the host's kernel modules (/usr/lib/modules)
    UNSHARE_LOCALTIME=1          do not share the host's /etc/localtime
    UNSHARE_DEF_MOUNTS=1         do not share /mnt, /media and /run/media
    NO_NVIDIA_CHECK=1            skip the check of the nvidia driver version
    NVIDIA_DRIVERS_DIR=/path     where nvidia driver images are kept
    RUNCACHEDIR=/path            the cache directory
    SQFUSE_REMOUNT=1             remount the image with squashfuse
    OVERFS_MODE=1                a writable layer over the image, removed on exit
    KEEP_OVERFS=1                the same, kept after exit
    OVERFS_ID=ID                 the id of the writable layer (reused when it exists)
    KEEP_OLD_BUILD=1             keep the previous file as .old when packing a new one
    BUILD_WITH_EXTENSION=1       name a new file with the compression and rootfs type
    CMPRS_ALGO={zstd|xz|lz4}     compression of a new file (default lz4)
    ZSDT_CMPRS_LVL={1-19}        zstd level of a new file (ZSTD_CMPRS_LVL works too)
    NO_RUNDIR_BIND=1             do not bind the RunDir to /var/RunDir
    RUN_SHELL="shell args"       the shell of --run-shell (default: fish, zsh, bash or sh)
    NO_CAP=1                     no capabilities inside (default: all but CAP_SYS_NICE);
                                 'nocap command' does the same for one command
    AUTORUN="{executable} {args}"  always run this program of /usr/bin
    ALLOW_ROOT=1                 allow running as root
    QUIET_MODE=1                 no info or warning messages
    NO_WARN=1                    no warning messages
    DONT_NOTIFY=1                no desktop notifications but for errors
    RUNTIME_EXTRACT_AND_RUN=1    as --runtime-extract-and-run
    TMPDIR=/path                 where the runtime unpacks; inside at its path or /run/.TMPDIR
    RUNIMAGE_CONFIG=/path.rcfg   the configuration file to read (0: none)
    ENABLE_HOSTEXEC=1            allow running commands on the host (hostexec)
    NO_RPIDSMON=1                do not watch the container's processes
    SANDBOX_NET=1                a private network through slirp4netns
    SANDBOX_NET_SHARE_HOST=1     the same, with the host's loopback reachable
    SANDBOX_NET_CIDR=CIDR        subnet of the private network (default 10.0.2.0/24)
    SANDBOX_NET_TAPNAME=NAME     its interface name (default eth0)
    SANDBOX_NET_MAC=MAC          its MAC address (default random)
    SANDBOX_NET_MTU=MTU          its MTU (default 1500)
    SANDBOX_NET_HOSTS=file       bound to /etc/hosts in the private network
    SANDBOX_NET_RESOLVCONF=file  bound to /etc/resolv.conf in the private network
    BWRAP_ARGS+=() EXEC_ARGS+=() extra bwrap options and exec arguments (in a config file)
    XORG_CONF=/path/xorg.conf    bound to /etc/X11/xorg.conf (0: none)
    XEPHYR_SIZE=WxH XEPHYR_DISPLAY=:N XEPHYR_FULLSCREEN=1  the desktop's window
    UNSHARE_CLIPBOARD=1          no clipboard sharing with the desktop
    SYS_BWRAP SYS_SQFUSE SYS_UNSQFS SYS_MKSQFS SYS_UNIONFS SYS_SLIRP =1
                                 use the host's tool instead of the portable one
    SYS_TOOLS=1                  use every tool of the host (each missing one: the portable one)

Set by the launcher:
    RUNIMAGE RUNOFFSET ARGV0 RUNPID RUNPPID RUNDIR RUNROOTFS RUNSTATIC RUNIMAGEDIR
    RUNCONFIGDIR SANDBOXHOMEDIR PORTABLEHOMEDIR RUNCACHEDIR NVIDIA_DRIVERS_DIR RUNSRCNAME
    RUNIMAGE_VERSION RUNROOTFS_VERSION RUNSTATIC_VERSION RUNRUNTIME_VERSION RUNOVERFSDIR
    OVERFS_DIR OVERFS_MNT RUNRUNTIME RUNROOTFSTYPE FUSE_PIDS RUNUSER
    MKSQFS UNSQFS UNIONFS SQFUSE BWRAP SLIRP

Inside the container:
    sudo, pkexec    run a command as fake root (fakeroot)
    pac             the package manager of the rootfs (apt, pacman or apk) as fake root
    nocap           run a command without capabilities (for a nested bwrap)
    runbuild        pack a new runimage from inside

A link to runimage named after a program in /usr/bin (ln -s runimage htop) runs that program.
"""


def show() -> None:
    if sys.stdout is None:
        return
    text = USAGE
    if sys.stdout.isatty():
        text = "\033[1;92m" + text + "\033[0m"
    sys.stdout.write(text)
