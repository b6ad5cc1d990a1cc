"""Jobs and runs: (seed, persona) jobs, resume, prompt preview, and the event stream of a run.

``Pipeline.run`` is a generator of events (JobStarted, PromptProgress, TokenChunk, JobFinished,
JobSkipped, JobFailed, RunFinished): the CLI turns them into a progress bar, the TUI into Textual
messages, a notebook can simply iterate. Files are written only when a pass completes, so a cancelled
or skipped job leaves no file.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from convogen_tui import __version__
from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.judging.judge import (
    FAILED,
    JUDGE_SYSTEM,
    AnswerError,
    JudgePass,
    PairText,
    judge_settings,
    load_judge,
    parse_answer,
)
from convogen_tui.core.keeping.records import (
    SCHEMA_VERSION,
    ConversationRecord,
    JudgmentProvenance,
    JudgmentRecord,
    ModelProvenance,
    PersonaNames,
    Provenance,
    RestyledRecord,
    TemplateRef,
)
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.backend import (
    Backend,
    Constraint,
    GenerationStats,
    Request,
    StreamChunk,
    StreamDone,
    StreamFailed,
    StreamPrompt,
    StreamStarted,
    run_sequential,
)
from convogen_tui.core.making.experiment import Experiment, ExperimentSetup, Persona, SamplingSettings
from convogen_tui.core.making.personas import PersonaMode, draw_persona, filter_personas
from convogen_tui.core.making.prompts import (
    GEN_CUE,
    GEN_SYSTEM,
    RESTYLE_CUE,
    RESTYLE_SYSTEM,
    PromptParts,
    choose_format,
    wrap_prompt,
)
from convogen_tui.core.making.seeds import Seed
from convogen_tui.core.making.templates import Template, load_template

Phase = Literal["generate", "restyle", "judge"]
RESTYLE_SLACK = 32  # tokens: a conversation tokenized again inside the restyle prompt may grow a little


@dataclass(frozen=True)
class Job:
    """One conversation to write: a seed, a persona, and the random seed that makes it repeatable."""

    seed: Seed
    persona: Persona
    random_seed: int
    conv_id: str | None = None  # set for restyle-only jobs on an existing conversation
    conv: str | None = None
    restyled: str | None = None  # the twin's thread, for judge jobs
    kind: Phase | None = None  # the first pass to run; None: generate, or restyle when conv_id is set

    @property
    def first_phase(self) -> Phase:
        return self.kind or ("restyle" if self.conv_id else "generate")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.seed.tweet_id, self.persona.motivation, self.persona.disposition)

    @property
    def label(self) -> str:
        return f"{self.seed.tweet_id} / {self.persona.label}"


@dataclass
class Plan:
    jobs: list[Job]
    already_done: int = 0
    personas: int = 0


@dataclass
class JudgePlan:
    """The judge jobs of a run and what was left out, so the CLI can say why."""

    jobs: list[Job] = field(default_factory=list)
    judged: int = 0  # pairs with a current judgment (not redone without --again)
    stale: int = 0  # judged under another judge.txt or other criteria (marked; --again redoes them)
    not_restyled: int = 0  # conversations without a twin: nothing to judge yet
    problems: list[Problem] = field(default_factory=list)  # pairs that cannot be read


@dataclass(frozen=True)
class PromptPreview:
    text: str
    n_tokens: int
    n_ctx: int
    prompt_format: str
    estimated: bool = False  # the token count is a guess (a remote server without a tokenize route)


# events ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStarted:
    total: int
    model: str
    offload: str
    parallel: int = 1  # streams the run uses at most


@dataclass(frozen=True)
class JobStarted:
    job: Job
    index: int
    total: int
    phase: Phase
    prompt_tokens: int = 0


@dataclass(frozen=True)
class PromptProgress:
    """The backend is reading the prompt: ``done`` of ``total`` tokens (no text yet)."""

    job: Job
    phase: Phase
    done: int
    total: int


@dataclass(frozen=True)
class TokenChunk:
    job: Job
    phase: Phase
    text: str
    n_tokens: int
    elapsed_s: float


@dataclass(frozen=True)
class JobFinished:
    job: Job
    phase: Phase
    conv_id: str
    path: Path
    stats: GenerationStats


@dataclass(frozen=True)
class JobSkipped:
    """The user skipped this pass (:meth:`Skips.skip`): no file, and a skipped generation is not restyled."""

    job: Job
    phase: Phase


@dataclass(frozen=True)
class JobFailed:
    job: Job
    phase: Phase
    message: str


@dataclass
class RunFinished:
    conversations: int = 0
    restyled: int = 0
    failed: int = 0
    skipped: int = 0
    judged: int = 0  # judgments written (judge-failed ones included)
    judge_failed: int = 0  # judgments whose answer could not be used, even asked twice
    cancelled: bool = False
    completion_tokens: int = 0
    elapsed_s: float = 0.0
    paths: list[Path] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


Event = (
    RunStarted | JobStarted | PromptProgress | TokenChunk | JobFinished | JobSkipped | JobFailed | RunFinished
)


class Skips:
    """Skip jobs of a running run from another thread (the UI): that pass stops, the others go on.

    Jobs are named by their index in the run (``JobStarted.index``). A running pass is stopped
    through its request's own ``cancel``; a job not started yet is dropped when its turn comes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked: set[int] = set()
        self._live: dict[int, threading.Event] = {}

    def skip(self, index: int) -> None:
        with self._lock:
            self._asked.add(index)
            live = self._live.get(index)
        if live is not None:
            live.set()

    def asked(self, index: int) -> bool:
        with self._lock:
            return index in self._asked

    def started(self, index: int) -> threading.Event:
        """The cancel event of the pass of job ``index`` that starts now (set if already skipped)."""
        event = threading.Event()
        with self._lock:
            if index in self._asked:
                event.set()
            self._live[index] = event
        return event


