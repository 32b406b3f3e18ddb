"""Render benchmarks/RESULTS.md from the JSON results of the last runs (results/*.json).

    python benchmarks/write_results.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("shard", "train", "inference", "folder", "video", "memory", "serve", "gpu")


def render(results: list[dict]) -> str:
    lines = ["# Benchmark results", "", "Written by `python benchmarks/write_results.py` from `benchmarks/results/*.json`;", ""]
    for result in results:
        machine = result["machine"]
        lines += [
            f"## {result['benchmark']}",
            "",
            f"`{result['command']}`, {result['date']}; {machine['cores']} cores ({machine['cpu']}), "
            f"torch {machine['torch']}, {machine['torch_threads']} threads"
            + (f", GPU {machine['cuda']}" if machine.get("cuda") else ", no GPU"),
            "",
        ]
        if result["checks"]:
            lines += ["| target | measured | goal | met |", "|---|---|---|---|"]
        else:
            lines += ["No target is set for this benchmark; the numbers are reported (see the notes below)."]
        lines += [f"| {c['name']} | {c['value']} | {c['direction']} {c['target']} | {'yes' if c['met'] else '**no**'} |" for c in result["checks"]]
        lines += ["", "| measurement | value |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result["measurements"].items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    found = {p.stem: json.loads(p.read_text()) for p in (HERE / "results").glob("*.json")}
    ordered = [found[name] for name in ORDER if name in found] + [v for k, v in found.items() if k not in ORDER]
    notes = HERE / "NOTES.md"
    text = render(ordered) + ("\n" + notes.read_text() if notes.is_file() else "")
    (HERE / "RESULTS.md").write_text(text)
    print(f"wrote {HERE / 'RESULTS.md'} from {len(ordered)} result files")


if __name__ == "__main__":
    main()
