"""libbpf 1.x through ctypes: the handful of calls the sensor needs, typed, with errors raised.

No compiled extension: Debian's libbpf1 is loaded at run time. Pointer-returning calls give NULL
and set errno; int-returning calls give -errno (libbpf 1.x conventions).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable, Iterator
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int, c_size_t, c_uint, c_uint32, c_void_p

RingCallback = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)
_PrintFn = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)


class BpfError(OSError):
    """A libbpf call failed; the message names the call and the object."""


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """The loaded libbpf, with every function we call typed."""
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        so = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise BpfError(errno.ENOENT, f"libbpf not found ({name}): install Debian's libbpf1") from exc
    sigs: dict[str, tuple[object, list[object]]] = {
        "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
        "bpf_object__load": (c_int, [c_void_p]),
        "bpf_object__close": (None, [c_void_p]),
        "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
        "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
        "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_program__name": (c_char_p, [c_void_p]),
        "bpf_program__section_name": (c_char_p, [c_void_p]),
        "bpf_program__set_autoload": (c_int, [c_void_p, ctypes.c_bool]),
        "bpf_program__attach": (c_void_p, [c_void_p]),
        "bpf_program__attach_cgroup": (c_void_p, [c_void_p, c_int]),
        "bpf_program__fd": (c_int, [c_void_p]),
        "bpf_link__destroy": (c_int, [c_void_p]),
        "bpf_map__name": (c_char_p, [c_void_p]),
        "bpf_map__fd": (c_int, [c_void_p]),
        "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint32]),
        "bpf_map__reuse_fd": (c_int, [c_void_p, c_int]),
        "bpf_map__initial_value": (c_void_p, [c_void_p, POINTER(c_size_t)]),
        "bpf_map__set_initial_value": (c_int, [c_void_p, c_void_p, c_size_t]),
        "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
        "libbpf_num_possible_cpus": (c_int, []),
        "libbpf_set_print": (c_void_p, [c_void_p]),
        "ring_buffer__new": (c_void_p, [c_int, RingCallback, c_void_p, c_void_p]),
        "ring_buffer__poll": (c_int, [c_void_p, c_int]),
        "ring_buffer__consume": (c_int, [c_void_p]),
        "ring_buffer__free": (None, [c_void_p]),
        "bpf_link__fd": (c_int, [c_void_p]),
        "bpf_obj_pin": (c_int, [c_int, c_char_p]),
        "bpf_obj_get": (c_int, [c_char_p]),
        "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_map__type": (c_int, [c_void_p]),
        "bpf_map__key_size": (c_uint32, [c_void_p]),
        "bpf_map__value_size": (c_uint32, [c_void_p]),
        "bpf_map__max_entries": (c_uint32, [c_void_p]),
    }
    for fname, (restype, argtypes) in sigs.items():
        fn = getattr(so, fname)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = so
    return so


def _check_ptr(ptr: int | None, what: str) -> int:
    if not ptr:
        err = ctypes.get_errno() or errno.EINVAL
        raise BpfError(err, f"{what}: {os.strerror(err)}")
    return ptr


def _check_int(rc: int, what: str) -> int:
    if rc < 0:
        raise BpfError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


_log_lines: list[str] = []


_libc = ctypes.CDLL(None)
_libc.vsnprintf.restype = c_int
_libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]


def _capture_print(level: int, fmt: bytes, va: int) -> int:
    # On x86_64 a va_list argument is a pointer, so libc's vsnprintf can expand it.
    buf = ctypes.create_string_buffer(1 << 22)
    _libc.vsnprintf(buf, len(buf), fmt, va)
    _log_lines.append(buf.value.decode(errors="replace").rstrip())
    return 0


_print_cb = _PrintFn(_capture_print)


def quiet() -> None:
    """Route libbpf's own messages into a buffer instead of stderr."""
    lib().libbpf_set_print(ctypes.cast(_print_cb, c_void_p))


