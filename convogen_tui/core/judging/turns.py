"""Reading a generated conversation: which lines open a SocBot or a User message.

Models write speakers in many ways ("SocBot:", "**User:**", "1. User:", "Tweet 3 - User:",
"1/8 SocBot:", "SocBot (replies):"); the
review table's turn counts and the app's colouring both use this one reading.
"""

from __future__ import annotations

import re

# optional bullet, "Tweet"/"Reply"/... and a number ("1.", "1/8", "Tweet 3 -"), the speaker, up to
# 24 characters of aside, then a colon
SPEAKER = re.compile(
    r"^\W*(?:(?:tweet|reply|post|message|msg|turn)\s*)?(?:\d+(?:\s*/\s*\d+)?\s*[.):/\]-]?\s*)?"
    r"\W*(socbot|user)\b[^:\n]{0,24}:",
    re.I,
)


def speaker_of(line: str) -> str | None:
    """'socbot' or 'user' if the line opens a message, else None."""
    match = SPEAKER.match(line)
    return match.group(1).lower() if match else None


def split_turns(text: str) -> list[tuple[str, str]]:
    """(speaker, text) blocks; text before the first speaker line is speaker 'other'."""
    blocks: list[tuple[str, str]] = []
    for line in text.splitlines(keepends=True):
        speaker = speaker_of(line)
        if speaker or not blocks:
            blocks.append((speaker or "other", line))
        else:
            previous_speaker, previous = blocks[-1]
            blocks[-1] = (previous_speaker, previous + line)
    return blocks


def count_turns(conv: str) -> tuple[int, int]:
    """(SocBot messages, User messages): a turn is a SocBot message and the User's reply."""
    socbot = user = 0
    for line in conv.splitlines():
        speaker = speaker_of(line)
        socbot += speaker == "socbot"
        user += speaker == "user"
    return socbot, user
