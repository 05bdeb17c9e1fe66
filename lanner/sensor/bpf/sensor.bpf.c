// SPDX-License-Identifier: GPL-2.0
/* Lanner's syscall sensor.
 *
 * One tp_btf program on sys_exit serves every syscall: user space fills `specs` with what to
 * capture for each syscall number the loaded rules need (the arguments are still in the saved
 * registers at exit), so nothing else pays more than a map lookup. Process creation and exit come
 * from the sched tracepoints; execve's filename is stashed at entry because a successful exec
 * replaces the registers and the memory it pointed into.
 *
 * Records are built in a per-CPU scratch buffer and copied to the ring buffer in one output
 * call; a failed output is counted per CPU, never lost silently.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "sensor.h"

char LICENSE[] SEC("license") = "GPL";

#define REC_MASK 16383          /* blob offsets are masked with this... */
#define REC_AREA 32768          /* ...into an area big enough for one more 4 KiB write */
#define REC_LIMIT 12288         /* no new blob starts past this offset */
#define STR_MAX 4096
#define PATH_AREA 4096
#define PATH_DEPTH 48
#define ARGS_MAX 4096  /* blobs copied by length hold at most ARGS_MAX - 1 bytes */
#define SOCKADDR_MAX 128
#define AT_FDCWD -100

/* Mask in an instruction the compiler cannot drop, so the verifier sees the bound. */
#define BOUND(x, mask) asm volatile("%[v] &= " #mask : [v] "+r"(x))

#define S_IFMT 00170000
#define S_IFREG 0100000
#define S_IFDIR 0040000
#define S_IFSOCK 0140000

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 16 << 20);  /* user space resizes before load */
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_SYSCALLS);
    __type(key, __u32);
    __type(value, struct sc_spec);
} specs SEC(".maps");

/* Exact paths and path prefixes of the opens the rules can match (S_PREFILTER). */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 4096);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct path_key);
    __type(value, __u8);
} prefilter_paths SEC(".maps");

/* Per-CPU counters: 0 records sent, 1 records dropped (ring buffer full), 2 paths truncated,
 * 3 opens filtered out because no rule can match them (deliberate, not loss). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

struct scratch {
    __u8 rec[REC_AREA];
    __u8 path[PATH_AREA + 256];
    struct path_key key;
};

/* One slot per CPU (a per-CPU array value is limited to 32 KiB); user space sizes it. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} scratch_map SEC(".maps");

struct exec_stash {
    __u32 len;
    char filename[STR_MAX];
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct exec_stash);
} exec_filenames SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exec_stash);
} stash_init SEC(".maps");

/* Set by user space before load. */
const volatile __u32 agent_tgid = 0;
/* Force a wake-up of the reader only once this much is pending (see KERNEL.md §6). */
const volatile __u64 wakeup_bytes = 64 << 10;

static __always_inline void count(__u32 idx)
{
    __u64 *v = bpf_map_lookup_elem(&stats, &idx);
    if (v)
        __sync_fetch_and_add(v, 1);
}

/* Wake the reader only when this record makes the pending data cross wakeup_bytes. A reader that
 * lags stays above the threshold; waking it on every record would cost as much as plain
 * per-record wake-ups (the reader polls with a short timeout for what stays below it). */
static __always_inline __u64 wake_flags(__u32 len)
{
    __u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
    return avail < wakeup_bytes && avail + len >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline __u32 encode_dev(__u32 kdev)
{
    /* kernel dev_t (major << 20 | minor) as user space sees it in st_dev (new_encode_dev) */
    __u32 major = kdev >> 20, minor = kdev & 0xfffff;
    return (minor & 0xff) | (major << 8) | ((minor & ~0xffU) << 12);
}

/* BTF pointers (tp_btf arguments, bpf_get_current_task_btf(), core_cast) are read with plain
 * loads, which the verifier turns into fault-safe direct reads; that is several times cheaper
 * than a bpf_probe_read_kernel() call per field, and this runs for every captured syscall. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define core_cast(ptr, type) ((type *)bpf_rdonly_cast((void *)(ptr), bpf_core_type_id_kernel(type)))

static __always_inline __u32 task_vnr(struct pid *pid)
{
    unsigned int level = pid->level;
    if (level == 0)
        return pid->numbers[0].nr;
    return BPF_CORE_READ(pid, numbers[level].nr);  /* variable index: one probe read */
}

