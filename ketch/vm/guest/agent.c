/* ketch guest agent: runs processes for the host and streams their I/O.
 *
 * An EXEC frame carries records, each a tag byte and a NUL-terminated string:
 *   'a' argument   'e' NAME=value   'c' working directory
 *   'u' uid   'g' gid   'G' supplementary gid
 *   't' "1" for a pty   'i' "1" to keep stdin open   'w' "rows cols"
 * The agent answers STARTED (or, when exec fails, a message on stderr and
 * EXIT 127 for "not found", 126 otherwise), then STDOUT/STDERR as the process
 * writes, then EXIT once the process is reaped and its pipes drained, so no
 * output can arrive after the exit code.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"

#define MAX_SESSIONS 64
#define MAX_RECORDS 4096

struct session {
	int id;
	pid_t pid;
	int out_fd, err_fd;	/* pipes, or out_fd = pty master */
	int in_fd;		/* pipe write end, pty master, or -1 */
	int tty;
};

static struct session sessions[MAX_SESSIONS];

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n, len -= (size_t)n;
	}
}

void send_frame(int type, int session, const void *data, size_t len)
{
	struct frame_hdr h = {(uint8_t)type, 0, (uint16_t)session, (uint32_t)len};
	struct iovec iov[2] = {{&h, sizeof h}, {(void *)data, len}};
	ssize_t n = writev(port_fd, iov, len ? 2 : 1);
	/* A short write is rare on a port; finish it byte-exactly. */
	if (n >= 0 && (size_t)n < sizeof h + len) {
		if ((size_t)n < sizeof h) {
			write_all(port_fd, (char *)&h + n, sizeof h - (size_t)n);
			n = sizeof h;
		}
		write_all(port_fd, (const char *)data + (n - (ssize_t)sizeof h),
			  len - (size_t)(n - (ssize_t)sizeof h));
	}
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n, len -= (size_t)n;
	}
	return 0;
}

static struct session *find(int id)
{
	for (int i = 0; i < MAX_SESSIONS; i++)
		if (sessions[i].id == id)
			return &sessions[i];
	return NULL;
}

/* Search PATH from the process's own environment, as execvpe would not. */
static void exec_search(char **argv, char **envp)
{
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	int err = ENOENT;
	if (strchr(argv[0], '/')) {
		execve(argv[0], argv, envp);
		return;
	}
	for (char **e = envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	char buf[4096];
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, argv[0]);
		execve(buf, argv, envp);
		if (errno != ENOENT)
			err = errno;
		p += n + (p[n] == ':');
	}
	errno = err;
}

