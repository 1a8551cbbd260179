/* runimage runtime: what the FUSE server's parts share (server.c, push.c). */
#ifndef RUNIMAGE_SERVER_H
#define RUNIMAGE_SERVER_H

#include <sys/stat.h>

#include <squashfuse/ll.h>

/* squashfuse's stat.h is not installed; the function is exported. */
sqfs_err sqfs_stat(sqfs *fs, sqfs_inode *inode, struct stat *st);

/* server.c: the cache of decompressed blocks, shared by all threads */
struct shared_block;
struct shared_block *block_cache_get(sqfs *fs, sqfs_off_t pos, uint32_t hdr);
struct shared_block *block_cache_peek(sqfs_off_t pos);
const sqfs_block *block_cache_data(const struct shared_block *b);
void block_cache_put(struct shared_block *b);

/* twins.c: one inode number for identical files stored once */
void twins_init(sqfs_ll *ll);
fuse_ino_t twins_ino(sqfs_ll *ll, sqfs_inode *inode, fuse_ino_t ino);

/* push.c: storing small files into the page cache before they are read */
void push_start(struct fuse_session *se, sqfs_ll *ll, bool from_lookups);
void push_note(fuse_ino_t ino, const sqfs_inode *inode);
bool push_wanted(const sqfs_inode *inode);
void push_after_read(fuse_ino_t ino, const sqfs_inode *inode);
void push_after_lookup(fuse_ino_t ino, const sqfs_inode *inode,
		       const struct squashfs_fragment_entry *frag);
void push_stop(void);
void push_stats(uint64_t *files, uint64_t *bytes);

#endif
