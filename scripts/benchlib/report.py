"""The one markdown table: every measurement side by side (direct, bare relay, gateway), the
ratios, and the targets with met/missed and the margin."""

from __future__ import annotations

from typing import Any

MB = 1024 * 1024
PATHS = ("direct", "relay", "gateway")

# The targets, from issue 15 ("Done when").
RELAY_RATIO_MIN = 0.6  # small JSON, 16 connections: gateway req/s >= 0.6 x relay req/s
RELAY_RATIO_AIM = 0.8  # ... and the aim beyond the floor
P99_RELAY_MAX = 3.0  # small JSON, 16 connections: gateway p99 <= 3 x the relay's
ADDED_P50_MAX_MS = 1.0  # small JSON, 1 connection: gateway p50 - direct p50
LARGE_ADDED_MAX = 0.25  # 16 MB answers: gateway p50 - direct p50 <= 25 % of direct p50
RSS_FACTOR_MAX = 1.5  # 16 MB answers: gateway peak RSS (growth over idle) <= 1.5 x in flight
SSE_FIRST_MAX_MS = 2.0  # first partial image: upstream sent -> client received
FANOUT_P99_MAX_MS = 50.0  # one progress event to 1,000 websocket subscribers
WATCHED_EXTRA_MAX_MS = 2.0  # a watched job's first partial: at most this after an unwatched one's


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


class Table:
    def __init__(self) -> None:
        self.rows: list[str] = [
            "| measurement | direct | bare relay | gateway | gateway / relay | gateway / direct "
            "| target | verdict |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]

    def add(self, name: str, values: dict[str, float | None], *, target: str = "",
            verdict: str = "", digits: int = 2, cells: dict[str, str] | None = None) -> None:
        shown = {p: (cells or {}).get(p) or _num(values.get(p), digits) for p in PATHS}
        g, r, d = values.get("gateway"), values.get("relay"), values.get("direct")
        self.rows.append(f"| {name} | {shown['direct']} | {shown['relay']} | {shown['gateway']} "
                         f"| {_ratio(g, r)} | {_ratio(g, d)} | {target} | {verdict} |")

    def note(self, name: str, text: str) -> None:
        self.rows.append(f"| {name} | | | {text} | | | | |")

    def raw(self, name: str, *, relay: str = "", gateway: str = "", ratio: str = "",
            target: str = "", verdict: str = "") -> None:
        """A row whose cells are written out (no direct column, the ratio given)."""
        self.rows.append(f"| {name} | | {relay} | {gateway} | {ratio} | | {target} "
                         f"| {verdict} |")

    def render(self) -> str:
        return "\n".join(self.rows)


def _by(results: list[dict[str, Any]], group: str, conns: int) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in results if r["group"] == group and r["conns"] == conns}


def met(ok: bool, text: str) -> str:
    return f"**met**: {text}" if ok else f"**MISSED**: {text}"


def _unwatched_first_partial(res: dict[str, Any]) -> float | None:
    """The gateway's p50 first-partial delay of an unwatched stream (the judged SSE row)."""
    for variant in res.get("sse", []):
        if variant.get("judged") and "gateway" in variant["paths"]:
            return float(variant["paths"]["gateway"]["p50_ms"])
    return None


