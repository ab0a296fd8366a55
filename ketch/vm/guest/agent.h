/* ketch guest agent: shared declarations of init.c (boot), restore.c (after a
 * snapshot restore) and agent.c (protocol).
 *
 * Wire format on the virtio-serial port "ketch.0", both directions, little endian:
 *   u8 type | u8 zero | u16 session | u32 length | length bytes of payload
 * Session 0 is the VM itself; the host numbers processes from 1 (1 = the
 * container's process, then one per exec). Frames of one session arrive in
 * the order they were sent, so an EXIT frame always follows the last output.
 */
#ifndef KETCH_AGENT_H
#define KETCH_AGENT_H

#include <stddef.h>
#include <stdint.h>

enum {
	/* host -> guest */
	F_EXEC = 1,	/* records: tag byte + NUL-terminated string (see agent.c) */
	F_STDIN = 2,	/* data; length 0 = end of input */
	F_SIGNAL = 3,	/* u32 signal number */
	F_RESIZE = 4,	/* u16 rows, u16 cols */
	F_POWEROFF = 5,
	F_FILE = 6,	/* restored template: "name\0data", written to /ketch/name */
	F_CONFIG = 7,	/* restored template: the run's /ketch/config; boot goes on */
	/* guest -> host */
	F_READY = 10,	/* boot done, root mounted, waiting for EXEC */
	F_STARTED = 11,	/* u32 guest pid */
	F_STDOUT = 12,
	F_STDERR = 13,
	F_EXIT = 14,	/* i32: exit code, or 128 + signal */
	F_FATAL = 15,	/* boot failed: message; the guest powers off */
	F_TEMPLATE = 16,	/* template: modules loaded, port open; snapshot me now */
};

struct frame_hdr {
	uint8_t type;
	uint8_t zero;
	uint16_t session;
	uint32_t length;
} __attribute__((packed));

/* init.c */
extern int port_fd;
void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void stop_vm(void) __attribute__((noreturn));
void boot(void);

/* restore.c */
void await_config(const char *marks);
void set_clock(const char *value);
void add_entropy(const char *hex);
void flush_disk(const char *dev);

/* agent.c */
void send_frame(int type, int session, const void *data, size_t len);
char *read_frame(struct frame_hdr *h);
void agent_loop(void);

#endif
