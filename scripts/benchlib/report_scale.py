"""The table's rows for scale: long jobs (relay and gateway side by side), Redis mode against
memory mode, and ``--workers 2`` next to 1 worker; targets from issue 15."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchlib.report import met

if TYPE_CHECKING:
    from benchlib.report import Table

MB = 1024 * 1024
WALL_MAX = 1.1  # long jobs: gateway wall time <= 1.1 x the relay's
GROWTH_MAX = 2.0  # RSS growth per concurrent job <= 2 x the relay's
RETURNED_MAX = 1.10  # RSS a minute after the burst <= 1.1 x before it
FINAL_P99_MAX = 2.0  # final image delivery p99 <= 2 x the relay's
REDIS_CPU_MAX = 1.2  # Redis mode CPU per request <= 1.2 x memory mode
JUDGED_N = 2000  # the figure; a smaller largest burst (--quick) is judged, and says so


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(g: float | None, r: float | None) -> float | None:
    return g / r if g is not None and r else None


def _x(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "n/a"


def add_rows(t: Table, res: dict[str, Any]) -> None:
    if res.get("long"):
        add_long(t, res["long"])
    if res.get("redis"):
        add_redis(t, res["redis"])


def add_long(t: Table, long: dict[str, Any]) -> None:
    if long.get("error"):
        t.note("long jobs", f"failed: {long['error']}")
    bursts = long.get("bursts", [])
    low, high = long["seconds"]
    largest = {kind: max(b["n"] for b in bursts if b["kind"] == kind)
               for kind in {b["kind"] for b in bursts}}
    seen: list[tuple[str, int]] = []
    for b in bursts:
        if (b["kind"], b["n"]) not in seen:
            seen.append((b["kind"], b["n"]))
    for kind, n in seen:
        pair = {b["path"]: b for b in bursts if b["kind"] == kind and b["n"] == n}
        r, g = pair.get("relay"), pair.get("gateway")
        if r is None or g is None:
            continue
        judged = n == largest[kind]
        what = "SSE (2 partials, final)" if kind == "sse" else "JSON"
        reduced = "" if n >= JUDGED_N or not judged else f", reduced from {JUDGED_N:,}"
        label = f"long {what}, {n:,} concurrent, {low:g}-{high:g} s jobs{reduced}"
        _long_rows(t, label, r, g, judged, long)


def _long_rows(t: Table, label: str, r: dict[str, Any], g: dict[str, Any], judged: bool,
               long: dict[str, Any]) -> None:
    n, cap = g["n"], long["cap_s"]
    all_done = g["completed"] == n and g["error_count"] == 0

    def counts(b: dict[str, Any]) -> str:
        top = b["upstream"].get("max_in_flight")
        return (f"{b['completed']:,} / {b['error_count']:,} / {b['unfinished']:,} "
                f"(upstream max {_n(top)})" + (f"; {b['stopped']}" if b.get("stopped") else ""))

    short = "" if all_done else f" (only {g['completed']:,} of {n:,} completed)"
    t.raw(f"{label}: completed / errors / unfinished at {cap:g} s (most upstream calls at "
          "once)", relay=counts(r), gateway=counts(g),
          target="all complete, 0 errors" if judged else "",
          verdict=met(all_done, f"{g['completed']:,}/{n:,}, {g['error_count']} errors"
                      + (f" ({', '.join(f'{k}: {v}' for k, v in g['errors'].items())})"
                         if g["errors"] else "")) if judged else "")
    ratio = _ratio(g["wall_s"], r["wall_s"])
    verdict = ""
    if judged:
        verdict = (met(ratio <= WALL_MAX, f"{ratio:.2f}x ({WALL_MAX - ratio:+.2f}x margin)")
                   if ratio is not None else met(False, f"not all completed within {cap:g} s"))
    not_all = f"not all in {cap:g} s"
    t.raw(f"{label}: wall s, burst start → last job done",
          relay=_n(r["wall_s"], 1) if r["wall_s"] is not None else not_all,
          gateway=_n(g["wall_s"], 1) if g["wall_s"] is not None else not_all,
          ratio=_x(ratio), target=f"≤ {WALL_MAX:g} x relay" if judged else "", verdict=verdict)

    def growth(b: dict[str, Any]) -> str:
        return (f"{b['growth_per_job'] / 1024:,.0f} ({b['rss_before'] / MB:,.0f} → "
                f"{b['rss_peak'] / MB:,.0f})")

    ratio = _ratio(g["growth_per_job"], r["growth_per_job"]) if r["growth_per_job"] > 0 else None
    t.raw(f"{label}: RSS growth per concurrent job KB (RSS MB before → peak)",
          relay=growth(r), gateway=growth(g), ratio=_x(ratio),
          target=f"≤ {GROWTH_MAX:g} x relay" if judged else "",
          verdict=(met(False, f"burst {g['stopped']}") if g.get("stopped")
                   else met(ratio <= GROWTH_MAX, f"{ratio:.2f}x{short}") if ratio is not None
                   else "n/a: the relay did not grow") if judged else "")

    def after(b: dict[str, Any]) -> str:
        if b.get("rss_after") is None:
            return "n/a"
        waited = b.get("after_waited_s") or 0.0
        late = f", at {waited:.0f} s" if waited > long["after_s"] + 5 else ""
        return (f"{b['rss_after'] / MB:,.0f} vs {b['rss_before'] / MB:,.0f} "
                f"({b['rss_after'] / b['rss_before']:.2f}x{late})")

    waited = long["after_s"]
    quick = "" if waited >= 60 else f" (only {waited:g} s: --quick)"
    returned = (g["rss_after"] / g["rss_before"]) if g.get("rss_after") else None
    t.raw(f"{label}: RSS MB {waited:g} s after the burst (or when shown) vs before{quick}",
          relay=after(r), gateway=after(g),
          target=f"≤ {RETURNED_MAX:g} x before, a minute after" if judged else "",
          verdict=met(returned <= RETURNED_MAX,
                      f"{returned:.2f}x before ({(g['rss_after'] - g['rss_before']) / MB:+,.0f}"
                      " MB)" + (f"; upstream still had {g['upstream_in_flight_after']} of its "
                                "calls in flight" if g.get("upstream_in_flight_after") else ""))
          if judged and returned is not None else "")

    def final(b: dict[str, Any]) -> str:
        if not b["completed"]:
            return "n/a"
        return f"{_n(b['final_p50_ms'], 1)} / {_n(b['final_p99_ms'], 1)}"

    ratio = _ratio(g["final_p99_ms"], r["final_p99_ms"]) if g["completed"] else None
    t.raw(f"{label}: final image delivery (upstream sent → client has it) p50 / p99 ms",
          relay=final(r), gateway=final(g), ratio=_x(ratio),
          target=f"p99 ≤ {FINAL_P99_MAX:g} x relay" if judged else "",
          verdict=(met(ratio <= FINAL_P99_MAX, f"{ratio:.2f}x{short}") if ratio is not None
                   else met(False, "no job completed")) if judged else "")
    def cpu(b: dict[str, Any]) -> str:
        faults = b.get("faults_per_job")
        return _n(b["cpu_ms_per_job"], 2) + (f" ({faults:,} faults)" if faults else "")

    t.raw(f"{label}: server CPU ms (minor page faults) per completed job", relay=cpu(r),
          gateway=cpu(g), ratio=_x(_ratio(g["cpu_ms_per_job"], r["cpu_ms_per_job"])))

    def cores(b: dict[str, Any]) -> str:
        return (f"{b['server_cores']:.2f} / {b['upstream_cores']:.2f} / {b['client_cores']:.2f}"
                f" / {b['others_cores']:.2f}")

    t.raw(f"{label}: cores used: server / fake upstream / clients / other work",
          relay=cores(r), gateway=cores(g))


def add_redis(t: Table, red: dict[str, Any]) -> None:
    if red.get("skipped") or red.get("error"):
        t.note("Redis mode, --workers 2", f"skipped: {red.get('skipped') or red['error']}")
        return
    by = {row["path"]: row for row in red["loads"]}
    mem, one, two = by.get("memory"), by.get("redis"), by.get("redis-2w")
    if not (mem and one and two):
        return
    label = f"unwatched small JSON (~4 KB), {red['conns']} conns"
    cpu_m, cpu_r = mem["extra"]["cpu_ms_per_req"], one["extra"]["cpu_ms_per_req"]
    ratio = cpu_r / cpu_m
    t.raw(f"Redis mode vs memory mode (1 process), {label}: gateway CPU ms per request",
          gateway=f"memory {cpu_m:.2f} → Redis {cpu_r:.2f} (+ redis-server "
                  f"{one['extra']['cpu_ms_per_req_redis']:.2f})",
          ratio=f"{ratio:.2f}x Redis / memory", target=f"Redis ≤ {REDIS_CPU_MAX:g} x memory",
          verdict=met(ratio <= REDIS_CPU_MAX, f"{ratio:.2f}x ({REDIS_CPU_MAX - ratio:+.2f}x "
                      "margin)"))
    t.raw(f"Redis mode vs memory mode (1 process), {label}: req/s, p50 / p99 ms",
          gateway=f"memory {mem['req_s']:,.0f} ({mem['p50_ms']:.1f} / {mem['p99_ms']:.1f}) → "
                  f"Redis {one['req_s']:,.0f} ({one['p50_ms']:.1f} / {one['p99_ms']:.1f})",
          ratio=f"{one['req_s'] / mem['req_s']:.2f}x Redis / memory")

    def line(row: dict[str, Any], what: str, workers: int) -> str:
        extra = row["extra"]
        each = sorted((extra[k] for k in extra if k.startswith("cores_process")), reverse=True)
        split = ""
        if len(each) > 1:  # the busiest are the workers; the rest: supervisor, helpers
            split = (" = workers " + " + ".join(f"{c:.2f}" for c in each[:workers])
                     + f", {len(each) - workers} other processes {sum(each[workers:]):.2f}")
        return (f"{what}: {row['req_s']:,.0f} req/s on {extra['cores']:.2f} cores{split} "
                f"(redis-server {extra['cores_redis']:.2f}, load generator "
                f"{extra['cores_client']:.2f})")

    t.raw(f"`--workers 2` vs 1 worker (Redis mode), {label}: req/s and cores used",
          gateway=f"{line(one, '1 worker', 1)}; {line(two, '2 workers', 2)}",
          ratio=f"{two['req_s'] / one['req_s']:.2f}x req/s",
          target="reported next to 1 worker", verdict="reported")
