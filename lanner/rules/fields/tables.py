"""Flag and enum tables used to render event arguments the way Falco prints them.

Event arguments hold Linux values. Each table lists ``(name, linux_bits, ppm_bits)`` in Falco's
table order (the order decides the rendered string); ``ppm_bits`` is the value Falco's driver
reports, which is what ``evt.rawarg`` and the raw part of ``evt.args`` show.
"""

from __future__ import annotations

import errno
from functools import lru_cache
from typing import Final

FlagTable = tuple[tuple[str, int, int], ...]


def _same(pairs: tuple[tuple[str, int], ...]) -> FlagTable:
    """A table whose Linux and Falco values coincide."""
    return tuple((n, v, v) for n, v in pairs)


# Linux open(2) bits (generic/x86 values).
O_WRONLY: Final = 0o1
O_RDWR: Final = 0o2
O_ACCMODE: Final = 0o3
O_CREAT: Final = 0o100
O_EXCL: Final = 0o200
O_TRUNC: Final = 0o1000
O_APPEND: Final = 0o2000
O_NONBLOCK: Final = 0o4000
O_DSYNC: Final = 0o10000
O_DIRECT: Final = 0o40000
O_LARGEFILE: Final = 0o100000
O_DIRECTORY: Final = 0o200000
O_CLOEXEC: Final = 0o2000000
O_SYNC: Final = 0o4010000
O_TMPFILE: Final = 0o20200000

# Falco's (PPM) file flag bits.
PPM_O_RDONLY: Final = 1 << 0
PPM_O_WRONLY: Final = 1 << 1
PPM_O_RDWR: Final = PPM_O_RDONLY | PPM_O_WRONLY
PPM_O_CREAT: Final = 1 << 2
PPM_O_TMPFILE: Final = 1 << 13

# Linux flag -> PPM flag, tested with "any bit set" as the driver does; that is why O_SYNC also
# marks O_DSYNC-only opens and O_DIRECTORY opens show O_TMPFILE (FIELDS.md §6 quirk).
_OPEN_BITS: Final = (
    (O_CREAT, 1 << 2), (O_APPEND, 1 << 3), (O_DSYNC, 1 << 4), (O_EXCL, 1 << 5),
    (O_NONBLOCK, 1 << 6), (O_SYNC, 1 << 7), (O_TRUNC, 1 << 8), (O_DIRECT, 1 << 9),
    (O_DIRECTORY, 1 << 10), (O_LARGEFILE, 1 << 11), (O_CLOEXEC, 1 << 12), (O_TMPFILE, 1 << 13),
)

# Falco's file_flags table order. The Linux column is unused (conversion goes through PPM).
FILE_FLAGS_PPM: Final[tuple[tuple[str, int], ...]] = (
    ("O_LARGEFILE", 1 << 11), ("O_DIRECTORY", 1 << 10), ("O_DIRECT", 1 << 9), ("O_TRUNC", 1 << 8),
    ("O_SYNC", 1 << 7), ("O_NONBLOCK", 1 << 6), ("O_EXCL", 1 << 5), ("O_DSYNC", 1 << 4),
    ("O_APPEND", 1 << 3), ("O_CREAT", 1 << 2), ("O_RDWR", 3), ("O_WRONLY", 1 << 1),
    ("O_RDONLY", 1 << 0), ("O_CLOEXEC", 1 << 12), ("O_NONE", 0), ("O_TMPFILE", 1 << 13),
    ("O_F_CREATED", 1 << 14), ("FD_UPPER_LAYER", 1 << 15), ("FD_LOWER_LAYER", 1 << 16),
)
_FILE_FLAG_BY_NAME: Final = dict(FILE_FLAGS_PPM)


@lru_cache(maxsize=1024)
def open_flags_to_ppm(linux: int) -> int:
    """Linux open flags -> Falco's PPM file flags (one of RDONLY/WRONLY/RDWR always set)."""
    acc = linux & O_ACCMODE
    res = PPM_O_WRONLY if acc == O_WRONLY else PPM_O_RDWR if acc == O_RDWR else PPM_O_RDONLY
    for lbit, pbit in _OPEN_BITS:
        if linux & lbit:
            res |= pbit
    return res


