#!/usr/bin/env python3
"""Issue 8's targets against one run of `bench/run.sh`: reads the run's
output (run.sh keeps it in a log and calls this at its end) and prints each
target, what this run measured for it, and whether it was met, by how much
it was missed if not. Nothing here is typed in by hand: a part the log
lacks (a run cut short) is reported as not measured.

The port ratios depend on this machine's phase (ENVIRONMENT.md). Two
figures of the same run say which it met: the lean forwarder's ratio
(0.95-1.04 when the generator was steady, about 0.5 in mixed phases; the
verdict says so below 0.9) and RVS's in-process time a packet (about
twice its fast-phase time in slow phases of the core, which the lean
forwarder, with little work of its own, rides through). Instruction
counts do not depend on the phase.

usage: bench/verdict.py LOG
"""
import re
import statistics
import sys

# The targets (issue 8).
DR_TUN_MAX = 300
NAT_FULLNAT_MAX = 400
NEW_MAX = 2000
LOOKUP_MAX_RATIO = 2.0
PORT_MIN_RATIO = 0.9
NFT_MIN_RATIO = 1.0
HAPROXY_MIN_RATIO = 2.0
# pipeline_bench time's DR figure at 1,024 flows in a fast phase of the
# project's 2-vCPU VM (sessions 13 and 14's full runs: 13.5 and 13.4 ns;
# session 10's 14.0; bench/RESULTS.md): the yardstick of the
# machine's pace in a run (the lean forwarder's ratio says only whether
# the generator was steady: its own work is small enough to keep up
# through a slow phase of the forwarding core, RVS's is not).
FAST_PHASE_DR_NS = 13.5
# The lean forwarder keeps at least this much of the ceiling in a steady
# phase (bench/RESULTS.md, port section); below it, the run met a mixed or
# slow phase.
STEADY_LEAN = 0.9
# How the modes are named in the verdict (the logs use the lower-case
# word; realtcp.sh prefixes its RVS contenders with "rvs-").
LABEL = {"dr": "DR", "nat": "NAT", "fullnat": "FullNAT", "tun": "TUN"}


def table_rows(log, cells):
    """The markdown table rows of `log` with `cells` cells, as lists of
    stripped strings (header and separator rows included).

    >>> table_rows("| a | b |\\n|---|---|\\n| x | 1 |\\n| y | 2 | 3 |", 2)
    [['a', 'b'], ['---', '---'], ['x', '1']]
    """
    rows = []
    for line in log.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            row = [c.strip() for c in line[1:-1].split("|")]
            if len(row) == cells:
                rows.append(row)
    return rows


def instructions(log):
    """bench/pipeline.sh's counts: {case: instructions per packet}.

    >>> instructions("| mode | instructions per packet |\\n|---|---|\\n| established-dr | 241 |\\n| new | 1119 |\\n| rr | 17.6 |")
    {'established-dr': 241, 'new': 1119}
    """
    return {name: int(n) for name, n in table_rows(log, 2)
            if (name.startswith("established") or name == "new") and n.isdigit()}


def lookups(log):
    """pipeline_bench lookup's table: {connections: [seven columns]}.

    >>> lookups("| 1000 | 7.5 | 9.4 | 5.3 | 7.6 | 7.4 | 8.7 | 205 |\\n| 10000000 | 12.0 | 42.0 | 236.2 | 10.5 | 12.5 | 27.1 | 159 |")
    {1000: [7.5, 9.4, 5.3, 7.6, 7.4, 8.7, 205.0], 10000000: [12.0, 42.0, 236.2, 10.5, 12.5, 27.1, 159.0]}
    """
    out = {}
    for row in table_rows(log, 8):
        if row[0].isdigit():
            try:
                out[int(row[0])] = [float(c) for c in row[1:]]
            except ValueError:
                pass
    return out


