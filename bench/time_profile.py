#!/usr/bin/env python3
"""Where the forwarding core's time goes at full load, in nanoseconds per
packet: the port benchmark's set-up (bench/throughput.py: the load
generator's 64-byte UDP into memif, forwarded into net_null), with
`perf record -e cpu-clock` sampling the forwarding CPU while the rate is
read from the forwarder's own counters over the same seconds.

Callgrind (bench/worker_profile.py) counts instructions, whatever the
machine's noise; this samples time, which is what the throughput ratio is
made of: cache misses (the table's lines, the frames crossing from the
generator's core) and system calls weigh here, not there. The forwarding
lcore busy-polls CPU 1, so its samples are all of that CPU's time, and a
component's share of them times the time per packet (one second over the
packets of that second) is its nanoseconds per packet. Components: each
shared object (the memif receive, the net_null transmit, the forwarder's
own code, the kernel, libc, the dynamic loader's TLS lookups that DPDK's
shared libraries make), and for rvsd its worker loop (prefetch stages,
bursts) and its pipeline apart. The contenders: testpmd io-forward (the
ceiling), the lean forwarder (bench/src/bin/leanfwd.rs), rvsd in each mode.

Absolute times swing with this machine's phases (ENVIRONMENT.md); the
split of each contender's time, and contenders measured in the same
minute, are what to compare.

usage: bench/time_profile.py [SECONDS]        (as root; default 6 s each)
       MODES="ceiling lean dr" bench/time_profile.py   (a subset)
       KEEP_PERF_DATA=DIR bench/time_profile.py ...     (keep each perf.data there,
                                                         e.g. for perf annotate)
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput as tp  # noqa: E402  (its set-up, devices, starts and generator)

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
MODES = os.environ.get("MODES", "ceiling lean dr nat fullnat tun").split()
# The forwarding lcore's CPU (throughput.py's EAL lcores "0@0,1@1": the
# main lcore and the generator share CPU 0).
CPU = "1"
# Components by shared object (perf's dso column), in report order.
OBJECTS = [
    ("memif", "librte_net_memif"),
    ("net_null", "librte_net_null"),
    ("kernel", "[kernel.kallsyms]"),
    ("libc", "libc.so"),
    ("TLS lookups", "ld-linux"),
    ("clock", "[vdso]"),
]
# Within rvsd's own code: the pipeline (never inlined) apart from the
# worker loop around it.
PIPELINE = "dataplane::pipeline::Pipeline::classify"


def start(mode, work):
    """The contender `mode`, started and fed; returns (process, its log,
    the generator)."""
    if mode == "ceiling":
        dut, log, socket = tp.start_ceiling(work)
    elif mode == "lean":
        dut, log, socket = tp.start_lean(work)
    else:
        dut, log, socket = tp.start_rvsd(mode, work)
    gen_log = tp.generator_log(socket)
    # Sending through the warm-up, the sampled seconds and perf's start.
    return dut, log, tp.generator(socket, gen_log, seconds=tp.WARMUP + SECONDS + 3), gen_log


def shares(data, key):
    """perf's report of `data` sorted by `key`: {name: percent}."""
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", key], capture_output=True, text=True).stdout
    result = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(?:\[\.\]\s+|\[k\]\s+)?(.+?)\s*$", line)
        if m and not line.lstrip().startswith("#"):
            result[m.group(2)] = float(m.group(1))
    return result


def profile(mode, work):
    """(packets per second while sampled, {component: percent of the
    CPU's samples}, the share of the sampled seconds the forwarder was
    saturated: `throughput.saturation`)."""
    dut, log, gen, gen_log = start(mode, work)
    time.sleep(tp.WARMUP + 1)
    data = os.path.join(work, f"perf-{mode}.data")
    before = len(tp.rates(mode, (log.seek(0), log.read())[1]))
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "5000", "-C", CPU, "-o", data, "--", "sleep", str(SECONDS)],
                   check=True, capture_output=True)
    after = len(tp.rates(mode, (log.seek(0), log.read())[1]))
    tp.finish(gen, gen_log, dut, within=20)
    sat = tp.saturation(gen_log, tp.WARMUP + 1, SECONDS)
    log.seek(0)
    # The seconds logged while perf sampled (the first and last partly).
    sampled = [r for r in tp.rates(mode, log.read())[before:after] if r > 0]
    if not sampled:
        sys.exit(f"time_profile: {mode} forwarded nothing while sampled")
    by_object = shares(data, "dso")
    parts = {}
    for name, pattern in OBJECTS:
        parts[name] = sum(v for k, v in by_object.items() if pattern in k)
    own = sum(v for k, v in by_object.items() if not any(p in k for _, p in OBJECTS))
    if mode not in ("ceiling", "lean"):
        pipeline = sum(v for k, v in shares(data, "sym").items() if PIPELINE in k)
        parts["own: pipeline"] = pipeline
        parts["own: worker loop"] = own - pipeline
    else:
        parts["own"] = own
    return statistics.median(sampled), parts, sat


def main():
    if not shutil.which("perf"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "linux-perf"], check=True, stdout=subprocess.DEVNULL)
    tp.prepare()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rvs-tprof-") as work:
        keep = os.environ.get("KEEP_PERF_DATA")
        for mode in MODES:
            pps, parts, sat = profile(mode, work)
            rows.append((mode, pps, parts, sat))
            if keep:
                os.makedirs(keep, exist_ok=True)
                os.replace(os.path.join(work, f"perf-{mode}.data"), os.path.join(keep, f"perf-{mode}.data"))
            print(f"{mode}: {pps / 1e6:.2f} Mpps, {tp.saturation_note(sat)}, " + ", ".join(f"{k} {v:.1f}%" for k, v in parts.items() if v), flush=True)
    names = [n for n, _ in OBJECTS] + ["own", "own: worker loop", "own: pipeline"]
    names = [n for n in names if any(n in p for _, _, p, _ in rows)]
    print()
    print("| forwarder | Mpps while sampled | forwarder saturated | ns per packet | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for mode, pps, parts, sat in rows:
        ns = 1e9 / pps
        cells = [f"{parts[n] / 100 * ns:.1f}" if parts.get(n) else "-" for n in names]
        print(f"| {mode} | {pps / 1e6:.2f} | {'-' if sat is None else f'{sat:.0%}'} | {ns:.1f} | " + " | ".join(cells) + " |")
    print("\n(ns per packet of each component: its share of CPU " + CPU + "'s cpu-clock samples times the time per packet; "
          "\"forwarder saturated\": the share of the seconds the generator found its ring full. Below it the generator set the rate, "
          "the forwarder polled an empty ring part of the time, and that time is in its memif column: compare components of saturated runs)")


if __name__ == "__main__":
    main()
