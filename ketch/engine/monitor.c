/*
 * ketch-monitor: the per-container monitor (ketch/engine/monitor.py says how
 * the engine drives it).
 *
 * It detaches from the caller (fork, setsid), runs `<runtime> create`, and
 * stays as the container's parent (a child subreaper) for as long as the
 * container runs:
 *   - holds the container's stdio: pipes, or the pty master the runtime sends
 *     over a console socket (-t);
 *   - writes Docker's json-file log, one JSON object per line
 *     {"log":"...","stream":"stdout","time":"<RFC 3339, 9 digits>Z"}, lines cut
 *     at 16 KiB as Docker does, rotated at --log-max-size keeping
 *     --log-max-file files (<log>.1 is the newest rotated one);
 *   - serves an attach socket (SOCK_SEQPACKET): every message it sends is one
 *     byte naming the stream (2 stdout, 3 stderr) followed by data; what a
 *     client sends goes to the container's stdin (-i), and a client's EOF
 *     closes that stdin unless --leave-stdin-open;
 *   - reads terminal sizes ("<rows> <cols>\n") from the fifo <bundle>/winsz;
 *   - when the container ends: drains its output, writes the exit code
 *     (128+signal for a signal) to --exit-file atomically, closes the attach
 *     clients, and starts the exit command (the engine's cleanup: restart
 *     policy, --rm), then exits. With --exit-command-unless-locked FILE, a
 *     foreground CLI that holds an flock on FILE cleans up itself: the lock is
 *     tested before the attach clients are let go, while such a CLI is
 *     certainly still attached and holding it.
 * The caller learns the container's pid, or why create failed, as one JSON
 * line on the fd named by $_OCI_SYNCPIPE: {"data": <pid>} or
 * {"data": -1, "message": "..."}.
 *
 * One small C process per container because it lives as long as the
 * container: a Python interpreter per container would cost ~8 MiB.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (16 * 1024) /* Docker's json-file cuts lines here */
#define CHUNK 8192
#define MAX_CLIENTS 64
#define MAX_ARGS 64

static struct {
    const char *id, *runtime, *bundle, *pidfile, *mon_pidfile, *exit_file, *attach_dir;
    const char *log_path, *exit_cmd, *exit_lock;
    const char *rt_args[MAX_ARGS];
    int n_rt;
    const char *exit_args[MAX_ARGS];
    int n_exit;
    long long log_max;
    int log_files, tty, in, leave_stdin;
    long adopt_pid; /* --adopt-pid: the container was created by the process we replaced */
    int stdout_fd, stderr_fd, stdin_fd, master_fd;
} o = {.log_files = 1, .stdout_fd = -1, .stderr_fd = -1, .stdin_fd = -1, .master_fd = -1};

static int sync_fd = -1;

/* ---- reporting ----------------------------------------------------------- */

static size_t json_escape(char *out, const unsigned char *p, size_t n);
static char *jbuf;
static size_t jcap;
static void jreserve(size_t need);

static void report(long pid, const char *msg)
{
    if (sync_fd < 0)
        return;
    FILE *f = fdopen(sync_fd, "w");
    if (f == NULL)
        return;
    fprintf(f, "{\"data\": %ld", pid);
    if (msg) {
        size_t n = strlen(msg);
        jreserve(n * 6 + 1);
        size_t j = json_escape(jbuf, (const unsigned char *)msg, n);
        fprintf(f, ", \"message\": \"%.*s\"", (int)j, jbuf);
    }
    fputs("}\n", f);
    fclose(f);
    sync_fd = -1;
}

/* A failure before the container runs: say why on the sync pipe, and stderr. */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report(-1, msg);
    fprintf(stderr, "ketch-monitor: %s\n", msg);
    _exit(1);
}

/* ---- small helpers ------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void write_file_atomic(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    int ok = write_all(fd, text, strlen(text)) == 0;
    close(fd);
    if (!ok || rename(tmp, path) < 0)
        unlink(tmp);
}

/* Up to `cap` bytes of whatever is readable now, without blocking. */
static size_t drain_text(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    if (fd < 0)
        return 0;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
    return len;
}

/* ---- the json-file log --------------------------------------------------- */

struct stream {
    const char *name; /* "stdout" / "stderr" */
    int tag;          /* 2 / 3 on the attach socket */
    int fd;
    char line[LINE_MAX_BYTES];
    size_t len;
};

static int log_fd = -1;
static long long log_size;

