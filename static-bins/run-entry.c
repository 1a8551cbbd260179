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
 * link named after a program in /usr/bin runs that program.
 *
 * Run stays as the launcher's parent, a small watchdog: it passes signals
 * on to the launcher and returns its exit status. Both are child subreapers,
 * so what the container leaves running in the background is re-parented to
 * the launcher, which stops it (unless ALLOW_BG=1); and where the launcher
 * itself is killed, to Run, which then stops it. Where Run is killed, the
 * launcher gets SIGTERM and ends the container.
 *
 * Statically linked: it runs on hosts with no libc at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROG "runimage"
/* How long orphans get to end after SIGTERM before SIGKILL, in 10 ms ticks. */
#define GRACE_TICKS 100

/* How long the launcher gets to end the container after the SIGTERM of an
   orphaned Run before SIGKILL, in seconds: a little more than the launcher's
   own grace for the program. */
#define ORPHANED_GRACE_S 3

static pid_t launcher;
static pid_t parent_at_start;

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

/* Passes a signal on to the launcher. A Ctrl-C typed at the terminal went
   to the whole foreground process group, the launcher included. A SIGTERM
   once Run's parent is gone (the runtime killed, whose death sends it) must
   end the container: the launcher gets SIGKILL if it is still there after a
   grace period, and then what it left gets stopped. */
static void
forward (int number)
{
  if (number == SIGINT && tcgetpgrp (STDIN_FILENO) == getpgrp ())
    return;
  if (launcher > 0)
    kill (launcher, number);
  if (number == SIGTERM && getppid () != parent_at_start)
    alarm (ORPHANED_GRACE_S);
}

static void
kill_launcher (int number)
{
  (void) number;
  if (launcher > 0)
    kill (launcher, SIGKILL);
}

/* Stops what the container left when the launcher was killed (processes
   re-parented to Run): SIGTERM, then SIGKILL after a grace period. */
static void
stop_orphans (void)
{
  const struct timespec tick = { 0, 10 * 1000 * 1000 };
  char path[64];
  snprintf (path, sizeof path, "/proc/self/task/%d/children", (int) getpid ());

  for (int ticks = 0;; ticks++)
    {
      while (waitpid (-1, NULL, WNOHANG) > 0)
        ;
      FILE *file = fopen (path, "r");
      if (file == NULL)
        return;
      int pid;
      int left = 0;
      while (fscanf (file, "%d", &pid) == 1)
        {
          left = 1;
          if (ticks == 0 || ticks >= GRACE_TICKS)
            kill (pid, ticks < GRACE_TICKS ? SIGTERM : SIGKILL);
        }
      fclose (file);
      if (!left)
        return;
      nanosleep (&tick, NULL);
    }
}

/* /dev/null stands in for a closed stdin, stdout or stderr, which the
   launcher's first opened file would otherwise take (and pass on to the
   program inside as its output). */
static void
open_standard_fds (void)
{
  for (int fd = 0; fd <= 2; fd++)
    {
      if (fcntl (fd, F_GETFD) >= 0 || errno != EBADF)
        continue;
      int null = open ("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
      if (null >= 0 && null != fd)
        {
          dup2 (null, fd);
          close (null);
        }
    }
}

static int
exit_status (int status)
{
  return WIFSIGNALED (status) ? 128 + WTERMSIG (status) : WEXITSTATUS (status);
}

/* Runs the launcher as a child and watches it; returns its exit status. */
static int
watch (const char *python, char **args)
{
  pid_t run = getpid ();
  parent_at_start = getppid ();
  prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  launcher = fork ();
  if (launcher < 0)
    die_errno ("cannot start", python);
  if (launcher == 0)
    {
      /* The flags last across exec: the launcher is a subreaper too, and
         gets SIGTERM when Run goes away. */
      prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
      prctl (PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
      if (getppid () != run)
        _exit (127);
      execv (python, args);
      die_errno ("cannot start the launcher's Python", python);
    }

  struct sigaction alarm_action = { 0 };
  alarm_action.sa_handler = kill_launcher;
  alarm_action.sa_flags = SA_RESTART;
  sigemptyset (&alarm_action.sa_mask);
  sigaction (SIGALRM, &alarm_action, NULL);

  struct sigaction action = { 0 };
  action.sa_handler = forward;
  action.sa_flags = SA_RESTART;
  sigemptyset (&action.sa_mask);
  const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
    sigaction (forwarded[i], &action, NULL);

  int status = 0;
  while (waitpid (launcher, &status, 0) < 0)
    if (errno != EINTR)
      return 127;

  const char *allow_bg = getenv ("ALLOW_BG");
  if (WIFSIGNALED (status) && !(allow_bg && strcmp (allow_bg, "1") == 0))
    stop_orphans ();
  return exit_status (status);
}

int
main (int argc, char **argv)
{
  char rundir[PATH_MAX];
  char python[PATH_MAX + 32];
  char script[PATH_MAX + 32];
  const char *argv0 = argc > 0 ? argv[0] : "Run";

  open_standard_fds ();
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

  return watch (python, args);
}
