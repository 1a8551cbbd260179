/*
 * runimage runtime: the static program at the head of a runimage file.
 * It mounts the squashfs image appended to itself and runs RunDir/Run.
 */
#define _GNU_SOURCE
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void print_usage(void)
{
	printf("%s %s: the program at the head of a runimage file.\n"
	       "\n"
	       "Run without one of the options below, it mounts the file system image\n"
	       "that follows it in the file (read-only, with FUSE) and starts the Run\n"
	       "program inside with all arguments. Where FUSE cannot be used, it\n"
	       "extracts the image to a temporary directory instead.\n"
	       "\n"
	       "Options, recognised only as the first argument:\n"
	       "  --runtime-extract [PATTERN]   write the image (or the paths matching the\n"
	       "                                shell PATTERN) to ./RunDir\n"
	       "  --runtime-extract-and-run ..  extract to $TMPDIR, run from there, then\n"
	       "                                remove the copy (also RUNTIME_EXTRACT_AND_RUN=1)\n"
	       "  --runtime-mount               mount the image, print the mount point and\n"
	       "                                wait until interrupted\n"
	       "  --runtime-offset              print the byte offset of the image\n"
	       "  --runtime-portable-home       create <dir of file>/portable-home/<file name>\n"
	       "  --runtime-portable-config     create <file>.config\n"
	       "  --runtime-version             print the runtime's version\n"
	       "  --runtime-help                print this text\n"
	       "\n"
	       "Run sees RUNIMAGE (this file), RUNOFFSET, ARGV0 and RUNDIR in its environment.\n"
	       "\n"
	       "Environment read by the runtime:\n"
	       "  TMPDIR                        where mount points and copies go (/tmp)\n"
	       "  RUNTIME_EXTRACT_AND_RUN=1     never mount: extract, run, remove\n"
	       "  RUNTIME_FUSERMOUNT=PATH       the fusermount to use; empty: none\n"
	       "  RUNTIME_FUSE_THREADS=N        FUSE server threads (4)\n"
	       "  RUNTIME_CACHE_BLOCKS=N        decompressed blocks kept (4 MiB worth)\n"
	       "  RUNTIME_NO_READDIRPLUS=1      plain readdir (for measurements)\n"
	       "  RUNTIME_NO_PREFETCH=1         do not read ahead the files listed in\n"
	       "                                RunDir/.prefetch while Run starts\n"
	       "  RUNTIME_NO_PUSH=1             do not store small files in the page\n"
	       "                                cache before they are read\n"
	       "  RUNTIME_NO_TWINS=1            identical files stored once keep inode\n"
	       "                                numbers of their own (no shared pages)\n"
	       "  RUNTIME_FUSE_STATS=1|trace    print FUSE requests by kind, decompressed\n"
	       "                                blocks and server CPU time at unmount;\n"
	       "                                trace: also every lookup, read, decompression\n"
	       "  RUNTIME_DEBUG=1               say how the image was mounted\n"
	       "Exit status: Run's own, 128+N if it was killed by signal N, 127 when the\n"
	       "runtime itself fails.\n",
	       RUNTIME_NAME, RUNTIME_VERSION);
}

static void create_dir(const char *path)
{
	if (mkdir_parents(path, 0755) < 0)
		die_errno("cannot create %s", path);
	printf("created %s\n", path);
}

static void portable_home(const struct image *img)
{
	char *dir = xstrdup(img->path);
	char *slash = strrchr(dir, '/');
	char *path;

	*slash = '\0';
	path = xasprintf("%s/portable-home/%s", dir[0] ? dir : "", base_name(img->path));
	create_dir(path);
	free(path);
	free(dir);
}

/*
 * Removes the extracted tree once the runtime is gone; a separate process
 * so that it happens even when the runtime is killed.
 */
static pid_t spawn_remover(const char *dir, int *alive_fd)
{
	int alive[2];
	pid_t pid;
	char byte;

	if (pipe2(alive, O_CLOEXEC) < 0)
		die_errno("pipe");
	pid = fork();
	if (pid < 0)
		die_errno("fork");
	if (pid == 0) {
		close(alive[1]);
		setsid();
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGQUIT, SIG_IGN);
		while (read(alive[0], &byte, 1) < 0 && errno == EINTR)
			;
		remove_tree(dir);
		_exit(0);
	}
	close(alive[0]);
	*alive_fd = alive[1];
	return pid;
}

/* The process that removes the extracted copy, and the pipe whose closing starts it. */
static pid_t remover = -1;
static int remover_fd = -1;