static void jreserve(size_t need)
{
    if (need <= jcap)
        return;
    jcap = need * 2;
    jbuf = realloc(jbuf, jcap);
    if (jbuf == NULL)
        _exit(1);
}

/* Length of a valid UTF-8 sequence at p (of at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned int min;
    if (p[0] < 0xc2)
        return 0;
    if (p[0] < 0xe0)
        len = 2, min = 0x80;
    else if (p[0] < 0xf0)
        len = 3, min = 0x800;
    else if (p[0] < 0xf5)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    unsigned int cp = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void rotate(void)
{
    if (o.log_files <= 1) { /* one file: start it again */
        if (ftruncate(log_fd, 0) == 0)
            log_size = 0;
        return;
    }
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(to, sizeof to, "%s.%d", o.log_path, o.log_files - 1);
    unlink(to);
    for (int i = o.log_files - 2; i >= 1; i--) {
        snprintf(from, sizeof from, "%s.%d", o.log_path, i);
        snprintf(to, sizeof to, "%s.%d", o.log_path, i + 1);
        rename(from, to);
    }
    snprintf(to, sizeof to, "%s.1", o.log_path);
    rename(o.log_path, to);
    int fd = open(o.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd >= 0) {
        close(log_fd);
        log_fd = fd;
        log_size = 0;
    }
}

/* JSON string contents for bytes p[0..n) into out (room for 6n): Go's encoding, as
 * Docker's json-file writes it: invalid UTF-8 becomes U+FFFD, and <, > and & are
 * escaped along with the control characters. Returns the length written. */
static size_t json_escape(char *out, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t k = utf8_len(p + i, n - i);
            if (k) {
                memcpy(out + j, p + i, k);
                j += k;
                i += k;
            } else {
                memcpy(out + j, "\\ufffd", 6);
                j += 6;
                i++;
            }
            continue;
        }
        i++;
        const char *two = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (two) {
            memcpy(out + j, two, 2);
            j += 2;
        } else if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&') {
            memcpy(out + j, "\\u00", 4);
            out[j + 4] = hex[c >> 4];
            out[j + 5] = hex[c & 15];
            j += 6;
        } else {
            out[j++] = (char)c;
        }
    }
    return j;
}

/* One record: the bytes (a line with its newline, or a cut part of one). */
static void log_record(const struct stream *s, const char *data, size_t n)
{
    struct timespec ts;
    struct tm tm;
    char when[64];
    if (log_fd < 0 || n == 0)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t wl = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wl, sizeof when - wl, ".%09ldZ", ts.tv_nsec);

    jreserve(n * 6 + 128);
    memcpy(jbuf, "{\"log\":\"", 8);
    size_t j = 8 + json_escape(jbuf + 8, (const unsigned char *)data, n);
    j += (size_t)snprintf(jbuf + j, jcap - j, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n",
                          s->name, when);
    if (write_all(log_fd, jbuf, j) == 0)
        log_size += (long long)j;
    if (o.log_max > 0 && log_size >= o.log_max)
        rotate();
}

static void log_flush(struct stream *s)
{
    log_record(s, s->line, s->len);
    s->len = 0;
}

/* Output as it comes: whole lines are records, a line longer than 16 KiB is cut. */
static void log_output(struct stream *s, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) + 1 : n;
        n -= seg;
        while (seg > 0) {
            size_t room = LINE_MAX_BYTES - s->len;
            size_t k = seg < room ? seg : room;
            memcpy(s->line + s->len, p, k);
            s->len += k;
            p += k;
            seg -= k;
            if (s->len == LINE_MAX_BYTES)
                log_flush(s);
        }
        if (nl && s->len > 0)
            log_flush(s);
    }
}

/* ---- attach clients ------------------------------------------------------ */

static int clients[MAX_CLIENTS];
static int client_reads[MAX_CLIENTS]; /* 0 once the client sent EOF */
static int n_clients;

static void drop_client(int i)
{
    close(clients[i]);
    clients[i] = clients[n_clients - 1];
    client_reads[i] = client_reads[n_clients - 1];
    n_clients--;
}

static void broadcast(int tag, const char *data, size_t n)
{
    char msg[CHUNK + 1];
    while (n > 0) {
        size_t k = n < CHUNK ? n : CHUNK;
        msg[0] = (char)tag;
        memcpy(msg + 1, data, k);
        for (int i = 0; i < n_clients;) {
            if (send(clients[i], msg, k + 1, MSG_NOSIGNAL) < 0)
                drop_client(i);
            else
                i++;
        }
        data += k;
        n -= k;
    }
}

