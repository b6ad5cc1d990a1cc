"""``convogen models pull``: GGUF files from the Hugging Face Hub into the project's ``models/``.

Listing and file metadata go through ``huggingface_hub`` (so ``HF_ENDPOINT``, ``HF_TOKEN``, proxies
and the stored login work as everywhere else). The bytes are fetched here rather than with
``hf_hub_download``, because since huggingface_hub 1.x that deletes its partial file when a
download fails: a 40 GB pull cut at 90 % would start again from zero. Here the partial file stays
in ``models/.downloads/`` (hidden, named by ETag) and the next pull continues with an HTTP Range
request; the finished file is checked (size, sha256, GGUF header) and only then moved into place,
so nothing incomplete ever appears among the models.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from convogen_tui.core.errors import ModelError, Problem
from convogen_tui.core.keeping.redact import register_secret
from convogen_tui.llm.catalog import SEP
from convogen_tui.llm.gguf_info import SPLIT_NAME, verify_gguf_file

CHUNK = 1 << 20
DISK_MARGIN = 64 << 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")
DOWNLOADS = ".downloads"

# progress(filename, bytes_done, bytes_total); called often, from the downloading thread
Progress = Callable[[str, int, int], None]


class RemoteGGUF(BaseModel):
    """One model in a hub repo: a single .gguf, or all the parts of a split one."""

    filename: str  # the first part for a split model
    parts: list[str]
    size: int | None
    quantization: str | None


def hub_endpoint() -> str:
    """``$HF_ENDPOINT`` read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def models_target(project_root: Path | None) -> Path:
    """Where pulls go: the first ``$CONVOGEN_MODELS`` folder, else ``<project>/models``."""
    env = os.environ.get("CONVOGEN_MODELS")
    if env:
        first = next((p for p in env.split(os.pathsep) if p), None)
        if first:
            return Path(first).expanduser()
    return (project_root or Path.cwd()) / "models"


def _quant_names() -> list[str]:
    from gguf import GGMLQuantizationType, LlamaFileType

    names = {t.name.removeprefix("MOSTLY_").removeprefix("ALL_") for t in LlamaFileType}
    names |= {t.name for t in GGMLQuantizationType}
    names.discard("GUESSED")
    return sorted(names, key=len, reverse=True)


def quant_from_name(filename: str) -> str | None:
    """The quantization written in a file name (``llama-2-70b-chat.Q4_K_M.gguf`` -> ``Q4_K_M``)."""
    stem = Path(filename).name
    for name in _quant_names():
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", stem, re.I):
            return name
    return None


def group_gguf_files(files: dict[str, int | None]) -> list[RemoteGGUF]:
    """Repo files (name -> size) as models: split parts folded into their first part."""
    models: dict[str, RemoteGGUF] = {}
    for name in sorted(files):
        if not name.lower().endswith(".gguf"):
            continue
        match = SPLIT_NAME.match(Path(name).name)
        key = name
        if match:
            folder = name[: len(name) - len(Path(name).name)]
            key = f"{folder}{match['prefix']}-00001-of-{match['count']}.gguf"
        entry = models.setdefault(
            key, RemoteGGUF(filename=key, parts=[], size=0, quantization=quant_from_name(key))
        )
        entry.parts.append(name)
        size = files[name]
        entry.size = None if size is None or entry.size is None else entry.size + size
    return list(models.values())


def hub_problem(message: str, hint: str) -> ModelError:
    """A one-line hub error with what to do about it."""
    return ModelError(Problem(None, message, hint=hint))


