"""Templates pane: both instruction templates, placeholder errors as you type, the exact prompt.

The preview is what the model will get for the chosen seed and persona, wrapped in the model's chat
format, with its token count against the context; both need the loaded model, so until then the
filled instruction is shown with "loading model…". The pipeline it uses is made here, on the UI
thread; the worker only fills, wraps and counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Static, TextArea
from textual.widgets.text_area import Selection

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.judging.judge import criteria_text, scale_text
from convogen_tui.core.judging.quality import turn_mentions
from convogen_tui.core.making.experiment import Persona
from convogen_tui.core.making.grammar import grammar_in_force
from convogen_tui.core.making.pipeline import Pipeline, PromptPreview
from convogen_tui.core.making.planner import Job
from convogen_tui.core.making.seeds import Seed
from convogen_tui.core.making.templates import Template, TemplateKind, check_template, parse_template
from convogen_tui.tui.cells import display_safe
from convogen_tui.tui.editing import EditedFile, save_files
from convogen_tui.tui.messages import TemplatesSaved
from convogen_tui.tui.panes.setup import problem_line
from convogen_tui.tui.session import Session
from convogen_tui.tui.widgets.editor import Editor, find_bindings
from convogen_tui.tui.workers import ReportsWorkerErrors, background

EXAMPLE_CONV = (
    "SocBot: (the generated conversation goes here)\n"
    "User: (the restyle preview uses an example until you pick a conversation)"
)
KINDS: tuple[TemplateKind, ...] = ("conv-gen", "conv-restyle")  # and judge.txt, where the experiment has one


@dataclass(frozen=True)
class _Request:
    kind: TemplateKind
    template: Template
    seed: Seed
    persona: Persona
    serial: int
    pipeline: Pipeline | None  # None until the model is loaded: the filled instruction only


class TemplatesPane(ReportsWorkerErrors, Horizontal):
    """Edit conv-gen.txt, conv-restyle.txt (and judge.txt); the preview follows every keystroke."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", tooltip="save the templates (asks if changed on disk)"),
        Binding("ctrl+t", "switch", "Other", tooltip="the next template (conv-gen, restyle, judge)"),
        Binding("ctrl+n", "next_seed", "Seed", tooltip="preview with the next seed (picked first)"),
        Binding("ctrl+b", "next_persona", "Persona", tooltip="preview with the next persona"),
        Binding(
            "f10,alt+w",
            "toggle_wide",
            "Wide",
            key_display="F10",
            tooltip="the editor full width, the prompt below it (again: side by side); also alt+w",
        ),
        *find_bindings(),
    ]

    class Previewed(Message):
        def __init__(self, serial: int, preview: PromptPreview | None, error: str | None) -> None:
            super().__init__()
            self.serial = serial
            self.preview = preview
            self.error = error

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.kind: TemplateKind = "conv-gen"
        experiment = session.experiment
        has_judge = experiment.judge_template_path.is_file() or bool(
            experiment.setup and experiment.setup.judge
        )
        self.kinds: tuple[TemplateKind, ...] = (*KINDS, "judge") if has_judge else KINDS
        self.seed_index = 0
        self.persona_index = 0
        self.files = {kind: EditedFile(self.path_of(kind)) for kind in self.kinds}
        self._serial = 0
        self._debounce: Timer | None = None
        self._request: _Request | None = None

    def path_of(self, kind: TemplateKind) -> Path:
        experiment = self.session.experiment
        if kind == "judge":
            return experiment.judge_template_path
        return experiment.conv_template_path if kind == "conv-gen" else experiment.restyle_template_path

    def compose(self) -> ComposeResult:
        with Vertical(id="tpl-left"):
            with ContentSwitcher(initial="tpl-conv-gen", id="tpl-switcher"):
                for kind in self.kinds:
                    edited = self.files[kind]
                    area = Editor(edited.read(), soft_wrap=True, id=f"tpl-{kind}", show_line_numbers=True)
                    area.border_title = edited.title()
                    area.border_subtitle = "^t other · ^f find · Esc leaves"
                    yield edited.bind(area)
            yield Static("", id="tpl-problems", markup=False)
        with Vertical(id="tpl-right"):
            yield Static("", id="tpl-info", markup=False)
            preview = TextArea("", read_only=True, soft_wrap=True, id="tpl-preview")
            preview.border_title = "Exact prompt"
            yield preview

    def on_mount(self) -> None:
        self.set_class(self.session.editor_wide, "-wide")
        self.schedule_preview(0)

    def action_find(self) -> None:
        self.query_one(f"#tpl-{self.kind}", Editor).action_find()

    def action_go_to_line(self) -> None:
        self.query_one(f"#tpl-{self.kind}", Editor).action_go_to_line()

    def action_toggle_wide(self) -> None:
        """At 80 columns the editor beside the preview is 32 columns wide: give it the whole width."""
        self.session.editor_wide = not self.session.editor_wide
        self.set_class(self.session.editor_wide, "-wide")

    def editor(self, kind: TemplateKind | None = None) -> TextArea:
        return self.query_one(f"#tpl-{kind or self.kind}", TextArea)

    def current_file(self) -> Path:
        return self.path_of(self.kind)

    def reload_from_disk(self) -> None:
        """After an external edit ($EDITOR): take the file's text into the editor."""
        for edited in self.files.values():
            edited.take_disk()
        self.schedule_preview(0)

    def poll_disk(self) -> None:
        """Follow the template files on disk (the experiment screen calls this every second)."""
        for edited in self.files.values():
            said = edited.poll()
            if said:
                self.notify(said, severity="warning" if "unsaved" in said else "information", timeout=8)
                self.schedule_preview(0)

    # choices ------------------------------------------------------------------------------
    def _seeds(self) -> list[Seed]:
        try:
            seeds = self.session.seeds().seeds
        except ConvogenError:
            return []
        picked = [s for s in self.session.picked if s in seeds]
        return picked + [s for s in seeds if s not in picked] if picked else seeds

    def action_next_seed(self) -> None:
        self.seed_index += 1
        self.schedule_preview(0)

    def action_next_persona(self) -> None:
        self.persona_index += 1
        self.schedule_preview(0)

    def action_switch(self) -> None:
        self.kind = self.kinds[(self.kinds.index(self.kind) + 1) % len(self.kinds)]
        self.query_one(ContentSwitcher).current = f"tpl-{self.kind}"
        self.screen.refresh_bindings()
        self.editor().focus()
        self.schedule_preview(0)

    # checking and preview -----------------------------------------------------------------
    @on(TextArea.Changed)
    def _changed(self, event: TextArea.Changed) -> None:
        if event.text_area.id != "tpl-preview":
            for edited in self.files.values():
                if edited.area is event.text_area:
                    event.text_area.border_title = edited.title()
            self.schedule_preview()

    def schedule_preview(self, delay: float = 0.15) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(max(delay, 0.01), self.update_preview)  # 0 divides by zero

    def update_preview(self) -> None:
        """Check the template as typed; if it parses, ask a worker for the wrapped prompt and count."""
        kind = self.kind
        text = self.editor(kind).text
        problems = self.query_one("#tpl-problems", Static)
        found = check_template(text, kind, self.path_of(kind))
        self.editor(kind).border_title = self.files[kind].title()
        disagree = self._grammar()[1]
        ok = "\n".join(["✓ placeholders OK", *disagree])
        problems.update("\n".join(problem_line(p) for p in found) if found else ok)
        problems.set_class(bool(found), "-error")
        if found:
            self._info("fix the template to see the prompt")
            self.query_one("#tpl-preview", TextArea).load_text("")
            return
        seeds = self._seeds()
        personas = self.session.personas()
        if not seeds or not personas:
            self._info("no seeds or no personas: check the Setup screen (F2)")
            return
        seed = seeds[self.seed_index % len(seeds)]
        template = parse_template(text, kind, self.path_of(kind))
        pipeline = None
        if self.session.backend is not None:
            try:
                pipeline = self.session.pipeline(reload=False)  # the editor's text is what counts
            except ConvogenError as exc:
                self._info(f"cannot build the prompt: {exc}")
                return
        self._serial += 1
        persona = personas[self.persona_index % len(personas)]
        request = _Request(kind, template, seed, persona, self._serial, pipeline)
        self._request = request
        self._describe(request, None)
        self._build_preview(request)

    def _describe(self, request: _Request, preview: PromptPreview | None) -> None:
        seeds = self._seeds()
        position = f"seed {self.seed_index % len(seeds) + 1}/{len(seeds)}"
        persona = request.persona.label if request.kind != "conv-restyle" else "restyle pass"
        if preview is None:
            count = "loading model…" if self.session.backend is None else "counting…"
        else:
            count = f"{preview.n_tokens} / {preview.n_ctx} tokens · {preview.prompt_format}"
        self._info(f"{count}\n{position} · {persona}\n{self._grammar()[0]}")

    def _grammar(self) -> tuple[str, list[str]]:
        """The grammar a run samples this template's output under (core/making/grammar.py), as the
        editors read now, and each "N turns" in conv-gen.txt that is not the turn target."""
        setup = self.session.experiment.setup
        if setup is None:
            return "", []
        conv_text = self.editor("conv-gen").text
        quality = setup.quality.resolve(conv_text, self.editor("conv-restyle").text)
        disagree = [
            f'⚠ line {line}: "{words}", but the turn target is {quality.turns}'
            for line, number, words in turn_mentions(conv_text)
            if number != quality.turns and self.kind == "conv-gen"
        ]
        backend = self.session.backend
        if not setup.constrain:
            return "grammar: off (constrain: false)", disagree
        if backend is not None and backend.constraint_support() != "grammar":
            return "grammar: none (the backend has none)", disagree
        try:
            grammar = grammar_in_force(quality, self.session.max_tokens or setup.sampling.max_tokens)
        except ConvogenError:
            return "grammar: max_tokens too small (F2)", disagree
        return (grammar.dialog if self.kind == "conv-gen" else grammar.restyle).short(), disagree

    def _info(self, text: str) -> None:
        self.query_one("#tpl-info", Static).update(text)

    @background("preview", "building the prompt preview")
    def _build_preview(self, request: _Request) -> None:
        """Fill and wrap the prompt and count its tokens (tokenizing is model work: off the UI)."""
        persona = request.persona
        pipeline = request.pipeline
        try:
            if pipeline is None:
                self.post_message(self.Previewed(request.serial, None, self._filled(request)))
                return
            if request.kind == "conv-gen":
                prompt = pipeline.generation_prompt(request.seed, persona, request.template)
            elif request.kind == "judge":
                job = Job(request.seed, persona, 0, "example", EXAMPLE_CONV, ("judge",), EXAMPLE_CONV)
                prompt = pipeline.render(pipeline.judge_parts(job, template=request.template))
            else:
                prompt = pipeline.restyle_prompt(request.seed.tweet, EXAMPLE_CONV, request.template)
            preview = pipeline.preview(prompt)
            self.post_message(self.Previewed(request.serial, preview, None))
        except ConvogenError as exc:
            self.post_message(self.Previewed(request.serial, None, f"cannot build the prompt: {exc}"))

    def _filled(self, request: _Request) -> str:
        """The instruction alone (no model loaded yet to wrap it in its chat format)."""
        persona, tweet = request.persona, request.seed.tweet
        if request.kind == "conv-gen":
            return request.template.render(
                disposition=persona.disposition_text, motivation=persona.motivation_text, tweet=tweet
            )
        if request.kind == "conv-restyle":
            return request.template.render(tweet=tweet, conv=EXAMPLE_CONV)
        settings = self.session.experiment.setup.judge if self.session.experiment.setup else None
        return request.template.render(
            tweet=tweet,
            motivation=persona.motivation_text,
            disposition=persona.disposition_text,
            conv=EXAMPLE_CONV,
            restyled=EXAMPLE_CONV,
            criteria=criteria_text(settings) if settings else "(no criteria: add a judge block to the setup)",
            scale=scale_text(settings) if settings else "1 to 5",
        )

    @on(Previewed)
    def _previewed(self, message: Previewed) -> None:
        if message.serial != self._serial:
            return  # an older keystroke's preview
        area = self.query_one("#tpl-preview", TextArea)
        if message.preview is not None:
            self._keep_place(area, display_safe(message.preview.text))
            over = message.preview.n_tokens >= message.preview.n_ctx
            area.border_subtitle = "over the context!" if over else ""
            if self._request is not None:
                self._describe(self._request, message.preview)
        else:
            self._keep_place(area, display_safe(message.error or ""))

    @staticmethod
    def _keep_place(area: TextArea, text: str) -> None:
        """New preview text where the reader was (a save or a keystroke does not scroll it to the top)."""
        if text == area.text:
            return
        scroll_y, cursor = area.scroll_y, area.cursor_location
        area.load_text(text)
        row = min(cursor[0], area.document.line_count - 1)
        area.selection = Selection.cursor((row, min(cursor[1], len(area.document.get_line(row)))))
        area.call_after_refresh(area.scroll_to, y=scroll_y, animate=False)

    def on_model_loaded(self) -> None:
        self.schedule_preview(0)

    # saving -------------------------------------------------------------------------------
    def dirty(self) -> list[TemplateKind]:
        return [k for k in self.kinds if self.files[k].dirty]

    def edited_files(self) -> list[EditedFile]:
        return list(self.files.values())

    def save(self, then: Callable[[], None] | None = None) -> None:
        """Write the edited templates (asking about any changed on disk), then ``then``."""

        def saved() -> None:
            self.schedule_preview(0)
            self.post_message(TemplatesSaved())
            if then is not None:
                then()

        save_files(self, [self.files[k] for k in self.dirty()], saved)

    def action_save(self) -> None:
        if not self.dirty():
            self.notify("nothing to save in the templates")
            return
        self.save()
