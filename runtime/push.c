/*
 * Pushing small files into the kernel's page cache before they are read.
 *
 * Files smaller than a block share fragment blocks, many to a block, in the
 * order mksquashfs met them: mostly the files of one directory. A program
 * that reads one of them (tar of a tree, Python importing a package) reads
 * its neighbours next, and each of those reads is a round trip through this
 * server. Once a read has brought a fragment block into the block cache, the
 * pusher thread stores the block's other files that the kernel knows (from a
 * readdirplus listing) straight into their page caches (FUSE_NOTIFY_STORE),
 * so that reading them never leaves the kernel.
 *
 * A file looked up whose fragment block is decompressed already is stored at
 * once by the thread that answered the lookup, ahead of the read that
 * usually follows. Only where the server has other threads: a store waits
 * for pages under a read in flight (the read-ahead of Run's prefetch, say),
 * and a lone server thread waiting there would never answer that read.
 *
 * The tables below are kept under push_lock; stores happen without it, so a
 * store that waits for a page under a read in flight never holds up the
 * threads that serve that read.
 */
#define _GNU_SOURCE
#include "runtime.h"

#include "server.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

/* A file held whole in a fragment block; done once read or pushed. */
struct small_file {
	fuse_ino_t ino;
	uint32_t fragment, offset, size;
	bool done;
	struct small_file *hash_next;
	struct small_file *fragment_next;
};

/* A fragment block: its files not yet done, and whether it waits for the pusher. */
struct fragment {
	struct small_file *files;
	unsigned pending;
	bool queued;
};

static pthread_mutex_t push_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t push_wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t push_idle = PTHREAD_COND_INITIALIZER;

static struct {
	struct fuse_session *se;
	sqfs fs;           /* the pusher's own handle, for the fragment table */
	uint32_t block_size;
	struct fragment *fragments;
	uint32_t fragment_count;
	struct small_file **buckets;
	size_t bucket_mask;
	uint32_t *queue; /* fragments to push, a ring of fragment_count */
	uint32_t queue_head, queue_len;
	unsigned busy; /* threads storing now */
	bool stopped;
	bool from_lookups; /* the server has threads to spare for stores after lookups */
	uint64_t files_pushed, bytes_pushed;
} push;

static struct small_file **file_bucket(fuse_ino_t ino)
{
	return &push.buckets[((uint64_t)ino * 0x9e3779b97f4a7c15u >> 32) & push.bucket_mask];
}

static struct small_file *file_find(fuse_ino_t ino)
{
	struct small_file *f = *file_bucket(ino);

	while (f && f->ino != ino)
		f = f->hash_next;
	return f;
}

/* Whether inode is a regular file that lies whole in a fragment block, pushed when it can. */
bool push_wanted(const sqfs_inode *inode)
{
	return push.fragments && S_ISREG(inode->base.mode) && inode->xtra.reg.file_size > 0 &&
	       inode->xtra.reg.file_size < push.block_size &&
	       inode->xtra.reg.frag_idx != SQUASHFS_INVALID_FRAG &&
	       inode->xtra.reg.frag_idx < push.fragment_count;
}

/* The file's record, created when missing; NULL when out of memory. */
static struct small_file *file_note(fuse_ino_t ino, const sqfs_inode *inode)
{
	struct small_file *f = file_find(ino);
	struct fragment *frag;

	if (f)
		return f;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	*f = (struct small_file){ .ino = ino, .fragment = inode->xtra.reg.frag_idx,
				  .offset = inode->xtra.reg.frag_off,
				  .size = (uint32_t)inode->xtra.reg.file_size };
	f->hash_next = *file_bucket(ino);
	*file_bucket(ino) = f;
	frag = &push.fragments[f->fragment];
	f->fragment_next = frag->files;
	frag->files = f;
	frag->pending++;
	return f;
}

void push_note(fuse_ino_t ino, const sqfs_inode *inode)
{
	if (!push_wanted(inode))
		return;
	pthread_mutex_lock(&push_lock);
	file_note(ino, inode);
	pthread_mutex_unlock(&push_lock);
}

void push_after_read(fuse_ino_t ino, const sqfs_inode *inode)
{
	struct small_file *f;
	struct fragment *frag;

	if (!push_wanted(inode))
		return;
	pthread_mutex_lock(&push_lock);
	f = file_note(ino, inode);
	if (f && !f->done) {
		f->done = true;
		push.fragments[f->fragment].pending--;
	}
	frag = &push.fragments[inode->xtra.reg.frag_idx];
	if (frag->pending && !frag->queued && !push.stopped) {
		frag->queued = true;
		push.queue[(push.queue_head + push.queue_len++) % push.fragment_count] =
			inode->xtra.reg.frag_idx;
		pthread_cond_signal(&push_wake);
	}
	pthread_mutex_unlock(&push_lock);
}

