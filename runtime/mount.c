/*
 * Mounting the image: through the host's setuid fusermount3/fusermount,
 * with mount(2) as root, or with mount(2) inside a private user and mount
 * namespace. The FUSE server runs in a "keeper" process of its own session
 * that unmounts lazily and removes the mount point as soon as the runtime
 * is gone, whether it exited or was killed.
 */
#define _GNU_SOURCE
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FS_NAME "runimage"
#define FS_TYPE "fuse.runimage"
#define KEEPER_READY 'R'
#define KEEPER_FAILED 'F'
#define RELEASE_TIMEOUT_MS 5000

extern char **environ;

static char *find_in_path(const char *name)
{
	const char *path = getenv("PATH");
	char *dirs = xasprintf("%s:/usr/bin:/bin", path ? path : "");
	char *save = NULL, *found = NULL;

	for (char *dir = strtok_r(dirs, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char *candidate = xasprintf("%s/%s", dir, name);

		if (dir[0] == '/' && access(candidate, X_OK) == 0)
			found = candidate;
		else
			free(candidate);
	}
	free(dirs);
	return found;
}

static bool fuse_device_usable(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* The method to try when `failed` did not work. */
enum mount_method mount_fallback(enum mount_method failed)
{
	if (failed == MOUNT_HELPER)
		return geteuid() == 0 ? MOUNT_DIRECT : MOUNT_USERNS;
	return MOUNT_NONE;
}

enum mount_method mount_choose(char **helper)
{
	const char *chosen = getenv("RUNTIME_FUSERMOUNT");

	*helper = NULL;
	if (!fuse_device_usable())
		return MOUNT_NONE;
	/* A given helper (tests, odd hosts); an empty value means none. */
	if (chosen) {
		*helper = chosen[0] == '/' ? xstrdup(chosen) : NULL;
		return *helper ? MOUNT_HELPER : mount_fallback(MOUNT_HELPER);
	}
	*helper = find_in_path("fusermount3");
	if (!*helper)
		*helper = find_in_path("fusermount");
	return *helper ? MOUNT_HELPER : mount_fallback(MOUNT_HELPER);
}

/* A private user namespace mapping us to ourselves, and a private mount namespace. */
static bool enter_user_namespace(void)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	char map[64];

	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return false;
	if (write_file("/proc/self/setgroups", "deny") < 0 && errno != ENOENT)
		return false;
	snprintf(map, sizeof(map), "%u %u 1", uid, uid);
	if (write_file("/proc/self/uid_map", map) < 0)
		return false;
	snprintf(map, sizeof(map), "%u %u 1", gid, gid);
	if (write_file("/proc/self/gid_map", map) < 0)
		return false;
	/* Nothing mounted here may reach the host's namespace. */
	mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL);
	return true;
}

static int mount_direct(const char *point)
{
	char opts[128];
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -1;
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=%u,group_id=%u", fd, getuid(),
		 getgid());
	if (mount(FS_NAME, point, FS_TYPE, MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static pid_t spawn_quiet(char *const argv[], int keep_fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
		}
		if (keep_fd >= 0) {
			char value[16];

			snprintf(value, sizeof(value), "%d", keep_fd);
			setenv("_FUSE_COMMFD", value, 1);
		}
		execve(argv[0], argv, environ);
		_exit(EXIT_RUNTIME);
	}
	return pid;
}

