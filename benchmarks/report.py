"""Regenerate the results tables of ``benchmarks/README.md`` from the JSON files in ``results/``.

    python -m populace.benchmarks.report            # rewrite the README's results section
    python -m populace.benchmarks.report --check    # exit 1 if the README is out of date

The section between the ``<!-- results:begin -->`` and ``<!-- results:end -->`` markers is
generated; everything else in the README is written by hand. Tiny GPU-suite records (the ones
the tests make) are never tabled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
README = HERE / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _ms(rec: dict[str, Any]) -> str:
    if "s_per_step" in rec:
        done = rec.get("steps_done", rec["steps"])  # an official example's record has both
        flag = "" if rec["status"] == "ok" else f" ({done} steps, stopped)"
        return f"{rec['s_per_step'] * 1e3:.3g}{flag}"
    return f"{rec['status']}: {rec['reason']}"


def _outcomes(case: dict[str, Any], sides: tuple[str, ...] = ("populace", "mesa")) -> str:
    values = [case.get(side, {}).get("outcomes", {}) for side in sides]
    parts = []
    for key in set().union(*values):
        shown = [f"{v[key]:.3g}" if key in v else "–" for v in values]
        parts.append(f"{key} {' / '.join(shown)}")
    return "; ".join(sorted(parts))


def _ratio(value: float | None) -> str:
    return f"**{value:.3g}×**" if value else "–"


def compare_table(record: dict[str, Any]) -> list[str]:
    official = any("mesa_official" in c for c in record["cases"])
    head = (
        f"`{record.get('command', 'python -m populace.benchmarks.compare')}` on "
        f"{record['device_name']} ({record['device']}, {record['threads']} threads), "
        f"{record['date']}, mesa {record['versions'].get('mesa')}, "
        f"torch {record['versions'].get('torch')}"
    )
    if not official:  # records from before the official examples joined the suite
        lines = [
            head,
            "",
            "| model | size | agents | steps | populace ms/step | Mesa ms/step | Mesa / populace "
            "| outcome populace / Mesa |",
            "|---|---|--:|--:|--:|--:|--:|---|",
        ]
        for c in record["cases"]:
            lines.append(
                f"| {c['suite']} | {c['size']} | {c['agents']:,} | {c['steps']} | "
                f"{_ms(c['populace'])} | {_ms(c['mesa'])} | {_ratio(c['ratio'])} | "
                f"{_outcomes(c)} |"
            )
        return lines
    lines = [
        head,
        "",
        "| model | size | agents | steps | populace ms/step | Mesa peer ms/step | peer / populace "
        "| Mesa official ms/step | official / populace | outcome populace / peer / official |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for c in record["cases"]:
        shipped = c.get("mesa_official", {"status": "not run", "reason": "no record"})
        lines.append(
            f"| {c['suite']} | {c['size']} | {c['agents']:,} | {c['steps']} | "
            f"{_ms(c['populace'])} | {_ms(c['mesa'])} | {_ratio(c['ratio'])} | "
            f"{_ms(shipped)} | {_ratio(c.get('official_ratio'))} | "
            f"{_outcomes(c, ('populace', 'mesa', 'mesa_official'))} |"
        )
    return lines


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def epi_table(record: dict[str, Any]) -> list[str]:
    """One row per scenario, size, threading mode and peer side, against populace."""
    load = record.get("load_average", {})
    lines = [
        f"`{record.get('command', 'python -m populace.benchmarks.epi_compare')}` on "
        f"{record['device_name']}, {record['date']}, {record['repeats']} repeats (seeds) "
        f"interleaved, torch {record['versions'].get('torch')}; load average "
        f"{load.get('before', ['?'])[0]:.3g} before, {load.get('after', ['?'])[0]:.3g} after",
        "",
        "| scenario | agents | threads | peer | populace ms/step | peer ms/step "
        "| peer / populace | memory MiB populace / peer | attack rate populace / peer "
        "| gap ± SE |",
        "|---|--:|---|---|--:|--:|--:|--:|---|--:|",
    ]
    for case in record["cases"]:
        ref, *peers = list(case["sides"])
        for mode, ours in case["sides"][ref].items():
            for peer in peers:
                theirs = case["sides"][peer].get(mode, {"status": "not run", "reason": ""})
                if ours["status"] != "ok" or theirs["status"] != "ok":
                    bad = theirs if theirs["status"] != "ok" else ours
                    lines.append(
                        f"| {case['scenario']} | {case['agents']:,} | {mode} | {peer} | "
                        f"{bad['status']}: {bad.get('reason', '')} | | | | | |"
                    )
                    continue
                gap = f"{theirs['attack_rate_gap']:+.1%}"
                if theirs.get("attack_rate_gap_se"):
                    gap += f" ± {theirs['attack_rate_gap_se']:.1%}"
                if case["matched"]:
                    gap += "" if theirs["agree"] else " (outside ±2%)"
                else:
                    gap += " (approximate)"
                lines.append(
                    f"| {case['scenario']} | {case['agents']:,} | {mode} | {peer} "
                    f"{theirs['version']} | {ours['s_per_step'] * 1e3:.3g} | "
                    f"{theirs['s_per_step'] * 1e3:.3g} | "
                    f"{_ratio(theirs['populace_speedup'])} | "
                    f"{_mib(ours['peak_rss_bytes'])} / {_mib(theirs['peak_rss_bytes'])} | "
                    f"{ours['attack_rate']:.4f} / {theirs['attack_rate']:.4f} | {gap} |"
                )
    return lines


def gpu_table(record: dict[str, Any]) -> list[str]:
    lines = [
        f"`{record.get('command', 'python -m populace.benchmarks.gpu_suite')}` on "
        f"{record['device_name']} ({record['device']}), {record['date']}, "
        f"torch {record['versions'].get('torch')}, triton {record['versions'].get('triton')}",
        "",
        "| entry | agents | steps | ms/step | agent-steps/s | peak memory GiB | setup s | note |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for e in record["entries"]:
        if e["status"] != "ok":
            lines.append(f"| {e['name']} | | | | | | | {e['status']}: {e['reason']} |")
            continue
        lines.append(
            f"| {e['name']} | {e['agents']:,} | {e['steps']} | {e['ms_per_step']:.4g} | "
            f"{e['agent_steps_per_s']:.3g} | {e['peak_memory_bytes'] / 2**30:.3g} | "
            f"{e['setup_seconds']:.3g} | {e.get('stopped_because', '')} |"
        )
    return lines


def compile_table(record: dict[str, Any]) -> list[str]:
    """One row per model and size: eager vs compiled steady-state ms/step, cold compile."""
    lines = [
        f"`{record.get('command', 'python -m populace.benchmarks.compile')}` on "
        f"{record['device_name']} ({record['device']}, {record['threads']} thread), "
        f"{record['date']}, {record['repeats']} repeats interleaved, "
        f"torch {record['versions'].get('torch')}",
        "",
        "| model | agents | steps | eager ms/step | compiled ms/step | eager / compiled "
        "| compile s (cold) | graphs | runs eagerly (why) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for c in record["cases"]:
        eager = "; ".join(f"{step}: {why[:90]}" for step, why in c["fallbacks"].items())
        lines.append(
            f"| {c['model']} | {c['agents']:,} | {c['steps']} | {c['eager_ms_per_step']:.3g} | "
            f"{c['compiled_ms_per_step']:.3g} | {_ratio(c['eager_over_compiled'])} | "
            f"{c['compile_seconds']:.3g} | {sum(c['graphs'].values())} | "
            f"{eager.replace('|', '/') or '–'} |"
        )
    return lines


def render(folder: Path = RESULTS) -> str:
    """The generated section (markers included) from every JSON record in ``folder``."""
    compares, gpus, epis, compiles = [], [], [], []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("name") == "compare":
            compares.append((path.name, record))
            if "epidemic" in record:
                epis.append((path.name, record["epidemic"]))
        elif record.get("name") == "epi_compare":
            epis.append((path.name, record))
        elif record.get("name") == "gpu_suite" and not record.get("tiny"):
            gpus.append((path.name, record))
        elif record.get("name") == "compile":
            compiles.append((path.name, record))
    out = [BEGIN, "", "_Generated by `python -m populace.benchmarks.report`; do not edit._", ""]
    out += ["### Populace vs Mesa (the comparison suite)", ""]
    if not compares:
        out += ["No comparison records yet.", ""]
    for name, record in compares:
        out += [f"From `results/{name}`:", "", *compare_table(record), ""]
    out += ["### Populace vs starsim, covasim and LASER (the epidemic peers)", ""]
    if not epis:
        out += ["No epidemic comparison records yet.", ""]
    for name, record in epis:
        out += [f"From `results/{name}`:", "", *epi_table(record), ""]
    out += ["### Compiled vs eager steps", ""]
    if not compiles:
        out += ["No compiled-steps records yet.", ""]
    for name, record in compiles:
        out += [f"From `results/{name}`:", "", *compile_table(record), ""]
    out += ["### GPU suite", ""]
    if not gpus:
        out += ["No GPU-suite records yet (run the command above on a GPU).", ""]
    for name, record in gpus:
        out += [f"From `results/{name}`:", "", *gpu_table(record), ""]
    return "\n".join([*out, END])


def update(readme: Path = README, folder: Path = RESULTS) -> str:
    """``readme``'s text with its generated section replaced (appended if it has none)."""
    text = readme.read_text() if readme.exists() else ""
    section = render(folder)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + section + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + section + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m populace.benchmarks.report")
    p.add_argument("--check", action="store_true", help="exit 1 if the README is out of date")
    args = p.parse_args(argv)
    new = update()
    if args.check:
        stale = new != README.read_text()
        if stale:
            print("benchmarks/README.md is out of date: run python -m populace.benchmarks.report")
        return int(stale)
    README.write_text(new)
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
