#!/usr/bin/env python3
"""Instructions per forwarded packet of rvsd's whole worker thread, ports
included, counted by valgrind's callgrind on the port benchmark's set-up
(bench/throughput.py: the load generator's 65,536 flows of 64-byte UDP
into memif, forwarded into net_null), split into the memif receive, the
net_null transmit (what testpmd io-forward also runs for every packet),
the pipeline (Pipeline::classify) and the rest of the worker (its loop,
the prefetch stages, the bursts). This is what the port throughput ratio
is made of; callgrind counts the same whatever the machine's noise.
The lean forwarder (bench/src/bin/leanfwd.rs, the port benchmark's
yardstick) is counted the same way, first: its lookup and rewrite fall in
the last column.

Under callgrind rvsd runs some 50 times slower than the generator sends, so
nearly every poll finds frames (about 9 a receive for rvsd, 11 for the lean
forwarder, counted in session 11). Counted too, and spread over the packets:
opening the 65,536 connections (about 75 million instructions in the
pipeline: 5-10 a packet at 15-25 s) and the polls before the generator
starts (a fraction of a percent); longer runs dilute both.

usage: bench/worker_profile.py [SECONDS]    (as root; default 20 s per mode)
       MODES="lean dr" bench/worker_profile.py   (a subset)
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput as tp  # noqa: E402  (its set-up, devices, rvsd start and generator)

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
# "lean": the lean forwarder (bench/src/bin/leanfwd.rs), the yardstick of
# bench/throughput.py: its forwarding lcore, ports included (its lookup and
# rewrite are the "rest of the worker" column: it has no Pipeline::classify).
MODES = os.environ.get("MODES", "lean dr nat fullnat tun").split()
# Callgrind's cache simulation, to count the data misses per packet too:
# a first level of this machine's 48 KiB (12-way), and as the last level
# its 1 MiB L2 (16-way): the cache a core has to itself, which the
# connection table's lines and the frames' buffers compete for (the
# shared 32 MiB L3 holds the benchmark's whole table). The simulation
# does not see the generator's writes to the memif rings (another
# process): ring lines miss only when evicted, so these are the
# forwarder's own footprint, not the cross-core traffic. An L2 miss here
# is an L3 hit on this machine, which the prefetch stages mostly hide: a
# layout with fewer of them was slower in time (session 14, RESULTS' port
# section); judge such changes with bench/time_profile.py.
CACHE_SIM = ["--cache-sim=yes", "--D1=49152,12,64", "--LL=1048576,16,64"]
# Inclusive cost of these functions (the largest line naming them:
# callgrind_annotate names a function once per source file it has lines
# in), per forwarded packet.
PORT_PARTS = [
    ("memif receive", r"static_fns\.c:rte_eth_rx_burst__extern"),
    ("net_null transmit", r"static_fns\.c:rte_eth_tx_burst__extern"),
]
PARTS = PORT_PARTS + [("pipeline (classify)", r"pipeline\.rs:dataplane::pipeline::Pipeline::classify")]


def profile(mode, work):
    """Runs rvsd in `mode` under callgrind; returns (forwarded packets,
    the worker thread's callgrind file)."""
    out = os.path.join(work, f"cg-{mode}")
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--separate-threads=yes", *CACHE_SIM]
    dut, log, socket = tp.start_rvsd(mode, work, wrapper=valgrind, stats_interval=5, wait_s=120)
    gen_log = tp.generator_log(socket)
    gen = tp.generator(socket, gen_log, seconds=SECONDS)
    # SIGTERM: rvsd prints its final counters and exits; under callgrind,
    # in a slow phase of the machine, that and writing the profiles can
    # take well over stop()'s usual 10 s (killed, it leaves no profile).
    tp.finish(gen, gen_log, dut, within=SECONDS + 60, dut_timeout=180)
    log.seek(0)
    text = log.read()
    forwarded = [int(x) for x in re.findall(r"stats lcore=\d+ .*? forwarded=(\d+)", text)]
    return counted(work, f"cg-{mode}-", f"rvsd ({mode})", forwarded, text)


def counted(work, prefix, what, forwarded, text):
    """(the last of the `forwarded` counts, the callgrind file named
    `prefix`... of the thread that ran the most instructions: the
    forwarding one); the run ends, saying why, if it forwarded nothing or
    left no profile."""
    if not forwarded or forwarded[-1] == 0:
        # Say what it said: a run that forwarded nothing is a finding to
        # look into, not a number.
        tail = "\n".join(text.splitlines()[-15:])
        sys.exit(f"worker_profile: {what} forwarded nothing; the end of its log:\n{tail}")
    files = [os.path.join(work, f) for f in os.listdir(work) if f.startswith(prefix)]
    if not files:
        sys.exit(f"worker_profile: {what} under callgrind left no profile")
    return forwarded[-1], max(files, key=total)


def profile_lean(work):
    """The lean forwarder under callgrind on the same devices and load:
    returns (forwarded packets, its forwarding thread's callgrind file).
    Only its forwarding proper is counted (leanfwd::forwarding, from the
    first received burst on: not the idle polls while the generator
    connects), and it stops by itself SECONDS after its first frame, while
    the generator still sends."""
    out = os.path.join(work, "cg-lean")
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--separate-threads=yes",
                "--toggle-collect=*leanfwd::forwarding*", "--fair-sched=yes", *CACHE_SIM]
    dut, log, socket = tp.start_lean(work, wrapper=valgrind, options=["--seconds", str(SECONDS)], wait_s=120)
    gen = tp.generator(socket)
    try:
        dut.wait(SECONDS + 180)
    except subprocess.TimeoutExpired:
        tp.stop(dut, timeout=180)
    tp.stop(gen)
    log.seek(0)
    text = log.read()
    done = [int(x) for x in re.findall(r"leanfwd: done fwd_total=(\d+)", text)]
    return counted(work, "cg-lean-", "leanfwd", done, text)


