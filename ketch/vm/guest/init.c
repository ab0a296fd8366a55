/* ketch guest init: PID 1 of a micro-VM, from initramfs to the container's root.
 *
 * One linear sequence; the host wrote /ketch/config (appended cpio) with:
 *   module <path>          load, in this order (the host resolved modules.dep)
 *   root <device>          erofs image of the container's rootfs
 *   readonly               make the root read-only once everything is mounted
 *   volume <tag> <dest> <ro|rw>   virtiofs share mounted at dest
 *   file <src> <dest>      copy /ketch/files/... to dest (a bound host file)
 *   tmpfs <dest>           a tmpfs at dest
 *   hostname <name>
 *   net                    bring up eth0 for QEMU user networking (10.0.2.15/24)
 *   probe                  report READY as soon as the port is open, then power off
 *   template               send TEMPLATE once the port is open, then wait for the
 *                          run's files and config over the port (restore.c)
 *   clock <sec> <nsec>     set the guest's wall clock (a restored snapshot's is stale)
 *   entropy <hex>          mix host randomness into the pool and reseed the CRNG
 *   osroot <device>        full VM: mount that ext4 disk read-write and hand over to
 *                          its own /sbin/init (no agent)
 * Any failure is sent to the host as a FATAL frame (when the port is open)
 * and on the console, then the VM powers off.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

int port_fd = -1;
#define NEWROOT "/mnt/root"

/* Guest-side boot marks, seconds on CLOCK_BOOTTIME (the clock printk stamps
 * with): init's start, modules loaded, ready. They travel in the READY frame
 * so the host can split a slow start into kernel, modules and mounts, which
 * wall time on a loaded host cannot. */
static double t_init, t_modules, t_config;

static double boottime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void send_ready(void)
{
	char marks[128];
	int n = snprintf(marks, sizeof marks, "init=%.4f modules=%.4f ready=%.4f",
			 t_init, t_modules, boottime());
	if (t_config > 0)
		n += snprintf(marks + n, sizeof marks - n, " config=%.4f", t_config);
	send_frame(F_READY, 0, marks, n);
}

void fatal(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	dprintf(2, "ketch-init: %s\n", msg);
	if (port_fd >= 0)
		send_frame(F_FATAL, 0, msg, strlen(msg));
	stop_vm();
}

/* QEMU runs with -no-reboot, so a reboot ends it; unlike power-off, that needs
 * no ACPI support from the machine (reboot=t makes it a triple fault). */
void stop_vm(void)
{
	sync();
	reboot(RB_AUTOBOOT);
	_exit(1);
}

static void must_mount(const char *src, const char *dst, const char *type,
		       unsigned long flags, const char *data)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, flags, data) < 0)
		fatal("mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void mkdir_p(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(buf, 0755);
			*p = '/';
		}
	}
	mkdir(buf, 0755);
}

static void load_module(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fatal("open module %s: %s", path, strerror(errno));
	if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
		fatal("load module %s: %s", path, strerror(errno));
	close(fd);
}

/* virtio-serial ports appear asynchronously after virtio_console loads. */
static int open_port(const char *want)
{
	for (int tries = 0; tries < 2000; tries++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char path[300], name[64] = "";
			snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
			FILE *f = fopen(path, "r");
			if (!f)
				continue;
			if (fgets(name, sizeof name, f))
				name[strcspn(name, "\n")] = 0;
			fclose(f);
			if (strcmp(name, want) == 0) {
				snprintf(path, sizeof path, "/dev/%s", e->d_name);
				int fd = open(path, O_RDWR | O_CLOEXEC);
				if (fd >= 0) {
					closedir(d);
					return fd;
				}
			}
		}
		if (d)
			closedir(d);
		sleep_ms(2);
	}
	fatal("virtio-serial port %s did not appear", want);
}

static void wait_for(const char *path)
{
	struct stat st;
	for (int tries = 0; tries < 2000 && stat(path, &st) < 0; tries++)
		sleep_ms(2);
	if (stat(path, &st) < 0)
		fatal("device %s did not appear", path);
}

