/* run-entry: RunDir/Run, the entry point of a RunDir.
 *
 * Starts the launcher with the portable Python of RunDir/static:
 *
 *   RUNDIR/static/python3 -E -S RUNDIR/static/launcher/run.py ARGS...
 *
 * RUNDIR is this program's own directory, found from /proc/self/exe, so
 * nothing depends on the host's PATH, shell or tools. Packed, the runtime
 * has set RUNDIR to the mount point (this same directory), RUNOFFSET,
 * RUNIMAGE and ARGV0; any other start (a RunDir on disk, also one inside a
 * packed container, where those variables are inherited) is unpacked: they
 * are unset and RUNSRC names the path this program was started by, so a
 * link named after a program in /usr/bin runs that program. It also makes
 * the launcher a child subreaper (see processes.py).
 *
 * Statically linked: it runs on hosts with no libc at all.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define PROG "runimage"

static void
die_errno (const char *what, const char *path)
{
  fprintf (stderr, PROG ": %s '%s': %s\n", what, path, strerror (errno));
  exit (127);
}

/* This program's directory: the RunDir. */
static void
find_rundir (const char *argv0, char *rundir, size_t size)
{
  ssize_t n = readlink ("/proc/self/exe", rundir, size - 1);

  if (n >= 0)
    rundir[n] = '\0';
  else if (realpath (argv0, rundir) == NULL)
    die_errno ("cannot find the RunDir (is /proc mounted?) of", argv0);

  char *slash = strrchr (rundir, '/');
  if (slash == NULL || slash == rundir)
    {
      errno = ENOENT;
      die_errno ("cannot find the RunDir of", argv0);
    }
  *slash = '\0';
}

int
main (int argc, char **argv)
{
  char rundir[PATH_MAX];
  char python[PATH_MAX + 32];
  char script[PATH_MAX + 32];
  const char *argv0 = argc > 0 ? argv[0] : "Run";

  find_rundir (argv0, rundir, sizeof rundir);

  /* The runtime's RUNDIR may name the mount point through a symlink (a
     TMPDIR with one in its path): compare real paths. */
  char packed_rundir[PATH_MAX];
  const char *given = getenv ("RUNDIR");
  if (getenv ("RUNOFFSET") == NULL || given == NULL
      || realpath (given, packed_rundir) == NULL
      || strcmp (packed_rundir, rundir) != 0)
    {
      unsetenv ("RUNOFFSET");
      unsetenv ("RUNIMAGE");
      unsetenv ("ARGV0");
      setenv ("RUNSRC", argv0, 1);
    }
  setenv ("RUNDIR", rundir, 1);

  /* The launcher stops what the program leaves running in the background:
     orphans are re-parented to it. Set here, where it costs nothing; it
     lasts across exec. */
  prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  snprintf (python, sizeof python, "%s/static/python3", rundir);
  snprintf (script, sizeof script, "%s/static/launcher/run.py", rundir);

  char **args = calloc ((size_t) argc + 4, sizeof *args);
  if (args == NULL)
    die_errno ("out of memory starting", python);
  args[0] = python;
  args[1] = "-E";
  args[2] = "-S";
  args[3] = script;
  for (int i = 1; i < argc; i++)
    args[i + 3] = argv[i];

  execv (python, args);
  die_errno ("cannot start the launcher's Python", python);
}
