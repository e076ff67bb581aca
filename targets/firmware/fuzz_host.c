/*
 * fuzz_host.c - the fuzz harness of the firmware's frame entry point, ez_device_feed (device.h).
 *
 *   edgezo-fuzz FILE...
 *
 * Each FILE is one session: the device is powered on (ez_device_init), then the
 * file's bytes are fed in chunks of varying size (1, 2, 3, ... bytes, wrapping
 * at 64), as a serial line would deliver them. Every response frame is checked
 * to be a well-formed frame of at most EZ_MAX_FRAME bytes. Built with
 * -fsanitize=address,undefined -fno-sanitize-recover=all (make fuzz), any
 * memory error or undefined behaviour aborts with a sanitizer report and a
 * non-zero exit status. The corpus comes from edgezo.targets.fuzz.
 */
#include <stdio.h>
#include <stdlib.h>

#include "device.h"

static unsigned long responses, bad_responses;

static void check_response(const uint8_t *data, size_t n)
{
    responses++;
    if (n < 2 || n > EZ_MAX_FRAME + 8 || data[n - 1] != 0)
        bad_responses++;
    for (size_t i = 0; i + 1 < n; i++)
        if (data[i] == 0)
            bad_responses++;
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ez_device_init(1);
    size_t at = 0, chunk = 1;
    while (at < n) {
        size_t take = n - at < chunk ? n - at : chunk;
        ez_device_feed(buf + at, take, check_response);
        at += take;
        chunk = chunk % 64 + 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int failed = 0;
    for (int i = 1; i < argc; i++)
        failed |= run_file(argv[i]);
    printf("fuzz: %d sessions, %lu responses, %lu malformed responses\n", argc - 1, responses, bad_responses);
    return failed || bad_responses ? 1 : 0;
}
