// SPDX-License-Identifier: GPL-2.0
/* Lanner's exec guard: SIGKILL a process that has just exec'd a forbidden file.
 *
 * tp_btf/sched_process_exec runs after the exec is committed and before the new program returns
 * to user space, so bpf_send_signal(SIGKILL) kills it before its first instruction. The file is
 * matched by the (dev, ino) of bprm->file, so symlinks, hard links, relative paths and execveat
 * name the same key. Three policies: a deny set (per cgroup or everywhere), per-cgroup
 * allow-lists, per-cgroup drift (files on an overlayfs upper layer). Layout mirrored in
 * lanner/response/exec_guard.py.
 *
 * Hot path with no policy: two array lookups. With policies: one hash lookup for the global deny
 * set, one for the cgroup's scope, then only what that scope uses. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "guard.h"

char LICENSE[] SEC("license") = "GPL";

#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define PATH_MAX_REC 256

/* state[1 + gen] flags */
#define G_GLOBAL_DENY 1   /* the generation has scope-0 deny entries */
#define G_SCOPED 2        /* ...and per-cgroup scopes */

/* scope flags */
#define S_DENY 1
#define S_ALLOW 2
#define S_DRIFT 4

enum exec_kind { K_DENY = 1, K_ALLOW = 2, K_DRIFT = 3 };

struct deny_key {
    __u32 gen;
    __u32 pad;
    __u64 scope;       /* cgroup2 id, 0 = everywhere */
    __u64 dev;         /* kernel encoding: major << 20 | minor */
    __u64 ino;
};

struct verdict {
    __u32 rule_id;
    __u8 enforce;
    __u8 pad[3];
};

struct scope_key {
    __u32 gen;
    __u32 pad;
    __u64 cgroup_id;
};

struct scope_val {
    __u32 flags;        /* S_* */
    __u32 allow_rule;
    __u32 allow_list;   /* which allowed set (user space numbers them) */
    __u32 drift_rule;
    __u8 allow_enforce;
    __u8 drift_enforce;
    __u8 pad[2];
};

struct allowed_key {
    __u32 gen;
    __u32 list;
    __u64 dev;
    __u64 ino;
};

struct file_key {
    __u64 dev;
    __u64 ino;
};

struct exec_decision {
    __u64 ts;           /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    __u64 cgroup_id;
    __u64 dev;
    __u64 ino;
    __u32 tid;
    __u32 tgid;
    __u32 rule_id;
    __u8 kind;          /* enum exec_kind */
    __u8 enforce;       /* the policy asked for a kill */
    __u8 protect;       /* enum protect_reason: why it was not done */
    __u8 pad;
    __s32 kill_rc;      /* bpf_send_signal's result; 0 when no kill was sent */
    __u32 pad2;
    char comm[16];
    char path[PATH_MAX_REC];  /* bprm->filename as the caller gave it */
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct deny_key);
    __type(value, struct verdict);
} deny SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct scope_key);
    __type(value, struct scope_val);
} scopes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct allowed_key);
    __type(value, __u8);
} allowed SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct file_key);
    __type(value, __u8);
} protected_files SEC(".maps");

static __always_inline int on_upper_layer(struct inode *inode)
{
    if (BPF_CORE_READ(inode, i_sb, s_magic) != OVERLAYFS_SUPER_MAGIC || !bpf_core_type_exists(struct ovl_inode))
        return 0;
    /* an overlay inode with an upper dentry was written or copied up after the mount */
    struct ovl_inode *oi = container_of(inode, struct ovl_inode, vfs_inode);
    return BPF_CORE_READ(oi, __upperdentry) != NULL;
}

static __always_inline void decide(struct linux_binprm *bprm, __u64 cg, __u64 dev, __u64 ino,
                                   __u32 kind, __u32 rule_id, __u8 enforce)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32;
    __u8 protect = protected_task(tgid);
    if (!protect) {
        struct file_key fk = {.dev = dev, .ino = ino};
        if (bpf_map_lookup_elem(&protected_files, &fk))
            protect = P_FILE;
    }
    long rc = 0;
    if (enforce && !protect)
        rc = bpf_send_signal(SIGKILL);  /* first: the record is secondary */

    struct exec_decision *e = bpf_ringbuf_reserve(&decisions, sizeof(*e), 0);
    if (!e) {
        count_drop();
        return;
    }
    e->ts = bpf_ktime_get_ns();
    e->cgroup_id = cg;
    e->dev = dev;
    e->ino = ino;
    e->tid = (__u32)id;
    e->tgid = tgid;
    e->rule_id = rule_id;
    e->kind = kind;
    e->enforce = enforce;
    e->protect = protect;
    e->pad = 0;
    e->kill_rc = rc;
    e->pad2 = 0;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    if (bpf_probe_read_kernel_str(e->path, sizeof(e->path), bprm->filename) < 0)
        e->path[0] = 0;
    bpf_ringbuf_submit(e, 0);  /* decisions are rare: wake the reader at once */
}

/* The first enforcing match decides; without one, the first monitoring match is reported. */
struct hit {
    __u32 kind;
    __u32 rule_id;
    __u8 enforce;
};

static __always_inline int note(struct hit *h, __u32 kind, __u32 rule_id, __u8 enforce)
{
    if (enforce || !h->kind) {
        h->kind = kind;
        h->rule_id = rule_id;
        h->enforce = enforce;
    }
    return enforce;  /* nonzero: stop looking */
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(lnr_exec_guard, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
    __u32 flags = 0;
    __u32 gen = active_gen(&flags);
    if (!flags)
        return 0;
    struct inode *inode = bprm->file->f_inode;
    __u64 dev = inode->i_sb->s_dev;
    __u64 ino = inode->i_ino;
    __u64 cg = bpf_get_current_cgroup_id();
    struct hit h = {};
    struct verdict *v;

    if (flags & G_GLOBAL_DENY) {
        struct deny_key k = {.gen = gen, .scope = 0, .dev = dev, .ino = ino};
        v = bpf_map_lookup_elem(&deny, &k);
        if (v && note(&h, K_DENY, v->rule_id, v->enforce))
            goto out;
    }
    if (!(flags & G_SCOPED))
        goto out;
    struct scope_key sk = {.gen = gen, .cgroup_id = cg};
    struct scope_val *s = bpf_map_lookup_elem(&scopes, &sk);
    if (!s)
        goto out;
    if (s->flags & S_DENY) {
        struct deny_key k = {.gen = gen, .scope = cg, .dev = dev, .ino = ino};
        v = bpf_map_lookup_elem(&deny, &k);
        if (v && note(&h, K_DENY, v->rule_id, v->enforce))
            goto out;
    }
    if (s->flags & S_ALLOW) {
        struct allowed_key ak = {.gen = gen, .list = s->allow_list, .dev = dev, .ino = ino};
        if (!bpf_map_lookup_elem(&allowed, &ak) && note(&h, K_ALLOW, s->allow_rule, s->allow_enforce))
            goto out;
    }
    if ((s->flags & S_DRIFT) && on_upper_layer(inode))
        note(&h, K_DRIFT, s->drift_rule, s->drift_enforce);
out:
    if (h.kind)
        decide(bprm, cg, dev, ino, h.kind, h.rule_id, h.enforce);
    return 0;
}
