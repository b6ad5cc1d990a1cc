"""`convogen models list|info|pull`: what models are here, will one fit the GPU, fetch one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from convogen_tui.cli.common import positive_int
from convogen_tui.core.errors import ConvogenError, ModelError, Problem
from convogen_tui.llm.gguf_info import format_bytes


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help="list, inspect and download GGUF models")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p_list = sub.add_parser("list", help="GGUF models in models/, $CONVOGEN_MODELS, the HF cache")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_list.set_defaults(func=run_list)

    p_info = sub.add_parser("info", help="a model's header facts and GPU memory estimate")
    p_info.add_argument("model", help="a .gguf path, OWNER/REPO:FILE.gguf, or 'default'")
    p_info.add_argument(
        "--ctx",
        type=positive_int,
        default=None,
        help="context size for the memory estimate (default: min(trained, 4096))",
    )
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_info.set_defaults(func=run_info)

    p_pull = sub.add_parser("pull", help="download a GGUF model from the Hugging Face Hub")
    p_pull.add_argument(
        "ref",
        metavar="OWNER/REPO[:FILE]",
        help="repo, optionally with the .gguf file (or a quant such as Q4_K_M)",
    )
    p_pull.add_argument("--revision", default=None, help="branch, tag or commit (default main)")
    p_pull.set_defaults(func=run_pull)


def _project_root(args: argparse.Namespace) -> Path:
    """The project is the folder holding datasets/; models/ sits beside it."""
    return Path(args.root).resolve().parent


def run_list(args: argparse.Namespace) -> int:
    from convogen_tui.llm.catalog import list_models

    models = list_models(_project_root(args))
    if args.json:
        print(json.dumps([_summary_json(m) for m in models], indent=2))
        return 0
    rows = [("MODEL", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE", "TEMPLATE")]
    errors = []
    for m in models:
        if m.info is None:
            errors.append(f"{m.ref}: {m.error}")
            continue
        i = m.info
        parts = f" ({i.split_count} parts)" if i.split_count > 1 else ""
        rows.append(
            (
                m.ref,
                i.architecture,
                i.parameters_label,
                i.quantization,
                str(i.context_length or "?"),
                format_bytes(i.file_size) + parts,
                i.chat_template_family,
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    for line in errors:
        print(f"unreadable: {line}", file=sys.stderr)
    return 0


def _summary_json(m: Any) -> dict[str, Any]:
    data = m.model_dump(mode="json", exclude={"info"})
    if m.info is not None:
        data["info"] = m.info.model_dump(mode="json", exclude={"metadata", "chat_template"})
    return data


def run_info(args: argparse.Namespace) -> int:
    from convogen_tui.llm.catalog import model_details
    from convogen_tui.llm.resolve import resolve_model

    if args.ctx is not None and args.ctx <= 0:
        raise ConvogenError(Problem(None, "--ctx must be a positive number of tokens"))
    root = _project_root(args)
    path = resolve_model(args.model, project_root=root)
    details = model_details(path, args.ctx)
    if args.json:
        print(details.model_dump_json(indent=2))
        return 0
    i, est = details.info, details.estimate
    lines = [
        (
            "file",
            str(i.path) + (f" (+{i.split_count - 1} more parts)" if i.split_count > 1 else ""),
        ),
        ("name", i.name or "-"),
        ("architecture", i.architecture),
        ("parameters", f"{i.parameters_label} ({i.parameter_count:,})"),
        (
            "quantization",
            i.quantization + "  [" + ", ".join(f"{t.type} x{t.count}" for t in i.tensor_types) + "]",
        ),
        ("file size", f"{format_bytes(i.file_size)} ({i.file_size:,} bytes)"),
        ("trained context", str(i.context_length or "?")),
        ("layers", str(i.n_layers or "?")),
        ("heads / KV heads", f"{i.n_heads or '?'} / {i.n_kv_heads or '?'}"),
        ("embedding", str(i.embedding_length or "?")),
        ("vocabulary", str(i.vocab_size or "?")),
        ("chat template", i.chat_template_family),
        ("GGUF version", str(i.gguf_version)),
        ("GPU memory", est.describe()),
        ("GPU fit", details.fit.message),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    if args.ctx and i.context_length and args.ctx > i.context_length:
        print(
            f"warning: ctx {args.ctx} is beyond the trained context {i.context_length}",
            file=sys.stderr,
        )
    for warning in i.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from convogen_tui.integrations.hub import (
        choose_remote,
        list_repo_ggufs,
        models_target,
    )
    from convogen_tui.llm.resolve import REPO_ID

    repo_id, _, wanted = args.ref.strip().partition(":")
    if not REPO_ID.match(repo_id):
        raise ModelError(
            Problem(None, f"cannot read '{args.ref}'", hint="use OWNER/REPO or OWNER/REPO:FILE.gguf")
        )
    models = list_repo_ggufs(repo_id, args.revision)
    if wanted:
        model = choose_remote(models, wanted, repo_id)
    else:
        listing = [
            f"{n:>3}. {m.filename}  {format_bytes(m.size) if m.size else '?'}"
            f"{f'  {m.quantization}' if m.quantization else ''}"
            f"{f'  ({len(m.parts)} parts)' if len(m.parts) > 1 else ''}"
            for n, m in enumerate(models, 1)
        ]
        print(f"GGUF files in {repo_id}:")
        print("\n".join(listing))
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            print(f"convogen: name one: convogen models pull {repo_id}:FILE.gguf", file=sys.stderr)
            return 2
        model = models[_ask(len(models)) - 1]
    target = models_target(_project_root(args))
    path = _pull_with_progress(repo_id, model, target, args.revision)
    ref = f"{repo_id}:{model.filename}"
    print(f"pulled {ref} -> {path}")
    print(f'use it with --model {ref} or "llm": "{ref}" in expt-setup.json')
    return 0


def _ask(count: int) -> int:
    while True:
        answer = input(f"download which one? [1-{count}] ").strip()
        if answer.isdigit() and 1 <= int(answer) <= count:
            return int(answer)
        print(f"type a number from 1 to {count}", file=sys.stderr)


def _pull_with_progress(repo_id: str, model: Any, target: Path, revision: str | None) -> Path:
    from convogen_tui.integrations.hub import DOWNLOADS, pull

    hint = f"run the same command again to resume (partial files in {target / DOWNLOADS})"
    try:
        if not sys.stderr.isatty():
            done: set[str] = set()

            def report(name: str, have: int, total: int) -> None:
                if have >= total and name not in done:
                    done.add(name)
                    print(f"downloaded {name} ({format_bytes(total)})", file=sys.stderr)

            return pull(repo_id, model, target, revision, progress=report)
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_stderr_console(),
            transient=False,
        ) as bar:
            tasks: dict[str, Any] = {}

            def update(name: str, have: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(Path(name).name, total=total)
                bar.update(tasks[name], completed=have, total=total)

            return pull(repo_id, model, target, revision, progress=update)
    except KeyboardInterrupt:
        print(f"convogen: interrupted; {hint}", file=sys.stderr)
        raise SystemExit(130) from None


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
