#!/usr/bin/env python3
"""The table of scripts/cost-compare.sh from its results.jsonl.

Usage: cost-report.py RESULTS OUT BASE_REV HEAD_REV FSYNC_FILE SECONDS ROUNDS
"""
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base, head, fsync, secs, rounds = sys.argv[3], sys.argv[4], open(sys.argv[5]).read().split("\n"), sys.argv[6], sys.argv[7]
comps = [("service", "service"), ("worker", "worker"), ("postgres", "Postgres"), ("nats-server", "NATS"), ("total", "total")]
# The skeleton (COST_SKELETON=1) is a third side: the lower bound, not a commit.
SIDES = (("base", base), ("head", head), ("skel", "skeleton"))
def med(xs): return statistics.median(xs) if xs else float("nan")
def pick(side, scen):
    return [r for r in rows if r["side"] == side and r["scenario"].split(".")[1] == scen and r.get("target") == "bridge"]
out = [f"Run of `scripts/cost-compare.sh {base}` ({secs} s per scenario, median of {rounds} rounds, sides alternating): "
       f"`{head}` (this checkout, audit log sealed) against `{base}`, both release builds, the same load generator"
       + (", and the skeleton (`teams-bridge-skeleton`, the lower bound; it seals nothing)." if any(r["side"] == "skel" for r in rows) else "."), ""]
out.append("| scenario | commit | 200/s | p50 / p99 / max ms | ledger | " + " | ".join(f"{n} µs" for _, n in comps) + " |")
out.append("|---|---|---|---|---|" + "---|" * len(comps))
ratio = {}
for scen in ("throughput", "quarter"):
    for side, rev in SIDES:
        rs = pick(side, scen)
        if not rs: continue
        us = {k: med([r["cpu_us_per_webhook"].get(k, 0) for r in rs]) for k, _ in comps}
        lat = {q: med([r["latency_ms"][q] for r in rs]) for q in ("p50", "p99", "max")}
        ok = all(r["ledger"] and not r["ledger"]["problems"] for r in rs) and all(r["pass"] for r in rs)
        load = f'closed c={rs[0]["concurrency"]}' if rs[0]["mode"] == "closed" else f'open {rs[0]["offered_rps"]:.0f}/s'
        out.append(f'| {scen} ({load}) | `{rev}` | {med([r["ok_rps"] for r in rs]):.0f} | {lat["p50"]:.2f} / {lat["p99"]:.2f} / {lat["max"]:.1f} | {"exact" if ok else "DIFFERS"} | '
                   + " | ".join(f"{us[k]:.0f}" for k, _ in comps) + " |")
        ratio.setdefault(scen, {})[side] = us["total"]
        if scen == "throughput":
            floor = med([r["bridge_to_floor"] for r in rs if r.get("bridge_to_floor") is not None])
            ratio.setdefault("floor", {})[side] = floor
out.append("")
# Postgres' CPU by whom it worked for (the bench's pg_* shares; absent from older benches).
shares = [("pg_for_service", "for the service"), ("pg_for_worker", "for the worker"), ("pg_server", "its own processes"), ("pg_for_others", "other clients"), ("pg_for_bench", "the ledger's checks (not counted)")]
for scen in ("throughput", "quarter"):
    for side, rev in SIDES:
        rs = [r for r in pick(side, scen) if "pg_server" in r["cpu_us_per_webhook"]]
        if rs:
            parts = ", ".join(f'{name} {med([r["cpu_us_per_webhook"].get(k, 0) for r in rs]):.0f}' for k, name in shares)
            out.append(f"Postgres µs per webhook, {scen}, `{rev}`: {parts}.")
if out[-1]:
    out.append("")
for scen in ("throughput", "quarter"):
    r = ratio.get(scen, {})
    if "head" in r and "base" in r:
        out.append(f'CPU per webhook, {scen}: {r["head"]:.0f} / {r["base"]:.0f} µs = **{r["head"] / r["base"]:.2f}** of `{base}`.')
    if "skel" in r and "base" in r:
        out.append(f'The skeleton (the lower bound), {scen}: {r["skel"]:.0f} / {r["base"]:.0f} µs = **{r["skel"] / r["base"]:.2f}** of `{base}`'
                   + (f'; `{head}` is {r["head"] / r["skel"]:.2f}× the skeleton.' if "head" in r else "."))
if "floor" in ratio:
    out.append("Bridge / floor throughput: " + ", ".join(f'`{dict(SIDES)[s]}` {v:.3f}' for s, v in ratio["floor"].items()) + ".")
out.append("Machine probe (`scripts/fsync-probe.py`, before and after): " + "; ".join(l for l in fsync if l) + ".")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