/* Also at exit after die(): the copy is gone before the runtime ends, not a moment later. */
static void finish_removal(void)
{
	if (remover < 0)
		return;
	close(remover_fd);
	while (waitpid(remover, NULL, 0) < 0 && errno == EINTR)
		;
	remover = -1;
}

static int run_extracted(const struct image *img, int argc, char **argv, const char *argv0)
{
	char *dir = xasprintf("%s/.runimage_extract.XXXXXX", tmp_dir());
	int rc;

	if (!mkdtemp(dir))
		die("cannot create a directory in %s: %s (set TMPDIR to a directory you can write to)",
		    tmp_dir(), strerror(errno));
	remover = spawn_remover(dir, &remover_fd);
	atexit(finish_removal);
	extract_image(img, dir, NULL);
	rc = run_payload(img, dir, argc, argv, argv0, 0);
	finish_removal();
	free(dir);
	return rc;
}

static const char *method_name(enum mount_method method)
{
	switch (method) {
	case MOUNT_HELPER:
		return "fusermount";
	case MOUNT_DIRECT:
		return "mount(2)";
	case MOUNT_USERNS:
		return "a user namespace";
	default:
		return "nothing";
	}
}

/* Mount by the first method that works; false when none does. */
static bool mount_any(const struct image *img, struct mount *m)
{
	memset(m, 0, sizeof(*m));
	m->method = mount_choose(&m->helper);
	if (m->method == MOUNT_NONE)
		return false;
	while (m->method != MOUNT_NONE) {
		if (mount_image(img, m))
			return true;
		m->method = mount_fallback(m->method);
	}
	return false;
}

static int wait_for_interrupt(void)
{
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigwait(&set, &sig);
	return sig;
}

static int mount_and_wait(const struct image *img)
{
	struct mount m;

	image_check(img);
	if (!mount_any(img, &m))
		die("cannot mount %s: FUSE is not available (/dev/fuse, fusermount or user "
		    "namespaces)", img->path);
	if (m.method == MOUNT_USERNS)
		/* Only reachable through a process inside the namespace. */
		printf("/proc/%d/root%s\n", (int)m.keeper, m.point);
	else
		printf("%s\n", m.point);
	fflush(stdout);
	wait_for_interrupt();
	mount_release(&m);
	return 0;
}

static int mount_and_run(const struct image *img, int argc, char **argv, const char *argv0)
{
	const char *extract = getenv("RUNTIME_EXTRACT_AND_RUN");
	struct mount m;
	int rc;

	image_check(img);
	if (extract && strcmp(extract, "1") == 0)
		return run_extracted(img, argc, argv, argv0);
	if (!mount_any(img, &m)) {
		warn("FUSE is not available here (no usable /dev/fuse, fusermount or user "
		     "namespace): running from a copy extracted to %s, which is slower",
		     tmp_dir());
		return run_extracted(img, argc, argv, argv0);
	}
	if (getenv("RUNTIME_DEBUG"))
		fprintf(stderr, "%s: mounted on %s with %s\n", RUNTIME_NAME, m.point,
			method_name(m.method));
	prefetch_start(m.point);
	rc = run_payload(img, m.point, argc, argv, argv0, m.keeper);
	mount_release(&m);
	remove_dead_mounts(&m);
	return rc;
}

int main(int argc, char **argv)
{
	const char *opt = argc > 1 ? argv[1] : "";
	const char *argv0 = argc > 0 ? argv[0] : RUNTIME_NAME;
	struct image img;

	open_standard_fds();
	if (strcmp(opt, "--runtime-help") == 0) {
		print_usage();
		return 0;
	}
	if (strcmp(opt, "--runtime-version") == 0) {
		printf("%s %s\n", RUNTIME_NAME, RUNTIME_VERSION);
		return 0;
	}
	image_locate(&img);
	if (strcmp(opt, "--runtime-offset") == 0) {
		printf("%" PRIu64 "\n", img.offset);
		return 0;
	}
	if (strcmp(opt, "--runtime-portable-home") == 0) {
		portable_home(&img);
		return 0;
	}
	if (strcmp(opt, "--runtime-portable-config") == 0) {
		char *path = xasprintf("%s.config", img.path);

		create_dir(path);
		return 0;
	}
	if (strcmp(opt, "--runtime-extract") == 0) {
		image_check(&img);
		return extract_image(&img, "RunDir", argc > 2 ? argv[2] : NULL);
	}
	if (strcmp(opt, "--runtime-extract-and-run") == 0) {
		image_check(&img);
		return run_extracted(&img, argc - 2, argv + 2, argv0);
	}
	if (strcmp(opt, "--runtime-mount") == 0)
		return mount_and_wait(&img);
	return mount_and_run(&img, argc > 0 ? argc - 1 : 0, argv + 1, argv0);
}
