"""Prompt building: the filled instruction wrapped in the model's own chat format, plus a task cue.

A Llama-2 chat model gets the ``[INST] <<SYS>>`` format the original notebooks used; any other
model gets the chat template stored in its GGUF, and the cue starts the assistant's answer. A model
behind an inference server whose template we cannot read gets "chat-messages": the parts are sent
as chat messages and the server applies its own template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from convogen_tui.core.errors import ConvogenError, Problem

PromptFormat = Literal["llama2", "chat-template", "chat-messages"]

GEN_SYSTEM = (
    "You write believable two-person exchanges between SocBot, a patient assistant that "
    "answers with evidence, and a social media user, following the instructions exactly."
)
RESTYLE_SYSTEM = (
    "You rewrite two-person exchanges so they read like a real social media thread, keeping "
    "who says what and what they mean."
)
GEN_CUE = "(conversation)"
RESTYLE_CUE = "(restyled-conversation)"


@dataclass(frozen=True)
class ChatFormat:
    """What prompt building needs to know about a model."""

    name: str = ""
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    adds_bos: bool = True  # llama.cpp prepends BOS while tokenizing
    server_chat: bool = False  # a remote server can apply its own (unseen) template to chat messages


@dataclass(frozen=True)
class PromptParts:
    """The pieces a prompt is built from, for backends that send chat messages instead of text."""

    instruction: str
    system: str | None
    cue: str
    format: PromptFormat = "llama2"

    def messages(self) -> list[dict[str, str]]:
        """System and user messages, then the cue as the start of the assistant's answer."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        out.append({"role": "user", "content": self.instruction})
        if self.cue:
            out.append({"role": "assistant", "content": f"{self.cue}\n\n"})
        return out


def llama2_prompt(instruction: str, system: str | None, cue: str) -> str:
    """The Llama-2 chat wrapping; llama.cpp adds the BOS token when it tokenizes."""
    if system:
        return f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{instruction}[/INST]\n\n{cue}\n\n"
    return f"[INST]\n\n{instruction}[/INST]\n\n{cue}\n\n"


def is_llama2_chat(fmt: ChatFormat) -> bool:
    """Llama-2 chat GGUFs often carry no template; recognise them by template text or name."""
    template = fmt.chat_template or ""
    if "<<SYS>>" in template or ("[INST]" in template and "Mistral" not in fmt.name):
        return True
    name = fmt.name.lower().replace("_", "-").replace(" ", "-")
    return not template and ("llama-2" in name or "llama2" in name) and "chat" in name


def choose_format(fmt: ChatFormat, setting: str = "auto") -> PromptFormat:
    if setting == "llama2":
        return "llama2"
    if fmt.server_chat and not fmt.chat_template and (setting == "chat-template" or not is_llama2_chat(fmt)):
        return "chat-messages"
    if setting == "chat-template":
        if not fmt.chat_template:
            raise ConvogenError(
                Problem(
                    None,
                    f"model {fmt.name or '?'} has no chat template in its GGUF",
                    key="prompt_format",
                    hint='set "prompt_format" to "llama2" or "auto" in expt-setup.json',
                )
            )
        return "chat-template"
    if is_llama2_chat(fmt) or not fmt.chat_template:
        return "llama2"
    return "chat-template"


def chat_template_prompt(instruction: str, system: str | None, cue: str, fmt: ChatFormat) -> str:
    """Render the GGUF's Jinja chat template, then open the answer with the cue."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": instruction})

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    try:
        text = env.from_string(fmt.chat_template or "").render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=fmt.bos_token,
            eos_token=fmt.eos_token,
            raise_exception=raise_exception,
        )
    except TemplateError as exc:
        raise ConvogenError(
            Problem(
                None,
                f"the chat template of {fmt.name or 'the model'} failed: {exc}",
                key="prompt_format",
                hint='set "prompt_format": "llama2" in expt-setup.json',
            )
        ) from None
    if fmt.adds_bos and fmt.bos_token and text.startswith(fmt.bos_token):
        text = text[len(fmt.bos_token) :]  # llama.cpp adds BOS itself
    return f"{text}{cue}\n\n"


def chat_messages_preview(parts: PromptParts) -> str:
    """A readable stand-in for chat messages whose final text only the server knows."""
    return "".join(f"<{m['role']}>\n{m['content'].rstrip()}\n</{m['role']}>\n\n" for m in parts.messages())


def wrap_prompt(
    instruction: str,
    system: str | None,
    cue: str,
    fmt: ChatFormat,
    setting: str = "auto",
) -> str:
    chosen = choose_format(fmt, setting)
    if chosen == "llama2":
        return llama2_prompt(instruction, system, cue)
    if chosen == "chat-messages":
        return chat_messages_preview(PromptParts(instruction, system, cue, chosen))
    return chat_template_prompt(instruction, system, cue, fmt)
