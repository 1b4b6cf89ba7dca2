"""How the command line shows things: tables for people, one JSON object for machines."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(obj: Any, as_json: bool, human: str) -> None:
    """The command's one answer on stdout: ``obj`` as JSON, or ``human`` text."""
    if as_json:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    else:
        sys.stdout.write(human.rstrip("\n") + "\n")


def say(as_json: bool, text: str) -> None:
    """Narration: stdout for people; stderr under ``--json``, where stdout carries exactly one object."""
    print(text, file=sys.stderr if as_json else sys.stdout, flush=True)


def format_counts(counts: dict[str, Any]) -> str:
    items = counts["items"]
    lines = [
        f"items      {sum(items.values()):>6}  ({', '.join(f'{k} {v}' for k, v in sorted(items.items()))})",
        f"by degree  {'  '.join(f'{d}: {n}' for d, n in sorted(counts['by_degree'].items()))}",
        f"by kind    {'  '.join(f'{k}: {n}' for k, n in sorted(counts.get('by_kind', {}).items()))}",
        f"images     {counts['images']:>6}  (from {counts.get('image_urls', 0)} URLs)",
        f"pairs      {counts['pairs']:>6}  "
        f"({', '.join(f'{n} from {s}' for s, n in counts.get('pairs_by_text_source', {}).items())})",
        f"edges      {counts['edges']:>6}",
    ]
    marks = counts.get("feedback") or {}
    if marks.get("marks"):
        lines.append(f"feedback   {marks['marks']:>6}  marks ({marks['fits']} fit, {marks['does_not_fit']} do not)")
    return "\n".join(lines)


def format_training_data(data: dict[str, Any]) -> str:
    """What a training run learned from: its pairs, and what people's marks added (``qualia.feedback``)."""
    negatives = data.get("feedback_negatives", 0)
    line = (f"trained on {data.get('pairs_train', 0) - negatives} pairs ({data.get('feedback_pairs', 0)} from feedback) "
            f"and {negatives} negatives from feedback; {data.get('pairs_val', 0)} pairs held out for evaluation")
    if data.get("feedback_marks"):
        line += (f"\n{data['feedback_marks']} feedback marks: {data.get('feedback_held_out', 0)} on held-out pictures "
                 f"and {data.get('feedback_unused', 0)} teaching nothing new were not trained on")
    return line


def format_losses(sources: dict[str, Any]) -> str:
    """One line per source that lost something in a crawl: what it kept, what it lost, and why."""
    lines = []
    for name, s in sources.items():
        if not s["failures"]:
            continue
        why = ", ".join(f"{words} x{n}" for words, n in sorted(s["failures"].items(), key=lambda kv: -kv[1]))
        lines.append(f"{name}: kept {s['items']} items and {s['pictures']} pictures; lost {s['pages_lost']} pages "
                     f"and {s['pictures_lost']} pictures ({why})")
    return "\n".join(lines)


MIXED_LABELS = (("as is", "mixed"), ("centered", "mixed_centered"), ("calibrated", "mixed_calibrated"),
                ("both", "mixed_centered_calibrated"))


def format_eval(report: dict[str, Any]) -> str:
    header = f"{'':10}{'t2i r@1':>9}{'r@5':>7}{'r@10':>7}{'i2t r@1':>10}{'r@5':>7}{'r@10':>7}{'gap':>8}"
    lines = [f"held-out pairs: {report['pairs']}", header]
    for name in ("base", "adapter"):
        m = report[name]
        t, i = m["t2i"], m["i2t"]
        lines.append(f"{name:10}{t['r1']:9.3f}{t['r5']:7.3f}{t['r10']:7.3f}"
                     f"{i['r1']:10.3f}{i['r5']:7.3f}{i['r10']:7.3f}{m['gap']:8.3f}")
    lines.append("words over pictures and texts: pictures in the top 10 / recall@10 of the paired picture")
    for name in ("base", "adapter"):
        ways = [(label, report[name].get(key)) for label, key in MIXED_LABELS]
        lines.append(f"{name:10}" + "  ".join(f"{label} {w['image_share']:.2f}/{w['r10']:.3f}" for label, w in ways if w))
    if "retention" in report.get("adapter", {}):
        generic = report["adapter"].get("generic", {}).get("t2i", {})
        lines.append(f"generic retrieval kept: {report['adapter']['retention']:.2f} "
                     f"(held-out generic t2i r@10 with the adapter {generic.get('r10', 0):.3f})")
    return "\n".join(lines)


def format_results(results: list[dict[str, Any]]) -> str:
    lines = []
    for rank, r in enumerate(results, 1):
        text = (r.get("text") or "").replace("\n", " ")
        if len(text) > 70:
            text = text[:67] + "..."
        # a picture's file in the workspace opens from the shell, and outlives the site it was found on
        where = (r.get("file") or r.get("image_url")) if r["modality"] == "image" else r.get("source_url")
        lines.append(f"{rank:>3}. {r['score']:.3f}  {r['modality']:<5} d{r.get('degree', '?')}  {text}  <{where}>")
    return "\n".join(lines) or "(no results)"
