"""Quality verdicts: named rules that catch the defects a reviewer would reject, each explained.

Every rule reads the conversation (and its restyled twin) through :func:`~convogen_tui.core.judging.dialog.
parse_dialog`. Thresholds come from the ``quality`` block of ``expt-setup.json``; the ones the
templates spell out ("exactly 8 turns", "at most 280 characters") default to what the templates say.
Verdicts are computed once per file and kept in the store's listing index.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher

from pydantic import BaseModel, ConfigDict, Field, field_validator

from convogen_tui.core.judging.dialog import (
    SOCBOT,
    USER,
    Dialog,
    Message,
    is_emoji,
    parse_dialog,
    words,
)

DEFAULT_TURNS = 8
DEFAULT_MAX_CHARS = 280
DEFAULT_MAX_EMOJI = 3


@dataclass(frozen=True)
class Rule:
    name: str
    applies_to: str  # "conversation", "restyled" or "experiment"
    checks: str  # one line: what the rule flags
    settings: tuple[str, ...] = ()  # the quality keys that tune it


RULES: tuple[Rule, ...] = (
    Rule("no-dialog", "conversation", "no SocBot message or no User message at all"),
    Rule("short", "conversation", "fewer complete turns than the target", ("turns", "min_turns")),
    Rule(
        "extra-turns",
        "conversation",
        "more SocBot or User messages than the target turns (a turn is a SocBot message and the reply)",
        ("turns", "max_turns"),
    ),
    Rule("user-first", "conversation", "User speaks first; SocBot must open, replying to the post"),
    Rule("alternation", "conversation", "the same speaker writes two messages in a row"),
    Rule(
        "repetition",
        "conversation",
        "a message repeated more often than allowed, a large share of repeated word n-grams, or a "
        "message that loops on itself",
        ("max_message_repeats", "repeat_min_words", "repeat_ngram", "max_repeated_ngram_share"),
    ),
    Rule(
        "wrapper",
        "conversation",
        'text around the dialog: a title or "Here is..." before it, notes or comments after it, '
        '"as an AI language model" or a "(Note: ...)" inside it',
    ),
    Rule(
        "truncated",
        "conversation",
        "cut off: the model hit max_tokens, or the last message stops mid-sentence (a dangling word, "
        "a comma, or no end punctuation where the speaker always has one)",
    ),
    Rule("empty-message", "conversation", 'a speaker label with nothing after it (or "[no response]")'),
    Rule("restyle-no-dialog", "restyled", "the restyled twin has no SocBot/User dialog left"),
    Rule(
        "restyle-too-long",
        "restyled",
        "a restyled message longer than the limit the restyle template sets",
        ("max_message_chars",),
    ),
    Rule(
        "restyle-mismatch",
        "restyled",
        "the twin does not keep the speakers and the number of messages of the conversation "
        "(a leading 'User: <post>' line is allowed)",
    ),
    Rule(
        "restyle-copy",
        "restyled",
        "the twin is (nearly) the same words as the conversation, not a restyle",
        ("copy_similarity",),
    ),
    Rule(
        "restyle-emoji",
        "restyled",
        "a restyled message with more emoji than the template's 'few emoji' allows",
        ("max_emoji_per_message",),
    ),
    Rule("restyle-wrapper", "restyled", "text around the restyled thread, as in 'wrapper'"),
    Rule("restyle-truncated", "restyled", "the restyle hit max_tokens or stops on a dangling word"),
    Rule("restyle-empty-message", "restyled", "a restyled message with nothing after its speaker label"),
    Rule(
        "near-duplicate",
        "experiment",
        "nearly the same text as an earlier conversation of this experiment (word 3-gram MinHash); "
        "the later one is flagged and names the earlier",
        ("near_duplicate_similarity",),
    ),
)
RULE_NAMES = tuple(rule.name for rule in RULES)
_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
}  # fmt: skip
_TURNS_IN_TEMPLATE = re.compile(r"\b(\d{1,3}|" + "|".join(_NUMBERS) + r")\s+(?:\w+\s+)?turns\b", re.I)
_CHARS_IN_TEMPLATE = re.compile(r"\b(\d{2,5})\s*(?:characters|chars)\b", re.I)
_NO_EMOJI = re.compile(r"\bno emoji", re.I)
_ENDS_CLEANLY = re.compile(
    r"""[.!?…"'”’)\]*»~]$|:\)$|:D$|\bhttps?://\S+$|[#@]\w+$|\b(?:lol|lmao|haha)$""", re.I
)
# words a finished sentence does not end on (without punctuation): "...when the"
_DANGLING = frozenset(
    ("the", "a", "an", "and", "or", "but", "because", "my", "your", "our", "their", "its", "than", "whose")
)