static __always_inline void fill_header(struct rec_hdr *h, struct task_struct *task, __u32 kind)
{
    __u64 id = bpf_get_current_pid_tgid();
    h->ts = bpf_ktime_get_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->kind = kind;
    h->tid = (__u32)id;
    h->pid = id >> 32;
    h->ppid = task->real_parent->tgid;
    h->vtid = task_vnr(task->thread_pid);
    h->vpid = task_vnr(task->group_leader->thread_pid);
    const struct cred *cred = task->cred;
    h->uid = cred->euid.val;
    h->gid = cred->egid.val;
    h->loginuid = task->loginuid.val;
    h->nblobs = 0;
    bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline __u8 *rec_at(struct scratch *s, __u32 off)
{
    BOUND(off, 16383);  /* REC_MASK */
    return &s->rec[off];
}

/* Blob writers return the new offset. Offsets stay below REC_MASK + 1 + (largest write), which
 * REC_AREA covers. */
static __always_inline __u32 blob_begin(struct scratch *s, __u32 off, __u16 tag, __u16 len)
{
    struct blob *b = (struct blob *)rec_at(s, off);
    b->tag = tag;
    b->len = len;
    b->pad = 0;
    ((struct rec_hdr *)s->rec)->nblobs++;
    return (off + sizeof(struct blob) + len + 7) & ~7U;
}

static __always_inline __u32 put_user_str(struct scratch *s, __u32 off, __u16 tag, const void *ptr)
{
    if (!ptr || off > REC_LIMIT)
        return off;
    long n = bpf_probe_read_user_str(rec_at(s, off + sizeof(struct blob)), STR_MAX, ptr);
    if (n <= 0)
        return off;
    return blob_begin(s, off, tag, (__u16)(n - 1));  /* drop the NUL */
}

static __always_inline __u32 put_user_bytes(struct scratch *s, __u32 off, __u16 tag, const void *ptr,
                                            __u32 len, __u32 max)
{
    if (!ptr || off > REC_LIMIT)
        return off;
    if (len > max)
        len = max;
    BOUND(len, 4095);
    if (bpf_probe_read_user(rec_at(s, off + sizeof(struct blob)), len, ptr))
        return off;
    return blob_begin(s, off, tag, (__u16)len);
}

static __always_inline __u32 put_kernel_bytes(struct scratch *s, __u32 off, __u16 tag, const void *ptr,
                                              __u32 len)
{
    if (off > REC_LIMIT)
        return off;
    if (len > ARGS_MAX - 1)
        len = ARGS_MAX - 1;
    BOUND(len, 4095);
    if (bpf_probe_read_kernel(rec_at(s, off + sizeof(struct blob)), len, ptr))
        return off;
    return blob_begin(s, off, tag, (__u16)len);
}

/* Path of (dentry, mnt) as the task sees it: walk to its root, crossing mount points, the way
 * the kernel's d_path does. Components are written right to left into s->path. The walk runs
 * under bpf_loop so the verifier checks one step, not every possible path through 48 steps. */
struct walk {
    struct dentry *dentry;
    struct vfsmount *vfsmnt;
    struct mount *mnt;
    struct dentry *root_dentry;
    struct vfsmount *root_mnt;
    __u32 pos;
    __u32 truncated;
};

static __always_inline void prepend_name(struct scratch *s, struct walk *w, struct dentry *d)
{
    __u32 len = BPF_CORE_READ(d, d_name.len) & 255;
    if (w->pos < len + 2) {
        w->truncated = 1;
        return;
    }
    const unsigned char *name = BPF_CORE_READ(d, d_name.name);
    w->pos -= len;
    bpf_probe_read_kernel(&s->path[w->pos & (PATH_AREA - 1)], len, name);
    w->pos -= 1;
    s->path[w->pos & (PATH_AREA - 1)] = '/';
}

static __always_inline struct scratch *scratch_get(void)
{
    __u32 cpu = bpf_get_smp_processor_id();
    return bpf_map_lookup_elem(&scratch_map, &cpu);
}

static long walk_step(__u64 i, struct walk *w)
{
    struct scratch *s = scratch_get();
    if (!s)
        return 1;
    /* locals, not w->: BPF_CORE_READ would relocate struct walk itself */
    struct dentry *dentry = w->dentry;
    struct vfsmount *vfsmnt = w->vfsmnt;
    struct mount *mnt = w->mnt;
    if (dentry == w->root_dentry && vfsmnt == w->root_mnt)
        return 1;
    if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
        struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
        if (parent == mnt)
            return 1;
        w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
        w->mnt = parent;
        w->vfsmnt = &parent->mnt;
        return 0;
    }
    struct dentry *up = BPF_CORE_READ(dentry, d_parent);
    if (up == dentry) {
        /* root of a filesystem not mounted in this tree (pipefs, anon inodes, shm): its name */
        if (w->pos == PATH_AREA)
            prepend_name(s, w, dentry);
        return 1;
    }
    prepend_name(s, w, dentry);
    if (w->truncated)
        return 1;
    w->dentry = up;
    return 0;
}

