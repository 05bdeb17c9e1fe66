// SPDX-License-Identifier: GPL-2.0
/* Lanner's network guard: cgroup-BPF connect4/6 and sendmsg4/6 programs on the cgroup2 root.
 *
 * Returning 0 makes connect()/sendto() fail with EPERM. A deny entry is keyed by
 * {generation, scope (cgroup2 id, 0 = everywhere), family, port (0 = any), address (all zero =
 * any)}; the four shapes exact / any port / any address / any-any are looked up in that order,
 * for the caller's cgroup then everywhere, but only the shapes a scope actually holds (a bit mask
 * per scope), so a connect usually costs one or two hash lookups. "any-any" for a cgroup is the
 * `isolate` action. An IPv4-mapped IPv6 destination is looked up as IPv4, so a v6 socket cannot
 * bypass an IPv4 rule. Layout mirrored in lanner/response/net_guard.py. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "guard.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

/* shape bits, in a scope's mask; state[1 + gen] = global mask | G_SCOPED */
#define SH_EXACT 1
#define SH_ANY_PORT 2
#define SH_ANY_ADDR 4
#define SH_ANY_ANY 8
#define G_SCOPED 0x100

enum net_kind { K_CONNECT = 1, K_SENDMSG = 2 };

struct net_key {
    __u32 gen;
    __u16 family;
    __u16 port;        /* host byte order; 0 = any */
    __u64 scope;
    __u8 addr[16];     /* network byte order; IPv4 in the first 4 bytes; all zero = any */
};

struct verdict {
    __u32 rule_id;
    __u8 enforce;
    __u8 kinds;        /* 1 << enum net_kind: which calls the entry denies */
    __u8 pad[2];
};

struct scope_key {
    __u32 gen;
    __u32 pad;
    __u64 cgroup_id;
};

struct net_decision {
    __u64 ts;           /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    __u64 cgroup_id;
    __u32 tid;
    __u32 tgid;
    __u32 rule_id;
    __u8 kind;          /* enum net_kind */
    __u8 enforce;
    __u8 protect;       /* enum protect_reason */
    __u8 pad;
    __u16 family;
    __u16 port;
    __u8 addr[16];
    char comm[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, struct net_key);
    __type(value, struct verdict);
} deny SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct scope_key);
    __type(value, __u32);  /* shape mask */
} scopes SEC(".maps");

/* v if it enforces; else remember it as the monitoring match (the first one) and return NULL. */
static __always_inline struct verdict *note(struct verdict *v, struct verdict **mon)
{
    if (v->enforce)
        return v;
    if (!*mon)
        *mon = v;
    return NULL;
}

static __always_inline struct verdict *lookup(struct net_key *k, __u32 kind)
{
    struct verdict *v = bpf_map_lookup_elem(&deny, k);
    return v && (v->kinds & (1 << kind)) ? v : NULL;
}

/* The first enforcing entry of one scope's shapes, or NULL; the first monitoring entry met on
 * the way goes to *mon, so monitor entries never hide an enforcing one. k arrives with the exact
 * destination and leaves unchanged. */
static __always_inline struct verdict *match(struct net_key *k, __u32 mask, __u32 kind, struct verdict **mon)
{
    struct verdict *v;
    __u16 port = k->port;
    __u64 a0 = *(__u64 *)&k->addr[0], a1 = *(__u64 *)&k->addr[8];
    struct verdict *found = NULL;
    if (mask & SH_EXACT) {
        v = lookup(k, kind);
        if (v && (found = note(v, mon)))
            return found;
    }
    if (mask & SH_ANY_PORT) {
        k->port = 0;
        v = lookup(k, kind);
        k->port = port;
        if (v && (found = note(v, mon)))
            return found;
    }
    if (mask & (SH_ANY_ADDR | SH_ANY_ANY)) {
        *(__u64 *)&k->addr[0] = 0;
        *(__u64 *)&k->addr[8] = 0;
        if (mask & SH_ANY_ADDR) {
            v = lookup(k, kind);
            if (v)
                found = note(v, mon);
        }
        if (!found && (mask & SH_ANY_ANY)) {
            k->port = 0;
            v = lookup(k, kind);
            k->port = port;
            if (v)
                found = note(v, mon);
        }
        *(__u64 *)&k->addr[0] = a0;
        *(__u64 *)&k->addr[8] = a1;
    }
    return found;
}

static __always_inline int guard(struct bpf_sock_addr *ctx, __u32 kind, int v6)
{
    __u32 flags = 0;
    __u32 gen = active_gen(&flags);
    if (!flags)
        return 1;
    struct net_key k = {.gen = gen, .family = AF_INET, .port = bpf_ntohs((__u16)ctx->user_port)};
    if (v6) {
        __u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
        if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff)) {
            *(__u32 *)&k.addr[0] = w3;  /* ::ffff:a.b.c.d is a.b.c.d */
        } else {
            k.family = AF_INET6;
            *(__u32 *)&k.addr[0] = w0;
            *(__u32 *)&k.addr[4] = w1;
            *(__u32 *)&k.addr[8] = w2;
            *(__u32 *)&k.addr[12] = w3;
        }
    } else {
        *(__u32 *)&k.addr[0] = ctx->user_ip4;
    }

    __u64 cg = bpf_get_current_cgroup_id();
    struct verdict *v = NULL, *mon = NULL;
    if (flags & G_SCOPED) {
        struct scope_key sk = {.gen = gen, .cgroup_id = cg};
        __u32 *mask = bpf_map_lookup_elem(&scopes, &sk);
        if (mask) {
            k.scope = cg;
            v = match(&k, *mask, kind, &mon);
        }
    }
    if (!v && (flags & 0xff)) {
        k.scope = 0;
        v = match(&k, flags & 0xff, kind, &mon);
    }
    if (!v)
        v = mon;
    if (!v)
        return 1;

    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32;
    __u8 protect = protected_task(tgid);
    __u8 enforce = v->enforce;
    __u32 rule_id = v->rule_id;
    struct net_decision *e = bpf_ringbuf_reserve(&decisions, sizeof(*e), 0);
    if (e) {
        e->ts = bpf_ktime_get_ns();
        e->cgroup_id = cg;
        e->tid = (__u32)id;
        e->tgid = tgid;
        e->rule_id = rule_id;
        e->kind = kind;
        e->enforce = enforce;
        e->protect = protect;
        e->pad = 0;
        e->family = k.family;
        e->port = k.port;
        __builtin_memcpy(e->addr, k.addr, sizeof(e->addr));
        bpf_get_current_comm(e->comm, sizeof(e->comm));
        bpf_ringbuf_submit(e, 0);
    } else {
        count_drop();
    }
    return enforce && !protect ? 0 : 1;
}

SEC("cgroup/connect4")
int lnr_connect4(struct bpf_sock_addr *ctx)
{
    return guard(ctx, K_CONNECT, 0);
}

SEC("cgroup/connect6")
int lnr_connect6(struct bpf_sock_addr *ctx)
{
    return guard(ctx, K_CONNECT, 1);
}

SEC("cgroup/sendmsg4")
int lnr_sendmsg4(struct bpf_sock_addr *ctx)
{
    return guard(ctx, K_SENDMSG, 0);
}

SEC("cgroup/sendmsg6")
int lnr_sendmsg6(struct bpf_sock_addr *ctx)
{
    return guard(ctx, K_SENDMSG, 1);
}
