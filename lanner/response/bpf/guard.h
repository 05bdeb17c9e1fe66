/* What the enforcement programs (exec_guard.bpf.c, net_guard.bpf.c) share: the generation
 * switch that makes a policy change atomic, the safety checks, the drop counter.
 *
 * Generations: every policy key carries the generation it belongs to. `state[0]` is the active
 * generation (0 or 1); `state[1 + g]` holds the summary flags of generation g. User space fills
 * the inactive generation, writes its flags, flips state[0] with one 4-byte store, then deletes
 * the old one. A program reads the generation once, so one decision sees one policy. */
#ifndef LANNER_GUARD_H
#define LANNER_GUARD_H

#define PF_KTHREAD 0x00200000
#define SIGKILL 9

/* Why a decision was not carried out although the policy said enforce (record field `protect`). */
enum protect_reason { P_NONE = 0, P_INIT = 1, P_KTHREAD = 2, P_TGID = 3, P_FILE = 4 };

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 3);
    __type(key, __u32);
    __type(value, __u32);
} state SEC(".maps");

/* tgid -> 1 (the agent itself) or 2 (listed by the policy table): never killed or denied. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, __u8);
} protected_tgids SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} dropped SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 << 10);  /* user space may resize before load */
} decisions SEC(".maps");

/* Never read by a program. Updating an ARRAY_OF_MAPS slot from user space returns only after an
 * RCU grace period (the kernel waits for running non-sleepable programs), so user space updates
 * it after the generation switch: no program still using the old generation is running when the
 * old entries are deleted. */
struct sync_inner {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} sync_inner SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 1);
    __type(key, __u32);
    __array(values, struct sync_inner);
} sync_programs SEC(".maps") = {
    .values = {[0] = &sync_inner},
};

/* The active generation and its flags; 0 flags means "no policy": the caller returns at once. */
static __always_inline __u32 active_gen(__u32 *flags)
{
    __u32 k = 0;
    __u32 *g = bpf_map_lookup_elem(&state, &k);
    if (!g)
        return 0;
    __u32 gen = *g & 1;
    k = 1 + gen;
    __u32 *f = bpf_map_lookup_elem(&state, &k);
    *flags = f ? *f : 0;
    return gen;
}

static __always_inline void count_drop(void)
{
    __u32 k = 0;
    __u64 *n = bpf_map_lookup_elem(&dropped, &k);
    if (n)
        *n += 1;  /* per-CPU slot: no atomics needed */
}

/* The safety rules that no policy overrides: host init, kernel threads, protected tgids. */
static __always_inline __u8 protected_task(__u32 tgid)
{
    if (tgid == 1)
        return P_INIT;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
        return P_KTHREAD;
    if (bpf_map_lookup_elem(&protected_tgids, &tgid))
        return P_TGID;
    return P_NONE;
}

#endif