static void child(char **argv, char **envp, const char *cwd, uid_t uid, gid_t gid,
		  gid_t *groups, int ngroups, int tty, const char *slave, int fds[3], int errp)
{
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	setsid();
	if (tty) {
		int s = open(slave, O_RDWR);
		ioctl(s, TIOCSCTTY, 0);
		fds[0] = fds[1] = fds[2] = s;
	}
	for (int i = 0; i < 3; i++)
		dup2(fds[i], i);
	if (setgroups((size_t)ngroups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		goto fail;
	if (chdir(cwd) < 0)
		goto fail;
	exec_search(argv, envp);
fail:;
	int e = errno;
	write_all(errp, &e, sizeof e);
	_exit(127);
}

static void exec_failed(int id, const char *arg0, int err)
{
	char msg[600];
	int code = err == ENOENT ? 127 : 126;
	if (err == ENOENT && !strchr(arg0, '/'))
		snprintf(msg, sizeof msg, "exec: \"%s\": executable file not found in $PATH\n", arg0);
	else
		snprintf(msg, sizeof msg, "exec: \"%s\": %s\n", arg0, strerror(err));
	send_frame(F_STDERR, id, msg, strlen(msg));
	send_frame(F_EXIT, id, &code, sizeof code);
}

static void start(int id, char *payload, uint32_t len)
{
	static char *argv[MAX_RECORDS], *envp[MAX_RECORDS];
	gid_t groups[64];
	int argc = 0, envc = 0, ngroups = 0, tty = 0, keep_stdin = 0;
	unsigned rows = 24, cols = 80;
	const char *cwd = "/";
	uid_t uid = 0;
	gid_t gid = 0;
	for (char *p = payload; p < payload + len; p += strlen(p) + 1) {
		char tag = *p++;
		if (tag == 'a' && argc < MAX_RECORDS - 1) argv[argc++] = p;
		else if (tag == 'e' && envc < MAX_RECORDS - 1) envp[envc++] = p;
		else if (tag == 'c') cwd = p;
		else if (tag == 'u') uid = (uid_t)atol(p);
		else if (tag == 'g') gid = (gid_t)atol(p);
		else if (tag == 'G' && ngroups < 64) groups[ngroups++] = (gid_t)atol(p);
		else if (tag == 't') tty = p[0] == '1';
		else if (tag == 'i') keep_stdin = p[0] == '1';
		else if (tag == 'w') sscanf(p, "%u %u", &rows, &cols);
	}
	argv[argc] = envp[envc] = NULL;
	struct session *s = find(0);
	if (argc == 0 || !s) {
		exec_failed(id, argc ? argv[0] : "", argc ? EAGAIN : ENOENT);
		return;
	}
	int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1}, errp[2], fds[3];
	int master = -1;
	char *slave = NULL;
	if (tty) {
		struct winsize ws = {(unsigned short)rows, (unsigned short)cols, 0, 0};
		master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
			exec_failed(id, argv[0], errno);
			return;
		}
		slave = ptsname(master);
		ioctl(master, TIOCSWINSZ, &ws);
	} else {
		pipe2(out, O_CLOEXEC), pipe2(err, O_CLOEXEC);
		if (keep_stdin)
			pipe2(in, O_CLOEXEC);
		else
			in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		fds[0] = in[0], fds[1] = out[1], fds[2] = err[1];
	}
	mkdir(cwd, 0755);
	pipe2(errp, O_CLOEXEC);
	pid_t pid = fork();
	if (pid == 0)
		child(argv, envp, cwd, uid, gid, groups, ngroups, tty, slave, fds, errp[1]);
	close(errp[1]);
	if (!tty) {
		close(out[1]), close(err[1]), close(in[0]);
	}
	int e = 0;
	ssize_t got = read(errp[0], &e, sizeof e);
	close(errp[0]);
	if (got == (ssize_t)sizeof e || pid < 0) {
		if (pid > 0)
			waitpid(pid, NULL, 0);
		close(master), close(out[0]), close(err[0]), close(in[1]);
		exec_failed(id, argv[0], pid < 0 ? errno : e);
		return;
	}
	s->id = id, s->pid = pid, s->tty = tty;
	s->out_fd = tty ? master : out[0];
	s->err_fd = tty ? -1 : err[0];
	s->in_fd = tty ? master : in[1];
	fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
	if (s->err_fd >= 0)
		fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
	uint32_t p32 = (uint32_t)pid;
	send_frame(F_STARTED, id, &p32, sizeof p32);
}

/* Forward what is readable; returns 0 on end of stream. */
static int pump(struct session *s, int fd, int type)
{
	char buf[32768];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n > 0) {
			send_frame(type, s->id, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;  /* EOF, or EIO on a hung-up pty */
	}
}

static void reaped(pid_t pid, int status)
{
	for (int i = 0; i < MAX_SESSIONS; i++) {
		struct session *s = &sessions[i];
		if (s->id == 0 || s->pid != pid)
			continue;
		/* The process is gone: what it wrote is in the pipes; send it first. */
		pump(s, s->out_fd, F_STDOUT);
		if (s->err_fd >= 0)
			pump(s, s->err_fd, F_STDERR);
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		send_frame(F_EXIT, s->id, &code, sizeof code);
		close(s->out_fd);
		if (s->err_fd >= 0)
			close(s->err_fd);
		if (s->in_fd >= 0 && s->in_fd != s->out_fd)
			close(s->in_fd);
		memset(s, 0, sizeof *s);
	}
}

