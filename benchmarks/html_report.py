"""Time the check HTML report at 1,000, 5,000 and 20,000 variables (issue 13, item 6: a
5,000-variable page loads in under 2 s).

The reports compare two TF1-named inventories made in this process (``model/layer_{i}/
kernel``, ``bias``, ``gamma``, ``beta``, ``moving_mean``; in every hundred layers one shape
mismatch and one renamed kernel, missing with its unused suggestion; a dtype mismatch every
250 layers), as tests/test_html_page.py does. For each size the table gives the page's size,
the time ``render_html`` takes here, and what headless Chromium measures in the page itself
with the Navigation Timing API: from navigation start to the load event with the whole page
styled and laid out (``load``), as written (scopes holding only matched rows collapsed above
1,000 variables) and with every scope opened (``load, all open``), and the time one search
(typing ``layer_12``) takes to filter the rows and lay the page out again. Each Chromium
figure is the median of ``--repeat`` fresh browser processes (a new profile each). Progress
goes to stderr, the markdown table to stdout.

    .venv/bin/python benchmarks/html_report.py [--sizes 1000 5000 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ckptmigrate.compare import Report, compare
from ckptmigrate.html_report import render_html
from ckptmigrate.inventory import Inventory, Scheme, VariableSpec

WEIGHTS = {"kernel": (4, 4), "bias": (4,), "gamma": (4,), "beta": (4,), "moving_mean": (4,)}
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
PROBE = """
<script>
window.addEventListener("load", function () {
  document.body.offsetHeight;
  var loaded = performance.now();
  var search = document.getElementById("search");
  var start = performance.now();
  search.value = "layer_12";
  search.dispatchEvent(new Event("input"));
  document.body.offsetHeight;
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({ load: loaded, search: performance.now() - start });
  document.body.appendChild(out);
});
</script>
"""


def report(variables: int) -> Report:
    ckpt: dict[str, VariableSpec] = {}
    target: dict[str, VariableSpec] = {}
    for i in range(variables // len(WEIGHTS)):
        for weight, shape in WEIGHTS.items():
            name = f"model/layer_{i}/{weight}"
            target[name] = VariableSpec(name, shape, "float32")
            stored, stored_shape, dtype = name, shape, "float32"
            if i % 100 == 3 and weight == "bias":
                stored_shape = (8,)
            if i % 100 == 7 and weight == "kernel":
                stored = f"model/old_layer_{i}/kernel"
            if i % 250 == 5 and weight == "gamma":
                dtype = "float16"
            ckpt[stored] = VariableSpec(stored, stored_shape, dtype)
    return compare(
        Inventory("checkpoint", "runs/old", Scheme.TF1, ckpt),
        Inventory("checkpoint", "runs/new", Scheme.TF1, target),
    )


def measure(chromium: str, page: Path) -> dict[str, float]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=page.parent)
    try:
        dom = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    if found is None:
        raise SystemExit(f"no measurement in the page {page}")
    result: dict[str, float] = json.loads(found[1].replace("&quot;", '"'))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH (apt-get install chromium)")
    print("| variables | page | render_html | load | load, all open | one search |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            print(f"{size} variables ...", file=sys.stderr)
            the_report = report(size)
            start = time.perf_counter()
            html = render_html(the_report)
            rendered = time.perf_counter() - start
            at = html.rindex("</body>")
            page = Path(tmp) / f"page-{size}.html"
            page.write_text(html[:at] + PROBE + html[at:], encoding="utf-8")
            opened = Path(tmp) / f"open-{size}.html"
            opened.write_text(
                page.read_text(encoding="utf-8").replace(
                    '<details class="scope">', '<details class="scope" open>'
                ),
                encoding="utf-8",
            )
            runs = [measure(chromium, page) for _ in range(args.repeat)]
            open_runs = [measure(chromium, opened) for _ in range(args.repeat)]
            load = statistics.median(r["load"] for r in runs)
            open_load = statistics.median(r["load"] for r in open_runs)
            search = statistics.median(r["search"] for r in runs)
            print(
                f"| {size:,} | {len(html.encode()) / 1e6:.1f} MB | {rendered:.2f} s "
                f"| {load / 1000:.2f} s | {open_load / 1000:.2f} s | {search / 1000:.3f} s |"
            )


if __name__ == "__main__":
    main()
