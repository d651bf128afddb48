"""Density (issue 14): whole-network ADD and DEL latency as attachments accumulate, ours and Go's plugins
in the same run, bridge mode and routed mode; the ``density`` section of ``make bench`` (benchmarks/run.py).

Per mode, two sides accumulate attachments one by one, interleaved (ours, Go, Go, ours, ...), each ADD with
one TCP port mapping and its own container namespace, none deleted until the end:

- bridge: ours = conf/10-ignite.conflist (the frozen ignite-bridge + ignite-ipam, guard and sticky leases as
  shipped); Go = conformance/ignite-reference.conflist (bridge + host-local -> portmap -> firewall);
- routed: ours = conf/20-ignite-routed.conflist; Go = benchmarks/go-routed-reference.conflist (ptp +
  host-local -> portmap -> firewall), the routed analogue.

Then every attachment is deleted (reverse or random order), the DEL latency recorded against the number
of attachments present before it. Go stops accumulating at ``go_n`` attachments or once its ADDs have
taken ``go_minutes`` in total, whichever comes first (it says where and why). Medians of wall time and of
CPU time (user+sys of the plugin processes and the tools they ran) per block of ``block`` attachments;
peak RSS (largest process of the chain, under GNU time; such calls are left out of the timings) twice
per block. The flatness bound: median of the last block within 10 % of the first block's.

Every call runs in a throwaway "host" namespace per side and mode (container namespaces, dataDir and
ours' stateDir in a temp folder); all deleted at the end, also on failure, Ctrl-C or SIGTERM.

    sudo .venv/bin/python benchmarks/density_run.py [--bridge-n 1000] [--routed-n 4000] [--go-minutes 6]
        [--go-n N] [--block 100] [--del-order reverse|random] [--png benchmarks/density.png] [--json PATH]

matplotlib (the ``bench`` extra) is imported only to draw the PNG, never by a plugin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import chain_bench  # noqa: E402
from benchlib import Spaces  # noqa: E402
from chain_bench import GO_DIR, Side, TimedRuntime  # noqa: E402

from conformance.driver import Attachment, ChainError  # noqa: E402

CONFLISTS = {
    "bridge": {"ours": REPO / "conf" / "10-ignite.conflist", "go": REPO / "conformance" / "ignite-reference.conflist"},
    "routed": {"ours": REPO / "conf" / "20-ignite-routed.conflist", "go": HERE / "go-routed-reference.conflist"},
}
LABELS = {("bridge", "ours"): "ours, bridge mode", ("bridge", "go"): "Go bridge + host-local, portmap, firewall",
          ("routed", "ours"): "ours, routed mode", ("routed", "go"): "Go ptp + host-local, portmap, firewall"}
BOUND = 1.10
MAX_FAILURES = 10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def conflist(mode: str, side: str, data_dir: Path, state_dir: Path | None) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(CONFLISTS[mode][side].read_text())
    doc.pop("cniVersions", None)
    first = doc["plugins"][0]
    first["ipam"]["dataDir"] = str(data_dir)
    if state_dir is not None:
        first["stateDir"] = str(state_dir)
    return doc


def make_side(mode: str, side: str, ours_dir: Path, root: Path) -> Side:
    tmp = Path(tempfile.mkdtemp(prefix=f"density-{mode}-{side}-", dir=root))
    data_dir, state_dir = tmp / "ipam", (tmp / "state" if side == "ours" else None)
    rt = TimedRuntime([ours_dir if side == "ours" else GO_DIR], "", tmp / "cache", timeout=120)
    spaces = Spaces(tag="cnbdens")
    spaces.__enter__()
    return Side(side, conflist(mode, side, data_dir, state_dir), rt, spaces, tmp, data_dir, state_dir)


@dataclass
class Track:
    """One side's accumulation in one mode."""

    mode: str
    side: Side
    limit: int
    budget_s: float
    atts: list[tuple[Attachment, str]] = field(default_factory=list)
    add: list[tuple[int, float, float]] = field(default_factory=list)   # (present before, wall ms, cpu ms)
    dele: list[tuple[int, float, float]] = field(default_factory=list)
    rss_add: list[tuple[int, float]] = field(default_factory=list)      # (present before, MB)
    rss_del: list[tuple[int, float]] = field(default_factory=list)
    present: int = 0
    peak: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    add_s: float = 0.0
    stopped: str = ""

    @property
    def adding(self) -> bool:
        return not self.stopped

    def fail(self, what: str, exc: Exception) -> None:
        self.failures += 1
        if len(self.errors) < 5:
            self.errors.append(f"{what}: {str(exc)[:300]}")
        if self.failures >= MAX_FAILURES and not self.stopped:
            self.stopped = f"{self.failures} failures at {self.present} attachments"


