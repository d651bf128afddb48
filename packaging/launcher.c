/* cni-ignite-launch: the warm-start launcher of the frozen bundle (docs/WORKER.md).
 *
 * A CNI runtime execs a plugin for every call, and a Python plugin pays its interpreter's start and its imports
 * on every exec (~30 ms of a ~50 ms ADD). `cni-ignite worker` is a resident process that has done both once; this
 * launcher hands it the call instead, and the worker forks a child that runs the call exactly as an exec'd plugin
 * would: in the caller's network and mount namespace, root and working directory, with the caller's environment,
 * umask and stdin/stdout/stderr (passed as file descriptors, so the answer goes straight to the runtime). The
 * launcher exits with the child's exit status (or dies of the child's signal).
 *
 * Without a worker, or when the worker declines (another build, a non-root caller), nothing has happened yet and
 * the launcher execs the bundle's own executable, `cni-ignite` beside it, under the same argv[0]: the call then
 * runs as it always did. Any name that is not a plugin goes to that executable too.
 *
 * Protocol (one request, one reply, over a SOCK_STREAM unix socket; version 1):
 *   request: sendmsg with SCM_RIGHTS of 7 fds: stdin, stdout, stderr, /proc/self/ns/net, /proc/self/ns/mnt,
 *            "/" and "." (O_PATH); data: "CIW1" u32 length (native order) then `length` bytes: NUL-terminated
 *            fields build-id, program name, umask (octal), then one field per environment entry.
 *   reply:   2 bytes: 'F' 0 (not taken: run it yourself), 'E' code (the child exited), 'S' signal (killed).
 *            EOF without a reply after the request was taken: the worker died mid-call (its children die
 *            with it): exit 1 with a note on stderr, as a plugin killed mid-call would leave things.
 *
 * Built by packaging/build.sh with -DCNI_IGNITE_BUILD_ID=<the bundle's build id>. Plain C99 + POSIX/Linux. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef CNI_IGNITE_BUILD_ID
#define CNI_IGNITE_BUILD_ID "unversioned"
#endif
#define DEFAULT_SOCKET "/run/cni-ignite/worker.sock"
#define NFDS 7
#define MAX_REQUEST (1 << 20)

extern char **environ;

static const char *const PLUGINS[] = {"ignite-bridge", "ignite-ipam", "loopback", NULL};

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Run the call the ordinary way: exec the bundle's executable (beside this file) under the same argv. */
static void run_directly(char **argv) {
    char exe[PATH_MAX];
    static const char target[] = "cni-ignite";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - sizeof target);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            memcpy(slash + 1, target, sizeof target);
            execv(exe, argv);
        }
    }
    int err = errno;
    /* Nothing of the call ran: answer as a plugin would (a CNI error on stdout), code 5 (an I/O failure). */
    printf("{\"cniVersion\":\"1.1.0\",\"code\":5,\"msg\":\"cni-ignite launcher cannot start the plugin\","
           "\"details\":\"exec %s: %s\"}\n", n > 0 ? "cni-ignite" : "/proc/self/exe", strerror(err));
    fflush(stdout);
    _exit(1);
}

static int is_plugin(const char *name) {
    for (const char *const *p = PLUGINS; *p; p++)
        if (strcmp(*p, name) == 0) return 1;
    return 0;
}

/* Append one NUL-terminated field; 0 when the request would grow past MAX_REQUEST. */
static int put(char *buf, size_t *len, const char *field) {
    size_t n = strlen(field) + 1;
    if (*len + n > MAX_REQUEST) return 0;
    memcpy(buf + *len, field, n);
    *len += n;
    return 1;
}

static int send_all(int s, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(s, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

/* Hand the call to the worker at `path`. Returns only when the worker did not take it (the caller then runs
 * it directly); otherwise exits as the call's child did. */
static void try_worker(const char *path, const char *name) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) return;
    strcpy(addr.sun_path, path);
    /* Non-blocking connect: a worker whose backlog is full (stopped, or swamped) answers EAGAIN at once
     * instead of holding the call; the call then runs directly. */
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return;
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0 || fcntl(s, F_SETFL, 0) != 0) {
        close(s);
        return;
    }

    static char buf[8 + MAX_REQUEST];
    size_t len = 0;
    char *body = buf + 8;
    char mask[16];
    mode_t old = umask(022);
    umask(old);
    snprintf(mask, sizeof mask, "%o", (unsigned)old);
    int ok = put(body, &len, CNI_IGNITE_BUILD_ID) && put(body, &len, name) && put(body, &len, mask);
    for (char **e = environ; ok && *e; e++) ok = put(body, &len, *e);
    if (!ok) {
        close(s);
        return;
    }
    memcpy(buf, "CIW1", 4);
    uint32_t n32 = (uint32_t)len;
    memcpy(buf + 4, &n32, 4);

    int fds[NFDS] = {0, 1, 2, -1, -1, -1, -1};
    fds[3] = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    fds[4] = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    fds[5] = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    fds[6] = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; i < NFDS; i++) ok = ok && fds[i] >= 0 && fcntl(fds[i], F_GETFD) >= 0;
    if (ok) {
        union {
            char space[CMSG_SPACE(sizeof fds)];
            struct cmsghdr align;
        } control;
        memset(&control, 0, sizeof control);
        size_t first = 8 + len < 65536 ? 8 + len : 65536;
        struct iovec iov = {.iov_base = buf, .iov_len = first};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                             .msg_controllen = sizeof control.space};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof fds);
        memcpy(CMSG_DATA(cm), fds, sizeof fds);
        ssize_t w;
        do w = sendmsg(s, &msg, MSG_NOSIGNAL); while (w < 0 && errno == EINTR);
        ok = w > 0 && send_all(s, buf + w, 8 + len - (size_t)w);
    }
    for (int i = 3; i < NFDS; i++)
        if (fds[i] >= 0) close(fds[i]);
    if (!ok) {  /* the worker has not the whole request: it started nothing */
        close(s);
        return;
    }

    unsigned char reply[2];
    size_t got = 0;
    while (got < 2) {
        ssize_t r = read(s, reply + got, 2 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(s);
    if (got == 2 && reply[0] == 'F') return;
    if (got == 2 && reply[0] == 'E') _exit(reply[1]);
    if (got == 2 && reply[0] == 'S') {
        signal(reply[1], SIG_DFL);
        raise(reply[1]);
        _exit(128 + reply[1]);
    }
    fprintf(stderr, "cni-ignite launcher: the worker at %s ended during the call\n", path);
    _exit(1);
}

/* stdin, stdout and stderr are open. A runtime that closed one would have the socket opened below take its
 * number (and the worker's child read its own connection as stdin): such a call is run directly. */
static int std_fds_open(void) {
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0) return 0;
    return 1;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *name = argv[0] ? base_name(argv[0]) : "";
    if (is_plugin(name) && std_fds_open()) {
        const char *path = getenv("CNI_IGNITE_WORKER_SOCKET");
        try_worker(path && *path ? path : DEFAULT_SOCKET, name);
    }
    run_directly(argv);
    return 1;
}