static void handle(struct frame_hdr *h, char *payload)
{
	struct session *s = h->session ? find(h->session) : NULL;
	switch (h->type) {
	case F_EXEC:
		if (h->session && !s)
			start(h->session, payload, h->length);
		break;
	case F_STDIN:
		if (s && s->in_fd >= 0) {
			if (h->length)
				write_all(s->in_fd, payload, h->length);
			else if (s->tty)
				write_all(s->in_fd, "\004", 1);
			else {
				close(s->in_fd);
				s->in_fd = -1;
			}
		}
		break;
	case F_SIGNAL:
		if (s && h->length >= 4)
			kill(s->pid, *(int *)payload);
		break;
	case F_RESIZE:
		if (s && s->tty && h->length >= 4) {
			uint16_t *rc = (uint16_t *)payload;
			struct winsize ws = {rc[0], rc[1], 0, 0};
			ioctl(s->in_fd, TIOCSWINSZ, &ws);
		}
		break;
	case F_POWEROFF:
		stop_vm();
	}
}

/* One frame from the port: its malloc'd, NUL-terminated payload, or NULL when
 * the host end is gone (a port reads EOF while disconnected). */
char *read_frame(struct frame_hdr *h)
{
	if (read_full(port_fd, h, sizeof *h) < 0)
		return NULL;
	char *payload = malloc(h->length + 1);
	if (!payload || read_full(port_fd, payload, h->length) < 0) {
		free(payload);
		return NULL;
	}
	payload[h->length] = 0;
	return payload;
}

static int read_port(void)
{
	struct frame_hdr h;
	char *payload = read_frame(&h);
	if (!payload)
		return -1;
	handle(&h, payload);
	free(payload);
	return 0;
}

void agent_loop(void)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	int hangups = 0;
	for (;;) {
		struct pollfd pfd[2 + 2 * MAX_SESSIONS];
		struct session *owner[2 + 2 * MAX_SESSIONS];
		int types[2 + 2 * MAX_SESSIONS];
		int n = 0;
		pfd[n++] = (struct pollfd){port_fd, POLLIN, 0};
		pfd[n++] = (struct pollfd){sfd, POLLIN, 0};
		for (int i = 0; i < MAX_SESSIONS; i++) {
			struct session *s = &sessions[i];
			if (!s->id)
				continue;
			if (s->out_fd >= 0)
				owner[n] = s, types[n] = F_STDOUT, pfd[n++] = (struct pollfd){s->out_fd, POLLIN, 0};
			if (s->err_fd >= 0)
				owner[n] = s, types[n] = F_STDERR, pfd[n++] = (struct pollfd){s->err_fd, POLLIN, 0};
		}
		if (poll(pfd, (nfds_t)n, -1) < 0)
			continue;
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (read_port() == 0) {
				hangups = 0;
			} else {
				/* The host end is gone: nobody can collect output, stop the VM. */
				usleep(10000);
				if (++hangups > 100)
					stop_vm();
			}
		}
		for (int i = 2; i < n; i++) {
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct session *s = owner[i];
			int fd = pfd[i].fd;
			if (s->id && !pump(s, fd, types[i])) {
				/* End of stream: stop polling it; the exit code still comes from wait. */
				if (fd == s->out_fd)
					s->out_fd = s->tty ? s->out_fd : (close(fd), -1);
				else
					s->err_fd = (close(fd), -1);
				if (s->tty)
					pfd[i].fd = -1;
			}
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) > 0)
				;
			int status;
			pid_t pid;
			while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
				reaped(pid, status);
		}
	}
}