static void iface_up(const char *name)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (s >= 0)
		close(s);
}

static void run_busybox(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execv("/bin/busybox", argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
}

static void setup_net(void)
{
	run_busybox((char *[]){"ip", "addr", "add", "10.0.2.15/24", "dev", "eth0", NULL});
	run_busybox((char *[]){"ip", "link", "set", "eth0", "up", NULL});
	run_busybox((char *[]){"ip", "route", "add", "default", "via", "10.0.2.2", NULL});
}

/* A small /dev like a container's: no host disks, no agent port. */
static void populate_dev(void)
{
	static const struct { const char *name; int major, minor; } nodes[] = {
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8},
		{"urandom", 1, 9}, {"tty", 5, 0},
	};
	must_mount("tmpfs", NEWROOT "/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k");
	for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
		char path[64];
		snprintf(path, sizeof path, NEWROOT "/dev/%s", nodes[i].name);
		mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor));
	}
	must_mount("devpts", NEWROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		   "newinstance,ptmxmode=0666,mode=0620");
	symlink("pts/ptmx", NEWROOT "/dev/ptmx");
	must_mount("shm", NEWROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	symlink("/proc/self/fd", NEWROOT "/dev/fd");
	symlink("/proc/self/fd/0", NEWROOT "/dev/stdin");
	symlink("/proc/self/fd/1", NEWROOT "/dev/stdout");
	symlink("/proc/self/fd/2", NEWROOT "/dev/stderr");
}

static void mount_volume(const char *tag, const char *dest, int ro)
{
	char path[4096];
	snprintf(path, sizeof path, NEWROOT "%s", dest);
	mkdir_p(path);
	if (mount(tag, path, "virtiofs", 0, NULL) < 0)
		fatal("mount volume %s on %s: %s", tag, dest, strerror(errno));
	if (ro && mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		fatal("remount volume %s read-only: %s", dest, strerror(errno));
}

static void copy_file(const char *src, const char *dest)
{
	char path[4096], buf[65536];
	snprintf(path, sizeof path, NEWROOT "%s", dest);
	char *slash = strrchr(path, '/');
	*slash = 0;
	mkdir_p(path);
	*slash = '/';
	int in = open(src, O_RDONLY | O_CLOEXEC);
	int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (in < 0 || out < 0)
		fatal("copy %s to %s: %s", src, dest, strerror(errno));
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n)
			fatal("write %s: %s", dest, strerror(errno));
	close(in), close(out);
}

static void boot_os(const char *dev)
{
	wait_for(dev);
	must_mount(dev, NEWROOT, "ext4", 0, NULL);
	/* Keep the kernel filesystems: the OS's init finds them mounted, as after switch_root. */
	must_mount("/dev", NEWROOT "/dev", NULL, MS_MOVE, NULL);
	must_mount("/proc", NEWROOT "/proc", NULL, MS_MOVE, NULL);
	must_mount("/sys", NEWROOT "/sys", NULL, MS_MOVE, NULL);
	if (chdir(NEWROOT) < 0 || mount(NEWROOT, "/", NULL, MS_MOVE, NULL) < 0 ||
	    chroot(".") < 0 || chdir("/") < 0)
		fatal("switch to the disk's root: %s", strerror(errno));
	execl("/sbin/init", "/sbin/init", (char *)NULL);
	fatal("exec /sbin/init on the disk: %s", strerror(errno));
}