def names_to_bits(text: str, table: dict[str, int]) -> int | None:
    """``"O_WRONLY|O_CREAT"`` -> bits from ``table``; None when a name is unknown."""
    bits = 0
    for part in text.split("|"):
        part = part.strip()
        if not part:
            continue
        val = table.get(part)
        if val is None:
            return None
        bits |= val
    return bits


def file_flags_ppm(value: object) -> int | None:
    """PPM file flags from a raw Linux int or an already-rendered ``O_X|O_Y`` string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return open_flags_to_ppm(value)
    if isinstance(value, str):
        if value.isdigit():
            return open_flags_to_ppm(int(value))
        return names_to_bits(value, _FILE_FLAG_BY_NAME)
    return None


CLONE_FLAGS: Final[FlagTable] = (
    ("CLONE_FILES", 0x400, 1 << 0), ("CLONE_FS", 0x200, 1 << 1), ("CLONE_IO", 0x80000000, 1 << 2),
    ("CLONE_NEWIPC", 0x08000000, 1 << 3), ("CLONE_NEWNET", 0x40000000, 1 << 4),
    ("CLONE_NEWNS", 0x00020000, 1 << 5), ("CLONE_NEWPID", 0x20000000, 1 << 6),
    ("CLONE_NEWUTS", 0x04000000, 1 << 7), ("CLONE_PARENT", 0x8000, 1 << 8),
    ("CLONE_PARENT_SETTID", 0x00100000, 1 << 9), ("CLONE_PTRACE", 0x2000, 1 << 10),
    ("CLONE_SIGHAND", 0x800, 1 << 11), ("CLONE_SYSVSEM", 0x40000, 1 << 12),
    ("CLONE_THREAD", 0x10000, 1 << 13), ("CLONE_UNTRACED", 0x00800000, 1 << 14),
    ("CLONE_VM", 0x100, 1 << 15), ("CLONE_NEWUSER", 0x10000000, 1 << 20),
    ("CLONE_CHILD_CLEARTID", 0x00200000, 1 << 23), ("CLONE_CHILD_SETTID", 0x01000000, 1 << 24),
    ("CLONE_SETTLS", 0x80000, 1 << 25), ("CLONE_VFORK", 0x4000, 1 << 27),
    ("CLONE_NEWCGROUP", 0x02000000, 1 << 28),
)

MOUNT_FLAGS: Final[FlagTable] = _same((
    ("RDONLY", 1), ("NOSUID", 2), ("NODEV", 4), ("NOEXEC", 8), ("SYNCHRONOUS", 16),
    ("REMOUNT", 32), ("MANDLOCK", 64), ("DIRSYNC", 128), ("NOATIME", 1024), ("NODIRATIME", 2048),
    ("BIND", 4096), ("MOVE", 8192), ("REC", 16384), ("SILENT", 32768), ("POSIXACL", 1 << 16),
    ("UNBINDABLE", 1 << 17), ("PRIVATE", 1 << 18), ("SLAVE", 1 << 19), ("SHARED", 1 << 20),
    ("RELATIME", 1 << 21), ("KERNMOUNT", 1 << 22), ("I_VERSION", 1 << 23),
    ("STRICTATIME", 1 << 24), ("LAZYTIME", 1 << 25), ("NOSEC", 1 << 28), ("BORN", 1 << 29),
    ("ACTIVE", 1 << 30), ("NOUSER", 1 << 31),
))
MS_MGC_MSK: Final = 0xFFFF0000
MS_MGC_VAL: Final = 0xC0ED0000

UMOUNT_FLAGS: Final[FlagTable] = _same((("FORCE", 1), ("DETACH", 2), ("EXPIRE", 4), ("NOFOLLOW", 8)))
UNLINKAT_FLAGS: Final[FlagTable] = _same((("AT_REMOVEDIR", 0x200),))
LINKAT_FLAGS: Final[FlagTable] = _same((("AT_SYMLINK_FOLLOW", 0x400), ("AT_EMPTY_PATH", 0x1000)))
RENAMEAT2_FLAGS: Final[FlagTable] = _same((
    ("RENAME_NOREPLACE", 1), ("RENAME_EXCHANGE", 2), ("RENAME_WHITEOUT", 4),
))
OPENAT2_FLAGS: Final[FlagTable] = _same((
    ("RESOLVE_BENEATH", 0x08), ("RESOLVE_IN_ROOT", 0x10), ("RESOLVE_NO_MAGICLINKS", 0x02),
    ("RESOLVE_NO_SYMLINKS", 0x04), ("RESOLVE_NO_XDEV", 0x01), ("RESOLVE_CACHED", 0x20),
))
# execve flags are Falco's own bits (the sensor reports them in this encoding).
EXECVE_FLAGS: Final[FlagTable] = _same((
    ("EXE_WRITABLE", 1), ("EXE_UPPER_LAYER", 2), ("EXE_FROM_MEMFD", 4), ("EXE_LOWER_LAYER", 8),
))
MEMFD_FLAGS: Final[FlagTable] = _same((("MFD_CLOEXEC", 1), ("MFD_ALLOW_SEALING", 2), ("MFD_HUGETLB", 4)))
FINIT_MODULE_FLAGS: Final[FlagTable] = _same((
    ("MODULE_INIT_IGNORE_MODVERSIONS", 1), ("MODULE_INIT_IGNORE_VERMAGIC", 2),
    ("MODULE_INIT_COMPRESSED_FILE", 4),
))
CHMOD_MODE: Final[FlagTable] = _same((
    ("S_IXOTH", 0o1), ("S_IWOTH", 0o2), ("S_IROTH", 0o4), ("S_IXGRP", 0o10), ("S_IWGRP", 0o20),
    ("S_IRGRP", 0o40), ("S_IXUSR", 0o100), ("S_IWUSR", 0o200), ("S_IRUSR", 0o400),
    ("S_ISVTX", 0o1000), ("S_ISGID", 0o2000), ("S_ISUID", 0o4000),
))

FLAG_TABLES: Final[dict[str, FlagTable]] = {
    "clone_flags": CLONE_FLAGS,
    "mount_flags": MOUNT_FLAGS,
    "umount_flags": UMOUNT_FLAGS,
    "unlinkat_flags": UNLINKAT_FLAGS,
    "linkat_flags": LINKAT_FLAGS,
    "renameat2_flags": RENAMEAT2_FLAGS,
    "openat2_flags": OPENAT2_FLAGS,
    "execve_flags": EXECVE_FLAGS,
    "memfd_create_flags": MEMFD_FLAGS,
    "finit_module_flags": FINIT_MODULE_FLAGS,
    "chmod_mode": CHMOD_MODE,
}

# Enum tables: (name, Linux value) in Falco's table order; rendering lists every entry equal to
# the value, so aliases (AF_LOCAL/AF_UNIX) both appear.
SOCKET_FAMILIES: Final[tuple[tuple[str, int], ...]] = (
    ("AF_NFC", 39), ("AF_ALG", 38), ("AF_CAIF", 37), ("AF_IEEE802154", 36), ("AF_PHONET", 35),
    ("AF_ISDN", 34), ("AF_RXRPC", 33), ("AF_IUCV", 32), ("AF_BLUETOOTH", 31), ("AF_TIPC", 30),
    ("AF_CAN", 29), ("AF_LLC", 26), ("AF_WANPIPE", 25), ("AF_PPPOX", 24), ("AF_IRDA", 23),
    ("AF_SNA", 22), ("AF_RDS", 21), ("AF_ATMSVC", 20), ("AF_ECONET", 19), ("AF_ASH", 18),
    ("AF_PACKET", 17), ("AF_ROUTE", 16), ("AF_NETLINK", 16), ("AF_KEY", 15), ("AF_SECURITY", 14),
    ("AF_NETBEUI", 13), ("AF_DECnet", 12), ("AF_ROSE", 11), ("AF_INET6", 10), ("AF_X25", 9),
    ("AF_ATMPVC", 8), ("AF_BRIDGE", 7), ("AF_NETROM", 6), ("AF_APPLETALK", 5), ("AF_IPX", 4),
    ("AF_AX25", 3), ("AF_INET", 2), ("AF_LOCAL", 1), ("AF_UNIX", 1), ("AF_UNSPEC", 0),
)
PTRACE_REQUESTS: Final[tuple[tuple[str, int], ...]] = (
    ("PTRACE_SINGLEBLOCK", 33), ("PTRACE_SYSEMU_SINGLESTEP", 32), ("PTRACE_SYSEMU", 31),
    ("PTRACE_ARCH_PRCTL", 30), ("PTRACE_SET_THREAD_AREA", 26), ("PTRACE_GET_THREAD_AREA", 25),
    ("PTRACE_OLDSETOPTIONS", 21), ("PTRACE_SETFPXREGS", 19), ("PTRACE_GETFPXREGS", 18),
    ("PTRACE_SETFPREGS", 15), ("PTRACE_GETFPREGS", 14), ("PTRACE_SETREGS", 13),
    ("PTRACE_GETREGS", 12), ("PTRACE_SETSIGMASK", 0x420B), ("PTRACE_GETSIGMASK", 0x420A),
    ("PTRACE_PEEKSIGINFO", 0x4209), ("PTRACE_LISTEN", 0x4208), ("PTRACE_INTERRUPT", 0x4207),
    ("PTRACE_SEIZE", 0x4206), ("PTRACE_SETREGSET", 0x4205), ("PTRACE_GETREGSET", 0x4204),
    ("PTRACE_SETSIGINFO", 0x4203), ("PTRACE_GETSIGINFO", 0x4202), ("PTRACE_GETEVENTMSG", 0x4201),
    ("PTRACE_SETOPTIONS", 0x4200), ("PTRACE_SYSCALL", 24), ("PTRACE_DETACH", 17),
    ("PTRACE_ATTACH", 16), ("PTRACE_SINGLESTEP", 9), ("PTRACE_KILL", 8), ("PTRACE_CONT", 7),
    ("PTRACE_POKEUSR", 6), ("PTRACE_POKEDATA", 5), ("PTRACE_POKETEXT", 4), ("PTRACE_PEEKUSR", 3),
    ("PTRACE_PEEKDATA", 2), ("PTRACE_PEEKTEXT", 1), ("PTRACE_TRACEME", 0),
)
BPF_COMMANDS: Final[tuple[tuple[str, int], ...]] = tuple((n, i) for i, n in enumerate((
    "BPF_MAP_CREATE", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM",
    "BPF_MAP_GET_NEXT_KEY", "BPF_PROG_LOAD", "BPF_OBJ_PIN", "BPF_OBJ_GET", "BPF_PROG_ATTACH",
    "BPF_PROG_DETACH", "BPF_PROG_TEST_RUN", "BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID",
    "BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID", "BPF_OBJ_GET_INFO_BY_FD", "BPF_PROG_QUERY",
    "BPF_RAW_TRACEPOINT_OPEN", "BPF_BTF_LOAD", "BPF_BTF_GET_FD_BY_ID", "BPF_TASK_FD_QUERY",
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "BPF_MAP_FREEZE", "BPF_BTF_GET_NEXT_ID",
    "BPF_MAP_LOOKUP_BATCH", "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH",
    "BPF_MAP_DELETE_BATCH", "BPF_LINK_CREATE", "BPF_LINK_UPDATE", "BPF_LINK_GET_FD_BY_ID",
    "BPF_LINK_GET_NEXT_ID", "BPF_ENABLE_STATS", "BPF_ITER_CREATE", "BPF_LINK_DETACH",
    "BPF_PROG_BIND_MAP",
)))

ENUM_TABLES: Final[dict[str, tuple[tuple[str, int], ...]]] = {
    "socket_families": SOCKET_FAMILIES,
    "ptrace_requests": PTRACE_REQUESTS,
    "bpf_commands": BPF_COMMANDS,
}


def _ppm_of(table: FlagTable, linux: int) -> int:
    res = 0
    for _name, lbit, pbit in table:
        if linux & lbit == lbit:
            res |= pbit
    return res


@lru_cache(maxsize=4096)
def render_flags(table_name: str, linux: int) -> str:
    """Names of the set flags joined with ``|`` in table order; the decimal value when none."""
    if table_name == "file_flags":
        val = open_flags_to_ppm(linux)
        names = []
        for name, bit in FILE_FLAGS_PPM:
            if bit and val & bit == bit:
                names.append(name)
                val &= ~bit
        return "|".join(names) if names else str(open_flags_to_ppm(linux))
    table = FLAG_TABLES.get(table_name)
    if table is None:
        return str(linux)
    if table_name == "mount_flags" and linux & MS_MGC_MSK == MS_MGC_VAL:
        linux &= ~MS_MGC_MSK
    rest = linux
    names = []
    for name, lbit, _pbit in table:
        if lbit and rest & lbit == lbit:
            names.append(name)
            rest &= ~lbit
    return "|".join(names) if names else str(raw_flags(table_name, linux))


def raw_flags(table_name: str, linux: int) -> int:
    """The value Falco's driver would report for these Linux flags."""
    if table_name == "file_flags":
        return open_flags_to_ppm(linux)
    table = FLAG_TABLES.get(table_name)
    return linux if table is None else _ppm_of(table, linux)


