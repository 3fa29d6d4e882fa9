"""The headline of `bench sources` and `bench shift` for the model card and the README: how the
model behaves on X-rays from other hospitals and on the same X-ray arriving another way.

`summarise` keeps what a reader needs from the two reports (rates with their intervals, the
commands that made them); `markdown` renders it, the same text in MODEL_CARD.md and README.
"""

from __future__ import annotations

from .report_format import auc, markdown_table, pct

CARD_KEY = "behaviour_on_other_sources"
TITLE = "How this model behaves on other hospitals' X-rays"


def summarise(sources: dict, shift: dict, sources_path: str, shift_path: str) -> dict:
    positive = sources["model"]["positive_label"]
    in_distribution = [s for s in sources["sources"]
                       if s["mode"] == "guard_on" and s["n_positive"] and s["n_negative"]
                       and s["source"] != "pooled"]
    return {
        "positive_label": positive,
        "labels": list(sources["model"].get("labels") or []),
        # Hospitals whose other images trained the model (their test images are new X-rays
        # from a hospital it has seen); absent from reports made before it was recorded.
        "trained_on_sources": list(sources["selection"].get("trained_on_sources") or []),
        "model": f"{sources['model']['name']} {sources['model']['version']} "
                 f"({sources['model']['variant']})",
        "reports": {"sources": sources_path, "shift": shift_path},
        "commands": {"sources": sources["command"], "shift": shift["command"]},
        "in_distribution": [{"source": s["source"], "n": s["n"],
                             "sensitivity": s["sensitivity"], "specificity": s["specificity"],
                             "roc_auc": s["roc_auc"]} for s in in_distribution],
        "groups": [{"source": g["source"], "label": g["label"], "n": g["n"],
                    "refused": g["refused"], "called_positive": g["guard_on"]["called"][positive],
                    "called_positive_guard_off": g["guard_off"]["called"][positive],
                    "called": g["guard_on"]["called"],
                    "roc_auc_against_source_negatives":
                        g.get("roc_auc_against_source_negatives")}
                   for g in sources["groups"]],
        "shift": {"images": shift["baseline"]["n"], "seed": shift["seed"],
                  "perturbations": [{"name": r["name"], "flips": r["flips"],
                                     "flips_to_positive": r["flips_to_positive"],
                                     "mean_abs_delta_p": r["mean_abs_delta_p"],
                                     "guard_refused_new": r["guard_refused_new"]}
                                    for r in shift["perturbations"]]},
    }


def headline(summary: dict) -> list[str]:
    """Plain sentences drawn from the figures: the worst cases a deployer must know."""
    if len(summary.get("labels") or []) > 2:
        return headline_classes(summary)
    positive = summary["positive_label"]
    own = {entry["source"] for entry in summary["in_distribution"]}
    external = [g for g in summary["groups"] if g["source"] not in own]
    lines = []
    normals = [g for g in external if g["label"] == "normal"]
    if normals:
        worst = max(normals, key=lambda g: g["called_positive"]["rate"] or 0)
        best = min(normals, key=lambda g: g["called_positive"]["rate"] or 0)
        lines.append(f"Normal X-rays from hospitals it never saw are called {positive} from "
                     f"{pct(best['called_positive'])} ({best['source']}) to "
                     f"{pct(worst['called_positive'])} ({worst['source']}).")
    findings = [g for g in external if g["label"] not in ("normal", positive)]
    for label in dict.fromkeys(g["label"] for g in findings):
        rows = [g for g in findings if g["label"] == label]
        lines.append(f"{label.capitalize()} is called {positive}: " + "; ".join(
            f"{pct(g['called_positive'])} ({g['source']})" for g in rows) + ".")
    aucs = [g["roc_auc_against_source_negatives"] for g in findings
            if g.get("roc_auc_against_source_negatives")]
    if aucs:
        own_auc = "; ".join(f"{auc(e['roc_auc'])} on {e['source']}"
                            for e in summary["in_distribution"])
        lines.append(f"Within one hospital, P({positive}) separates a finding from that "
                     f"hospital's normals with ROC AUC {min(a['auc'] for a in aucs):.2f} to "
                     f"{max(a['auc'] for a in aucs):.2f} (its own test split: {own_auc}).")
    return lines + shift_line(summary)


def shift_line(summary: dict) -> list[str]:
    """The shift suite's headline: the flips of the perturbations a deployment meets most."""
    shifts = {p["name"]: p for p in summary["shift"]["perturbations"]}
    shown = [name for name in ("jpeg-q75", "jpeg-q50", "noise-3", "camera-capture",
                               "export-16bit-2048") if name in shifts]
    if not shown:
        return []
    return ["The same X-ray arriving another way changes the verdict: " + "; ".join(
        f"{name} {pct(shifts[name]['flips'])}" for name in shown) + "."]


def _range(groups: list[dict], label: str) -> str:
    worst = max(groups, key=lambda g: g["called"][label]["rate"] or 0)
    best = min(groups, key=lambda g: g["called"][label]["rate"] or 0)
    return (f"from {pct(best['called'][label])} ({best['source']}) to "
            f"{pct(worst['called'][label])} ({worst['source']})")