class QualitySettings(BaseModel):
    """The ``quality`` block of expt-setup.json; every key is optional.

    ``None`` means "from the templates": the target turns from conv-gen.txt ("exactly 8 turns"),
    the restyled message limit from conv-restyle.txt ("at most 280 characters").
    """

    model_config = ConfigDict(extra="forbid")

    turns: int | None = Field(None, ge=1, description="target turns (default: the number in conv-gen.txt)")
    min_turns: int | None = Field(None, ge=0, description="fewer complete turns is 'short' (default: turns)")
    max_turns: int | None = Field(None, ge=1, description="more messages per speaker is 'extra-turns'")
    max_message_chars: int | None = Field(
        None, ge=1, description="longest restyled message (default: the number in conv-restyle.txt)"
    )
    max_emoji_per_message: int | None = Field(
        None, ge=0, description="most emoji in one restyled message (3; 0 if the template says no emoji)"
    )
    max_message_repeats: int = Field(2, ge=1, description="times one message may appear")
    repeat_min_words: int = Field(4, ge=1, description="shorter messages may repeat freely ('No.')")
    repeat_ngram: int = Field(4, ge=2, le=8, description="n of the word n-grams counted for repetition")
    max_repeated_ngram_share: float = Field(0.3, gt=0, le=1, description="share of repeated n-grams allowed")
    copy_similarity: float = Field(0.9, gt=0, le=1, description="word similarity from which a twin is a copy")
    near_duplicate_similarity: float = Field(
        0.7,
        gt=0,
        le=1,
        description="estimated Jaccard similarity of word 3-grams from which two are near-duplicates",
    )
    disabled: list[str] = Field(default_factory=list, description="rule names to skip")

    @field_validator("disabled")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in RULE_NAMES]
        if unknown:
            raise ValueError(f"unknown rule {', '.join(unknown)}; see convogen quality --rules")
        return value

    def resolve(self, conv_template: str = "", restyle_template: str = "") -> ResolvedQuality:
        """Every threshold as a number, template-derived defaults filled in."""
        turns = self.turns or _template_number(_TURNS_IN_TEMPLATE, conv_template) or DEFAULT_TURNS
        chars = self.max_message_chars or _template_number(_CHARS_IN_TEMPLATE, restyle_template)
        emoji = self.max_emoji_per_message
        if emoji is None:
            emoji = 0 if _NO_EMOJI.search(restyle_template) else DEFAULT_MAX_EMOJI
        return ResolvedQuality(
            turns=turns,
            min_turns=self.min_turns if self.min_turns is not None else turns,
            max_turns=self.max_turns or max(turns, self.min_turns or 0),
            max_message_chars=chars or DEFAULT_MAX_CHARS,
            max_emoji_per_message=emoji,
            max_message_repeats=self.max_message_repeats,
            repeat_min_words=self.repeat_min_words,
            repeat_ngram=self.repeat_ngram,
            max_repeated_ngram_share=self.max_repeated_ngram_share,
            copy_similarity=self.copy_similarity,
            near_duplicate_similarity=self.near_duplicate_similarity,
            disabled=tuple(self.disabled),
        )


