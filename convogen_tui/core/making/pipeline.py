"""Jobs and runs: (seed, persona) jobs, resume, prompt preview, and the event stream of a run.

``Pipeline.run`` is a generator of events (JobStarted, PromptProgress, TokenChunk, JobFinished,
JobSkipped, JobFailed, RunFinished): the CLI turns them into a progress bar, the TUI into Textual
messages, a notebook can simply iterate. Files are written only when a pass completes, so a cancelled
or skipped job leaves no file.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

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
    Phase,
    Provenance,
    RestyledRecord,
    TemplateRef,
)
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.keeping.versions import VersionKeeper
from convogen_tui.core.making.backend import (
    Backend,
    Constraint,
    GenerationStats,
    Request,
    StreamChunk,
    StreamDone,
    StreamEvent,
    StreamFailed,
    StreamPrompt,
    StreamStarted,
    run_sequential,
)
from convogen_tui.core.making.experiment import Experiment, ExperimentSetup, Persona, SamplingSettings
from convogen_tui.core.making.grammar import dialog_shape, restyle_constraint
from convogen_tui.core.making.personas import PersonaMode
from convogen_tui.core.making.planner import Job, PlanRequest, job_random_seed
from convogen_tui.core.making.planner import Plan as Plan
from convogen_tui.core.making.planner import plan as plan_jobs
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

RESTYLE_SLACK = 32  # tokens: a conversation tokenized again inside the restyle prompt may grow a little


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
    passes: int = 0  # passes the run plans (``Job.runs``); 0: one a job
    max_tokens: int = 0  # per pass
    restyle: bool = True  # generations get their restyle pass


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


class Pipeline:
    """An experiment's templates and settings bound to a loaded backend and a store."""

    def __init__(
        self,
        experiment: Experiment,
        backend: Backend,
        store: ConversationStore | None = None,
        sampling: SamplingSettings | None = None,
        constrain: bool | None = None,
    ) -> None:
        if experiment.setup is None or experiment.errors:
            problems = experiment.errors or [Problem(experiment.setup_file, "cannot be read")]
            raise ConvogenError(problems[0], problems[1:])
        self.experiment = experiment
        self.backend = backend
        self.store = store or ConversationStore(experiment.dir)
        self.sampling = sampling or experiment.sampling
        self.versions = VersionKeeper(experiment, self.store.list)
        # None: as the setup says ("constrain", default true); False: --no-constrain
        self.constrain = experiment.setup.constrain if constrain is None else constrain
        self.conv_template: Template
        self.restyle_template: Template
        self._judge: JudgePass | None = None
        self.reload_templates()

    # prompts -----------------------------------------------------------------------------
    def reload_templates(self) -> None:
        """Read the templates again (after an edit); the model stays loaded."""
        self.conv_template = load_template(self.experiment.conv_template_path, "conv-gen")
        self.restyle_template = load_template(self.experiment.restyle_template_path, "conv-restyle")
        self.quality = self._setup.quality.resolve(self.conv_template.text, self.restyle_template.text)
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

    # constrained output (core/making/grammar.py) ------------------------------------------
    @property
    def constrained(self) -> bool:
        """Requests carry a grammar: the setup or the CLI wants it, the backend enforces it, and
        max_tokens leaves room for the whole dialog (a grammar that cannot close is no guarantee)."""
        return self.constrain and self.backend.constraint_support() == "grammar" and self._too_small() is None

    def _too_small(self) -> ConvogenError | None:
        """Why max_tokens cannot hold a constrained dialog, or None when it can."""
        try:
            dialog_shape(self.quality, self.sampling.max_tokens)
        except ConvogenError as exc:
            return exc
        return None

    def constraint_line(self) -> str:
        """One line for the run's status: the grammar in force, or why there is none."""
        if not self.constrain:
            return 'unconstrained: "constrain" is false in the setup, or --no-constrain'
        if self.backend.constraint_support() != "grammar":
            return (
                "unconstrained: this backend enforces no grammar "
                "(llama.cpp, llama-server, llama_cpp.server and vLLM do)"
            )
        too_small = self._too_small()
        if too_small is not None:
            problem = too_small.problems[0] if too_small.problems else None
            hint = f" ({problem.hint})" if problem is not None and problem.hint else ""
            return f"unconstrained: {problem.message if problem else too_small}{hint}"
        return dialog_shape(self.quality, self.sampling.max_tokens).summary()

    def constraint(self, phase: Phase, conv: str = "") -> Constraint | None:
        """The grammar a pass is sampled under, or None (unconstrained, or a conversation with no
        dialog to keep in its restyle, or one too long for max_tokens to restyle under a grammar)."""
        if not self.constrained:
            return None
        if phase == "generate":
            return dialog_shape(self.quality, self.sampling.max_tokens).constraint()
        try:
            return restyle_constraint(conv, self.quality, self.sampling.max_tokens)
        except ConvogenError:
            return None

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
        judge: bool = False,
    ) -> Plan:
        """The jobs of a run, in seed order (``core.making.planner``; for notebooks and tests).

        ``limit`` counts new jobs, so each run with ``--limit N`` makes N new conversations.
        ``judge``: each job's pair is judged once it is restyled.
        """
        request = PlanRequest(seeds, personas, motivations, dispositions, limit, again)
        request = replace(request, base_seed=seed, draw_seed=draw_seed, judge=judge)
        return plan_jobs(request, self.experiment, self.store)

    def judge_plan(self, again: bool = False, limit: int | None = None, seed: int | None = None) -> Plan:
        """Judge jobs for restyled pairs without a judgment (``core.making.planner``'s judge kind)."""
        request = PlanRequest(kind="judge", again=again, limit=limit, base_seed=seed)
        return plan_jobs(request, self.experiment, self.store)

    def restyle_jobs(self, seed: int | None = None) -> list[Job]:
        """Restyle-only jobs for conversations that have no twin yet (unreadable ones skipped)."""
        return plan_jobs(PlanRequest(kind="restyle", base_seed=seed), self.experiment, self.store).jobs

    # running -----------------------------------------------------------------------------
    def stream_tokens(self, jobs: Sequence[Job], restyle: bool = True) -> int | None:
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
            longest = max(longest, self._judge_stream_tokens(jobs))
        except ConvogenError:
            return None  # a template that does not render fails its jobs in the run itself
        return longest or None

    def _judge_stream_tokens(self, jobs: Sequence[Job]) -> int:
        """The longest judge request of a run: a judge-only job's pair as it is, or (judging what
        the run writes) an empty pair plus a conversation and a thread of max_tokens each."""
        pairs = [job for job in jobs if job.kind == "judge"]
        written = [job for job in jobs if job.kind != "judge" and "judge" in job.passes]
        if not pairs and not written:
            return 0
        count, judge = self.backend.count_tokens, self.judge_pass
        longest = 0
        if pairs:
            job = max(pairs, key=lambda j: len(j.conv or "") + len(j.restyled or ""))
            longest = count(self.render(self.judge_parts(job))) + RESTYLE_SLACK + judge.max_tokens
        if written:
            job = max(written, key=lambda j: len(j.seed.tweet))
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
    ) -> Iterator[Event]:
        """Run jobs, yielding events; stops cleanly when ``cancel`` is set.

        Each job's restyle pass is queued ahead of new jobs as soon as its conversation is saved,
        so it joins the running batch at once (generation and restyling overlap; a run's tail is
        the last few restyles together, not one alone). With ``parallel`` > 1 a backend that
        offers ``run_many`` runs that many streams at once. The backend's KV cache is sized for
        the run first (:meth:`stream_tokens`); a run that cannot fit raises ModelError then.
        ``skips`` lets the caller skip single jobs while the others go on. A job with a judge
        pass has its pair judged as soon as its twin is saved.
        """
        cancel = cancel or threading.Event()
        judging = any("judge" in job.passes for job in jobs)
        if judging:
            self.judge_pass  # noqa: B018  (no criteria or a broken judge.txt stops the run before it starts)
        self.backend.reserve(max(1, min(parallel, len(jobs))), self.stream_tokens(jobs, restyle))
        summary = RunFinished()
        started = time.perf_counter()
        queue = _Queue(self, jobs, restyle, cancel, skips)
        info = self.backend.info
        passes = sum(len(job.runs(restyle)) for job in jobs)
        streams = max(1, min(parallel, len(jobs)))
        yield RunStarted(
            len(jobs), info.name, info.offload_summary, streams, passes, self.sampling.max_tokens, restyle
        )
        grammar = self.constrained or (judging and bool(self.backend.constraint_support()))
        if parallel > 1 or self.backend.always_run_many or grammar:  # stream() takes no grammar
            stream = self.backend.run_many(queue.next_request, cancel, parallel)
        else:
            stream = run_sequential(self.backend, queue.next_request, cancel)
        try:
            for event in stream:
                while queue.early:
                    yield self._early(queue.early.pop(0), summary)
                yield from self._translate(event, queue, summary, len(jobs))
        finally:
            if isinstance(stream, Generator):
                stream.close()
        while queue.early:
            yield self._early(queue.early.pop(0), summary)
        summary.cancelled = cancel.is_set()
        summary.elapsed_s = time.perf_counter() - started
        yield summary

    def _translate(
        self, event: StreamEvent, queue: _Queue, summary: RunFinished, total: int
    ) -> Iterator[Event]:
        """A backend's stream event as the run's events; a finished pass is saved, its next queued."""
        job, phase, index = queue.active[event.key]
        if isinstance(event, StreamStarted):
            yield JobStarted(job, index, total, phase, event.prompt_tokens)
        elif isinstance(event, StreamPrompt):
            yield PromptProgress(job, phase, event.done, event.total)
        elif isinstance(event, StreamChunk):
            yield TokenChunk(job, phase, event.text, event.n_tokens, event.elapsed_s)
        elif isinstance(event, StreamFailed):
            queue.end(event.key)
            summary.failed += 1
            yield JobFailed(job, phase, event.message)
        elif isinstance(event, StreamDone):
            own = queue.end(event.key)
            summary.completion_tokens += event.stats.completion_tokens
            if event.stats.finish_reason == "cancelled":
                if own is not None and own.is_set() and not queue.cancel.is_set():
                    summary.skipped += 1
                    yield JobSkipped(job, phase)
                return
            if phase == "judge":
                judged = self._judged(job, index, event.text, event.stats, summary, queue.retries)
                if judged is None:  # asked once more, saying what was wrong
                    queue.again(job, "judge", index)
                else:
                    yield judged
                return
            text = event.text.strip()
            finished = self._save(job, phase, text, event.stats, summary)
            yield finished
            if isinstance(finished, JobFinished):
                if phase == "generate":
                    job = replace(job, conv_id=finished.conv_id, conv=text)
                elif phase == "restyle":
                    job = replace(job, restyled=text)
                queue.then(job, phase, index)

    def pass_request(
        self, job: Job, phase: Phase, retry_reason: str | None = None
    ) -> tuple[PromptParts, str, Constraint | None]:
        """What one pass of a job sends: its prompt parts, the rendered prompt and its grammar.

        The judge's answer is always constrained where the backend can: its JSON must parse.
        """
        if phase == "judge":
            parts = self.judge_parts(job, retry_reason)
            return parts, self.render(parts), self.judge_pass.constraint
        if phase == "generate":
            parts = self.generation_parts(job.seed, job.persona)
        else:
            parts = self.restyle_parts(job.seed.tweet, job.conv or "")
        return parts, self.render(parts), self.constraint(phase, job.conv or "")

    def pass_sampling(
        self, job: Job, phase: Phase, retry_reason: str | None = None
    ) -> tuple[int, SamplingSettings]:
        """A pass's random seed and sampling: the judge samples its own way, a second try afresh."""
        seed = job.pass_seed(phase)
        if phase != "judge":
            return seed, self.sampling
        return (job_random_seed(seed, "again") if retry_reason else seed), self.judge_pass.sampling(
            self.sampling
        )

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

        An answer the backend did not constrain gets one more try (None: queue it again).
        """
        attempts = 2 if index in retries else 1
        try:
            answer = parse_answer(text, self.judge_pass.settings)
        except AnswerError as exc:
            if attempts == 1 and not stats.constrained:
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
        seed, sampling = self.pass_sampling(job, "judge", "again" if attempts > 1 else None)
        return JudgmentProvenance(
            created_at=time.time(),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            convogen_version=__version__,
            model=self._model_provenance(stats),
            template=TemplateRef(file=template.path.name if template.path else None, sha256=template.sha256),
            criteria_sha256=judge.settings.sha256,
            sampling=sampling.model_dump(),
            random_seed=seed,
            constraint=self.backend.constraint_support() if stats.constrained else "",
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
            random_seed=job.pass_seed(phase),
            prompt_format=stats.prompt_format or self.prompt_format(),
            system=system,
            cue=cue,
            template=TemplateRef(file=template.path.name if template.path else None, sha256=template.sha256),
            version=self.versions.keep(self.conv_template.text, self.restyle_template.text, job.persona),
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            finish_reason=stats.finish_reason,
            elapsed_s=round(stats.elapsed_s, 3),
            time_to_first_token_s=round(stats.first_token_s or 0.0, 3),
            tokens_per_second=round(stats.tokens_per_second, 2),
            constrained=stats.constrained,
            grammar_sha256=self._grammar_sha256(job, stats, phase),
        )

    def _grammar_sha256(self, job: Job, stats: GenerationStats, phase: Phase) -> str | None:
        """The sha256 of the grammar a pass was sampled under (None when it was not)."""
        if not stats.constrained:
            return None
        try:
            constraint = self.constraint(phase, job.conv or "")
        except ConvogenError:
            return None
        return constraint.sha256 if constraint is not None else None

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


def _next_pass(passes: Sequence[Phase], phase: Phase) -> Phase | None:
    """The pass that follows ``phase`` in a job's passes, if any."""
    at = passes.index(phase) if phase in passes else len(passes)
    return passes[at + 1] if at + 1 < len(passes) else None


