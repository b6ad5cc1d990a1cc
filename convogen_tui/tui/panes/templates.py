"""Templates pane: both instruction templates, placeholder errors as you type, the exact prompt.

The preview is what the model will get for the chosen seed and persona, wrapped in the model's chat
format, with its token count against the context; both need the loaded model, so until then the
filled instruction is shown with "loading model…".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Static, TextArea

from convogen_tui.core.errors import ConvogenError, StorageError
from convogen_tui.core.files import atomic_write_text
from convogen_tui.core.pipeline import PromptPreview
from convogen_tui.core.seeds import Seed
from convogen_tui.core.templates import Template, TemplateKind, check_template, parse_template
from convogen_tui.tui.panes.setup import problem_line
from convogen_tui.tui.session import Session

EXAMPLE_CONV = (
    "SocBot: (the generated conversation goes here)\n"
    "User: (the restyle preview uses an example until you pick a conversation)"
)
KINDS: tuple[TemplateKind, TemplateKind] = ("conv-gen", "conv-restyle")


@dataclass(frozen=True)
class _Request:
    kind: TemplateKind
    template: Template
    seed: Seed
    persona_index: int
    serial: int


class TemplatesPane(Horizontal):
    """Edit conv-gen.txt and conv-restyle.txt; the preview follows every keystroke (debounced)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+t", "switch", "Other template"),
        Binding("ctrl+n", "next_seed", "Next seed"),
        Binding("ctrl+b", "next_persona", "Next persona"),
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
        self.seed_index = 0
        self.persona_index = 0
        self._saved: dict[str, str] = {}
        self._serial = 0
        self._debounce: Timer | None = None
        self._request: _Request | None = None

    def path_of(self, kind: TemplateKind) -> Path:
        experiment = self.session.experiment
        return experiment.conv_template_path if kind == "conv-gen" else experiment.restyle_template_path

    def compose(self) -> ComposeResult:
        with Vertical(id="tpl-left"):
            with ContentSwitcher(initial="tpl-conv-gen", id="tpl-switcher"):
                for kind in KINDS:
                    path = self.path_of(kind)
                    text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
                    self._saved[kind] = text
                    area = TextArea(text, soft_wrap=True, id=f"tpl-{kind}", show_line_numbers=True)
                    area.border_title = path.name
                    area.border_subtitle = "ctrl+t: other template"
                    yield area
            yield Static("", id="tpl-problems", markup=False)
        with Vertical(id="tpl-right"):
            yield Static("", id="tpl-info", markup=False)
            preview = TextArea("", read_only=True, soft_wrap=True, id="tpl-preview")
            preview.border_title = "Exact prompt"
            yield preview

    def on_mount(self) -> None:
        self.schedule_preview(0)

    def editor(self, kind: TemplateKind | None = None) -> TextArea:
        return self.query_one(f"#tpl-{kind or self.kind}", TextArea)

    def current_file(self) -> Path:
        return self.path_of(self.kind)

    def reload_from_disk(self) -> None:
        """After an external edit ($EDITOR): take the file's text into the editor."""
        for kind in KINDS:
            path = self.path_of(kind)
            text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
            self._saved[kind] = text
            self.editor(kind).load_text(text)
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
        self.kind = "conv-restyle" if self.kind == "conv-gen" else "conv-gen"
        self.query_one(ContentSwitcher).current = f"tpl-{self.kind}"
        self.editor().focus()
        self.schedule_preview(0)

    # checking and preview -----------------------------------------------------------------
    @on(TextArea.Changed)
    def _changed(self, event: TextArea.Changed) -> None:
        if event.text_area.id != "tpl-preview":
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
        dirty = text != self._saved.get(kind)
        self.editor(kind).border_title = self.path_of(kind).name + (" ●" if dirty else "")
        problems.update("\n".join(problem_line(p) for p in found) if found else "✓ placeholders OK")
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
        self._serial += 1
        request = _Request(kind, template, seed, self.persona_index % len(personas), self._serial)
        self._request = request
        self._describe(request, None)
        self._build_preview(request)

    def _persona_label(self, request: _Request) -> str:
        personas = self.session.personas()
        return personas[request.persona_index].label if personas else "-"

    def _describe(self, request: _Request, preview: PromptPreview | None) -> None:
        seeds = self._seeds()
        position = f"seed {self.seed_index % len(seeds) + 1}/{len(seeds)}"
        persona = self._persona_label(request) if request.kind == "conv-gen" else "restyle pass"
        if preview is None:
            count = "loading model…" if self.session.backend is None else "counting…"
        else:
            count = f"{preview.n_tokens} / {preview.n_ctx} tokens · {preview.prompt_format}"
        self._info(f"{count}\n{position} · {persona}")

    def _info(self, text: str) -> None:
        self.query_one("#tpl-info", Static).update(text)

    @work(thread=True, exclusive=True, group="preview")
    def _build_preview(self, request: _Request) -> None:
        """Fill and wrap the prompt and count its tokens (tokenizing is model work: off the UI)."""
        persona = self.session.personas()[request.persona_index]
        try:
            if self.session.backend is None:
                text = (
                    request.template.render(
                        disposition=persona.disposition_text,
                        motivation=persona.motivation_text,
                        tweet=request.seed.tweet,
                    )
                    if request.kind == "conv-gen"
                    else request.template.render(tweet=request.seed.tweet, conv=EXAMPLE_CONV)
                )
                self.post_message(self.Previewed(request.serial, None, text))
                return
            pipeline = self.session.pipeline(reload=False)  # the editor's text is what counts
            if request.kind == "conv-gen":
                prompt = pipeline.generation_prompt(request.seed, persona, request.template)
            else:
                prompt = pipeline.restyle_prompt(request.seed.tweet, EXAMPLE_CONV, request.template)
            preview = pipeline.preview(prompt)
            self.post_message(self.Previewed(request.serial, preview, None))
        except ConvogenError as exc:
            self.post_message(self.Previewed(request.serial, None, f"cannot build the prompt: {exc}"))

    @on(Previewed)
    def _previewed(self, message: Previewed) -> None:
        if message.serial != self._serial:
            return  # an older keystroke's preview
        area = self.query_one("#tpl-preview", TextArea)
        if message.preview is not None:
            area.load_text(message.preview.text)
            over = message.preview.n_tokens >= message.preview.n_ctx
            area.border_subtitle = "over the context!" if over else ""
            if self._request is not None:
                self._describe(self._request, message.preview)
        else:
            area.load_text(message.error or "")

    def on_model_loaded(self) -> None:
        self.schedule_preview(0)

    # saving -------------------------------------------------------------------------------
    def dirty(self) -> list[TemplateKind]:
        return [k for k in KINDS if self.editor(k).text != self._saved.get(k)]

    def save(self) -> list[str]:
        """Write the edited templates; returns the file names written."""
        written = []
        for kind in self.dirty():
            text = self.editor(kind).text
            atomic_write_text(self.path_of(kind), text)
            self._saved[kind] = text
            written.append(self.path_of(kind).name)
        self.schedule_preview(0)
        return written

    def action_save(self) -> None:
        try:
            written = self.save()
        except StorageError as exc:  # read-only, full disk: the text stays in the editor
            self.notify(str(exc), title="not saved", severity="error", timeout=15)
            return
        problems = [p for k in KINDS for p in check_template(self.editor(k).text, k)]
        if not written:
            self.notify("nothing to save")
        elif problems:
            self.notify(f"saved {', '.join(written)} with {len(problems)} problem(s)", severity="warning")
        else:
            self.notify(f"saved {', '.join(written)}")