@dataclass(frozen=True)
class ResolvedQuality:
    """Thresholds in force for one experiment (settings with the templates' numbers filled in)."""

    turns: int = DEFAULT_TURNS
    min_turns: int = DEFAULT_TURNS
    max_turns: int = DEFAULT_TURNS
    max_message_chars: int = DEFAULT_MAX_CHARS
    max_emoji_per_message: int = DEFAULT_MAX_EMOJI
    max_message_repeats: int = 2
    repeat_min_words: int = 4
    repeat_ngram: int = 4
    max_repeated_ngram_share: float = 0.3
    copy_similarity: float = 0.9
    near_duplicate_similarity: float = 0.7
    disabled: tuple[str, ...] = ()

    def key(self) -> str:
        """Changes whenever a threshold does, so cached verdicts are recomputed."""
        data = json.dumps(self.__dict__, sort_keys=True, default=list)
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def enabled(self, rule: str) -> bool:
        return rule not in self.disabled


def _template_number(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text or "")
    if not match:
        return None
    value = match.group(1).lower()
    return int(value) if value.isdigit() else _NUMBERS.get(value)


def turn_mentions(text: str) -> list[tuple[int, int, str]]:
    """Every "N turns" a template says: (line, number, the words), for checking they agree."""
    found = []
    for match in _TURNS_IN_TEMPLATE.finditer(text or ""):
        value = match.group(1).lower()
        number = int(value) if value.isdigit() else _NUMBERS[value]
        found.append((text.count("\n", 0, match.start()) + 1, number, match.group(0)))
    return found


@dataclass(frozen=True)
class Verdict:
    """One rule that fired, and why, in words a reviewer can check against the text."""

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


def check_conversation(
    conv: str,
    twin: str | None = None,
    settings: ResolvedQuality | None = None,
    finish_reason: str | None = None,
    twin_finish_reason: str | None = None,
) -> list[Verdict]:
    """Every per-file rule that fires for a conversation and (if restyled) its twin, in RULES order."""
    return check_dialog(parse_dialog(conv), twin, settings, finish_reason, twin_finish_reason)


def check_dialog(
    dialog: Dialog,
    twin: str | None = None,
    settings: ResolvedQuality | None = None,
    finish_reason: str | None = None,
    twin_finish_reason: str | None = None,
) -> list[Verdict]:
    """:func:`check_conversation` on a conversation already read with ``parse_dialog``."""
    settings = settings or ResolvedQuality()
    found = _conversation_verdicts(dialog, settings, finish_reason)
    if twin is not None:
        found += _twin_verdicts(dialog, parse_dialog(twin), settings, twin_finish_reason)
    order = {name: i for i, name in enumerate(RULE_NAMES)}
    return sorted((v for v in found if settings.enabled(v.rule)), key=lambda v: order[v.rule])


def _conversation_verdicts(dialog: Dialog, s: ResolvedQuality, finish_reason: str | None) -> list[Verdict]:
    out: list[Verdict] = []
    socbot, user = dialog.count(SOCBOT), dialog.count(USER)
    if not dialog.has_dialog:
        out.append(Verdict("no-dialog", f"{socbot} SocBot and {user} User message(s)"))
        if finish_reason == "length":
            out.append(Verdict("truncated", "the model stopped at max_tokens"))
        return out
    if dialog.turns < s.min_turns:
        out.append(Verdict("short", f"{dialog.turns} complete turn(s), target {s.turns}"))
    if max(socbot, user) > s.max_turns:
        out.append(Verdict("extra-turns", f"{socbot} SocBot and {user} User messages, target {s.turns} each"))
    if dialog.messages[0].speaker == USER:
        out.append(Verdict("user-first", f"line {dialog.messages[0].line}: User speaks before SocBot"))
    doubled = _doubled(dialog.messages)
    if doubled:
        out.append(Verdict("alternation", doubled))
    repeated = _repetition(dialog.messages, s)
    if repeated:
        out.append(Verdict("repetition", repeated))
    outside = _outside(dialog)
    if outside:
        out.append(Verdict("wrapper", outside))
    cut = _truncation(dialog.messages, finish_reason, strict=True)
    if cut:
        out.append(Verdict("truncated", cut))
    empty = [m.line for m in dialog.messages if m.empty]
    if empty:
        out.append(Verdict("empty-message", f"nothing after the label on line(s) {_lines(empty)}"))
    return out


