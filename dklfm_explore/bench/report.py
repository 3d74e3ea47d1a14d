"""The benchmark's record as people read it: the acceptance targets and the Markdown table."""

from __future__ import annotations

from .paper_protocol import PAPER_REFERENCE
from .settings import FAMILIES

__all__ = ["check_targets", "render_markdown"]


def check_targets(rows: list[dict], curve: list[dict]) -> list[dict]:
    """The issue's acceptance targets, each with the measured value and whether it was met."""
    def get(family, method, key):
        for row in rows:
            if row["family"] == family and row["method"] == method:
                return row[key]
        return None

    targets = []

    def add(name, value, met):
        targets.append({"target": name, "measured": value, "met": bool(met) if value is not None else None})

    d, p = get("transcription", "dklfm", "latent_mse"), get("transcription", "per-task-lfm", "latent_mse")
    add("transcription: DKLFM latent MSE <= 0.8 x per-task LFM", None if None in (d, p) else f"{d:.4f} vs 0.8 x {p:.4f}",
        None if None in (d, p) else d <= 0.8 * p)
    d, p = get("transcription", "dklfm", "infer_ms_per_instance"), get("transcription", "per-task-lfm", "infer_ms_per_instance")
    add("transcription: inference >= 1000x faster than per-task LFM", None if None in (d, p) else f"{p / d:.0f}x",
        None if None in (d, p) else p / d >= 1000)
    for family in ("transcription", "transcription-linear"):
        r, p = (get(family, method, "latent_mse") for method in ("dklfm-refined", "per-task-lfm"))
        add(f"{family}: refined latent MSE <= per-task LFM's", None if None in (r, p) else f"{r:.4f} vs {p:.4f}",
            None if None in (r, p) else r <= p)
        r, p = (get(family, method, "infer_ms_per_instance") for method in ("dklfm-refined", "per-task-lfm"))
        add(f"{family}: refined >= 5x faster per task than per-task LFM", None if None in (r, p) else f"{p / r:.1f}x",
            None if None in (r, p) else p / r >= 5)
        c = get(family, "dklfm-refined", "coverage95")
        add(f"{family}: refined 95% coverage in [0.85, 0.99]", None if c is None else f"{c:.3f}", None if c is None else 0.85 <= c <= 0.99)
    for family, slack in (("transcription-linear", 0.05), ("reaction-diffusion", 0.1)):
        d, e = get(family, "dklfm", "latent_mse"), get(family, "exact-lfm", "latent_mse")
        bound = None if None in (d, e) else max(e + slack, 2 * e)
        add(f"{family}: DKLFM latent MSE <= max(exact + {slack}, 2 x exact)",
            None if bound is None else f"{d:.4f} vs bound {bound:.4f}", None if bound is None else d <= bound)
    d = get("lotka-volterra-extrapolation", "dklfm", "latent_mse")
    add("lotka-volterra-extrapolation: DKLFM latent MSE on [T, 2T] <= 0.5", None if d is None else f"{d:.4f}",
        None if d is None else d <= 0.5)
    for family in FAMILIES:
        c = get(family, "dklfm", "coverage95")
        add(f"{family}: DKLFM 95% coverage in [0.85, 0.99]", None if c is None else f"{c:.3f}", None if c is None else 0.85 <= c <= 0.99)
    for key, paper in (("latent_mse", 0.116), ("output_mse", 0.201)):
        d = get("paper-protocol", "dklfm", key)
        add(f"paper-protocol: DKLFM {key.replace('_', ' ')} <= the paper's {paper} (Alfi: {PAPER_REFERENCE['alfi'][key]})",
            None if d is None else f"{d:.4f}", None if d is None else d <= paper)
    if len(curve) >= 2:
        first, last = curve[0]["latent_mse"], curve[-1]["latent_mse"]
        add("learning curve falls with the number of training tasks", f"{first:.4f} -> {last:.4f}", last < first)
    return targets


def render_markdown(payload: dict) -> str:
    h = payload["header"]
    runs = h.get("parts", [h])
    lines = [f"# Benchmark results ({'quick smoke run' if h['quick'] else 'full settings'})", ""]
    if len(runs) > 1:
        lines += [f"Combined from {len(runs)} runs of the same settings, one per group of families (each family's methods side by side in one run):", ""]
    for run in runs:
        lines.append(f"- date: {run['date']}  \n- command: `{run['command']}`  \n- commit: `{run['git_commit']}`")
        if run.get("superseded"):
            lines.append(f"- superseded by a later run: {', '.join(run['superseded'])} (its rows of them are not shown)")
    lines += [f"- device: {h['device']} ({h['device_name']}, {h['cpu_threads']} threads); absolute times count only from a GPU run  \n"
              f"- observation noise: {h['noise']}  \n- units: {h['units']}", "",
             "| family | method | n_train | n_test | latent MSE | output MSE | 95% coverage | NLPD | infer ms/instance | train s | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, spec: "–" if v is None else format(v, spec)
    for r in payload["rows"]:
        lines.append(f"| {r['family']} | {r['method']} | {r['n_train']} | {r['n_test']} | {fmt(r['latent_mse'], '.4f')} | "
                     f"{fmt(r['output_mse'], '.4f')} | {fmt(r['coverage95'], '.3f')} | {fmt(r['nlpd'], '.3f')} | "
                     f"{fmt(r['infer_ms_per_instance'], '.2f')} | {fmt(r['train_s'], '.1f')} | {fmt(r['peak_mem_mb'], '.0f')} |")
    lines += ["", "## Inference time per instance (ms): batched over the test tasks vs one at a time", "",
              "| run | batched | one at a time |", "|---|---|---|"]
    for key, value in payload["timings"].items():
        if "batched_ms" in value:
            lines.append(f"| {key} | {value['batched_ms']:.2f} | {fmt(value.get('one_at_a_time_ms'), '.2f')} |")
    absent = {key: value["absent"] for key, value in payload["timings"].items() if "absent" in value}
    if absent:
        lines += ["", "## Rows not run", ""] + [f"- {key}: {reason}" for key, reason in absent.items()]
    speed = payload["timings"].get("transcription/throughput")
    if speed:
        lines += ["", f"## Throughput: {speed['tasks']} transcription tasks batched ({speed['dtype']})", "",
                  "| DKLFM tasks/s | floor tasks/s (one batched Cholesky + solve, same size) | DKLFM / floor time |", "|---|---|---|",
                  f"| {speed['tasks_per_s']:.0f} | {speed['floor_tasks_per_s']:.0f} | {speed['ratio_to_floor']:.1f}x |"]
    if payload["learning_curve"]:
        lines += ["", "## Learning curve (transcription, same test tasks)", "", "| n_train | latent MSE | 95% coverage | train s |", "|---|---|---|---|"]
        lines += [f"| {'streamed: ' if p.get('streamed') else ''}{p['n_train']} | {p['latent_mse']:.4f} | {p['coverage95']:.3f} | {p['train_s']:.1f} |"
                  for p in payload["learning_curve"]]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in payload["targets"]:
        lines.append(f"| {t['target']} | {t['measured'] or 'not run'} | {'yes' if t['met'] else ('NO' if t['met'] is False else '–')} |")
    return "\n".join(lines) + "\n"
