"""Turn stage results into the figures of issue 7: ratios to the bare limits, targets, growth, table."""

from __future__ import annotations

from typing import Any

from benchmarks import load
from benchmarks.limits import VENDOR_RATE_LIMIT_PER_S, Fleet, Rows, minimum_calls

# Issue 7's targets.
TARGET_10K_WALL_S = 600.0
TARGET_PEAK_RSS_MIB = 4096.0
TARGET_LATENCY_FACTOR = 1.5
TARGET_LOAD_OVER_BARE = 2.0
TARGET_VALIDATION_SHARE = 0.30
TARGET_MODELS_WALL_S = 120.0
# The load and validation targets are about throughput: a table of a few hundred rows measures
# the fixed cost of a transaction or a pandera call (tens of ms), reported apart.
BULK_ROWS = 10_000
# Likewise the latency target is about calls kept in flight: a vendor whose calls take a few
# seconds at its rate limit (Teltonika's 5 pages, Tracksolid at 200 devices) measures the fixed
# costs around them (a step, a transaction, the checks, the sandbox building a page), reported apart.
LATENCY_JUDGED_FROM_S = 10.0


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def _table_figures(table: str, asset: dict[str, Any], probe: dict[str, Any] | None) -> dict[str, Any]:
    rows = asset.get("dagster/row_count") or 0
    duration = asset.get("duration_s") or 0.0
    figures: dict[str, Any] = {
        "table": table, "rows": rows, "rejected": asset.get("rejected_rows") or 0, "seconds": duration,
        "rows_per_s": round(rows / duration) if duration else None, "api_calls": asset.get("api_calls") or 0,
    }
    if probe:
        s = probe["seconds"]
        figures.update({
            "json_mib": round(probe["json_bytes"] / 2**20, 2),
            "json_parse_s": round(s["json_parse"], 3), "typing_s": round(s["typing"], 3),
            "validate_s": round(s["validate"], 3), "load_s": round(s["load"], 3),
            "arrow_convert_s": round(s["arrow_convert"], 3), "bare_insert_s": round(s["bare_insert"], 3),
            "load_over_bare": _ratio(s["load"], s["bare_insert"]),
            # What validation adds to the table's asset: its time over everything else the asset did.
            "validation_share": _ratio(s["validate"], duration - s["validate"]) if duration > s["validate"] else None,
            "extract_s": round(max(duration - s["validate"] - s["load"] - s["typing"], 0.0), 3),
        })
    return figures


