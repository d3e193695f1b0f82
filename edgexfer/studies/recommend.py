"""What a study decides from its figures: which artifacts are deployable, the Pareto front of accuracy against
batch-1 latency, and the recommendation under a latency budget.

Each backbone's candidate is what its bench recommends (``backbones[].deploy``: the fastest artifact that passed
the gate across runtimes and precisions, ``edgexfer.contracts.bench.recommend``), so the study, bench, predict and
package name the same artifact; the study then picks the most accurate backbone within the budget. Where a
backbone's bench pick cannot be its candidate (not recorded, over the budget, no better than always answering the
most frequent class), its other deployable rows are, and the recommendation says why.

Plain functions over the rows of a study's results.json (``edgexfer.contracts.study.StudyRow`` as written),
so ``edgexfer report --latency-budget-ms`` can decide again from results.json alone; the report only renders
what is decided here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edgexfer.contracts.bench import majority_baseline
from edgexfer.contracts.study import REFERENCE_RUNTIMES, BackboneDeploy, row_key
from edgexfer.contracts.study import row_label as _label
from edgexfer.report.formats import finite as _finite
from edgexfer.report.formats import fmt
from edgexfer.report.formats import num as _num


def baseline_accuracy(row: dict[str, Any]) -> float | None:
    """The majority-class baseline of the images a row was measured on (from its confusion matrix: rows are
    true classes), or the figure the bench recorded; None when neither is there."""
    if _finite(row.get("baseline_accuracy")):
        return float(row["baseline_accuracy"])
    return majority_baseline(row.get("confusion_matrix"))


def beats_baseline(row: dict[str, Any]) -> bool:
    """The row's model is usable: the bench did not find the FP32 model unusable, and the row's accuracy beats
    always answering the most frequent class (a model at chance level is never recommended)."""
    if row.get("model_usable") is False:
        return False
    baseline = baseline_accuracy(row)
    return baseline is None or (_finite(row.get("accuracy")) and float(row["accuracy"]) > baseline + 1e-9)


def is_deployable(row: dict[str, Any]) -> bool:
    """An artifact that passed the gate and beats the majority-class baseline, measured on a device runtime
    at batch 1."""
    return (
        row.get("runtime") not in REFERENCE_RUNTIMES
        and bool(row.get("gate_passed"))
        and _finite(row.get("latency_p50_ms"))
        and _finite(row.get("accuracy"))
        and beats_baseline(row)
    )


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: latency (x) lower-or-equal and accuracy (y)
    higher-or-equal with one strictly better. Sorted by latency; exact duplicates all stay."""
    front = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(
            (xj <= xi and yj >= yi) and (xj < xi or yj > yi) for j, (xj, yj) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def mark_pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``row["pareto"]`` over the deployable rows (accuracy against batch-1 p50 latency)."""
    candidates = [r for r in rows if is_deployable(r)]
    front = set(pareto_front([(float(r["latency_p50_ms"]), float(r["accuracy"])) for r in candidates]))
    front_keys = {row_key(candidates[i]) for i in front}
    for r in rows:
        r["pareto"] = row_key(r) in front_keys
    return rows


def gate_evidence(rows: Sequence[dict[str, Any]]) -> str | None:
    """What a recommendation rests on: "pass" when some artifact is deployable (passed its gate), else
    "inconclusive" when a device artifact's gate could not be decided on the test images (or its model check),
    else "fail"; None for a study without bench results."""
    if not rows:
        return None
    if any(is_deployable(r) for r in rows):
        return "pass"
    device = [r for r in rows if r.get("runtime") not in REFERENCE_RUNTIMES]
    if any(r.get("gate_verdict") == "inconclusive" for r in device):
        return "inconclusive"
    return "fail"


def deploy_why_not(deploy: BackboneDeploy | None, rows: Sequence[dict[str, Any]], budget_ms: float | None) -> str:
    """Why a backbone's bench pick is not its candidate in the study ("" when it is): ``rows`` are the study's rows
    of that backbone."""
    if deploy is None or deploy.status == "unrecorded":
        return "its bench recorded no recommendation (bench it again to record one)"
    if deploy.status != "ok":
        return f"its bench recommends nothing ({deploy.reason})"
    named = f"its bench's pick, {deploy.artifact} on {deploy.runtime}"
    row = next((r for r in rows if (r.get("artifact"), r.get("runtime")) == deploy.key), None)
    if row is None:
        return f"{named}, is not among the study's rows"
    if not is_deployable(row):
        if not beats_baseline(row):
            return f"{named}, does not beat the majority-class baseline"
        return f"{named}, has no batch-1 latency or accuracy"
    if budget_ms is not None and float(row["latency_p50_ms"]) > budget_ms:
        return f"{named}, runs {float(row['latency_p50_ms']):.3g} ms at batch 1, over the {budget_ms:g} ms budget"
    return ""


def deploy_of(results: Mapping[str, Any]) -> dict[str, BackboneDeploy]:
    """Each finished backbone's bench pick (``backbones[].deploy``) by backbone name; absent in older studies."""
    return {str(b["name"]): BackboneDeploy.from_dict(b["deploy"]) for b in results.get("backbones") or []
            if isinstance(b, dict) and isinstance(b.get("deploy"), dict)}


def _candidates(within: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                deploys: Mapping[str, BackboneDeploy], budget_ms: float | None) -> list[dict[str, Any]]:
    """Per backbone: its bench pick when that is deployable within the budget, else its deployable rows within it."""
    out: list[dict[str, Any]] = []
    for backbone in dict.fromkeys(r["backbone"] for r in within):
        mine = [r for r in within if r["backbone"] == backbone]
        deploy = deploys.get(backbone)
        if deploy_why_not(deploy, [r for r in rows if r["backbone"] == backbone], budget_ms):
            out += mine
        else:
            assert deploy is not None
            out += [r for r in mine if (r.get("artifact"), r.get("runtime")) == deploy.key]
    return out


def recommend(rows: Iterable[dict[str, Any]], budget_ms: float | None,
              deploys: Mapping[str, BackboneDeploy] | None = None) -> dict[str, Any]:
    """The most accurate deployable model within the latency budget; among equally accurate ones, the fastest
    (and the reason then says the pick came down to speed). With ``deploys`` (each backbone's bench pick), a
    backbone's candidate is its bench pick, and the chosen row is that pick or the reason says why not
    (``bench_recommended``: true, false, or null for a study without them).

    Never a model that fails the gate or does not beat the majority-class baseline. Returns
    ``{"status": "ok", ...the row's figures..., "reason"}`` or ``{"status": "none", "reason"}`` saying why
    nothing qualifies and what came closest.
    """
    rows = list(rows)
    passed = [r for r in rows if is_deployable(r)]
    within = [r for r in passed if budget_ms is None or float(r["latency_p50_ms"]) <= budget_ms]
    budget_text = f"within the {budget_ms:g} ms batch-1 latency budget" if budget_ms is not None else "(no latency budget)"
    if not within:
        device_rows = [r for r in rows if r.get("runtime") not in REFERENCE_RUNTIMES]
        if not rows:
            reason = "the study has no benchmark results"
        elif not passed and gate_evidence(rows) == "inconclusive":
            undecided = [_label(r) for r in rows if r.get("runtime") not in REFERENCE_RUNTIMES
                         and r.get("gate_verdict") == "inconclusive"]
            reason = ("no artifact passed the accuracy gate: the test images were too few to decide "
                      f"{', '.join(undecided)} (each bench report says how many images would)")
        elif not passed and device_rows and not any(beats_baseline(r) for r in device_rows):
            best = max(device_rows, key=lambda r: _num(r.get("accuracy")))
            reason = (f"no model is usable: none beats the majority-class baseline (the best, {_label(best)}, "
                      f"scores {fmt(best.get('accuracy'))} against a baseline of {fmt(baseline_accuracy(best))}), "
                      "so the models did not learn the task")
        elif not passed:
            reason = ("no model is usable: no artifact passed the accuracy gate and the majority-class baseline "
                      "check on a device runtime")
        else:
            fastest = min(passed, key=lambda r: float(r["latency_p50_ms"]))
            reason = (
                f"no artifact that passes the gate runs within {budget_ms:g} ms at batch 1; the fastest that passes "
                f"is {_label(fastest)} at {float(fastest['latency_p50_ms']):.3g} ms"
            )
        return {"status": "none", "budget_ms": budget_ms, "reason": reason, "gate": gate_evidence(rows)}
    candidates = _candidates(within, rows, deploys, budget_ms) if deploys is not None else within
    top = max(float(r["accuracy"]) for r in candidates)
    tied = [r for r in candidates if abs(float(r["accuracy"]) - top) <= 1e-12]
    best = min(tied, key=lambda r: float(r["latency_p50_ms"]))
    if deploys is None:
        reason = f"the most accurate of {len(within)} artifact(s) that pass the gate {budget_text}"
    else:
        reason = (f"the most accurate of {len(candidates)} candidate(s) {budget_text}, each backbone's candidate "
                  "being what its bench recommends")
    if len(tied) > 1:
        reason += (f"; {len(tied)} artifacts tie at accuracy {fmt(top)}, so the pick came down to speed: "
                   f"the fastest of them at {float(best['latency_p50_ms']):.3g} ms at batch 1")
    bench_recommended: bool | None = None
    if deploys is not None:
        why_not = deploy_why_not(deploys.get(best["backbone"]), [r for r in rows if r["backbone"] == best["backbone"]],
                                 budget_ms)
        bench_recommended = not why_not
        reason += (f"; it is what {best['backbone']}'s bench recommends" if bench_recommended
                   else f"; not {best['backbone']}'s bench recommendation: {why_not}")
    return {
        "status": "ok",
        "budget_ms": budget_ms,
        "backbone": best["backbone"],
        "artifact": best["artifact"],
        "precision": best.get("precision"),
        "runtime": best["runtime"],
        "provider": best.get("provider"),
        "accuracy": best["accuracy"],
        "f1": best.get("f1"),
        "latency_p50_ms": best["latency_p50_ms"],
        "size_bytes": best.get("size_bytes"),
        "tied": len(tied),
        "bench_recommended": bench_recommended,
        "reason": reason,
        "gate": "pass",
    }


def refresh_decisions(results: dict[str, Any], latency_budget_ms: float | None = None) -> dict[str, Any]:
    """Recompute the Pareto marks and the recommendation (optionally under a new budget)."""
    if latency_budget_ms is not None:
        results["latency_budget_ms"] = float(latency_budget_ms)
    rows = mark_pareto(results.get("results", []))
    deploys = deploy_of(results)
    budget = results.get("latency_budget_ms")
    results["recommendation"] = recommend(rows, budget, deploys or None)
    # why each backbone's bench pick is not its candidate here ("" when it is), for the report's deploy table
    results["recommendation"]["deploy_notes"] = {
        name: deploy_why_not(deploy, [r for r in rows if r.get("backbone") == name], budget)
        for name, deploy in deploys.items() if deploy.status == "ok"}
    return results