/* Global functions (not static) are verified once, not once per call site. */
__noinline __u32 put_path(__u32 off, __u16 tag, __u64 dentry_addr, __u64 vfsmnt_addr)
{
    struct scratch *s = scratch_get();
    struct dentry *dentry = (struct dentry *)dentry_addr;
    struct vfsmount *vfsmnt = (struct vfsmount *)vfsmnt_addr;
    if (!s || !dentry || !vfsmnt || off > REC_LIMIT)
        return off;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct walk w = {
        .dentry = dentry,
        .vfsmnt = vfsmnt,
        .mnt = container_of(vfsmnt, struct mount, mnt),
        .root_dentry = BPF_CORE_READ(task, fs, root.dentry),
        .root_mnt = BPF_CORE_READ(task, fs, root.mnt),
        .pos = PATH_AREA,
    };
    bpf_loop(PATH_DEPTH, walk_step, &w, 0);
    if (w.truncated)
        count(2);
    __u32 pos = w.pos;
    if (pos == PATH_AREA) {
        pos -= 1;
        s->path[pos & (PATH_AREA - 1)] = '/';
    }
    __u32 len = PATH_AREA - pos;
    return put_kernel_bytes(s, off, tag, &s->path[pos & (PATH_AREA - 1)], len & (PATH_AREA - 1));
}

static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
    if (fd < 0)
        return 0;
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    unsigned int max = BPF_CORE_READ(fdt, max_fds);
    if (fd >= max)
        return 0;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *f = 0;
    bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
    return f;
}

