"""Wall time, CPU time and machine load of what a newcomer runs first: the demo, the README's notebook example
and the test suite, so that the README can quote measured figures with their conditions.

    .venv/bin/python benchmarks/time_commands.py demo notebook [suite]

- ``demo``: ``edgexfer demo --out runs/demo`` in a fresh folder (what ``make demo`` runs once set up);
- ``notebook``: the README's first Python block under "Python API", as a script, in a fresh folder;
- ``suite``: ``make test``'s two pytest processes (the suite, then tests/export/test_export_backbones.py), one after the
  other, in this checkout.

Each command runs as a child process of this one, alone (one at a time). Recorded per command: wall seconds,
CPU seconds (user + system of every process it started and waited for), the exit status and the load average (1 minute) before and after, with the CPU model and core
count: a shared machine's load is part of the figure. Results: ``benchmarks/results/time_commands.{json,md}``
(each run replaces the entries of the commands it ran and keeps the others).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OWN_PROCESS_TESTS = "tests/export/test_export_backbones.py"  # as the Makefile's test target


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def readme_notebook() -> str:
    """The README's first ```python block after the "## Python API" heading."""
    text = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", text, re.S)
    if match is None:
        raise SystemExit("README.md has no ```python block under '## Python API'")
    return match.group(1)


def commands(name: str, work: Path) -> list[tuple[list[str], Path]]:
    python = sys.executable
    if name == "demo":
        return [([python, "-m", "edgexfer", "demo", "--out", "runs/demo"], work)]
    if name == "notebook":
        script = work / "notebook.py"
        script.write_text(readme_notebook())
        return [([python, str(script)], work)]
    if name == "suite":
        return [([python, "-m", "pytest", "-q", f"--ignore={OWN_PROCESS_TESTS}"], ROOT),
                ([python, "-m", "pytest", "-q", OWN_PROCESS_TESTS], ROOT)]
    raise SystemExit(f"unknown command {name!r}: choose demo, notebook or suite")


def measure(name: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"time-{name}-") as tmp:
        steps = commands(name, Path(tmp))
        load_before = os.getloadavg()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        statuses = []
        for argv, cwd in steps:
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
            statuses.append(proc.returncode)
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            print(f"{name}: exit {proc.returncode}: " + " | ".join(tail), flush=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_after = os.getloadavg()
    return {
        "command": " && ".join(" ".join(argv) for argv, _ in steps).replace(sys.executable, "python")
                   .replace(str(Path(tmp) / "notebook.py"), "notebook.py"),
        "wall_s": round(wall, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "exit": statuses,
        "loadavg_1min_before": round(load_before[0], 2),
        "loadavg_1min_after": round(load_after[0], 2),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write(results: dict) -> None:
    (RESULTS / "time_commands.json").write_text(json.dumps(results, indent=2) + "\n")
    machine = results["machine"]
    lines = [
        "# What a newcomer runs first: wall and CPU time",
        "",
        f"Command: `python benchmarks/time_commands.py {' '.join(results['commands'])}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; Python "
        f"{machine['python']}. Shared with other jobs: the load average (1 minute) before and after each "
        "command is part of its figure; on an idle machine wall time is closer to CPU time / cores.",
        *([f"What else ran: {results['note']}"] if results.get("note") else []),
        "",
        "| what | wall s | wall min | CPU s | exit | load before | load after | command |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for name in results["commands"]:
        row = results["measured"][name]
        lines.append(f"| {name} | {row['wall_s']} | {row['wall_s'] / 60:.1f} | {row['cpu_s']} | "
                     f"{','.join(map(str, row['exit']))} | {row['loadavg_1min_before']} | "
                     f"{row['loadavg_1min_after']} | `{row['command']}` |")
    lines += ["", "`notebook.py` is the README's first Python block under \"Python API\", run in a fresh folder; "
              "`demo` ran in a fresh folder too. Exit 3: the gate was inconclusive (too few test images), "
              "after every output was written."]
    (RESULTS / "time_commands.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", choices=["demo", "notebook", "suite"])
    parser.add_argument("--note", default="", help="what else the machine ran meanwhile (recorded beside the figures)")
    args = parser.parse_args()
    path = RESULTS / "time_commands.json"
    results = json.loads(path.read_text()) if path.exists() else {"measured": {}}
    results["note"] = args.note
    results["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}
    for name in args.names:
        results["measured"][name] = measure(name)
    results["commands"] = [n for n in ("demo", "notebook", "suite") if n in results["measured"]]
    write(results)


if __name__ == "__main__":
    main()
