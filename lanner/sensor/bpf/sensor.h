/* Record layout shared by the kernel programs and lanner/sensor/records.py (which mirrors it
 * with struct formats; keep the two in step). Little-endian, x86_64. */
#ifndef LANNER_SENSOR_H
#define LANNER_SENSOR_H

enum rec_kind { REC_SYSCALL = 1, REC_FORK = 2, REC_EXIT = 3 };

/* Every record starts with this header; blobs follow, each `struct blob` + len bytes, padded to 8. */
struct rec_hdr {
    __u64 ts;           /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    __u64 cgroup_id;    /* cgroup2 id of the task */
    __u32 kind;
    __u32 len;          /* whole record, header included */
    __u32 tid, pid;     /* host ids */
    __u32 ppid;         /* real parent's tgid */
    __u32 vtid, vpid;   /* ids in the task's own pid namespace */
    __u32 uid, gid;     /* effective */
    __u32 loginuid;
    __s32 nr;           /* syscall number; -1 for fork/exit */
    __u32 nblobs;
    __s64 ret;          /* syscall return; child pid for fork; exit code for exit */
    __u64 args[6];      /* raw syscall arguments (fork: child start_time, clone flags) */
    char comm[16];
};

enum blob_tag {
    B_PATH0 = 1,     /* user path argument #0 as passed */
    B_PATH1 = 2,     /* user path argument #1 as passed */
    B_BASE0 = 3,     /* kernel path of the directory a relative PATH0 is relative to */
    B_BASE1 = 4,
    B_STR0 = 5,      /* other user strings (symlink target, memfd name, mount dev/type, module args) */
    B_STR1 = 6,
    B_SOCKADDR = 7,  /* user sockaddr (connect/bind/sendto/sendmsg destination) */
    B_FD = 8,        /* struct fd_desc of the event's fd */
    B_FDPATH = 9,    /* kernel path of that fd's file */
    B_EXEPATH = 10,  /* kernel path of the new executable */
    B_CWD = 11,      /* kernel path of the working directory */
    B_ARGV = 12,     /* NUL-separated argv of the new image */
    B_ENV = 13,      /* NUL-separated environment */
    B_FILENAME = 14, /* execve filename as passed */
    B_EXEC = 15,     /* struct exec_info */
    B_DATA = 16,     /* first bytes of a send buffer */
};

struct blob {
    __u16 tag;
    __u16 len;
    __u32 pad;
};

struct fd_desc {
    __s32 fd;
    __u32 mode;         /* inode i_mode (S_IFMT bits give the kind) */
    __u32 dev;          /* s_dev, kernel encoding (major << 20 | minor) */
    __u32 magic;        /* superblock magic: sockfs, pipefs, anon_inodefs... */
    __u64 ino;
    __u32 flags;        /* f_flags */
    __u16 family;       /* sockets: address family */
    __u16 sotype;       /* SOCK_STREAM, SOCK_DGRAM, SOCK_RAW... */
    __u16 proto;        /* IPPROTO_* */
    __u16 lport, rport; /* host byte order */
    __u16 sk_state;
    __u8 laddr[16], raddr[16];
    __u64 sk;           /* socket identity (kernel address), for unix socket names */
    __u64 peer;
};

struct exec_info {
    __u32 tty;          /* encoded device of the controlling terminal; 0 none */
    __u32 sid, vpgid;
    __u32 exe_mode, exe_uid, exe_gid;
    __u32 exe_dev, exe_magic;
    __u64 exe_ino;
    __u64 exe_ctime, exe_mtime;   /* ns */
    __u64 cap_inheritable, cap_permitted, cap_effective;
    __u64 start_time;             /* task start, CLOCK_MONOTONIC ns */
    __u32 exe_nlink;
    __u32 ovl;                    /* overlayfs: 1 the file is in the upper layer, 2 only in a lower one */
};

/* What user space says about one syscall number (the table lives in records.py). */
enum spec_flags {
    S_ENABLED = 1 << 0,
    S_FD_RET = 1 << 1,      /* the return value is a new fd: describe it */
    S_FD_ARG = 1 << 2,      /* args[fd_arg] is the fd used: describe it */
    S_FD_PATH = 1 << 3,     /* ...and walk its path */
    S_SOCKADDR = 1 << 4,    /* args[addr_arg] is a struct sockaddr *, args[addr_arg+1] its length */
    S_MSGHDR = 1 << 5,      /* args[addr_arg] is a struct msghdr * holding the destination */
    S_EXEC = 1 << 6,        /* execve/execveat */
    S_CWD = 1 << 7,         /* emit the cwd after the call (chdir/fchdir) */
    S_PREFILTER = 1 << 8,   /* drop opens no rule can match (see prefilter.py) */
    S_SKIP_TCP = 1 << 9,    /* drop calls on TCP sockets: no rule can match them (see prefilter.py) */
};

#define FLAGS_FROM_OPEN_HOW 7   /* sc_spec.flags_arg: the flags are the first field of struct open_how */

struct sc_spec {
    __u16 flags;
    __u8 fd_arg;
    __u8 addr_arg;
    __u8 path_arg[2];       /* arg index + 1, 0 = none */
    __u8 dirfd_arg[2];      /* arg index + 1 of the dirfd of each path, 0 = cwd */
    __u8 str_arg[2];        /* arg index + 1, 0 = none */
    __u8 flags_arg;         /* arg index + 1 of the open flags (S_PREFILTER), or FLAGS_FROM_OPEN_HOW */
    __u8 pad;
    __u32 flags_any;        /* S_PREFILTER: send when the open flags have one of these bits */
};

#define PREFILTER_PATH_MAX 256

struct path_key {           /* prefilter trie key: exact paths end with their NUL, prefixes do not */
    __u32 prefixlen;        /* in bits */
    __u8 data[PREFILTER_PATH_MAX];
};

#define MAX_SYSCALLS 512

/* Syscalls with an exit tracepoint program, by tracepoint name (syscalls.py's `tracepoint`). */
#define LANNER_SYSCALLS(X) \
    X(open) X(openat) X(openat2) X(creat) X(execve) X(execveat) X(clone) X(fork) X(vfork) X(clone3) \
    X(connect) X(accept) X(accept4) X(bind) X(listen) X(socket) X(sendto) X(sendmsg) X(recvfrom) \
    X(recvmsg) X(setuid) X(setgid) X(setreuid) X(setregid) X(setresuid) X(setresgid) X(ptrace) \
    X(unshare) X(setns) X(mount) X(umount) X(chmod) X(fchmod) X(fchmodat) X(fchmodat2) X(rename) \
    X(renameat) X(renameat2) X(unlink) X(unlinkat) X(link) X(linkat) X(symlink) X(symlinkat) X(mkdir) \
    X(mkdirat) X(rmdir) X(memfd_create) X(init_module) X(finit_module) X(bpf) X(dup) X(dup2) X(dup3) \
    X(userfaultfd) X(chdir) X(fchdir) X(kill) X(capset) X(prctl)

#endif