def port_ratios(log):
    """bench/throughput.py's top of each one's per-second samples over all
    rounds: ({forwarder: ratio to the ceiling}, the ceiling's Mpps, which
    top). The best fifth of each one's seconds where the log has it (the
    same share of every distribution), else (logs before session 19) the
    10 best seconds of each.

    >>> port_ratios("Mean of the 10 best seconds over all rounds (samples: ceiling 55, lean 24): ceiling 39.84 Mpps (1.00), lean 21.06 Mpps (0.53), dr 24.10 Mpps (0.61)")
    ({'ceiling': 1.0, 'lean': 0.53, 'dr': 0.61}, 39.84, 'the 10 best seconds of each')
    >>> port_ratios("Mean of the 10 best seconds over all rounds (samples: x): ceiling 39.84 Mpps (1.00), dr 24.10 Mpps (0.61)\\nMean of the best 20% of each one's seconds over all rounds (the same share of every distribution; the ceiling has more samples, so its 10 best are a higher part of its own): ceiling 38.00 Mpps (1.00), dr 25.00 Mpps (0.66)")
    ({'ceiling': 1.0, 'dr': 0.66}, 38.0, "the best 20% of each one's seconds")
    >>> port_ratios("nothing here")
    ({}, None, None)
    """
    lines = log.splitlines()
    for start, what in ((r"Mean of the best (\d+%) of each one's seconds", "the best {} of each one's seconds"),
                        (r"Mean of the (\d+) best seconds over all rounds", "the {} best seconds of each")):
        line = next((l for l in lines if re.match(start, l)), None)
        if line is None:
            continue
        _, _, figures = line.partition("):")
        found = re.findall(r"(\w+) ([\d.]+) Mpps \(([\d.]+)\)", figures)
        ratios = {name: float(ratio) for name, _, ratio in found}
        ceiling = next((float(mpps) for name, mpps, _ in found if name == "ceiling"), None)
        return ratios, ceiling, what.format(re.match(start, line).group(1))
    return {}, None, None


def pipeline_dr_ns(log):
    """pipeline_bench time's DR figure at 1,024 flows without the restore:
    how fast the machine ran this run's in-process work (its fast phases
    13.5-14 ns, its slow ones up to twice that; bench/RESULTS.md).

    >>> pipeline_dr_ns("established DR flow, 1024 flows, client to server, frames restored a burst at a time: 28.7 ns/packet, 25.5 without the restore (median of 7 x 2M)")
    25.5
    >>> pipeline_dr_ns("") is None
    True
    """
    m = re.search(r"established DR flow, 1024 flows, client to server, frames restored a burst at a time: [\d.]+ ns/packet, ([\d.]+) without", log)
    return float(m.group(1)) if m else None


def real_tcp(log):
    """bench/realtcp.sh's medians: {contender: {key: value}}.

    >>> real_tcp("  rvs-dr cps=13203.89 gbps=3.329 vs-nft=1.35x vs-haproxy=1.71x vs-direct=0.96x\\nround 1 nft cps 1.0")
    {'rvs-dr': {'cps': 13203.89, 'gbps': 3.329, 'vs-nft': 1.35, 'vs-haproxy': 1.71, 'vs-direct': 0.96}}
    """
    out = {}
    for line in log.splitlines():
        m = re.fullmatch(r"\s+([\w-]+) ((?:[\w-]+=[\d.]+x? ?)+)", line)
        if m:
            out[m.group(1)] = {k: float(v.rstrip("x")) for k, v in re.findall(r"([\w-]+)=([\d.]+x?)", m.group(2))}
    return out


def at_most(values, limit):
    """The verdict on counts that must be at most `limit`.

    >>> at_most({"a": 241, "b": 300}, 300)
    'met'
    >>> at_most({"a": 241, "b": 309}, 300)
    'missed: b 9 over'
    >>> at_most({}, 300)
    'not measured'
    """
    if not values:
        return "not measured"
    over = [f"{k} {v - limit} over" for k, v in values.items() if v > limit]
    return "met" if not over else "missed: " + ", ".join(over)


def shortfall(gaps):
    """How far below their target some figures are, as a range.

    >>> shortfall([0.44]), shortfall([0.29, 0.48, 0.38])
    ('0.44', '0.29-0.48')
    """
    return f"{min(gaps):.2f}-{max(gaps):.2f}" if len(gaps) > 1 else f"{gaps[0]:.2f}"


