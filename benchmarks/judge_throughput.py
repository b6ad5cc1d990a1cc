"""Throughput of the judge pass: pairs judged per minute, one at a time against batched.

    python benchmarks/judge_throughput.py [--quick] [--model PATH] [--pairs N] [--parallel N]
        [--rounds N] [--threads N] [--json OUT.json]

The sample experiment is copied to a temporary folder and given ``--pairs`` hand-written pairs
(a conversation of eight turns and its thread, the same for every pair but its seed); then the
judge pass (``Pipeline.judge_plan`` + ``Pipeline.run``, exactly what ``convogen judge`` runs)
judges them all with one stream, and again (``--again``) with ``--parallel`` streams; ``--rounds``
times, alternating, so load from others on a shared machine falls on both alike (medians are
reported). Printed per run: pairs/min, judge tokens/s, how many answers were valid on the first
try, retried or judge-failed, and the load average. The last line is
``judge/min single=<x> batched<N>=<y> ratio=<y/x>`` (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convogen_tui.core.keeping.records import ConversationRecord, PersonaNames, RestyledRecord  # noqa: E402
from convogen_tui.core.keeping.store import ConversationStore  # noqa: E402
from convogen_tui.core.making.experiment import load_experiment  # noqa: E402
from convogen_tui.core.making.pipeline import Pipeline, RunFinished  # noqa: E402
from convogen_tui.llm.embedded import embedded_model_path  # noqa: E402
from convogen_tui.llm.llama_cpp import load_llama  # noqa: E402

CONV = "\n".join(
    f"SocBot: I hear you. Point {i}: the studies on this are public, and they say otherwise.\n"
    f"User: Sure, and who paid for those studies? Reply {i}."
    for i in range(8)
)
THREAD = "\n".join(
    f"SocBot: point {i}, studies are public\nUser: who paid for them tho {i}" for i in range(8)
)


def make_pairs(expt: Path, n: int) -> None:
    store = ConversationStore(expt)
    for i in range(n):
        record = ConversationRecord(
            tweet_id=str(1_700_000_000_000_000_000 + i),
            disposition="Cynical: expects the worst of institutions.",
            motivation="Distrust: believes official sources lie.",
            tweet=f"They put fluoride in the water to keep us docile (post {i})",
            conv=CONV,
            persona=PersonaNames(motivation="distrust", disposition="cynical"),
        )
        conv_id = store.save_conversation(record, f"pair-{i:03d}")
        store.save_restyled(conv_id, RestyledRecord(tweet_id=record.tweet_id, restyled_conv=THREAD))


def judge_run(pipeline: Pipeline, parallel: int, again: bool) -> dict[str, Any]:
    plan = pipeline.judge_plan(again=again, seed=1)
    started = time.perf_counter()
    result = next(
        e for e in pipeline.run(plan.jobs, restyle=False, parallel=parallel) if isinstance(e, RunFinished)
    )
    wall = time.perf_counter() - started
    judgments = ConversationStore(pipeline.experiment.dir).judgments()
    return {
        "parallel": parallel,
        "pairs": len(plan.jobs),
        "seconds": round(wall, 2),
        "pairs_per_minute": round(60 * result.judged / wall, 2) if wall else 0.0,
        "tokens_per_second": round(result.completion_tokens / wall, 1) if wall else 0.0,
        "first_try": sum(
            1 for j in judgments.values() if not j.failed and j.provenance and j.provenance.attempts == 1
        ),
        "retried": sum(1 for j in judgments.values() if j.provenance and j.provenance.attempts > 1),
        "judge_failed": result.judge_failed,
        "constraint": pipeline.backend.constraint_support() or "none (validated, one retry)",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 pairs, 4 streams")
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the embedded model)")
    parser.add_argument("--pairs", type=int, default=None, help="pairs to judge (default 16; quick 4)")
    parser.add_argument(
        "--parallel", type=int, default=None, help="streams when batched (default 8; quick 4)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    pairs = args.pairs or (4 if args.quick else 16)
    parallel = args.parallel or (4 if args.quick else 8)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "datasets"
        shutil.copytree(REPO / "datasets" / "inst-templates" / "sample", root / "inst-templates" / "sample")
        shutil.copy2(REPO / "datasets" / "sample-seeds.tsv", root / "sample-seeds.tsv")
        expt = root / "inst-templates" / "sample"
        make_pairs(expt, pairs)
        backend = load_llama(args.model or embedded_model_path(), n_ctx=4096, n_threads=args.threads)
        pipeline = Pipeline(load_experiment(expt), backend)
        print(f"model {backend.info.name}; {pairs} pairs; threads {getattr(backend, 'n_threads', '?')}")
        figures = []
        for round_ in range(args.rounds):
            for streams in (1, parallel):
                run = judge_run(pipeline, streams, again=bool(figures))
                figures.append(run)
                print(json.dumps({"round": round_ + 1, **run}), flush=True)
        single = statistics.median(f["pairs_per_minute"] for f in figures if f["parallel"] == 1)
        batched = statistics.median(f["pairs_per_minute"] for f in figures if f["parallel"] == parallel)
        ratio = batched / single if single else 0.0
        if args.json:
            args.json.write_text(json.dumps({"runs": figures, "ratio": round(ratio, 3)}, indent=2) + "\n")
        print(f"judge/min single={single:.2f} batched{parallel}={batched:.2f} ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