static __always_inline __u32 put_fd(struct scratch *s, __u32 off, struct task_struct *task, long fd,
                                    int with_path)
{
    struct file *fp = fd_file(task, fd);
    if (!fp || off > REC_LIMIT)
        return off;
    struct file *f = core_cast(fp, struct file);
    struct fd_desc *d = (struct fd_desc *)rec_at(s, off + sizeof(struct blob));
    __builtin_memset(d, 0, sizeof(*d));
    struct inode *inode = f->f_inode;
    struct super_block *sb = inode->i_sb;
    d->fd = fd;
    d->mode = inode->i_mode;
    d->dev = encode_dev(sb->s_dev);
    d->magic = sb->s_magic;
    d->ino = inode->i_ino;
    d->flags = f->f_flags;
    if ((d->mode & S_IFMT) == S_IFSOCK) {
        struct socket *sock = core_cast(f->private_data, struct socket);
        struct sock *sk = sock->sk;
        d->sk = (__u64)sk;
        d->sotype = sk->sk_type;
        d->proto = sk->sk_protocol;
        d->family = sk->__sk_common.skc_family;
        d->sk_state = sk->__sk_common.skc_state;
        d->lport = sk->__sk_common.skc_num;
        d->rport = bpf_ntohs(sk->__sk_common.skc_dport);
        if (d->family == 2) {
            __u32 a = sk->__sk_common.skc_rcv_saddr;
            __builtin_memcpy(d->laddr, &a, 4);
            a = sk->__sk_common.skc_daddr;
            __builtin_memcpy(d->raddr, &a, 4);
        } else if (d->family == 10) {
            BPF_CORE_READ_INTO(&d->laddr, sk, __sk_common.skc_v6_rcv_saddr);
            BPF_CORE_READ_INTO(&d->raddr, sk, __sk_common.skc_v6_daddr);
        } else if (d->family == 1) {
            struct unix_sock *us = core_cast(sk, struct unix_sock);
            d->peer = (__u64)us->peer;
        }
    }
    off = blob_begin(s, off, B_FD, sizeof(struct fd_desc));
    __u32 kind = d->mode & S_IFMT;
    if (with_path && (kind == S_IFREG || kind == S_IFDIR))
        off = put_path(off, B_FDPATH, (__u64)BPF_CORE_READ(f, f_path.dentry), (__u64)BPF_CORE_READ(f, f_path.mnt));
    return off;
}

/* The directory a relative path argument is resolved against: the dirfd's file or the cwd. */
static __always_inline __u32 put_base(__u32 off, __u16 tag, struct task_struct *task, long dirfd)
{
    if (dirfd == AT_FDCWD || dirfd == 0x7fffffff) {
        return put_path(off, tag, (__u64)BPF_CORE_READ(task, fs, pwd.dentry), (__u64)BPF_CORE_READ(task, fs, pwd.mnt));
    }
    struct file *f = fd_file(task, dirfd);
    if (!f)
        return off;
    return put_path(off, tag, (__u64)BPF_CORE_READ(f, f_path.dentry), (__u64)BPF_CORE_READ(f, f_path.mnt));
}


/* A path argument, and its base when it is relative. */
__noinline __u32 put_path_arg(__u32 off, __u64 uptr, long dirfd, __u16 tag, __u16 base_tag)
{
    struct scratch *s = scratch_get();
    if (!s)
        return off;
    __u32 start = off;
    off = put_user_str(s, off, tag, (const void *)uptr);
    if (off == start)
        return off;
    char first = *rec_at(s, start + sizeof(struct blob));
    if (first == '/')
        return off;
    return put_base(off, base_tag, (struct task_struct *)bpf_get_current_task(), dirfd);
}

static __always_inline long dirfd_of(struct rec_hdr *h, __u8 dirfd_arg)
{
    return dirfd_arg && dirfd_arg <= 6 ? (long)(int)h->args[(dirfd_arg - 1) & 7] : AT_FDCWD;
}

static __always_inline __u32 put_sockaddr(struct scratch *s, __u32 off, struct rec_hdr *h, const struct sc_spec *sp)
{
    __u8 a = sp->addr_arg;
    if (!a || a > 5)
        return off;
    const void *ptr = (const void *)h->args[(a - 1) & 7];
    __u32 len = (__u32)h->args[a & 7];
    if (sp->flags & S_MSGHDR) {
        struct user_msghdr mh = {};
        if (!ptr || bpf_probe_read_user(&mh, sizeof(mh), ptr))
            return off;
        ptr = mh.msg_name;
        len = mh.msg_namelen;
    }
    if (!ptr || !len)
        return off;
    return put_user_bytes(s, off, B_SOCKADDR, ptr, len, SOCKADDR_MAX);
}

