"""The raw layer under the fanotify guard: constants, libc bindings, record layouts, openat2 and
the reading of a blocked thread's syscall. No policy here.

Constants are fanotify(7)'s, fanotify_init(2)'s and openat2(2)'s values (Linux UAPI). ``lanner
doctor`` probes fanotify with the same bindings.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import time
from typing import Final

# fanotify_init(2) flags
FAN_CLOEXEC: Final = 0x1
FAN_NONBLOCK: Final = 0x2
FAN_CLASS_NOTIF: Final = 0x0
FAN_CLASS_CONTENT: Final = 0x4
FAN_UNLIMITED_QUEUE: Final = 0x10
FAN_UNLIMITED_MARKS: Final = 0x20
FAN_REPORT_TID: Final = 0x100
FAN_REPORT_FID: Final = 0x200
FAN_REPORT_DIR_FID: Final = 0x400
FAN_REPORT_NAME: Final = 0x800
FAN_REPORT_DFID_NAME: Final = FAN_REPORT_DIR_FID | FAN_REPORT_NAME

# fanotify_mark(2) flags
FAN_MARK_ADD: Final = 0x1
FAN_MARK_REMOVE: Final = 0x2
FAN_MARK_DONT_FOLLOW: Final = 0x4
FAN_MARK_ONLYDIR: Final = 0x8
FAN_MARK_MOUNT: Final = 0x10
FAN_MARK_FILESYSTEM: Final = 0x100

# event mask bits
FAN_MOVED_TO: Final = 0x80
FAN_CREATE: Final = 0x100
FAN_Q_OVERFLOW: Final = 0x4000
FAN_OPEN_PERM: Final = 0x10000
FAN_ACCESS_PERM: Final = 0x20000
FAN_OPEN_EXEC_PERM: Final = 0x40000
FAN_EVENT_ON_CHILD: Final = 0x08000000
FAN_ONDIR: Final = 0x40000000

# responses
FAN_ALLOW: Final = 0x1
FAN_DENY: Final = 0x2
FAN_NOFD: Final = -1

FAN_EVENT_INFO_TYPE_DFID_NAME: Final = 2

AT_FDCWD: Final = -100
AT_EMPTY_PATH: Final = 0x1000
AT_HANDLE_FID: Final = 0x200
"""name_to_handle_at: a handle to identify, not to open (6.5+): what fanotify reports, and it also
works on filesystems that cannot decode handles (overlayfs without nfs_export)."""
MAX_HANDLE_SZ: Final = 128

# openat2(2) resolve flags
RESOLVE_NO_MAGICLINKS: Final = 0x02
RESOLVE_NO_SYMLINKS: Final = 0x04
RESOLVE_BENEATH: Final = 0x08
RESOLVE_IN_ROOT: Final = 0x10

METADATA: Final = struct.Struct("=IBBHQii")
"""struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid."""
FANOTIFY_METADATA_VERSION: Final = 3
RESPONSE: Final = struct.Struct("=iI")
"""struct fanotify_response: fd, response."""
INFO_HEADER: Final = struct.Struct("=BBH")
"""struct fanotify_event_info_header: info_type, pad, len."""
FSID_HANDLE: Final = struct.Struct("=iiIi")
"""__kernel_fsid_t (2 × int) then struct file_handle's handle_bytes, handle_type."""
OPEN_HOW: Final = struct.Struct("=QQQ")
"""struct open_how: flags, mode, resolve."""

_libc = ctypes.CDLL(None, use_errno=True)
_init = _libc.fanotify_init
_init.restype = ctypes.c_int
_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_mark = _libc.fanotify_mark
_mark.restype = ctypes.c_int
_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
_name_to_handle_at = _libc.name_to_handle_at
_name_to_handle_at.restype = ctypes.c_int
_name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                               ctypes.c_int]
_fstatfs = _libc.fstatfs
_fstatfs.restype = ctypes.c_int
_fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def fanotify_init_raw(flags: int, event_f_flags: int) -> int:
    """fanotify_init(2): the fd, or -errno (doctor turns the errno into a verdict)."""
    fd = int(_init(flags, event_f_flags))
    return fd if fd >= 0 else -ctypes.get_errno()


def fanotify_mark_raw(fd: int, flags: int, mask: int, dirfd: int, path: str | None) -> int:
    """fanotify_mark(2): 0 or -errno. ``path`` None marks ``dirfd`` itself."""
    rc = int(_mark(fd, flags, mask, dirfd, None if path is None else os.fsencode(path)))
    return 0 if rc == 0 else -ctypes.get_errno()


