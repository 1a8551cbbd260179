/*
 * The FUSE server: squashfuse's low-level operations, tuned so that the
 * kernel caches as much as it can.
 *
 * libsquashfuse keeps its block caches in the sqfs structure without any
 * locking. Lookups, attributes, directories and links go through the one
 * sqfs of the sqfs_ll behind fs_lock. Reads find their blocks through a
 * small pool of further sqfs handles on the same image, each with its own
 * lock and metadata cache, and take the blocks' data from a cache of
 * decompressed blocks shared by all threads, so that reads of different
 * blocks decompress in parallel and no block is decompressed twice at once.
 * Lookups, listings and reads tell push.c which small files the kernel
 * knows, so that it can store them in the page cache before they are read.
 */
#define _GNU_SOURCE
#include "runtime.h"
#include "server.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#define ENTRY_TIMEOUT DBL_MAX
#define MAX_WRITE (1u << 20)
#define MD_CACHE_BLOCKS 64
#define READER_MD_BLOCKS 16
#define MAX_READERS 8

static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;
static bool no_open;
static bool no_opendir;

/* Requests by kind, for RUNTIME_FUSE_STATS: count, time in the handler, bytes sent. */
enum op_kind {
	OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_READLINK, OP_OPEN, OP_READ, OP_RELEASE, OP_OPENDIR,
	OP_READDIR, OP_READDIRPLUS, OP_RELEASEDIR, OP_STATFS, OP_XATTR, OP_KINDS
};
static const char *const op_names[OP_KINDS] = {
	"lookup", "forget", "getattr", "readlink", "open", "read", "release", "opendir",
	"readdir", "readdirplus", "releasedir", "statfs", "xattr",
};
static struct op_stat {
	uint64_t count, ns, bytes;
} op_stats[OP_KINDS];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool stats_on;
static bool trace_on;
static uint64_t trace_start;