__noinline __u32 put_exec(__u32 off, __u32 tid)
{
    struct scratch *s = scratch_get();
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    if (!s)
        return off;
    struct exec_stash *st = bpf_map_lookup_elem(&exec_filenames, &tid);
    if (st) {
        off = put_kernel_bytes(s, off, B_FILENAME, st->filename, st->len & (STR_MAX - 1));
        bpf_map_delete_elem(&exec_filenames, &tid);
    }
    struct mm_struct *mm = BPF_CORE_READ(task, mm);
    unsigned long a0 = BPF_CORE_READ(mm, arg_start), a1 = BPF_CORE_READ(mm, arg_end);
    off = put_user_bytes(s, off, B_ARGV, (const void *)a0, a1 - a0, ARGS_MAX);
    unsigned long e0 = BPF_CORE_READ(mm, env_start), e1 = BPF_CORE_READ(mm, env_end);
    off = put_user_bytes(s, off, B_ENV, (const void *)e0, e1 - e0, ARGS_MAX);
    struct file *exe = BPF_CORE_READ(mm, exe_file);
    off = put_path(off, B_EXEPATH, (__u64)BPF_CORE_READ(exe, f_path.dentry), (__u64)BPF_CORE_READ(exe, f_path.mnt));
    off = put_path(off, B_CWD, (__u64)BPF_CORE_READ(task, fs, pwd.dentry), (__u64)BPF_CORE_READ(task, fs, pwd.mnt));
    if (off > REC_LIMIT)
        return off;

    struct exec_info *x = (struct exec_info *)rec_at(s, off + sizeof(struct blob));
    __builtin_memset(x, 0, sizeof(*x));
    struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
    if (tty) {
        __u32 major = BPF_CORE_READ(tty, driver, major);
        __u32 minor = BPF_CORE_READ(tty, driver, minor_start) + BPF_CORE_READ(tty, index);
        x->tty = encode_dev((major << 20) | minor);
    }
    x->sid = BPF_CORE_READ(task, signal, pids[PIDTYPE_SID], numbers[0].nr);
    x->vpgid = task_vnr(core_cast(BPF_CORE_READ(task, signal, pids[PIDTYPE_PGID]), struct pid));
    struct inode *inode = BPF_CORE_READ(exe, f_inode);
    x->exe_mode = BPF_CORE_READ(inode, i_mode);
    x->exe_uid = BPF_CORE_READ(inode, i_uid.val);
    x->exe_gid = BPF_CORE_READ(inode, i_gid.val);
    x->exe_dev = encode_dev(BPF_CORE_READ(inode, i_sb, s_dev));
    x->exe_magic = BPF_CORE_READ(inode, i_sb, s_magic);
    x->exe_ino = BPF_CORE_READ(inode, i_ino);
    x->exe_nlink = BPF_CORE_READ(inode, __i_nlink);
    if (x->exe_magic == 0x794c7630 /* OVERLAYFS_SUPER_MAGIC */ && bpf_core_type_exists(struct ovl_inode)) {
        /* a file written (or copied up) after the container started lives in the upper layer */
        struct ovl_inode *oi = container_of(inode, struct ovl_inode, vfs_inode);
        x->ovl = BPF_CORE_READ(oi, __upperdentry) ? 1 : 2;
    }
    if (bpf_core_field_exists(inode->i_ctime_sec)) {
        x->exe_ctime = BPF_CORE_READ(inode, i_ctime_sec) * 1000000000ULL + BPF_CORE_READ(inode, i_ctime_nsec);
        x->exe_mtime = BPF_CORE_READ(inode, i_mtime_sec) * 1000000000ULL + BPF_CORE_READ(inode, i_mtime_nsec);
    }
    const struct cred *cred = BPF_CORE_READ(task, cred);
    x->cap_inheritable = BPF_CORE_READ(cred, cap_inheritable.val);
    x->cap_permitted = BPF_CORE_READ(cred, cap_permitted.val);
    x->cap_effective = BPF_CORE_READ(cred, cap_effective.val);
    x->start_time = BPF_CORE_READ(task, group_leader, start_time);
    return blob_begin(s, off, B_EXEC, sizeof(struct exec_info));
}

