"""ConvoGen at scale: listing, stats, export and the app's idle cost on an experiment of N pairs.

    python benchmarks/scale.py [--n 100000] [--keep DIR] [--idle-s 20] [--skip app,hf]

Generates an experiment of N conversation + twin pairs (8 turns each, 5,000 seeds, the sample's six
personas; random words from benchmarks/shape_vocab.txt, so near-duplicates are rare as in real
runs), then prints each figure of issue 23's table, every command in its own process as a user
runs it:

- first listing (``convogen show EXPT``, no index), listing again, after one new file;
- ``convogen stats EXPT --json``;
- ``convogen export --format jsonl`` and ``--format hf``: seconds and peak resident memory (the
  child's ``ru_maxrss``, read through a fresh measuring process so earlier children do not count);
- the app idle on Review (F6) and on Stats (F8): CPU seconds per wall second over ``--idle-s``,
  after it settled; and Review's filter, milliseconds per keystroke (the filter's own work).

Generating the files is fixture work, done as fast as possible, and not measured. The machine's
load average is printed beside the figures: on a shared machine they vary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = REPO  # the checkout whose convogen_tui is measured (--code: an older one, for "today")
SEEDS = 5000
TURNS = 8
MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "wall = time.perf_counter() - t\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(wall, usage.ru_maxrss, code, usage.ru_utime + usage.ru_stime)\n"
)


def vocabulary() -> list[str]:
    lines = (REPO / "benchmarks" / "shape_vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w[1:] for w in lines if w.startswith("▁") and len(w) > 3][:6000]


def make_experiment(root: Path, n: int, seed: int = 23) -> Path:
    """root/datasets/inst-templates/scale with N pairs; returns the experiment folder."""
    datasets = root / "datasets"
    sample = REPO / "datasets" / "inst-templates" / "sample"
    skip = shutil.ignore_patterns("conversations", "restyled-conversations", "trash", ".convogen")
    shutil.copytree(sample, datasets / "inst-templates" / "sample", ignore=skip)
    expt = datasets / "inst-templates" / "scale"
    shutil.copytree(sample, expt, ignore=skip)
    rng = random.Random(seed)
    words = vocabulary()
    seeds = [(str(10**17 + i), " ".join(rng.choices(words, k=18))) for i in range(SEEDS)]
    (expt / "seeds.tsv").write_text(
        "tweet_id\ttweet\n" + "".join(f"{i}\t{t}\n" for i, t in seeds), encoding="utf-8"
    )
    setup = json.loads((expt / "expt-setup.json").read_text())
    setup["seeds"] = "seeds.tsv"
    (expt / "expt-setup.json").write_text(json.dumps(setup, indent=2) + "\n")
    personas = [
        (profile["motivation"], d["name"])
        for profile in setup["user_profiles"]
        for d in profile["dispositions"]
    ]
    (expt / "conversations").mkdir()
    (expt / "restyled-conversations").mkdir()
    start = time.time() - n * 30
    for i in range(n):
        write_pair(expt, rng, words, seeds[i % SEEDS], personas[(i // SEEDS) % len(personas)], start + i * 30)
    return expt


def write_pair(expt: Path, rng: random.Random, words: list[str], seed, persona, created: float) -> str:  # type: ignore[no-untyped-def]
    def message() -> str:
        return " ".join(rng.choices(words, k=rng.randint(12, 30))).capitalize() + "."

    conv = "\n".join(f"SocBot: {message()}\nUser: {message()}" for _ in range(TURNS))
    restyled = "\n".join(f"SocBot: {message()}\nUser: {message()}" for _ in range(TURNS))
    name = f"{uuid.UUID(int=rng.getrandbits(128))}.json"
    model = {"name": "SmolLM2-135M-Instruct", "fingerprint": "bench", "backend": "llama.cpp"}
    provenance = {
        "created_at": created,
        "model": model,
        "sampling": {"temperature": 0.7},
        "completion_tokens": 400,
        "elapsed_s": 20.0,
        "finish_reason": "stop",
    }
    record = {
        "tweet_id": seed[0],
        "disposition": persona[1],
        "motivation": persona[0],
        "tweet": seed[1],
        "conv": conv,
        "persona": {"motivation": persona[0], "disposition": persona[1]},
        "provenance": provenance,
    }
    twin = {
        "tweet_id": seed[0],
        "restyled_conv": restyled,
        "provenance": {**provenance, "created_at": created + 10, "completion_tokens": 300},
    }
    (expt / "conversations" / name).write_text(json.dumps(record))
    (expt / "restyled-conversations" / name).write_text(json.dumps(twin))
    return name


def convogen(*args: str) -> list[str]:
    return [sys.executable, "-m", "convogen_tui", *args]


def timed(command: list[str]) -> tuple[float, float, float]:
    """(seconds, peak resident MiB, CPU seconds of it and its children) of one command, measured by
    a fresh process around it. On a shared, busy machine the CPU time says more than the wall time."""
    env = {**os.environ, "PYTHONPATH": f"{CODE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(  # cwd: python -m puts it first on sys.path, before PYTHONPATH
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=CODE,
    ).stdout.split()
    if out[2] != "0":
        raise SystemExit(f"failed ({out[2]}): {' '.join(command)}")
    return float(out[0]), int(out[1]) / 1024, float(out[3])


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def report(what: str, seconds: float, rss: float, cpu: float) -> None:
    print(f"{what:38} {seconds:8.2f} s  cpu {cpu:7.2f} s  peak {rss:6,.0f} MiB   ({load()})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build the experiment here and keep it")
    parser.add_argument("--idle-s", type=float, default=20.0, help="seconds of idle CPU measured per screen")
    parser.add_argument("--skip", default="", help="comma-separated: cli (but the first listing), hf, app")
    parser.add_argument("--code", type=Path, default=REPO, help="measure the convogen_tui in this checkout")
    args = parser.parse_args()
    global CODE
    CODE = args.code.resolve()
    skip = set(filter(None, args.skip.split(",")))
    # bytecode as an installed package has it: with PYTHONDONTWRITEBYTECODE set (as on these
    # machines) a checkout's edited modules would be compiled again by every command measured
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(CODE / "convogen_tui")], check=True)
    root = args.keep or Path(tempfile.mkdtemp(prefix="convogen-scale-"))
    started = time.perf_counter()
    expt = make_experiment(root, args.n)
    datasets = root / "datasets"
    print(f"{args.n:,} pairs generated in {time.perf_counter() - started:.0f} s under {root} ({load()})")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, measuring {CODE}", flush=True)
    base = ("--root", str(datasets))
    report("first listing (show, no index)", *timed(convogen("show", "scale", *base)))
    if "cli" not in skip:
        cli_figures(expt, datasets, skip)
    if "app" not in skip:
        app_figures(datasets, args.idle_s)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


def cli_figures(expt: Path, datasets: Path, skip: set[str]) -> None:
    """Listing again, after one new file, stats, the exports."""
    base = ("--root", str(datasets))
    report("listing again, nothing changed", *timed(convogen("show", "scale", *base)))
    rng = random.Random(1)
    write_pair(expt, rng, vocabulary(), (str(10**17), "new"), ("distrust", "sarcastic"), time.time())
    report("listing after one new file", *timed(convogen("show", "scale", *base)))
    report("stats --json", *timed(convogen("stats", "scale", "--json", *base)))
    out = Path(tempfile.mkdtemp(prefix="convogen-export-"))
    report(
        "export --format jsonl",
        *timed(convogen("export", "scale", "--format", "jsonl", "-o", str(out / "a.jsonl"), *base)),
    )
    if "hf" not in skip:
        report(
            "export --format hf",
            *timed(convogen("export", "scale", "--format", "hf", "-o", str(out / "hf"), *base)),
        )
    shutil.rmtree(out, ignore_errors=True)


def app_figures(datasets: Path, idle_s: float) -> None:
    """The app in its own process (benchmarks/scale_app.py): idle CPU on Review and Stats, filter ms."""
    env = {**os.environ, "PYTHONPATH": f"{CODE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    script = REPO / "benchmarks" / "scale_app.py"
    result = subprocess.run(
        [sys.executable, str(script), str(datasets), str(idle_s)],
        capture_output=True,
        text=True,
        env=env,
        cwd=CODE,
    )
    if result.returncode:
        print(result.stdout + result.stderr[-3000:])
        raise SystemExit("the app benchmark failed")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{'app: Review ready after':42} {figures['review_ready_s']:8.2f} s   ({load()})")
    print(
        f"{'app idle on Review':42} {figures['review_idle_cpu'] * 100:8.1f} % of a core over {idle_s:.0f} s"
    )
    ms, worst = figures["filter_ms"], figures["filter_ms_max"]
    print(f"{'Review filter, per keystroke':42} {ms:8.1f} ms (median; max {worst:.1f})")
    print(f"{'app: Stats drawn after':42} {figures['stats_ready_s']:8.2f} s")
    stats_idle = figures["stats_idle_cpu"] * 100
    print(f"{'app idle on Stats':42} {stats_idle:8.1f} % of a core over {idle_s:.0f} s   ({load()})")


if __name__ == "__main__":
    main()