def _rss_call(i: int, block: int) -> bool:
    """Two calls per block are run under GNU time for peak RSS (and left out of the timings)."""
    return i % block in (block // 4, (3 * block) // 4) and block >= 4


def add_one(t: Track, i: int, block: int) -> None:
    s = t.side
    c = s.spaces.new("c")
    att = s.att(i, c, 30000 + (i % 30000))
    present = t.present
    memory = _rss_call(present, block)
    s.runtime.rss = memory
    try:
        ms, _, calls = s.add(att)
    except ChainError as exc:
        t.fail(f"ADD #{present + 1}", exc)
        with suppress(ChainError):
            s.delete(att)
        s.spaces.delete(c)
        return
    finally:
        s.runtime.rss = False
    t.atts.append((att, c))
    t.present += 1
    t.peak = max(t.peak, t.present)
    t.add_s += ms / 1000
    if memory:
        t.rss_add.append((present, chain_bench._rss(calls) / 1024))
    else:
        t.add.append((present, ms, chain_bench._cpu(calls)))
    if t.present >= t.limit:
        t.stopped = f"reached {t.limit}"
    elif t.add_s >= t.budget_s:
        t.stopped = f"time budget ({t.budget_s / 60:g} min of its ADDs) at {t.present}"


def del_one(t: Track, att: Attachment, c: str, block: int) -> None:
    s = t.side
    present = t.present
    memory = _rss_call(present - 1, block)
    s.runtime.rss = memory
    try:
        ms, calls = s.delete(att)
        if memory:
            t.rss_del.append((present, chain_bench._rss(calls) / 1024))
        else:
            t.dele.append((present, ms, chain_bench._cpu(calls)))
    except ChainError as exc:
        t.fail(f"DEL at {present}", exc)
    finally:
        s.runtime.rss = False
        t.present -= 1
    # The container namespace stays until the end (Side.close): the kernel tears a namespace down in the
    # background, under the rtnl lock, which would stall the next DEL's netlink calls and be timed as ours.


def blocks(samples: list[tuple[int, float, float]], block: int, top: bool = False) -> list[dict[str, Any]]:
    """Median wall and CPU per block of attachments present: ADD samples by present-before (0..block-1 is
    the first block, shown as 1..block), DEL samples by present-before (1..block is the first)."""
    groups: dict[int, list[tuple[float, float]]] = {}
    for present, wall, cpu in samples:
        k = (present - 1) // block if top else present // block
        groups.setdefault(k, []).append((wall, cpu))
    return [{"from": k * block + 1, "to": (k + 1) * block, "n": len(v),
             "wall_ms": round(statistics.median(w for w, _ in v), 2),
             "cpu_ms": round(statistics.median(c for _, c in v), 2)} for k, v in sorted(groups.items())]


def _ratio(bl: list[dict[str, Any]], key: str, block: int) -> float:
    full = [b for b in bl if b["n"] >= block // 2]  # complete blocks (a stopped side may end mid-block)
    if len(full) < 2:
        return math.nan
    return round(full[-1][key] / full[0][key], 3)


def summarize(t: Track, block: int) -> dict[str, Any]:
    add_b, del_b = blocks(t.add, block), blocks(t.dele, block, top=True)

    def rss(samples: list[tuple[int, float]], few: bool) -> float:
        """Largest peak RSS in the block with the fewest (or most) attachments present."""
        if not samples:
            return math.nan
        ks = sorted({(p - 1) // block for p, _ in samples})
        k = ks[0] if few else ks[-1]
        return round(max(mb for p, mb in samples if (p - 1) // block == k), 1)

    return {"label": LABELS[(t.mode, t.side.name)], "reached": t.peak, "stopped": t.stopped,
            "failures": t.failures, "errors": t.errors, "add_s": round(t.add_s, 1),
            "ADD_blocks": add_b, "DEL_blocks": del_b,
            "ADD_last_over_first": {k: _ratio(add_b, k, block) for k in ("wall_ms", "cpu_ms")},
            "DEL_last_over_first": {k: _ratio(del_b, k, block) for k in ("wall_ms", "cpu_ms")},
            "rss_mb": {"ADD_few": rss([(p + 1, mb) for p, mb in t.rss_add], True),
                       "ADD_most": rss([(p + 1, mb) for p, mb in t.rss_add], False),
                       "DEL_few": rss(t.rss_del, True), "DEL_most": rss(t.rss_del, False)},
            "leaks": chain_bench.leaks(t.side)}


def _open(mode: str, ours_dir: Path, root: Path, n: int, go_n: int, go_minutes: float,
          tracks: list[Track]) -> None:
    for name, limit, budget in (("ours", n, math.inf), ("go", min(go_n, n), go_minutes * 60)):
        t = Track(mode, make_side(mode, name, ours_dir, root), limit, budget)
        tracks.append(t)
        if limit <= 0:
            t.stopped = "not run (limit 0)"
            continue
        chain_bench.warm_up(t.side)
        if t.side.warm_error:
            t.stopped = f"warm-up failed: {t.side.warm_error}"


def _accumulate(mode: str, tracks: list[Track], n: int, block: int, minutes: float) -> None:
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        for t in tracks if i % 2 else list(reversed(tracks)):
            if t.adding:
                add_one(t, i, block)
        if i % block == 0:
            elapsed = time.perf_counter() - t0
            log(f"{mode}: {i} ADDs, " + ", ".join(
                f"{t.side.name} {t.present} present" + (f" (stopped: {t.stopped})" if t.stopped else "")
                for t in tracks) + f", {elapsed:.0f} s")
            if elapsed >= minutes * 60 and i < n:  # the run's own budget: stop on a block boundary
                for t in tracks:
                    t.stopped = t.stopped or f"run budget ({minutes:g} min of accumulation) at {t.present}"
        if not any(t.adding for t in tracks):
            break


def _delete_all(mode: str, tracks: list[Track], block: int, del_order: str, seed: int) -> None:
    rng = random.Random(seed)
    orders = []
    for t in tracks:
        order = list(reversed(t.atts))
        if del_order == "random":
            rng.shuffle(order)
        orders.append(order)
    log(f"{mode}: DEL ({del_order} order)")
    pairs = list(zip(tracks, orders, strict=True))
    for j in range(max(len(o) for o in orders)):
        for t, order in pairs if j % 2 else reversed(pairs):
            if j < len(order):
                del_one(t, *order[j], block)
        if (j + 1) % block == 0:
            log(f"{mode}: {j + 1} DEL rounds, " + ", ".join(f"{t.side.name} {t.present} present" for t in tracks))


STEADY_BASE = 20000  # probe attachments' numbers (host ports 50000+): never those of the accumulation


def _steady(mode: str, ours_dir: Path, root: Path, big: Track, rounds: int, small_n: int, block: int,
            tracks: list[Track]) -> dict[str, Any]:
    """Load-independent density check: ADD+DEL probe pairs alternating between ``big`` (ours with all its
    attachments present) and a second ours side with ``small_n`` present, in the same minutes, so machine
    load hits both alike (an accumulation's first and last blocks run minutes apart, under another load).
    Returns the medians (wall, CPU ms) per side and verb and big/small ratios."""
    small = Track(mode, make_side(mode, "ours", ours_dir, root), small_n + rounds + 1, math.inf)
    tracks.append(small)  # closed with the others
    chain_bench.warm_up(small.side)
    for i in range(1, small_n + 1):
        add_one(small, i, block)
    log(f"{mode}: steady probe, {rounds} rounds of ADD+DEL at {big.present} vs {small.present} present")
    got: dict[str, dict[str, list[tuple[float, float]]]] = {"big": {"ADD": [], "DEL": []},
                                                            "small": {"ADD": [], "DEL": []}}
    peak = big.peak
    for r in range(rounds):
        for name, t in (("big", big), ("small", small)) if r % 2 else (("small", small), ("big", big)):
            n_add, n_del, present = len(t.add), len(t.dele), t.present
            add_one(t, STEADY_BASE + r, block)
            if t.present == present:  # the ADD failed (counted in t.failures)
                continue
            att, c = t.atts.pop()
            del_one(t, att, c, block)
            got[name]["ADD"] += [(w, cpu) for _, w, cpu in t.add[n_add:]]
            got[name]["DEL"] += [(w, cpu) for _, w, cpu in t.dele[n_del:]]
            del t.add[n_add:], t.dele[n_del:]  # not part of the accumulation's blocks
    big.peak = peak
    out: dict[str, Any] = {"rounds": rounds, "big_n": big.present, "small_n": small.present}
    for verb in ("ADD", "DEL"):
        med = {name: [round(statistics.median(x[k] for x in got[name][verb]), 2) if got[name][verb] else math.nan
                      for k in (0, 1)] for name in ("big", "small")}
        out[verb] = {"big": med["big"], "small": med["small"],
                     "ratio_wall": round(med["big"][0] / med["small"][0], 3),
                     "ratio_cpu": round(med["big"][1] / med["small"][1], 3)}
    log(f"{mode}: steady probe: " + "; ".join(
        f"{v} {out[v]['big']} at {out['big_n']} vs {out[v]['small']} at {out['small_n']} (wall/CPU ms), "
        f"CPU {out[v]['ratio_cpu']}x" for v in ("ADD", "DEL")))
    return out


def run_mode(mode: str, ours_dir: Path, root: Path, n: int, go_n: int, go_minutes: float, block: int,
             del_order: str, seed: int, minutes: float = math.inf, steady: int = 0,
             steady_small: int = 10) -> dict[str, Any]:
    tracks: list[Track] = []
    try:
        _open(mode, ours_dir, root, n, go_n, go_minutes, tracks)
        t0 = time.perf_counter()
        _accumulate(mode, tracks, n, block, minutes)
        probe = _steady(mode, ours_dir, root, tracks[0], steady, steady_small, block, tracks) if steady else None
        _delete_all(mode, tracks[:2], block, del_order, seed)
        return {t.side.name: summarize(t, block) for t in tracks[:2]} | {
            "n": n, "go_n": go_n, "go_minutes": go_minutes, "minutes": minutes, "block": block,
            "del_order": del_order, "steady": probe,
            "seconds": round(time.perf_counter() - t0, 1)}
    finally:
        for t in tracks:
            t.side.close()  # deletes every namespace the side made (container ones left by a failure too)


def bench(ours_dir: Path, root: Path, *, bridge_n: int, routed_n: int, go_n: int | None, go_minutes: float,
          block: int, del_order: str, seed: int = 14, minutes: float = math.inf, steady: int = 0,
          steady_small: int = 10) -> dict[str, Any]:
    out: dict[str, Any] = {"meta": {"loadavg_start": os.getloadavg(), "cpus": os.cpu_count()}}
    for mode, n in (("bridge", bridge_n), ("routed", routed_n)):
        if n <= 0:
            continue
        log(f"density, {mode} mode: up to {n} attachments (Go up to {go_n or n} or {go_minutes} min of ADDs)")
        out[mode] = run_mode(mode, ours_dir, root, n, n if go_n is None else go_n, go_minutes, block, del_order,
                             seed, minutes, steady, steady_small)
    out["meta"]["loadavg_end"] = os.getloadavg()
    return out


# ------------------------------------------------------------------------------------------- report

def _f(x: Any) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def _x(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f}x"


def _row_blocks(bl: list[dict[str, Any]], every: int, block: int) -> dict[int, dict[str, Any]]:
    """The first block and each block ending at a multiple of `every`, keyed by its last attachment."""
    return {b["to"]: b for b in bl if b["from"] == 1 or b["to"] % every == 0 or every <= block}


def report(res: dict[str, Any], every: int = 500) -> str:
    out: list[str] = []
    for mode in ("bridge", "routed"):
        r = res.get(mode)
        if not r or "error" in r:
            if r:
                out += [f"Density, {mode} mode: error {r['error']}", ""]
            continue
        block, o, g = r["block"], r["ours"], r["go"]
        out += [f"Density, {mode} mode, {o['reached']} attachments (of {r['n']}; {o['stopped'] or '—'}) "
                f"({o['label']} vs {g['label']}; Go {g['reached']} attachments, stopped: {g['stopped'] or '—'}; "
                f"DEL order {r['del_order']}). "
                f"Medians per block of {block}, wall / CPU ms:", "",
                "| attachments present | ours ADD | Go ADD | ours DEL | Go DEL |", "|---:|---:|---:|---:|---:|"]
        cells: dict[int, list[str]] = {}
        for col, bl in enumerate((o["ADD_blocks"], g["ADD_blocks"], o["DEL_blocks"], g["DEL_blocks"])):
            for to, b in _row_blocks(bl, every, block).items():
                cells.setdefault(to, ["—"] * 4)[col] = f"{b['wall_ms']:.1f} / {b['cpu_ms']:.1f}" + (
                    f" (n={b['n']})" if b["n"] < block // 2 else "")
        out += [f"| {max(1, to - block + 1)} to {to} | " + " | ".join(c) + " |" for to, c in sorted(cells.items())]
        out.append("")
        for side in (o, g):
            a, d = side["ADD_last_over_first"], side["DEL_last_over_first"]
            ok = all(not math.isnan(x) and x <= BOUND for x in (a["cpu_ms"], d["cpu_ms"]))
            nan = any(math.isnan(x) for x in (a["cpu_ms"], d["cpu_ms"]))
            verdict = "—" if nan else ("met" if ok else "MISSED")
            rss = side["rss_mb"]
            out.append(f"- {side['label']}, to {side['reached']}: block with the most attachments / the first "
                       f"block: ADD wall {_x(a['wall_ms'])}, CPU {_x(a['cpu_ms'])}; DEL wall {_x(d['wall_ms'])}, "
                       f"CPU {_x(d['cpu_ms'])} → within {BOUND:.2f}x (CPU): {verdict}; peak RSS per call, fewest "
                       f"→ most present: ADD {_f(rss['ADD_few'])} → {_f(rss['ADD_most'])} MB, DEL "
                       f"{_f(rss['DEL_few'])} → {_f(rss['DEL_most'])} MB; failures {side['failures']}; leaks "
                       f"{sum(len(v) for v in side['leaks'].values())}")
        st = r.get("steady")
        if st:
            out.append(f"- steady probe ({st['rounds']} ADD+DEL pairs alternating, same minutes): ours at "
                       f"{st['big_n']} present vs at {st['small_n']}: " + "; ".join(
                           f"{v} {_f(st[v]['big'][0])} / {_f(st[v]['big'][1])} vs {_f(st[v]['small'][0])} / "
                           f"{_f(st[v]['small'][1])} ms → CPU {_x(st[v]['ratio_cpu'])}, wall {_x(st[v]['ratio_wall'])}"
                           for v in ("ADD", "DEL")))
        out.append("")
    return "\n".join(out)


def plot(res: dict[str, Any], path: Path) -> str:
    """ADD and DEL medians (wall and CPU) against attachments present, ours in both modes and Go."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib not installed (pip install -e '.[bench]'): no PNG drawn"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), sharex=True)
    style = {("bridge", "ours"): ("tab:blue", "-"), ("routed", "ours"): ("tab:green", "-"),
             ("bridge", "go"): ("tab:red", "--"), ("routed", "go"): ("tab:orange", "--")}
    for row, verb in enumerate(("ADD", "DEL")):
        for col, key in enumerate(("wall_ms", "cpu_ms")):
            ax = axes[row][col]
            for (mode, side), (color, ls) in style.items():
                r = (res.get(mode) or {}).get(side)
                if not r:
                    continue
                bl = [b for b in r[f"{verb}_blocks"] if b["n"] >= min(3, res[mode]["block"] // 2)]
                xs = [(b["from"] + b["to"]) / 2 for b in bl]
                ax.plot(xs, [b[key] for b in bl], ls, color=color, marker=".", label=r["label"])
            ax.set_title(f"{verb}, median {'wall' if key == 'wall_ms' else 'CPU (user+sys incl. children)'} "
                         f"per block")
            ax.set_ylabel("ms")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("attachments present" + (" (before the DEL)" if verb == "DEL" else
                                                       " (before the ADD)"))
    axes[0][0].legend(fontsize=8)
    load = res.get("meta", {})
    fig.suptitle("cni-ignite density (issue 14): whole-network ADD / DEL, one port mapping each; frozen plugins "
                 f"vs Go; {load.get('cpus', '?')} CPUs, load {load.get('loadavg_start', ['?'])[0]:.1f} → "
                 f"{load.get('loadavg_end', ['?'])[0]:.1f}" if load.get("loadavg_end") else "cni-ignite density")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"curves drawn into {path}"


# ------------------------------------------------------------------------------------------- main

def sigterm(_sig: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks: every namespace and temp dir goes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", default=str(REPO / "dist"), help="folder with ignite-bridge, ignite-ipam (default dist/)")
    ap.add_argument("--bridge-n", type=int, default=1000)
    ap.add_argument("--routed-n", type=int, default=4000)
    ap.add_argument("--go-n", type=int, help="Go stops at this many attachments (default: as far as ours)")
    ap.add_argument("--go-minutes", type=float, default=6.0, help="... or once its ADDs took this long (per mode)")
    ap.add_argument("--minutes", type=float, default=math.inf,
                    help="per mode: stop accumulating (both sides) at the first block boundary after this many "
                         "minutes, then DEL all (default: no limit)")
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--steady", type=int, default=0,
                    help="after accumulating: this many ADD+DEL probe pairs alternating between ours at full "
                         "size and a second ours side with --steady-small present (same load; default 0: off)")
    ap.add_argument("--steady-small", type=int, default=10)
    ap.add_argument("--del-order", choices=("reverse", "random"), default="reverse")
    ap.add_argument("--every", type=int, default=500, help="table rows: first block and every N attachments")
    ap.add_argument("--png", default=str(HERE / "density.png"), help="'' for none")
    ap.add_argument("--json", help="write results here (default benchmarks/results/density-<time>.json)")
    ap.add_argument("--from-json", nargs="+", help="no run: report and draw these results (modes merged)")
    a = ap.parse_args()
    if a.from_json:
        parts = [json.loads(Path(f).read_text()) for f in a.from_json]
        res: dict[str, Any] = {k: v for p in parts for k, v in p.items() if k != "meta"}
        res["meta"] = {**parts[0].get("meta", {}), "loadavg_end": parts[-1].get("meta", {}).get("loadavg_end")}
        print(report(res, a.every))
        if a.png:
            log(plot(res, Path(a.png)))
        return 0
    if os.geteuid() != 0:
        print("benchmarks/density_run.py needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, sigterm)
    with tempfile.TemporaryDirectory(prefix="cni-density-") as tmp:
        res = bench(Path(a.ours).resolve(), Path(tmp), bridge_n=a.bridge_n, routed_n=a.routed_n, go_n=a.go_n,
                    go_minutes=a.go_minutes, block=a.block, del_order=a.del_order, minutes=a.minutes,
                    steady=a.steady, steady_small=a.steady_small)
    res["meta"]["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    print(report(res, a.every))
    if a.png:
        log(plot(res, Path(a.png)))
    path = Path(a.json) if a.json else HERE / "results" / f"density-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1, default=str) + "\n")
    log(f"JSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
