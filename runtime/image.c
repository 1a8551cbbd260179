/* The squashfs image appended to the runtime: finding and checking it. */
#define _GNU_SOURCE
#include "runtime.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#define SQUASHFS_MAGIC_LE 0x73717368u
#define NO_TABLE UINT64_MAX
/* The most bytes an image may hold after the start of its last table (its index). */
#define MAX_LAST_TABLE (1u << 20)

void image_locate(struct image *img)
{
	char path[PATH_MAX];
	const char *why = NULL;
	struct stat st;
	ssize_t n;

	n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n < 0)
		die_errno("cannot find its own file: readlink /proc/self/exe");
	path[n] = '\0';
	img->path = xstrdup(path);

	img->fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (img->fd < 0)
		die_errno("cannot open its own file %s", img->path);
	if (fstat(img->fd, &st) < 0)
		die_errno("cannot stat %s", img->path);
	img->size = st.st_size;
	if (!elf_payload_offset(img->fd, &img->offset, &why))
		die("%s: %s", img->path, why);
}

#define TABLES 6

/* Where the superblock's tables start: inode, directory and id tables, then the optional ones. */
static void table_starts(const struct squashfs_super_block *sb, uint64_t tables[TABLES])
{
	tables[0] = le64toh(sb->inode_table_start);
	tables[1] = le64toh(sb->directory_table_start);
	tables[2] = le64toh(sb->id_table_start);
	tables[3] = le64toh(sb->fragment_table_start);
	tables[4] = le64toh(sb->lookup_table_start);
	tables[5] = le64toh(sb->xattr_id_table_start);
}

static const char *table_error(const struct squashfs_super_block *sb, uint64_t avail)
{
	uint64_t tables[TABLES], used = le64toh(sb->bytes_used);

	table_starts(sb, tables);

	if (used > avail)
		return NULL; /* reported as truncation by the caller */
	for (size_t i = 0; i < TABLES; i++) {
		if (i >= 3 && tables[i] == NO_TABLE)
			continue;
		if (tables[i] < sizeof(*sb) || tables[i] >= used)
			return "a table lies outside the image";
	}
	if (tables[0] >= tables[1])
		return "the inode table does not precede the directory table";
	if ((le64toh(sb->root_inode) >> 16) >= tables[1] - tables[0])
		return "the root inode lies outside the inode table";
	return NULL;
}

/*
 * mksquashfs writes its tables last: the image ends shortly after the last
 * of them starts. A size far beyond that (or before it) is a damaged
 * superblock, not a file cut short.
 */
static bool size_agrees_with_tables(const struct squashfs_super_block *sb)
{
	uint64_t tables[TABLES], used = le64toh(sb->bytes_used), last = 0;

	table_starts(sb, tables);
	for (size_t i = 0; i < TABLES; i++)
		if (tables[i] != NO_TABLE && tables[i] > last)
			last = tables[i];
	return used > last && used - last <= MAX_LAST_TABLE;
}

/* One line and exit 127 for anything that is not a sound squashfs image. */
void image_check(const struct image *img)
{
	struct squashfs_super_block sb;
	uint64_t avail, used;
	uint32_t block_size;
	const char *why;
	ssize_t n;

	if (img->offset >= img->size)
		die("%s: no image after the runtime (file ends at byte %llu, image expected at "
		    "%llu); the file is truncated or is the bare runtime",
		    img->path, (unsigned long long)img->size, (unsigned long long)img->offset);
	avail = img->size - img->offset;
	n = pread(img->fd, &sb, sizeof(sb), img->offset);
	if (n != (ssize_t)sizeof(sb))
		die("%s: image truncated: no room for a squashfs superblock at offset %llu",
		    img->path, (unsigned long long)img->offset);
	if (le32toh(sb.s_magic) != SQUASHFS_MAGIC_LE)
		die("%s: no squashfs image at offset %llu (bad magic); the file is corrupt",
		    img->path, (unsigned long long)img->offset);
	if (le16toh(sb.s_major) != 4 || le16toh(sb.s_minor) != 0)
		die("%s: squashfs version %u.%u is not supported (4.0 is)", img->path,
		    le16toh(sb.s_major), le16toh(sb.s_minor));
	block_size = le32toh(sb.block_size);
	if (block_size < 4096 || block_size > (1u << 20) || (block_size & (block_size - 1)) ||
	    (1u << le16toh(sb.block_log)) != block_size)
		die("%s: squashfs superblock is corrupt (block size %u)", img->path, block_size);
	used = le64toh(sb.bytes_used);
	if (used > avail && !size_agrees_with_tables(&sb))
		die("%s: squashfs superblock is corrupt: its size (%llu bytes) does not agree with "
		    "its tables", img->path, (unsigned long long)used);
	if (used > avail)
		die("%s: image truncated: %llu of %llu bytes present", img->path,
		    (unsigned long long)avail, (unsigned long long)used);
	why = table_error(&sb, avail);
	if (why)
		die("%s: squashfs superblock is corrupt: %s", img->path, why);
}

/* Open the image for the squashfuse low-level operations; exit 127 on failure. */
struct sqfs_ll *image_open_ll(const struct image *img)
{
	struct sqfs_ll *ll = xmalloc(sizeof(*ll));
	sqfs_inode root, run;
	bool found = false;
	sqfs_err err;

	memset(ll, 0, sizeof(*ll));
	ll->fs.offset = img->offset;
	err = sqfs_init(&ll->fs, img->fd, img->offset);
	switch (err) {
	case SQFS_OK:
		break;
	case SQFS_BADCOMP: {
		const char *name = sqfs_compression_name(sqfs_compression(&ll->fs));

		die("%s: the image's compression (%s, id %d) is not supported; the file may be "
		    "corrupt",
		    img->path, name ? name : "unknown", sqfs_compression(&ll->fs));
	}
	case SQFS_BADVERSION:
	case SQFS_BADFORMAT:
		die("%s: not a squashfs 4.0 image at offset %llu", img->path,
		    (unsigned long long)img->offset);
	default:
		die("%s: cannot read the squashfs image (corrupt tables)", img->path);
	}
	if (sqfs_ll_init(ll) != SQFS_OK)
		die("%s: cannot initialize the squashfs image", img->path);

	/* Walk to Run once, so that a damaged directory tree fails here. */
	if (sqfs_inode_get(&ll->fs, &root, sqfs_inode_root(&ll->fs)) != SQFS_OK ||
	    !S_ISDIR(root.base.mode))
		die("%s: squashfs image is corrupt: unreadable root directory", img->path);
	run = root;
	if (sqfs_lookup_path(&ll->fs, &run, "Run", &found) != SQFS_OK)
		die("%s: squashfs image is corrupt: unreadable root directory", img->path);
	(void)found;
	return ll;
}