def job_random_seed(base: int | None, *parts: str) -> int:
    """A per-job seed derived from the run's --seed, so each job repeats alone or in any order."""
    if base is None:
        return random.SystemRandom().randrange(2**31)
    digest = hashlib.sha256(":".join([str(base), *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Pipeline:
    """An experiment's templates and settings bound to a loaded backend and a store."""

    def __init__(
        self,
        experiment: Experiment,
        backend: Backend,
        store: ConversationStore | None = None,
        sampling: SamplingSettings | None = None,
    ) -> None:
        if experiment.setup is None or experiment.errors:
            problems = experiment.errors or [Problem(experiment.setup_file, "cannot be read")]
            raise ConvogenError(problems[0], problems[1:])
        self.experiment = experiment
        self.backend = backend
        self.store = store or ConversationStore(experiment.dir)
        self.sampling = sampling or experiment.sampling
        self.conv_template: Template
        self.restyle_template: Template
        self._judge: JudgePass | None = None
        self.reload_templates()

    # prompts -----------------------------------------------------------------------------
    def reload_templates(self) -> None:
        """Read the templates again (after an edit); the model stays loaded."""
        self.conv_template = load_template(self.experiment.conv_template_path, "conv-gen")
        self.restyle_template = load_template(self.experiment.restyle_template_path, "conv-restyle")
        self._judge = None  # judge.txt is read when a judge pass first needs it

    @property
    def judge_pass(self) -> JudgePass:
        """The experiment's judge (criteria and judge.txt), read on first use; ConvogenError if none."""
        if self._judge is None:
            self._judge = load_judge(self.experiment)
        return self._judge

    @property
    def _setup(self) -> ExperimentSetup:
        assert self.experiment.setup is not None  # checked in __init__
        return self.experiment.setup

    def _system_and_cue(self, phase: Phase) -> tuple[str | None, str]:
        settings = self._setup.generation if phase == "generate" else self._setup.restyle
        default_system = GEN_SYSTEM if phase == "generate" else RESTYLE_SYSTEM
        default_cue = GEN_CUE if phase == "generate" else RESTYLE_CUE
        system = default_system if settings.system is None else settings.system or None
        return system, settings.cue if settings.cue is not None else default_cue

    def prompt_format(self) -> str:
        return choose_format(self.backend.info.chat_format, self._setup.prompt_format)

    def _parts(self, phase: Phase, instruction: str) -> PromptParts:
        system, cue = self._system_and_cue(phase)
        return PromptParts(instruction, system, cue, self.prompt_format())

    def generation_parts(self, seed: Seed, persona: Persona, template: Template | None = None) -> PromptParts:
        template = template or self.conv_template
        instruction = template.render(
            disposition=persona.disposition_text, motivation=persona.motivation_text, tweet=seed.tweet
        )
        return self._parts("generate", instruction)

    def restyle_parts(self, tweet: str, conv: str, template: Template | None = None) -> PromptParts:
        template = template or self.restyle_template
        return self._parts("restyle", template.render(tweet=tweet, conv=conv))

    def judge_parts(
        self, job: Job, retry_reason: str | None = None, template: Template | None = None
    ) -> PromptParts:
        """The judge's prompt for a pair; the answer opens with the JSON object (no cue).

        ``template``: a judge.txt being edited (the Templates screen's preview) instead of the file's.
        """
        persona = job.persona
        pair = PairText(
            job.seed.tweet,
            persona.motivation_text,
            persona.disposition_text,
            job.conv or "",
            job.restyled or "",
        )
        judge = self.judge_pass if template is None else JudgePass(judge_settings(self.experiment), template)
        instruction = judge.instruction(pair, retry_reason)
        return PromptParts(instruction, JUDGE_SYSTEM, "", self.prompt_format())

    def _request_parts(
        self, job: Job, phase: Phase, retry_reason: str | None
    ) -> tuple[PromptParts, int, SamplingSettings, Constraint | None]:
        """What one pass sends: prompt parts, random seed, sampling and the output's constraint."""
        if phase == "generate":
            return self.generation_parts(job.seed, job.persona), job.random_seed, self.sampling, None
        if phase == "restyle":
            parts = self.restyle_parts(job.seed.tweet, job.conv or "")
            return parts, job_random_seed(job.random_seed, "restyle"), self.sampling, None
        judge = self.judge_pass
        seed = job_random_seed(job.random_seed, "judge", "again" if retry_reason else "")
        return self.judge_parts(job, retry_reason), seed, judge.sampling(self.sampling), judge.constraint

    def render(self, parts: PromptParts) -> str:
        """The prompt text the model sees (for chat messages, a readable stand-in)."""
        fmt = self.backend.info.chat_format
        return wrap_prompt(parts.instruction, parts.system, parts.cue, fmt, self._setup.prompt_format)

    def generation_prompt(self, seed: Seed, persona: Persona, template: Template | None = None) -> str:
        return self.render(self.generation_parts(seed, persona, template))

    def restyle_prompt(self, tweet: str, conv: str, template: Template | None = None) -> str:
        return self.render(self.restyle_parts(tweet, conv, template))

    def preview(self, prompt: str) -> PromptPreview:
        return PromptPreview(
            prompt,
            self.backend.count_tokens(prompt),
            self.backend.info.n_ctx,
            self.prompt_format(),
            self.backend.token_counts_estimated,
        )

    # planning ----------------------------------------------------------------------------
    def plan(
        self,
        seeds: Sequence[Seed],
        personas: PersonaMode = "random",
        limit: int | None = None,
        seed: int | None = None,
        again: bool = False,
        motivations: Sequence[str] | None = None,
        dispositions: Sequence[str] | None = None,
        draw_seed: int | None = None,
    ) -> Plan:
        """The jobs of a run, in seed order; jobs already on disk are skipped unless ``again``.

        ``limit`` counts new jobs: the first ``limit`` jobs that are not done yet, so each run with
        ``--limit N`` makes N new conversations (while undone jobs are left).
        In random mode a seed counts as done when any conversation exists for it.
        """
        grid = filter_personas(self.experiment.personas(), motivations, dispositions)
        if not grid:
            raise ConvogenError(
                Problem(self.experiment.setup_file, "no persona to run", hint="check user_profiles")
            )
        draw = draw_seed if draw_seed is not None else (seed or 0)
        candidates: list[tuple[Seed, Persona]] = []
        for s in seeds:
            if personas == "all":
                candidates += [(s, p) for p in grid]
            else:
                candidates.append((s, draw_persona(grid, s.tweet_id, draw)))
        done_keys = set() if again else self.store.done_keys()
        done_seeds = {k[0] for k in done_keys}
        jobs, skipped = [], 0
        for s, p in candidates:
            finished = (
                s.tweet_id in done_seeds
                if personas == "random"
                else (s.tweet_id, p.motivation, p.disposition) in done_keys
            )
            if finished:
                skipped += 1
                continue
            if limit is not None and len(jobs) >= limit:
                break
            rs = job_random_seed(seed, s.tweet_id, p.motivation, p.disposition)
            jobs.append(Job(s, p, rs))
        return Plan(jobs, skipped, len(grid))

    def restyle_jobs(self, seed: int | None = None) -> list[Job]:
        """Restyle-only jobs for conversations that have no twin yet (unreadable ones skipped)."""
        return self.restyle_plan(seed)[0]

    def restyle_plan(self, seed: int | None = None) -> tuple[list[Job], list[Problem]]:
        """Restyle-only jobs for conversations without a twin, and the files that cannot be read."""
        jobs: list[Job] = []
        problems: list[Problem] = []
        for conv_id in self.store.without_twin():
            try:
                record, _ = self.store.load(conv_id)
            except ConvogenError as exc:
                path = self.store.conversation_path(conv_id)
                problems.extend(exc.problems[:1] or [Problem(path, str(exc))])
                continue
            persona = Persona(
                record.persona.motivation if record.persona else "",
                record.persona.disposition if record.persona else "",
                record.motivation,
                record.disposition,
            )
            tweet = Seed(record.tweet_id, record.tweet)
            jobs.append(Job(tweet, persona, job_random_seed(seed, conv_id, "restyle"), conv_id, record.conv))
        return jobs, problems

    def judge_plan(self, again: bool = False, limit: int | None = None, seed: int | None = None) -> JudgePlan:
        """Judge jobs for restyled pairs without a judgment (every pair with ``again``), oldest first.

        The planner's judge kind: a pair judged under another template or other criteria is
        counted as stale, not redone, unless ``again``.
        """
        plan = JudgePlan()
        judge = self.judge_pass
        rows = sorted(self.store.list(), key=lambda r: r.created_at)
        for row in rows:
            if not row.restyled:
                plan.not_restyled += 1
                continue
            try:
                record, twin = self.store.load(row.id)
                judgment = self.store.load_judgment(row.id)
            except ConvogenError as exc:
                plan.problems.extend(
                    exc.problems[:1] or [Problem(self.store.conversation_path(row.id), str(exc))]
                )
                continue
            if judgment is not None and not again:
                current = judgment.provenance is not None and judge.is_current(
                    judgment.provenance.template.sha256, judgment.provenance.criteria_sha256
                )
                plan.judged += current
                plan.stale += not current
                continue
            if twin is None or (limit is not None and len(plan.jobs) >= limit):
                continue
            persona = Persona(row.motivation, row.disposition, record.motivation, record.disposition)
            rs = job_random_seed(seed, row.id, "judge")
            job = Job(
                Seed(record.tweet_id, record.tweet),
                persona,
                rs,
                row.id,
                record.conv,
                twin.restyled_conv,
                "judge",
            )
            plan.jobs.append(job)
        return plan

    # running -----------------------------------------------------------------------------
    def stream_tokens(self, jobs: Sequence[Job], restyle: bool = True, judge: bool = False) -> int | None:
        """The most tokens one request of a run over ``jobs`` holds: its prompt and max_tokens.

        What a backend with a KV cache sizes each stream for (``Backend.reserve``), instead of the
        whole n_ctx. Generation prompts are measured for the longest seed text of each persona;
        a restyle prompt holds the conversation, so it is measured empty and counted with
        max_tokens for the conversation (plus a little: text tokenized again can differ). None
        when the backend holds no KV cache of its own (a server), so nothing is tokenized.
        """
        if not jobs or self.backend.memory_for(1) is None:
            return None
        max_tokens = self.sampling.max_tokens
        count = self.backend.count_tokens
        longest = 0
        longest_tweet: dict[tuple[str, str], Job] = {}
        longest_conv: Job | None = None
        for job in jobs:
            if job.conv_id is None:
                key = (job.persona.motivation, job.persona.disposition)
                if key not in longest_tweet or len(job.seed.tweet) > len(longest_tweet[key].seed.tweet):
                    longest_tweet[key] = job
            elif longest_conv is None or len(job.conv or "") > len(longest_conv.conv or ""):
                longest_conv = job
        try:
            for job in longest_tweet.values():
                longest = max(longest, count(self.generation_prompt(job.seed, job.persona)) + max_tokens)
            if restyle and longest_tweet:
                tweet = max((j.seed.tweet for j in longest_tweet.values()), key=len)
                empty = count(self.restyle_prompt(tweet, ""))
                longest = max(longest, empty + max_tokens + RESTYLE_SLACK + max_tokens)
            if longest_conv is not None:
                prompt = count(self.restyle_prompt(longest_conv.seed.tweet, longest_conv.conv or ""))
                longest = max(longest, prompt + RESTYLE_SLACK + max_tokens)
            longest = max(longest, self._judge_stream_tokens(jobs, judge and restyle and bool(longest_tweet)))
        except ConvogenError:
            return None  # a template that does not render fails its jobs in the run itself
        return longest or None

    def _judge_stream_tokens(self, jobs: Sequence[Job], after_restyle: bool) -> int:
        """The longest judge request of a run: a judge job's pair as it is, or (judging what the
        run writes) an empty pair plus a conversation and a thread of max_tokens each."""
        pairs = [job for job in jobs if job.kind == "judge"]
        if not pairs and not after_restyle:
            return 0
        count, judge = self.backend.count_tokens, self.judge_pass
        longest = 0
        if pairs:
            job = max(pairs, key=lambda j: len(j.conv or "") + len(j.restyled or ""))
            longest = count(self.render(self.judge_parts(job))) + RESTYLE_SLACK + judge.max_tokens
        if after_restyle:
            job = max(jobs, key=lambda j: len(j.seed.tweet))
            empty = count(self.render(self.judge_parts(replace(job, conv="", restyled=""))))
            longest = max(longest, empty + 2 * (self.sampling.max_tokens + RESTYLE_SLACK) + judge.max_tokens)
        return longest

    def run(
        self,
        jobs: Sequence[Job],
        restyle: bool = True,
        cancel: threading.Event | None = None,
        parallel: int = 1,
        skips: Skips | None = None,
        judge: bool = False,
    ) -> Iterator[Event]:
        """Run jobs, yielding events; stops cleanly when ``cancel`` is set.

        Each job's restyle pass is queued ahead of new jobs as soon as its conversation is saved,
        so it joins the running batch at once (generation and restyling overlap; a run's tail is
        the last few restyles together, not one alone). With ``parallel`` > 1 a backend that
        offers ``run_many`` runs that many streams at once. The backend's KV cache is sized for
        the run first (:meth:`stream_tokens`); a run that cannot fit raises ModelError then.
        ``skips`` lets the caller skip single jobs while the others go on. With ``judge`` each
        restyled pair is judged as soon as its twin is saved (jobs of kind "judge" always are).
        """
        cancel = cancel or threading.Event()
        if judge or any(job.kind == "judge" for job in jobs):
            self.judge_pass  # noqa: B018  (a missing or broken judge.txt stops the run before it starts)
        self.backend.reserve(max(1, min(parallel, len(jobs))), self.stream_tokens(jobs, restyle, judge))
        summary = RunFinished()
        started = time.perf_counter()
        info = self.backend.info
        total = len(jobs)
        queue: deque[tuple[Job, Phase, int]] = deque((job, job.first_phase, i) for i, job in enumerate(jobs))
        retries: dict[int, str] = {}  # job index -> why its judge answer is asked for again
        active: dict[int, tuple[Job, Phase, int]] = {}
        own_cancel: dict[int, threading.Event] = {}
        lock = threading.Lock()
        keys = iter(range(1, 2**62))
        failed_early: list[JobFailed | JobSkipped] = []

        def next_request() -> Request | None:
            with lock:
                while queue and not cancel.is_set():
                    job, phase, index = queue.popleft()
                    if skips is not None and skips.asked(index):
                        failed_early.append(JobSkipped(job, phase))
                        continue
                    try:
                        parts, seed, sampling, constraint = self._request_parts(
                            job, phase, retries.get(index)
                        )
                        prompt = self.render(parts)
                    except ConvogenError as exc:
                        failed_early.append(JobFailed(job, phase, str(exc)))
                        continue
                    key = next(keys)
                    active[key] = (job, phase, index)
                    own = skips.started(index) if skips is not None else None
                    if own is not None:
                        own_cancel[key] = own
                    return Request(key, prompt, seed, sampling, parts, cancel=own, constraint=constraint)
                return None

        yield RunStarted(total, info.name, info.offload_summary, max(1, min(parallel, total)))
        if parallel > 1 or self.backend.always_run_many:
            stream = self.backend.run_many(next_request, cancel, parallel)
        else:
            stream = run_sequential(self.backend, next_request, cancel)
        try:
            for event in stream:
                while failed_early:
                    yield self._early(failed_early.pop(0), summary)
                job, phase, index = active[event.key]
                if isinstance(event, StreamStarted):
                    yield JobStarted(job, index, total, phase, event.prompt_tokens)
                elif isinstance(event, StreamPrompt):
                    yield PromptProgress(job, phase, event.done, event.total)
                elif isinstance(event, StreamChunk):
                    yield TokenChunk(job, phase, event.text, event.n_tokens, event.elapsed_s)
                elif isinstance(event, StreamFailed):
                    del active[event.key]
                    own_cancel.pop(event.key, None)
                    summary.failed += 1
                    yield JobFailed(job, phase, event.message)
                elif isinstance(event, StreamDone):
                    del active[event.key]
                    own = own_cancel.pop(event.key, None)
                    summary.completion_tokens += event.stats.completion_tokens
                    if event.stats.finish_reason == "cancelled":
                        if own is not None and own.is_set() and not cancel.is_set():
                            summary.skipped += 1
                            yield JobSkipped(job, phase)
                        continue
                    if phase == "judge":
                        judged = self._judged(job, index, event.text, event.stats, summary, retries)
                        if judged is None:  # asked once more, with what was wrong
                            with lock:
                                queue.appendleft((job, "judge", index))
                        else:
                            yield judged
                        continue
                    finished = self._save(job, phase, event.text.strip(), event.stats, summary)
                    yield finished
                    if isinstance(finished, JobFailed):
                        continue
                    follow = self._next_pass(job, phase, finished.conv_id, event.text.strip(), restyle, judge)
                    if follow is not None:
                        with lock:
                            queue.appendleft((follow[0], follow[1], index))
        finally:
            if isinstance(stream, Generator):
                stream.close()
        while failed_early:
            yield self._early(failed_early.pop(0), summary)
        summary.cancelled = cancel.is_set()
        summary.elapsed_s = time.perf_counter() - started
        yield summary

    @staticmethod
    def _next_pass(
        job: Job, phase: Phase, conv_id: str, text: str, restyle: bool, judge: bool
    ) -> tuple[Job, Phase] | None:
        """The pass that follows a saved one: a conversation's restyle, a restyled pair's judgment."""
        if phase == "generate" and restyle:
            return replace(job, conv_id=conv_id, conv=text), "restyle"
        if phase == "restyle" and judge:
            return replace(job, conv_id=conv_id, restyled=text, kind="judge"), "judge"
        return None

    def _judged(
        self,
        job: Job,
        index: int,
        text: str,
        stats: GenerationStats,
        summary: RunFinished,
        retries: dict[int, str],
    ) -> JobFinished | JobFailed | None:
        """A judge answer checked and saved (``judge-failed`` with the reason when unusable).

        A backend that cannot constrain the answer gets one more try (None: queue it again).
        """
        judge = self.judge_pass
        attempts = 2 if index in retries else 1
        try:
            answer = parse_answer(text, judge.settings)
        except AnswerError as exc:
            if attempts == 1 and not self.backend.constraint_support():
                retries[index] = str(exc)
                return None
            fields = {
                "scores": {},
                "rationale": "",
                "verdict": FAILED,
                "reason": str(exc),
                "answer": text[:500],
            }
        else:
            fields = {"scores": answer.scores, "rationale": answer.rationale}
        record = JudgmentRecord(**fields, provenance=self._judgment_provenance(job, stats, attempts))
        assert job.conv_id is not None
        path = self.store.save_judgment(job.conv_id, record)
        if path is None:
            summary.failed += 1
            gone = f"conversation {job.conv_id} was deleted for good while it was judged; judgment not kept"
            return JobFailed(job, "judge", gone)
        summary.judged += 1
        summary.judge_failed += record.failed
        return JobFinished(job, "judge", job.conv_id, path, stats)

    @staticmethod
    def _early(event: JobFailed | JobSkipped, summary: RunFinished) -> JobFailed | JobSkipped:
        """A job that ended before reaching the backend (a prompt error, or skipped while queued)."""
        if isinstance(event, JobSkipped):
            summary.skipped += 1
        else:
            summary.failed += 1
        return event

    def _save(
        self, job: Job, phase: Phase, text: str, stats: GenerationStats, summary: RunFinished
    ) -> JobFinished | JobFailed:
        """Write a finished pass; a StorageError (disk full, read-only...) stops the run."""
        if phase == "generate":
            conv_id = self.store.save_conversation(self._conversation_record(job, text, stats))
            path = self.store.conversation_path(conv_id)
            summary.conversations += 1
            summary.paths.append(path)
        else:
            assert job.conv_id is not None
            conv_id = job.conv_id
            saved = self.store.save_restyled(conv_id, self._restyled_record(job, text, stats))
            if saved is None:
                summary.failed += 1
                gone = f"conversation {conv_id} was deleted for good during its restyle; twin not kept"
                return JobFailed(job, phase, gone)
            path = saved
            summary.restyled += 1
        return JobFinished(job, phase, conv_id, path, stats)

    # records -----------------------------------------------------------------------------
    def _model_provenance(self, stats: GenerationStats) -> ModelProvenance:
        info = self.backend.info
        model = ModelProvenance(
            name=info.name,
            file=info.path.name if info.path else None,
            path=str(info.path) if info.path else None,
            size_bytes=info.size_bytes,
            fingerprint=info.fingerprint,
            architecture=info.architecture,
            backend=info.backend,
            gpu_layers=info.gpu_layers,
            n_ctx=info.n_ctx,
        )
        if stats.endpoint:
            model.endpoint = stats.endpoint
        return model

    def _judgment_provenance(self, job: Job, stats: GenerationStats, attempts: int) -> JudgmentProvenance:
        judge = self.judge_pass
        template = judge.template
        return JudgmentProvenance(
            created_at=time.time(),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            convogen_version=__version__,
            model=self._model_provenance(stats),
            template=TemplateRef(file=template.path.name if template.path else None, sha256=template.sha256),
            criteria_sha256=judge.settings.sha256,
            sampling=judge.sampling(self.sampling).model_dump(),
            random_seed=job_random_seed(job.random_seed, "judge", "again" if attempts > 1 else ""),
            constraint=self.backend.constraint_support(),
            attempts=attempts,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            elapsed_s=round(stats.elapsed_s, 3),
        )

    def _provenance(self, job: Job, stats: GenerationStats, phase: Phase, template: Template) -> Provenance:
        system, cue = self._system_and_cue(phase)
        model = self._model_provenance(stats)
        return Provenance(
            schema_version=SCHEMA_VERSION,
            created_at=time.time(),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            convogen_version=__version__,
            phase=phase,
            model=model,
            sampling=self.sampling.model_dump(),
            random_seed=(
                job.random_seed if phase == "generate" else job_random_seed(job.random_seed, "restyle")
            ),
            prompt_format=stats.prompt_format or self.prompt_format(),
            system=system,
            cue=cue,
            template=TemplateRef(file=template.path.name if template.path else None, sha256=template.sha256),
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            finish_reason=stats.finish_reason,
            elapsed_s=round(stats.elapsed_s, 3),
            time_to_first_token_s=round(stats.first_token_s or 0.0, 3),
            tokens_per_second=round(stats.tokens_per_second, 2),
        )

    def _conversation_record(self, job: Job, conv: str, stats: GenerationStats) -> ConversationRecord:
        return ConversationRecord(
            tweet_id=job.seed.tweet_id,
            disposition=job.persona.disposition_text,
            motivation=job.persona.motivation_text,
            tweet=job.seed.tweet,
            conv=conv,
            persona=PersonaNames(motivation=job.persona.motivation, disposition=job.persona.disposition),
            provenance=self._provenance(job, stats, "generate", self.conv_template),
        )

    def _restyled_record(self, job: Job, restyled: str, stats: GenerationStats) -> RestyledRecord:
        return RestyledRecord(
            tweet_id=job.seed.tweet_id,
            restyled_conv=restyled,
            provenance=self._provenance(job, stats, "restyle", self.restyle_template),
        )
