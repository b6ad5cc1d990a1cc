"""GGUF header inspection: what a model file is, without loading it.

The header is parsed straight from a memory map, using the ``gguf`` package's type tables. Its own
``GGUFReader`` builds a numpy view per vocabulary entry (1.7 s for a 100 MB file with a 49k-token
vocabulary); walking the header with ``struct`` takes a few milliseconds, and never touches the
weights, so a 40 GB file costs the same as a small one.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from convogen_tui.core.errors import ModelError, Problem

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
SMALL_ARRAY = 64  # arrays longer than this are counted, not kept (token lists, merges)
# limits a crafted or damaged header cannot get past (real files stay far below them)
MAX_DEPTH = 8  # arrays of arrays nested this deep (llama.cpp writes at most 2)
MAX_STRING = 64 * 2**20  # one metadata string (a chat template is a few KiB)
MAX_ITEMS = 2**28  # keys, tensors, or items of one array (a vocabulary is ~2**18)
MAX_DIMS = 8  # dimensions of one tensor (ggml has 4)
SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)

_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


class TensorSummary(BaseModel):
    """Totals per tensor type, for the quantization breakdown."""

    type: str
    count: int
    n_elements: int
    n_bytes: int


class GGUFInfo(BaseModel):
    """What a GGUF header says about a model (all split parts together)."""

    path: Path
    parts: list[Path]
    file_size: int
    gguf_version: int
    architecture: str
    name: str | None = None
    parameter_count: int
    quantization: str
    tensor_types: list[TensorSummary]
    weights_bytes: int
    context_length: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    embedding_length: int | None = None
    feed_forward_length: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    chat_template: str | None = None
    chat_template_family: str
    split_count: int = 1
    warnings: list[str] = []
    metadata: dict[str, Any] = {}

    @property
    def parameters_label(self) -> str:
        return format_count(self.parameter_count)


class _Header(BaseModel):
    """One file's raw header: metadata, and per-tensor (type, elements) with the data extent."""

    version: int
    metadata: dict[str, Any]
    tensors: list[tuple[str, int, int]]  # (name, ggml type, n_elements)
    data_end: int | None  # where the tensor data must end; None when a tensor type is unknown
    size: int


def _fail(path: Path, message: str, hint: str | None = None) -> ModelError:
    return ModelError(Problem(path, message, hint=hint))


