"""A self-contained HTML page from a markdown report: every image embedded as a data URI.

The markdown written next to it stays the source of truth (readable in a terminal, a git diff or
GitHub); the HTML is the same document for a browser, and opens offline because it refers to no
other file: styles are inline and each local image becomes a ``data:image/...;base64`` URI.
Markdown is parsed with markdown-it-py (CommonMark plus tables), with raw HTML disabled so a class
name or a file name in a report can never inject markup.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt

from edgexfer.errors import EdgexferError
from edgexfer.io import write_text

_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".svg": "image/svg+xml", ".webp": "image/webp"}

# Fits a 1280–1400 px window without horizontal scrolling of the main tables: the page may use up to
# 1360 px, table headers wrap (numbers do not), cells are compact and the table font is small;
# a table still too wide scrolls inside its own box rather than stretching the page.
MAX_PAGE_WIDTH_PX = 1360
_STYLE = """
:root { --fg: #1d2430; --muted: #5b6473; --line: #d9dee5; --head: #f3f5f8; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: #fff; }
main { max-width: @PAGE@px; margin: 0 auto; padding: 20px 24px 64px; }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 17px; margin: 24px 0 8px; }
p, li { max-width: 75em; }
a { color: var(--accent); }
code { font: 12px/1.4 "SFMono-Regular", Menlo, Consolas, monospace; background: var(--head);
       padding: 1px 3px; border-radius: 3px; }
pre { background: var(--head); padding: 10px 12px; overflow-x: auto; border-radius: 4px; }
pre code { padding: 0; background: none; }
blockquote { margin: 12px 0; padding: 8px 14px; border-left: 4px solid var(--accent); background: #f4f8fd; }
blockquote p { margin: 4px 0; }
.table-wrap { overflow-x: auto; margin: 8px 0 16px; max-width: 100%; }
table { border-collapse: collapse; font-size: 12.5px; line-height: 1.35; font-variant-numeric: tabular-nums;
        table-layout: auto; max-width: 100%; }
th, td { border: 1px solid var(--line); padding: 3px 6px; vertical-align: top; }
th { background: var(--head); font-weight: 600; white-space: normal; overflow-wrap: break-word;
     hyphens: auto; min-width: 3.5em; }
td { white-space: normal; }  /* numbers have no break point; text cells wrap at spaces only when needed */
td code { white-space: nowrap; }  /* an artifact or file name stays whole */
tbody tr:nth-child(even) { background: #fafbfc; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; border: 1px solid var(--line); }
.figures { display: flex; flex-wrap: wrap; gap: 0 14px; align-items: flex-start; }
.figures p { margin: 0; max-width: 100%; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
""".replace("@PAGE@", str(MAX_PAGE_WIDTH_PX))


_FIGURE_RUN = re.compile(r"(?:<p><img [^>]*/></p>\n){2,}")


def image_data_uri(path: Path) -> str:
    """``data:<type>;base64,...`` for an image file."""
    mime = _IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _is_local(src: str) -> bool:
    return not src.startswith(("data:", "http://", "https://", "//", "#"))


def markdown_to_html(markdown: str, base_dir: str | Path, title: str | None = None) -> str:
    """Render ``markdown`` to a complete HTML page, embedding images found relative to ``base_dir``.

    Only files inside ``base_dir`` (after resolving symlinks) are embedded; any other local image is refused.

    A local image that is missing is an error rather than a broken picture in the page: a report
    that silently lost a figure would be worse than no report.
    """
    base = Path(base_dir).resolve()
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(markdown)
    for token in tokens:
        for child in token.children or ():
            if child.type != "image":
                continue
            src = str(child.attrs.get("src", ""))
            if not _is_local(src):
                continue
            # markdown-it percent-encodes destinations (normalizeLink); resolve() follows every symlink, so a
            # link or a "../" that leads out of the report folder is caught here, whatever the markdown says
            image = (base / unquote(src)).resolve()
            if not image.is_relative_to(base):
                raise EdgexferError(f"the report refers to the image {src}, which lies outside its folder {base}",
                                    "only files inside the report folder are embedded: re-render the report")
            if not image.is_file():
                raise EdgexferError(f"the report refers to the image {image}, which does not exist",
                                    "re-render the report (edgexfer report DIR) to redraw its plots")
            child.attrs["src"] = image_data_uri(image)
    body = parser.renderer.render(tokens, parser.options, {})
    # wide tables scroll inside their own box instead of stretching the page
    body = body.replace("<table>", '<div class="table-wrap"><table>').replace("</table>", "</table></div>")
    # a run of pictures, each in its own paragraph, flows side by side where the page is wide enough
    body = _FIGURE_RUN.sub(lambda m: f'<div class="figures">\n{m.group(0)}</div>\n', body)
    if title is None:
        first = next((t for i, t in enumerate(tokens) if i and tokens[i - 1].type == "heading_open"), None)
        title = first.content if first is not None else "edgexfer report"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


def write_html_report(markdown_path: str | Path, html_path: str | Path | None = None,
                      title: str | None = None) -> Path:
    """Write the self-contained HTML twin of ``markdown_path`` (default: same name, ``.html``)."""
    md_path = Path(markdown_path)
    if not md_path.is_file():
        raise EdgexferError(f"the report {md_path} does not exist", "render the report first (edgexfer report DIR)")
    out = Path(html_path) if html_path is not None else md_path.with_suffix(".html")
    page = markdown_to_html(md_path.read_text(encoding="utf-8"), md_path.parent, title=title)
    return write_text(out, page)
