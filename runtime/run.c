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

/* Runs <rundir>/Run with argv; returns its exit status, 128+N after signal N. */
int run_payload(const struct image *img, const char *rundir, int argc, char **argv,
		const char *argv0)
{
	sigset_t block, old;
	pid_t pid, parent = getpid();
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
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			die_errno("waitpid");
	}
	payload_pid = 0;
	set_forwarding(false);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