@contextmanager
def hub_errors(repo_id: str, filename: str | None = None, revision: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one-line messages saying what to do."""
    import httpx2
    from huggingface_hub import get_token
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    register_secret(get_token(), "HF_TOKEN")  # also a token saved by `hf auth login`, not only $HF_TOKEN
    endpoint = hub_endpoint()
    try:
        yield
    except GatedRepoError:
        raise hub_problem(
            f"{repo_id} is gated on {endpoint}",
            f"accept its license at {endpoint}/{repo_id} and set HF_TOKEN to a token of that account",
        ) from None
    except RepositoryNotFoundError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise hub_problem(
                f"repository {repo_id} not found on {endpoint}, or it is private (401 unauthorized)",
                "check OWNER/REPO; for a private repo set HF_TOKEN",
            ) from None
        raise hub_problem(
            f"repository {repo_id} not found on {endpoint} (404)",
            f"check OWNER/REPO, or search GGUF builds: "
            f"{endpoint}/models?search={repo_id.split('/')[-1]}+gguf",
        ) from None
    except RevisionNotFoundError:
        raise hub_problem(
            f"revision '{revision}' not found in {repo_id}",
            "use a branch, tag or commit of the repo, or leave out --revision",
        ) from None
    except RemoteEntryNotFoundError:
        raise hub_problem(
            f"{repo_id} has no file {filename}", f"see its GGUF files with: convogen models pull {repo_id}"
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise hub_problem(
                f"{endpoint} refused the token in HF_TOKEN (401)",
                "set HF_TOKEN to a valid token, or unset it",
            ) from None
        raise hub_problem(f"the hub answered {status} for {repo_id}", "try again later") from None
    except OfflineModeIsEnabled:
        raise hub_problem("HF_HUB_OFFLINE is set, so nothing can be pulled", "unset HF_HUB_OFFLINE") from None
    except httpx2.TransportError as exc:
        raise hub_problem(
            f"cannot reach {endpoint} ({type(exc).__name__}: {exc})",
            "check the network, a proxy, or HF_ENDPOINT",
        ) from None


def list_repo_ggufs(repo_id: str, revision: str | None = None) -> list[RemoteGGUF]:
    """The repo's GGUF models with sizes; a repo without any gets a message naming conversions."""
    from huggingface_hub import HfApi

    with hub_errors(repo_id, revision=revision):
        info = HfApi(endpoint=hub_endpoint()).model_info(repo_id, revision=revision, files_metadata=True)
    files = {s.rfilename: s.size for s in info.siblings or []}
    models = group_gguf_files(files)
    if not models:
        kind = (
            "a transformers checkpoint"
            if any(n.endswith((".safetensors", ".bin", "config.json")) for n in files)
            else "no model file"
        )
        name = repo_id.split("/")[-1]
        raise ModelError(
            Problem(
                None,
                f"{repo_id} has no GGUF file ({kind}); llama.cpp needs a GGUF conversion",
                hint=f"search {hub_endpoint()}/models?search={name}+gguf and pull "
                "OWNER/REPO:FILE.gguf from one, e.g. "
                "TheBloke/Llama-2-70B-Chat-GGUF:llama-2-70b-chat.Q4_K_M.gguf",
            )
        )
    return models


def choose_remote(models: list[RemoteGGUF], wanted: str, repo_id: str) -> RemoteGGUF:
    """The model a FILE argument names: a file name, any split part, or a quant such as Q4_K_M."""
    for model in models:
        if wanted in model.parts or wanted == model.filename:
            return model
    by_quant = [m for m in models if (m.quantization or "").lower() == wanted.lower()]
    if len(by_quant) == 1:
        return by_quant[0]
    names = ", ".join(m.filename for m in models[:8])
    raise ModelError(Problem(None, f"{repo_id} has no GGUF file '{wanted}'", hint=f"choose one of: {names}"))


def pull(
    repo_id: str,
    model: RemoteGGUF,
    models_dir: Path,
    revision: str | None = None,
    progress: Progress | None = None,
    retries: int = 4,
    retry_wait: float = 1.0,
) -> Path:
    """Download every part of ``model`` into ``models_dir/<owner>__<repo>/``; returns part 1."""
    target = models_dir / repo_id.replace("/", SEP)
    paths = [
        _pull_file(repo_id, part, target, models_dir / DOWNLOADS, revision, progress, retries, retry_wait)
        for part in model.parts
    ]
    return paths[0]


def _pull_file(
    repo_id: str,
    filename: str,
    target: Path,
    downloads: Path,
    revision: str | None,
    progress: Progress | None,
    retries: int,
    retry_wait: float,
) -> Path:
    from filelock import FileLock, Timeout
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    endpoint = hub_endpoint()
    dest = target / filename
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    with hub_errors(repo_id, filename, revision):
        meta = get_hf_file_metadata(url, endpoint=endpoint)
    size, etag = meta.size, (meta.etag or "").strip('"')
    if dest.is_file() and size is not None and dest.stat().st_size == size:
        if progress:
            progress(filename, size, size)
        return dest  # pulled before
    partial_dir = downloads / repo_id.replace("/", SEP)
    partial_dir.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^\w]", "", etag)[:16] or "noetag"
    partial = partial_dir / f"{filename.replace('/', SEP)}.{tag}.part"
    for stale in partial_dir.glob(f"{filename.replace('/', SEP)}.*.part"):
        if stale != partial:  # the file changed on the hub: its old bytes are useless
            stale.unlink(missing_ok=True)
    headers = build_hf_headers()
    if urlsplit(meta.location).netloc != urlsplit(endpoint).netloc:
        headers.pop("authorization", None)  # a signed CDN url must not get the token
    lock = FileLock(str(partial) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ModelError(
            Problem(dest, "another convogen pull is downloading this file", hint="wait for it to finish")
        ) from None
    try:
        _download(meta.location, headers, partial, size, etag, filename, progress, retries, retry_wait)
        try:
            verify_gguf_file(partial, label=dest)
        except ModelError:
            partial.unlink(missing_ok=True)  # complete but not a usable GGUF: never keep it
            raise
        target.mkdir(parents=True, exist_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, dest)
    finally:
        lock.release()
        Path(str(partial) + ".lock").unlink(missing_ok=True)
    return dest


def _download(
    url: str,
    headers: dict[str, str],
    partial: Path,
    size: int | None,
    etag: str,
    filename: str,
    progress: Progress | None,
    retries: int,
    retry_wait: float,
) -> None:
    """Fetch ``url`` into ``partial``, continuing from its length; retries transient failures."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import get_session, hf_raise_for_status

    have, hasher = _resume_from(partial, size, etag)
    _check_space(partial, size, have, filename)
    failures = 0
    reported = have
    while size is None or have < size:
        request = dict(headers)
        if have:
            request["Range"] = f"bytes={have}-"
        before = have
        try:
            with get_session().stream(
                "GET",
                url,
                headers=request,
                follow_redirects=True,
                timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT,
            ) as response:
                if response.status_code == 416 and size is not None and have == size:
                    break
                hf_raise_for_status(response)
                mode = "ab"
                if have and response.status_code != 206:  # the server ignored Range: start over
                    have, mode = 0, "wb"
                    hasher = hashlib.sha256() if hasher else None
                elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                    wrong = f"the hub resumed {filename} at the wrong offset"
                    raise ModelError(Problem(None, wrong, hint="pull again"))
                with partial.open(mode) as out:
                    # pieces as they arrive: on a cut, every byte received is kept
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        if hasher:
                            hasher.update(chunk)
                        have += len(chunk)
                        if progress and have - reported >= CHUNK:
                            reported = have
                            progress(filename, have, size or have)
            if size is None:
                size = have
        except (httpx2.TransportError, HfHubHTTPError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if isinstance(exc, HfHubHTTPError) and (status is None or status < 500):
                raise
            failures = 0 if have > before else failures + 1
            if failures > retries:
                raise _interrupted(exc, filename, have, size, partial) from None
            time.sleep(retry_wait * failures)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise ModelError(
                    Problem(
                        partial.parent,
                        f"disk full while downloading {filename} ({have / 1e9:.2f} GB kept)",
                        hint="free some space, then run the same pull again to resume",
                    )
                ) from None
            raise
    if progress:
        progress(filename, have, size or have)
    _verify(hasher, etag, partial, filename)


def _interrupted(exc: Exception, filename: str, have: int, size: int | None, partial: Path) -> ModelError:
    """A download that kept failing: where it stopped, and that pulling again resumes it."""
    return ModelError(
        Problem(
            None,
            f"download of {filename} interrupted at {have / 1e9:.2f} of "
            f"{(size or 0) / 1e9:.2f} GB ({type(exc).__name__})",
            hint=f"run the same pull again to resume; the partial file is kept in {partial.parent}",
        )
    )


def _resume_from(partial: Path, size: int | None, etag: str) -> tuple[int, Any]:
    """The bytes kept from an earlier try (none if too many) and the checksum so far, if the hub
    gives one (a sha256 etag)."""
    hasher = hashlib.sha256() if SHA256.match(etag) else None
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()
        have = 0
    if hasher and have:
        with partial.open("rb") as handle:  # the kept bytes count towards the checksum
            while block := handle.read(CHUNK * 8):
                hasher.update(block)
    return have, hasher


def _check_space(partial: Path, size: int | None, have: int, filename: str) -> None:
    """Refuse to start a download the disk cannot hold (with a margin)."""
    if size is None:
        return
    free = shutil.disk_usage(partial.parent).free
    if free < size - have + DISK_MARGIN:
        raise ModelError(
            Problem(
                partial.parent,
                f"not enough disk space for {filename}: needs {(size - have) / 1e9:.1f} GB "
                f"more, {free / 1e9:.1f} GB free",
                hint="free some space or set CONVOGEN_MODELS to a larger disk, then pull again",
            )
        )


def _verify(hasher: Any, etag: str, partial: Path, filename: str) -> None:
    """A file whose sha256 is not the hub's is removed: it is damaged."""
    if hasher and hasher.hexdigest() != etag:
        partial.unlink(missing_ok=True)
        raise ModelError(
            Problem(
                None,
                f"{filename} arrived damaged (sha256 mismatch); removed it",
                hint="run the pull again",
            )
        )
