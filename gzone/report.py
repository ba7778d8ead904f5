"""The report of ``gzone reproduce``: one static page (``report.html``) and its Markdown twin.

At the top, the verdicts counted and every claim in one table; then, per paper and in the order
of its sections, each study's figure(s) beside its claims (statement, what was expected, the
measured numbers, the verdict), the preset it ran at, its wall time; at the end, provenance
(versions, device, dtype and matmul precision). Nothing here computes: it lays out what
:func:`gzone.reproduce.reproduce` gathered.
"""

from __future__ import annotations

import html as html_lib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gzone import cli
from gzone.engine.claims import VERDICTS

COLOURS = {"reproduced": "#1a7f37", "not reproduced": "#cf222e", "inconclusive": "#9a6700",
           "not at this scale": "#57606a"}


def show(v: Any) -> str:
    """One value in a line: numbers to 4 digits, lists and dicts inline, None as ``-``."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {show(x)}" for k, x in v.items()) + "}"
    return "-" if v is None else str(v)


def measured_text(measured: Any) -> str:
    """The measured values in one line: ``name = value; ...`` with numbers to 4 digits."""
    if not isinstance(measured, dict):
        return show(measured)
    return "; ".join(f"{k} = {show(v)}" for k, v in measured.items())


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def rows_markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A study's summary rows (``Study.report_table``) as Markdown table lines."""
    if not rows:
        return []
    cols = _columns(rows)
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
            *("| " + " | ".join(show(r.get(c)) for c in cols) + " |" for r in rows)]


def rows_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """A study's summary rows as an HTML table."""
    if not rows:
        return ""
    cols = _columns(rows)
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_e(show(r.get(c)))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table class='rows small'><tr>{head}</tr>{body}</table>"


def claims_table(found: list[dict[str, Any]], width: int = 90) -> str:
    """Claim records (:func:`gzone.engine.claims.evaluate`) as a text table a person reads:
    study, claim, reference, verdict, then the measured values (cut at ``width`` characters)."""
    rows = [{"study": c["study"], "claim": c["claim"], "reference": c["reference"],
             "verdict": c["verdict"], "measured": _cut(measured_text(c["measured"]), width)}
            for c in found]
    return cli.table(rows) if rows else "(no claims)"


def statements(names: Sequence[str]) -> str:
    """What the papers claim that these studies check, one line per claim (how a notebook
    opens): ``study  id (reference): statement``."""
    from gzone import studies

    lines = [f"{name}  {c.id} ({c.reference}): {c.statement}"
             for name in names for c in studies.get(name).claims]
    return "\n".join(lines) or "(no claims)"


def check(records: Mapping[str, list[dict[str, Any]]], preset: str, width: int = 90) -> str:
    """Every claim of the studies named in ``records`` (name -> its records at ``preset``)
    evaluated, as :func:`claims_table` (how a notebook ends)."""
    from gzone import studies
    from gzone.engine import claims

    found = [c for name, recs in records.items()
             for c in claims.evaluate(studies.get(name), recs, preset)]
    return claims_table(found, width)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def counts(sections: list[dict[str, Any]]) -> dict[str, int]:
    """How many claims got each verdict."""
    found = [c["verdict"] for s in sections for c in s["claims"]]
    return {v: found.count(v) for v in VERDICTS}