static int wait_status(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The inode of this process's PID namespace: PIDs mean something only within it. */
static unsigned long pid_namespace(void)
{
	struct stat st;

	return stat("/proc/self/ns/pid", &st) == 0 ? (unsigned long)st.st_ino : 0;
}

/*
 * fusermount's protocol: it mounts, then hands the /dev/fuse fd over a socket.
 * The mount's source names the keeper, runimage.<PID namespace>.<PID>, so a
 * later run can tell a mount whose keeper was killed: see remove_dead_mounts().
 */
static int mount_with_helper(const char *helper, const char *point)
{
	char options[128];
	char *argv[] = { (char *)helper, "-o", options, "--", (char *)point, NULL };
	char control[CMSG_SPACE(sizeof(int))], byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	struct cmsghdr *cmsg;
	int sock[2], fd = -1;
	pid_t pid;
	ssize_t n;

	snprintf(options, sizeof(options), "ro,nosuid,nodev,fsname=%s.%lu.%d,subtype=runimage",
		 FS_NAME, pid_namespace(), (int)getpid());
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sock) < 0)
		return -1;
	fcntl(sock[0], F_SETFD, FD_CLOEXEC);
	pid = spawn_quiet(argv, sock[1]);
	close(sock[1]);
	if (pid < 0) {
		close(sock[0]);
		return -1;
	}
	do
		n = recvmsg(sock[0], &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	close(sock[0]);
	cmsg = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (cmsg && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
	if (wait_status(pid) != 0 && fd >= 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void unmount_lazily(const struct mount *m)
{
	if (m->method == MOUNT_HELPER) {
		char *argv[] = { m->helper, "-u", "-q", "-z", "--", m->point, NULL };
		pid_t pid = spawn_quiet(argv, -1);

		if (pid > 0)
			wait_status(pid);
	} else {
		umount2(m->point, MNT_DETACH);
	}
}

struct keeper_state {
	struct mount *m;
	int status_fd;
	bool released;
	pthread_mutex_t lock;
};

/*
 * Runs in the keeper's watcher thread once the runtime has closed its pipe
 * or died, and again when the server loop ends: whichever comes second
 * waits for the first, so the keeper never exits halfway.
 */
static void keeper_release(void *data)
{
	struct keeper_state *k = data;

	pthread_mutex_lock(&k->lock);
	if (!k->released) {
		unmount_lazily(k->m);
		if (rmdir(k->m->point) < 0 && errno != ENOENT && getenv("RUNTIME_DEBUG"))
			warn_errno("cannot remove the mount point %s", k->m->point);
		close(k->status_fd);
		k->released = true;
	}
	pthread_mutex_unlock(&k->lock);
}

static void keeper_ignore_signals(void)
{
	const int signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU };

	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		signal(signals[i], SIG_IGN);
}

static void keeper_main(struct sqfs_ll *ll, struct mount *m, int alive_fd, int status_fd)
{
	struct keeper_state k = { .m = m, .status_fd = status_fd,
				  .lock = PTHREAD_MUTEX_INITIALIZER };
	struct server_config cfg;
	char byte = KEEPER_FAILED;
	int fuse_fd;

	/* Own session: a signal to the runtime's process group leaves us alone. */
	setsid();
	keeper_ignore_signals();
	server_config_from_env(&cfg);
	if (m->method == MOUNT_HELPER)
		fuse_fd = mount_with_helper(m->helper, m->point);
	else
		fuse_fd = mount_direct(m->point);
	if (fuse_fd < 0) {
		if (write(status_fd, &byte, 1) < 0)
			_exit(EXIT_RUNTIME);
		_exit(EXIT_RUNTIME);
	}
	byte = KEEPER_READY;
	if (write(status_fd, &byte, 1) != 1) {
		keeper_release(&k);
		_exit(EXIT_RUNTIME);
	}
	server_run(ll, fuse_fd, &cfg, alive_fd, keeper_release, &k);
	keeper_release(&k);
	_exit(0);
}

static char *make_mount_point(const char *image_path)
{
	char name[32];
	char *point;

	snprintf(name, sizeof(name), "%s", base_name(image_path));
	for (char *p = name; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20)
			*p = '_';
	point = xasprintf("%s/.mount_%s.XXXXXX", tmp_dir(), name);
	if (!mkdtemp(point))
		die("cannot create a mount point in %s: %s (set TMPDIR to a directory you can write to)",
		    tmp_dir(), strerror(errno));
	return point;
}

/* Mount the image with m->method; false when it cannot be done this way. */
bool mount_image(const struct image *img, struct mount *m)
{
	struct sqfs_ll *ll = image_open_ll(img);
	int alive[2], status[2];
	char byte = 0;
	ssize_t n;

	if (m->method == MOUNT_USERNS && !enter_user_namespace())
		return false;
	m->point = make_mount_point(img->path);
	if (pipe2(alive, O_CLOEXEC) < 0 || pipe2(status, O_CLOEXEC) < 0)
		die_errno("pipe");
	m->keeper = fork();
	if (m->keeper < 0)
		die_errno("fork");
	if (m->keeper == 0) {
		close(alive[1]);
		close(status[0]);
		keeper_main(ll, m, alive[0], status[1]);
	}
	close(alive[0]);
	close(status[1]);
	m->alive_fd = alive[1];
	m->done_fd = status[0];
	do
		n = read(m->done_fd, &byte, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1 && byte == KEEPER_READY)
		return true;

	close(m->alive_fd);
	close(m->done_fd);
	wait_status(m->keeper);
	rmdir(m->point);
	free(m->point);
	m->point = NULL;
	return false;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo: undone in place. */
static void unescape_octal(char *s)
{
	char *out = s;

	for (; *s; s++, out++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*out = *s;
		}
	}
	*out = '\0';
}

/* Whether pid has ended: no such process, or a zombie not yet reaped. */
static bool process_gone(int pid)
{
	char path[32], buf[256], *state;
	ssize_t n;
	int fd;

	if (kill(pid, 0) < 0)
		return errno == ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	state = strrchr(buf, ')');
	return state && (state[2] == 'Z' || state[2] == 'X');
}

/* Whether a mountinfo line is a mount of ours in dir whose keeper (of this PID namespace) is gone. */
static bool dead_mount(char *line, const char *dir, char **point)
{
	char prefix[64], *fields = strstr(line, " - "), *save = NULL, *field;
	unsigned long ns;
	int n = 0, pid;

	if (!fields || strncmp(fields + 3, FS_TYPE " ", strlen(FS_TYPE) + 1) != 0)
		return false;
	if (sscanf(fields + 3 + strlen(FS_TYPE) + 1, FS_NAME ".%lu.%d ", &ns, &pid) != 2 ||
	    ns != pid_namespace() || !process_gone(pid))
		return false;
	snprintf(prefix, sizeof(prefix), "user_id=%u,", getuid());
	if (!strstr(fields, prefix))
		return false;
	*fields = '\0';
	for (field = strtok_r(line, " ", &save); field && ++n < 5; field = strtok_r(NULL, " ", &save))
		;
	if (!field)
		return false;
	unescape_octal(field);
	*point = field;
	return strncmp(field, dir, strlen(dir)) == 0 && strncmp(field + strlen(dir), "/.mount_", 8) == 0;
}

/*
 * Unmounts and removes the mounts of ours in TMPDIR whose keeper was killed
 * (with the runtime, both with SIGKILL): nothing was left to unmount them,
 * and the kernel keeps them, every access failing, until someone does.
 */
void remove_dead_mounts(const struct mount *m)
{
	FILE *f = m->method == MOUNT_HELPER ? fopen("/proc/self/mountinfo", "re") : NULL;
	char *line = NULL, *point;
	size_t size = 0;

	while (f && getline(&line, &size, f) > 0) {
		struct mount dead = { .method = MOUNT_HELPER, .helper = m->helper };

		if (!dead_mount(line, tmp_dir(), &point))
			continue;
		dead.point = point;
		unmount_lazily(&dead);
		rmdir(point);
	}
	free(line);
	if (f)
		fclose(f);
}

/* Ask the keeper to unmount and wait until the mount point is gone. */
void mount_release(struct mount *m)
{
	struct pollfd pfd = { .fd = m->done_fd, .events = POLLIN };
	char byte;

	close(m->alive_fd);
	for (;;) {
		int rc = poll(&pfd, 1, RELEASE_TIMEOUT_MS);

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0 || read(m->done_fd, &byte, 1) <= 0)
			break;
	}
	close(m->done_fd);
	waitpid(m->keeper, NULL, WNOHANG);
	/* The keeper died or hung before it could clean up: do it here. */
	if (rmdir(m->point) < 0 && errno != ENOENT) {
		unmount_lazily(m);
		rmdir(m->point);
	}
}