def _twin_verdicts(
    source: Dialog, twin: Dialog, s: ResolvedQuality, finish_reason: str | None
) -> list[Verdict]:
    out: list[Verdict] = []
    messages = _without_echoed_post(source, twin.messages)
    if not any(m.speaker == SOCBOT for m in messages) or not any(m.speaker == USER for m in messages):
        out.append(Verdict("restyle-no-dialog", "the restyled text has no SocBot/User messages"))
        return out
    long = [(m.line, len(m.text)) for m in messages if len(m.text) > s.max_message_chars]
    if long:
        where = ", ".join(f"line {line}: {n}" for line, n in long[:4])
        out.append(
            Verdict(
                "restyle-too-long", f"{len(long)} message(s) over {s.max_message_chars} characters ({where})"
            )
        )
    if source.has_dialog:
        src, got = [m.speaker for m in source.messages], [m.speaker for m in messages]
        if src != got:
            out.append(
                Verdict(
                    "restyle-mismatch", f"{_sequence(src)} in the conversation, {_sequence(got)} restyled"
                )
            )
        source_words = [w for m in source.messages for w in m.words]
        twin_words = [w for m in messages for w in m.words]
        if source_words and twin_words:
            similarity = _copied_share(source_words, twin_words, s.copy_similarity)
            if similarity >= s.copy_similarity:
                out.append(Verdict("restyle-copy", f"{similarity:.0%} of the words are the conversation's"))
    emoji = [(m.line, m.emoji) for m in messages if m.emoji > s.max_emoji_per_message]
    if emoji:
        where = ", ".join(f"line {line}: {n}" for line, n in emoji[:4])
        out.append(Verdict("restyle-emoji", f"more than {s.max_emoji_per_message} emoji ({where})"))
    outside = _outside(twin)
    if outside:
        out.append(Verdict("restyle-wrapper", outside))
    cut = _truncation(messages, finish_reason, strict=False)
    if cut:
        out.append(Verdict("restyle-truncated", cut))
    empty = [m.line for m in messages if m.empty]
    if empty:
        out.append(Verdict("restyle-empty-message", f"nothing after the label on line(s) {_lines(empty)}"))
    return out


def _copied_share(source: list[str], twin: list[str], at_least: float) -> float:
    """``SequenceMatcher(...).ratio()`` of the two word lists when it can reach ``at_least``, else 0.

    Its two upper bounds come first, the way difflib computes them (lengths, then the words in
    common counted as multisets); most twins fail them, and the matcher is never built for them."""
    total = len(source) + len(twin)
    if 2.0 * min(len(source), len(twin)) / total < at_least:
        return 0.0
    if 2.0 * (Counter(source) & Counter(twin)).total() / total < at_least:
        return 0.0
    return SequenceMatcher(None, source, twin, autojunk=False).ratio()


def _without_echoed_post(source: Dialog, messages: list[Message]) -> list[Message]:
    """The restyle prompt starts with "User: <post>"; a twin may repeat it before the dialog."""
    if len(messages) < 2 or messages[0].speaker != USER:
        return messages
    if source.messages and (
        source.messages[0].speaker == SOCBOT or len(messages) == len(source.messages) + 1
    ):
        return messages[1:]
    return messages


