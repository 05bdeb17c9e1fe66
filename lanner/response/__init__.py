"""Enforcement: policies compiled from rules with ``action:``, the kernel mechanisms that apply
them (fanotify, the exec guard, the network guard) and the reactive actions (kill, stop, isolate)."""
