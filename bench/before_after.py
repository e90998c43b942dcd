"""Before/after of two bench/compare.py reports: each row's convforge time and its ratio to PyTorch.

    python bench/before_after.py OLD.md NEW.md [--run default|tuned] [--out FILE]

The two reports were measured on different days of a shared machine, so a row's millisecond
change mixes the code's effect with the machine's; its *ratio to PyTorch* (measured side by side
in each run) is the steadier figure, and the one the verdict column uses: a row counts as slower
when its ratio to PyTorch fell by more than ``--noise`` (default 10%). Rows are matched by (op,
pass, shape, threads). From a ``--both-malloc`` report, ``--run`` picks the run to compare
(the glibc-defaults run by default), in both reports; a one-run report is read whole.
"""

from __future__ import annotations

import argparse
import math
import sys


def rows(path: str, run: str) -> dict:
    """``{(op, pass, shape, T): {"ms": float, "torch": float}}`` of one report (one run of it)."""
    with open(path) as f:
        text = f.read()
    if "## Run 1 of" in text:
        chunks = text.split("## Run ")[1:]
        wanted = [c for c in chunks if ("tuned" in c.split("\n", 1)[0].lower()) == (run == "tuned")]
        if not wanted:
            raise SystemExit(f"{path}: no {run} run in this report")
        text = wanted[0]
    out, header = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["op", "pass"]:
            header = cells
            continue
        if header is None or set(cells[0]) <= {"-"} or len(cells) != len(header):
            continue
        row = dict(zip(header, cells))
        try:
            ms, torch = float(row["convforge ms"]), row["vs PyTorch"].rstrip("×")
        except (KeyError, ValueError):
            continue
        out[(row["op"], row["pass"], row["shape"], row["T"])] = {
            "ms": ms, "torch": float(torch) if torch not in ("", "—") else math.nan, "algorithm": row.get("algorithm", "")}
    if not out:
        raise SystemExit(f"{path}: no result rows found")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--run", choices=("default", "tuned"), default="default",
                   help="which run of a --both-malloc report to compare (default: glibc defaults)")
    p.add_argument("--noise", type=float, default=0.10, help="ratio drop counted as noise (default 0.10)")
    p.add_argument("--out", default="-", help="markdown file to write (default: stdout)")
    args = p.parse_args(argv)
    old, new = rows(args.before, args.run), rows(args.after, args.run)  # a one-run report is read whole
    md = [f"| op | pass | shape | T | algorithm | ms before | ms after | vs PyTorch before | vs PyTorch after | change |",
          "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    slower = 0
    for key in old:
        if key not in new:
            md.append(f"| {' | '.join(key)} | | {old[key]['ms']:.3f} | — | {old[key]['torch']:.2f}× | — | not in the new report |")
            continue
        a, b = old[key], new[key]
        change = b["torch"] / a["torch"] - 1 if a["torch"] and not math.isnan(a["torch"]) else math.nan
        verdict = "" if math.isnan(change) else f"{change:+.0%}"
        if change < -args.noise:
            verdict = f"**{verdict} slower**"
            slower += 1
        md.append(f"| {' | '.join(key)} | {b['algorithm']} | {a['ms']:.3f} | {b['ms']:.3f} | {a['torch']:.2f}× | "
                  f"{b['torch']:.2f}× | {verdict} |")
    md += ["", f"{len(old)} rows before, {len(new)} after; {slower} rows' ratio to PyTorch fell by more than "
           f"{args.noise:.0%}."]
    text = "\n".join(md) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
