"""Does every table of an HTML report fit a browser window without horizontal scrolling?

Opens each report in headless Chromium at the given window widths, measures every table's box
(``.table-wrap``: scrollWidth against clientWidth) and the page itself, and optionally saves a
screenshot to look at. Needs a Chromium (`chromium`, `chromium-browser` or `google-chrome`).

    python benchmarks/check_html_width.py runs/demo/bench/report.html --widths 1280,1400 --screenshots shots/

Exit code 0 when everything fits at every width, 1 otherwise (each overflowing table is listed).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_PROBE = """<script>
(function () {
  var boxes = Array.prototype.map.call(document.querySelectorAll('.table-wrap'), function (w, i) {
    var head = w.querySelector('tr');
    return {index: i, scroll: w.scrollWidth, client: w.clientWidth,
            header: head ? head.innerText.replace(/\\s+/g, ' ').slice(0, 80) : ''};
  });
  var probe = document.createElement('pre');
  probe.id = 'width-probe';
  probe.textContent = JSON.stringify({window: window.innerWidth, page: document.documentElement.scrollWidth,
                                      tables: boxes});
  document.body.appendChild(probe);
})();
</script>"""


@dataclass
class WidthCheck:
    width: int
    page_width: int
    window: int
    overflowing: list[dict]

    @property
    def fits(self) -> bool:
        return not self.overflowing and self.page_width <= self.window


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def _run(browser: str, args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", *args],
                          capture_output=True, text=True, timeout=timeout)


def check_width(html: str | Path, width: int, browser: str | None = None, height: int = 1000) -> WidthCheck:
    """Lay ``html`` out at ``width`` px and report the tables whose content is wider than their box."""
    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    page = Path(html).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(page.replace("</body>", _PROBE + "\n</body>"), encoding="utf-8")
        proc = _run(browser, [f"--window-size={width},{height}", "--dump-dom", probe.as_uri()])
    found = re.search(r'<pre id="width-probe">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        raise RuntimeError(f"Chromium returned no measurement: {proc.stderr[-500:]}")
    data = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    over = [t for t in data["tables"] if t["scroll"] > t["client"] + 1]
    return WidthCheck(width, data["page"], data["window"], over)


def screenshot(html: str | Path, width: int, out: Path, browser: str | None = None, height: int = 1400) -> Path:
    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(browser, [f"--window-size={width},{height}", f"--screenshot={out}", Path(html).resolve().as_uri()])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="HTML reports (report.html)")
    parser.add_argument("--widths", default="1280,1400", help="window widths in px, comma-separated")
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for one PNG per report and width")
    args = parser.parse_args(argv)
    ok = True
    for report in args.reports:
        for width in (int(w) for w in args.widths.split(",")):
            result = check_width(report, width)
            state = "fits" if result.fits else "OVERFLOWS"
            print(f"{report} at {width} px: {state} (page {result.page_width} px, {len(result.overflowing)} table(s) "
                  "wider than their box)")
            for t in result.overflowing:
                print(f"  table {t['index']}: {t['scroll']} px in {t['client']} px — {t['header']}")
            ok &= result.fits
            if args.screenshots is not None:
                name = f"{report.parent.name}_{report.stem}_{width}.png"
                print(f"  screenshot: {screenshot(report, width, args.screenshots / name)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