static void accept_pending(int listener)
{
    int c;
    while ((c = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        if (n_clients >= MAX_CLIENTS) {
            close(c);
            continue;
        }
        /* a client that stops reading is dropped, not waited for */
        struct timeval tv = {.tv_sec = 5};
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        clients[n_clients] = c;
        client_reads[n_clients++] = 1;
    }
}

/* ---- start-up ------------------------------------------------------------ */

static void usage_error(const char *what)
{
    fprintf(stderr, "ketch-monitor: %s\n", what);
    exit(2);
}

static void parse(int argc, char **argv)
{
    enum { ID = 256, RUNTIME, RT_ARG, BUNDLE, PIDFILE, MON_PIDFILE, EXIT_FILE, ATTACH_DIR,
           LOG_PATH, LOG_MAX, LOG_FILES, TTY, IN, LEAVE, EXIT_CMD, EXIT_ARG, EXIT_LOCK,
           ADOPT, OUT_FD, ERR_FD, IN_FD, MASTER_FD };
    static const struct option longs[] = {
        {"id", 1, 0, ID}, {"runtime", 1, 0, RUNTIME}, {"runtime-arg", 1, 0, RT_ARG},
        {"bundle", 1, 0, BUNDLE}, {"pidfile", 1, 0, PIDFILE},
        {"monitor-pidfile", 1, 0, MON_PIDFILE}, {"exit-file", 1, 0, EXIT_FILE},
        {"attach-dir", 1, 0, ATTACH_DIR}, {"log-path", 1, 0, LOG_PATH},
        {"log-max-size", 1, 0, LOG_MAX}, {"log-max-file", 1, 0, LOG_FILES},
        {"tty", 0, 0, TTY}, {"stdin", 0, 0, IN}, {"leave-stdin-open", 0, 0, LEAVE},
        {"exit-command", 1, 0, EXIT_CMD}, {"exit-command-arg", 1, 0, EXIT_ARG},
        {"exit-command-unless-locked", 1, 0, EXIT_LOCK},
        {"adopt-pid", 1, 0, ADOPT}, {"stdout-fd", 1, 0, OUT_FD}, {"stderr-fd", 1, 0, ERR_FD},
        {"stdin-fd", 1, 0, IN_FD}, {"master-fd", 1, 0, MASTER_FD},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case ID: o.id = optarg; break;
        case RUNTIME: o.runtime = optarg; break;
        case RT_ARG:
            if (o.n_rt >= MAX_ARGS - 1)
                usage_error("too many --runtime-arg");
            o.rt_args[o.n_rt++] = optarg;
            break;
        case BUNDLE: o.bundle = optarg; break;
        case PIDFILE: o.pidfile = optarg; break;
        case MON_PIDFILE: o.mon_pidfile = optarg; break;
        case EXIT_FILE: o.exit_file = optarg; break;
        case ATTACH_DIR: o.attach_dir = optarg; break;
        case LOG_PATH: o.log_path = optarg; break;
        case LOG_MAX: o.log_max = atoll(optarg); break;
        case LOG_FILES:
            o.log_files = atoi(optarg);
            if (o.log_files < 1)
                usage_error("--log-max-file must be at least 1");
            break;
        case TTY: o.tty = 1; break;
        case IN: o.in = 1; break;
        case LEAVE: o.leave_stdin = 1; break;
        case EXIT_CMD: o.exit_cmd = optarg; break;
        case EXIT_LOCK: o.exit_lock = optarg; break;
        case ADOPT: o.adopt_pid = atol(optarg); break;
        case OUT_FD: o.stdout_fd = atoi(optarg); break;
        case ERR_FD: o.stderr_fd = atoi(optarg); break;
        case IN_FD: o.stdin_fd = atoi(optarg); break;
        case MASTER_FD: o.master_fd = atoi(optarg); break;
        case EXIT_ARG:
            if (o.n_exit >= MAX_ARGS - 2)
                usage_error("too many --exit-command-arg");
            o.exit_args[o.n_exit++] = optarg;
            break;
        default: usage_error("bad arguments");
        }
    }
    if (!o.id || !o.bundle || !o.exit_file || !o.attach_dir)
        usage_error("--id, --bundle, --exit-file and --attach-dir are required");
    if (o.adopt_pid > 0) {
        if (o.tty ? o.master_fd < 0 : (o.stdout_fd < 0 || o.stderr_fd < 0 || (o.in && o.stdin_fd < 0)))
            usage_error("--adopt-pid needs the container's stdio fds");
    } else if (!o.runtime || !o.pidfile) {
        usage_error("--runtime and --pidfile are required (or --adopt-pid)");
    }
}

