/* Running RunDir/Run and passing its exit status back. */
#define _GNU_SOURCE
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
/* How long Run gets to end the container after its FUSE server died, in seconds. */
#define KEEPER_GONE_GRACE_S 5
static volatile pid_t payload_pid;

/*
 * A Ctrl-C or Ctrl-\ typed at the terminal already reached the launcher,
 * which shares our process group, so those are not sent twice. Everything
 * else is passed on: also the SIGHUP of a hangup, which the kernel sends to
 * the session leader alone (the runtime, in a new terminal or ssh -t).
 */
static void forward_signal(int sig, siginfo_t *info, void *context)
{
	bool typed = info->si_code == SI_KERNEL && (sig == SIGINT || sig == SIGQUIT);

	(void)context;
	if (payload_pid > 0 && !typed)
		kill(payload_pid, sig);
}

static void set_forwarding(bool on)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	if (on) {
		sa.sa_sigaction = forward_signal;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
	} else {
		sa.sa_handler = SIG_DFL;
	}
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaction(forwarded[i], &sa, NULL);
}

static void set_payload_env(const struct image *img, const char *rundir, const char *argv0)
{
	char offset[32];

	snprintf(offset, sizeof(offset), "%" PRIu64, img->offset);
	setenv("RUNIMAGE", img->path, 1);
	setenv("RUNOFFSET", offset, 1);
	setenv("ARGV0", argv0, 1);
	setenv("RUNDIR", rundir, 1);
}

static void exec_payload(const char *rundir, int argc, char **argv, pid_t parent)
{
	char *run = xasprintf("%s/Run", rundir);
	char **args = xmalloc(sizeof(char *) * (argc + 2));

	/* The launcher is told to stop when the runtime dies. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(EXIT_RUNTIME);
	args[0] = run;
	for (int i = 0; i < argc; i++)
		args[i + 1] = argv[i];
	args[argc + 1] = NULL;
	execv(run, args);
	die_errno("cannot run %s", run);
}

static void kill_payload(int sig)
{
	(void)sig;
	if (payload_pid > 0)
		kill(payload_pid, SIGKILL);
}

/*
 * Waits for Run. Where the FUSE server (keeper) dies first, killed or out
 * of memory, every file of the container is gone: Run gets SIGTERM, and
 * SIGKILL after a grace period, one line says why, and the run fails as the
 * runtime's own failure; returns whether that happened.
 */
static bool wait_payload(pid_t pid, pid_t keeper, const struct image *img, int *status)
{
	bool keeper_gone = false;

	for (;;) {
		pid_t done = waitpid(keeper > 0 ? -1 : pid, status, 0);

		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			die_errno("waitpid");
		if (done == pid)
			return keeper_gone;
		if (done == keeper) {
			complain("the FUSE server of %s ended unexpectedly: stopping the container",
				 img->path);
			keeper_gone = true;
			signal(SIGALRM, kill_payload);
			kill(pid, SIGTERM);
			alarm(KEEPER_GONE_GRACE_S);
			keeper = 0;
		}
	}
}

/*
 * Runs <rundir>/Run with argv; returns its exit status, 128+N after signal N.
 * keeper is the FUSE server serving rundir, 0 for an extracted copy.
 */
int run_payload(const struct image *img, const char *rundir, int argc, char **argv,
		const char *argv0, pid_t keeper)
{
	sigset_t block, old;
	pid_t pid, parent = getpid();
	bool keeper_gone;
	int status;

	set_payload_env(img, rundir, argv0);
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaddset(&block, forwarded[i]);
	sigprocmask(SIG_BLOCK, &block, &old);
	set_forwarding(true);
	pid = fork();
	if (pid < 0)
		die_errno("fork");
	if (pid == 0) {
		set_forwarding(false);
		sigprocmask(SIG_SETMASK, &old, NULL);
		exec_payload(rundir, argc, argv, parent);
	}
	payload_pid = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	keeper_gone = wait_payload(pid, keeper, img, &status);
	payload_pid = 0;
	set_forwarding(false);
	if (keeper_gone)
		return EXIT_RUNTIME;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
