/*
 * Twins: regular files whose data mksquashfs stored once (it keeps one copy
 * of identical files) and whose attributes agree are given one FUSE inode
 * number, so that the kernel keeps one copy of their pages.
 *
 * The launcher's portable tools and the rootfs carry the same Debian
 * binaries and libraries (python3.11, libc.so.6, ...). Without twins, a
 * program of the rootfs reads through FUSE again what the launcher read a
 * moment before under another path; with them it finds the pages cached.
 *
 * Two files are twins when their inodes agree on everything the kernel
 * caches for an inode (mode, owner, mtime, xattrs, link count, size) and on
 * where their data lies: the first block, the same list of block sizes and
 * the same fragment. Link counts stay as stored, so tools that look for hard
 * links by st_nlink (cp -a, tar, du, rsync -H) do not take twins for links;
 * mksquashfs compares whole stat results, so --run-build passes it
 * -no-hardlinks. RUNTIME_NO_TWINS=1 turns twins off.
 *
 * All calls are made with the server's fs_lock held.
 */
#define _GNU_SOURCE
#include "runtime.h"
#include "server.h"

#include <stdlib.h>
#include <string.h>

#define TWINS_INITIAL_BUCKETS 4096

/* Hashed and compared as bytes, so without padding. */
struct twin_key {
	uint64_t start_block, file_size;
	uint32_t frag_idx, frag_off, mtime, xattr, nlink, mode, uid, gid;
};
_Static_assert(sizeof(struct twin_key) == 2 * 8 + 8 * 4, "struct twin_key has padding");

struct twin {
	struct twin_key key;
	fuse_ino_t ino;
	struct twin *next;
};

static struct {
	struct twin **buckets;
	size_t mask, count;
	bool off;
} twins;

void twins_init(void)
{
	twins.off = getenv("RUNTIME_NO_TWINS") && strcmp(getenv("RUNTIME_NO_TWINS"), "0") != 0;
	twins.buckets = xcalloc(TWINS_INITIAL_BUCKETS, sizeof(*twins.buckets));
	twins.mask = TWINS_INITIAL_BUCKETS - 1;
}

static struct twin_key key_of(const sqfs_inode *inode)
{
	struct twin_key key;

	key.start_block = inode->xtra.reg.start_block;
	key.file_size = inode->xtra.reg.file_size;
	key.frag_idx = inode->xtra.reg.frag_idx;
	key.frag_off = inode->xtra.reg.frag_off;
	key.mtime = inode->base.mtime;
	key.xattr = inode->xattr;
	key.nlink = (uint32_t)inode->nlink;
	key.mode = inode->base.mode;
	key.uid = inode->base.uid;
	key.gid = inode->base.guid;
	return key;
}

static size_t hash_of(const struct twin_key *key)
{
	const unsigned char *byte = (const unsigned char *)key;
	uint64_t hash = 14695981039346656037u; /* FNV-1a */

	for (size_t i = 0; i < sizeof(*key); i++)
		hash = (hash ^ byte[i]) * 1099511628211u;
	return (size_t)hash;
}

static void grow(void)
{
	size_t size = (twins.mask + 1) * 2;
	struct twin **buckets = xcalloc(size, sizeof(*buckets));

	for (size_t i = 0; i <= twins.mask; i++) {
		struct twin *t = twins.buckets[i], *next;

		for (; t; t = next) {
			size_t slot = hash_of(&t->key) & (size - 1);

			next = t->next;
			t->next = buckets[slot];
			buckets[slot] = t;
		}
	}
	free(twins.buckets);
	twins.buckets = buckets;
	twins.mask = size - 1;
}

/*
 * Equal first blocks and sizes are not enough: a file made only of holes
 * has no blocks, and its start may be the next file's. The block sizes,
 * holes included, must agree one by one.
 */
static bool same_blocks(sqfs *fs, sqfs_inode *a, sqfs_inode *b)
{
	sqfs_blocklist la, lb;
	size_t count = sqfs_blocklist_count(fs, a);

	if (count != sqfs_blocklist_count(fs, b))
		return false;
	sqfs_blocklist_init(fs, a, &la);
	sqfs_blocklist_init(fs, b, &lb);
	while (count--) {
		if (sqfs_blocklist_next(&la) != SQFS_OK || sqfs_blocklist_next(&lb) != SQFS_OK)
			return false;
		if (la.header != lb.header || la.block != lb.block)
			return false;
	}
	return true;
}

fuse_ino_t twins_ino(sqfs_ll *ll, sqfs_inode *inode, fuse_ino_t ino)
{
	struct twin_key key;
	struct twin *t;
	size_t slot;

	if (twins.off || !S_ISREG(inode->base.mode) || inode->xtra.reg.file_size == 0)
		return ino;
	key = key_of(inode);
	slot = hash_of(&key) & twins.mask;
	for (t = twins.buckets[slot]; t; t = t->next) {
		sqfs_inode first;

		if (memcmp(&t->key, &key, sizeof(key)) != 0)
			continue;
		if (t->ino == ino)
			return ino;
		if (sqfs_ll_inode(ll, &first, t->ino) == SQFS_OK && same_blocks(&ll->fs, &first, inode))
			return t->ino;
	}
	t = xcalloc(1, sizeof(*t));
	t->key = key;
	t->ino = ino;
	t->next = twins.buckets[slot];
	twins.buckets[slot] = t;
	if (++twins.count > 2 * (twins.mask + 1))
		grow();
	return ino;
}
