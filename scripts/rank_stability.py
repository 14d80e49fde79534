#!/usr/bin/env python3
"""Compare the rankings of pairs of sweep runs (see scripts/rank_stability.sh).

Input: a file of lines `ORDER QUIET_RUN_DIR NOISY_RUN_DIR QUIET_WALL_S NOISY_WALL_S`.
Per pair: Kendall's tau-b of the mean output tok/s rankings, mutual tie-set membership (from each
run's summary.csv `tie_with_best` column, which ferrum-bench computes), significant reversals
(pairs of cells that one run orders at p < 0.05 and the other orders the opposite way at
p < 0.05; the paired t-test over rounds when a run's repeats record their round, Welch otherwise)
and the repeats the noise monitor flagged. Standard library only.
"""
import csv
import glob
import json
import math
import os
import sys


def betacf(a, b, x):
    # Continued fraction of the incomplete beta function (modified Lentz).
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return h


def betai(a, b, x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(lbt) * betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * betacf(b, a, 1 - x) / b


def t_two_sided_p(t, df):
    if math.isinf(t):
        return 0.0
    return betai(df / 2.0, 0.5, df / (df + t * t))


def mean(xs):
    return sum(xs) / len(xs)


def var(xs):
    m = mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def welch(a, b):
    """(sign of b - a, p) or None."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = var(a) / len(a), var(b) / len(b)
    diff = mean(b) - mean(a)
    se2 = va + vb
    if se2 <= 0:
        return (math.copysign(1, diff), 0.0 if diff else 1.0)
    t = diff / math.sqrt(se2)
    df = se2 * se2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return (math.copysign(1, diff), t_two_sided_p(t, df))


def paired(a, b):
    d = [y - x for x, y in zip(a, b)]
    if len(d) < 2:
        return None
    m, v = mean(d), var(d)
    if v <= 0:
        return (math.copysign(1, m), 0.0 if m else 1.0)
    t = m / math.sqrt(v / len(d))
    return (math.copysign(1, m), t_two_sided_p(t, len(d) - 1))


def load_run(run_dir):
    cells = {}
    for path in glob.glob(os.path.join(run_dir, "cells", "*", "stats.json")):
        s = json.load(open(path))
        reps = s["repeats"]
        cells[s["cell"]["name"]] = {
            "by_round": {(r.get("round") if r.get("round") is not None else r["repeat"]): r["output_tokens_per_s"] for r in reps},
            "rounds": all(r.get("round") is not None for r in reps),
            "flags": [(r["repeat"] + 1, "+".join(r.get("noise", {}).get("flags", []))) for r in reps if r.get("noise", {}).get("flags")],
        }
    ties = {}
    with open(os.path.join(run_dir, "summary.csv")) as f:
        for row in csv.DictReader(f):
            ties[row["cell"]] = row.get("tie_with_best", "")
    return cells, ties


def directions(cells):
    """{(i, j): +1/-1} for pairs the run calls significantly different (j better than i: +1)."""
    names = sorted(cells)
    interleaved = all(c["rounds"] for c in cells.values())
    out = {}
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            a, b = cells[x]["by_round"], cells[y]["by_round"]
            if interleaved:
                shared = sorted(set(a) & set(b))
                r = paired([a[k] for k in shared], [b[k] for k in shared])
            else:
                r = welch(list(a.values()), list(b.values()))
            if r and r[1] < 0.05:
                out[(x, y)] = r[0]
    return out, interleaved


def kendall_tau_b(xs, ys):
    n = len(xs)
    conc = disc = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif dx * dy > 0:
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / denom if denom else float("nan")


def main():
    rows = []
    for line in open(sys.argv[1]):
        order, quiet, noisy, wq, wn = line.split()
        (ca, ta), (cb, tb) = load_run(quiet), load_run(noisy)
        common = sorted(set(ca) & set(cb))
        ma = [mean(list(ca[c]["by_round"].values())) for c in common]
        mb = [mean(list(cb[c]["by_round"].values())) for c in common]
        tau = kendall_tau_b(ma, mb)
        best_a = common[max(range(len(common)), key=lambda i: ma[i])] if common else "-"
        best_b = common[max(range(len(common)), key=lambda i: mb[i])] if common else "-"
        star_a = next((c for c, t in ta.items() if t == "star"), best_a)
        star_b = next((c for c, t in tb.items() if t == "star"), best_b)
        a_in_b = tb.get(star_a, "") in ("star", "tie")
        b_in_a = ta.get(star_b, "") in ("star", "tie")
        da, _ = directions(ca)
        db, _ = directions(cb)
        reversals = [p for p in da if p in db and da[p] != db[p]]
        flags_a = sum(len(c["flags"]) for c in ca.values())
        flags_b = sum(len(c["flags"]) for c in cb.values())
        reps_a = sum(len(c["by_round"]) for c in ca.values())
        reps_b = sum(len(c["by_round"]) for c in cb.values())
        rows.append((order, len(common), tau, star_a, star_b, a_in_b, b_in_a, len(reversals),
                     len(da), len(db), flags_a, reps_a, flags_b, reps_b, wq, wn,
                     sum(1 for t in ta.values() if t in ("star", "tie")),
                     sum(1 for t in tb.values() if t in ("star", "tie"))))
        print(f"\n## {order}: quiet {quiet} ({wq} s) vs noisy {noisy} ({wn} s)")
        for label, cells in (("quiet", ca), ("noisy", cb)):
            flagged = [f"{name} r{r} {f}" for name, c in sorted(cells.items()) for r, f in c["flags"]]
            print(f"flagged repeats ({label}): {len(flagged)}" + ("" if not flagged else ": " + "; ".join(flagged)))
        if reversals:
            print("significant reversals: " + "; ".join(f"{x} vs {y}" for x, y in reversals))
    print("\n| order | cells | Kendall τ | ★ quiet | ★ noisy | quiet ★ in noisy tie set | noisy ★ in quiet tie set | tie set sizes | significant reversals | pairs significant (quiet/noisy) | flagged repeats quiet | flagged repeats noisy | wall s quiet/noisy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        (order, n, tau, sa, sb, aib, bia, rev, na, nb, fa, ra, fb, rb, wq, wn, tsa, tsb) = r
        print(f"| {order} | {n} | {tau:.2f} | {sa} | {sb} | {'yes' if aib else 'no'} | {'yes' if bia else 'no'} | {tsa}/{tsb} | {rev} | {na}/{nb} | {fa}/{ra} | {fb}/{rb} | {wq}/{wn} |")


if __name__ == "__main__":
    main()