static __always_inline void send(struct scratch *s, __u32 off)
{
    struct rec_hdr *h = (struct rec_hdr *)s->rec;
    __u32 len = off;
    if (len > REC_AREA - 1)
        len = REC_AREA - 1;
    BOUND(len, 32767);  /* REC_AREA - 1 */
    h->len = len;
    if (bpf_ringbuf_output(&events, s->rec, len, wake_flags(len)))
        count(1);
    else
        count(0);
}

/* --- prefilter -------------------------------------------------------------------------------- */

#define ONES 0x0101010101010101ULL
#define LOW7 0x7f7f7f7f7f7f7f7fULL

static __always_inline __u64 zero_bytes(__u64 v)
{
    /* high bit set in each byte of v that is zero (exact, no false positives) */
    return ~(((v & LOW7) + LOW7) | v | LOW7);
}

struct scan {
    __u32 start;   /* offset of the string in s->rec */
    __u32 len;
    __u32 unclean;
};

/* One 8-byte step: does a '/' sit before a '.', a '/' or the end of the string? Such paths
 * ('//', '/.', '/..', a trailing '/') are normalised by Falco before comparing, so the kernel
 * cannot judge them and sends them. */
static long scan_step(__u64 i, struct scan *sc)
{
    struct scratch *s = scratch_get();
    if (!s)
        return 1;
    __u32 at = sc->start + (__u32)i * 8;
    __u64 w = *(__u64 *)rec_at(s, at);
    __u64 next = *rec_at(s, at + 8);
    __u64 after = (w >> 8) | (next << 56);
    __u64 slash = zero_bytes(w ^ (ONES * '/'));
    __u64 bad_next = zero_bytes(after ^ (ONES * '.')) | zero_bytes(after ^ (ONES * '/')) | zero_bytes(after);
    __u32 left = sc->len - (__u32)i * 8;  /* bytes of the string in this word */
    if (left < 8)
        slash &= (1ULL << (left * 8)) - 1;
    if (slash & bad_next) {
        sc->unclean = 1;
        return 1;
    }
    return left <= 8;
}

/* 1 when the open at blob offset `start` must be sent: its flags have a wanted bit, its path is
 * relative or not normalised, or the path is (under) one the rules name. */
__noinline int prefilter_pass(__u32 start, __u64 open_flags, __u32 flags_any)
{
    struct scratch *s = scratch_get();
    if (!s)
        return 1;
    if (open_flags & flags_any)
        return 1;
    struct blob *b = (struct blob *)rec_at(s, start);
    if (b->tag != B_PATH0)
        return 1;
    __u32 len = b->len;
    __u32 str = start + sizeof(struct blob);
    if (len == 0 || len >= PREFILTER_PATH_MAX || *rec_at(s, str) != '/')
        return 1;
    struct scan sc = { .start = str, .len = len };
    bpf_loop((len + 7) / 8, scan_step, &sc, 0);
    if (sc.unclean)
        return 1;
    __u32 n = len + 1;  /* with the NUL: exact entries match only a whole path */
    BOUND(n, 255);
    if (n == 0)
        return 1;
    s->key.prefixlen = n * 8;
    if (bpf_probe_read_kernel(s->key.data, n, rec_at(s, str)))
        return 1;
    return bpf_map_lookup_elem(&prefilter_paths, &s->key) != 0;
}

static __always_inline __u64 open_flags_of(struct rec_hdr *h, __u8 flags_arg)
{
    if (flags_arg == FLAGS_FROM_OPEN_HOW) {
        __u64 f = 0;
        bpf_probe_read_user(&f, sizeof(f), (const void *)h->args[2]);
        return f;
    }
    if (flags_arg && flags_arg <= 6)
        return h->args[(flags_arg - 1) & 7];
    return 0;
}

