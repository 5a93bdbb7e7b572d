"""Shared by the seed studies' `table.py` scripts: one markdown row's statistics
of the paired gaps (ours minus the peer's at the same seed)."""
import statistics as st
from math import comb

#: The header cells that `paired_cells` fills, after each table's own label cells.
HEADER = ("seeds | ours: median (min-max) | zuko: median (min-max) | "
          "median of paired differences | ours lower on | sign test p | mean difference +- s.e.")


def sign_test_p(wins, n):
    """Two-sided sign-test p-value of `wins` out of `n` under 1/2."""
    k = min(wins, n - wins)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


def paired_cells(ours, peer):
    """The row's cells for the seeds both `{seed: gap}` dicts have, or None if none."""
    seeds = sorted(set(ours) & set(peer))
    if not seeds:
        return None
    d = [ours[s] - peer[s] for s in seeds]
    wins = sum(x < 0 for x in d)
    se = st.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")

    def fmt(g):
        v = [g[s] for s in seeds]
        return f"{st.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"

    return (f"{seeds[0]}-{seeds[-1]} ({len(seeds)}) | {fmt(ours)} | {fmt(peer)} | "
            f"{st.median(d):+.3f} | {wins}/{len(seeds)} | {sign_test_p(wins, len(seeds)):.2f} | "
            f"{st.mean(d):+.3f} +- {se:.3f}")


def print_family_table(cells, ours, peer):
    """Prints the markdown table of `cells` `[(family, our key, peer key, dataset)]`,
    one row per cell the two `{(key, dataset): {seed: gap}}` dicts share seeds of."""
    print(f"| family | dataset | {HEADER} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for fam, key, peer_key, ds in cells:
        row = paired_cells(ours.get((key, ds), {}), peer.get((peer_key, ds), {}))
        if row:
            print(f"| {fam} | {ds} | {row} |")
