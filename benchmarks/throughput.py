"""Throughput of ConvoGen on llama.cpp: raw decode, the pipeline alone, and batched conversations.

    python benchmarks/throughput.py [--quick] [--model PATH] [--auto] [--json OUT.json]
        [--tokens N] [--repeat N] [--rounds N] [--jobs-per-slot N] [--sizes 1,2,4,8,16]

In one process and one run, on the embedded model unless --model names a GGUF:
1. single stream: raw llama.cpp (low-level API, one sequence, greedy, a fixed number of tokens,
   end-of-sequence ignored, no text decoding) beside one conversation through ConvoGen (template,
   prompt, our decode loop, events, store) with the same prompt, sampling and token count;
2. batched, at each N of --sizes (1 2 4 8 16, and 32 64 with GPU offload): raw llama.cpp's own
   batched decode through the low-level API (N sequences in one context, one llama_decode of N
   tokens per step, a C sampler chain per sequence: the ceiling) beside the pipeline with N
   conversations at once, as decode tok/s (decode steps only: prompts excluded) and as its
   end-to-end aggregate (generated tokens / wall time, prompts and storing included). Both use
   the experiment's sampling (temperature, top-k/p, repeat penalty) and the same KV layout;
3. prompt processing: raw (one prompt in one llama_decode) against the pipeline's (tokens it
   evaluated after prefix sharing / time in prompt decoding);
4. with --auto: ``--parallel auto`` as convogen generate chooses it (the most that pays and fits
   free memory, printed with its reason), a generate-and-restyle run at that N, its aggregate
   against one stream.

Every buffer follows the prompt: raw contexts hold prompt + tokens, the pipeline's KV streams are
sized by ``Backend.reserve`` as in a real run. The sample experiment is copied to a temporary
folder; nothing is written to the repository. Single-stream figures are medians of --repeat
interleaved runs, batched ones medians of --rounds rounds (other load on the machine moves them).
--json writes every figure as soon as it is measured (a run cut short keeps what it got). The last
line is ``pipeline/raw=<x> batched16/single=<y> batched16-decode/raw16=<z>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convogen_tui.core.making.backend import choose_parallel  # noqa: E402
from convogen_tui.core.making.check import seeds_for  # noqa: E402
from convogen_tui.core.making.experiment import SamplingSettings, load_experiment  # noqa: E402
from convogen_tui.core.making.pipeline import Job, JobFinished, Pipeline, RunFinished, TokenChunk  # noqa: E402
from convogen_tui.llm.embedded import embedded_model_path  # noqa: E402
from convogen_tui.llm.llama_cpp import LlamaCppBackend, load_llama  # noqa: E402
from convogen_tui.llm.llama_engine import cells_for, make_sampler  # noqa: E402

CPU_SIZES = (1, 2, 4, 8, 16)
GPU_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Single:
    prompt_tokens: int
    pp_tps: float  # prompt tokens / prompt time
    ttft_s: float  # start to first generated token
    decode_tps: float  # tokens after the first / time from first to last token
    e2e_tps: float  # generated tokens / whole call


@dataclass
class Batched:
    """One pipeline run at N conversations at once."""

    agg_tps: float  # generated tokens / wall time (prompts and storing included)
    decode_tps: float  # tokens of decode steps / (wall time - prompt time)
    pp_tps: float  # prompt tokens evaluated / prompt time
    wall_s: float
    prompt_tokens: int  # in the prompts
    evaluated: int  # decoded after prefix sharing
    mean_batch: float  # sequences per decode step


def _context(backend: LlamaCppBackend, streams: int, cells: int) -> Any:
    """A context like the engine's (separate KV streams, same batch and flash-attention settings)."""
    import llama_cpp

    engine = backend.engine
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = cells * streams
    params.n_seq_max = streams
    params.n_batch = params.n_ubatch = engine.n_batch
    params.n_threads = params.n_threads_batch = backend.n_threads
    params.kv_unified = False
    params.no_perf = True
    if engine.flash_attn is not None:
        params.flash_attn_type = int(engine.flash_attn)
    ctx = llama_cpp.llama_init_from_model(backend.model.model, params)
    if not ctx:
        raise RuntimeError(f"llama.cpp could not make a context of {streams} x {cells} cells")
    return ctx