def summarize(stages: dict[str, Any], fleet: Fleet, latency_ms: float,
              sources_wall_s: float, together: bool) -> dict[str, Any]:
    """Per stage: wall, CPU, peak RSS, rows, API calls against the minimum, ratios to bare limits.

    ``sources_wall_s``: the vendor stages were all done after this long (process start-ups
    included); the total is that plus the models.
    ``together``: they ran side by side, so the total's peak RSS is their peaks added up (an upper
    bound of what they held at once); otherwise one after another, the largest of them.
    """
    summary: dict[str, Any] = {}
    rows_by_table, rows_per_imei = {}, {}
    for stage in stages.values():
        for table, asset in (stage.get("assets") or {}).items():
            rows_by_table[table] = (asset.get("dagster/row_count") or 0) + (asset.get("rejected_rows") or 0)
        rows_per_imei.update(stage.get("rows_per_imei") or {})
    rows = Rows(rows_by_table, rows_per_imei)
    for name, stage in stages.items():
        figures: dict[str, Any] = {
            "success": stage.get("success", False),
            "wall_s": stage.get("wall_s"),
            "cpu_s": round((stage.get("cpu_s") or 0) + (stage.get("children_cpu_s") or 0), 2),
            "peak_rss_mib": max(stage.get("peak_rss_mib") or 0, stage.get("children_peak_rss_mib") or 0),
        }
        if name == "dbt":
            figures.update({"nodes": stage.get("node_count"), "failed_nodes": stage.get("failed_nodes"),
                            "slowest_nodes": stage.get("slowest_nodes")})
            summary[name] = figures
            continue
        probes = (stage.get("probes") or {}).get("tables", {})
        tables = [_table_figures(t, a, probes.get(t)) for t, a in sorted((stage.get("assets") or {}).items())]
        made: dict[str, int] = {}
        for asset in (stage.get("assets") or {}).values():
            for method, count in (asset.get("calls_per_method") or {}).items():
                made[method] = made.get(method, 0) + count
        methods = []
        for method, count in sorted(made.items()):
            least = minimum_calls(name, method, fleet, rows)
            methods.append({"method": method, "calls": count, "minimum": least,
                            "excess": None if least is None else count - least})
        known_minimum = sum(m["minimum"] for m in methods if m["minimum"] is not None)
        limit = VENDOR_RATE_LIMIT_PER_S.get(name)
        asset_seconds = sum(t["seconds"] for t in tables)
        sums = {key: sum(t.get(key) or 0.0 for t in tables)
                for key in ("validate_s", "load_s", "bare_insert_s", "json_parse_s", "typing_s", "extract_s")}
        bulk = [t for t in tables if t["rows"] >= BULK_ROWS and "load_s" in t]
        small = [t for t in tables if t["rows"] < BULK_ROWS and "load_s" in t]
        bulk_sums = {key: sum(t[key] for t in bulk) for key in ("validate_s", "load_s", "bare_insert_s", "seconds")}
        figures.update({
            "bulk_tables": [t["table"] for t in bulk],
            "bulk_load_over_bare": _ratio(bulk_sums["load_s"], bulk_sums["bare_insert_s"]),
            "bulk_validation_share": _ratio(bulk_sums["validate_s"], bulk_sums["seconds"] - bulk_sums["validate_s"]),
            "small_table_fixed_ms": {
                "load_minus_bare": round(1000 * sum(t["load_s"] - t["bare_insert_s"] for t in small) / len(small), 1),
                "validate": round(1000 * sum(t["validate_s"] for t in small) / len(small), 1),
            } if small else None,
            "rows": sum(t["rows"] for t in tables),
            "api_calls": sum(made.values()),
            "api_calls_minimum": known_minimum,
            "methods": methods,
            "retries": sum((a.get("api_retries") or 0) for a in stage.get("assets", {}).values()),
            "throttle_wait_s": round(sum((a.get("throttle_wait_s_summed_over_calls") or 0) for a in stage.get("assets", {}).values()), 2),
            "backoff_wait_s": round(sum((a.get("backoff_wait_s_summed_over_calls") or 0) for a in stage.get("assets", {}).values()), 2),
            # Waiting for another stage's write to the shared file, and holding it for our own.
            "warehouse_wait_s": round(sum((a.get("warehouse_wait_s") or 0) for a in stage.get("assets", {}).values()), 2),
            "warehouse_held_s": round(sum((a.get("warehouse_held_s") or 0) for a in stage.get("assets", {}).values()), 2),
            "asset_seconds": round(asset_seconds, 2),
            # Wall time the vendor's rate limit allows for the minimum calls (perfect concurrency).
            "rate_limit_allows_s": round(known_minimum / limit, 2) if limit else None,
            "over_rate_limit_allowance": _ratio(asset_seconds, known_minimum / limit) if limit else None,
            **{k: round(v, 3) for k, v in sums.items()},
            "load_over_bare": _ratio(sums["load_s"], sums["bare_insert_s"]),
            "validation_share": _ratio(sums["validate_s"], asset_seconds - sums["validate_s"]),
            "tables": tables,
            "missing_probes": (stage.get("probes") or {}).get("missing_probes"),
            "errors": stage.get("errors"),
        })
        summary[name] = figures
    sources = [s for n, s in summary.items() if n != "dbt"]
    models = summary.get("dbt", {})
    peaks = [s.get("peak_rss_mib") or 0 for s in sources]
    sources_rss = (sum(peaks) if together else max(peaks, default=0))
    summary["total"] = {
        "wall_s": round(sources_wall_s + (models.get("wall_s") or 0), 1),
        "sources_wall_s": round(sources_wall_s, 1),
        "vendors_together": together,
        "cpu_s": round(sum(s.get("cpu_s") or 0 for s in summary.values()), 1),
        "peak_rss_mib": max(sources_rss, models.get("peak_rss_mib") or 0),
        "warehouse_wait_s": round(sum(s.get("warehouse_wait_s") or 0 for s in sources), 1),
        "warehouse_held_s": round(sum(s.get("warehouse_held_s") or 0 for s in sources), 1),
        "rows": sum(s.get("rows") or 0 for s in sources),
        "api_calls": sum(s.get("api_calls") or 0 for s in sources),
        "api_calls_minimum": sum(s.get("api_calls_minimum") or 0 for s in sources),
        "latency_ms": latency_ms,
    }
    return summary