class Link:
    def __init__(self, ptr: int, name: str) -> None:
        self.ptr: int | None = ptr
        self.name = name

    def destroy(self) -> None:
        if self.ptr:
            lib().bpf_link__destroy(self.ptr)
            self.ptr = None

    @property
    def fd(self) -> int:
        return _check_int(lib().bpf_link__fd(self.ptr), f"link fd {self.name}")

    def pin(self, path: str) -> None:
        """Pin in bpffs: the attachment then outlives this process until the file is removed."""
        obj_pin(self.fd, path)


class Program:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr
        self.name = (lib().bpf_program__name(ptr) or b"").decode()
        self.section = (lib().bpf_program__section_name(ptr) or b"").decode()

    def set_autoload(self, on: bool) -> None:
        _check_int(lib().bpf_program__set_autoload(self.ptr, on), f"set_autoload {self.name}")

    def attach(self) -> Link:
        return Link(_check_ptr(lib().bpf_program__attach(self.ptr), f"attach {self.section}"), self.name)

    def attach_cgroup(self, cgroup_fd: int) -> Link:
        ptr = lib().bpf_program__attach_cgroup(self.ptr, cgroup_fd)
        return Link(_check_ptr(ptr, f"attach {self.section}"), self.name)


class Map:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr
        self.name = (lib().bpf_map__name(ptr) or b"").decode()

    @property
    def fd(self) -> int:
        return _check_int(lib().bpf_map__fd(self.ptr), f"map fd {self.name}")

    def shape(self) -> tuple[int, int, int, int]:
        """(type, key size, value size, max entries): what must match for a map to be reused."""
        lb = lib()
        return (lb.bpf_map__type(self.ptr), lb.bpf_map__key_size(self.ptr), lb.bpf_map__value_size(self.ptr),
                lb.bpf_map__max_entries(self.ptr))

    def reuse_fd(self, fd: int) -> None:
        """Use an existing map (of another loaded object) instead of creating one at load."""
        _check_int(lib().bpf_map__reuse_fd(self.ptr, fd), f"reuse map {self.name}")

    def set_max_entries(self, n: int) -> None:
        _check_int(lib().bpf_map__set_max_entries(self.ptr, n), f"resize {self.name}")

    def initial_value(self) -> bytes:
        size = c_size_t(0)
        ptr = lib().bpf_map__initial_value(self.ptr, ctypes.byref(size))
        return ctypes.string_at(_check_ptr(ptr, f"initial value {self.name}"), size.value)

    def set_initial_value(self, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        _check_int(lib().bpf_map__set_initial_value(self.ptr, buf, len(data)), f"set {self.name}")

    def update(self, key: bytes, value: bytes) -> None:
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        rc = lib().bpf_map_update_elem(self.fd, k, v, 0)
        if rc < 0:
            err = ctypes.get_errno() or -rc
            raise BpfError(err, f"update {self.name}: {os.strerror(err)}")

    def delete(self, key: bytes) -> None:
        k = ctypes.create_string_buffer(key, len(key))
        rc = lib().bpf_map_delete_elem(self.fd, k)
        if rc < 0:
            err = ctypes.get_errno() or -rc
            if err != errno.ENOENT:
                raise BpfError(err, f"delete from {self.name}: {os.strerror(err)}")

    def lookup(self, key: bytes, value_size: int) -> bytes:
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value_size)
        rc = lib().bpf_map_lookup_elem(self.fd, k, v)
        if rc < 0:
            err = ctypes.get_errno() or -rc
            raise BpfError(err, f"lookup {self.name}: {os.strerror(err)}")
        return v.raw


    def keys(self, key_size: int) -> list[bytes]:
        """Every key of a hash map (collected first: deleting while walking would restart the walk)."""
        out: list[bytes] = []
        prev = None
        nxt = ctypes.create_string_buffer(key_size)
        while True:
            rc = lib().bpf_map_get_next_key(self.fd, prev, nxt)
            if rc < 0:
                err = ctypes.get_errno() or -rc
                if err == errno.ENOENT:
                    return out
                raise BpfError(err, f"keys of {self.name}: {os.strerror(err)}")
            out.append(nxt.raw)
            prev = ctypes.create_string_buffer(nxt.raw, key_size)


