/* The payload offset: where the runtime's own ELF data ends. */
#define _GNU_SOURCE
#include "runtime.h"

#include <elf.h>
#include <endian.h>
#include <string.h>
#include <unistd.h>

static uint16_t get16(const unsigned char *p, bool big)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return big ? be16toh(v) : le16toh(v);
}

static uint32_t get32(const unsigned char *p, bool big)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return big ? be32toh(v) : le32toh(v);
}

static uint64_t get64(const unsigned char *p, bool big)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return big ? be64toh(v) : le64toh(v);
}

/*
 * The image follows the section header table, which the linker puts last:
 * offset = e_shoff + e_shnum * e_shentsize, for ELF32 and ELF64 alike.
 */
bool elf_payload_offset(int fd, uint64_t *offset, const char **why)
{
	unsigned char eh[sizeof(Elf64_Ehdr)];
	uint64_t shoff;
	uint16_t shnum, shentsize;
	bool big;

	if (pread(fd, eh, sizeof(eh), 0) != (ssize_t)sizeof(eh)) {
		*why = "too short for an ELF header";
		return false;
	}
	if (memcmp(eh, ELFMAG, SELFMAG) != 0) {
		*why = "not an ELF file";
		return false;
	}
	big = eh[EI_DATA] == ELFDATA2MSB;
	if (eh[EI_CLASS] == ELFCLASS64) {
		shoff = get64(eh + offsetof(Elf64_Ehdr, e_shoff), big);
		shnum = get16(eh + offsetof(Elf64_Ehdr, e_shnum), big);
		shentsize = get16(eh + offsetof(Elf64_Ehdr, e_shentsize), big);
	} else if (eh[EI_CLASS] == ELFCLASS32) {
		shoff = get32(eh + offsetof(Elf32_Ehdr, e_shoff), big);
		shnum = get16(eh + offsetof(Elf32_Ehdr, e_shnum), big);
		shentsize = get16(eh + offsetof(Elf32_Ehdr, e_shentsize), big);
	} else {
		*why = "unknown ELF class";
		return false;
	}
	if (shoff == 0 || shnum == 0) {
		*why = "ELF file without section headers";
		return false;
	}
	*offset = shoff + (uint64_t)shnum * shentsize;
	return true;
}
