// SPDX-License-Identifier: GPL-2.0
/* Feature probes for `lanner doctor`.
 *
 * One tiny program per kind of BPF program (and per helper or map Lanner relies on). The doctor
 * opens this object once per probe, turns autoload off for every other program, loads, attaches
 * and, where it can, makes the program run and checks what it recorded: loading one small
 * program of each kind is the only reliable test (bpftool's feature probe says "tracing is NOT
 * available" on kernels where tp_btf works).
 *
 * Every program only counts, and only for the doctor's own process (cfg[0] = its tgid) or its
 * children: attaching them is harmless to the rest of the machine. The connect4 program denies
 * port 9 only, and is attached to a temporary cgroup the doctor creates and removes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

/* Slots of `hits`; keep in step with lanner/doctor.py. */
enum {
    H_TRACEPOINT = 0,
    H_RAW_TP = 1,
    H_TP_BTF = 2,
    H_TP_BTF_DEV = 3,
    H_TP_BTF_INO = 4,
    H_FENTRY = 5,
    H_LSM = 6,
    H_CONNECT4 = 7,
    H_ITER = 8,
    H_KPROBE = 9,
    H_LOOP = 10,
    H_RINGBUF = 11,
    H_SIGNAL = 12,
    H_SIGNAL_RET = 13,
    H_SLOTS = 16,
};

/* cfg[0]: the doctor's tgid. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} cfg SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, H_SLOTS);
    __type(key, __u32);
    __type(value, __s64);
} hits SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} probe_events SEC(".maps");

static __always_inline __u32 doctor_tgid(void)
{
    __u32 zero = 0;
    __u32 *tgid = bpf_map_lookup_elem(&cfg, &zero);
    return tgid ? *tgid : 0;
}

static __always_inline int is_doctor(void)
{
    __u32 tgid = doctor_tgid();
    return tgid && (bpf_get_current_pid_tgid() >> 32) == tgid;
}

static __always_inline void add(__u32 slot, __s64 n)
{
    __s64 *v = bpf_map_lookup_elem(&hits, &slot);
    if (v)
        __sync_fetch_and_add(v, n);
}

static __always_inline void set(__u32 slot, __s64 n)
{
    __s64 *v = bpf_map_lookup_elem(&hits, &slot);
    if (v)
        *v = n;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int probe_tracepoint(void *ctx)
{
    if (is_doctor())
        add(H_TRACEPOINT, 1);
    return 0;
}

SEC("raw_tracepoint/sys_enter")
int probe_raw_tracepoint(struct bpf_raw_tracepoint_args *ctx)
{
    if (is_doctor())
        add(H_RAW_TP, 1);
    return 0;
}

/* The exec-blocking key: (s_dev, i_ino) of the executed file, read by direct BTF pointer walks.
 * Recorded only for children of the doctor. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(probe_tp_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
    __u32 tgid = doctor_tgid();
    if (!tgid || p->real_parent->tgid != tgid)
        return 0;
    struct inode *inode = bprm->file->f_inode;
    set(H_TP_BTF_DEV, inode->i_sb->s_dev);
    set(H_TP_BTF_INO, inode->i_ino);
    add(H_TP_BTF, 1);
    return 0;
}

SEC("fentry/vfs_read")
int BPF_PROG(probe_fentry, struct file *file)
{
    if (is_doctor())
        add(H_FENTRY, 1);
    return 0;
}

SEC("lsm/file_open")
int BPF_PROG(probe_lsm, struct file *file, int ret)
{
    if (is_doctor())
        add(H_LSM, 1);
    return ret;
}

/* Denies connect() to port 9 (discard) from the temporary cgroup it is attached to. */
SEC("cgroup/connect4")
int probe_connect4(struct bpf_sock_addr *ctx)
{
    if (ctx->user_port == bpf_htons(9)) {
        add(H_CONNECT4, 1);
        return 0;
    }
    return 1;
}

SEC("iter/task")
int probe_iter(struct bpf_iter__task *ctx)
{
    if (ctx->task)
        add(H_ITER, 1);
    return 0;
}

SEC("kprobe/do_unlinkat")
int probe_kprobe(struct pt_regs *ctx)
{
    if (is_doctor())
        add(H_KPROBE, 1);
    return 0;
}

static long loop_step(__u32 i, void *ctx)
{
    __s64 *n = ctx;
    *n += 1;
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int probe_loop(void *ctx)
{
    if (!is_doctor())
        return 0;
    __s64 n = 0;
    bpf_loop(4, loop_step, &n, 0);
    set(H_LOOP, n);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int probe_ringbuf(void *ctx)
{
    __u32 tgid = doctor_tgid();
    if (!tgid || (bpf_get_current_pid_tgid() >> 32) != tgid)
        return 0;
    __u32 *rec = bpf_ringbuf_reserve(&probe_events, sizeof(*rec), 0);
    if (!rec)
        return 0;
    *rec = tgid;
    __u64 flags = bpf_ringbuf_query(&probe_events, BPF_RB_AVAIL_DATA) >= 1024 ? BPF_RB_FORCE_WAKEUP : 0;
    bpf_ringbuf_submit(rec, flags);
    add(H_RINGBUF, 1);
    return 0;
}

/* Signal 0 to the doctor itself: the permission checks and the delivery path of a real kill,
 * with no effect. */
SEC("tracepoint/syscalls/sys_enter_getpid")
int probe_send_signal(void *ctx)
{
    if (!is_doctor())
        return 0;
    set(H_SIGNAL_RET, bpf_send_signal(0));
    add(H_SIGNAL, 1);
    return 0;
}