void boot(void)
{
	char line[4200], root[256] = "", hostname[256] = "";
	int readonly = 0, net = 0;

	/* 1. The kernel mounted nothing but the initramfs. */
	must_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
	must_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	must_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	int fd = open("/dev/console", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}

	/* 2. Modules first: the port, the disk and the filesystems are all modules. */
	FILE *cfg = fopen("/ketch/config", "r");
	if (!cfg)
		fatal("open /ketch/config: %s", strerror(errno));
	while (fgets(line, sizeof line, cfg)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, "module ", 7) == 0)
			load_module(line + 7);
	}
	t_modules = boottime();

	/* A full VM boots its own OS: switch to the disk and exec its init. */
	rewind(cfg);
	while (fgets(line, sizeof line, cfg))
		if (strncmp(line, "osroot ", 7) == 0) {
			line[strcspn(line, "\n")] = 0;
			boot_os(line + 7);
		}

	/* 3. The port next, so that every later failure reaches the host. */
	port_fd = open_port("ketch.0");

	/* The accelerator probe only needs to know the guest reached its agent. */
	rewind(cfg);
	while (fgets(line, sizeof line, cfg))
		if (strcmp(line, "probe\n") == 0) {
			send_ready();
			stop_vm();
		}

	rewind(cfg);
	while (fgets(line, sizeof line, cfg))
		if (strcmp(line, "template\n") == 0) {
			char marks[64];
			fclose(cfg);
			snprintf(marks, sizeof marks, "init=%.4f modules=%.4f", t_init, t_modules);
			await_config(marks);
			t_config = boottime();
			if (!(cfg = fopen("/ketch/config", "r")))
				fatal("open /ketch/config: %s", strerror(errno));
			break;
		}

	rewind(cfg);
	while (fgets(line, sizeof line, cfg)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, "root ", 5) == 0)
			snprintf(root, sizeof root, "%s", line + 5);
		else if (strcmp(line, "readonly") == 0)
			readonly = 1;
		else if (strcmp(line, "net") == 0)
			net = 1;
		else if (strncmp(line, "hostname ", 9) == 0)
			snprintf(hostname, sizeof hostname, "%s", line + 9);
		else if (strncmp(line, "clock ", 6) == 0)
			set_clock(line + 6);
		else if (strncmp(line, "entropy ", 8) == 0)
			add_entropy(line + 8);
	}

	/* 4. Root: the read-only erofs image under a writable overlay on tmpfs. */
	wait_for(root);
	if (t_config > 0)
		flush_disk(root);	/* restored: another image was probed there */
	must_mount(root, "/mnt/lower", "erofs", MS_RDONLY, NULL);
	must_mount("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=755");
	mkdir("/mnt/rw/upper", 0755);
	mkdir("/mnt/rw/work", 0755);
	must_mount("overlay", NEWROOT, "overlay", 0,
		   "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work");

	/* 5. Kernel filesystems and volumes inside it (before read-only: mountpoints). */
	must_mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	must_mount("sysfs", NEWROOT "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	populate_dev();
	rewind(cfg);
	while (fgets(line, sizeof line, cfg)) {
		char tag[128], dest[4096], mode[8];
		line[strcspn(line, "\n")] = 0;
		char src[4096];
		if (sscanf(line, "volume %127s %4095s %7s", tag, dest, mode) == 3)
			mount_volume(tag, dest, strcmp(mode, "ro") == 0);
		else if (sscanf(line, "file %4095s %4095s", src, dest) == 2)
			copy_file(src, dest);
		else if (sscanf(line, "tmpfs %4095s", dest) == 1) {
			snprintf(src, sizeof src, NEWROOT "%s", dest);
			mkdir_p(src);
			must_mount("tmpfs", src, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
		}
	}
	fclose(cfg);
	if (hostname[0])
		sethostname(hostname, strlen(hostname));
	iface_up("lo");
	if (net)
		setup_net();
	if (readonly && mount(NULL, NEWROOT, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		fatal("remount root read-only: %s", strerror(errno));

	/* 6. Switch root: the initramfs cannot be unmounted, so move the new root over it. */
	if (chdir(NEWROOT) < 0 || mount(NEWROOT, "/", NULL, MS_MOVE, NULL) < 0 ||
	    chroot(".") < 0 || chdir("/") < 0)
		fatal("switch to the container root: %s", strerror(errno));
}

int main(void)
{
	t_init = boottime();
	boot();
	send_ready();
	agent_loop();
	return 0;
}
