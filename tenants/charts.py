"""Pure chart builders for the economics pages: selector output → Plotly figure dicts (factory_portal.charts)."""

from __future__ import annotations

from decimal import Decimal

from factory_portal.charts import PALETTE, base_layout, empty_figure, escape_label


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def whatif_figure(*, whatif: dict, currency: str) -> dict:
    """Cost per million tokens against GPU utilization, the current point and the pooling scenarios marked."""
    y_title, y_unit = "cost per million tokens", f"{currency}/Mtok"
    if not whatif["curve"]:
        return empty_figure(message="No utilization or tokens measured in this range: nothing to project from.",
                            x_title="GPU utilization", x_unit="%", y_title=y_title, y_unit=y_unit)
    xs = [float(u * 100) for u, _ in whatif["curve"]]
    ys = [_f(c) for _, c in whatif["curve"]]
    data = [{"type": "scatter", "mode": "lines", "name": "cost per Mtok at utilization", "x": xs, "y": ys,
             "line": {"color": PALETTE[0], "width": 2},
             "hovertemplate": "%{x:.0f} %<br>%{y:.4~g} " + escape_label(y_unit) + "<extra></extra>"}]
    util, cost = whatif["current"]
    data.append({"type": "scatter", "mode": "markers+text", "name": "now", "x": [float(util * 100)],
                 "y": [_f(cost)], "text": ["now"], "textposition": "top center",
                 "marker": {"color": PALETTE[3], "size": 12}})
    pool = whatif.get("pooling")
    if pool and pool["util_separate"] and pool["util_pooled"]:
        data.append({"type": "scatter", "mode": "markers+text", "name": f"pooling {pool['tenants']} tenants",
                     "x": [float(pool["util_separate"] * 100), float(pool["util_pooled"] * 100)],
                     "y": [_f(pool["cost_per_mtok_separate"]), _f(pool["cost_per_mtok_pooled"])],
                     "text": ["separate", "pooled"], "textposition": "bottom center",
                     "marker": {"color": PALETTE[2], "size": 10, "symbol": "diamond"}})
    layout = base_layout(x_title="GPU utilization", x_unit="%", y_title=y_title, y_unit=y_unit)
    layout["xaxis"]["range"] = [0, 100]
    layout["yaxis"]["type"] = "log"
    layout["yaxis"].pop("rangemode", None)
    return {"data": data, "layout": layout, "meta": {"empty": False}}


def cost_figure(*, figures: dict) -> dict:
    """Revenue against the three parts of cost, one stacked bar each, in the site's currency."""
    currency = figures["currency"]
    parts = [("energy", figures["energy_cost"]), ("capex amortization", figures["capex_amortization"]),
             ("opex", figures["opex"])]
    if not figures["tokens"] and not figures["gpu_hours"]:
        return empty_figure(message="No GPUs or tokens in this range.", y_title="amount", y_unit=currency)
    data = [{"type": "bar", "name": name, "x": ["cost"], "y": [_f(value)], "marker": {"color": PALETTE[i + 1]}}
            for i, (name, value) in enumerate(parts)]
    data.append({"type": "bar", "name": "revenue", "x": ["revenue"], "y": [_f(figures["revenue"])],
                 "marker": {"color": PALETTE[0]}})
    layout = base_layout(x_title="", x_unit="", y_title="amount", y_unit=currency, barmode="stack")
    return {"data": data, "layout": layout, "meta": {"empty": False}}
