"""Which bundled methods and detectors apply to which model family (``membench families``).

Why: a method's mechanism may not exist in a family (Ren's BOS rescale needs a CLIP text encoder in
cross-attention; IF conditions through T5 only). Each family declares what it ``offers`` and each
plugin what it ``needs`` (``models.capabilities``); this module reads both, so the table can never
disagree with what a run does (the same check turns a run's cells into n/a).
"""

from __future__ import annotations

from typing import Any

from membench_eval.models.capabilities import DIFFUSION_SCORE, EPSILON, SCORE_KINDS, family_capabilities, missing


def bundled_plugins() -> dict[str, list[tuple[str, frozenset[str]]]]:
    """``{"methods": [(name, needs), ...], "detectors": [...]}`` of the bundled plugin files."""
    from membench_eval.plugins.loader import DETECTOR, MITIGATION, bundled_names, import_file, plugin_classes

    out: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for key, kind in (("methods", MITIGATION), ("detectors", DETECTOR)):
        rows = []
        for name in bundled_names(kind):
            for cls in plugin_classes(import_file(name, kind), kind):
                if cls.name:
                    rows.append((cls.name, frozenset(getattr(cls, "needs", frozenset()))))
        out[key] = sorted(set(rows))
    return out


def family_rows() -> list[dict[str, Any]]:
    """One row per model line of each registered family (``ModelFamily.model_lines``; Realistic
    Vision is the SD family's code, its own line): its name, hub ids, pipeline classes, prediction
    types, text encoders, capabilities, and the bundled methods / detectors that apply (with why
    not, else)."""
    from membench_eval.models import family as family_module

    plugins = bundled_plugins()
    rows = []
    for cls in family_module.registered_families():
        kinds = tuple(getattr(cls, "prediction_types", ()))
        # ``epsilon`` is per model (SD 2's 768-v shares the SD family): offered when any model is.
        offers = (family_capabilities(cls) | ({EPSILON} if "epsilon" in kinds else set())
                  | ({DIFFUSION_SCORE} if SCORE_KINDS & set(kinds) else set()))
        partly = EPSILON if "epsilon" in kinds and len(kinds) > 1 else None
        row: dict[str, Any] = {
            "family": cls.name, "models": [], "pipeline_classes": list(cls.pipeline_classes),
            "prediction_types": list(getattr(cls, "prediction_types", ())),
            "text_encoders": list(cls.text_encoders), "offers": sorted(offers),
        }
        for key, entries in plugins.items():
            row[key] = [name + (" (epsilon models only)" if partly in needs else "")
                        for name, needs in entries if not missing(needs, offers)]
            row[key + "_not_applicable"] = {name: f"needs {' and '.join(missing(needs, offers))}"
                                            for name, needs in entries if missing(needs, offers)}
        lines = cls.model_lines or {cls.name: ()}
        rows += [{**row, "family": line, "models": list(models)} for line, models in lines.items()]
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (methods that do not apply are listed with what they need)."""
    head = ["family", "models", "pipeline class", "prediction", "text encoders", "offers", "methods", "detectors", "n/a"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        na = {**r["methods_not_applicable"], **r["detectors_not_applicable"]}
        cells = [r["family"], ", ".join(r["models"]) or "-", ", ".join(r["pipeline_classes"]), ", ".join(r["prediction_types"]) or "-",
                 "; ".join(r["text_encoders"]) or "-", ", ".join(r["offers"]) or "-",
                 ", ".join(r["methods"]) or "-", ", ".join(r["detectors"]) or "-",
                 "; ".join(f"{k} ({v})" for k, v in sorted(na.items())) or "-"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