def summary(path):
    """The thread's totals by event (Ir, and with the cache simulation
    Dr, Dw, D1mr, D1mw, DLmr, DLmw, ...)."""
    events, counts = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                counts = [int(x) for x in line.split()[1:]]
    return dict(zip(events, counts))


def total(path):
    return summary(path).get("Ir", 0)


def inclusive(path, parts=PARTS):
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--show=Ir", "--threshold=100", path], capture_output=True, text=True, check=True).stdout
    costs = {}
    for name, pattern in parts:
        found = [int(c.replace(",", "")) for c in re.findall(r"^\s*([\d,]+) \(.*" + pattern, text, re.M)]
        if not found:
            sys.exit(f"worker_profile: no {name} ({pattern}) in callgrind's report of {path}")
        costs[name] = max(found)
    return costs


def main():
    tp.prepare()
    if subprocess.run(["sh", "-c", "command -v valgrind"], capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True, capture_output=True)
    print("| mode | packets forwarded | worker thread, instructions per packet | " + " | ".join(n for n, _ in PARTS)
          + " | rest of the worker | data misses per packet, 48 KiB L1 | data misses per packet, 1 MiB L2 |")
    print("|---|---|---|" + "---|" * (len(PARTS) + 3))
    with tempfile.TemporaryDirectory(prefix="rvs-wprof-") as work:
        for mode in MODES:
            lean = mode == "lean"
            forwarded, worker = profile_lean(work) if lean else profile(mode, work)
            whole, parts = total(worker), inclusive(worker, PORT_PARTS if lean else PARTS)
            per = {n: c / forwarded for n, c in parts.items()}
            rest = (whole - sum(parts.values())) / forwarded
            cells = " | ".join(f"{per[n]:.0f}" if n in per else "-" for n, _ in PARTS)
            ev = summary(worker)
            l1 = (ev.get("D1mr", 0) + ev.get("D1mw", 0)) / forwarded
            l2 = (ev.get("DLmr", 0) + ev.get("DLmw", 0)) / forwarded
            print(f"| {mode} | {forwarded:,} | {whole / forwarded:.0f} | {cells} | {rest:.0f} | {l1:.2f} | {l2:.2f} |", flush=True)


if __name__ == "__main__":
    main()
