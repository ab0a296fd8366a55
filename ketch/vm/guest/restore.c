/* ketch guest init, the restore half: what a guest restored from a snapshot
 * needs before it goes on booting (see snapshot.py on the host).
 *
 * A template VM stops in await_config, modules loaded and port open: the host
 * saves it there once per kernel, modules and machine shape, and every run
 * restores that state and sends its own files (F_FILE) and config (F_CONFIG)
 * over the port instead of in the initramfs. Nothing before that point may
 * depend on the run; what the snapshot froze and a run must not share (wall
 * clock, random state, the disk's page cache) is renewed here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/random.h>

#include "agent.h"

#ifndef BLKFLSBUF
#define BLKFLSBUF _IO(0x12, 97)
#endif

static void write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		fatal("write %s: %s", path, strerror(errno));
	close(fd);
}

void await_config(const char *marks)
{
	char path[4200];
	send_frame(F_TEMPLATE, 0, marks, strlen(marks));
	mkdir("/ketch/files", 0755);
	for (;;) {
		struct frame_hdr h;
		char *p = read_frame(&h);
		if (!p) {	/* no host on the port (yet) */
			struct timespec ts = {0, 5000000};
			nanosleep(&ts, NULL);
			continue;
		}
		size_t name_len = strnlen(p, h.length);
		if (h.type == F_FILE && name_len < h.length && !strstr(p, "..")) {
			snprintf(path, sizeof path, "/ketch/%s", p);
			write_file(path, p + name_len + 1, h.length - name_len - 1);
		} else if (h.type == F_CONFIG) {
			write_file("/ketch/config", p, h.length);
			free(p);
			return;
		}
		free(p);
	}
}

void set_clock(const char *value)
{
	struct timespec ts = {0, 0};
	if (sscanf(value, "%ld %ld", &ts.tv_sec, &ts.tv_nsec) == 2 &&
	    clock_settime(CLOCK_REALTIME, &ts) < 0)
		fatal("set the clock: %s", strerror(errno));
}

/* Two runs restored from one snapshot start with the same CRNG state: credit
 * fresh host bytes to the input pool, then force a reseed so nothing drawn
 * from here on is shared. */
void add_entropy(const char *hex)
{
	struct { int entropy_count, buf_size; unsigned char buf[64]; } e = {0, 0, {0}};
	unsigned byte;
	while (e.buf_size < (int)sizeof e.buf && sscanf(hex + 2 * e.buf_size, "%2x", &byte) == 1)
		e.buf[e.buf_size++] = (unsigned char)byte;
	e.entropy_count = 8 * e.buf_size;
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &e) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
		fatal("reseed the guest RNG: %s", strerror(errno));
	close(fd);
}

/* The disk is this run's image, but the page cache may hold blocks the
 * template read from its own (the partition scan): drop them before mounting. */
void flush_disk(const char *dev)
{
	int fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, BLKFLSBUF, 0) < 0)
		fatal("flush %s: %s", dev, strerror(errno));
	close(fd);
}
