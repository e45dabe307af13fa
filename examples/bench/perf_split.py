#!/usr/bin/env python3
"""Where the client's CPU goes, from a perf recording of the 8 callers.

    perf record -F 5000 -g -o callers.data ./target/release/examples/bench --only callers
    perf script -i callers.data -F comm,ip,sym | python3 examples/bench/perf_split.py

Each sample of a client-side thread (the library's threads and the bench's
callers; the server process is left out) is put in one class by the system
call on its stack: a park (futex wait), a wake-up (futex wake), sendto,
recvfrom, other kernel work, or user space. Prints each class's share.
"""
import collections
import sys

CLIENT = {"flamingo-conn", "flamingo-send", "bench-distinct", "bench"}


def classify(frames):
    s = " ".join(frames)
    if "futex_wait" in s:
        return "park (futex wait)"
    if "futex_wake" in s:
        return "wake-up (futex wake)"
    if "__x64_sys_sendto" in s:
        return "sendto"
    if "__x64_sys_recvfrom" in s:
        return "recvfrom"
    if "entry_SYSCALL" in s or "asm_" in s:
        return "other kernel"
    return "user space"


def main():
    shares = collections.Counter()
    switch_in = 0
    total = 0
    comm, frames = None, []

    def sample():
        nonlocal total, switch_in
        if comm in CLIENT:
            total += 1
            shares[classify(frames)] += 1
            if frames and frames[0].startswith("finish_task_switch"):
                switch_in += 1

    for line in sys.stdin:
        if not line.strip():
            sample()
            comm, frames = None, []
        elif not line.startswith((" ", "\t")):
            sample()
            comm, frames = line.split()[0], []
        else:
            parts = line.split()
            if len(parts) >= 2:
                frames.append(parts[1])
    sample()
    if total == 0:
        sys.exit("no samples of the client's threads")
    for name, n in shares.most_common():
        print(f"{name:24} {100 * n / total:5.1f} %")
    print(f"{'(switched back in)':24} {100 * switch_in / total:5.1f} %  (samples whose leaf is finish_task_switch)")
    print(f"samples: {total}")


main()
