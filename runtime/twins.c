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
 * Only the files of the launcher's bundle (static/.bundle/bin and lib) and
 * their copies elsewhere are twinned: identical files within the rootfs (its
 * licences, say) keep inode numbers of their own, so that tar or du over the
 * rootfs, which take one inode number for one file, see what an unpacked
 * RunDir has.
 *
 * Two files are twins when their inodes agree on everything the kernel
 * caches for an inode (mode, owner, mtime, xattrs, link count, size) and on
 * where their data lies: the first block, the same list of block sizes and
 * the same fragment. Link counts stay as stored, so tools that look for hard
 * links by st_nlink (cp -a, rsync -H) do not take twins for links; tar and
 * du given both copies do, and mksquashfs, which compares whole stat
 * results, would: --run-build passes it -no-hardlinks. RUNTIME_NO_TWINS=1
 * turns twins off.
 *
 * twins_ino() is called with the server's fs_lock held.
 */
#define _GNU_SOURCE
#include "runtime.h"
#include "server.h"

#include <stdlib.h>
#include <string.h>

/* The bundle holds a few dozen files: a fixed table is plenty. */
#define TWINS_BUCKETS 256

/* The directories of the image whose files (not subdirectories) have twins. */
static const char *const bundle_dirs[] = { "static/.bundle/bin", "static/.bundle/lib" };

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

/* NULL: twins are off. */
static struct twin **buckets;

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

static bool wanted(const sqfs_inode *inode)
{
	return S_ISREG(inode->base.mode) && inode->xtra.reg.file_size > 0;
}

/* The first of its twins known, or ino. */
fuse_ino_t twins_ino(sqfs_ll *ll, sqfs_inode *inode, fuse_ino_t ino)
{
	struct twin_key key;

	if (!buckets || !wanted(inode))
		return ino;
	key = key_of(inode);
	for (struct twin *t = buckets[hash_of(&key) % TWINS_BUCKETS]; t; t = t->next) {
		sqfs_inode first;

		if (memcmp(&t->key, &key, sizeof(key)) != 0)
			continue;
		if (t->ino == ino)
			return ino;
		if (sqfs_ll_inode(ll, &first, t->ino) == SQFS_OK && same_blocks(&ll->fs, &first, inode))
			return t->ino;
	}
	return ino;
}

static void add(const sqfs_inode *inode, fuse_ino_t ino)
{
	struct twin *t = xcalloc(1, sizeof(*t));
	size_t slot;

	t->key = key_of(inode);
	t->ino = ino;
	slot = hash_of(&t->key) % TWINS_BUCKETS;
	t->next = buckets[slot];
	buckets[slot] = t;
}

/* The regular files of the directory at path in the image. */
static void add_dir(sqfs_ll *ll, const char *path)
{
	sqfs_inode dir, file;
	sqfs_dir walk;
	sqfs_name name;
	sqfs_dir_entry entry;
	sqfs_err err = SQFS_OK;
	bool found = false;

	if (sqfs_inode_get(&ll->fs, &dir, sqfs_inode_root(&ll->fs)) != SQFS_OK ||
	    sqfs_lookup_path(&ll->fs, &dir, path, &found) != SQFS_OK || !found ||
	    !S_ISDIR(dir.base.mode) || sqfs_dir_open(&ll->fs, &dir, &walk, 0) != SQFS_OK)
		return;
	sqfs_dentry_init(&entry, name);
	while (sqfs_dir_next(&ll->fs, &walk, &entry, &err)) {
		if (sqfs_dentry_is_dir(&entry) ||
		    sqfs_inode_get(&ll->fs, &file, sqfs_dentry_inode(&entry)) != SQFS_OK)
			continue;
		if (wanted(&file))
			add(&file, ll->ino_register(ll, &entry));
	}
}

/* Knows the bundle's files, before the first request. */
void twins_init(sqfs_ll *ll)
{
	const char *off = getenv("RUNTIME_NO_TWINS");

	if (off && strcmp(off, "0") != 0)
		return;
	buckets = xcalloc(TWINS_BUCKETS, sizeof(*buckets));
	for (size_t i = 0; i < sizeof(bundle_dirs) / sizeof(bundle_dirs[0]); i++)
		add_dir(ll, bundle_dirs[i]);
}
