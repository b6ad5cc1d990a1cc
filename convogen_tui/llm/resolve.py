"""Model references: what ``llm`` in expt-setup.json and ``--model`` may name, turned into a file.

Accepted: nothing or ``default`` (the embedded model), a local ``.gguf`` path, a hub reference
``owner/repo:file.gguf`` (found in ``models/``, ``$CONVOGEN_MODELS`` or the Hugging Face cache once
pulled). A transformers id such as ``meta-llama/Llama-2-70b-chat-hf`` is explained, not crashed on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.llm.embedded import EMBEDDED_NAMES, embedded_model_path

HUB_REF = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+):(?P<file>[^:]+\.gguf)$", re.I)
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    filename: str

    def __str__(self) -> str:
        return f"{self.repo_id}:{self.filename}"


def parse_hub_ref(ref: str) -> HubRef | None:
    match = HUB_REF.match(ref.strip())
    return HubRef(match["repo"], match["file"]) if match else None


def models_dirs(project_root: Path | None = None) -> list[Path]:
    """Where local GGUF files are looked for, in order."""
    dirs: list[Path] = []
    env = os.environ.get("CONVOGEN_MODELS")
    if env:
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    if project_root is not None:
        dirs.append(project_root / "models")
    dirs.append(Path.cwd() / "models")
    return list(dict.fromkeys(d.resolve() for d in dirs))


def resolve_model(ref: str | None, base: Path | None = None, project_root: Path | None = None) -> Path:
    """The GGUF file a reference names; ModelError with what to do when it cannot be found."""
    if ref is None or ref.strip().lower() in EMBEDDED_NAMES or not ref.strip():
        return embedded_model_path()
    ref = ref.strip()
    hub = parse_hub_ref(ref)
    if hub is not None:
        found = find_pulled(hub, project_root)
        if found is not None:
            return found
        raise ModelError(
            Problem(
                None,
                f"model {hub} is not downloaded",
                hint=f"run: convogen models pull {hub}",
            )
        )
    path = Path(ref).expanduser()
    candidates = [path] if path.is_absolute() else []
    if not path.is_absolute():
        for root in [base, project_root, Path.cwd(), *models_dirs(project_root)]:
            if root is not None:
                candidates.append(root / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    if path.suffix.lower() == ".gguf":
        raise ModelError(
            Problem(
                None,
                f"model file not found: {ref}",
                hint="check the path, or fetch one with: convogen models pull OWNER/REPO:FILE.gguf",
            )
        )
    if REPO_ID.match(ref):
        raise ModelError(
            Problem(
                None,
                f"'{ref}' is a Hugging Face transformers model id; llama.cpp needs a GGUF file",
                hint=(
                    "download a GGUF conversion, e.g. "
                    "convogen models pull TheBloke/Llama-2-70B-Chat-GGUF:llama-2-70b-chat.Q4_K_M.gguf, "
                    'then set "llm" to that reference or to the local .gguf path'
                ),
            )
        )
    raise ModelError(
        Problem(
            None,
            f"cannot read model reference '{ref}'",
            hint="use 'default', a path to a .gguf file, or OWNER/REPO:FILE.gguf",
        )
    )


def find_pulled(hub: HubRef, project_root: Path | None = None) -> Path | None:
    """A pulled hub file in the models folders or the Hugging Face cache, without any network."""
    name = Path(hub.filename).name
    for folder in models_dirs(project_root):
        for candidate in (folder / hub.repo_id.replace("/", "__") / hub.filename, folder / name):
            if candidate.is_file():
                return candidate.resolve()
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hub.repo_id, hub.filename)
    except Exception:  # an unreadable cache is the same as an empty one here
        return None
    return Path(cached) if isinstance(cached, str) else None
