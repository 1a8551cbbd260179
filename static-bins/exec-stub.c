/* exec-stub: start a bundled tool through the bundled dynamic loader.
 *
 * Installed once as RunDir/static/.bundle/bin/.exec-stub; every command in
 * RunDir/static is a relative symlink to it. The tool name is the basename
 * of argv[0]; the bundle root is found from /proc/self/exe. It runs
 *
 *   ROOT/.bundle/loader/NAME --library-path ROOT/.bundle/lib
 *       --argv0 ARGV0 ROOT/.bundle/bin/NAME ARGS...
 *
 * where .bundle/loader/NAME is a symlink to .bundle/lib/ld-linux-x86-64.so.2:
 * the kernel names the process after the path it was started by, so ps,
 * pidof and /proc/PID/comm show NAME rather than the loader's name.
 *
 * and changes nothing in the environment, so processes the tool starts see
 * the caller's environment. Python is given the absolute path of its command
 * as argv0: it finds its standard library from that path (resolving the
 * symlink to this stub, which lives next to the real interpreter), and
 * sys.executable is then a command that works on any host.
 *
 * Statically linked: it runs on hosts with no libc at all.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "runimage-static"
#define BUNDLE_BIN "/.bundle/bin"
#define BUNDLE_LOADER "/.bundle/loader/"

static void
die (const char *name, const char *message)
{
  fprintf (stderr, PROG ": %s: %s\n", name, message);
  exit (127);
}

static void
die_errno (const char *name, const char *what)
{
  fprintf (stderr, PROG ": %s: %s: %s\n", name, what, strerror (errno));
  exit (127);
}

/* The bundle root: the stub's own path less "/.bundle/bin/<stub>". */
static void
find_root (const char *argv0, char *root, size_t size)
{
  ssize_t n = readlink ("/proc/self/exe", root, size - 1);

  if (n >= 0)
    root[n] = '\0';
  else if (strchr (argv0, '/') == NULL || realpath (argv0, root) == NULL)
    die_errno (argv0, "cannot find the bundle (is /proc mounted?)");

  char *slash = strrchr (root, '/');
  if (slash == NULL)
    die (argv0, "cannot find the bundle");
  *slash = '\0';

  size_t len = strlen (root);
  size_t suffix = strlen (BUNDLE_BIN);
  if (len < suffix || strcmp (root + len - suffix, BUNDLE_BIN) != 0)
    die (argv0, "the stub is not inside a .bundle/bin directory");
  root[len - suffix] = '\0';
}

static char *
join (const char *name, const char *a, const char *b, const char *c)
{
  size_t size = strlen (a) + strlen (b) + strlen (c) + 1;
  char *path = malloc (size);

  if (path == NULL)
    die (name, "out of memory");
  snprintf (path, size, "%s%s%s", a, b, c);
  return path;
}

int
main (int argc, char **argv)
{
  if (argc < 1 || argv[0] == NULL || argv[0][0] == '\0')
    die ("exec-stub", "started without argv[0]");

  const char *slash = strrchr (argv[0], '/');
  const char *name = slash != NULL ? slash + 1 : argv[0];
  if (name[0] == '\0' || name[0] == '.')
    die (argv[0], "not a bundled tool name");

  char root[PATH_MAX];
  find_root (argv[0], root, sizeof root);

  char *tool = join (name, root, BUNDLE_BIN "/", name);
  if (access (tool, X_OK) != 0)
    {
      fprintf (stderr, PROG ": %s: no such bundled tool in %s\n", name, root);
      return 127;
    }

  char *libdir = join (name, root, "/.bundle/lib", "");
  char *loader = join (name, root, BUNDLE_LOADER, name);
  const char *argv0 = argv[0];
  if (strncmp (name, "python", 6) == 0)
    argv0 = join (name, root, "/", name);

  char **args = calloc ((size_t) argc + 7, sizeof *args);
  if (args == NULL)
    die (name, "out of memory");
  int i = 0;
  args[i++] = loader;
  args[i++] = "--library-path";
  args[i++] = libdir;
  args[i++] = "--argv0";
  args[i++] = (char *) argv0;
  args[i++] = tool;
  for (int j = 1; j < argc; j++)
    args[i++] = argv[j];
  args[i] = NULL;

  execv (loader, args);
  die_errno (name, loader);
  return 127;
}
