/*
 * main_host.c - the firmware built for the host (gcc): serves the device on a
 * fresh pseudo-terminal and prints "PORT /dev/pts/N" (like
 * `python -m edgezo.targets.sim`), then serves until killed. The host opens
 * the printed path with pyserial.
 */
#define _XOPEN_SOURCE 600
#define _DEFAULT_SOURCE /* cfmakeraw */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include "device.h"

static int master_fd = -1;

static void send_bytes(const uint8_t *data, size_t n)
{
    while (n) {
        ssize_t w = write(master_fd, data, n);
        if (w <= 0)
            return;
        data += w;
        n -= (size_t)w;
    }
}

int main(void)
{
    master_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_fd < 0 || grantpt(master_fd) || unlockpt(master_fd)) {
        perror("edgezo-fw: pty");
        return 1;
    }
    const char *path = ptsname(master_fd);
    int slave = open(path, O_RDWR | O_NOCTTY); /* kept open: the master never sees a hang-up */
    struct termios t;
    if (slave < 0 || tcgetattr(slave, &t)) {
        perror("edgezo-fw: pty slave");
        return 1;
    }
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    printf("PORT %s\n", path);
    fflush(stdout);
    ez_device_init(1);
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = read(master_fd, buf, sizeof buf);
        if (n <= 0)
            return 0;
        ez_device_feed(buf, (size_t)n, send_bytes);
    }
}