def _decode_prompt(ctx: Any, batch: Any, tokens: list[int], n_batch: int) -> None:
    """The prompt into sequence 0, n_batch tokens per llama_decode; logits for the last token."""
    import llama_cpp

    n = len(tokens)
    for first in range(0, n, n_batch):
        piece = tokens[first : first + n_batch]
        for i, token in enumerate(piece):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, first + i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = first + i == n - 1
        batch.n_tokens = len(piece)
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("prompt decode failed")


class RawDecoder:
    """The lightest single-stream loop llama.cpp allows from Python: one-token batches, C greedy.

    Its context is sized for the prompt and the tokens, made once per prompt size and reused (as
    the pipeline's is), with the engine's settings, so only the loop around llama_decode differs.
    """

    def __init__(self, backend: LlamaCppBackend, prompt: str, n_tokens: int) -> None:
        import llama_cpp

        self.backend = backend
        self.tokens = backend.tokenize(prompt)
        self.n_tokens = n_tokens
        self.n_batch = backend.engine.n_batch
        self.ctx = _context(backend, 1, cells_for(len(self.tokens) + n_tokens, 1 << 30))
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.sampler = llama_cpp.llama_sampler_init_greedy()

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_free(self.sampler)
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)

    def run(self, n_tokens: int | None = None) -> Single:
        import llama_cpp

        n_tokens = n_tokens or self.n_tokens
        ctx, batch, sampler, tokens = self.ctx, self.batch, self.sampler, self.tokens
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), False)
        start = time.perf_counter()
        n = len(tokens)
        _decode_prompt(ctx, batch, tokens, self.n_batch)
        prompt_done = time.perf_counter()
        token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
        first = time.perf_counter()
        batch.n_tokens = 1
        batch.logits[0] = 1
        batch.seq_id[0][0] = 0
        for pos in range(n, n + n_tokens - 1):
            batch.token[0], batch.pos[0] = token, pos
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("decode failed")
            token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
        end = time.perf_counter()
        return Single(
            n,
            n / (prompt_done - start),
            first - start,
            (n_tokens - 1) / (end - first),
            n_tokens / (end - start),
        )


def raw_batched(
    backend: LlamaCppBackend, prompt: list[int], n_seq: int, n_tokens: int, sampling: SamplingSettings
) -> float:
    """llama.cpp's own batched decode: aggregate tok/s of ``n_seq`` sequences, decode steps only.

    The prompt is evaluated once and copied to every sequence (prompts are not what this times);
    then each step is one llama_decode of one token per sequence and one sampler call each.
    """
    import llama_cpp

    cells = cells_for(len(prompt) + n_tokens, 1 << 30)
    ctx = _context(backend, n_seq, cells)
    batch = llama_cpp.llama_batch_init(max(backend.engine.n_batch, n_seq), 0, 1)
    samplers = [make_sampler(sampling, 1000 + i, backend.model.vocab) for i in range(n_seq)]
    try:
        mem = llama_cpp.llama_get_memory(ctx)
        _decode_prompt(ctx, batch, prompt, backend.engine.n_batch)
        for seq in range(1, n_seq):
            llama_cpp.llama_memory_seq_cp(mem, 0, seq, -1, -1)
        pending = [llama_cpp.llama_sampler_sample(s, ctx, -1) for s in samplers]
        n = len(prompt)
        start = time.perf_counter()
        for step in range(n_tokens - 1):
            for i in range(n_seq):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = pending[i], n + step, 1
                batch.seq_id[i][0] = i
                batch.logits[i] = 1
            batch.n_tokens = n_seq
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("batched decode failed")
            pending = [llama_cpp.llama_sampler_sample(s, ctx, i) for i, s in enumerate(samplers)]
        return n_seq * (n_tokens - 1) / (time.perf_counter() - start)
    finally:
        for s in samplers:
            llama_cpp.llama_sampler_free(s)
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def pipeline_single(pipeline: Pipeline, job: Job) -> Single:
    """One conversation through Pipeline.run, timed from the consumer's side of its events."""
    backend = pipeline.backend
    assert isinstance(backend, LlamaCppBackend)
    backend.reserve(1, pipeline.stream_tokens([job], restyle=False))
    backend.engine.forget()
    chunks: list[tuple[float, int]] = []
    stats = None
    start = time.perf_counter()
    for event in pipeline.run([job], restyle=False, parallel=1):
        if isinstance(event, TokenChunk):
            chunks.append((time.perf_counter(), event.n_tokens))
        elif isinstance(event, JobFinished):
            stats = event.stats
    end = time.perf_counter()
    assert stats is not None and chunks, "the pipeline produced no text"
    (t_first, n_first), (t_last, n_last) = chunks[0], chunks[-1]
    return Single(
        stats.prompt_tokens,
        stats.prompt_tokens / (stats.first_token_s or 1e-9),
        t_first - start,
        (n_last - n_first) / (t_last - t_first),
        stats.completion_tokens / (end - start),
    )