class _Cursor:
    """Sequential reads over a memory map; running off the end means the file is truncated."""

    def __init__(self, buf: mmap.mmap | bytes, endian: str) -> None:
        self.buf = buf
        self.pos = 0
        self.endian = endian

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise EOFError
        value = struct.unpack_from(self.endian + fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def count(self, what: str, item_size: int = 1) -> int:
        """A count read from the file, checked against the limits and the bytes left."""
        n = self.unpack("Q")
        if n > MAX_ITEMS:
            raise ValueError(f"{what} count {n:,} is beyond any real model")
        if n * item_size > len(self.buf) - self.pos:
            raise EOFError
        return int(n)

    def string(self) -> str:
        n = self.unpack("Q")
        if n > MAX_STRING:
            raise ValueError(f"a metadata string of {n:,} bytes")
        if self.pos + n > len(self.buf):
            raise EOFError
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.unpack("Q")
        if n > MAX_STRING:
            raise ValueError(f"a metadata string of {n:,} bytes")
        self.pos += n
        if self.pos > len(self.buf):
            raise EOFError

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            if depth >= MAX_DEPTH:
                raise ValueError(f"metadata arrays nested more than {MAX_DEPTH} deep")
            item_type = self.unpack("I")
            size = _min_size(item_type)
            count = self.count("array item", size)
            if count <= SMALL_ARRAY:
                return [self.value(item_type, depth + 1) for _ in range(count)]
            if item_type in _SCALARS:
                self.pos += count * size
            elif item_type == _STRING:
                for _ in range(count):
                    self.skip_string()
            else:
                for _ in range(count):
                    self.value(item_type, depth + 1)
            return _LongArray(count=count)
        raise ValueError(f"unknown metadata value type {vtype}")


def _min_size(vtype: int) -> int:
    """The fewest bytes one value can take: a scalar's size, a string's or an array's length fields."""
    if vtype in _SCALARS:
        return struct.calcsize(_SCALARS[vtype])
    return 8 if vtype == _STRING else 12


class _LongArray(BaseModel):
    """Stands for an array too long to keep (only its length matters here)."""

    count: int


def _read_header(path: Path) -> _Header:
    """One file's header; any problem with the file is a ModelError naming it (never a crash)."""
    try:
        return _parse_header(path)
    except ModelError:
        raise
    except FileNotFoundError:
        raise _fail(path, "model file not found") from None
    except IsADirectoryError:
        raise _fail(path, "is a folder, not a GGUF file") from None
    except OSError as exc:
        raise _fail(path, f"cannot read the model file ({exc.strerror or exc})") from None
    except Exception as exc:  # a header no limit foresaw: still one line for this file
        raise _fail(path, f"damaged GGUF header ({type(exc).__name__}: {exc})") from None


def _parse_header(path: Path) -> _Header:
    size = path.stat().st_size
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        hint = "llama.cpp reads .gguf files; download a GGUF conversion or convert the model"
        if magic[:1] == b"{" or magic == b"PK\x03\x04" or path.suffix in {".safetensors", ".bin"}:
            hint = "this looks like a transformers checkpoint; " + hint
        raise _fail(path, "not a GGUF file", hint=hint)
    if size < 24:
        raise _fail(
            path,
            f"truncated GGUF: the header is cut off ({size} bytes)",
            hint="the download is incomplete; pull it again",
        )
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        endian = "<"
        version = struct.unpack_from("<I", buf, 4)[0]
        if version & 0xFFFF == 0:  # a big-endian file reads as a huge version number
            endian, version = ">", struct.unpack_from(">I", buf, 4)[0]
        if version < 2:
            raise _fail(
                path,
                f"GGUF version {version} is too old for llama.cpp",
                hint="re-convert the model with a current llama.cpp",
            )
        cur = _Cursor(buf, endian)
        cur.pos = 8
        try:
            n_tensors = cur.count("tensor", 24)
            n_kv = cur.count("metadata key", 12)
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = cur.string()
                metadata[key] = cur.value(cur.unpack("I"))
            tensors: list[tuple[str, int, int]] = []
            data_extent: int | None = 0
            for _ in range(n_tensors):
                name = cur.string()
                n_dims = cur.unpack("I")
                if n_dims > MAX_DIMS:
                    raise ValueError(f"tensor {name[:40]!r} has {n_dims} dimensions")
                n_elements = 1
                for _ in range(n_dims):
                    n_elements *= cur.unpack("Q")
                ttype = cur.unpack("I")
                offset = cur.unpack("Q")
                tensors.append((name, ttype, n_elements))
                nbytes = _tensor_bytes(ttype, n_elements)
                if nbytes is None or data_extent is None:
                    data_extent = None
                else:
                    data_extent = max(data_extent, offset + nbytes)
        except EOFError:
            raise _fail(
                path,
                f"truncated GGUF: the header is cut off ({size} bytes)",
                hint="the download is incomplete; pull it again",
            ) from None
        except (ValueError, UnicodeDecodeError, OverflowError, MemoryError, RecursionError) as exc:
            raise _fail(path, f"damaged GGUF header ({exc})") from None
        alignment = int(metadata.get("general.alignment") or DEFAULT_ALIGNMENT)
        data_start = -(-cur.pos // alignment) * alignment
        data_end = None if data_extent is None else data_start + data_extent
        return _Header(version=version, metadata=metadata, tensors=tensors, data_end=data_end, size=size)


def _tensor_bytes(ttype: int, n_elements: int) -> int | None:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ValueError, KeyError):
        return None
    return n_elements // block * type_size


def _type_name(ttype: int) -> str:
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType(ttype).name
    except ValueError:
        return f"type{ttype}"


def split_parts(path: Path) -> list[Path]:
    """All parts of a split GGUF (``-00001-of-00003.gguf``) named like ``path``, else [path]."""
    match = SPLIT_NAME.match(path.name)
    if not match:
        return [path]
    count = int(match["count"])
    return [path.with_name(f"{match['prefix']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header of a GGUF file (all parts of a split one); ModelError for a bad file.

    Whatever a damaged or crafted file holds, the answer is a GGUFInfo or one ModelError naming it.
    """
    try:
        return _read_gguf_info(Path(path))
    except ModelError:
        raise
    except Exception as exc:
        raise _fail(Path(path), f"damaged GGUF metadata ({type(exc).__name__}: {exc})") from None


def _part_warnings(parts: list[Path], headers: list[_Header], meta: dict[str, Any]) -> list[str]:
    """A truncated part is an error; what could not be checked, or disagrees, is a warning."""
    warnings: list[str] = []
    for part, header in zip(parts, headers, strict=True):
        if header.data_end is not None and header.size < header.data_end:
            raise _fail(
                part,
                f"truncated GGUF: {header.size:,} bytes of the {header.data_end:,} its header describes",
                hint="the file is incomplete; pull it again",
            )
        if header.data_end is None:
            warnings.append(
                f"{part.name}: a tensor type unknown to gguf {_gguf_version()}; size check skipped"
            )
    declared = meta.get("split.count")
    if isinstance(declared, int) and declared != len(parts):
        warnings.append(f"header says {declared} split parts, found {len(parts)} by name")
    return warnings


def _tensor_types(headers: list[_Header]) -> list[TensorSummary]:
    """Tensors by type over every part (count, elements, bytes), the largest first."""
    by_type: dict[int, list[int]] = {}
    for header in headers:
        for _name, ttype, n in header.tensors:
            entry = by_type.setdefault(ttype, [0, 0, 0])
            entry[0] += 1
            entry[1] += n
            entry[2] += _tensor_bytes(ttype, n) or 0
    return sorted(
        (
            TensorSummary(type=_type_name(t), count=c, n_elements=n, n_bytes=b)
            for t, (c, n, b) in by_type.items()
        ),
        key=lambda s: -s.n_bytes,
    )


def _read_gguf_info(path: Path) -> GGUFInfo:
    import gguf

    parts = split_parts(path)
    if len(parts) > 1 and path != parts[0]:
        path = parts[0]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise _fail(
            path,
            f"split GGUF is missing {len(missing)} of {len(parts)} parts: "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}",
            hint="pull the model again to fetch every part",
        )
    headers = [_read_header(p) for p in parts]
    first = headers[0]
    meta = first.metadata
    warnings = _part_warnings(parts, headers, meta)

    arch = str(meta.get("general.architecture") or "unknown")
    if arch not in set(gguf.MODEL_ARCH_NAMES.values()):
        warnings.append(
            f"unknown architecture '{arch}' (not in gguf {_gguf_version()}); llama.cpp may not load it"
        )

    tensor_types = _tensor_types(headers)

    def num(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        if isinstance(value, list) and value:  # per-layer values (e.g. OpenELM): the largest
            value = max(value)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    n_heads, n_embd = num("attention.head_count"), num("embedding_length")
    head_dim = num("attention.key_length") or (n_embd // n_heads if n_heads and n_embd else None)
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = tokens.count if isinstance(tokens, _LongArray) else len(tokens) if tokens else None
    template = meta.get("tokenizer.chat_template")
    template = template if isinstance(template, str) else None
    name = meta.get("general.name")
    return GGUFInfo(
        path=path.resolve(),
        parts=[p.resolve() for p in parts],
        file_size=sum(h.size for h in headers),
        gguf_version=first.version,
        architecture=arch,
        name=str(name) if name else None,
        parameter_count=sum(t.n_elements for t in tensor_types),
        quantization=_quantization(meta.get("general.file_type"), tensor_types),
        tensor_types=tensor_types,
        weights_bytes=sum(t.n_bytes for t in tensor_types),
        context_length=num("context_length"),
        n_layers=num("block_count"),
        n_heads=n_heads,
        n_kv_heads=num("attention.head_count_kv") or n_heads,
        embedding_length=n_embd,
        feed_forward_length=num("feed_forward_length"),
        head_dim=head_dim,
        vocab_size=vocab or num("vocab_size"),
        chat_template=template,
        chat_template_family=chat_template_family(template, str(name or path.name)),
        split_count=len(parts),
        warnings=warnings,
        metadata={
            k: v for k, v in meta.items() if not isinstance(v, _LongArray) and k != "tokenizer.chat_template"
        },
    )


def _gguf_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gguf")
    except PackageNotFoundError:
        return "?"


def _quantization(file_type: Any, tensor_types: list[TensorSummary]) -> str:
    """The llama.cpp file type (Q4_K_M...), else the type holding most of the weight bytes."""
    from gguf import LlamaFileType

    if isinstance(file_type, int):
        try:
            return LlamaFileType(file_type & ~1024).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    counts = Counter({t.type: t.n_bytes for t in tensor_types})
    return counts.most_common(1)[0][0] if counts else "unknown"


def chat_template_family(template: str | None, name: str = "") -> str:
    """A short name for the prompt format a chat template produces."""
    if not template:
        lowered = name.lower().replace("_", "-").replace(" ", "-")
        if ("llama-2" in lowered or "llama2" in lowered) and "chat" in lowered:
            return "llama2 (by name, no template)"
        return "none"
    checks = [
        ("<<SYS>>", "llama2"),
        ("<|start_header_id|>", "llama3"),
        ("<|im_start|>", "chatml"),
        ("<start_of_turn>", "gemma"),
        ("[INST]", "mistral"),
        ("<|user|>", "zephyr/phi3"),
        ("<|User|>", "deepseek"),
        ("### Instruction", "alpaca"),
        ("<|START_OF_TURN_TOKEN|>", "command-r"),
    ]
    for marker, family in checks:
        if marker in template:
            return family
    return "custom"


def format_count(n: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}".replace(".0" + unit, unit)
    return str(n)


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


COMPUTE_UBATCH = 512  # llama.cpp's default micro-batch: sets the size of the compute buffers
RUNTIME_OVERHEAD = 400 * 2**20  # CUDA context, cuBLAS workspace: measured ~0.3-0.5 GiB per GPU


class MemoryEstimate(BaseModel):
    """GPU memory to offload every layer at a given context, in bytes."""

    n_ctx: int
    weights: int
    kv_cache: int
    scratch: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.scratch

    def describe(self) -> str:
        return (
            f"weights {format_bytes(self.weights)} + KV {format_bytes(self.kv_cache)} at ctx "
            f"{self.n_ctx} + scratch {format_bytes(self.scratch)} = {format_bytes(self.total)}"
        )


def estimate_memory(info: GGUFInfo, n_ctx: int) -> MemoryEstimate:
    """Full-offload estimate: weights + f16 KV cache + compute buffers and runtime overhead.

    KV: 2 (K and V) x layers x ctx x KV heads x head size x 2 bytes (f16). Scratch: llama.cpp's
    compute buffer holds a micro-batch's logits and attention scores (without flash attention).
    """
    layers, kv_heads, head_dim = info.n_layers or 0, info.n_kv_heads or 0, info.head_dim or 0
    kv = 2 * layers * n_ctx * kv_heads * head_dim * 2
    vocab, heads = info.vocab_size or 0, info.n_heads or 0
    width = max(info.embedding_length or 0, info.feed_forward_length or 0)
    compute = 4 * COMPUTE_UBATCH * (vocab + n_ctx * heads + 4 * width)
    return MemoryEstimate(
        n_ctx=n_ctx, weights=info.weights_bytes, kv_cache=kv, scratch=compute + RUNTIME_OVERHEAD
    )


def verify_gguf_file(path: Path, label: Path | None = None) -> None:
    """Check one file (a single part) is a whole GGUF: header parses, data as long as it says."""
    try:
        header = _read_header(path)
    except ModelError as exc:
        problem = exc.problems[0] if exc.problems else Problem(path, str(exc))
        raise ModelError(Problem(label or path, problem.message, hint=problem.hint)) from None
    if header.data_end is not None and header.size < header.data_end:
        raise _fail(
            label or path,
            f"truncated GGUF: {header.size:,} bytes of the {header.data_end:,} its header describes",
            hint="pull it again",
        )
