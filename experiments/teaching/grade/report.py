"""grades.md: what a teacher reads after ``handgrad grade``."""

from __future__ import annotations

import re
from pathlib import Path

#: the one line that says the sandbox did not hold on this machine (docs/check.md)
UNSANDBOXED = "submissions ran without a filesystem sandbox: "


_MARKDOWN = re.compile(r"([\\`*_\[\]<>#!~])")   # | is markdown_table's to escape


def md_text(text: str) -> str:
    """A learner's text (a file name, a message) as literal markdown: no link, emphasis,
    code span or HTML of theirs takes effect."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def settings_line(settings: dict) -> str:
    from experiments.core.runner import resolve

    described = []
    for cfg in settings.get("configs") or [settings["config"]]:
        if hasattr(cfg, "summary"):   # a reference file (teaching.reference)
            described.append(f"{cfg.summary}, {cfg.steps} training steps (synced)")
            continue
        cfg = resolve(cfg)[0]   # sizes filled in from the data
        sizes = "-".join(map(str, cfg.sizes)) if cfg.sizes else "from the data"
        act = f"{cfg.activation}/{cfg.resolved_output_activation}"
        described.append(f"config `{cfg.name}` (sizes {sizes}, {act}, "
                         f"loss {cfg.loss} {reduction(cfg.loss)}, mode {cfg.mode}, "
                         f"{cfg.steps} training steps)")
    return (f"{'; '.join(described)}, "
            f"--timeout {settings['timeout']:g} s, --memory {settings['memory_mb']} MiB, "
            f"{where_run(settings)}, "
            f"{'definitions only' if settings.get('definitions_only') else 'whole files run'}"
            f", handgrad {version()}" + (f"; {settings['rubric'].describe()}"
                                         if settings.get("rubric") else ""))


def where_run(settings: dict) -> str:
    """Where the submissions were checked: ``--jobs N on this machine``, or the Dask
    cluster (``backends.describe_client``), as the grading recorded it."""
    return settings.get("where") or f"--jobs {settings['jobs']} on this machine"


def reduction(loss: str) -> str:
    """How ``loss`` reduces over the batch, read from ``manual.losses.ELEMENTS``."""
    from manual.losses import ELEMENTS

    if loss not in ELEMENTS:
        return ""
    N, K = 7, 3                       # distinct primes: d names its own reduction
    c, d = ELEMENTS[loss][1](N, K)
    return {1: f"(summed over the batch{', times ½' if c == 0.5 else ''})",
            N: "(mean over the N samples)",
            N * K: "(mean over the N·K entries)"}.get(d, "")


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("handgrad")
    except PackageNotFoundError:
        return "(not installed)"


def grades_markdown(table, skipped, folder: Path, settings: dict) -> str:
    from experiments.output.report import markdown_table
    from experiments.teaching.grade.discover import shown
    from experiments.teaching.grade.summary import rounded, summary_lines

    several = "config" in table and table["config"].nunique() > 1   # counts per config
    counts = table.groupby(["config"] * several + ["status", "diagnosis"],
                           dropna=False).size().reset_index(name="submissions")
    texts = [c for c in ("message", "mistake", "flags") if c in table.columns]
    shown_table = rounded(table).drop(columns=["sha256", "grad_sha256"], errors="ignore")
    shown_table = shown_table.assign(
        **({"student": table["student"].map(lambda f: md_text(shown(str(f))))}
           if "student" in table else {}),
        file=table["file"].map(lambda f: md_text(shown(f))),
        **{c: table[c].map(md_text) for c in texts})
    lines = [f"# handgrad grade: {shown(str(folder))}", "",
             f"{len(table)} submissions checked against autograd; "
             f"{settings_line(settings)}. Each one's check folder is under `checks/`."]
    if settings["resumed"]:
        lines.append(f"{settings['resumed']} rows were kept from the earlier grading "
                     f"(--resume: same file, same sha256).")
    if settings["interrupted"]:
        lines.append("**Interrupted**: the table holds the submissions graded before the "
                     "stop; `--resume` grades the rest.")
    if settings["sandbox_missing"]:
        lines.append(f"**{UNSANDBOXED}{'; '.join(settings['sandbox_missing'])}** "
                     f"(docs/check.md, 'The learner's process').")
    lines += ["", *(summary_lines(table, settings["rubric"]) if settings.get("rubric")
                    and not table.empty and "score" in table.columns else []),
              "## Counts", "", markdown_table(counts), "",
              "## Submissions", "", markdown_table(shown_table), ""]
    if skipped:
        lines += ["## Not graded", "",
                  *(f"- {md_text(shown(s.name))}: {s.why}" for s in skipped), ""]
    return "\n".join(lines)