def build_table(res: dict[str, Any]) -> str:
    t = Table()
    loads = res.get("loads", [])
    small_conns = sorted({r["conns"] for r in loads if r["group"] == "small"})
    for conns in small_conns:
        row = _by(loads, "small", conns)
        label = f"small JSON (~4 KB), {conns} conn{'s' if conns > 1 else ''}"
        rps = {p: row[p]["req_s"] for p in row}
        target = verdict = ""
        if conns == max(small_conns) and "relay" in rps and "gateway" in rps:
            ratio = rps["gateway"] / rps["relay"]
            target = f"gateway ≥ {RELAY_RATIO_MIN} x relay req/s (aim {RELAY_RATIO_AIM})"
            verdict = met(ratio >= RELAY_RATIO_MIN,
                           f"{ratio:.2f}x ({ratio - RELAY_RATIO_MIN:+.2f}x vs the floor)")
        t.add(f"{label}: req/s", rps, target=target, verdict=verdict, digits=0)
        p50 = {p: row[p]["p50_ms"] for p in row}
        target = verdict = ""
        if conns == min(small_conns) and "direct" in p50 and "gateway" in p50:
            added = p50["gateway"] - p50["direct"]
            target = f"gateway p50 - direct p50 ≤ {ADDED_P50_MAX_MS:g} ms"
            verdict = met(added <= ADDED_P50_MAX_MS, f"+{added:.2f} ms added "
                           f"({ADDED_P50_MAX_MS - added:+.2f} ms margin)")
        t.add(f"{label}: p50 ms", p50, target=target, verdict=verdict)
        p99 = {p: row[p]["p99_ms"] for p in row}
        target = verdict = ""
        if conns == max(small_conns) and p99.get("relay") and "gateway" in p99:
            times = p99["gateway"] / p99["relay"]
            target = f"gateway p99 ≤ {P99_RELAY_MAX:g} x relay p99"
            verdict = met(times <= P99_RELAY_MAX, f"{times:.2f}x")
        t.add(f"{label}: p99 ms", p99, target=target, verdict=verdict)
        cpu = {p: row[p]["extra"].get("cpu_ms_per_req") for p in row}
        if any(v is not None for v in cpu.values()):
            t.add(f"{label}: server CPU ms per request (direct = the upstream itself)", cpu)

    for conns in sorted({r["conns"] for r in loads if r["group"] == "large"}):
        row = _by(loads, "large", conns)
        label = f"16 MB (n=4 x 4 MB b64), {conns} conn{'s' if conns > 1 else ''}"
        p50 = {p: row[p]["p50_ms"] for p in row}
        target = verdict = ""
        if "direct" in p50 and "gateway" in p50:
            added = p50["gateway"] - p50["direct"]
            share = added / p50["direct"]
            target = f"gateway - direct ≤ {LARGE_ADDED_MAX:.0%} of direct p50"
            verdict = met(share <= LARGE_ADDED_MAX,
                           f"+{added:.1f} ms = {share:.0%} of direct "
                           f"(limit {LARGE_ADDED_MAX * p50['direct']:.1f} ms)")
        t.add(f"{label}: p50 ms", p50, target=target, verdict=verdict, digits=1)
        t.add(f"{label}: p99 ms", {p: row[p]["p99_ms"] for p in row}, digits=1)
        t.add(f"{label}: server CPU ms per request",
              {p: row[p]["extra"].get("cpu_ms_per_req") for p in row}, digits=1)
        in_flight = conns * res.get("large_body_bytes", 16 * MB)
        growth = {p: row[p]["extra"].get("rss_growth") for p in row if row[p].get("extra")}
        cells = {p: f"{row[p]['extra']['rss_peak'] / MB:.0f} (+{growth[p] / MB:.0f})"
                 for p in growth if growth[p] is not None}
        target = verdict = ""
        if growth.get("gateway") is not None:
            factor = growth["gateway"] / in_flight
            target = (f"gateway peak RSS growth ≤ {RSS_FACTOR_MAX:g} x in flight "
                      f"({in_flight / MB:.0f} MB)")
            spare = (RSS_FACTOR_MAX - factor) * in_flight / MB
            verdict = met(factor <= RSS_FACTOR_MAX,
                           f"{factor:.1f}x in flight ({spare:+.0f} MB margin)")
        t.add(f"{label}: peak RSS MB (growth over idle)",
              {p: g for p, g in growth.items()}, target=target, verdict=verdict, cells=cells)

    for variant in res.get("sse", []):
        vals = variant["paths"]
        label = f"SSE first partial ({variant['label']}), upstream sent → client has it"
        p50 = {p: v["p50_ms"] for p, v in vals.items()}
        target = verdict = ""
        if variant.get("judged") and "gateway" in p50:
            target = f"gateway ≤ {SSE_FIRST_MAX_MS:g} ms after the upstream sent it (p50)"
            added = p50["gateway"] - p50.get("direct", 0.0)
            verdict = met(p50["gateway"] <= SSE_FIRST_MAX_MS,
                           f"{p50['gateway']:.2f} ms ({SSE_FIRST_MAX_MS - p50['gateway']:+.2f} ms "
                           f"margin; +{added:.2f} ms vs direct)")
        t.add(f"{label}: p50 ms", p50, target=target, verdict=verdict)
        p99 = {p: v["p99_ms"] for p, v in vals.items()}
        verdict = ""
        if variant.get("judged") and "gateway" in p99:
            verdict = f"p99 {'within' if p99['gateway'] <= SSE_FIRST_MAX_MS else 'over'} 2 ms"
        t.add(f"{label}: p99 ms ({variant['n']} streams)", p99, verdict=verdict)

    fan = res.get("fanout")
    if fan and fan.get("measured"):
        m = fan["measured"]
        n = fan["connected"]
        short = "" if fan["clients"] >= 1000 else f" (reduced from 1,000: {fan['why_fewer']})"
        over = f", {fan['jobs']} jobs" if fan.get("jobs", 1) > 1 else ""
        t.add(f"Socket.IO `progress` to {n:,} websocket subscribers{short}{over}: "
              "p50 / p99 / max ms",
              {"gateway": m["p99_ms"]}, target=f"p99 ≤ {FANOUT_P99_MAX_MS:g} ms, all received",
              verdict=met(m["p99_ms"] <= FANOUT_P99_MAX_MS and m["received"] == n,
                           f"p99 {m['p99_ms']:.1f} ms, {m['received']:,}/{n:,} received"),
              cells={"gateway": f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f} / {m['max_ms']:.1f}"})
        if fan.get("stream_first_partial_ms") is not None:
            watched = fan["stream_first_partial_ms"]
            unwatched = _unwatched_first_partial(res)
            target = verdict = ""
            if unwatched is not None:
                extra = watched - unwatched
                target = (f"≤ {WATCHED_EXTRA_MAX_MS:g} ms after an unwatched job's (p50 of the "
                          "SSE rows)")
                verdict = met(extra <= WATCHED_EXTRA_MAX_MS,
                              f"{extra:+.2f} ms against {unwatched:.2f} ms unwatched")
            jobs = fan.get("jobs", 1)
            t.add(f"SSE first partial (4 KB) while {n:,} subscribers watch the job, ms"
                  + (f" (median of {jobs} jobs)" if jobs > 1 else ""),
                  {"gateway": watched}, target=target, verdict=verdict or "reported")
    elif fan:
        t.note("Socket.IO fan-out", f"failed: {fan.get('error', 'no measurement')}")
    from benchlib import report_scale  # its rows come after the original sections

    report_scale.add_rows(t, res)
    for name, text in res.get("notes", []):
        t.note(name, text)
    return t.render()
