#!/usr/bin/env python3
"""A against B on the port benchmark's set-up, in pairs: is a change (another
rvsd build, another setting) faster, on a machine whose speed swings by half
between phases that last seconds to minutes (ENVIRONMENT.md)?

Each pair is two runs of `bench/time_profile.py` on one contender, one with
A's environment and one with B's, back to back, the order alternating from
pair to pair (AB, BA, ...) so that a drift favours neither. A run's memif
time per packet says which phase it met (about 10 ns in a fast one, 20 and
more in a slow one, where the generator sets the pace for everyone): only
pairs whose two runs met the same phase (memif within MATCH of each other)
are compared; the others are listed and marked. Whole runs minutes apart
differ by more than a change of a few percent: this is how session 15
measured what 64 frames a receive are worth (bench/RESULTS.md).

usage: bench/ab.py PAIRS A B [SECONDS]   (as root; A and B: environment
                                          assignments, space-separated, "" for
                                          none; SECONDS sampled a run, default 5)
  e.g. bench/ab.py 6 "BURST=32" "BURST=64"
       bench/ab.py 6 "RVSD=/tmp/old/rvsd" ""     (an older build against this one)
       MODE=nat bench/ab.py ...                    (the contender: dr by default)
"""
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODE = os.environ.get("MODE", "dr")
# Two runs met the same phase when their memif times per packet are this
# close (relative to the smaller).
MATCH = 0.15


def parse_env(text):
    """'VAR=VALUE VAR=VALUE' -> {VAR: VALUE}; exits on anything else."""
    env = {}
    for word in text.split():
        name, sep, value = word.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            sys.exit(f"ab: {word!r} is not VAR=VALUE")
        env[name] = value
    return env


def row_of(output, mode):
    """(Mpps, memif ns, own ns) from time_profile.py's table row of `mode`,
    or None if it printed none.

    >>> out = '''| forwarder | Mpps while sampled | forwarder saturated | ns per packet | memif | net_null | own: worker loop | own: pipeline |
    ... |---|---|---|---|---|---|---|---|
    ... | dr | 29.33 | 100% | 34.1 | 9.8 | 3.6 | 11.1 | 8.1 |'''
    >>> tuple(round(x, 2) for x in row_of(out, "dr"))
    (29.33, 9.8, 19.2)
    >>> row_of(out, "nat") is None
    True
    >>> row_of(out.replace("memif", "ports"), "dr") is None
    True
    """
    header = next((line for line in output.splitlines() if line.startswith("| forwarder |")), None)
    row = next((line for line in output.splitlines() if line.startswith(f"| {mode} |")), None)
    if header is None or row is None:
        return None
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    owns = [n for n in ("own", "own: worker loop", "own: pipeline") if n in cells]
    if not owns or "memif" not in cells or "Mpps while sampled" not in cells:
        return None  # not the table this reads: time_profile.py changed
    def number(name):
        return float(cells[name]) if cells[name] != "-" else 0.0

    return number("Mpps while sampled"), number("memif"), sum(number(n) for n in owns)


def run(env, seconds):
    out = subprocess.run([sys.executable, os.path.join(HERE, "time_profile.py"), str(seconds)],
                         env={**os.environ, **env, "MODES": MODE}, capture_output=True, text=True)
    got = row_of(out.stdout, MODE)
    if got is None:
        sys.exit(f"ab: time_profile.py gave no row for {MODE}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return got


def main():
    args = sys.argv[1:]
    counts = [args[0]] + args[3:] if len(args) in (3, 4) else []
    if not counts or not all(c.isdigit() and int(c) > 0 for c in counts):
        sys.exit(__doc__)
    pairs, seconds = int(args[0]), int(args[3]) if len(args) == 4 else 5
    sides = {"A": parse_env(args[1]), "B": parse_env(args[2])}
    print(f"{MODE}, {pairs} pairs of {seconds} s runs; A: {args[1] or '(nothing set)'}; B: {args[2] or '(nothing set)'}")
    print("| pair | A Mpps | B Mpps | B / A | A own ns | B own ns | A memif ns | B memif ns | same phase |")
    print("|---|---|---|---|---|---|---|---|---|")
    matched = []
    for k in range(pairs):
        order = "AB" if k % 2 == 0 else "BA"
        got = {side: run(sides[side], seconds) for side in order}
        (a_pps, a_memif, a_own), (b_pps, b_memif, b_own) = got["A"], got["B"]
        same = abs(a_memif - b_memif) <= MATCH * min(a_memif, b_memif)
        if same:
            matched.append((b_pps / a_pps, b_own - a_own))
        print(f"| {k + 1} ({order}) | {a_pps:.2f} | {b_pps:.2f} | {b_pps / a_pps:.3f} | {a_own:.1f} | {b_own:.1f} | "
              f"{a_memif:.1f} | {b_memif:.1f} | {'yes' if same else 'no'} |", flush=True)
    if not matched:
        print("\nno pair met the same phase twice: nothing to compare (run more pairs)")
        return
    ratios = [r for r, _ in matched]
    print(f"\n{len(matched)} of {pairs} pairs in one phase: B / A median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}, B faster in {sum(r > 1 for r in ratios)}); "
          f"own time B - A median {statistics.median(d for _, d in matched):+.1f} ns a packet")


if __name__ == "__main__":
    main()
