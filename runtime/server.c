/*
 * The FUSE server: squashfuse's low-level operations behind one lock, tuned
 * so that the kernel caches as much as it can.
 *
 * libsquashfuse keeps its block caches in the sqfs structure without any
 * locking, so every call into the library holds fs_lock; replies that carry
 * file data are sent after the lock is dropped.
 */
#define _GNU_SOURCE
#include "runtime.h"

#include <errno.h>
#include <float.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#define ENTRY_TIMEOUT DBL_MAX
#define MAX_WRITE (1u << 20)

static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;
static bool no_open;
static bool no_opendir;

static void server_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Requests of up to 1 MiB: libfuse derives max_pages from max_write. */
	conn->max_write = MAX_WRITE;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* The image never changes: never drop cached pages on attribute checks. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	if (getenv("RUNTIME_NO_READDIRPLUS"))
		conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	else if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	/*
	 * Without open and opendir round trips the kernel keeps page and
	 * directory caches across opens (FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR).
	 */
	no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
	no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
}

static sqfs_ll *server_ll(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_lookup(req, parent, name);
	pthread_mutex_unlock(&fs_lock);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_forget(req, ino, nlookup);
	pthread_mutex_unlock(&fs_lock);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_getattr(req, ino, fi);
	pthread_mutex_unlock(&fs_lock);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_readlink(req, ino);
	pthread_mutex_unlock(&fs_lock);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (no_open) {
		/* The kernel stops sending opens and releases from now on. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_open(req, ino, fi);
	pthread_mutex_unlock(&fs_lock);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	sqfs_ll *ll = server_ll(req);
	sqfs_inode local, *inode = (sqfs_inode *)(uintptr_t)fi->fh;
	sqfs_off_t got = size;
	sqfs_err err = SQFS_OK;
	char *buf = malloc(size);

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs_lock);
	if (!inode) {
		inode = &local;
		err = sqfs_ll_inode(ll, inode, ino);
	}
	if (err == SQFS_OK)
		err = sqfs_read_range(&ll->fs, inode, off, &got, buf);
	pthread_mutex_unlock(&fs_lock);
	if (err != SQFS_OK)
		fuse_reply_err(req, EIO);
	else
		fuse_reply_buf(req, buf, got);
	free(buf);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_opendir(req, ino, fi);
	pthread_mutex_unlock(&fs_lock);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* squashfuse's stat.h is not installed; the function is exported. */
sqfs_err sqfs_stat(sqfs *fs, sqfs_inode *inode, struct stat *st);

/* One directory entry for readdir, or with its attributes for readdirplus. */
static size_t add_entry(fuse_req_t req, sqfs_ll *ll, sqfs_dir_entry *entry, char *pos,
			size_t size, bool plus, int *rc)
{
	const char *name = sqfs_dentry_name(entry);
	off_t next = sqfs_dentry_next_offset(entry);
	struct fuse_entry_param e;
	sqfs_inode inode;

	memset(&e, 0, sizeof(e));
	if (!plus) {
		e.attr.st_ino = ll->ino_fuse_num(ll, entry);
		e.attr.st_mode = sqfs_dentry_mode(entry);
		return fuse_add_direntry(req, pos, size, name, &e.attr, next);
	}
	if (sqfs_inode_get(&ll->fs, &inode, sqfs_dentry_inode(entry)) != SQFS_OK ||
	    sqfs_stat(&ll->fs, &inode, &e.attr) != SQFS_OK) {
		*rc = EIO;
		return 0;
	}
	e.attr_timeout = e.entry_timeout = ENTRY_TIMEOUT;
	e.ino = ll->ino_fuse_num(ll, entry);
	e.attr.st_ino = e.ino;
	/* Entry size first: the kernel counts a lookup only for entries sent. */
	if (fuse_add_direntry_plus(req, NULL, 0, name, &e, next) > size)
		return size + 1;
	e.ino = ll->ino_register(ll, entry);
	return fuse_add_direntry_plus(req, pos, size, name, &e, next);
}

static void read_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi, bool plus)
{
	sqfs_ll *ll = server_ll(req);
	sqfs_ll_i *open_dir = (sqfs_ll_i *)(uintptr_t)fi->fh;
	sqfs_inode inode;
	sqfs_dir dir;
	sqfs_name name;
	sqfs_dir_entry entry;
	sqfs_err err = SQFS_OK;
	char *buf = malloc(size), *pos = buf;
	int rc = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs_lock);
	if (open_dir)
		inode = open_dir->inode;
	else if (sqfs_ll_inode(ll, &inode, ino) != SQFS_OK)
		rc = ENOENT;
	if (!rc && !S_ISDIR(inode.base.mode))
		rc = ENOTDIR;
	if (!rc && sqfs_dir_open(&ll->fs, &inode, &dir, off) != SQFS_OK)
		rc = EINVAL;
	if (!rc) {
		sqfs_dentry_init(&entry, name);
		while (!rc && sqfs_dir_next(&ll->fs, &dir, &entry, &err)) {
			size_t len = add_entry(req, ll, &entry, pos, size, plus, &rc);

			if (rc || len > size)
				break;
			pos += len;
			size -= len;
		}
		if (err != SQFS_OK)
			rc = EIO;
	}
	pthread_mutex_unlock(&fs_lock);
	if (rc && pos == buf)
		fuse_reply_err(req, rc);
	else
		fuse_reply_buf(req, buf, pos - buf);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	read_dir(req, ino, size, off, fi, false);
}