def growth(runs: list[dict[str, Any]], many_days: dict[str, Any] | None) -> dict[str, Any]:
    """Cost per device across fleet sizes (per latency), and the models' cost per day."""
    per_device: dict[str, Any] = {}
    for latency in sorted({r["latency_ms"] for r in runs}):
        same = sorted((r for r in runs if r["latency_ms"] == latency), key=lambda r: r["devices"])
        rows = {}
        for name in [*same[0]["summary"].keys()] if same else []:
            rows[name] = [{"devices": r["devices"],
                           "wall_ms_per_device": round(1000 * (r["summary"][name].get("wall_s") or 0) / r["devices"], 2),
                           "cpu_ms_per_device": round(1000 * (r["summary"][name].get("cpu_s") or 0) / r["devices"], 2)}
                          for r in same if name in r["summary"]]
        per_device[f"{latency:g}ms"] = rows
    per_day = None
    if many_days and many_days.get("backfill", {}).get("wall_s"):
        one_day = next((r for r in runs if r["devices"] == many_days["devices"] and r["latency_ms"] == 0), None)
        days = many_days["days"]
        per_day = {
            "days": days,
            "backfill_wall_s": many_days["backfill"]["wall_s"],
            "backfill_wall_s_per_day": round(many_days["backfill"]["wall_s"] / days, 2),
            "one_day_build_wall_s": one_day["summary"]["dbt"]["wall_s"] if one_day else None,
            "daily_incremental_on_top_wall_s": many_days.get("daily_incremental", {}).get("wall_s"),
        }
    return {"per_device": per_device, "models_per_day": per_day}


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, verdict, measured) for each target of issue 7 the results can judge."""
    verdicts = []
    runs = results["runs"]
    big = [r for r in runs if r["devices"] >= 10_000 and r["latency_ms"] == 0]
    for r in big:
        t = r["summary"]["total"]
        ok = t["wall_s"] < TARGET_10K_WALL_S and t["peak_rss_mib"] < TARGET_PEAK_RSS_MIB
        verdicts.append((f"{r['devices']:,} devices, one day, sources + models < 10 min, RSS < 4 GiB",
                         "holds" if ok else "FAILS",
                         f"{t['wall_s']:.0f} s, peak {t['peak_rss_mib']:.0f} MiB"))
    excess = sorted({f"{v}:{m['method']} +{m['excess']}" for r in runs for v, s in r["summary"].items()
                     for m in s.get("methods", []) if m["excess"]})
    verdicts.append(("API calls = minimum for every batch endpoint", "holds" if not excess else "FAILS",
                     "; ".join(excess[:12]) or "all at the minimum"))
    for r in [r for r in runs if r["latency_ms"] > 0]:
        judged = {v: s["over_rate_limit_allowance"] for v, s in r["summary"].items()
                  if s.get("over_rate_limit_allowance") is not None
                  and (s.get("rate_limit_allows_s") or 0) >= LATENCY_JUDGED_FROM_S}
        small = sorted(v for v, s in r["summary"].items() if s.get("over_rate_limit_allowance") is not None
                       and v not in judged)
        slow = {v: x for v, x in judged.items() if x > TARGET_LATENCY_FACTOR}
        verdicts.append((f"{r['devices']:,} devices at {r['latency_ms']:g} ms: within 1.5x of the rate limit",
                         "holds" if judged and not slow else "FAILS" if slow else "not judged",
                         ", ".join(f"{v} {x:.1f}x" for v, x in judged.items())
                         + (f"; not judged, under {LATENCY_JUDGED_FROM_S:g} s of calls at the limit: "
                            + ", ".join(small) if small else "")))
    for r in [r for r in runs if r["latency_ms"] == 0]:
        sources = {v: s for v, s in r["summary"].items() if s.get("bulk_tables")}
        load = {v: s["bulk_load_over_bare"] for v, s in sources.items()}
        valid = {v: s["bulk_validation_share"] for v, s in sources.items()}
        verdicts.append((f"{r['devices']:,} devices: load within 2x of a plain Arrow insert (tables >= {BULK_ROWS:,} rows)",
                         "holds" if all((x or 0) <= TARGET_LOAD_OVER_BARE for x in load.values()) else "FAILS",
                         ", ".join(f"{v} {x:.2f}x" for v, x in load.items() if x is not None) or "no bulk table"))
        verdicts.append((f"{r['devices']:,} devices: validation adds under 30 % (tables >= {BULK_ROWS:,} rows)",
                         "holds" if all((x or 0) <= TARGET_VALIDATION_SHARE for x in valid.values()) else "FAILS",
                         ", ".join(f"{v} +{100 * x:.0f} %" for v, x in valid.items() if x is not None) or "no bulk table"))
    many = results.get("models_many_days")
    if many and many.get("backfill"):
        wall = many["backfill"].get("wall_s") or float("inf")
        verdicts.append((f"models {many['days']} days x {many['devices']:,} devices < 2 min",
                         "holds" if wall < TARGET_MODELS_WALL_S and many["backfill"].get("success") else "FAILS",
                         f"{wall:.0f} s" + ("" if many["backfill"].get("success") else " (dbt build failed)")))
    return verdicts


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render(results: dict[str, Any]) -> str:
    lines = []
    if results.get("definitions_load"):
        lines += [load.describe(results["definitions_load"]), ""]
    header = (f"{'devices':>7} {'lat ms':>6} {'stage':<11} {'wall s':>8} {'CPU s':>7} {'RSS MiB':>8} {'rows':>10} "
              f"{'rows/s':>8} {'calls/min':>13} {'retry':>5} {'wait s':>6} {'load/bare':>9} {'valid.+%':>8} {'vs limit':>8}")
    lines += [header, "-" * len(header)]
    legend = ("calls/min: API calls made / the fewest the vendor's limits allow; retry: calls sent again (a "
              "vendor throttle or fault); wait s: seconds waited for the rate limit (client pacing and vendor "
              "throttling, summed over concurrent calls); load/bare: partition swap over a plain Arrow insert "
              "(tables >= 10,000 rows); valid.+%: what pandera adds; vs limit: asset time over what the "
              "vendor's rate limit allows for the minimum calls")
    for r in results["runs"]:
        for name, s in r["summary"].items():
            rows = s.get("rows")
            wall = s.get("wall_s")
            calls = f"{s['api_calls']:,}/{s['api_calls_minimum']:,}" if "api_calls" in s else ""
            share = s.get("bulk_validation_share")
            limit = s.get("over_rate_limit_allowance")
            lines.append(
                f"{r['devices']:>7,} {r['latency_ms']:>6g} {name:<11} {_fmt(wall):>8} {_fmt(s.get('cpu_s')):>7} "
                f"{_fmt(s.get('peak_rss_mib'), 0):>8} {_fmt(rows):>10} "
                f"{_fmt(round(rows / wall) if rows and wall else None):>8} {calls:>13} "
                f"{_fmt(s.get('retries')):>5} {_fmt(s.get('throttle_wait_s')):>6} {_fmt(s.get('bulk_load_over_bare'), 2):>9} "
                f"{'-' if share is None else f'{100 * share:.0f}':>8} {'-' if limit is None else f'{limit:.1f}x':>8}"
                + ("" if s.get("success", True) else "  FAILED"))
        total, sandbox = r["summary"].get("total", {}), r.get("sandbox") or {}
        how = "side by side" if total.get("vendors_together") else "one after another"
        lines.append(f"{'':>15}vendors {how}: sources {_fmt(total.get('sources_wall_s'))} s, then the models; "
                     f"the writes held the file {_fmt(total.get('warehouse_held_s'))} s and waited "
                     f"{_fmt(total.get('warehouse_wait_s'))} s for each other")
        lines.append(f"{'':>15}sandbox (the vendors' side): {_fmt(sandbox.get('cpu_s'))} s CPU, of it "
                     f"{_fmt(sandbox.get('warm_up_cpu_s'))} s generating days before serving")
        lines.append("")
    many = results.get("models_many_days")
    if many:
        for label in ("backfill", "daily_incremental"):
            stage = many.get(label) or {}
            lines.append(f"models {many['days']} days x {many['devices']:,} devices, {label}: "
                         f"{_fmt(stage.get('wall_s'))} s wall, CPU {_fmt((stage.get('children_cpu_s') or 0) + (stage.get('cpu_s') or 0))} s, "
                         f"peak {_fmt(stage.get('children_peak_rss_mib'), 0)} MiB"
                         + ("" if stage.get("success") else "  FAILED"))
        lines.append(f"  raw cache {many['raw_cache']} ({'built now in ' + str(many['raw_cache_build_s']) + ' s' if many['raw_cache_built_now'] else 'reused'})")
        lines.append("")
    per_device = results["growth"]["per_device"]
    for latency, stages in per_device.items():
        lines.append(f"cost per device at {latency} (wall ms / CPU ms per device, by fleet size):")
        for name, points in stages.items():
            lines.append(f"  {name:<11} " + "   ".join(
                f"{p['devices']:>6,}: {p['wall_ms_per_device']:>7.1f} / {p['cpu_ms_per_device']:>7.1f}" for p in points))
    per_day = results["growth"].get("models_per_day")
    if per_day:
        lines.append(f"models per day: {per_day['backfill_wall_s_per_day']} s/day over {per_day['days']} days "
                     f"(one-day build {per_day['one_day_build_wall_s']} s; daily incremental on top "
                     f"{per_day['daily_incremental_on_top_wall_s']} s)")
    lines.append("")
    lines.append(legend)
    lines.append("")
    lines.append("targets (issue 7):")
    for target, verdict, measured in targets(results):
        lines.append(f"  [{verdict}] {target}: {measured}")
    return "\n".join(lines)


def combine(paths: list[str]) -> dict[str, Any]:
    """One result from several benchmark files (e.g. sizes run separately): later runs win."""
    import json

    runs: dict[tuple[int, float], dict[str, Any]] = {}
    many_days = None
    for path in paths:
        with open(path) as handle:
            results = json.load(handle)
        for run in results["runs"]:
            runs[(run["devices"], run["latency_ms"])] = run
        many_days = results.get("models_many_days") or many_days
    ordered = [runs[key] for key in sorted(runs)]
    return {"combined_from": paths, "runs": ordered, "models_many_days": many_days,
            "growth": growth(ordered, many_days)}


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report RESULT.json ...``: the table of one or several result files."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("results", nargs="+")
    parser.add_argument("--out", help="write the combined JSON here")
    args = parser.parse_args(argv)
    combined = combine(args.results)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(combined, handle, indent=1, default=str)
    print(render(combined))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
