"""Run report: metrics JSON, a Markdown summary, the loss and learning curves and predictions drawn on images.

Reads only what the run already produced (log history, metrics, predictions); never runs a model.
"""

from __future__ import annotations

import json
from itertools import zip_longest
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from cotrain.files import write_json_atomic  # noqa: E402


def _plot_against_step(out: Path, lines: dict[str | None, list[tuple[int, float]]], *, ylabel: str, title: str,
                       log_y: bool = False) -> None:
    """One figure of (step, value) lines, labelled by their keys (None: no legend)."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for label, pts in lines.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", lw=1, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if any(label is not None for label in lines):
        ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def plot_loss(log_history: list[dict], out: Path) -> bool:
    """Loss against step; returns False when there is nothing to plot."""
    pts = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if not pts:
        return False
    _plot_against_step(out, {None: pts}, ylabel="training loss (token mean)", title="cotrain: training loss",
                       log_y=True)
    return True


def eval_curve(log_history: list[dict]) -> tuple[list[str], list[tuple[int, dict]]]:
    """(metric keys, [(step, {key: value})]) of the evaluations logged during training (``eval.every_steps``)."""
    rows = [(int(h["step"]), {k: v for k, v in h.items() if k.startswith("eval/")})
            for h in log_history if "step" in h and any(k.startswith("eval/") for k in h)]
    keys = sorted({k for _, r in rows for k in r})
    return keys, rows


def plot_eval_curve(keys: list[str], rows: list[tuple[int, dict]], out: Path) -> bool:
    """Held-out numbers of :func:`eval_curve` against step (one line per ``eval/<dataset>/<metric>``);
    False when none were logged."""
    if not rows:
        return False
    _plot_against_step(out, {k[len("eval/"):]: [(s, r[k]) for s, r in rows if k in r] for k in keys},
                       ylabel="held-out score", title="cotrain: learning curve")
    return True


def _curve_lines(keys: list[str], rows: list[tuple[int, dict]]) -> list[str]:
    if not rows:
        return []
    lines = ["## Learning curve", "", "Held-out numbers every `eval.every_steps` steps "
             "(`eval.every_steps_max_samples` records per dataset): learning_curve.png.", "",
             "![learning curve](learning_curve.png)", "",
             "| step | " + " | ".join(k[len("eval/"):] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for step, r in rows:
        lines.append(f"| {step} | " + " | ".join(f"{r[k]:.3f}" if k in r else "-" for k in keys) + " |")
    return lines + [""]


def _baselines(m: dict) -> str:
    parts = [f"{label} {m[k]:.3f}" for k, label in (("chance", "chance"), ("majority_baseline", "majority"))
             if k in m]
    fixed = m.get("fixed_box_baseline")
    if fixed:
        key = "acc@0.5" if "acc@0.5" in fixed else "APnc50"
        parts.append(f"fixed box {key} {fixed[key]:.3f}")
    if m.get("fixed_point_baseline"):
        parts.append(f"fixed point {m['fixed_point_baseline']['point_accuracy']:.3f}")
    return ", ".join(parts) or "-"


def _draw_box(draw: ImageDraw.ImageDraw, box: dict, colour: str, width: int = 3) -> None:
    if "quad" in box:
        q = box["quad"]
        draw.polygon([(q[0], q[1]), (q[2], q[3]), (q[4], q[5]), (q[6], q[7])], outline=colour, width=width)
    else:
        draw.rectangle(box["hbb"], outline=colour, width=width)


def draw_prediction(image_path: str, pred: Any, record: dict, out: Path, max_side: int = 512) -> None:
    """Image with the question, the model's answer and, for grounding, GT (green) and predicted (red) boxes."""
    with Image.open(image_path) as im:
        im = im.convert("RGB")
    draw = ImageDraw.Draw(im)
    if record["task"] == "grounding":
        _draw_box(draw, record["target"], "lime")
        if pred.details.get("pred_box"):
            _draw_box(draw, pred.details["pred_box"], "red")
    scale = max_side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
    canvas = Image.new("RGB", (max(im.width, 480), im.height + 54), "white")
    canvas.paste(im, (0, 54))
    d = ImageDraw.Draw(canvas)
    truth = record.get("label") or record.get("answer") or record.get("expression") or ""
    mark = {True: "OK", False: "WRONG", None: "-"}[pred.correct]
    one_line = " ".join(pred.prompt.split())  # prompts hold newlines (class lists, options)
    d.text((4, 2), f"[{record['task']}] {one_line[:90]}", fill="black")
    d.text((4, 18), f"model: {pred.response[:90]!r}", fill="red" if pred.correct is False else "darkgreen")
    d.text((4, 34), f"truth: {str(truth)[:80]}   {mark}", fill="black")
    canvas.save(out)


