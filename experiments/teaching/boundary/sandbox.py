"""The operating system's sandbox around a learner's process (Linux): what it may touch.

Called once by the learner's process (``learner.main``) after Python, numpy and handgrad's
own few modules are loaded and before the learner's file is read, while the process has
one thread. Each layer is the kernel's own mechanism, reached through ``ctypes`` (the
system calls are a stable, documented interface; docs/check.md says why no third-party
binding is used):

* **no new privileges** (``PR_SET_NO_NEW_PRIVS``), and every capability dropped from the
  bounding, permitted, effective and ambient sets: a teacher running as root gives the
  learner a uid-0 process with none of root's powers;
* **Landlock** (Linux ≥ 5.13; the ABI the kernel offers decides which rules hold):
  reading only the Python installation, the system's libraries, its own ``/proc/self``,
  the CPU and memory facts numerical libraries read, and a few device and configuration
  files (not other processes' command lines, nor root-only files of /proc and /sys);
  reading and writing only the working folder; no TCP bind or connect (ABI ≥ 4); no
  signal to, and no abstract-socket connection with, any process outside the sandbox
  (ABI ≥ 6) — so not to handgrad;
* **seccomp**: no new process (fork, vfork, clone without CLONE_THREAD; threads are fine),
  no socket, no namespace, mount, ptrace, BPF, keyring, module or reboot call, no
  fallocate or memfd (space that escapes RLIMIT_FSIZE and RLIMIT_AS); signals, resource
  limits and scheduling only for itself (a teacher's processes share its uid); its
  parent-death signal fixed. With no process of its own, a learner leaves none behind.

``confine`` returns what could not be applied (an old kernel, another OS); the learner's
process reports it and handgrad says so once (``process.SandboxReport``). It imports only
the standard library.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

_libc = ctypes.CDLL(None, use_errno=True)

# -- prctl and capabilities ------------------------------------------------------------------
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAP_VERSION_3 = 0x20080522


def _prctl(*args: int) -> int:
    return _libc.prctl(*(ctypes.c_ulong(a) for a in args))


def _drop_capabilities() -> None:
    """Empty the bounding set (so an exec as uid 0 gains nothing), the ambient set, and the
    permitted/effective/inheritable sets (capset)."""
    for cap in range(64):
        if _prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break   # past the last capability this kernel knows
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = struct.pack("=Ii", _CAP_VERSION_3, 0)
    data = bytes(24)   # two {effective, permitted, inheritable} u32 triples, all zero
    h, d = ctypes.create_string_buffer(header), ctypes.create_string_buffer(data)
    if _libc.capset(h, d) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


# -- Landlock --------------------------------------------------------------------------------
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446   # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (1 << 13) - 1          # execute ... make_sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers; 0 where there is none."""
    if sys.platform != "linux":
        return 0
    abi = _libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(abi, 0)


