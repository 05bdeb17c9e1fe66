// SPDX-License-Identifier: GPL-2.0
/* The benchmark floor: empty programs on the sensor's attach points, so `lanner bench sensor`
 * can tell the cost of being attached at all from the cost of what the sensor does. The loader
 * attaches the same programs it would attach for the sensor (same syscalls, same mode). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sensor.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret) { return 0; }

#define SYSCALL_EXIT(name) \
    SEC("tracepoint/syscalls/sys_exit_" #name) int exit_##name(void *ctx) { return 0; }
LANNER_SYSCALLS(SYSCALL_EXIT)

SEC("tracepoint/syscalls/sys_enter_execve")
int on_enter_execve(void *ctx) { return 0; }

SEC("tracepoint/syscalls/sys_enter_execveat")
int on_enter_execveat(void *ctx) { return 0; }

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child) { return 0; }

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p, bool group_dead) { return 0; }
