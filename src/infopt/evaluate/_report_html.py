"""report.html: the report's blocks and plots in one self-contained page (inline CSS and SVG, no scripts)."""

from __future__ import annotations

from html import escape

from infopt.evaluate._report_doc import Block, Bullets, Heading, Lead, Para, Plots, TableBlock, build_doc
from infopt.evaluate._results import RunResult

__all__ = ["render_html"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto;
       max-width: 1180px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin-bottom: 8px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
p.lead { font-size: 16px; background: #eef7f0; border-left: 4px solid #1a9850; padding: 8px 12px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; vertical-align: top; white-space: nowrap; }
td:nth-child(2), td.wide { white-space: normal; min-width: 9em; }
th { background: #f4f4f4; white-space: normal; min-width: 3em; }
td:nth-child(-n+2), th:nth-child(-n+2) { text-align: left; }
tr.chosen td { background: #e3f4e8; font-weight: 600; } tr.rejected td, tr.skipped td { color: #888; }
tr.baseline td { background: #f7f7f7; }
figure { margin: 16px 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 12.5px; }
li { margin: 3px 0; }
"""

_CAPTIONS = {
    "plot-pareto": "Each point is a variant (its number is the # column; bars: 95% interval); the dashed line is "
                   "the Pareto front: no other variant is both faster and better.",
    "plot-size": "Size of the weights on disk.",
    "plot-latency": "Batch-1 latency of every request timed for the percentiles.",
}


def _table(b: TableBlock) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in b.header)
    rows = []
    for i, row in enumerate(b.rows):
        mark = b.marks[i] if i < len(b.marks) else ""
        cls = f' class="{escape(mark)}"' if mark else ""
        rows.append(f"<tr{cls}>" + "".join(f'<td class="wide">{escape(c)}</td>' if len(c) > 16 else
                                           f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _plots(run: RunResult) -> str:
    try:
        from infopt.evaluate._plots import latency_svg, pareto_svg, size_svg
    except ImportError as e:  # matplotlib is a dependency; a broken install still gets the text report
        return f"<p>No plots: matplotlib could not be imported ({escape(str(e))}).</p>"
    parts = []
    latency = latency_svg(run)
    for pid, svg in (("plot-pareto", pareto_svg(run)), ("plot-size", size_svg(run)), ("plot-latency", latency)):
        if svg is None:
            parts.append(f'<p id="{pid}-missing">No latency distribution: these results hold no latency samples '
                         "(written by an older infopt).</p>")
            continue
        parts.append(f'<figure id="{pid}">{svg}<figcaption>{escape(_CAPTIONS[pid])}</figcaption></figure>')
    return "\n".join(parts)


def _block(b: Block, run: RunResult) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{escape(b.text)}</h{b.level}>"
    if isinstance(b, Lead):
        return f'<p class="lead"><strong>{escape(b.label)}:</strong> {escape(b.text)}</p>'
    if isinstance(b, Para):
        return f"<p>{escape(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in b.items) + "</ul>"
    if isinstance(b, TableBlock):
        return _table(b)
    if isinstance(b, Plots):
        return _plots(run)
    raise TypeError(f"unknown report block {b!r}")


def render_html(run: RunResult) -> str:
    """The whole report as one HTML page that needs nothing else: no network, no other files, no scripts."""
    body = "\n".join(_block(b, run) for b in build_doc(run))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{escape(f'infopt report: {run.model}')}</title><style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