@lru_cache(maxsize=1024)
def render_enum(table_name: str, value: int) -> str:
    names = [n for n, v in ENUM_TABLES.get(table_name, ()) if v == value]
    return "|".join(names) if names else str(value)


def flag_names(table_name: str) -> dict[str, int]:
    """Name -> Linux bits, for parsing an already-rendered flags string."""
    if table_name == "file_flags":
        return {
            "O_RDONLY": 0, "O_WRONLY": O_WRONLY, "O_RDWR": O_RDWR, "O_CREAT": O_CREAT,
            "O_EXCL": O_EXCL, "O_TRUNC": O_TRUNC, "O_APPEND": O_APPEND, "O_NONBLOCK": O_NONBLOCK,
            "O_DSYNC": O_DSYNC, "O_DIRECT": O_DIRECT, "O_LARGEFILE": O_LARGEFILE,
            "O_DIRECTORY": O_DIRECTORY, "O_CLOEXEC": O_CLOEXEC, "O_SYNC": O_SYNC,
            "O_TMPFILE": O_TMPFILE, "O_NONE": 0, "O_F_CREATED": 0, "FD_UPPER_LAYER": 0,
            "FD_LOWER_LAYER": 0,
        }
    if table_name in ENUM_TABLES:
        return dict(ENUM_TABLES[table_name])
    return {n: lb for n, lb, _ in FLAG_TABLES.get(table_name, ())}


CAPABILITIES: Final = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


@lru_cache(maxsize=256)
def caps_to_string(caps: int) -> str:
    """Capability names of the set bits in bit order, separated by spaces."""
    return " ".join(name for bit, name in enumerate(CAPABILITIES) if caps >> bit & 1)


# errno names; Python's table leaves some aliases ambiguous, so pin the names Falco prints.
ERRNO_NAMES: Final[dict[int, str]] = {
    code: name for code, name in errno.errorcode.items() if code <= 133
}
ERRNO_NAMES.update({11: "EAGAIN", 35: "EDEADLK", 95: "EOPNOTSUPP"})


def errno_name(res: int) -> str:
    """``-2`` -> ``ENOENT``; an unknown code -> its decimal string."""
    return ERRNO_NAMES.get(-res) or str(res)