/* The files of the first queued fragment still to push, marked done as taken. */
static size_t take_fragment(uint32_t *index, struct small_file ***files, size_t *room)
{
	struct fragment *frag;
	size_t count = 0;

	*index = push.queue[push.queue_head];
	push.queue_head = (push.queue_head + 1) % push.fragment_count;
	push.queue_len--;
	frag = &push.fragments[*index];
	frag->queued = false;
	for (struct small_file *f = frag->files; f; f = f->fragment_next) {
		if (f->done)
			continue;
		if (count == *room) {
			struct small_file **grown = realloc(*files, (*room * 2 + 16) * sizeof(*grown));

			if (!grown)
				break;
			*files = grown;
			*room = *room * 2 + 16;
		}
		f->done = true;
		(*files)[count++] = f;
	}
	frag->pending -= (unsigned)count;
	return count;
}

/* Stores the file into the kernel's page cache from its fragment's block. */
static void store_file(const struct small_file *f, const sqfs_block *block)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(f->size);

	if ((size_t)f->offset + f->size > block->size)
		return;
	buf.buf[0].mem = (char *)block->data + f->offset;
	/* ENOENT where the kernel has forgotten the inode meanwhile: nothing to do. */
	if (fuse_lowlevel_notify_store(push.se, f->ino, 0, &buf, 0) == 0) {
		__atomic_add_fetch(&push.files_pushed, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&push.bytes_pushed, f->size, __ATOMIC_RELAXED);
	}
}

static void store_files(uint32_t index, struct small_file **files, size_t count)
{
	struct squashfs_fragment_entry entry;
	struct shared_block *b;

	if (sqfs_frag_entry(&push.fs, &entry, index) != SQFS_OK)
		return;
	b = block_cache_get(&push.fs, (sqfs_off_t)entry.start_block, entry.size);
	for (size_t i = 0; b && block_cache_data(b) && i < count; i++)
		store_file(files[i], block_cache_data(b));
	if (b)
		block_cache_put(b);
}

/*
 * A file just looked up is likely read next: where its fragment's block is
 * decompressed already, its data goes to the kernel now, from the thread
 * that answered the lookup, ahead of the read. Never decompresses: a stat
 * alone costs nothing more.
 */
void push_after_lookup(fuse_ino_t ino, const sqfs_inode *inode,
		       const struct squashfs_fragment_entry *frag)
{
	struct shared_block *b;
	struct small_file *f, copy;

	if (!push.from_lookups || !push_wanted(inode))
		return;
	pthread_mutex_lock(&push_lock);
	f = file_note(ino, inode);
	if (!f || f->done || push.stopped) {
		pthread_mutex_unlock(&push_lock);
		return;
	}
	b = block_cache_peek((sqfs_off_t)frag->start_block);
	if (b) {
		f->done = true;
		push.fragments[f->fragment].pending--;
		copy = *f;
		push.busy++;
	}
	pthread_mutex_unlock(&push_lock);
	if (!b)
		return;
	store_file(&copy, block_cache_data(b));
	block_cache_put(b);
	pthread_mutex_lock(&push_lock);
	push.busy--;
	pthread_cond_broadcast(&push_idle);
	pthread_mutex_unlock(&push_lock);
}

static void *pusher(void *data)
{
	struct small_file **files = NULL;
	size_t room = 0, count;
	uint32_t index;

	(void)data;
	pthread_mutex_lock(&push_lock);
	for (;;) {
		while (!push.queue_len && !push.stopped)
			pthread_cond_wait(&push_wake, &push_lock);
		if (push.stopped)
			break;
		count = take_fragment(&index, &files, &room);
		push.busy++;
		pthread_mutex_unlock(&push_lock);
		store_files(index, files, count);
		pthread_mutex_lock(&push_lock);
		push.busy--;
		pthread_cond_broadcast(&push_idle);
	}
	pthread_mutex_unlock(&push_lock);
	free(files);
	return NULL;
}

void push_start(struct fuse_session *se, sqfs_ll *ll, bool from_lookups)
{
	size_t buckets = 1024;
	pthread_t thread;

	if (getenv("RUNTIME_NO_PUSH") || !ll->fs.sb.fragments)
		return;
	if (sqfs_init(&push.fs, ll->fs.fd, ll->fs.offset) != SQFS_OK)
		return;
	while (buckets < ll->fs.sb.inodes)
		buckets *= 2;
	push.se = se;
	push.from_lookups = from_lookups;
	push.block_size = ll->fs.sb.block_size;
	push.fragment_count = ll->fs.sb.fragments;
	push.buckets = xcalloc(buckets, sizeof(*push.buckets));
	push.bucket_mask = buckets - 1;
	push.queue = xcalloc(push.fragment_count, sizeof(*push.queue));
	push.fragments = xcalloc(push.fragment_count, sizeof(*push.fragments));
	if (pthread_create(&thread, NULL, pusher, NULL) == 0)
		pthread_detach(thread);
	else
		push.fragments = NULL;
}

void push_stop(void)
{
	pthread_mutex_lock(&push_lock);
	push.stopped = true;
	pthread_cond_broadcast(&push_wake);
	while (push.busy)
		pthread_cond_wait(&push_idle, &push_lock);
	pthread_mutex_unlock(&push_lock);
}

void push_stats(uint64_t *files, uint64_t *bytes)
{
	pthread_mutex_lock(&push_lock);
	*files = push.files_pushed;
	*bytes = push.bytes_pushed;
	pthread_mutex_unlock(&push_lock);
}
