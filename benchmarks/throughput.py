"""Throughput of ConvoGen on llama.cpp: raw decode, the pipeline alone, and batched conversations.

    python benchmarks/throughput.py [--quick] [--model PATH] [--repeat N]

In one process and one run, on the embedded model unless --model names a GGUF:
1. raw: llama.cpp's low-level API, one sequence, greedy, a fixed number of tokens (end-of-sequence
   ignored), no text decoding: the ceiling for one stream;
2. pipeline: one conversation through ConvoGen (template, prompt, our decode loop, events, store)
   with the same prompt, sampling and token count;
3. batched: the pipeline with 1, 2, 4, 8, 16 conversations at once (continuous batching, shared
   prefix, the experiment's own sampling), aggregate tok/s = generated tokens / wall time, prompts
   included.
Prompt-processing tok/s and time to first token are reported for 1 and 2. The sample experiment is
copied to a temporary folder; nothing is written to the repository. Single-stream figures are
medians of --repeat interleaved runs (other load on the machine moves them). The last line is
``pipeline/raw=<decode tok/s ratio> batched16/single=<aggregate tok/s ratio>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convogen_tui.core.check import seeds_for  # noqa: E402
from convogen_tui.core.experiment import load_experiment  # noqa: E402
from convogen_tui.core.pipeline import Job, JobFinished, Pipeline, RunFinished, TokenChunk  # noqa: E402
from convogen_tui.llm.embedded import embedded_model_path  # noqa: E402
from convogen_tui.llm.llama_cpp import LlamaCppBackend, load_llama  # noqa: E402

PARALLEL = (1, 2, 4, 8, 16)


@dataclass
class Single:
    prompt_tokens: int
    pp_tps: float  # prompt tokens / prompt time
    ttft_s: float  # start to first generated token
    decode_tps: float  # tokens after the first / time from first to last token
    e2e_tps: float  # generated tokens / whole call


class RawDecoder:
    """The lightest loop llama.cpp allows from Python: one-token batches, C greedy sampler.

    Its context is made once and reused (as the pipeline's is), with the pipeline's flash-attention
    setting, so only the loop around llama_decode differs between the two.
    """

    def __init__(self, backend: LlamaCppBackend) -> None:
        import llama_cpp

        self.backend = backend
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = backend.info.n_ctx
        params.n_batch = params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = backend.n_threads
        params.no_perf = True
        if backend.engine.flash_attn is not None:
            params.flash_attn_type = int(backend.engine.flash_attn)
        self.ctx = llama_cpp.llama_init_from_model(backend.model.model, params)
        self.batch = llama_cpp.llama_batch_init(512, 0, 1)
        self.sampler = llama_cpp.llama_sampler_init_greedy()

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_free(self.sampler)
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)

    def run(self, prompt: str, n_tokens: int) -> Single:
        import llama_cpp

        ctx, batch, sampler = self.ctx, self.batch, self.sampler
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), False)
        start = time.perf_counter()
        tokens = self.backend.tokenize(prompt)
        n = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == n - 1
        batch.n_tokens = n
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("prompt decode failed")
        prompt_done = time.perf_counter()
        token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
        first = time.perf_counter()
        batch.n_tokens = 1
        batch.logits[0] = 1
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


def pipeline_single(pipeline: Pipeline, job: Job) -> Single:
    """One conversation through Pipeline.run, timed from the consumer's side of its events."""
    pipeline.backend.engine.forget()  # type: ignore[attr-defined]
    chunks: list[tuple[float, int]] = []
    stats = None
    start = time.perf_counter()
    for event in pipeline.run([job], restyle=False, parallel=1):
        if isinstance(event, TokenChunk):
            chunks.append((time.perf_counter(), event.n_tokens))
        elif isinstance(event, JobFinished):
            stats = event.stats
    end = time.perf_counter()
    assert stats is not None and chunks, "the pipeline produced nothing"
    (t_first, n_first), (t_last, n_last) = chunks[0], chunks[-1]
    return Single(
        stats.prompt_tokens,
        stats.prompt_tokens / (stats.first_token_s or 1e-9),
        t_first - start,
        (n_last - n_first) / (t_last - t_first),
        stats.completion_tokens / (end - start),
    )


def batched(pipeline: Pipeline, jobs: list[Job], parallel: int) -> tuple[float, int, int, float]:
    """Aggregate tok/s of ``jobs`` run ``parallel`` at a time; also prompt tokens (total, evaluated)."""
    engine = pipeline.backend.engine  # type: ignore[attr-defined]
    engine.ensure_context(parallel)
    engine.forget()
    before = engine.prompt_tokens_evaluated
    start = time.perf_counter()
    prompt_tokens = 0
    summary = None
    for event in pipeline.run(jobs, restyle=False, cancel=threading.Event(), parallel=parallel):
        if isinstance(event, JobFinished):
            prompt_tokens += event.stats.prompt_tokens
        elif isinstance(event, RunFinished):
            summary = event
    elapsed = time.perf_counter() - start
    assert summary is not None and summary.conversations == len(jobs)
    return (
        summary.completion_tokens / elapsed,
        prompt_tokens,
        engine.prompt_tokens_evaluated - before,
        elapsed,
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
    return f"{model}, {os.cpu_count()} logical CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GGUF file (default: the embedded SmolLM2-135M)")
    parser.add_argument("--quick", action="store_true", help="small counts: under a minute on 2 CPU cores")
    parser.add_argument("--tokens", type=int, help="tokens per conversation (default 192, --quick 128)")
    parser.add_argument("--repeat", type=int, help="single-stream repeats (default 5, --quick 3)")
    parser.add_argument("--rounds", type=int, help="rounds of batched runs (default 3, --quick 1)")
    parser.add_argument(
        "--jobs-per-slot", type=int, help="conversations per slot in batched runs (default 2, --quick 1)"
    )
    parser.add_argument("--n-gpu-layers", type=int, default=None, help="layers to offload (default all)")
    args = parser.parse_args(argv)
    tokens = args.tokens or (128 if args.quick else 192)
    repeat = args.repeat or (3 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    per_slot = args.jobs_per_slot or (1 if args.quick else 2)

    model_path = Path(args.model) if args.model else embedded_model_path()
    t_load = time.perf_counter()
    backend = load_llama(model_path, n_ctx=1024, n_gpu_layers=args.n_gpu_layers)
    t_load = time.perf_counter() - t_load
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
        jobs = Pipeline(experiment, backend).plan(seeds, personas="all", seed=1).jobs
        backend.ignore_eos = True  # every run generates exactly `tokens` tokens

        print(f"machine: {machine()}")
        print(
            f"model: {backend.info.name} ({model_path.name}, {backend.info.offload_summary}); "
            f"threads {backend.n_threads}; loaded in {t_load:.1f} s"
        )
        print(
            f"tokens per conversation: {tokens}; single-stream repeats: {repeat}; "
            f"batched: {per_slot} conversation(s) per slot, {rounds} round(s)"
        )

        pipe = Pipeline(experiment, backend, sampling=greedy)
        prompt = pipe.generation_prompt(jobs[0].seed, jobs[0].persona)
        raw = RawDecoder(backend)
        raw.run(prompt, 8)  # warm both up: first-touch page faults are not decode speed
        warm = greedy.model_copy(update={"max_tokens": 8})
        pipeline_single(Pipeline(experiment, backend, sampling=warm), jobs[0])
        raws, pipes = [], []
        for _ in range(repeat):  # interleaved, so drifting load hits both alike
            raws.append(raw.run(prompt, tokens))
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
        print(
            f"decode tok/s of each run: raw {[round(r.decode_tps) for r in raws]}, "
            f"pipeline {[round(r.decode_tps) for r in pipes]}"
        )

        print()
        print(
            f"{'batched pipeline':<18}{'jobs':>6}{'agg tok/s':>11}{'x single':>10}{'wall s':>9}"
            f"{'prompt tok':>12}{'evaluated':>11}{'KV MiB':>9}"
        )
        sampling_pipe = Pipeline(experiment, backend, sampling=sampled)
        sizes = {p: (jobs * (1 + p * per_slot // len(jobs)))[: p * per_slot] for p in PARALLEL}
        rows: dict[int, list[tuple[float, int, int, float]]] = {p: [] for p in PARALLEL}
        for _ in range(rounds):  # every size in each round, so drifting load hits all alike
            for parallel in PARALLEL:
                rows[parallel].append(batched(sampling_pipe, sizes[parallel], parallel))
        results = {p: statistics.median(r[0] for r in rows[p]) for p in PARALLEL}
        for parallel in PARALLEL:
            agg = results[parallel]
            _, prompt_tokens, evaluated, _ = rows[parallel][0]
            wall = statistics.median(r[3] for r in rows[parallel])
            print(
                f"{'parallel ' + str(parallel):<18}{len(sizes[parallel]):>6}{agg:>11.1f}"
                f"{agg / results[1]:>10.2f}{wall:>9.1f}{prompt_tokens:>12}{evaluated:>11}"
                f"{backend.kv_bytes(parallel) / 2**20:>9.0f}"
            )
        if rounds > 1:
            each = {p: [round(r[0]) for r in rows[p]] for p in PARALLEL}
            print(f"agg tok/s of each round: {each}")
        print()
        print(
            "pp = prompt processing; TTFT = time to first token; 'evaluated' = prompt tokens decoded "
            "after prefix sharing;"
        )
        print(
            "batched runs use the experiment's sampling (temperature, top-k/p, repeat penalty), "
            "end-of-sequence ignored; agg tok/s includes prompt processing and storing."
        )
        print(f"pipeline/raw={ratio:.2f} batched16/single={results[16] / results[1]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