/* Attributes with the names: no lookup per entry after a listing. */
static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	read_dir(req, ino, size, off, fi, true);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs_lock);
	stfs_ll_op_statfs(req, ino);
	pthread_mutex_unlock(&fs_lock);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_listxattr(req, ino, size);
	pthread_mutex_unlock(&fs_lock);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_getxattr(req, ino, name, size);
	pthread_mutex_unlock(&fs_lock);
}

static const struct fuse_lowlevel_ops server_ops = {
	.init = server_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.listxattr = op_listxattr,
	.getxattr = op_getxattr,
};

void server_config_from_env(struct server_config *cfg)
{
	const char *threads = getenv("RUNTIME_FUSE_THREADS");
	const char *blocks = getenv("RUNTIME_CACHE_BLOCKS");

	cfg->threads = threads ? atoi(threads) : 1;
	if (cfg->threads < 1)
		cfg->threads = 1;
	cfg->cache_blocks = blocks ? (unsigned)atoi(blocks) : 32;
	if (cfg->cache_blocks < 1)
		cfg->cache_blocks = 1;
}

/* More decompressed blocks than the library's default of one data block. */
static void server_grow_caches(sqfs_ll *ll, unsigned blocks)
{
	sqfs_cache_destroy(&ll->fs.data_cache);
	sqfs_cache_destroy(&ll->fs.frag_cache);
	if (sqfs_block_cache_init(&ll->fs.data_cache, blocks) != SQFS_OK ||
	    sqfs_block_cache_init(&ll->fs.frag_cache, blocks) != SQFS_OK)
		die("out of memory");
}

struct watcher {
	struct fuse_session *se;
	int alive_fd;
	void (*on_parent_gone)(void *);
	void *arg;
};

/* Waits until the runtime closes its end of the pipe (it is done or dead). */
static void *watch_parent(void *data)
{
	struct watcher *w = data;
	struct pollfd pfd = { .fd = w->alive_fd, .events = POLLIN };
	char c;

	for (;;) {
		if (poll(&pfd, 1, -1) < 0 && errno == EINTR)
			continue;
		if (read(w->alive_fd, &c, 1) == 0)
			break;
	}
	/*
	 * Lazy unmount: the mount leaves the namespace now; the server keeps
	 * answering whoever still holds files open, and its loop ends when
	 * the kernel releases the connection.
	 */
	w->on_parent_gone(w->arg);
	return NULL;
}

int server_run(struct sqfs_ll *ll, int fuse_fd, const struct server_config *cfg,
	       int alive_fd, void (*on_parent_gone)(void *), void *arg)
{
	char *argv[] = { RUNTIME_NAME, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(1, argv);
	struct fuse_loop_config loop = { .clone_fd = 0, .max_idle_threads = 4 };
	struct watcher w = { .alive_fd = alive_fd, .on_parent_gone = on_parent_gone, .arg = arg };
	char fd_path[32];
	pthread_t thread;
	int rc;

	server_grow_caches(ll, cfg->cache_blocks);
	w.se = fuse_session_new(&args, &server_ops, sizeof(server_ops), ll);
	if (!w.se)
		return -1;
	snprintf(fd_path, sizeof(fd_path), "/dev/fd/%d", fuse_fd);
	if (fuse_session_mount(w.se, fd_path) != 0) {
		fuse_session_destroy(w.se);
		return -1;
	}
	if (pthread_create(&thread, NULL, watch_parent, &w) != 0)
		die("cannot start the unmount watcher thread");
	pthread_detach(thread);
	if (cfg->threads > 1) {
		loop.max_idle_threads = cfg->threads;
		rc = fuse_session_loop_mt(w.se, &loop);
	} else {
		rc = fuse_session_loop(w.se);
	}
	fuse_session_destroy(w.se);
	return rc;
}
