/* Load generator for `lanner bench sensor`: a tight loop of one kind of syscall work, optionally
 * paced to a target rate, printing operations done and elapsed time. Native code so that the
 * figures measure the kernel path and the sensor, not an interpreter.
 *
 *   loadgen open SECONDS [RATE]     open()+close() of a temporary file
 *   loadgen exec SECONDS [RATE]     fork + execve(/bin/true) + wait
 *   loadgen connect SECONDS         TCP connect()+close() to a loopback listener it forks
 *   loadgen shadow SECONDS [RATE]   open()+close() of /etc/shadow (a sensitive-file read)
 *   loadgen write SECONDS [RATE]    open(O_WRONLY)+close() of a temporary file
 *   loadgen open|write SECONDS RATE FILE
 *                                   the same on FILE, an existing file (kept), instead of a
 *                                   temporary one; RATE 0 is as fast as possible
 * Output: "<ops> <seconds>"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: loadgen open|write|exec|connect|shadow SECONDS [RATE]\n"
                        "       loadgen open|write SECONDS RATE FILE\n");
        return 2;
    }
    const char *mode = argv[1];
    double secs = atof(argv[2]);
    double rate = argc > 3 ? atof(argv[3]) : 0;
    const char *file = argc > 4 && (!strcmp(mode, "open") || !strcmp(mode, "write")) ? argv[4] : 0;
    char path[] = "/tmp/lanner-loadgen-XXXXXX";
    if (!file) {
        int tmp = mkstemp(path);
        if (tmp < 0) { perror("mkstemp"); return 1; }
        close(tmp);
    } else {
        int fd = open(file, O_RDONLY);  /* it must exist: the loop would count failed opens */
        if (fd < 0) { perror(file); return 1; }
        close(fd);
    }
    const char *open_path = !strcmp(mode, "shadow") ? "/etc/shadow" : file ? file : path;
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    pid_t acceptor = 0;
    if (!strcmp(mode, "connect")) {
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        socklen_t len = sizeof(sa);
        if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4096) < 0
            || getsockname(ls, (struct sockaddr *)&sa, &len) < 0) {
            perror("listen");
            return 1;
        }
        acceptor = fork();
        if (acceptor == 0) {
            for (;;) {
                int c = accept(ls, 0, 0);
                if (c >= 0) close(c);
            }
        }
        close(ls);
    }

    long ops = 0;
    double start = now(), end = start + secs, t = start;
    while (t < end) {
        for (int i = 0; i < 64; i++) {
            if (!strcmp(mode, "open") || !strcmp(mode, "shadow")) {
                int fd = open(open_path, O_RDONLY);
                if (fd >= 0) close(fd);
            } else if (!strcmp(mode, "write")) {
                int fd = open(open_path, O_WRONLY);
                if (fd >= 0) close(fd);
            } else if (!strcmp(mode, "exec")) {
                pid_t pid = fork();
                if (pid == 0) {
                    execl("/bin/true", "true", (char *)0);
                    _exit(127);
                }
                waitpid(pid, 0, 0);
            } else if (!strcmp(mode, "connect")) {
                int s = socket(AF_INET, SOCK_STREAM, 0);
                if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) { perror("connect"); return 1; }
                close(s);
            } else {
                fprintf(stderr, "unknown mode %s\n", mode);
                return 2;
            }
            ops++;
        }
        t = now();
        if (rate > 0) {
            double due = start + ops / rate;  /* pace: sleep until this batch is due */
            if (due > t) {
                struct timespec ts = { (time_t)(due - t), (long)((due - t - (time_t)(due - t)) * 1e9) };
                nanosleep(&ts, 0);
                t = now();
            }
        }
    }
    if (!file)
        unlink(path);
    if (acceptor > 0) {
        kill(acceptor, SIGKILL);
        waitpid(acceptor, 0, 0);
    }
    printf("%ld %.6f\n", ops, t - start);
    return 0;
}
