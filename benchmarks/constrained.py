"""What the grammar buys: form defects, decode speed and tokens per clean pair, without and with it.

    python benchmarks/constrained.py [--pairs 8] [--max-tokens 400] [--parallel 8] [--seed 11]
        [--speed-tokens 96] [--speed-sizes 1,16] [--rounds 2] [--model PATH] [--json OUT.json]

On one model (the embedded SmolLM2-135M unless --model names a GGUF), with the same seeds, personas
and derived seeds (``--seed``) both ways:
1. form: ``--pairs`` conversations and their restyles through the pipeline (``--parallel`` at once,
   ``--max-tokens`` a pass), once with ``constrain`` off and once on; the share of conversations,
   restyles and pairs with any form flag (no-dialog, short, extra-turns, user-first, alternation,
   wrapper, empty-message, restyle-no-dialog, restyle-too-long, restyle-mismatch), the flags by
   rule, and the tokens spent (both passes) per clean pair;
2. speed: decode tok/s (decode steps only, prompts excluded, as throughput.py measures it) of the
   same requests without and with a dialog grammar, at each of ``--speed-sizes`` sequences. Every
   sequence runs exactly ``--speed-tokens`` tokens either way (end-of-generation ignored; the
   grammar has more turns than fit, so it never ends first); medians of ``--rounds`` interleaved
   rounds, since other load on the machine moves both alike.
The sample experiment is copied to a temporary folder: nothing is written to the repository. The
last line is ``flagged <pairs off>-><pairs on> speed1=<x> speed16=<y> tokens/clean <a>-><b>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.throughput import Report, load, machine  # noqa: E402
from convogen_tui.core.judging.dialog import SOCBOT  # noqa: E402
from convogen_tui.core.judging.verdicts import judge, quality_settings  # noqa: E402
from convogen_tui.core.keeping.store import ConversationStore  # noqa: E402
from convogen_tui.core.making.backend import Request, StreamDone, StreamFailed  # noqa: E402
from convogen_tui.core.making.check import seeds_for  # noqa: E402
from convogen_tui.core.making.experiment import SamplingSettings, load_experiment  # noqa: E402
from convogen_tui.core.making.grammar import DialogShape, dialog_shape  # noqa: E402
from convogen_tui.core.making.pipeline import Job, Pipeline, RunFinished  # noqa: E402
from convogen_tui.llm.embedded import embedded_model_path  # noqa: E402
from convogen_tui.llm.llama_cpp import LlamaCppBackend, load_llama  # noqa: E402

CONV_FORM = ("no-dialog", "short", "extra-turns", "user-first", "alternation", "wrapper", "empty-message")
TWIN_FORM = ("restyle-no-dialog", "restyle-too-long", "restyle-mismatch")


def _fresh_experiment(work: Path, name: str) -> Path:
    """A private copy of the sample experiment (no conversations yet)."""
    target = work / name / "datasets"
    shutil.copytree(
        REPO / "datasets",
        target,
        ignore=shutil.ignore_patterns("conversations", "restyled-conversations", "trash", ".convogen"),
    )
    return target / "inst-templates" / "sample"


def form_run(
    backend: LlamaCppBackend, expt_dir: Path, args: argparse.Namespace, constrain: bool
) -> dict[str, Any]:
    """Generate and restyle ``--pairs`` pairs; count form flags and tokens."""
    experiment = load_experiment(expt_dir)
    sampling = experiment.sampling.model_copy(update={"max_tokens": args.max_tokens})
    pipeline = Pipeline(experiment, backend, sampling=sampling, constrain=constrain)
    jobs = pipeline.plan(seeds_for(experiment).seeds, limit=args.pairs, seed=args.seed).jobs
    start = time.perf_counter()
    summary = None
    for event in pipeline.run(jobs, restyle=True, cancel=threading.Event(), parallel=args.parallel):
        if isinstance(event, RunFinished):
            summary = event
    wall = time.perf_counter() - start
    assert summary is not None
    store = ConversationStore(expt_dir)
    settings = quality_settings(expt_dir)
    rules: Counter[str] = Counter()
    conv_flagged = twin_flagged = pair_flagged = 0
    tokens = conv_tokens = 0
    for row in store.list():
        record, twin = store.load(row.id)
        found = {v.rule for v in judge(record, twin, settings)}
        conv_bad, twin_bad = found & set(CONV_FORM), found & set(TWIN_FORM)
        rules.update(conv_bad | twin_bad)
        conv_flagged += bool(conv_bad)
        twin_flagged += bool(twin_bad) or twin is None
        pair_flagged += bool(conv_bad or twin_bad) or twin is None
        conv_tokens += record.provenance.completion_tokens if record.provenance else 0
    tokens = summary.completion_tokens
    pairs = summary.conversations
    clean = pairs - pair_flagged
    return {
        "constrain": constrain,
        "pairs": pairs,
        "restyled": summary.restyled,
        "failed": summary.failed,
        "conversations_flagged": conv_flagged,
        "restyles_flagged": twin_flagged,
        "pairs_flagged": pair_flagged,
        "rules": dict(rules.most_common()),
        "tokens": tokens,
        "conversation_tokens": conv_tokens,
        "clean_pairs": clean,
        "tokens_per_clean_pair": round(tokens / clean, 1) if clean else None,
        "wall_s": round(wall, 1),
        "tok_s": round(tokens / wall, 1) if wall > 0 else 0.0,
        "load": load(),
    }


def speed_run(
    backend: LlamaCppBackend, prompts: list[tuple[str, int]], sampling: SamplingSettings, grammar: Any
) -> float:
    """Decode tok/s of these requests run together, each exactly ``sampling.max_tokens`` tokens."""
    engine = backend.engine
    requests = [Request(i, p, seed, sampling, constraint=grammar) for i, (p, seed) in enumerate(prompts)]
    backend.reserve(len(requests), max(backend.count_tokens(p) for p, _ in prompts) + sampling.max_tokens)
    engine.forget()
    before = replace(engine.counters)
    pending = list(requests)
    start = time.perf_counter()
    for event in backend.run_many(
        lambda: pending.pop(0) if pending else None, threading.Event(), len(prompts)
    ):
        if isinstance(event, StreamFailed):
            raise SystemExit(f"speed run failed: {event.message}")
        if isinstance(event, StreamDone):
            assert event.stats.completion_tokens == sampling.max_tokens, event.stats
    wall = time.perf_counter() - start
    after = engine.counters
    return (after.step_tokens - before.step_tokens) / max(wall - (after.prompt_s - before.prompt_s), 1e-9)


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GGUF file (default: the embedded SmolLM2-135M)")
    parser.add_argument("--pairs", type=int, default=8, help="conversations (and restyles) each way (8)")
    parser.add_argument("--max-tokens", type=int, default=400, help="new tokens a pass (400)")
    parser.add_argument("--parallel", type=int, default=8, help="conversations decoded together (8)")
    parser.add_argument("--seed", type=int, default=11, help="the run's seed: jobs derive theirs (11)")
    parser.add_argument("--speed-tokens", type=int, default=96, help="tokens a sequence in speed runs (96)")
    parser.add_argument("--speed-sizes", type=_sizes, default=[1, 16], help="sequences at once (1,16)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved speed rounds; medians (2)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default as convogen's)")
    parser.add_argument("--skip-form", action="store_true", help="only the speed runs")
    parser.add_argument("--json", type=Path, help="write the figures here as they are measured")
    args = parser.parse_args(argv)
    report = Report(args.json)
    model_path = Path(args.model) if args.model else embedded_model_path()
    backend = load_llama(model_path, n_ctx=4096, n_threads=args.threads)
    print(f"machine: {machine()}; load average {load()} (a shared machine: other work moves every figure)")
    print(
        f"model: {backend.info.name} ({model_path.name}, {backend.info.offload_summary}); "
        f"threads {backend.n_threads}"
    )
    report.put("setup", {"machine": machine(), "model": model_path.name, "load_before": load(), **{
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}})  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="convogen-constrained-"))
    try:
        forms = {} if args.skip_form else _forms(backend, work, args, report)
        speeds = _speeds(backend, work, args, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    parts = []
    if forms:
        off, on = forms[False], forms[True]
        parts.append(f"flagged {off['pairs_flagged']}/{off['pairs']}->{on['pairs_flagged']}/{on['pairs']}")
    parts += [f"speed{n}={ratio:.2f}" for n, ratio in speeds.items()]
    if forms:
        parts.append(
            f"tokens/clean {forms[False]['tokens_per_clean_pair']}->{forms[True]['tokens_per_clean_pair']}"
        )
    print(" ".join(parts))
    return 0


def _forms(
    backend: LlamaCppBackend, work: Path, args: argparse.Namespace, report: Report
) -> dict[bool, dict]:
    print(
        f"\nform: {args.pairs} pairs (generate + restyle), --max-tokens {args.max_tokens}, "
        f"--parallel {args.parallel}, --seed {args.seed}"
    )
    forms: dict[bool, dict] = {}
    for constrain in (False, True):
        row = form_run(backend, _fresh_experiment(work, f"c{int(constrain)}"), args, constrain)
        forms[constrain] = row
        report.put(f"form_{'with' if constrain else 'without'}_grammar", row)
    head = (
        f"{'':<18}{'conv flagged':>13}{'restyle flagged':>16}{'pairs flagged':>14}{'tokens':>8}"
        f"{'tok/clean pair':>16}{'tok/s':>7}"
    )
    print(head)
    for constrain, row in forms.items():
        per_clean = row["tokens_per_clean_pair"] if row["tokens_per_clean_pair"] is not None else "none clean"
        print(
            f"{'with grammar' if constrain else 'without grammar':<18}"
            f"{row['conversations_flagged']:>9}/{row['pairs']:<3}{row['restyles_flagged']:>12}/{row['pairs']:<3}"
            f"{row['pairs_flagged']:>10}/{row['pairs']:<3}{row['tokens']:>8}{per_clean!s:>16}{row['tok_s']:>7}"
        )
        print(f"{'':<18}by rule: {json.dumps(row['rules'])}  (load {row['load']})")
    return forms


def _speeds(
    backend: LlamaCppBackend, work: Path, args: argparse.Namespace, report: Report
) -> dict[int, float]:
    experiment = load_experiment(_fresh_experiment(work, "speed"))
    sampling = experiment.sampling.model_copy(update={"max_tokens": args.speed_tokens})
    pipeline = Pipeline(experiment, backend, sampling=sampling)
    base = pipeline.plan(seeds_for(experiment).seeds, personas="all", seed=args.seed).jobs
    jobs: list[Job] = [replace(base[i % len(base)], random_seed=7 + i) for i in range(max(args.speed_sizes))]
    prompts = [(pipeline.generation_prompt(j.seed, j.persona), j.random_seed) for j in jobs]
    # the dialog grammar of this setup, with more turns than any speed run reaches: it never ends first
    cap = dialog_shape(pipeline.quality, max(args.max_tokens, 400)).max_chars
    grammar = DialogShape((SOCBOT, "user") * 64, cap).constraint()
    backend.ignore_eos = True
    print(
        f"\nspeed: decode tok/s, {args.speed_tokens} tokens a sequence, medians of {args.rounds} "
        f"interleaved round(s); grammar: the dialog rules, <= {cap} chars a message"
    )
    print(f"{'sequences':>10}{'without':>10}{'with':>10}{'with/without':>14}{'load':>18}")
    ratios: dict[int, float] = {}
    try:
        speed_run(backend, prompts[:1], sampling.model_copy(update={"max_tokens": 8}), None)  # warm up
        for n in args.speed_sizes:
            plain, constrained = [], []
            for _ in range(args.rounds):
                plain.append(speed_run(backend, prompts[:n], sampling, None))
                constrained.append(speed_run(backend, prompts[:n], sampling, grammar))
            a, b = statistics.median(plain), statistics.median(constrained)
            ratios[n] = b / a
            print(f"{n:>10}{a:>10.1f}{b:>10.1f}{b / a:>14.2f}{load():>18}")
            report.put(f"speed_{n}", {"without": round(a, 1), "with": round(b, 1), "ratio": round(b / a, 3),
                                      "rounds": [plain, constrained], "load": load()})  # fmt: skip
    finally:
        backend.ignore_eos = False
    return ratios


if __name__ == "__main__":
    raise SystemExit(main())