def write_report(out_dir: Path, *, summary: dict, metrics: dict, log_history: list[dict],
                 predictions: list[Any], records_by_id: dict, image_roots: dict, n_visualise: int) -> None:
    """Write metrics.json, log_history.json, loss_curve.png, predictions.jsonl, predictions/*.png and report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "metrics.json", {"summary": summary, "eval": metrics})
    write_json_atomic(out_dir / "log_history.json", log_history)
    with open(out_dir / "predictions.jsonl", "w") as f:
        for p in predictions:
            f.write(json.dumps({"dataset": p.dataset, "id": p.record_id, "task": p.task, "prompt": p.prompt,
                                "response": p.response, "correct": p.correct,
                                "details": p.details}, default=str) + "\n")
    has_plot = plot_loss(log_history, out_dir / "loss_curve.png")
    curve = eval_curve(log_history)
    plot_eval_curve(*curve, out_dir / "learning_curve.png")
    vis_dir = out_dir / "predictions"
    vis_dir.mkdir(exist_ok=True)
    shown: list[str] = []
    # round-robin over tasks, so the report shows classification and grounding side by side
    by_task: dict[str, list] = {}
    for p in predictions:
        by_task.setdefault(p.task, []).append(p)
    queue = [p for group in zip_longest(*by_task.values()) for p in group if p is not None]
    for p in queue[:n_visualise]:
        rec = records_by_id[(p.dataset, p.record_id)]
        path = Path(image_roots[p.dataset]) / rec["images"][0]["path"]
        name = f"{p.dataset}_{p.record_id}.png".replace("/", "_")
        try:
            draw_prediction(str(path), p, rec, vis_dir / name)
        except OSError:
            continue
        shown.append(name)

    lines = [f"# Run report: {summary.get('run_name', '')}", ""]
    lines += ["## Training", "",
              f"- model: {summary.get('model')}",
              f"- steps: {summary.get('steps')}, samples seen: {summary.get('samples_seen')}, "
              f"wall time: {summary.get('train_seconds', 0):.0f} s",
              f"- loss: first logged {summary.get('first_loss')}, last logged {summary.get('last_loss')}",
              f"- skipped samples: {summary.get('skipped_total', 0)} {summary.get('skipped', {})}", ""]
    if has_plot:
        lines += ["![loss curve](loss_curve.png)", ""]
    lines += _curve_lines(*curve)
    lines += ["## Held-out evaluation", "", "Per-sample answers and scores: `eval/<dataset>/results.jsonl`; "
              "the harness's own tables: `eval/report.md`.", "", "| dataset | task | n | score | baseline | notes |",
              "|---|---|---|---|---|---|"]
    from cotrain.eval.summary import flat_results, headline_key

    for name, m in flat_results(metrics).items():  # a mixed-task dataset gets a row per task
        headline = headline_key(m)
        acc = f"{headline} {m[headline]:.3f}" if headline else "-"
        base = _baselines(m)
        notes = []
        if "miou" in m:
            notes.append(f"mIoU {m['miou']:.3f} (fixed box {m['fixed_box_baseline']['miou']:.3f}), "
                         f"parsed {m['parse_rate']:.2f}" if "fixed_box_baseline" in m else
                         f"mIoU {m['miou']:.3f}, parsed {m['parse_rate']:.2f}")
        if "mF1" in m:
            base_f1 = m.get("fixed_box_baseline", {}).get("mF1")
            notes.append(f"mF1 {m['mF1']:.3f}" + (f" (fixed box {base_f1:.3f})" if base_f1 is not None else ""))
        if "point_accuracy" in m:
            notes.append(f"parsed {m['parse_rate']:.2f}, beyond the frame {m['outside_frame']}")
        if isinstance(m.get("parse"), dict):
            p = m["parse"]
            notes.append(f"objects parsed {m.get('objects_parsed')}/{m.get('objects_gt')} GT, malformed lines "
                         f"{p.get('malformed', 0)}, truncated answers {p.get('truncated_responses', 0)}, "
                         f"clipped to the image {p.get('out_of_image_clipped', 0)}, degenerate "
                         f"{p.get('degenerate_dropped', 0)}")
        if "BLEU-4" in m:
            notes.append(f"BLEU-4 {m['BLEU-4']:.3f}, METEOR {m['METEOR']:.3f}, ROUGE-L {m['ROUGE-L']:.3f}")
        if "counting_mae" in m:
            notes.append(f"counting MAE {m['counting_mae']:.2f}")
        if "instruction_following" in m:
            notes.append(f"option extracted {m['instruction_following']:.2f}")
        if m.get("skipped"):
            notes.append(f"skipped {m['skipped']}")
        if m.get("empty_responses"):
            notes.append(f"empty answers {m['empty_responses']}")
        lines.append(f"| {name} | {m.get('task', '')} | {m['n']} | {acc} | {base} | {'; '.join(notes)} |")
    lines += ["", "## Sample predictions", ""]
    lines += [f"![{n}](predictions/{n})" for n in shown]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