def _papers(sections: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for s in sections:
        grouped.setdefault(s["study"].paper, []).append(s)
    return grouped


def _label(section: dict[str, Any]) -> str:
    """A section's name: the study, with its preset when it is not the scale's."""
    return section.get("label", section["study"].name)


def _settings(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in config.items())


def footer(section: dict[str, Any], scale: str) -> str:
    """A study's closing line: records (flagged), wall time, preset and settings, and how its
    results came into the report when it was not run by this command."""
    s = section
    wall = "wall time not recorded" if s.get("wall_s") is None else f"{s['wall_s']:.0f} s"
    text = (f"{s['records']} records ({s['flagged']} flagged), {wall}; preset "
            f"{s.get('preset', scale)}: {_settings(s['config'])}")
    return f"{text}; {s['note']}" if s.get("note") else text


def markdown(sections: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The report as Markdown (figures as relative image links)."""
    lines = [f"# gzone reproduce: scale `{meta['scale']}`", "",
             ", ".join(f"{n} {v}" for v, n in counts(sections).items()), "",
             *(f"**failed**: {line}" for line in meta.get("failed", ())),
             *(f"**not read**: {line}" for line in meta.get("unread", ())), "",
             "| study | claim | reference | verdict |", "|---|---|---|---|"]
    lines += [f"| {_label(s)} | {c['claim']} | {c['reference']} | **{c['verdict']}** |"
              for s in sections for c in s["claims"]]
    for paper, group in _papers(sections).items():
        lines += ["", f"## {paper}"]
        for s in group:
            study = s["study"]
            lines += ["", f"### {_label(s)}: {study.reproduces}", "", study.title, ""]
            lines += [f"![{study.name}]({path})" for path in s["figures"]]
            if s.get("figure_error"):
                lines.append(f"figure failed: {s['figure_error']}")
            for c in s["claims"]:
                lines += ["", f"- **{c['claim']}** ({c['reference']}): {c['statement']}",
                          f"  - expected: {c['expected']}",
                          f"  - measured: {measured_text(c['measured'])}",
                          f"  - verdict: **{c['verdict']}**"]
            if not s["claims"]:
                lines += ["", "- no claim of the paper is checked on this study yet"]
            if s.get("rows"):
                lines += ["", *rows_markdown(s["rows"])]
            lines += ["", footer(s, meta["scale"])]
    lines += ["", "## Provenance", "", "```", json.dumps(meta, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def _e(text: Any) -> str:
    return html_lib.escape(str(text))


def _verdict(v: str) -> str:
    return f'<span class="verdict" style="background:{COLOURS.get(v, "#57606a")}">{_e(v)}</span>'


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:.25em .5em;
text-align:left;vertical-align:top}.verdict{color:#fff;border-radius:.3em;padding:.1em .4em;
white-space:nowrap}.study{display:flex;gap:1.5em;flex-wrap:wrap;border-top:1px solid #d0d7de;
padding-top:1em}.figures{flex:1 1 600px}.figures img{max-width:100%}.claims{flex:1 1 500px}
.small{color:#57606a;font-size:.85em}
"""


def html(sections: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The report as one static HTML page (figures linked relative to it)."""
    n = counts(sections)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>gzone reproduce "
             f"({_e(meta['scale'])})</title><style>{STYLE}</style></head><body>",
             f"<h1>gzone reproduce: scale <code>{_e(meta['scale'])}</code></h1>",
             "<p>" + " ".join(f"{_verdict(v)} {k}" for v, k in n.items()) + "</p>",
             *(f"<p class='failed'><b>failed</b>: {_e(line)}</p>" for line in meta.get("failed", ())),
             *(f"<p class='failed'><b>not read</b>: {_e(line)}</p>" for line in meta.get("unread", ())),
             "<table id='summary'><tr><th>study</th><th>claim</th><th>reference</th>"
             "<th>measured</th><th>verdict</th></tr>"]
    for s in sections:
        for c in s["claims"]:
            parts.append(f"<tr class='claim' data-study='{_e(c['study'])}' "
                         f"data-claim='{_e(c['claim'])}'><td><a href='#{_e(_label(s))}'>"
                         f"{_e(_label(s))}</a></td><td>{_e(c['claim'])}</td>"
                         f"<td>{_e(c['reference'])}</td><td class='small'>"
                         f"{_e(measured_text(c['measured']))}</td><td>{_verdict(c['verdict'])}</td></tr>")
    parts.append("</table>")
    for paper, group in _papers(sections).items():
        parts.append(f"<h2>{_e(paper)}</h2>")
        for s in group:
            study = s["study"]
            parts.append(f"<h3 id='{_e(_label(s))}'>{_e(_label(s))}: {_e(study.reproduces)}</h3>"
                         f"<p>{_e(study.title)}</p><div class='study'><div class='figures'>")
            parts += [f"<a href='{_e(p)}'><img src='{_e(p)}' alt='{_e(study.name)}'></a>"
                      for p in s["figures"]]
            if s.get("figure_error"):
                parts.append(f"<p>figure failed: {_e(s['figure_error'])}</p>")
            parts.append("</div><div class='claims'>")
            for c in s["claims"]:
                parts.append(f"<p><b>{_e(c['claim'])}</b> ({_e(c['reference'])}) "
                             f"{_verdict(c['verdict'])}<br>{_e(c['statement'])}<br>"
                             f"<span class='small'>expected: {_e(c['expected'])}<br>measured: "
                             f"{_e(measured_text(c['measured']))}</span></p>")
            if not s["claims"]:
                parts.append("<p>No claim of the paper is checked on this study yet.</p>")
            parts.append(rows_html(s.get("rows") or []))
            parts.append(f"<p class='small'>{_e(footer(s, meta['scale']))}</p></div></div>")
    parts.append("<h2>Provenance</h2><pre>" + _e(json.dumps(meta, indent=1, default=str))
                 + "</pre></body></html>")
    return "\n".join(parts)
