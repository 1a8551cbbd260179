/* runimage runtime: shared declarations. */
#ifndef RUNIMAGE_RUNTIME_H
#define RUNIMAGE_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RUNTIME_NAME "runimage-runtime"
#ifndef RUNTIME_VERSION
#define RUNTIME_VERSION "0.1.0"
#endif

/* Exit status of the runtime's own failures, distinct from the payload's. */
#define EXIT_RUNTIME 127

/* util.c: messages and small helpers */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
__attribute__((noreturn, format(printf, 1, 2))) void die_errno(const char *fmt, ...);
/* An error line without exiting. */
__attribute__((format(printf, 1, 2))) void complain(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void warn(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void warn_errno(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) char *xasprintf(const char *fmt, ...);
void open_standard_fds(void);
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
char *xstrdup(const char *s);
const char *tmp_dir(void);
const char *base_name(const char *path);
int remove_tree(const char *path);
int mkdir_parents(const char *path, mode_t mode);
int write_file(const char *path, const char *data);

/* elf.c: where the appended image starts */
bool elf_payload_offset(int fd, uint64_t *offset, const char **why);

/* image.c: the appended squashfs */
struct image {
	char *path;   /* realpath of the runimage file */
	int fd;       /* open read-only, close-on-exec */
	uint64_t offset;
	uint64_t size; /* size of the whole file */
};
void image_locate(struct image *img);
void image_check(const struct image *img);
struct sqfs_ll *image_open_ll(const struct image *img);

/* server.c: the FUSE file system server */
struct server_config {
	int threads; /* 1: single-threaded loop */
	unsigned cache_blocks;
};
void server_config_from_env(struct server_config *cfg);
int server_run(struct sqfs_ll *ll, int fuse_fd, const struct server_config *cfg,
	       int alive_fd, void (*on_parent_gone)(void *), void *arg);

/* mount.c: mounting, unmounting, the mount keeper process */
enum mount_method {
	MOUNT_HELPER,   /* the host's setuid fusermount3/fusermount */
	MOUNT_DIRECT,   /* mount(2) as root */
	MOUNT_USERNS,   /* mount(2) in a private user + mount namespace */
	MOUNT_NONE,     /* no FUSE at all: extract */
};
struct mount {
	enum mount_method method;
	char *helper;     /* fusermount path, for MOUNT_HELPER */
	char *point;      /* mount point */
	pid_t keeper;     /* FUSE server process */
	int alive_fd;     /* write end: closing it asks the keeper to unmount */
	int done_fd;      /* read end: EOF once unmounted and removed */
};
enum mount_method mount_choose(char **helper);
enum mount_method mount_fallback(enum mount_method failed);
bool mount_image(const struct image *img, struct mount *m);
void mount_release(struct mount *m);
void remove_dead_mounts(const struct mount *m);

/* extract.c: writing the image to a directory */
int extract_image(const struct image *img, const char *dest, const char *pattern);

/* prefetch.c: reading ahead what every start needs */
void prefetch_start(const char *rundir);

/* run.c: running RunDir/Run */
int run_payload(const struct image *img, const char *rundir, int argc, char **argv,
		const char *argv0, pid_t keeper);

#endif