def obj_pin(fd: int, path: str) -> None:
    """Pin a map, program or link fd at a bpffs path."""
    rc = lib().bpf_obj_pin(fd, path.encode())
    if rc < 0:
        err = ctypes.get_errno() or -rc
        raise BpfError(err, f"pin {path}: {os.strerror(err)}")


def obj_get(path: str) -> int:
    """A new fd for the object pinned at a bpffs path (the caller closes it)."""
    fd = lib().bpf_obj_get(path.encode())
    if fd < 0:
        err = ctypes.get_errno() or -fd
        raise BpfError(err, f"open pinned {path}: {os.strerror(err)}")
    return int(fd)


def possible_cpus() -> int:
    return _check_int(lib().libbpf_num_possible_cpus(), "possible cpus")


class BpfObject:
    """One opened BPF object file: programs and maps by name, then load and attach."""

    def __init__(self, path: str) -> None:
        self.path = path
        quiet()
        _log_lines.clear()
        ptr = lib().bpf_object__open_file(path.encode(), None)
        self.ptr: int | None = _check_ptr(ptr, f"open {path}")
        self.links: list[Link] = []

    def programs(self) -> Iterator[Program]:
        prog = lib().bpf_object__next_program(self.ptr, None)
        while prog:
            yield Program(prog)
            prog = lib().bpf_object__next_program(self.ptr, prog)

    def maps(self) -> Iterator[Map]:
        m = lib().bpf_object__next_map(self.ptr, None)
        while m:
            yield Map(m)
            m = lib().bpf_object__next_map(self.ptr, m)

    def map(self, name: str) -> Map:
        for m in self.maps():
            if m.name == name or m.name.endswith(name):
                return m
        raise BpfError(errno.ENOENT, f"{self.path}: no map {name}")

    def program(self, name: str) -> Program:
        ptr = lib().bpf_object__find_program_by_name(self.ptr, name.encode())
        return Program(_check_ptr(ptr, f"{self.path}: program {name}"))

    def load(self) -> None:
        _log_lines.clear()
        rc = lib().bpf_object__load(self.ptr)
        if rc < 0:
            detail = "; ".join(line for line in _log_lines if line)[-400:]
            raise BpfError(-rc, f"load {os.path.basename(self.path)}: {os.strerror(-rc)}"
                           + (f" ({detail})" if detail else ""))

    def attach_all(self, skip: Callable[[Program], bool] = lambda p: False) -> None:
        for prog in self.programs():
            if not skip(prog):
                self.links.append(prog.attach())

    def close(self) -> None:
        for link in self.links:
            link.destroy()
        self.links.clear()
        if self.ptr:
            lib().bpf_object__close(self.ptr)
            self.ptr = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RingBuffer:
    """A BPF ring buffer drained by a Python callback. `callback(bytes)` must not raise."""

    def __init__(self, map_fd: int, callback: Callable[[bytes], None]) -> None:
        string_at = ctypes.string_at

        def on_record(ctx: int, data: int, size: int) -> int:
            callback(string_at(data, size))
            return 0

        self._cb = RingCallback(on_record)  # keep a reference as long as the ring lives
        self.ptr: int | None = _check_ptr(lib().ring_buffer__new(map_fd, self._cb, None, None), "ring_buffer__new")

    def poll(self, timeout_ms: int) -> int:
        n: int = lib().ring_buffer__poll(self.ptr, timeout_ms)
        if n < 0 and n != -errno.EINTR:
            _check_int(n, "ring_buffer__poll")
        return max(n, 0)

    def consume(self) -> int:
        n: int = lib().ring_buffer__consume(self.ptr)
        if n < 0 and n != -errno.EINTR:
            _check_int(n, "ring_buffer__consume")
        return max(n, 0)

    def free(self) -> None:
        if self.ptr:
            lib().ring_buffer__free(self.ptr)
            self.ptr = None


__all__ = ["BpfError", "BpfObject", "Link", "Map", "Program", "RingBuffer", "c_uint", "obj_get", "obj_pin",
           "possible_cpus"]