def batched(pipeline: Pipeline, jobs: list[Job], parallel: int, restyle: bool = False) -> Batched:
    """The pipeline running ``jobs`` ``parallel`` at a time, KV sized as in a real run."""
    backend = pipeline.backend
    assert isinstance(backend, LlamaCppBackend)
    engine = backend.engine
    backend.reserve(parallel, pipeline.stream_tokens(jobs, restyle))  # allocated before the clock
    engine.forget()
    before = replace(engine.counters)
    start = time.perf_counter()
    prompt_tokens = 0
    summary = None
    for event in pipeline.run(jobs, restyle=restyle, cancel=threading.Event(), parallel=parallel):
        if isinstance(event, JobFinished):
            prompt_tokens += event.stats.prompt_tokens
        elif isinstance(event, RunFinished):
            summary = event
    wall = time.perf_counter() - start
    assert summary is not None and summary.conversations == len(jobs), "a batched run lost jobs"
    after = engine.counters
    prompt_s = after.prompt_s - before.prompt_s
    evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated
    steps = after.steps - before.steps
    return Batched(
        summary.completion_tokens / wall,
        (after.step_tokens - before.step_tokens) / max(wall - prompt_s, 1e-9),
        evaluated / max(prompt_s, 1e-9),
        wall,
        prompt_tokens,
        evaluated,
        (after.step_sequences - before.step_sequences) / max(steps, 1),
    )


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from convogen_tui.llm.gpu import list_gpus

    gpus = "; ".join(f"{g.name} ({g.total / 2**30:.0f} GiB)" for g in list_gpus())
    return f"{model}, {os.cpu_count()} logical CPUs" + (f"; GPU {gpus}" if gpus else "")


def load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine moves every figure."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


