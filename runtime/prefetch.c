/*
 * Read-ahead of the files that every start needs (the launcher's Python, its
 * libraries, bwrap), listed in <RunDir>/.prefetch: a thread asks the kernel
 * to read them through the fresh mount while Run starts, so the FUSE server
 * decompresses them on another CPU instead of one page fault at a time.
 */
#define _GNU_SOURCE
#include "runtime.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFETCH_LIST ".prefetch"
#define PREFETCH_CHUNK (128 * 1024)

static void *prefetch_files(void *data)
{
	char *rundir = data, *list = xasprintf("%s/%s", rundir, PREFETCH_LIST);
	char line[4096];
	FILE *f = fopen(list, "re");

	free(list);
	while (f && fgets(line, sizeof(line), f)) {
		struct stat st;
		char *path;
		int fd;

		line[strcspn(line, "\n")] = '\0';
		if (!line[0] || line[0] == '#' || strstr(line, ".."))
			continue;
		path = xasprintf("%s/%s", rundir, line);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		free(path);
		if (fd < 0)
			continue;
		/* The kernel reads ahead at most its window (128 KiB) per call. */
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
			for (off_t off = 0; off < st.st_size; off += PREFETCH_CHUNK)
				readahead(fd, off, PREFETCH_CHUNK);
		close(fd);
	}
	if (f)
		fclose(f);
	free(rundir);
	return NULL;
}

void prefetch_start(const char *rundir)
{
	pthread_t thread;

	if (getenv("RUNTIME_NO_PREFETCH"))
		return;
	if (pthread_create(&thread, NULL, prefetch_files, xstrdup(rundir)) == 0)
		pthread_detach(thread);
}