def counts_rows(counts):
    """Rows for the instruction-count targets.

    >>> for row in counts_rows({"established-dr": 241, "established-tun-tcp": 301, "established-nat-reply": 316}):
    ...     print(row[1:])
    ('DR 241, TUN TCP 301', 'missed: TUN TCP 1 over')
    ('NAT replies 316', 'met')
    ('-', 'not measured')
    """
    def pick(*modes):
        return {f"{m}{label}": counts[f"established-{m.lower()}{suffix}"]
                for m in modes for suffix, label in (("", ""), ("-tcp", " TCP"), ("-reply", " replies"))
                if f"established-{m.lower()}{suffix}" in counts}

    def shown(values):
        return ", ".join(f"{k} {v}" for k, v in values.items()) or "-"

    dr_tun, nat = pick("DR", "TUN"), pick("NAT", "FullNAT")
    new = {"new": counts["new"]} if "new" in counts else {}
    return [
        (f"established flow <= {DR_TUN_MAX} instructions a packet, DR and TUN", shown(dr_tun), at_most(dr_tun, DR_TUN_MAX)),
        (f"<= {NAT_FULLNAT_MAX}, NAT and FullNAT (both directions)", shown(nat), at_most(nat, NAT_FULLNAT_MAX)),
        (f"new connection <= {NEW_MAX:,} instructions", shown(new), at_most(new, NEW_MAX)),
    ]


def lookup_row(table):
    """The lookup target: 10 million connections (bursts prefetched, as the
    worker looks up) against 1,000 (the median of the three one-at-a-time
    columns, which at 1,000 connections are all the same working set).

    >>> lookup_row({1000: [4.7, 4.5, 4.6, 6.1, 6.1, 7.0, 205], 10000000: [9.2, 18.4, 95.1, 7.5, 9.9, 22.4, 155]})[1:]
    ('1,000: 4.6 ns; 10 million: the same 1,024 flows hot 7.5 ns (1.6x), 4,096 hot 9.9 (2.2x), uniform over all 22.4 (4.9x); 155 bytes a connection', 'met for the same hot set; missed: 4,096 hot 2.2x, uniform 4.9x')
    """
    name = f"lookup within {LOOKUP_MAX_RATIO:g}x from 1 thousand to 10 million connections"
    if 1000 not in table or 10_000_000 not in table:
        return name, "-", "not measured"
    small, big = table[1000], table[10_000_000]
    ref = statistics.median(small[:3])
    hot, wider, uniform = (big[3] / ref, big[4] / ref, big[5] / ref)
    measured = (f"1,000: {ref:.1f} ns; 10 million: the same 1,024 flows hot {big[3]:.1f} ns ({hot:.1f}x), "
                f"4,096 hot {big[4]:.1f} ({wider:.1f}x), uniform over all {big[5]:.1f} ({uniform:.1f}x); "
                f"{big[6]:.0f} bytes a connection")
    missed = ", ".join(f"{what} {r:.1f}x" for what, r in (("the same hot set", hot), ("4,096 hot", wider), ("uniform", uniform))
                       if r > LOOKUP_MAX_RATIO)
    if not missed:
        verdict = "met"
    elif hot <= LOOKUP_MAX_RATIO:
        verdict = "met for the same hot set; missed: " + missed
    else:
        verdict = "missed: " + missed
    return name, measured, verdict