class _Queue:
    """A run's passes: waiting (a job's next pass goes first) and running, shared with the backend's
    thread through :meth:`next_request`. A pass whose prompt cannot be made, or that the user skipped
    while it waited, ends here (``early``) without reaching the backend."""

    def __init__(
        self,
        pipeline: Pipeline,
        jobs: Sequence[Job],
        restyle: bool,
        cancel: threading.Event,
        skips: Skips | None,
    ) -> None:
        self.pipeline = pipeline
        self.restyle = restyle
        self.cancel = cancel
        self.skips = skips
        self.waiting: deque[tuple[Job, Phase, int]] = deque(
            (job, job.runs(restyle)[0], i) for i, job in enumerate(jobs)
        )
        self.active: dict[int, tuple[Job, Phase, int]] = {}
        self.own_cancel: dict[int, threading.Event] = {}
        self.lock = threading.Lock()
        self.keys = iter(range(1, 2**62))
        self.early: list[JobFailed | JobSkipped] = []
        self.retries: dict[int, str] = {}  # job index -> why its judge answer is asked for again

    def next_request(self) -> Request | None:
        with self.lock:
            while self.waiting and not self.cancel.is_set():
                job, phase, index = self.waiting.popleft()
                if self.skips is not None and self.skips.asked(index):
                    self.early.append(JobSkipped(job, phase))
                    continue
                retry = self.retries.get(index) if phase == "judge" else None
                try:
                    parts, prompt, constraint = self.pipeline.pass_request(job, phase, retry)
                    seed, sampling = self.pipeline.pass_sampling(job, phase, retry)
                except ConvogenError as exc:
                    self.early.append(JobFailed(job, phase, str(exc)))
                    continue
                key = next(self.keys)
                self.active[key] = (job, phase, index)
                own = self.skips.started(index) if self.skips is not None else None
                if own is not None:
                    self.own_cancel[key] = own
                return Request(key, prompt, seed, sampling, parts, cancel=own, constraint=constraint)
            return None

    def end(self, key: int) -> threading.Event | None:
        """A pass is over: forget it; its own cancel (set if the user skipped it), if any."""
        del self.active[key]
        return self.own_cancel.pop(key, None)

    def again(self, job: Job, phase: Phase, index: int) -> None:
        """Queue a pass once more (a judge answer that could not be used), ahead of new jobs."""
        with self.lock:
            self.waiting.appendleft((job, phase, index))

    def then(self, job: Job, phase: Phase, index: int) -> None:
        """Queue the job's next pass ahead of new jobs, so it joins the running batch at once."""
        follow = _next_pass(job.runs(self.restyle), phase)
        if follow is not None:
            with self.lock:
                self.waiting.appendleft((job, follow, index))
