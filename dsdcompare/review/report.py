"""A review's decision record as one self-contained HTML file and as JSON.

The HTML needs nothing but itself: figures are inline SVG (:mod:`dsdcompare.review.svg`), image
thumbnails are ``data:`` URIs, the style sheet is inline and there is no script, so it opens
from a ``file://`` URL with the network off and can be attached to a ticket or an e-mail. It
shows the decision record (criteria, evidence with intervals, pass/fail, verdict, who and when,
notes), the human-preference numbers, agreement, the most disagreed pairs, the automatic
numbers, every pair with its votes, and the manifest (versions, hardware, dtype, scheduler,
steps, seeds, metric checkpoints). The JSON holds the same, plus every vote, without images.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import platform
from html import escape
from pathlib import Path

import pandas as pd

from .. import __version__
from ..store.common import finite, now, plain, tmp_beside
from . import svg
from .decision import BOUNDS, VERDICTS, DecisionRecord, format_value
from .model import CHOICES, Review
from .statistics import Analysis

#: The JSON document's format name and version.
REPORT_FORMAT = "dsdcompare-review"
REPORT_VERSION = 1
#: Pairs shown in the report's gallery (the most disagreed ones are always shown).
GALLERY_PAIRS = 60
#: Longest side of a thumbnail (small images are enlarged without smoothing, by whole factors).
THUMB_SIDE = 160


# --- data -----------------------------------------------------------------------------------------


def _distinct(series) -> list:
    return sorted({str(v) for v in series if v is not None and not (isinstance(v, float) and math.isnan(v))})


def manifest(review: Review, results: pd.DataFrame) -> dict:
    """What produced the pairs: versions, hardware, dtype, scheduler, steps, seeds, checkpoints."""
    from ..registry import get_model

    models = {}
    for m in review.models:
        rows = results[results["model"] == m]
        spec = get_model(m)
        models[m] = {"name": spec.name, "teacher": spec.teacher,
                     "source": _distinct(rows["source"]), "repo": _distinct(rows["repo"]),
                     "revision": _distinct(rows["revision"]),
                     "scheduler": _distinct(rows["scheduler"]), "dtype": _distinct(rows["dtype"])}
    sizes = _distinct(f"{w}x{h}" for w, h in zip(results["width"], results["height"], strict=True))
    created = sorted(str(t) for t in results["created_at"])
    return {
        "report": {"dsdcompare": __version__, "generated_at": now(),
                   "python": platform.python_version(), "platform": platform.platform()},
        "versions": {k: _distinct(results[f"{k}_version"])
                     for k in ("dsdcompare", "torch", "diffusers", "transformers")},
        "hardware": {"device": _distinct(results["device"]),
                     "device_name": _distinct(results["device_name"])},
        "dtype": _distinct(results["dtype"]), "scheduler": _distinct(results["scheduler"]),
        "steps": _distinct(results["steps"]), "guidance": _distinct(results["guidance"]),
        "size": sizes, "seeds": list(review.selection.seeds),
        "repeats": _distinct(results["repeats"]), "warmup": _distinct(results["warmup"]),
        "prompts": review.selection.prompts, "n_prompts": len({p.prompt for p in review.pairs}),
        "metric_checkpoints": {
            "clip": _distinct(results["score_checkpoint"]),
            "clip_backend": _distinct(results["score_backend"]),
            "clip_scale": _distinct(results["score_scale"]),
            "fidelity": "PSNR and SSIM by torchmetrics, images as floats in [0, 1]",
        },
        "timing_flags": {m: int(results.loc[results["model"] == m, "flags"].str.contains(
            "timing:", regex=False).sum()) for m in review.models},
        "latent_matched_pairs": sum(p.latent_matched for p in review.pairs),
        "n_pairs": len(review.pairs),
        "results_created": [created[0], created[-1]] if created else [],
        "models": models,
    }


def _records(df: pd.DataFrame | None) -> list[dict]:
    return [] if df is None else [plain(r) for r in df.to_dict(orient="records")]


def report_data(review: Review, analysis: Analysis, record: DecisionRecord,
                results: pd.DataFrame) -> dict:
    """The JSON document: review, pairs, votes, statistics, decision record and manifest."""
    return finite({
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "review": {"name": review.name, "owner": review.owner, "created_at": review.created_at,
                   "models": list(review.models), "selection": review.selection.to_dict()},
        "decision_record": {
            "baseline": record.baseline, "candidate": record.candidate,
            "criteria_stated_at": record.criteria_at,
            "votes_before_criteria": record.votes_before_criteria,
            "criteria": [{"criterion": e.criterion.text(), "description": e.criterion.describe(),
                          "evidence": {"value": e.evidence.value, "low": e.evidence.low,
                                       "high": e.evidence.high, "n": e.evidence.n,
                                       "interval": e.evidence.how},
                          "passed": e.passed} for e in record.evaluations],
            "all_passed": record.all_passed, "verdict": record.verdict,
            "verdict_text": VERDICTS.get(record.verdict or ""), "decided_by": record.decided_by,
            "decided_at": record.decided_at, "notes": record.notes,
        },
        "statistics": {
            "win_rates": _records(analysis.win_rates),
            "by_category": _records(analysis.by_category),
            "by_reviewer": _records(analysis.by_reviewer),
            "bradley_terry": _records(analysis.bradley_terry),
            "agreement": analysis.agreement,
            "position": analysis.position,
            "disagreements": _records(analysis.disagreements),
            "automatic": _records(analysis.automatic),
        },
        "pairs": [{"idx": p.idx, "prompt": p.prompt, "category": p.category, "seed": p.seed,
                   "model_a": p.model_a, "model_b": p.model_b, "result_a": p.result_a,
                   "result_b": p.result_b, "latent_matched": p.latent_matched,
                   "image_a_sha256": _first(results, p.result_a, "image_sha256"),
                   "image_b_sha256": _first(results, p.result_b, "image_sha256")}
                  for p in review.pairs],
        "votes": [{"pair_idx": v.pair_idx, "reviewer": v.reviewer, "choice": v.choice,
                   "left_is_a": v.left_is_a, "comment": v.comment, "created_at": v.created_at,
                   "updated_at": v.updated_at} for v in analysis.votes],
        "manifest": manifest(review, results),
    })


def _first(results: pd.DataFrame, result_id: int, column: str):
    values = results.loc[result_id, column] if result_id in results.index else []
    return values[0] if len(values) else None


def thumbnail_uri(path, side: int = THUMB_SIDE) -> str:
    """A PNG thumbnail of an image file as a ``data:`` URI (small images enlarged crisply)."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        if max(img.size) < side // 2:  # toy images (32 px): enlarge by a whole factor, no blur
            factor = max(1, side // max(img.size))
            img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
        elif max(img.size) > side:
            img.thumbnail((side, side), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --- HTML -----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top;font-size:13px}th{background:#f4f4f4}
.pass{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}.none{color:#777}
.verdict{font-size:1.2em;padding:8px 12px;border-radius:6px;background:#f4f4f4;display:inline-block}
.pairs{display:flex;flex-wrap:wrap;gap:12px}.pair{border:1px solid #ddd;border-radius:6px;
padding:6px;width:340px;font-size:12px}.pair img{image-rendering:pixelated;width:160px;height:auto}
.muted{color:#666;font-size:13px}figure{margin:12px 0}code{background:#f4f4f4;padding:1px 4px}
"""


def _fmt(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return escape(str(value))


def _table(df: pd.DataFrame | None, columns: dict[str, str], formats: dict[str, str] | None = None) -> str:
    """An HTML table of ``df``'s ``columns`` (column -> header), numbers formatted."""
    if df is None or len(df) == 0:
        return '<p class="muted">No data yet.</p>'
    formats = formats or {}
    head = "".join(f"<th>{escape(h)}</th>" for h in columns.values())
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r[c], formats.get(c, '.2f'))}</td>"
                                    for c in columns) + "</tr>"
                   for r in df.to_dict(orient="records"))
    return f"<table><tr>{head}</tr>{body}</table>"


def _name(key: str) -> str:
    from ..registry import RegistryError, get_model

    try:
        return f"{get_model(key).name} ({key})"
    except RegistryError:
        return key


def _record_html(record: DecisionRecord) -> str:
    rows = []
    for i, e in enumerate(record.evaluations):
        c, ev = e.criterion, e.evidence
        verdict = {True: ("pass", "pass"), False: ("fail", "fail"), None: ("none", "no evidence")}[e.passed]
        rows.append(
            f"<tr><td>{escape(c.describe())}</td>"
            f"<td>{format_value(c.metric, ev.value)} [{format_value(c.metric, ev.low)}, "
            f"{format_value(c.metric, ev.high)}]<br><span class='muted'>n = {ev.n}; "
            f"{escape(ev.how)}</span></td>"
            f"<td>{escape(BOUNDS[c.bound])} {format_value(c.metric, ev.read(c.bound))} "
            f"{escape(c.op)} {c.threshold:g}</td>"
            f"<td class='{verdict[0]}'>{verdict[1]}</td>"
            f"<td>{svg.strip(f'criterion-{i}', ev.value, ev.low, ev.high, c.threshold, e.passed)}</td></tr>")
    criteria = ("<table><tr><th>criterion (stated first)</th><th>evidence [95% interval]</th>"
                "<th>compared</th><th>outcome</th><th>figure</th></tr>" + "".join(rows) + "</table>"
                if rows else "<p class='muted'>No criteria were stated for this review.</p>")
    stated = (f"Criteria stated {escape(record.criteria_at)}; "
              + ("before any vote was cast." if record.votes_before_criteria == 0 else
                 f"<b>after {record.votes_before_criteria} votes had been cast</b>.")
              if record.criteria_at else "No criteria stated.")
    verdict = (f"<div class='verdict'>Verdict: <b>{escape(VERDICTS[record.verdict])}</b> — "
               f"decided by {escape(record.decided_by or '?')} at {escape(record.decided_at or '?')}"
               f"</div>" if record.verdict else
               "<div class='verdict'>No verdict recorded yet.</div>")
    passed = ("every criterion passed" if record.all_passed else
              "not every criterion passed" if record.evaluations else "no criteria")
    return (f"<h2>Decision record</h2><p>Candidate <b>{escape(_name(record.candidate))}</b> "
            f"against baseline <b>{escape(_name(record.baseline))}</b>: {passed}.</p>"
            f"<p class='muted'>{stated}</p>{criteria}{verdict}"
            f"<p><b>Notes:</b> {escape(record.notes) or '<span class=muted>none</span>'}</p>")


def figures(analysis: Analysis) -> dict[str, str]:
    """The review's figures as inline SVG, by name (absent when there is nothing to draw):
    ``win-rates``, ``votes``, ``bradley-terry``, ``by-category``, ``clip-diff``,
    ``latency-ratio``. The report and the dashboard page show the same ones."""
    out = {}
    wr, cat, bt, auto = (analysis.win_rates, analysis.by_category, analysis.bradley_terry,
                         analysis.automatic)
    label = lambda r: f"{r['model_b']} vs {r['model_a']}"
    if len(wr):
        rows = [(label(r), r["win_rate_b"], r["ci_low"], r["ci_high"]) for r in wr.to_dict("records")]
        out["win-rates"] = svg.forest("win-rates", "Win rate of B over A (95% interval)", rows,
                                      x_range=(0, 1), reference=0.5,
                                      x_label="win rate (0.5 = no preference)")
        keys = {"a": "wins_a", "b": "wins_b", "tie": "ties", "both_bad": "both_bad"}
        bars = [(label(r), {k: r[keys[k]] for k in CHOICES}) for r in wr.to_dict("records")]
        out["votes"] = svg.stacked("votes", "Votes per model pair", bars, legend=CHOICES)
    if bt is not None:
        rows = [(r["model"], r["strength"], r["ci_low"], r["ci_high"]) for r in bt.to_dict("records")]
        out["bradley-terry"] = svg.forest(
            "bradley-terry", "Bradley-Terry log-strength (95% bootstrap interval)", rows,
            x_range=_symmetric(rows), reference=0.0, x_label="log-strength (baseline 0)")
    if len(cat) and cat["category"].nunique() > 1:
        rows = [(f"{r['category']}: {label(r)}", r["win_rate_b"], r["ci_low"], r["ci_high"])
                for r in cat.to_dict("records")]
        out["by-category"] = svg.forest("by-category", "Win rate of B by prompt category", rows,
                                        x_range=(0, 1), reference=0.5)
    if len(auto):
        rows = [(f"{r['model_b']} − {r['model_a']}", r["clip_diff"], r["clip_diff_low"],
                 r["clip_diff_high"]) for r in auto.to_dict("records")]
        out["clip-diff"] = svg.forest("clip-diff", "Paired CLIP difference B − A (95% interval)",
                                      rows, x_range=_symmetric(rows), reference=0.0)
        rows = [(f"{r['model_b']} / {r['model_a']}", r["latency_ratio"], r["latency_ratio_low"],
                 r["latency_ratio_high"]) for r in auto.to_dict("records")]
        top = max([v for r in rows for v in r[1:] if svg._finite(v)] + [1.0]) * 1.1
        out["latency-ratio"] = svg.forest("latency-ratio", "Latency ratio B / A (95% interval)",
                                          rows, x_range=(0, top), reference=1.0)
    return out


def _symmetric(rows) -> tuple[float, float]:
    span = max([abs(v) for r in rows for v in r[1:] if svg._finite(v)] + [1.0])
    return -span, span


#: Columns of the tables the report and the page show: table -> {column: header}.
WIN_COLUMNS = {"model_a": "model A", "model_b": "model B", "n_votes": "votes", "n_pairs": "pairs",
               "wins_a": "A better", "wins_b": "B better", "ties": "ties", "both_bad": "both bad",
               "win_rate_b": "B win rate", "ci_low": "low", "ci_high": "high"}
REVIEWER_COLUMNS = {"reviewer": "reviewer", "model_a": "A", "model_b": "B", "n_votes": "votes",
                    "done": "done", "wins_a": "A better", "wins_b": "B better", "ties": "ties",
                    "both_bad": "both bad", "win_rate_b": "B win rate", "ci_low": "low",
                    "ci_high": "high", "left_chosen": "left chosen",
                    "agrees_with_others": "agrees with others"}
QUALITY_COLUMNS = {"model_a": "A", "model_b": "B", "n_pairs": "pairs",
                   "score_checkpoint": "CLIP checkpoint", "clip_a": "CLIP A", "clip_b": "CLIP B",
                   "clip_diff": "CLIP B−A", "clip_diff_low": "CLIP low", "clip_diff_high": "CLIP high",
                   "psnr": "PSNR dB", "psnr_low": "PSNR low", "psnr_high": "PSNR high",
                   "ssim": "SSIM", "ssim_low": "SSIM low", "ssim_high": "SSIM high"}
SPEED_COLUMNS = {"model_a": "A", "model_b": "B", "latency_a_s": "latency A s",
                 "latency_b_s": "latency B s", "latency_ratio": "B/A latency",
                 "latency_ratio_low": "ratio low", "latency_ratio_high": "ratio high",
                 "flagged_a": "flagged A", "flagged_b": "flagged B",
                 "flagged_b_low": "B low", "flagged_b_high": "B high"}


def _human_html(analysis: Analysis, figs: dict[str, str]) -> str:
    fig = lambda name: f"<figure>{figs[name]}</figure>" if name in figs else ""
    parts = ["<h2>Human preference (blind votes)</h2>",
             "<p class='muted'>Win rate of model B over model A; ties and 'both bad' count half "
             "and are shown apart. 95% intervals: bootstrap (BCa) over prompts.</p>",
             _table(analysis.win_rates, WIN_COLUMNS), fig("win-rates"), fig("votes")]
    if analysis.bradley_terry is not None:
        parts.append("<h3>Bradley-Terry strengths</h3>" + _table(analysis.bradley_terry, {
            "model": "model", "strength": "log-strength (baseline 0)", "ci_low": "low",
            "ci_high": "high", "p_beats_reference": "P(beats baseline)"}) + fig("bradley-terry"))
    if "by-category" in figs:
        parts.append("<h3>Per prompt category</h3>" + _table(analysis.by_category, {
            "category": "category", "model_a": "A", "model_b": "B", "n_votes": "votes",
            "win_rate_b": "B win rate", "ci_low": "low", "ci_high": "high"}) + fig("by-category"))
    parts.append("<h3>Per reviewer</h3><p class='muted'>Wilson 95% intervals (one vote per pair); "
                 "'left chosen' = share of decisive votes won by the left image.</p>")
    parts.append(_table(analysis.by_reviewer, REVIEWER_COLUMNS,
                        {"done": ".0%", "left_chosen": ".0%", "agrees_with_others": ".0%"}))
    ag, pos = analysis.agreement, analysis.position
    parts.append(
        f"<h3>Rater agreement</h3><p>Krippendorff's alpha (nominal, four choices): "
        f"<b>{_fmt(ag['alpha'])}</b> [{_fmt(ag['ci_low'])}, {_fmt(ag['ci_high'])}] over "
        f"{ag['n_pairs']} pairs voted by two or more of {ag['n_reviewers']} reviewers; raw "
        f"agreement {_fmt(ag['percent_agreement'], '.0%')}. {escape(ag['note'])}</p>"
        f"<p>Position: the left image won {pos['left_chosen']} of {pos['n_decisive']} decisive "
        f"votes ({_fmt(pos['rate'], '.0%')} [{_fmt(pos['ci_low'], '.0%')}, "
        f"{_fmt(pos['ci_high'], '.0%')}]; 50% when sides do not matter).</p>")
    return "".join(parts)


def _automatic_html(analysis: Analysis, figs: dict[str, str]) -> str:
    fig = lambda name: f"<figure>{figs[name]}</figure>" if name in figs else ""
    return ("<h2>Automatic numbers for the same pairs</h2>"
            "<p class='muted'>B minus A (CLIP), B against A (PSNR/SSIM), B / A (latency). "
            "95% intervals: bootstrap (BCa) over prompts; flagged: Wilson.</p>"
            + _table(analysis.automatic, QUALITY_COLUMNS, {"ssim": ".3f", "ssim_low": ".3f",
                                                          "ssim_high": ".3f"})
            + _table(analysis.automatic, SPEED_COLUMNS,
                     {"latency_a_s": ".3f", "latency_b_s": ".3f", "flagged_a": ".1%",
                      "flagged_b": ".1%", "flagged_b_low": ".1%", "flagged_b_high": ".1%"})
            + fig("clip-diff") + fig("latency-ratio"))


def _pairs_html(review: Review, results: pd.DataFrame, analysis: Analysis) -> str:
    votes: dict[int, list] = {}
    for v in analysis.votes:
        votes.setdefault(v.pair_idx, []).append(v)
    disagreed = list(analysis.disagreements["pair_idx"]) if len(analysis.disagreements) else []
    shown = list(dict.fromkeys(disagreed + [p.idx for p in review.pairs][:GALLERY_PAIRS]))
    pairs = {p.idx: p for p in review.pairs}

    def card(idx: int) -> str:
        p = pairs[idx]
        images = []
        for model, rid in ((p.model_a, p.result_a), (p.model_b, p.result_b)):
            paths = results.loc[rid, "image_paths"] if rid in results.index else []
            src = thumbnail_uri(paths[0]) if len(paths) and Path(paths[0]).is_file() else ""
            images.append(f"<div style='display:inline-block;margin-right:4px'><img alt='{escape(model)}' "
                          f"src='{src}'><br>{escape(model)}</div>")
        tally = ", ".join(f"{escape(v.reviewer)}: {CHOICES[v.choice]}"
                          + (f" “{escape(v.comment)}”" if v.comment else "") for v in votes.get(idx, []))
        return (f"<div class='pair' data-pair='{idx}'><b>#{idx}</b> “{escape(p.prompt)}” · seed "
                f"{p.seed}{'' if p.latent_matched else ' · <i>not latent-matched</i>'}<br>"
                f"{''.join(images)}<br>{tally or '<span class=muted>no votes</span>'}</div>")

    head = (f"<h2>Most disagreed pairs</h2><div class='pairs'>{''.join(card(i) for i in disagreed)}</div>"
            if disagreed else "<h2>Most disagreed pairs</h2><p class='muted'>No pair was disagreed on.</p>")
    rest = [i for i in shown if i not in disagreed]
    more = len(review.pairs) - len(shown)
    return (head + f"<h2>Pairs</h2><div class='pairs'>{''.join(card(i) for i in rest)}</div>"
            + (f"<p class='muted'>{more} more pairs are listed in the JSON.</p>" if more > 0 else ""))


def _manifest_html(data: dict) -> str:
    rows = []
    for key, value in data.items():
        if key == "models":
            for m, info in value.items():
                rows.append((f"model {m}", json.dumps(info, ensure_ascii=False)))
        else:
            rows.append((key, json.dumps(value, ensure_ascii=False)))
    body = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>" for k, v in rows)
    return f"<h2>Manifest</h2><table>{body}</table>"


def render_html(review: Review, analysis: Analysis, record: DecisionRecord,
                results: pd.DataFrame, data: dict) -> str:
    """The whole report as one HTML document (no external resource of any kind)."""
    title = f"Decision record: {review.name}"
    head = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}"
            f"</title><meta name='viewport' content='width=device-width'><style>{_CSS}</style></head>")
    intro = (f"<h1>{escape(title)}</h1><p class='muted'>Review of "
             f"{', '.join(escape(_name(m)) for m in review.models)}; {len(review.pairs)} pairs "
             f"({data['manifest']['latent_matched_pairs']} latent-matched) over "
             f"{data['manifest']['n_prompts']} prompts and seeds "
             f"{escape(', '.join(str(s) for s in review.selection.seeds))}; "
             f"{len(analysis.votes)} votes by {analysis.agreement['n_reviewers']} reviewers. "
             f"Created by {escape(review.owner)} at {escape(review.created_at)}.</p>")
    contended = sum(data["manifest"]["timing_flags"].values())
    if contended:  # the engine flags latencies measured on a busy CPU
        intro += (f"<p class='fail'>{contended} of the shown results' timings are flagged as "
                  f"contended (the CPU was shared while they ran): latency numbers are less "
                  f"reliable.</p>")
    figs = figures(analysis)
    body = (intro + _record_html(record) + _human_html(analysis, figs) + _automatic_html(analysis, figs)
            + _pairs_html(review, results, analysis) + _manifest_html(data["manifest"])
            + f"<p class='muted'>Generated by dsdcompare {escape(__version__)} at "
              f"{escape(data['manifest']['report']['generated_at'])}.</p>")
    return f"{head}<body>{body}</body></html>"


# --- writing --------------------------------------------------------------------------------------


def build(store, review: Review, analysis: Analysis, record: DecisionRecord) -> tuple[str, dict]:
    """The report as (HTML text, JSON document)."""
    from .automatic import pair_results

    results = pair_results(store, review)
    data = report_data(review, analysis, record, results)
    return render_html(review, analysis, record, results, data), data


def write_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_beside(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def json_text(data: dict) -> str:
    """The JSON document as text (standard JSON: NaN became null)."""
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