def _fs_rights(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def _landlock(abi: int, read: list[str], write: list[str], devices: dict[str, int]) -> None:
    """Restrict this thread (and its future threads) to the rules of the module docstring."""
    handled_fs = _fs_rights(abi)
    handled_net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    buf = ctypes.create_string_buffer(attr[:size])
    fd = _libc.syscall(_SYS_CREATE, buf, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, READ) for p in read] + [(p, handled_fs) for p in write]
        rules += [(p, rights) for p, rights in devices.items()]
        for path, rights in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue   # not on this machine
            try:
                if not os.path.isdir(path):
                    rights &= _FILE_RIGHTS
                rights &= handled_fs
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, pfd))
                if _libc.syscall(_SYS_ADD_RULE, ctypes.c_int(fd),
                                 ctypes.c_int(_RULE_PATH_BENEATH), rule,
                                 ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
            finally:
                os.close(pfd)
        if _libc.syscall(_SYS_RESTRICT, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)


# -- seccomp ---------------------------------------------------------------------------------
#: architecture -> (AUDIT_ARCH value, seccomp(2) number, {name: number}); the calls denied
_ARCHES = {
    "x86_64": (0xC000003E, 317, {
        "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "socket": 41, "socketpair": 53,
        "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
        "chroot": 161, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "bpf": 321, "perf_event_open": 298, "keyctl": 250, "add_key": 248,
        "request_key": 249, "userfaultfd": 323, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "reboot": 169,
        "swapon": 167, "swapoff": 168, "acct": 163, "io_uring_setup": 425,
        "open_by_handle_at": 304, "fsopen": 430, "fsmount": 432, "open_tree": 428,
        "move_mount": 429, "pidfd_open": 434, "pidfd_send_signal": 424, "tkill": 200,
        "pidfd_getfd": 438, "kcmp": 312, "migrate_pages": 256, "move_pages": 279,
        "process_madvise": 440, "process_mrelease": 448, "get_robust_list": 274,
        "setpriority": 141, "ioprio_set": 251, "fallocate": 285, "memfd_create": 319,
        "memfd_secret": 447, "kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129,
        "rt_tgsigqueueinfo": 297, "prlimit64": 302, "sched_setaffinity": 203,
        "sched_setscheduler": 144, "sched_setparam": 142, "sched_setattr": 314,
        "prctl": 157,
    }),
    "aarch64": (0xC00000B7, 277, {
        "clone": 220, "clone3": 435, "socket": 198, "socketpair": 199, "unshare": 97,
        "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "bpf": 280,
        "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218,
        "userfaultfd": 282, "init_module": 105, "finit_module": 273, "delete_module": 106,
        "kexec_load": 104, "kexec_file_load": 294, "reboot": 142, "swapon": 224,
        "swapoff": 225, "acct": 89, "io_uring_setup": 425, "open_by_handle_at": 265,
        "fsopen": 430, "fsmount": 432, "open_tree": 428, "move_mount": 429,
        "pidfd_open": 434, "pidfd_send_signal": 424, "tkill": 130, "pidfd_getfd": 438,
        "kcmp": 272, "migrate_pages": 238, "move_pages": 239, "process_madvise": 440,
        "process_mrelease": 448, "get_robust_list": 100, "setpriority": 140,
        "ioprio_set": 30, "fallocate": 47, "memfd_create": 279, "memfd_secret": 447,
        "kill": 129, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
        "prlimit64": 261, "sched_setaffinity": 122, "sched_setscheduler": 119,
        "sched_setparam": 118, "sched_setattr": 274, "prctl": 167,
    }),
}
_LD, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_CLONE_THREAD = 0x00010000
_PR_SET_PDEATHSIG = 1
#: calls allowed only on this process itself (``seccomp_filter``)
_OWN_PID = ("kill", "rt_sigqueueinfo", "tgkill", "rt_tgsigqueueinfo", "prlimit64",
            "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")
_X32_BIT = 0x40000000


def _errno(code: int) -> int:
    return 0x00050000 | code


def seccomp_filter(machine: str, pid: int) -> list[tuple[int, int, int, int]]:
    """The BPF program (code, jt, jf, k) for ``machine``: the calls of ``_ARCHES`` fail with
    EPERM (clone3 with ENOSYS, so that a C library falls back to clone, whose flags can be
    read); clone is allowed for a thread; the ``_OWN_PID`` calls (a signal, a resource
    limit, scheduling) may name this process (``pid``) only; prctl may do anything but
    change the parent-death signal."""
    arch, _, nr = _ARCHES[machine]
    prog: list[tuple[int, int, int, int]] = []
    rets: list[tuple[int, int]] = []   # (index of a jump, return value) to patch

    def jump_to(value: int, cond: int, k: int) -> None:
        prog.append((cond, 0, 0, k))
        rets.append((len(prog) - 1, value))

    prog += [(_LD, 0, 0, 4)]                           # seccomp_data.arch
    prog += [(_JEQ, 1, 0, arch), (_RET, 0, 0, _KILL_PROCESS)]
    prog += [(_LD, 0, 0, 0)]                           # seccomp_data.nr
    if machine == "x86_64":                            # x32 system calls: refused
        jump_to(_errno(errno.EPERM), _JGE, _X32_BIT)
    own_pid_calls = {nr[n]: n for n in _OWN_PID}
    for name, number in nr.items():
        if name in ("clone", "prctl") or number in own_pid_calls:
            continue
        jump_to(_errno(errno.ENOSYS if name == "clone3" else errno.EPERM), _JEQ, number)
    # prctl: PR_SET_PDEATHSIG refused (the process dies with its parent, and stays so)
    prog += [(_JEQ, 0, 4, nr["prctl"]), (_LD, 0, 0, 16), (_JEQ, 0, 1, _PR_SET_PDEATHSIG),
             (_RET, 0, 0, _errno(errno.EPERM)), (_RET, 0, 0, _ALLOW)]
    # clone: allowed for a thread only (args[0], the flags, low 32 bits)
    prog += [(_JEQ, 0, 4, nr["clone"]), (_LD, 0, 0, 16), (_JSET, 1, 0, _CLONE_THREAD),
             (_RET, 0, 0, _errno(errno.EPERM)), (_RET, 0, 0, _ALLOW)]
    # calls on a process (signals, resource limits, scheduling): args[0] must be this pid,
    # its group (-pid) or 0 (itself); a teacher's other processes share its uid, so the
    # kernel's own same-uid rule would let a learner reach them. A block that does not
    # match jumps past itself with the number still in the accumulator.
    own = [pid & 0xFFFFFFFF, (-pid) & 0xFFFFFFFF, 0]
    for number in own_pid_calls:
        prog += [(_JEQ, 0, 6, number), (_LD, 0, 0, 16)]
        prog += [(_JEQ, 3, 0, own[0]), (_JEQ, 2, 0, own[1]), (_JEQ, 1, 0, own[2])]
        prog += [(_RET, 0, 0, _errno(errno.EPERM)), (_RET, 0, 0, _ALLOW)]
    prog += [(_RET, 0, 0, _ALLOW)]
    # the denied calls' returns, after the program, each jumped to from its test
    for i, value in rets:
        code, _, _, k = prog[i]
        prog.append((_RET, 0, 0, value))
        prog[i] = (code, len(prog) - 1 - i - 1, 0, k)
    return prog


def _seccomp(machine: str) -> None:
    _, number, _ = _ARCHES[machine]
    prog = seccomp_filter(machine, os.getpid())
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    filt = ctypes.create_string_buffer(raw)
    fprog = ctypes.create_string_buffer(struct.pack("@HP", len(prog), ctypes.addressof(filt)))
    SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 1, 1
    if _libc.syscall(number, ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                     ctypes.c_uint(SECCOMP_FILTER_FLAG_TSYNC), fprog) != 0:
        raise OSError(ctypes.get_errno(), "seccomp failed")


# -- all layers ------------------------------------------------------------------------------
#: files outside the Python installation that Python, numpy and torch read at run time
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/proc/self", "/proc/cpuinfo",
               "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu",
               "/sys/devices/system/node", "/sys/fs/cgroup", "/etc/ld.so.cache",
               "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
               "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/os-release",
               "/usr/share/zoneinfo")