def _doubled(messages: list[Message]) -> str:
    pairs = [(a, b) for a, b in itertools.pairwise(messages) if a.speaker == b.speaker]
    if not pairs:
        return ""
    first = pairs[0]
    name = "SocBot" if first[0].speaker == SOCBOT else "User"
    more = f" (and {len(pairs) - 1} more)" if len(pairs) > 1 else ""
    return f"{name} twice in a row on lines {first[0].line} and {first[1].line}{more}"


def _repetition(messages: list[Message], s: ResolvedQuality) -> str:
    normal = [" ".join(m.words) for m in messages]
    counts = Counter(t for t in normal if len(t.split()) >= s.repeat_min_words)
    if counts:
        text, times = counts.most_common(1)[0]
        if times > s.max_message_repeats:
            return f'"{_clip(text)}" appears {times} times'
    grams: list[tuple[str, ...]] = []
    for message in messages:
        tokens = message.words
        grams += [tuple(tokens[i : i + s.repeat_ngram]) for i in range(len(tokens) - s.repeat_ngram + 1)]
        loop = _loop_share(tokens)
        if loop is not None:
            return f"line {message.line} loops: {loop:.0%} of its 3-word sequences repeat"
    if len(grams) >= 20:
        share = 1 - len(set(grams)) / len(grams)
        if share > s.max_repeated_ngram_share:
            return f"{share:.0%} of the {s.repeat_ngram}-word sequences are repeats"
    return ""


def _loop_share(tokens: list[str]) -> float | None:
    """A long message that keeps saying the same few words (a model stuck in a loop)."""
    if len(tokens) < 24:
        return None
    grams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    share = 1 - len(set(grams)) / len(grams)
    return share if share > 0.5 else None


def _outside(dialog: Dialog) -> str:
    if dialog.before:
        return f'before the dialog: "{_clip(dialog.before)}"'
    if dialog.meta:
        line, text = dialog.meta[0]
        return f'line {line}: "{_clip(text)}"'
    if dialog.after:
        return f'after the dialog: "{_clip(dialog.after)}"'
    return ""


def _truncation(messages: list[Message], finish_reason: str | None, strict: bool) -> str:
    if finish_reason == "length":
        return "the model stopped at max_tokens"
    if not messages:
        return ""
    last = messages[-1]
    text = last.text.rstrip()
    if not text:
        return ""
    tail = words(text[-40:])
    if text[-1] in ",;–—" or (tail and tail[-1] in _DANGLING and text[-1].isalpha()):
        return f'the last message (line {last.line}) stops at "…{_clip(text[-30:], 30)}"'
    if strict and not _ends_cleanly(text):
        same = [m for m in messages[:-1] if m.speaker == last.speaker and m.text.strip()]
        if len(same) >= 3 and all(_ends_cleanly(m.text.rstrip()) for m in same):
            return f'the last message (line {last.line}) ends without punctuation: "…{_clip(text[-30:], 30)}"'
    return ""


def _ends_cleanly(text: str) -> bool:
    text = text.rstrip("\ufe0f\u200d *_")
    return bool(text) and (bool(_ENDS_CLEANLY.search(text)) or is_emoji(text[-1]))


def _sequence(speakers: list[str]) -> str:
    socbot = speakers.count(SOCBOT)
    return f"{len(speakers)} messages ({socbot} SocBot, {len(speakers) - socbot} User)"


def _lines(lines: list[int]) -> str:
    return ", ".join(map(str, lines[:6])) + (" …" if len(lines) > 6 else "")


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def explain_rules(settings: ResolvedQuality | None = None) -> list[tuple[Rule, str]]:
    """Each rule with the thresholds in force, for `convogen quality --rules`."""
    settings = settings or ResolvedQuality()
    out = []
    for rule in RULES:
        tuned = ", ".join(f"{key}={getattr(settings, key)}" for key in rule.settings)
        if not settings.enabled(rule.name):
            tuned = "disabled" + (f"; {tuned}" if tuned else "")
        out.append((rule, tuned))
    return out
