/*
 * A slow disk for some files: loaded into the broker with LD_PRELOAD, fsync(2) and
 * fdatasync(2) of a file whose path contains one of the comma-separated substrings of
 * $SLOW_FSYNC_MATCH wait $SLOW_FSYNC_MS milliseconds before doing the real thing. Every
 * other file syncs as usual.
 *
 * Built by compat/test_slow_disk.py with: cc -shared -fPIC -o slow_fsync.so slow_fsync.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int is_slow(int fd) {
    const char *match = getenv("SLOW_FSYNC_MATCH");
    if (match == NULL || *match == '\0') {
        return 0;
    }
    char link[64];
    char path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) {
        return 0;
    }
    path[n] = '\0';
    while (*match != '\0') {
        const char *end = strchr(match, ',');
        size_t len = end != NULL ? (size_t)(end - match) : strlen(match);
        char needle[256];
        if (len > 0 && len < sizeof needle) {
            memcpy(needle, match, len);
            needle[len] = '\0';
            if (strstr(path, needle) != NULL) {
                return 1;
            }
        }
        match += len;
        if (*match == ',') {
            match++;
        }
    }
    return 0;
}

static void wait_a_while(void) {
    const char *text = getenv("SLOW_FSYNC_MS");
    long ms = text != NULL ? atol(text) : 1000;
    struct timespec delay = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&delay, &delay) != 0) {
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    if (is_slow(fd)) {
        wait_a_while();
    }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    if (is_slow(fd)) {
        wait_a_while();
    }
    return real(fd);
}