DEVICES = {"/dev/null": FS_READ_FILE | FS_WRITE_FILE | _FS_TRUNCATE,
           "/dev/zero": FS_READ_FILE, "/dev/full": FS_READ_FILE | FS_WRITE_FILE,
           "/dev/urandom": FS_READ_FILE, "/dev/random": FS_READ_FILE}


def inside(path: str, folders) -> bool:
    """``path`` is one of ``folders`` or lies below one (whole path components)."""
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def python_paths() -> list[str]:
    """The Python installation: its prefixes, and the folders on sys.path inside them or
    named site-packages / dist-packages (a venv's, or a user site)."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                              sys.base_exec_prefix)}
    out = set(prefixes)
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if os.path.isdir(real) and (inside(real, prefixes) or os.path.basename(
                real) in ("site-packages", "dist-packages")):
            out.add(real)
    return sorted(out)


def confine(work: str) -> list[str]:
    """Apply every layer (module docstring) to this process, with ``work`` its only
    writable folder; return what could not be applied, one short phrase each."""
    missing = []
    if sys.platform != "linux":
        return [f"{platform.system()} has no Landlock or seccomp"]
    if _prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        missing.append("no_new_privs was refused")
    try:
        _drop_capabilities()
    except OSError as err:
        missing.append(f"capabilities could not be dropped ({err.strerror})")
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:   # Landlock (ABI < 8) confines the calling thread and its new ones only
        missing.append(f"Landlock confines 1 of this process's {threads} threads")
    abi = landlock_abi()
    if abi == 0:
        missing.append("the kernel offers no Landlock (Linux >= 5.13 with landlock in its "
                       "LSM list): files, network and signals are not confined")
    else:
        try:
            _landlock(abi, [*python_paths(), *SYSTEM_READ], [work], DEVICES)
        except OSError as err:
            missing.append(f"Landlock could not be applied ({err})")
        else:
            if abi < 4:
                missing.append(f"Landlock ABI {abi} < 4: TCP is not confined")
            if abi < 6:
                missing.append(f"Landlock ABI {abi} < 6: signals to other processes are "
                               f"not confined")
    machine = platform.machine()
    if machine not in _ARCHES:
        missing.append(f"no seccomp filter for {machine}: new processes are not refused")
    else:
        try:
            _seccomp(machine)
        except OSError as err:
            missing.append(f"seccomp could not be applied ({err})")
    return missing