/* A unix socket bound at dir/name, through /proc/self/fd so long paths work. */
static int bind_in(const char *dir, const char *name, int type)
{
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        die("open %s: %s", dir, strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, name);
    unlink(sa.sun_path);
    int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 16) < 0)
        die("socket %s/%s: %s", dir, name, strerror(errno));
    close(dfd);
    return s;
}

/* The pty master, sent by the runtime over the console socket (SCM_RIGHTS). */
static int receive_master(int listener, pid_t runtime, int *rt_status)
{
    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    for (;;) {
        int r = poll(&pfd, 1, 50);
        if (r > 0)
            break;
        if (r < 0 && errno != EINTR)
            die("poll on the console socket: %s", strerror(errno));
        if (waitpid(runtime, rt_status, WNOHANG) == runtime)
            return -1; /* create failed before it sent the terminal */
    }
    int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        die("accept on the console socket: %s", strerror(errno));
    char data[256], ctrl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
                        .msg_controllen = sizeof ctrl};
    ssize_t n;
    do
        n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    close(conn);
    struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (cm == NULL || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
        die("the runtime sent no terminal on the console socket");
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return fd;
}

/* Is --exit-command-unless-locked's file locked by someone (a foreground CLI)? */
static int cleanup_is_taken(void)
{
    if (!o.exit_lock)
        return 0;
    int fd = open(o.exit_lock, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd); /* releases it if we got it */
    return held;
}

static void start_exit_command(void)
{
    if (!o.exit_cmd)
        return;
    pid_t p = fork();
    if (p != 0)
        return;
    const char *argv[MAX_ARGS + 2];
    int n = 0;
    argv[n++] = o.exit_cmd;
    for (int i = 0; i < o.n_exit; i++)
        argv[n++] = o.exit_args[i];
    argv[n] = NULL;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    setsid();
    execv(o.exit_cmd, (char *const *)argv);
    _exit(127);
}

struct stdio {
    int out, err; /* read ends: the container's stdout and stderr (the pty master with -t) */
    int in;       /* write end of its stdin (the master with -t), or -1 */
    int master;
};

/* Run `<runtime> create` with pipes or a console socket; the container's pid. */
static pid_t create_container(struct stdio *io)
{
    /* stdio: pipes, or a terminal the runtime makes and sends us */
    int in_r = -1, in_w = -1, out[2] = {-1, -1}, err[2] = {-1, -1}, master = -1;
    int console = -1;
    char console_dir[] = "/tmp/ketch-monitor-XXXXXX", console_path[64] = "";
    if (pipe2(err, O_CLOEXEC) < 0) /* -t: the runtime's own messages */
        die("pipe: %s", strerror(errno));
    if (o.tty) {
        if (!mkdtemp(console_dir))
            die("mkdtemp %s: %s", console_dir, strerror(errno));
        snprintf(console_path, sizeof console_path, "%s/console", console_dir);
        console = bind_in(console_dir, "console", SOCK_STREAM);
    } else {
        if (pipe2(out, O_CLOEXEC) < 0)
            die("pipe: %s", strerror(errno));
        if (o.in) {
            int p[2];
            if (pipe2(p, O_CLOEXEC) < 0)
                die("pipe: %s", strerror(errno));
            in_r = p[0];
            in_w = p[1];
        }
    }

    pid_t rt = fork();
    if (rt < 0)
        die("fork: %s", strerror(errno));
    if (rt == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        int null = open("/dev/null", O_RDWR);
        dup2(in_r >= 0 ? in_r : null, 0);
        dup2(out[1] >= 0 ? out[1] : err[1], 1);
        dup2(err[1], 2);
        if (chdir(o.bundle) < 0) {
            fprintf(stderr, "chdir %s: %s\n", o.bundle, strerror(errno));
            _exit(127);
        }
        const char *args[MAX_ARGS * 2];
        int n = 0;
        args[n++] = o.runtime;
        for (int i = 0; i < o.n_rt; i++)
            args[n++] = o.rt_args[i];
        args[n++] = "create";
        args[n++] = "--bundle";
        args[n++] = o.bundle;
        args[n++] = "--pid-file";
        args[n++] = o.pidfile;
        if (o.tty) {
            args[n++] = "--console-socket";
            args[n++] = console_path;
        }
        args[n++] = o.id;
        args[n] = NULL;
        execv(o.runtime, (char *const *)args);
        fprintf(stderr, "exec %s: %s\n", o.runtime, strerror(errno));
        _exit(127);
    }
    if (in_r >= 0)
        close(in_r);
    if (out[1] >= 0)
        close(out[1]);
    close(err[1]);

    int rt_status = 0, rt_done = 0;
    if (o.tty) {
        master = receive_master(console, rt, &rt_status);
        rt_done = master < 0;
        close(console);
        unlink(console_path);
        rmdir(console_dir);
    }
    if (!rt_done) {
        while (waitpid(rt, &rt_status, 0) < 0 && errno == EINTR)
            ;
    }
    if (!WIFEXITED(rt_status) || WEXITSTATUS(rt_status) != 0) {
        char text[4096];
        size_t n = drain_text(err[0], text, sizeof text);
        if (n == 0 && out[0] >= 0)
            n = drain_text(out[0], text, sizeof text);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
            text[--n] = 0;
        if (n)
            die("%s", text);
        die("%s create exited with status %d", o.runtime,
            WIFEXITED(rt_status) ? WEXITSTATUS(rt_status) : 128 + WTERMSIG(rt_status));
    }
    if (o.tty)
        close(err[0]), err[0] = -1;

    char pidtext[32] = "";
    int pf = open(o.pidfile, O_RDONLY | O_CLOEXEC);
    if (pf >= 0) {
        ssize_t r = read(pf, pidtext, sizeof pidtext - 1);
        pidtext[r > 0 ? r : 0] = 0;
        close(pf);
    }
    pid_t pid = (pid_t)atol(pidtext);
    if (pid <= 0)
        die("the runtime wrote no pid to %s", o.pidfile);
    *io = (struct stdio){.out = o.tty ? master : out[0], .err = o.tty ? -1 : err[0],
                         .in = o.tty ? master : in_w, .master = master};
    return pid;
}