def fanotify_init(flags: int, event_f_flags: int) -> int:
    fd = fanotify_init_raw(flags, event_f_flags)
    if fd < 0:
        raise OSError(-fd, f"fanotify_init({flags:#x}): {os.strerror(-fd)}")
    return fd


def fanotify_mark(fd: int, flags: int, mask: int, dirfd: int, path: str | None = None) -> None:
    rc = fanotify_mark_raw(fd, flags, mask, dirfd, path)
    if rc < 0:
        raise OSError(-rc, f"fanotify_mark({path or f'fd {dirfd}'}, mask={mask:#x}): {os.strerror(-rc)}")


def handle_key(dirfd: int) -> bytes | None:
    """The identity fanotify reports for this directory in a DFID record: fsid, handle type and
    handle bytes, as one bytes key (compare with ``dfid_key``); None when the filesystem has none."""
    buf = ctypes.create_string_buffer(8 + MAX_HANDLE_SZ)
    struct.pack_into("=I", buf, 0, MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    for flags in (AT_EMPTY_PATH | AT_HANDLE_FID, AT_EMPTY_PATH):  # AT_HANDLE_FID: 6.5+
        if _name_to_handle_at(dirfd, b"", buf, ctypes.byref(mount_id), flags) == 0:
            break
    else:
        return None
    nbytes, htype = struct.unpack_from("=Ii", buf, 0)
    # fanotify's fsid is statfs's f_fsid (statvfs folds it into one sign-extended number): the 8
    # bytes at offset 56 of struct statfs on 64-bit Linux (7 longs before it)
    sfs = ctypes.create_string_buffer(256)
    if _fstatfs(dirfd, sfs) != 0:
        return None
    return sfs.raw[56:64] + struct.pack("=Ii", nbytes, htype) + buf.raw[8:8 + nbytes]


def mount_id(dirfd: int, name: str = "") -> int:
    """The id of the mount ``name`` below ``dirfd`` (or ``dirfd`` itself) is on; -1 when unknown. A file
    mounted over a directory entry (bind mounts included, even from the same filesystem) has a mount
    id of its own."""
    buf = ctypes.create_string_buffer(8 + MAX_HANDLE_SZ)
    mid = ctypes.c_int(-1)
    for flags in (AT_HANDLE_FID, 0):
        struct.pack_into("=I", buf, 0, MAX_HANDLE_SZ)
        path = os.fsencode(name) if name else b""
        if _name_to_handle_at(dirfd, path, buf, ctypes.byref(mid), flags | (0 if name else AT_EMPTY_PATH)) == 0:
            return mid.value
    return -1


PROC_SUPER_MAGIC: Final = 0x9FA0


def fs_type(fd: int) -> int:
    """statfs's f_type of the filesystem ``fd`` is on (0 when unknown)."""
    sfs = ctypes.create_string_buffer(256)
    if _fstatfs(fd, sfs) != 0:
        return 0
    return int(struct.unpack_from("=q", sfs, 0)[0])


def dfid_name(buf: bytes, off: int, end: int) -> tuple[bytes, str] | None:
    """The directory key (as ``handle_key``) and the entry name of the first DFID_NAME record in
    the info records of one event, ``buf[off:end]``."""
    while off + INFO_HEADER.size <= end:
        itype, _, ilen = INFO_HEADER.unpack_from(buf, off)
        if ilen < INFO_HEADER.size:
            return None
        if itype == FAN_EVENT_INFO_TYPE_DFID_NAME:
            body = off + INFO_HEADER.size
            _, _, nbytes, _ = FSID_HANDLE.unpack_from(buf, body)
            key_end = body + FSID_HANDLE.size + nbytes
            name_end = buf.index(b"\0", key_end, off + ilen)
            return bytes(buf[body:key_end]), os.fsdecode(buf[key_end:name_end])
        off += ilen
    return None


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2) (no libc wrapper in glibc 2.36): the fd; raises OSError."""
    how = OPEN_HOW.pack(flags, mode, resolve)
    fd = int(_syscall(SYS_OPENAT2, ctypes.c_int(dirfd), os.fsencode(path), how, ctypes.c_size_t(len(how))))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


# --- the syscall a blocked thread is in ------------------------------------------------------------------

_MACHINE = platform.machine()
if _MACHINE == "x86_64":
    SYS_OPEN, SYS_CREAT, SYS_OPENAT, SYS_OPENAT2 = 2, 85, 257, 437
    SYS_EXECVE, SYS_EXECVEAT, SYS_USELIB, SYS_OPEN_BY_HANDLE_AT = 59, 322, 134, 304
elif _MACHINE == "aarch64":
    SYS_OPEN, SYS_CREAT, SYS_OPENAT, SYS_OPENAT2 = -2, -2, 56, 437
    SYS_EXECVE, SYS_EXECVEAT, SYS_USELIB, SYS_OPEN_BY_HANDLE_AT = 221, 281, -2, 265
else:  # unknown numbers: every open counts as unknown (a read and a write)
    SYS_OPEN = SYS_CREAT = SYS_OPENAT = SYS_EXECVE = SYS_EXECVEAT = SYS_USELIB = SYS_OPEN_BY_HANDLE_AT = -2
    SYS_OPENAT2 = 437  # the same on every architecture

_X32_SYSCALL_BIT: Final = 0x40000000
O_ACCMODE: Final = 0o3
_WRITE_FLAGS: Final = os.O_CREAT | os.O_TRUNC

ACCESS_READ: Final = 1
ACCESS_WRITE: Final = 2
ACCESS_UNKNOWN: Final = ACCESS_READ | ACCESS_WRITE


def access_of_flags(flags: int) -> int:
    """ACCESS_READ and/or ACCESS_WRITE for open(2) flags. O_TRUNC truncates even with O_RDONLY; the
    access mode 3 (ioctl-only) is neither, so it counts as both."""
    acc = flags & O_ACCMODE
    out = ACCESS_READ if acc in (os.O_RDONLY, os.O_RDWR) else 0
    if acc != os.O_RDONLY or flags & _WRITE_FLAGS:
        out |= ACCESS_WRITE
    if acc == O_ACCMODE:
        out = ACCESS_UNKNOWN
    return out


_RUNNING_RETRY_S: Final = 0.005


def _blocked_syscall(tid: int) -> list[bytes]:
    """The fields of /proc/<tid>/syscall once the thread sleeps in its syscall. The event can reach
    us before the opener has gone to sleep waiting for our answer (the file then says "running"):
    it is about to, so read again for a few milliseconds before giving up."""
    fd = os.open(f"/proc/{tid}/syscall", os.O_RDONLY | os.O_CLOEXEC)
    try:
        deadline = 0.0
        while True:
            fields = os.pread(fd, 256, 0).split()
            if not fields or fields[0] != b"running":
                return fields
            now = time.monotonic()
            if not deadline:
                deadline = now + _RUNNING_RETRY_S
            elif now > deadline:
                return fields
            os.sched_yield()
    finally:
        os.close(fd)


def open_access(tid: int) -> tuple[int, int]:
    """(access, flags) of the open a blocked thread is in, from /proc/<tid>/syscall (and the
    thread's memory for openat2's struct open_how). An open inside execve/execveat/uselib
    (FMODE_EXEC, also the ELF interpreter's) is a read. Anything not recognised — another syscall
    (acct, a core dump, io_uring, a 32-bit task's numbers), a thread gone or not stopped —
    is ACCESS_UNKNOWN, which a read-deny and a write-deny policy both deny.
    """
    try:
        fields = _blocked_syscall(tid)
        nr = int(fields[0]) & ~_X32_SYSCALL_BIT
        if nr == SYS_OPENAT:
            flags = int(fields[3], 16)
        elif nr == SYS_OPEN:
            flags = int(fields[2], 16)
        elif nr == SYS_CREAT:
            return ACCESS_WRITE, os.O_CREAT | os.O_WRONLY | os.O_TRUNC
        elif nr == SYS_OPENAT2:
            addr, size = int(fields[3], 16), int(fields[4], 16)
            if size < 8:
                return ACCESS_UNKNOWN, 0
            fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            try:
                raw = os.pread(fd, 8, addr)
            finally:
                os.close(fd)
            if len(raw) != 8:
                return ACCESS_UNKNOWN, 0
            flags = int.from_bytes(raw, "little" if _LITTLE else "big")
        elif nr in (SYS_EXECVE, SYS_EXECVEAT, SYS_USELIB):
            return ACCESS_READ, 0
        elif nr == SYS_OPEN_BY_HANDLE_AT:
            flags = int(fields[3], 16)
        else:
            return ACCESS_UNKNOWN, 0
    except (OSError, ValueError, IndexError):
        return ACCESS_UNKNOWN, 0
    flags &= 0xFFFFFFFF
    return access_of_flags(flags), flags


_LITTLE: Final = struct.pack("=H", 1) == b"\x01\x00"