class Report:
    """The figures so far, rewritten to --json after each measurement (a cut-short run keeps them)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
            tmp.replace(self.path)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of numbers such as 1,2,4,8,16") from None
    if not sizes or sizes[0] < 1 or 1 not in sizes or 16 not in sizes:
        raise argparse.ArgumentTypeError("sizes must include 1 and 16 (the ratios compare them)")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GGUF file (default: the embedded SmolLM2-135M)")
    parser.add_argument("--quick", action="store_true", help="small counts: a minute or two on 2 CPU cores")
    parser.add_argument("--tokens", type=int, help="tokens per conversation (default 192, --quick 128)")
    parser.add_argument("--repeat", type=int, help="single-stream repeats (default 5, --quick 3)")
    parser.add_argument("--rounds", type=int, help="rounds of batched runs (default 3, --quick 1)")
    parser.add_argument(
        "--jobs-per-slot", type=int, help="conversations per slot in batched runs (default 2, --quick 1)"
    )
    parser.add_argument(
        "--sizes", type=_sizes, help="batch sizes (default 1,2,4,8,16; with GPU offload up to 64)"
    )
    parser.add_argument("--auto", action="store_true", help="also run --parallel auto (generate + restyle)")
    parser.add_argument("--json", type=Path, help="write the figures here as they are measured")
    parser.add_argument("--n-gpu-layers", type=int, default=None, help="layers to offload (default all)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default as convogen's: half the CPUs, 1 to 8)",
    )
    args = parser.parse_args(argv)
    tokens = args.tokens or (128 if args.quick else 192)
    repeat = args.repeat or (3 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    per_slot = args.jobs_per_slot or (1 if args.quick else 2)
    report = Report(args.json)

    model_path = Path(args.model) if args.model else embedded_model_path()
    t_load = time.perf_counter()
    backend = load_llama(model_path, n_ctx=4096, n_gpu_layers=args.n_gpu_layers, n_threads=args.threads)
    t_load = time.perf_counter() - t_load
    sizes = args.sizes or (GPU_SIZES if backend.on_gpu else CPU_SIZES)
    work = Path(tempfile.mkdtemp(prefix="convogen-bench-"))
    try:
        shutil.copytree(
            REPO / "datasets",
            work / "datasets",
            ignore=shutil.ignore_patterns("conversations", "restyled-conversations", "trash", ".convogen"),
        )
        experiment = load_experiment(work / "datasets" / "inst-templates" / "sample")
        greedy = experiment.sampling.model_copy(
            update={"temperature": 0.0, "repeat_penalty": 1.0, "max_tokens": tokens}
        )
        sampled = experiment.sampling.model_copy(update={"max_tokens": tokens})
        seeds = seeds_for(experiment).seeds
        base_jobs = Pipeline(experiment, backend).plan(seeds, personas="all", seed=1).jobs
        # as many distinct jobs as the largest batch needs (another random seed each time round)
        need = max(max(sizes) * per_slot, 2 * max(sizes))
        count = max(need, len(base_jobs))
        jobs = [replace(base_jobs[i % len(base_jobs)], random_seed=1 + i) for i in range(count)]
        backend.ignore_eos = True  # every run generates exactly `tokens` tokens

        print(f"machine: {machine()}; load average {load()}")
        print(
            f"model: {backend.info.name} ({model_path.name}, {backend.info.offload_summary}); "
            f"threads {backend.n_threads}; n_batch {backend.engine.n_batch}; loaded in {t_load:.1f} s"
        )
        print(
            f"tokens per conversation: {tokens}; single-stream repeats: {repeat}; "
            f"batched: {per_slot} conversation(s) per slot, {rounds} round(s); sizes {list(sizes)}"
        )
        report.put(
            "setup",
            {
                "machine": machine(),
                "load_before": load(),
                "model": backend.info.name,
                "file": model_path.name,
                "offload": backend.info.offload_summary,
                "load_s": round(t_load, 1),
                "n_batch": backend.engine.n_batch,
                "tokens": tokens,
                "repeat": repeat,
                "rounds": rounds,
                "jobs_per_slot": per_slot,
                "sizes": list(sizes),
            },
        )

        pipe = Pipeline(experiment, backend, sampling=greedy)
        prompt = pipe.generation_prompt(jobs[0].seed, jobs[0].persona)
        raw = RawDecoder(backend, prompt, tokens)
        raw.run(8)  # warm both up: first-touch page faults are not decode speed
        warm = greedy.model_copy(update={"max_tokens": 8})
        pipeline_single(Pipeline(experiment, backend, sampling=warm), jobs[0])
        raws, pipes = [], []
        for _ in range(repeat):  # interleaved, so drifting load hits both alike
            raws.append(raw.run())
            pipes.append(pipeline_single(pipe, jobs[0]))
        raw.close()

        def med(rows: list[Single], name: str) -> float:
            return statistics.median(getattr(r, name) for r in rows)

        print()
        print(
            f"{'single stream (median)':<28}{'prompt':>8}{'pp tok/s':>10}{'TTFT s':>9}{'decode tok/s':>14}"
            f"{'end-to-end tok/s':>18}"
        )
        for label, single in (("raw llama.cpp (greedy)", raws), ("pipeline (greedy)", pipes)):
            print(
                f"{label:<28}{single[0].prompt_tokens:>8}{med(single, 'pp_tps'):>10.0f}"
                f"{med(single, 'ttft_s'):>9.3f}{med(single, 'decode_tps'):>14.1f}"
                f"{med(single, 'e2e_tps'):>18.1f}"
            )
        ratio = med(pipes, "decode_tps") / med(raws, "decode_tps")
        raw_pp = med(raws, "pp_tps")
        print(
            f"decode tok/s of each run: raw {[round(r.decode_tps) for r in raws]}, "
            f"pipeline {[round(r.decode_tps) for r in pipes]}"
        )
        report.put(
            "single",
            {
                "raw": {k: round(med(raws, k), 3) for k in asdict(raws[0])},
                "pipeline": {k: round(med(pipes, k), 3) for k in asdict(pipes[0])},
                "pipeline/raw": round(ratio, 3),
            },
        )

        sampling_pipe = Pipeline(experiment, backend, sampling=sampled)
        prompt_ids = backend.tokenize(prompt)
        runs = {p: jobs[: p * per_slot] for p in sizes}
        raw_rows: dict[int, list[float]] = {p: [] for p in sizes}
        rows: dict[int, list[Batched]] = {p: [] for p in sizes}
        for _ in range(rounds):  # every size in each round, so drifting load hits all alike
            for parallel in sizes:
                raw_rows[parallel].append(raw_batched(backend, prompt_ids, parallel, tokens, sampled))
                rows[parallel].append(batched(sampling_pipe, runs[parallel], parallel))
                report.put(
                    "batched",
                    {
                        str(p): {
                            "raw_decode_tps": [round(x, 2) for x in raw_rows[p]],
                            "pipeline": [{k: round(v, 3) for k, v in asdict(b).items()} for b in rows[p]],
                        }
                        for p in sizes
                        if rows[p]
                    },
                )
        raw_at = {p: statistics.median(raw_rows[p]) for p in sizes}
        agg = {p: statistics.median(r.agg_tps for r in rows[p]) for p in sizes}
        dec = {p: statistics.median(r.decode_tps for r in rows[p]) for p in sizes}
        pp = {p: statistics.median(r.pp_tps for r in rows[p]) for p in sizes}

        print()
        print(
            f"{'batched':<12}{'jobs':>6}{'raw decode':>12}{'pipe decode':>13}{'/raw':>7}{'agg tok/s':>11}"
            f"{'x single':>10}{'wall s':>8}{'prompt tok':>12}{'evaluated':>11}{'pp tok/s':>10}{'KV MiB':>9}"
        )
        for parallel in sizes:
            first = rows[parallel][0]
            wall = statistics.median(r.wall_s for r in rows[parallel])
            kv = backend.memory_for(parallel, sampling_pipe.stream_tokens(runs[parallel], restyle=False))
            print(
                f"{'parallel ' + str(parallel):<12}{len(runs[parallel]):>6}{raw_at[parallel]:>12.1f}"
                f"{dec[parallel]:>13.1f}{dec[parallel] / raw_at[parallel]:>7.2f}{agg[parallel]:>11.1f}"
                f"{agg[parallel] / agg[1]:>10.2f}{wall:>8.1f}{first.prompt_tokens:>12}{first.evaluated:>11}"
                f"{pp[parallel]:>10.0f}{kv / 2**20:>9.0f}"
            )
        if rounds > 1:
            each_agg = {p: [round(r.agg_tps) for r in rows[p]] for p in sizes}
            each_raw = {p: [round(x) for x in raw_rows[p]] for p in sizes}
            print(f"pipeline agg tok/s of each round: {each_agg}")
            print(f"raw decode tok/s of each round: {each_raw}")
        pp_ratio = pp[max(sizes)] / raw_pp
        print(
            f"prompt processing: raw {raw_pp:.0f} tok/s (one prompt, one llama_decode); pipeline "
            f"{pp[max(sizes)]:.0f} tok/s at {max(sizes)} ({pp_ratio:.2f} of raw; evaluated tokens after "
            "prefix sharing / time in prompt decoding)"
        )
        ratios = {
            "pipeline/raw": round(ratio, 3),
            "batched16/single": round(agg[16] / agg[1], 3),
            "batched16-decode/raw16": round(dec[16] / raw_at[16], 3),
            "pp pipeline/raw": round(pp_ratio, 3),
            "decode/raw by size": {str(p): round(dec[p] / raw_at[p], 3) for p in sizes},
        }
        report.put("ratios", ratios)

        if args.auto:
            auto_jobs = jobs[: 2 * max(sizes)]
            stream_tokens = sampling_pipe.stream_tokens(auto_jobs, restyle=True)
            choice = choose_parallel(backend, None, len(auto_jobs), stream_tokens)
            print()
            print(choice.describe())
            result = batched(sampling_pipe, auto_jobs[: choice.n], choice.n, restyle=True)
            gain = result.agg_tps / agg[1]
            print(
                f"auto run (generate + restyle, {choice.n} conversations): {result.agg_tps:.1f} tok/s "
                f"aggregate ({gain:.2f} x one stream), decode {result.decode_tps:.1f} tok/s, "
                f"{result.mean_batch:.1f} sequences per step, wall {result.wall_s:.1f} s"
            )
            report.put(
                "auto",
                {
                    "parallel": choice.n,
                    "reason": choice.reason,
                    "kv_mib": round((choice.memory_bytes or 0) / 2**20),
                    **{k: round(v, 3) for k, v in asdict(result).items()},
                    "agg/single": round(gain, 3),
                },
            )

        print()
        print(
            "pp = prompt processing; TTFT = time to first token; 'evaluated' = prompt tokens decoded "
            "after prefix sharing;"
        )
        print(
            "batched runs use the experiment's sampling (temperature, top-k/p, repeat penalty), "
            "end-of-sequence ignored; raw/pipe decode = decode steps only; agg includes prompts and storing."
        )
        print(f"load average at the end: {load()}")
        report.put("load_after", load())
        print(
            f"pipeline/raw={ratio:.2f} batched16/single={agg[16] / agg[1]:.2f} "
            f"batched16-decode/raw16={dec[16] / raw_at[16]:.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