def port_row(ratios, ceiling, top="the 10 best seconds of each", dr_ns=None):
    """The port target, with the phase the run met.

    >>> port_row({"ceiling": 1.0, "lean": 0.53, "dr": 0.61, "nat": 0.49}, 39.84)[1:]
    ('mean of the 10 best seconds of each, against the ceiling 39.84 Mpps: DR 0.61, NAT 0.49 (the lean forwarder 0.53)', 'missed by 0.29-0.41; the lean forwarder kept 0.53 of the ceiling: a mixed or slow phase, not a steady one (compare with a run where it keeps >= 0.9)')
    >>> port_row({"ceiling": 1.0, "lean": 1.02, "dr": 0.93}, 50.0)[2]
    'met'
    >>> port_row({"ceiling": 1.0, "lean": 1.01, "dr": 0.55}, 38.64, dr_ns=25.5)[1]
    "mean of the 10 best seconds of each, against the ceiling 38.64 Mpps: DR 0.55 (the lean forwarder 1.01; RVS DR in-process this run 25.5 ns a packet at 1,024 flows, against 13.5 in a fast phase of the project's VM)"
    """
    name = f"port throughput >= {PORT_MIN_RATIO:g}x testpmd io-forward"
    modes = [(m, ratios[m]) for m in ("dr", "nat", "fullnat", "tun") if m in ratios]
    if not modes or ceiling is None:
        return name, "-", "not measured"
    lean = ratios.get("lean")
    notes = ([f"the lean forwarder {lean:.2f}"] if lean is not None else []) + \
        ([f"RVS DR in-process this run {dr_ns:.1f} ns a packet at 1,024 flows, against {FAST_PHASE_DR_NS} in a fast phase of the project's VM"]
         if dr_ns is not None else [])
    measured = f"mean of {top}, against the ceiling {ceiling:.2f} Mpps: " + \
        ", ".join(f"{LABEL[m]} {r:.2f}" for m, r in modes) + (f" ({'; '.join(notes)})" if notes else "")
    short = [PORT_MIN_RATIO - r for _, r in modes if r < PORT_MIN_RATIO]
    verdict = f"missed by {shortfall(short)}" if short else "met"
    if lean is not None and lean < STEADY_LEAN:
        verdict += (f"; the lean forwarder kept {lean:.2f} of the ceiling: a mixed or slow phase, not a steady one "
                    f"(compare with a run where it keeps >= {STEADY_LEAN:g})")
    return name, measured, verdict


def tcp_rounds(log):
    """bench/realtcp.sh's connections/s per contender and round.

    >>> tcp_rounds("round 1 direct cps 10787.05 (share of rs1: 50%)\\nround 1 direct gbps 5.3\\nround 2 direct cps 6174.32 (share of rs1: 50%)")
    {'direct': [10787.05, 6174.32]}
    """
    out = {}
    for m in re.finditer(r"^round \d+ (\S+) cps ([\d.]+)", log, re.M):
        out.setdefault(m.group(1), []).append(float(m.group(2)))
    return out


def per_round(rounds, contender, ref):
    """Each round's ratio of `contender`'s connections/s to `ref`'s (run
    within minutes of each other; a phase of the machine that moves in
    between shows as ratios far apart), or [] without two or more rounds
    of both.

    >>> per_round({"rvs-nat": [9175.39, 5029.01, 4530.7], "nft": [5863.95, 5374.19, 6131.32]}, "rvs-nat", "nft")
    [1.56, 0.94, 0.74]
    >>> per_round({"rvs-nat": [9175.39]}, "rvs-nat", "nft")
    []
    """
    a, b = rounds.get(contender, []), rounds.get(ref, [])
    if len(a) < 2 or len(a) != len(b) or min(b) <= 0:
        return []
    return [round(x / y, 2) for x, y in zip(a, b)]


def with_rounds(mode, ratio, rounds, ref):
    """A mode's ratio to `ref`, with each round's where the log has them.

    >>> with_rounds("NAT", 0.86, {"rvs-nat": [9175.39, 5029.01], "nft": [5863.95, 5374.19]}, "nft")
    'NAT 0.86x (rounds 1.56x, 0.94x)'
    >>> with_rounds("NAT", 0.86, {}, "nft")
    'NAT 0.86x'
    """
    ratios = per_round(rounds, f"rvs-{mode.lower()}", ref)
    return f"{mode} {ratio:.2f}x" + (f" (rounds {', '.join(f'{x:.2f}x' for x in ratios)})" if ratios else "")


# The rig without a balancer varying more than this between rounds: the
# rounds met different phases of the machine.
NOISY_SPREAD = 1.3


