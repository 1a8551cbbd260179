/* Writing the image, or part of it, to a directory with sqfs_traverse. */
#define _GNU_SOURCE
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#define COPY_CHUNK (1u << 20)

struct dir_level {
	char *path;
	mode_t mode;
	time_t mtime;
	bool matched;  /* the pattern matched this directory or one above it */
	bool created;
};

struct extract {
	sqfs *fs;
	const char *image_path;
	const char *dest;
	const char *pattern;
	struct dir_level *dirs;
	size_t depth, cap;
	char *buf;
	unsigned long count;
};

static void set_times(const char *path, time_t mtime, int flags)
{
	struct timespec times[2] = { { .tv_sec = mtime }, { .tv_sec = mtime } };

	utimensat(AT_FDCWD, path, times, flags);
}

static void write_regular(struct extract *x, sqfs_inode *inode, const char *path)
{
	uint64_t size = inode->xtra.reg.file_size, done = 0;
	int fd;

	if (unlink(path) < 0 && errno != ENOENT)
		die_errno("cannot replace %s", path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		die_errno("cannot create %s", path);
	while (done < size) {
		sqfs_off_t got = COPY_CHUNK;

		if (sqfs_read_range(x->fs, inode, done, &got, x->buf) != SQFS_OK || got <= 0)
			die("%s: squashfs image is corrupt: cannot read %s", x->image_path, path);
		for (char *p = x->buf; got > 0;) {
			ssize_t n = write(fd, p, got);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				die_errno("cannot write %s", path);
			p += n;
			got -= n;
			done += n;
		}
	}
	if (fchmod(fd, inode->base.mode & 07777) < 0)
		die_errno("cannot set the mode of %s", path);
	if (close(fd) < 0)
		die_errno("cannot write %s", path);
	set_times(path, inode->base.mtime, 0);
}

static void write_symlink(struct extract *x, sqfs_inode *inode, const char *path)
{
	size_t size = 0;
	char *target;

	if (sqfs_readlink(x->fs, inode, NULL, &size) != SQFS_OK)
		die("%s: squashfs image is corrupt: cannot read link %s", x->image_path, path);
	target = xmalloc(size + 1);
	if (sqfs_readlink(x->fs, inode, target, &size) != SQFS_OK)
		die("%s: squashfs image is corrupt: cannot read link %s", x->image_path, path);
	if (unlink(path) < 0 && errno != ENOENT)
		die_errno("cannot replace %s", path);
	if (symlink(target, path) < 0)
		die_errno("cannot create symlink %s", path);
	set_times(path, inode->base.mtime, AT_SYMLINK_NOFOLLOW);
	free(target);
}

static void push_dir(struct extract *x, struct dir_level level)
{
	if (x->depth == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 16;
		x->dirs = realloc(x->dirs, x->cap * sizeof(*x->dirs));
		if (!x->dirs)
			die("out of memory");
	}
	x->dirs[x->depth++] = level;
}

/* A directory is finished: give it its final mode and time. */
static void pop_dir(struct extract *x)
{
	struct dir_level *level = &x->dirs[--x->depth];

	if (level->created) {
		chmod(level->path, level->mode & 07777);
		set_times(level->path, level->mtime, 0);
	}
	free(level->path);
}

static bool name_is_safe(const char *name)
{
	return name[0] && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && !strchr(name, '/');
}

static void make_parents(const char *path)
{
	char *parent = xstrdup(path);
	char *slash = strrchr(parent, '/');

	if (slash) {
		*slash = '\0';
		if (mkdir_parents(parent, 0755) < 0)
			die_errno("cannot create %s", parent);
	}
	free(parent);
}

static void extract_entry(struct extract *x, sqfs_traverse *trv)
{
	bool above = x->depth > 0 && x->dirs[x->depth - 1].matched;
	bool matched = !x->pattern || above || fnmatch(x->pattern, trv->path, 0) == 0;
	char *path = xasprintf("%s/%s", x->dest, trv->path);
	sqfs_inode inode;
	mode_t mode;

	if (!name_is_safe(sqfs_dentry_name(&trv->entry)))
		die("%s: squashfs image is corrupt: bad name in %s", x->image_path, trv->path);
	if (sqfs_inode_get(x->fs, &inode, sqfs_dentry_inode(&trv->entry)) != SQFS_OK)
		die("%s: squashfs image is corrupt: cannot read %s", x->image_path, trv->path);
	mode = inode.base.mode;
	if (S_ISDIR(mode)) {
		struct dir_level level = { .path = path, .mode = mode, .mtime = inode.base.mtime,
					   .matched = matched && x->pattern, .created = matched };

		if (matched) {
			if (x->pattern)
				make_parents(path);
			if (mkdir(path, 0700) < 0 && errno != EEXIST)
				die_errno("cannot create %s", path);
			x->count++;
		}
		push_dir(x, level);
		return;
	}
	if (!matched) {
		free(path);
		return;
	}
	if (x->pattern)
		make_parents(path);
	if (S_ISREG(mode))
		write_regular(x, &inode, path);
	else if (S_ISLNK(mode))
		write_symlink(x, &inode, path);
	else if (S_ISFIFO(mode) && mkfifo(path, mode & 07777) < 0 && errno != EEXIST)
		die_errno("cannot create %s", path);
	/* Device nodes and sockets cannot be made unprivileged: skipped. */
	x->count++;
	free(path);
}

/* Extracts the image (or the paths matching pattern) below dest; returns 0. */
int extract_image(const struct image *img, const char *dest, const char *pattern)
{
	struct sqfs_ll *ll = image_open_ll(img);
	struct extract x = { .fs = &ll->fs, .image_path = img->path, .dest = dest,
			     .pattern = pattern };
	sqfs_traverse trv;
	sqfs_err err;

	x.buf = xmalloc(COPY_CHUNK);
	if (mkdir_parents(dest, 0755) < 0)
		die_errno("cannot create %s", dest);
	if (sqfs_traverse_open(&trv, x.fs, sqfs_inode_root(x.fs)) != SQFS_OK)
		die("%s: squashfs image is corrupt: unreadable root directory", img->path);
	while (sqfs_traverse_next(&trv, &err)) {
		if (trv.dir_end)
			pop_dir(&x);
		else
			extract_entry(&x, &trv);
	}
	if (err != SQFS_OK)
		die("%s: squashfs image is corrupt: cannot read a directory", img->path);
	sqfs_traverse_close(&trv);
	while (x.depth > 0)
		pop_dir(&x);
	if (pattern && x.count == 0)
		warn("nothing in the image matches '%s'", pattern);
	free(x.dirs);
	free(x.buf);
	sqfs_ll_destroy(ll);
	free(ll);
	return 0;
}