/* One line of RUNTIME_FUSE_STATS=trace, with the milliseconds since the mount. */
__attribute__((format(printf, 1, 2))) static void trace(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: %8.3f ", RUNTIME_NAME, (now_ns() - trace_start) / 1e6);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* Wraps the library's decompressor to count blocks, for RUNTIME_FUSE_STATS. */
static sqfs_decompressor real_decompressor;
static struct op_stat decompressed;

static sqfs_err counting_decompressor(void *in, size_t insz, void *out, size_t *outsz)
{
	uint64_t start = now_ns();
	sqfs_err err = real_decompressor(in, insz, out, outsz);

	__atomic_add_fetch(&decompressed.count, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&decompressed.ns, now_ns() - start, __ATOMIC_RELAXED);
	__atomic_add_fetch(&decompressed.bytes, *outsz, __ATOMIC_RELAXED);
	if (trace_on)
		trace("decompress %zu -> %zu %.3f ms\n", insz, *outsz,
			(now_ns() - start) / 1e6);
	return err;
}

static uint64_t stat_begin(void)
{
	return stats_on ? now_ns() : 0;
}

static void stat_end(enum op_kind kind, uint64_t start, uint64_t bytes)
{
	if (!stats_on)
		return;
	__atomic_add_fetch(&op_stats[kind].count, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&op_stats[kind].ns, now_ns() - start, __ATOMIC_RELAXED);
	__atomic_add_fetch(&op_stats[kind].bytes, bytes, __ATOMIC_RELAXED);
}

static void stats_print(uint64_t served_ns)
{
	uint64_t count = 0, ns = 0, pushed_files, pushed_bytes;
	struct rusage usage;
	struct timespec cpu;

	for (int i = 0; i < OP_KINDS; i++) {
		if (!op_stats[i].count)
			continue;
		fprintf(stderr, "%s: fuse %-12s %7llu requests %9.3f ms %10llu bytes\n",
			RUNTIME_NAME, op_names[i], (unsigned long long)op_stats[i].count,
			op_stats[i].ns / 1e6, (unsigned long long)op_stats[i].bytes);
		count += op_stats[i].count;
		ns += op_stats[i].ns;
	}
	push_stats(&pushed_files, &pushed_bytes);
	fprintf(stderr, "%s: pushed       %7llu files                 %10llu bytes\n",
		RUNTIME_NAME, (unsigned long long)pushed_files, (unsigned long long)pushed_bytes);
	fprintf(stderr, "%s: decompressed %7llu blocks   %9.3f ms %10llu bytes\n", RUNTIME_NAME,
		(unsigned long long)decompressed.count, decompressed.ns / 1e6,
		(unsigned long long)decompressed.bytes);
	getrusage(RUSAGE_SELF, &usage);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	fprintf(stderr,
		"%s: fuse total        %7llu requests %9.3f ms in handlers, %.3f ms mounted, "
		"server cpu %.3f ms, %ld page faults\n",
		RUNTIME_NAME, (unsigned long long)count, ns / 1e6, served_ns / 1e6,
		(cpu.tv_sec * 1e9 + cpu.tv_nsec) / 1e6, usage.ru_minflt);
}

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

/* The directory entry name in parent: its inode and attributes; 0 or an errno. */
static int lookup_entry(sqfs_ll *ll, fuse_ino_t parent, const char *name, sqfs_inode *inode,
			struct fuse_entry_param *e)
{
	sqfs_inode dir;
	sqfs_name namebuf;
	sqfs_dir_entry entry;
	bool found = false;

	if (sqfs_ll_inode(ll, &dir, parent) != SQFS_OK)
		return ENOENT;
	if (!S_ISDIR(dir.base.mode))
		return ENOTDIR;
	sqfs_dentry_init(&entry, namebuf);
	if (sqfs_dir_lookup(&ll->fs, &dir, name, strlen(name), &entry, &found) != SQFS_OK)
		return EIO;
	if (!found)
		return ENOENT;
	if (sqfs_inode_get(&ll->fs, inode, sqfs_dentry_inode(&entry)) != SQFS_OK ||
	    sqfs_stat(&ll->fs, inode, &e->attr) != SQFS_OK)
		return EIO;
	e->attr_timeout = e->entry_timeout = ENTRY_TIMEOUT;
	e->ino = twins_ino(ll, inode, ll->ino_register(ll, &entry));
	e->attr.st_ino = e->ino;
	return 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	sqfs_ll *ll = server_ll(req);
	uint64_t start = stat_begin();
	struct fuse_entry_param e;
	struct squashfs_fragment_entry frag;
	sqfs_inode inode;
	bool small;
	int rc;

	memset(&e, 0, sizeof(e));
	pthread_mutex_lock(&fs_lock);
	rc = lookup_entry(ll, parent, name, &inode, &e);
	small = !rc && push_wanted(&inode) &&
		sqfs_frag_entry(&ll->fs, &frag, inode.xtra.reg.frag_idx) == SQFS_OK;
	pthread_mutex_unlock(&fs_lock);
	if (rc == ENOENT) {
		/*
		 * A negative entry the kernel keeps: the image never changes, and
		 * the dynamic loader and Python probe the same missing names
		 * (glibc-hwcaps, tls, __init__.so) again and again.
		 */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = ENTRY_TIMEOUT;
		fuse_reply_entry(req, &e);
	} else if (rc) {
		fuse_reply_err(req, rc);
	} else {
		fuse_reply_entry(req, &e);
	}
	/* Once the kernel knows the inode, before the caller reads it. */
	if (small)
		push_after_lookup(e.ino, &inode, &frag);
	if (trace_on)
		trace("lookup %lu %s\n", (unsigned long)parent, name);
	stat_end(OP_LOOKUP, start, 0);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	uint64_t start = stat_begin();

	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_forget(req, ino, nlookup);
	pthread_mutex_unlock(&fs_lock);
	stat_end(OP_FORGET, start, 0);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t start = stat_begin();

	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_getattr(req, ino, fi);
	pthread_mutex_unlock(&fs_lock);
	stat_end(OP_GETATTR, start, 0);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	uint64_t start = stat_begin();

	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_readlink(req, ino);
	pthread_mutex_unlock(&fs_lock);
	stat_end(OP_READLINK, start, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	stat_end(OP_OPEN, stat_begin(), 0);
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
	stat_end(OP_RELEASE, stat_begin(), 0);
	free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/*
 * Decompressed data and fragment blocks, shared by all server threads and
 * keyed by their position in the image, so that each block is decompressed
 * once however many threads read it: with caches of their own, concurrent
 * reads of neighbouring pages (the kernel's read-ahead, small files sharing
 * a fragment) decompressed the same block several times over.
 *
 * A thread that finds a block missing inserts it as loading and decompresses
 * it without holding the lock; others that want it meanwhile wait for it.
 * Blocks in use are referenced and never evicted; the least recently used
 * unreferenced ones go when the cache is full.
 */
struct shared_block {
	sqfs_off_t pos;
	sqfs_block *block; /* NULL while it is read, or when it could not be */
	bool loading;
	unsigned refs;
	struct shared_block *bucket_next;
	struct shared_block *older, *newer;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t loaded;
	struct shared_block **buckets;
	size_t bucket_mask;
	struct shared_block *oldest, *newest;
	unsigned count, capacity;
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER, .loaded = PTHREAD_COND_INITIALIZER };

static void cache_init(unsigned capacity)
{
	size_t buckets = 16;

	while (buckets < 2 * (size_t)capacity)
		buckets *= 2;
	cache.buckets = xcalloc(buckets, sizeof(*cache.buckets));
	cache.bucket_mask = buckets - 1;
	cache.capacity = capacity;
}

static struct shared_block **cache_bucket(sqfs_off_t pos)
{
	return &cache.buckets[((uint64_t)pos * 0x9e3779b97f4a7c15u >> 32) & cache.bucket_mask];
}

static void lru_unlink(struct shared_block *b)
{
	*(b->older ? &b->older->newer : &cache.oldest) = b->newer;
	*(b->newer ? &b->newer->older : &cache.newest) = b->older;
	b->older = b->newer = NULL;
}

static void lru_push_newest(struct shared_block *b)
{
	b->older = cache.newest;
	*(cache.newest ? &cache.newest->newer : &cache.oldest) = b;
	cache.newest = b;
}

static void cache_remove(struct shared_block *b)
{
	struct shared_block **link = cache_bucket(b->pos);

	while (*link != b)
		link = &(*link)->bucket_next;
	*link = b->bucket_next;
	lru_unlink(b);
	cache.count--;
	if (b->block)
		sqfs_block_dispose(b->block);
	free(b);
}

/* Makes room for one more block, where one is unused; the cache may run over meanwhile. */
static void cache_evict(void)
{
	for (struct shared_block *b = cache.oldest; b && cache.count >= cache.capacity;) {
		struct shared_block *newer = b->newer;

		if (!b->refs && !b->loading)
			cache_remove(b);
		b = newer;
	}
}

/*
 * The block at pos, header hdr, decompressed and referenced: see block_cache_put().
 * Its block is NULL where it could not be read; NULL when out of memory.
 */
struct shared_block *block_cache_get(sqfs *fs, sqfs_off_t pos, uint32_t hdr)
{
	struct shared_block *b;
	sqfs_block *block;

	pthread_mutex_lock(&cache.lock);
	for (b = *cache_bucket(pos); b && b->pos != pos; b = b->bucket_next)
		;
	if (b) {
		b->refs++;
		lru_unlink(b);
		lru_push_newest(b);
		while (b->loading)
			pthread_cond_wait(&cache.loaded, &cache.lock);
		pthread_mutex_unlock(&cache.lock);
		return b;
	}
	cache_evict();
	b = calloc(1, sizeof(*b));
	if (!b) {
		pthread_mutex_unlock(&cache.lock);
		return NULL;
	}
	b->pos = pos;
	b->loading = true;
	b->refs = 1;
	b->bucket_next = *cache_bucket(pos);
	*cache_bucket(pos) = b;
	lru_push_newest(b);
	cache.count++;
	pthread_mutex_unlock(&cache.lock);

	if (trace_on)
		trace("block %lld\n", (long long)pos);
	/* Only the image's fd, offset and decompressor: safe beside other threads. */
	if (sqfs_data_block_read(fs, pos, hdr, &block) != SQFS_OK)
		block = NULL;

	pthread_mutex_lock(&cache.lock);
	b->block = block;
	b->loading = false;
	pthread_cond_broadcast(&cache.loaded);
	pthread_mutex_unlock(&cache.lock);
	return b;
}

/* The block at pos, referenced, where the cache holds it read; else NULL. */
struct shared_block *block_cache_peek(sqfs_off_t pos)
{
	struct shared_block *b;

	pthread_mutex_lock(&cache.lock);
	for (b = *cache_bucket(pos); b && b->pos != pos; b = b->bucket_next)
		;
	if (b && !b->loading && b->block)
		b->refs++;
	else
		b = NULL;
	pthread_mutex_unlock(&cache.lock);
	return b;
}

/* Its data, or NULL where it could not be read. */
const sqfs_block *block_cache_data(const struct shared_block *b)
{
	return b->block;
}

void block_cache_put(struct shared_block *b)
{
	pthread_mutex_lock(&cache.lock);
	/* A failed read is not kept: the next request tries again. */
	if (--b->refs == 0 && !b->block)
		cache_remove(b);
	pthread_mutex_unlock(&cache.lock);
}

/* One stretch of a read: len bytes at skip in the block at pos (header hdr), or zeros. */
struct piece {
	sqfs_off_t pos;
	uint32_t hdr;
	bool hole;
	size_t skip, len;
	struct shared_block *shared;
};

/* This thread's pieces and iovecs, grown as reads need, kept between requests. */
static __thread struct piece *thread_pieces;
static __thread struct iovec *thread_iov;
static __thread size_t thread_piece_room;

static bool reserve_pieces(size_t count)
{
	struct piece *pieces;
	struct iovec *iov;

	if (count <= thread_piece_room)
		return true;
	pieces = realloc(thread_pieces, count * sizeof(*pieces));
	if (pieces)
		thread_pieces = pieces;
	iov = realloc(thread_iov, count * sizeof(*iov));
	if (iov)
		thread_iov = iov;
	if (!pieces || !iov)
		return false;
	thread_piece_room = count;
	return true;
}

/*
 * Where the bytes [off, off + size) of a regular file lie, clipped to its
 * end: which blocks, and which bytes of each. Reads the file's block list and
 * fragment entry, metadata of the handle fs. The number of pieces, 0 at the
 * end of the file, -1 on errors.
 */
static int plan_read(sqfs *fs, sqfs_inode *inode, sqfs_off_t off, size_t size)
{
	sqfs_off_t file_size = inode->xtra.reg.file_size;
	size_t block_size = fs->sb.block_size, skip = (size_t)(off % block_size);
	struct squashfs_fragment_entry frag;
	sqfs_blocklist bl;
	int count = 0;

	if (!S_ISREG(inode->base.mode) || off < 0)
		return -1;
	if (off >= file_size)
		return 0;
	if ((sqfs_off_t)size > file_size - off)
		size = (size_t)(file_size - off);
	if (!reserve_pieces(size / block_size + 2) ||
	    sqfs_blockidx_blocklist(fs, inode, &bl, off) != SQFS_OK)
		return -1;
	while (size > 0) {
		struct piece *p = &thread_pieces[count];

		if (bl.remain == 0) {
			/* The tail of the file, in a fragment block shared with other files. */
			if (inode->xtra.reg.frag_idx == SQUASHFS_INVALID_FRAG ||
			    sqfs_frag_entry(fs, &frag, inode->xtra.reg.frag_idx) != SQFS_OK)
				return -1;
			*p = (struct piece){ .pos = (sqfs_off_t)frag.start_block, .hdr = frag.size,
					     .skip = inode->xtra.reg.frag_off + skip, .len = size };
			return count + 1;
		}
		if (sqfs_blocklist_next(&bl) != SQFS_OK)
			return -1;
		if ((sqfs_off_t)(bl.pos + block_size) <= off)
			continue;
		*p = (struct piece){ .pos = (sqfs_off_t)bl.block, .hdr = bl.header,
				     .hole = bl.input_size == 0, .skip = skip,
				     .len = block_size - skip < size ? block_size - skip : size };
		size -= p->len;
		skip = 0;
		count++;
	}
	return count;
}

/* A block of zeros, for the holes of sparse files. */
static char *zero_block;

/*
 * Points the iovecs at the pieces' bytes in the shared cache, decompressing
 * what is missing; false where a block cannot be read or is shorter than the
 * inode says (a corrupt image). References what it gets: see pieces_put().
 */
static bool pieces_get(sqfs *fs, int count)
{
	bool ok = true;

	for (int i = 0; i < count; i++) {
		struct piece *p = &thread_pieces[i];
		struct iovec *iov = &thread_iov[i];

		p->shared = NULL;
		iov->iov_len = p->len;
		if (p->hole) {
			iov->iov_base = zero_block;
			continue;
		}
		p->shared = block_cache_get(fs, p->pos, p->hdr);
		if (!p->shared || !p->shared->block ||
		    p->skip + p->len > p->shared->block->size) {
			ok = false;
			continue;
		}
		iov->iov_base = (char *)p->shared->block->data + p->skip;
	}
	return ok;
}

static void pieces_put(int count)
{
	for (int i = 0; i < count; i++)
		if (thread_pieces[i].shared)
			block_cache_put(thread_pieces[i].shared);
}

/*
 * Handles for file metadata (block lists, fragment entries, inodes): each an
 * sqfs of its own on the image's fd, with its own metadata cache, used by one
 * request at a time. Inodes are plain positions in the image, valid for
 * every handle.
 */
struct reader {
	pthread_mutex_t lock;
	sqfs fs;
};
static struct reader *readers;
static unsigned reader_count;
static unsigned reader_next;
/* The handle this thread used last: its cache likely holds what it reads next. */
static __thread unsigned thread_reader = UINT_MAX;

static struct reader *reader_acquire(void)
{
	unsigned first = thread_reader;

	if (first >= reader_count)
		first = __atomic_fetch_add(&reader_next, 1, __ATOMIC_RELAXED) % reader_count;
	for (unsigned i = 0; i < reader_count; i++) {
		unsigned n = (first + i) % reader_count;

		if (pthread_mutex_trylock(&readers[n].lock) == 0) {
			thread_reader = n;
			return &readers[n];
		}
	}
	pthread_mutex_lock(&readers[first].lock);
	thread_reader = first;
	return &readers[first];
}

/* The inode of a read without an open file handle (no open round trips). */
static sqfs_err read_inode(sqfs_ll *ll, sqfs *fs, fuse_ino_t ino, sqfs_inode *inode)
{
	sqfs_err err;

	/* On 64-bit the fuse inode number is the inode's position: no shared state. */
	if (sizeof(fuse_ino_t) >= SQFS_INODE_ID_BYTES)
		return sqfs_inode_get(fs, inode, ll->ino_sqfs(ll, ino));
	pthread_mutex_lock(&fs_lock);
	err = sqfs_ll_inode(ll, inode, ino);
	pthread_mutex_unlock(&fs_lock);
	return err;
}

/* Sent straight from the shared cache with no copy. */
static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	sqfs_ll *ll = server_ll(req);
	sqfs_inode local, *inode = (sqfs_inode *)(uintptr_t)fi->fh;
	uint64_t start = stat_begin();
	struct reader *r = reader_acquire();
	int count = -1;
	size_t sent = 0;

	if (!inode) {
		inode = &local;
		if (read_inode(ll, &r->fs, ino, inode) != SQFS_OK)
			inode = NULL;
	}
	if (inode)
		count = plan_read(&r->fs, inode, off, size);
	pthread_mutex_unlock(&r->lock);

	if (count < 0 || !pieces_get(&r->fs, count)) {
		fuse_reply_err(req, EIO);
	} else {
		for (int i = 0; i < count; i++)
			sent += thread_iov[i].iov_len;
		fuse_reply_iov(req, thread_iov, count);
	}
	if (count > 0)
		pieces_put(count);
	if (count > 0 && sent)
		push_after_read(ino, inode);
	stat_end(OP_READ, start, sent);
	if (trace_on)
		trace("read %lu %lld %zu\n", (unsigned long)ino, (long long)off, size);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	stat_end(OP_OPENDIR, stat_begin(), 0);
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
	stat_end(OP_RELEASEDIR, stat_begin(), 0);
	free((void *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

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
	e.ino = twins_ino(ll, &inode, ll->ino_register(ll, entry));
	e.attr.st_ino = e.ino;
	/* The kernel knows this inode now: its data may be pushed to it. */
	push_note(e.ino, &inode);
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
	uint64_t start = stat_begin();
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
	stat_end(plus ? OP_READDIRPLUS : OP_READDIR, start, pos - buf);
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
	uint64_t start = stat_begin();

	pthread_mutex_lock(&fs_lock);
	stfs_ll_op_statfs(req, ino);
	pthread_mutex_unlock(&fs_lock);
	stat_end(OP_STATFS, start, 0);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	uint64_t start = stat_begin();

	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_listxattr(req, ino, size);
	pthread_mutex_unlock(&fs_lock);
	stat_end(OP_XATTR, start, 0);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	uint64_t start = stat_begin();

	pthread_mutex_lock(&fs_lock);
	sqfs_ll_op_getxattr(req, ino, name, size);
	pthread_mutex_unlock(&fs_lock);
	stat_end(OP_XATTR, start, 0);
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

/* Threads of the FUSE loop: they overlap the kernel round trips of concurrent
 * requests, and each has a read handle of its own (at most MAX_READERS), so file
 * data decompresses in parallel. */
#define DEFAULT_THREADS 4

/*
 * Decompressed blocks kept by default: 4 MiB worth, at least 16 blocks. Each
 * block's memory is new to the process until the cache is full and blocks are
 * recycled; with 16 MiB a start faulted in twice the pages for the same
 * number of blocks decompressed (about 2 ms more server time at each start).
 */
#define CACHE_BYTES (4u << 20)
#define CACHE_MIN_BLOCKS 16

void server_config_from_env(struct server_config *cfg)
{
	const char *threads = getenv("RUNTIME_FUSE_THREADS");
	const char *blocks = getenv("RUNTIME_CACHE_BLOCKS");

	cfg->threads = threads ? atoi(threads) : DEFAULT_THREADS;
	if (cfg->threads < 1)
		cfg->threads = 1;
	/* 0: by the image's block size, known once it is open. */
	cfg->cache_blocks = blocks && atoi(blocks) > 0 ? (unsigned)atoi(blocks) : 0;
}

static void set_caches(sqfs *fs, unsigned md, unsigned data, unsigned frag)
{
	sqfs_cache_destroy(&fs->md_cache);
	sqfs_cache_destroy(&fs->data_cache);
	sqfs_cache_destroy(&fs->frag_cache);
	if (sqfs_block_cache_init(&fs->md_cache, md) != SQFS_OK ||
	    sqfs_block_cache_init(&fs->data_cache, data) != SQFS_OK ||
	    sqfs_block_cache_init(&fs->frag_cache, frag) != SQFS_OK)
		die("out of memory");
}

/*
 * The shared handle: 64 metadata blocks (8 KiB each) instead of the library's
 * 8 (a run of Python importing from the rootfs decompressed the same inode
 * and directory blocks about 200 times over with 8); it reads no file data.
 *
 * One metadata handle per server thread (at most MAX_READERS); file data
 * goes through the shared block cache, not the library's caches.
 */
static void server_open_readers(sqfs_ll *ll, const struct server_config *cfg)
{
	unsigned blocks = cfg->cache_blocks;

	if (!blocks)
		blocks = CACHE_BYTES / ll->fs.sb.block_size;
	cache_init(blocks < CACHE_MIN_BLOCKS ? CACHE_MIN_BLOCKS : blocks);
	zero_block = xcalloc(1, ll->fs.sb.block_size);
	set_caches(&ll->fs, MD_CACHE_BLOCKS, 1, 1);
	reader_count = cfg->threads < MAX_READERS ? (unsigned)cfg->threads : MAX_READERS;
	readers = xmalloc(reader_count * sizeof(*readers));
	for (unsigned i = 0; i < reader_count; i++) {
		pthread_mutex_init(&readers[i].lock, NULL);
		if (sqfs_init(&readers[i].fs, ll->fs.fd, ll->fs.offset) != SQFS_OK)
			die("cannot open the squashfs image for reading");
		set_caches(&readers[i].fs, READER_MD_BLOCKS, 1, 1);
		if (stats_on)
			readers[i].fs.decompressor = counting_decompressor;
	}
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
	uint64_t mounted;
	int rc;

	/*
	 * Decompressed blocks and request buffers from the heap, kept when
	 * freed: no mmap, munmap and fresh zeroed pages per block.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	stats_on = getenv("RUNTIME_FUSE_STATS") != NULL;
	if (stats_on) {
		real_decompressor = ll->fs.decompressor;
		ll->fs.decompressor = counting_decompressor;
	}
	trace_on = stats_on && strcmp(getenv("RUNTIME_FUSE_STATS"), "trace") == 0;
	mounted = trace_start = now_ns();
	server_open_readers(ll, cfg);
	twins_init(ll);
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
	/* Stores after lookups only with more than one thread: see push.c. */
	push_start(w.se, ll, cfg->threads > 1);
	pthread_detach(thread);
	if (cfg->threads > 1) {
		loop.max_idle_threads = cfg->threads;
		rc = fuse_session_loop_mt(w.se, &loop);
	} else {
		rc = fuse_session_loop(w.se);
	}
	push_stop();
	fuse_session_destroy(w.se);
	if (stats_on)
		stats_print(now_ns() - mounted);
	return rc;
}