def tcp_rows(tcp, rounds=None):
    """The real-TCP targets; the client straight to the servers ("direct")
    is what no balancer can beat on the rig, and how much its rounds
    varied says how noisy the run was.

    >>> rows = tcp_rows({"rvs-dr": {"vs-nft": 1.35, "vs-haproxy": 1.71}, "rvs-nat": {"vs-nft": 0.98, "vs-haproxy": 1.52}, "direct": {"vs-haproxy": 1.79}})
    >>> [r[2] for r in rows]
    ['missed: NAT 0.98x', 'missed: DR 1.71x, NAT 1.52x (by 0.29-0.48); the client straight to the servers made 1.79x haproxy, RVS DR 0.96x of that']
    >>> rows = tcp_rows({"rvs-dr": {"vs-nft": 2.07, "vs-haproxy": 3.47}, "rvs-nat": {"vs-nft": 1.15, "vs-haproxy": 1.92}, "direct": {"vs-haproxy": 2.36}},
    ...                 {"direct": [10787.05, 7746.87, 6174.32]})
    >>> [r[2] for r in rows]
    ['met; noisy: the client straight to the servers made 6,174-10,787 connections/s over the rounds (1.75x)', 'missed: NAT 1.92x (by 0.08); the client straight to the servers made 2.36x haproxy, RVS DR 1.47x of that; noisy: the client straight to the servers made 6,174-10,787 connections/s over the rounds (1.75x)']

    A miss also gives each round's ratio, where the log has the rounds:

    >>> tcp_rows({"rvs-nat": {"vs-nft": 0.86}}, {"rvs-nat": [9175.39, 5029.01, 4530.7], "nft": [5863.95, 5374.19, 6131.32]})[0][2]
    'missed: NAT 0.86x (rounds 1.56x, 0.94x, 0.74x)'
    """
    rounds = rounds or {}
    present = [(LABEL[m], tcp[f"rvs-{m}"]) for m in ("dr", "nat", "fullnat") if f"rvs-{m}" in tcp]
    direct_rounds = rounds.get("direct", [])
    noise = ""
    if direct_rounds and min(direct_rounds) > 0 and max(direct_rounds) / min(direct_rounds) > NOISY_SPREAD:
        noise = (f"; noisy: the client straight to the servers made {min(direct_rounds):,.0f}-{max(direct_rounds):,.0f} "
                 f"connections/s over the rounds ({max(direct_rounds) / min(direct_rounds):.2f}x)")
    rows = []
    for key, limit, name in (("vs-nft", NFT_MIN_RATIO, "real-TCP connections/s >= nftables DNAT"),
                             ("vs-haproxy", HAPROXY_MIN_RATIO, f"real-TCP connections/s >= {HAPROXY_MIN_RATIO:g}x haproxy")):
        got = [(m, v[key]) for m, v in present if key in v]
        if not got:
            rows.append((name, "-", "not measured"))
            continue
        measured = ", ".join(f"{m} {r:.2f}x" for m, r in got)
        short = [(m, r) for m, r in got if r < limit]
        if not short:
            verdict = "met"
        else:
            # The reference's name is the key's ("vs-nft": "nft").
            verdict = "missed: " + ", ".join(with_rounds(m, r, rounds, key[3:]) for m, r in short)
        if short and key == "vs-haproxy":
            verdict += f" (by {shortfall([limit - r for _, r in short])})"
            direct = tcp.get("direct", {}).get("vs-haproxy")
            best_mode, best = max(got, key=lambda g: g[1])
            if direct:
                verdict += f"; the client straight to the servers made {direct:.2f}x haproxy, RVS {best_mode} {best / direct:.2f}x of that"
        rows.append((name, measured, verdict + noise))
    return rows


def verdicts(log):
    """Every target's (name, measured, verdict) from a run's log; a part
    the log lacks is not measured.

    >>> [v for _, _, v in verdicts("| established-dr | 241 |")]
    ['met', 'not measured', 'not measured', 'not measured', 'not measured', 'not measured', 'not measured']
    """
    ratios, ceiling, top = port_ratios(log)
    return counts_rows(instructions(log)) + [lookup_row(lookups(log)), port_row(ratios, ceiling, top, pipeline_dr_ns(log))] + \
        tcp_rows(real_tcp(log), tcp_rounds(log))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
            log = f.read()
    except OSError as e:
        sys.exit(f"verdict: {e}")
    print("| target | measured in this run | verdict |")
    print("|---|---|---|")
    for name, measured, verdict in verdicts(log):
        print(f"| {name} | {measured} | {verdict} |")


if __name__ == "__main__":
    main()