def headline_classes(summary: dict) -> list[str]:
    """The same sentences for a model of more than two classes, which trains on several
    hospitals: what it says on their unseen test images, and on hospitals it never saw."""
    positive = summary["positive_label"]
    labels = summary["labels"]
    trained = set(summary.get("trained_on_sources") or [])
    lines = []
    for where, chosen in (("from hospitals it trained on (images it never trained on)", True),
                          ("from hospitals it never trained on", False)):
        groups = [g for g in summary["groups"] if (g["source"] in trained) == chosen]
        normals = [g for g in groups if g["label"] == "normal"]
        if normals:
            lines.append(f"Normal X-rays {where} are called {positive} {_range(normals, positive)}.")
        for label in dict.fromkeys(g["label"] for g in groups
                                   if g["label"] not in ("normal", positive)):
            rows = [g for g in groups if g["label"] == label]
            own = (f"; called {label}: " + "; ".join(f"{pct(g['called'][label])} ({g['source']})"
                                                     for g in rows)) if label in labels else ""
            lines.append(f"{label.capitalize()} {where} is called {positive}: " + "; ".join(
                f"{pct(g['called'][positive])} ({g['source']})" for g in rows) + own + ".")
    findings = [g for g in summary["groups"] if g.get("roc_auc_against_source_negatives")
                and g["label"] != positive]
    if findings:
        lines.append("Within one hospital, against that hospital's normals (P(finding) for "
                     "the model's classes, 1 - P(normal) for others): " + "; ".join(
                         f"{g['label']} {auc(g['roc_auc_against_source_negatives'])} "
                         f"({g['source']})" for g in findings) + ".")
    return lines + shift_line(summary)


def markdown(summary: dict, heading: str = "##", link_prefix: str = "") -> list[str]:
    """The section's lines. link_prefix: the path from the document to the repo root."""
    positive = summary["positive_label"]
    reports = summary["reports"]
    lines = [f"{heading} {TITLE}", "",
             f"Measured on {summary['model']} by `covid-edge bench sources` and `covid-edge "
             f"bench shift` (reports: [{reports['sources']}]({link_prefix}{reports['sources']}), "
             f"[{reports['shift']}]({link_prefix}{reports['shift']})). Rates with 95% Wilson "
             "intervals, ROC AUC with 95% DeLong intervals; guard on unless said. "
             + ("No setting of this model was chosen on any of these images apart from its "
                "own test split's sources, whose test images it never saw."
                if len(summary.get("labels") or []) <= 2 else
                "Every image here is one the model never trained on and no setting was "
                "chosen on: the test split of the hospitals it trained on "
                f"({', '.join(summary.get('trained_on_sources') or [])}), and labels and "
                "hospitals training left out."), ""]
    lines += ["In short:", ""] + [f"- {line}" for line in headline(summary)] + [""]
    for entry in summary["in_distribution"]:
        lines += [f"Its own test split ({entry['source']}, {entry['n']} images): sensitivity "
                  f"{pct(entry['sensitivity'])}, specificity {pct(entry['specificity'])}, ROC "
                  f"AUC {auc(entry['roc_auc'])}.", ""]
    labels = summary.get("labels") or []
    if len(labels) > 2:
        trained = set(summary.get("trained_on_sources") or [])
        others = [label for label in labels if label != positive]
        lines += [markdown_table(
            ("source", "label", "n", *[f"called {label}" for label in [positive] + others],
             f"called {positive}, guard off", "refused by the guard",
             "AUC vs normals of the same source"),
            [[g["source"] + ("" if g["source"] in trained else " (never trained on)"),
              g["label"], str(g["n"]),
              *[pct(g["called"][label]) for label in [positive] + others],
              pct(g["called_positive_guard_off"]), pct(g["refused"]),
              auc(g["roc_auc_against_source_negatives"])] for g in summary["groups"]]), ""]
    else:
        lines += [markdown_table(
            ("source", "label", "n", f"called {positive}", f"called {positive}, guard off",
             "refused by the guard", "AUC vs normals of the same source"),
            [[g["source"], g["label"], str(g["n"]), pct(g["called_positive"]),
              pct(g["called_positive_guard_off"]), pct(g["refused"]),
              auc(g["roc_auc_against_source_negatives"])] for g in summary["groups"]]), ""]
    lines += [f"The same test X-rays arriving another way ({summary['shift']['images']} images, "
              f"seed {summary['shift']['seed']}): how often the verdict changes.", "",
              markdown_table(("perturbation", "verdict flips", f"of which to {positive}",
                              "mean abs. change of P", "newly refused by the guard"),
                             [[p["name"], pct(p["flips"]), str(p["flips_to_positive"]),
                               f"{p['mean_abs_delta_p']:.3f}", pct(p["guard_refused_new"])]
                              for p in summary["shift"]["perturbations"]]), ""]
    lines += ["Reproduce:", "", "```", summary["commands"]["sources"],
              summary["commands"]["shift"], "```", ""]
    return lines