static __always_inline __u64 reg_arg(struct pt_regs *regs, __u8 i)
{
    switch (i) {
    case 1: return regs->di;
    case 2: return regs->si;
    case 3: return regs->dx;
    case 4: return regs->r10;
    case 5: return regs->r8;
    default: return regs->r9;
    }
}

/* Is the fd in argument `fd_arg` (index + 1) a TCP socket? */
static __always_inline int on_tcp_socket(struct task_struct *task, struct pt_regs *regs, __u8 fd_arg)
{
    struct file *fp = fd_file(task, (long)(int)reg_arg(regs, fd_arg));
    if (!fp)
        return 0;
    struct file *f = core_cast(fp, struct file);
    if ((f->f_inode->i_mode & S_IFMT) != S_IFSOCK)
        return 0;
    struct socket *sock = core_cast(f->private_data, struct socket);
    return sock->sk->sk_protocol == 6;  /* IPPROTO_TCP */
}

/* The capture of one syscall exit, shared by the per-syscall tracepoint programs and the raw
 * sys_exit program. */
static __always_inline int handle_exit(__u32 nr, long ret, struct pt_regs *regs)
{
    __u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) == agent_tgid)
        return 0;
    if (nr >= MAX_SYSCALLS)
        return 0;
    const struct sc_spec *sp = bpf_map_lookup_elem(&specs, &nr);
    if (!sp || !(sp->flags & S_ENABLED))
        return 0;
    struct task_struct *task = bpf_get_current_task_btf();
    if ((sp->flags & S_SKIP_TCP) && sp->fd_arg && sp->fd_arg <= 6 && on_tcp_socket(task, regs, sp->fd_arg)) {
        count(3);  /* before any copying: a busy TCP server sends all the time */
        return 0;
    }
    struct scratch *s = scratch_get();
    if (!s)
        return 0;
    struct rec_hdr *h = (struct rec_hdr *)s->rec;
    fill_header(h, task, REC_SYSCALL);
    h->nr = nr;
    h->ret = ret;
    /* the syscall's arguments are still in the registers saved at entry */
    h->args[0] = regs->di;
    h->args[1] = regs->si;
    h->args[2] = regs->dx;
    h->args[3] = regs->r10;
    h->args[4] = regs->r8;
    h->args[5] = regs->r9;
    __u32 off = sizeof(struct rec_hdr);
    __u16 flags = sp->flags;

    if ((flags & S_EXEC) && ret == 0) {
        off = put_exec(off, (__u32)id);
        s = scratch_get();
        if (!s)
            return 0;
        send(s, off);
        return 0;
    }
    if (flags & S_EXEC) {
        __u32 tid = (__u32)id;
        bpf_map_delete_elem(&exec_filenames, &tid);
    }
    struct sc_spec spec = *sp;
    if (spec.path_arg[0] && spec.path_arg[0] <= 6) {
        __u32 start = off;
        off = put_path_arg(off, h->args[(spec.path_arg[0] - 1) & 7], dirfd_of(h, spec.dirfd_arg[0]), B_PATH0, B_BASE0);
        if ((flags & S_PREFILTER) && !prefilter_pass(start, open_flags_of(h, spec.flags_arg), spec.flags_any)) {
            count(3);
            return 0;
        }
    }
    if (spec.path_arg[1] && spec.path_arg[1] <= 6)
        off = put_path_arg(off, h->args[(spec.path_arg[1] - 1) & 7], dirfd_of(h, spec.dirfd_arg[1]), B_PATH1, B_BASE1);
    s = scratch_get();
    if (!s)
        return 0;
    h = (struct rec_hdr *)s->rec;
    if (spec.str_arg[0] && spec.str_arg[0] <= 6)
        off = put_user_str(s, off, B_STR0, (const void *)h->args[(spec.str_arg[0] - 1) & 7]);
    if (spec.str_arg[1] && spec.str_arg[1] <= 6)
        off = put_user_str(s, off, B_STR1, (const void *)h->args[(spec.str_arg[1] - 1) & 7]);
    if (flags & (S_SOCKADDR | S_MSGHDR))
        off = put_sockaddr(s, off, h, &spec);
    long fd = -1;
    if ((flags & S_FD_RET) && ret >= 0)
        fd = ret;
    else if ((flags & S_FD_ARG) && spec.fd_arg && spec.fd_arg <= 6)
        fd = (long)(int)h->args[(spec.fd_arg - 1) & 7];
    if (fd >= 0)
        off = put_fd(s, off, task, fd, flags & S_FD_PATH);
    if ((flags & S_CWD) && ret == 0)
        off = put_path(off, B_CWD, (__u64)BPF_CORE_READ(task, fs, pwd.dentry), (__u64)BPF_CORE_READ(task, fs, pwd.mnt));
    send(s, off);
    return 0;
}