int main(int argc, char **argv)
{
    parse(argc, argv);
    const char *sp = getenv("_OCI_SYNCPIPE");
    if (sp) {
        sync_fd = atoi(sp);
        fcntl(sync_fd, F_SETFD, FD_CLOEXEC);
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    if (o.adopt_pid <= 0) {
        /* Leave the caller at once; the caller reads the sync pipe, not our exit.
         * (An adopting monitor is already detached: the process it replaced was.) */
        pid_t me = fork();
        if (me < 0)
            die("fork: %s", strerror(errno));
        if (me > 0)
            _exit(0);
        setsid();
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        die("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    if (o.mon_pidfile) {
        char text[32];
        snprintf(text, sizeof text, "%d", getpid());
        write_file_atomic(o.mon_pidfile, text);
    }
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0)
        die("signalfd: %s", strerror(errno));

    struct stdio io;
    pid_t pid;
    if (o.adopt_pid > 0) {
        /* The container exists, our child already (its creator exec'd us). */
        pid = (pid_t)o.adopt_pid;
        io = (struct stdio){.out = o.tty ? o.master_fd : o.stdout_fd,
                            .err = o.tty ? -1 : o.stderr_fd,
                            .in = o.tty ? o.master_fd : (o.in ? o.stdin_fd : -1),
                            .master = o.master_fd};
        int fds[] = {io.out, io.err, io.in};
        for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
            if (fds[i] >= 0)
                fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    } else {
        pid = create_container(&io);
    }

    int listener = bind_in(o.attach_dir, "attach", SOCK_SEQPACKET | SOCK_NONBLOCK);
    int winsz = -1;
    if (o.tty) {
        char fifo[PATH_MAX];
        snprintf(fifo, sizeof fifo, "%s/winsz", o.bundle);
        unlink(fifo);
        if (mkfifo(fifo, 0600) == 0)
            winsz = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC); /* never sees EOF */
    }
    if (o.log_path) {
        log_fd = open(o.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (log_fd < 0)
            die("open %s: %s", o.log_path, strerror(errno));
        struct stat st;
        if (fstat(log_fd, &st) == 0)
            log_size = st.st_size;
    }
    report(pid, NULL);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC); /* the caller's pipes are not ours */
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        close(null);
    }

    struct stream streams[2] = {{.name = "stdout", .tag = 2, .fd = io.out},
                                {.name = "stderr", .tag = 3, .fd = io.err}};
    int exited = 0, status = 0, input = io.in, in_w = o.tty ? -1 : io.in, master = io.master;
    int reap = 1; /* a child that ended before SIGCHLD was blocked sent nothing: look once */
    struct timespec drain_from = {0};
    static char buf[CHUNK], inbuf[65536];
    for (;;) {
        struct pollfd pf[MAX_CLIENTS + 6];
        int n = 0, open_streams = 0;
        for (int s = 0; s < 2; s++)
            if (streams[s].fd >= 0) {
                pf[n++] = (struct pollfd){.fd = streams[s].fd, .events = POLLIN};
                open_streams++;
            }
        if (exited && open_streams == 0)
            break;
        int base = n;
        pf[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = listener, .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = winsz, .events = POLLIN};
        int first_client = n;
        for (int i = 0; i < n_clients; i++)
            pf[n++] = (struct pollfd){.fd = clients[i], .events = client_reads[i] ? POLLIN : 0};
        /* After the exit, give the output a moment to end (a process that left
         * the container may hold the pipe open for ever). */
        int timeout = -1;
        if (exited) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long ms = (now.tv_sec - drain_from.tv_sec) * 1000 +
                      (now.tv_nsec - drain_from.tv_nsec) / 1000000;
            if (ms >= 500)
                break;
            timeout = (int)(500 - ms);
        }
        int r = poll(pf, (nfds_t)n, reap ? 0 : timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (r == 0 && !reap)
            continue;
        /* Clients first: one whose connect() returned before the container was
         * started must get all its output, even if the connection is still
         * waiting in the backlog when that output is read. */
        accept_pending(listener);
        for (int i = 0; i < base; i++) {
            if (!pf[i].revents)
                continue;
            struct stream *s = pf[i].fd == streams[0].fd ? &streams[0] : &streams[1];
            ssize_t got = read(s->fd, buf, sizeof buf);
            if (got > 0) {
                log_output(s, buf, (size_t)got);
                broadcast(s->tag, buf, (size_t)got);
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                log_flush(s);  /* EOF (pipe) or EIO (pty: the last slave closed) */
                if (s->fd != input)
                    close(s->fd);
                s->fd = -1;
            }
        }
        if (pf[base].revents || reap) {
            struct signalfd_siginfo si;
            reap = 0;
            while (read(sigfd, &si, sizeof si) > 0)
                ;
            int st;
            pid_t w;
            while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
                if (w == pid && !exited) {
                    exited = 1;
                    status = st;
                    clock_gettime(CLOCK_MONOTONIC, &drain_from);
                }
            }
        }
        if (winsz >= 0 && pf[base + 2].revents) {
            char text[64];
            ssize_t got = read(winsz, text, sizeof text - 1);
            unsigned rows, cols;
            if (got > 0) {
                text[got] = 0;
                if (sscanf(text, "%u %u", &rows, &cols) == 2 && master >= 0) {
                    struct winsize ws = {.ws_row = (unsigned short)rows,
                                         .ws_col = (unsigned short)cols};
                    ioctl(master, TIOCSWINSZ, &ws);
                }
            }
        }
        /* clients: input for the container's stdin, EOF, or gone */
        for (int i = first_client; i < n; i++) {
            int idx = -1;
            for (int j = 0; j < n_clients; j++)
                if (clients[j] == pf[i].fd) {
                    idx = j;
                    break;
                }
            if (idx < 0 || !pf[i].revents)
                continue;
            if (pf[i].revents & POLLIN) {
                ssize_t got = recv(clients[idx], inbuf, sizeof inbuf, MSG_DONTWAIT);
                if (got > 0) {
                    if (o.in && input >= 0 && !exited)
                        write_all(input, inbuf, (size_t)got);
                    continue;
                }
                if (got == 0) {
                    client_reads[idx] = 0;
                    if (o.in && !o.leave_stdin && in_w >= 0) {
                        close(in_w); /* the client's EOF is the container's */
                        in_w = input = -1;
                    }
                    continue;
                }
            }
            if (pf[i].revents & (POLLHUP | POLLERR | POLLNVAL))
                drop_client(idx);
        }
    }

    for (int s = 0; s < 2; s++)
        if (streams[s].len)
            log_flush(&streams[s]);
    if (log_fd >= 0)
        close(log_fd);
    char code[16];
    snprintf(code, sizeof code, "%d",
             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    write_file_atomic(o.exit_file, code);
    int taken = cleanup_is_taken(); /* before the clients go: see the top */
    while (n_clients > 0)
        drop_client(0);
    close(listener);
    if (!taken)
        start_exit_command();
    return 0;
}
