"""How evaluation results read: headline keys per metric, per-task rows of mixed sets, Markdown tables.

Used by the harness (``report.md`` of ``cotrain eval``), the training run report and the CLIs
that print a results table. It must not compute metrics or run models.
"""

from __future__ import annotations

from typing import Any

from cotrain.eval.registry import TASK_METRIC

HEADLINE = {
    "classification": ["accuracy", "accuracy_contains (lenient)", "chance", "majority_baseline"],
    "vqa": ["accuracy", "accuracy_yes_no", "accuracy_number", "accuracy_other", "counting_mae", "majority_baseline"],
    "mcq": ["accuracy", "instruction_following", "chance"],
    "grounding": ["acc@0.5", "acc@0.7", "acc@0.9", "miou", "point_accuracy", "parse_rate"],
    "captioning": ["CIDEr", "BLEU-1", "BLEU-4", "METEOR", "ROUGE-L"],
    "detection": ["APnc50", "APnc75", "APnc50:95", "mF1", "objects_parsed", "objects_gt"],
    "triplet_retrieval": ["mean_recall", "chance_mean_recall", "ir2text_r@1", "text2ir_r@1", "rgb2ir_r@1",
                          "ir2rgb_r@1", "rgb2text_r@1", "text2rgb_r@1"],
    "retrieval": ["mean_recall", "chance_mean_recall", "txt_r@1", "txt_r@5", "txt_r@10", "img_r@1", "img_r@5", "img_r@10"],
}

LOGGED_KEYS = ("accuracy", "acc@0.5", "miou", "point_accuracy", "instruction_following", "CIDEr", "BLEU-4", "APnc50", "mF1",
               "counting_mae", "accuracy_yes_no")
"""Numbers an evaluation inside training logs (tensorboard / log history) when a set has them."""


def headline_key(m: dict) -> str | None:
    """The first headline number a benchmark's metrics have (None when it has none, e.g. n = 0)."""
    return next((k for k in HEADLINE.get(m.get("metric", ""), []) if m.get(k) is not None), None)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return "-" if v is None else str(v)


def flat_results(results: dict[str, dict]) -> dict[str, dict]:
    """One entry per benchmark, or per task of a mixed benchmark (``name/task``), each with its own metric."""
    out = {}
    for name, m in results.items():
        if "by_task" not in m:
            out[name] = m
            continue
        for task, sub in m["by_task"].items():
            out[f"{name}/{task}"] = {**sub, "task": task, "metric": TASK_METRIC[task], "skipped": {}}
        out[name] = {k: v for k, v in m.items() if k != "by_task"}  # its skips and counts
    return out


def report_markdown(results: dict[str, dict], model_key: dict | None = None) -> str:
    """``report.md``: what was evaluated, then a table per benchmark (headline numbers first)."""
    lines = ["# cotrain evaluation report", ""]
    if model_key:
        lines += [f"- {k}: `{v['path'] if isinstance(v, dict) and 'path' in v else v}`" for k, v in model_key.items()]
        lines.append("")
    results = flat_results(results)
    lines += ["| benchmark | task | metric | n | skipped | headline |", "|---|---|---|---|---|---|"]
    for name, m in results.items():
        first = headline_key(m)
        lines.append(f"| {name} | {m['task']} | {m['metric']} | {m['n']} | {sum(m.get('skipped', {}).values())} | "
                     f"{f'{first} {_fmt(m[first])}' if first else '-'} |")
    for name, m in results.items():
        lines += ["", f"## {name}", "", "| metric | value |", "|---|---|"]
        keys = [k for k in _table_keys(m) if k in m]
        keys += [k for k in sorted(m) if k not in keys and k not in ("benchmark", "task", "metric", "skipped", "parse")
                 and not isinstance(m[k], (dict, list))]
        lines += [f"| {k} | {_fmt(m[k])} |" for k in keys]
        if m.get("skipped"):
            lines.append("| skipped | " + ", ".join(f"{r}: {n}" for r, n in sorted(m["skipped"].items())) + " |")
        if m.get("parse"):
            lines.append("| parse | " + ", ".join(f"{k}: {v}" for k, v in m["parse"].items() if v) + " |")
    lines += subtask_tables(results)
    lines.append("")
    lines.append("Strict answer matching throughout; a lenient \"contains\" score appears only when asked for "
                 "and is labelled so. Empty or unparseable answers count as wrong; skipped records (missing or "
                 "corrupt images) are not in n.")
    return "\n".join(lines) + "\n"


def _table_keys(m: dict) -> list[str]:
    """The headline keys a benchmark reports, with every Acc@t of a grounding set (Acc@0.25 .. Acc@0.9)."""
    keys = [k for k in HEADLINE.get(m["metric"], []) if m.get(k) is not None]
    extra = sorted((k for k in m if k.startswith("acc@") and k not in keys), key=lambda k: float(k[4:]))
    return sorted(keys + extra, key=lambda k: (not k.startswith("acc@"), float(k[4:]) if k.startswith("acc@") else 0))


def subtask_tables(results: dict[str, dict]) -> list[str]:
    """Markdown lines: for each benchmark with ``by_subtask``, its headline numbers per subtask (one column each,
    then ``all``), shaped like the BigEarthNet.txt tables (tasks as columns, metrics as rows)."""
    lines = []
    for name, m in results.items():
        subs = m.get("by_subtask")
        if not subs:
            continue
        cols = list(subs)
        lines += ["", f"## {name} by subtask", "", "| metric | " + " | ".join(cols) + " | all |",
                  "|---|" + "---|" * (len(cols) + 1)]
        for key in _table_keys(m) + ["n"]:
            lines.append(f"| {key} | " + " | ".join(_fmt(subs[c].get(key)) for c in cols) + f" | {_fmt(m.get(key))} |")
    return lines


PSUM_KEYS = {"classification": "accuracy", "vqa": "accuracy", "mcq": "accuracy", "grounding": "acc@0.5"}
"""The number each metric family adds to psum (as a percentage)."""


def psum_nsum(results: dict[str, dict]) -> dict:
    """IRGPT's suite totals: psum = the sum of accuracy-type results in percent (grounding: Acc@0.5), nsum =
    the sum of counting MAEs (benchmarks with option ``aggregate: mae``). Other metric families are left out."""
    psum = nsum = 0.0
    n_p = n_n = 0
    for m in results.values():
        if m.get("aggregate") == "mae":
            if m.get("counting_mae") is not None:
                nsum += float(m["counting_mae"])
                n_n += 1
            continue
        key = PSUM_KEYS.get(m.get("metric", ""))
        if key and m.get(key) is not None:
            psum += 100.0 * float(m[key])
            n_p += 1
    return {"psum": psum, "psum_sets": n_p, "nsum": nsum, "nsum_sets": n_n}