/* Raw mode: one program for every syscall, the spec table deciding. It also sees syscalls that
 * have no tracepoint of their own (on this kernel init_module and finit_module, which are not
 * built in), at a cost on every syscall of the machine (docs/sensor.md). */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
    return handle_exit((__u32)regs->orig_ax, ret, regs);
}

/* Default mode: a program on each needed syscall's own exit tracepoint; syscalls nobody asked
 * for cost nothing. User space loads only the programs of the selected syscalls. */
#define SYSCALL_EXIT(name)                                                        \
    SEC("tracepoint/syscalls/sys_exit_" #name)                                    \
    int exit_##name(struct trace_event_raw_sys_exit *ctx)                         \
    {                                                                             \
        struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()); \
        return handle_exit((__u32)ctx->id, ctx->ret, regs);                       \
    }
LANNER_SYSCALLS(SYSCALL_EXIT)

static __always_inline int stash_filename(const char *filename)
{
    __u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) == agent_tgid)
        return 0;
    __u32 zero = 0, tid = (__u32)id;
    struct exec_stash *st = bpf_map_lookup_elem(&stash_init, &zero);
    if (!st)
        return 0;
    long n = bpf_probe_read_user_str(st->filename, STR_MAX, filename);
    st->len = n > 0 ? n - 1 : 0;
    bpf_map_update_elem(&exec_filenames, &tid, st, BPF_ANY);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int on_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
    return stash_filename((const char *)ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int on_enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
    return stash_filename((const char *)ctx->args[1]);
}

/* A fork or exit record's header in the scratch buffer; NULL for the agent itself. */
static __always_inline struct rec_hdr *process_record(struct scratch **sp, struct task_struct *task, __u32 kind)
{
    __u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) == agent_tgid)
        return 0;
    struct scratch *s = scratch_get();
    if (!s)
        return 0;
    struct rec_hdr *h = (struct rec_hdr *)s->rec;
    fill_header(h, task, kind);
    h->nr = -1;
    __builtin_memset(h->args, 0, sizeof(h->args));
    *sp = s;
    return h;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
    __u32 child_pid = BPF_CORE_READ(child, pid), child_tgid = BPF_CORE_READ(child, tgid);
    if (child_pid != child_tgid)
        return 0;  /* a new thread: same process */
    struct scratch *s = 0;
    struct rec_hdr *h = process_record(&s, bpf_get_current_task_btf(), REC_FORK);
    if (!h || !s)
        return 0;
    h->ret = child_tgid;
    h->args[0] = child->start_time;
    h->args[1] = task_vnr(child->thread_pid);
    h->args[2] = child->real_parent->tgid;
    send(s, sizeof(struct rec_hdr));
    return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p, bool group_dead)
{
    if (!group_dead)
        return 0;
    struct scratch *s = 0;
    struct rec_hdr *h = process_record(&s, p, REC_EXIT);
    if (!h || !s)
        return 0;
    h->ret = p->exit_code;
    send(s, sizeof(struct rec_hdr));
    return 0;
}
