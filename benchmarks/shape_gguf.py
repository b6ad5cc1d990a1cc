"""Write a GGUF with a real model's shape and harmless weights, to measure speed without the weights.

    python benchmarks/shape_gguf.py OUT.gguf [--preset llama2-70b|llama2-7b|tiny] [--dense]
        [--layers N --embd N --heads N --kv-heads N --ffn N --vocab N --ctx N]

Decode speed on a GPU depends on the tensor shapes and types, not on the weight values, and real
70B weights (~38 GB) cannot reach a lent GPU machine. This writes llama.cpp's ``llama`` architecture
with every matrix Q4_0 (as a Q4_0 conversion of Llama-2-70B: same bytes read per token) and every
norm F32 ones. A Q4_0 block is an f16 scale and 16 bytes of 4-bit values; all-zero bytes mean scale
0.0, so every weight dequantizes to exactly 0: finite logits, no NaN or overflow in 80 layers.

Because the Q4_0 data is all zero bytes, it is skipped with a seek by default: the file is sparse,
written in well under a second and takes almost no disk, yet reads back as the full-size file.
``--dense`` writes the zeros (in 16 MiB chunks, never the whole tensor in memory) when the disk
should really hold them (a cold-disk load time). Prints the file size and the parameter count.
"""

from __future__ import annotations

import argparse
import os
import re
import string
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

Q4_0_BLOCK = 32  # values per block
Q4_0_BYTES = 18  # f16 scale + 16 bytes of nibbles
CHUNK = 16 * 2**20
VOCAB_FILE = Path(__file__).with_name("shape_vocab.txt")
SPACE = "\u2581"  # SentencePiece's word-initial space
GREEDY_PIECE = SPACE + "the"  # token 0: what greedy picks when every logit is equal
UNK_ID = 3
QUOTES_DASHES = "\u2019\u2018\u201c\u201d\u2014\u2013\u2026"  # ’ ‘ “ ” — – …
CHARS = SPACE + string.ascii_letters + string.digits + string.punctuation + QUOTES_DASHES
LETTERS = re.compile(r"\u0120[A-Za-z]+|[A-Za-z]{2,}")


@dataclass(frozen=True)
class Shape:
    """A Llama model's hyperparameters (what sets the speed)."""

    layers: int
    embd: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    ctx: int
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    name: str = "shape-only Llama"

    @property
    def head_dim(self) -> int:
        return self.embd // self.heads


PRESETS = {
    "llama2-70b": Shape(80, 8192, 64, 8, 28672, 32000, 4096, name="shape-only Llama-2-70B"),
    "llama2-7b": Shape(32, 4096, 32, 32, 11008, 32000, 4096, name="shape-only Llama-2-7B"),
    "tiny": Shape(2, 256, 4, 2, 512, 32000, 4096, name="shape-only tiny Llama"),
}


@dataclass(frozen=True)
class TensorPlan:
    """One tensor: its name, numpy-order shape (rows, columns), ggml type name and size in bytes."""

    name: str
    shape: tuple[int, ...]
    type: str  # "Q4_0" or "F32"
    nbytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class Layout:
    """Where everything goes: tensors in file order, header size, and the total file size."""

    shape: Shape
    tensors: list[TensorPlan]
    header_bytes: int  # magic, metadata, tensor infos and the padding before the data
    alignment: int

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def data_bytes(self) -> int:
        return sum(_pad(t.nbytes, self.alignment) for t in self.tensors)

    @property
    def file_size(self) -> int:
        return self.header_bytes + self.data_bytes


def _pad(n: int, align: int) -> int:
    return -(-n // align) * align


def tensor_plan(shape: Shape) -> list[TensorPlan]:
    """llama.cpp's tensor names for arch ``llama``; shapes in numpy order (GGUF lists them reversed)."""
    if shape.embd % shape.heads or shape.heads % shape.kv_heads:
        raise ValueError("embd must divide by heads, and heads by kv-heads")
    if shape.embd % Q4_0_BLOCK or shape.ffn % Q4_0_BLOCK:
        raise ValueError(f"embd and ffn must be multiples of {Q4_0_BLOCK} (the Q4_0 block)")
    kv = shape.kv_heads * shape.head_dim

    def q4(name: str, rows: int, cols: int) -> TensorPlan:
        return TensorPlan(name, (rows, cols), "Q4_0", rows * cols // Q4_0_BLOCK * Q4_0_BYTES)

    def norm(name: str) -> TensorPlan:
        return TensorPlan(name, (shape.embd,), "F32", shape.embd * 4)

    plan = [q4("token_embd.weight", shape.vocab, shape.embd)]
    for i in range(shape.layers):
        b = f"blk.{i}."
        plan += [
            norm(b + "attn_norm.weight"),
            q4(b + "attn_q.weight", shape.embd, shape.embd),
            q4(b + "attn_k.weight", kv, shape.embd),
            q4(b + "attn_v.weight", kv, shape.embd),
            q4(b + "attn_output.weight", shape.embd, shape.embd),
            norm(b + "ffn_norm.weight"),
            q4(b + "ffn_gate.weight", shape.ffn, shape.embd),
            q4(b + "ffn_up.weight", shape.ffn, shape.embd),
            q4(b + "ffn_down.weight", shape.embd, shape.ffn),
        ]
    plan += [norm("output_norm.weight"), q4("output.weight", shape.vocab, shape.embd)]
    return plan


def english_pieces(path: Path = VOCAB_FILE) -> list[str]:
    """The English word and word-piece list (most frequent first) that shape vocabularies are cut from."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def pieces_from_gguf(path: Path) -> list[str]:
    """Letters-only tokens of a GGUF's BPE vocabulary in merge order, with ``Ġ`` written as ``▁``.

    How ``shape_vocab.txt`` was made (from the embedded SmolLM2-135M-Instruct, Apache-2.0): a BPE
    vocabulary lists a token after the pieces it merges from, so any leading slice of this list
    can build each of its words, and SentencePiece merging by score (-rank) follows the same path.
    """
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    return [t.replace("Ġ", SPACE) for t in tokens if LETTERS.fullmatch(t)]


def _vocab(n: int, pieces: list[str] | None = None) -> tuple[list[str], list[float], list[int]]:
    """A SentencePiece vocabulary of English words and word pieces, so prompts tokenize as in Llama.

    Layout: id 0 is an ordinary word (``▁the``): with zero weights every logit is equal and greedy
    decoding picks id 0 every step, so it must decode to visible text. Then <s> </s> <unk>, the 256
    byte tokens (byte fallback for anything else), single characters, then the English pieces,
    most frequent first, scored -rank so llama.cpp merges the way the BPE that made them did. A
    vocabulary longer than the list ends in fillers that no text produces.
    """
    from gguf import TokenType

    pieces = english_pieces() if pieces is None else pieces
    head = [GREEDY_PIECE, "<s>", "</s>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.NORMAL, TokenType.CONTROL, TokenType.CONTROL, TokenType.UNKNOWN]
    types += [TokenType.BYTE] * 256
    if n < len(head) + len(CHARS) + 1:
        raise ValueError(
            f"vocab must hold at least {len(head) + len(CHARS) + 1} tokens "
            "(specials, 256 byte tokens, single characters and one more)"
        )
    rank = {p: i for i, p in enumerate(pieces)}
    seen = set(head) | set(CHARS)
    words = [p for p in pieces if p not in seen]
    tokens = head + list(CHARS) + words[: n - len(head) - len(CHARS)]
    tokens += [f"{SPACE}w{i}" for i in range(n - len(tokens))]  # no English text merges into these
    types += [TokenType.NORMAL] * (n - len(types))
    # merge priority: a piece's rank in the list (id 0's too); fillers after every real piece
    scores = [
        -1.0 - rank.get(t, len(rank) + i) if ty == TokenType.NORMAL else 0.0
        for i, (t, ty) in enumerate(zip(tokens, types, strict=True))
    ]
    return tokens, scores, [int(t) for t in types]


def _writer(path: Path, shape: Shape):
    """A GGUFWriter holding the metadata and tensor infos (no data): the header llama.cpp reads."""
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_name(shape.name)
    w.add_context_length(shape.ctx)
    w.add_embedding_length(shape.embd)
    w.add_block_count(shape.layers)
    w.add_feed_forward_length(shape.ffn)
    w.add_head_count(shape.heads)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_layer_norm_rms_eps(shape.rms_eps)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_vocab_size(shape.vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    tokens, scores, types = _vocab(shape.vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(UNK_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    for t in tensor_plan(shape):
        raw = gguf.GGMLQuantizationType[t.type]
        # a float dtype with raw_dtype keeps the shape as element counts (uint8 would mean bytes)
        w.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=raw)
    return w


def _write_header(path: Path, shape: Shape) -> tuple[object, int]:
    """Header, metadata, tensor infos and padding written to ``path``; (open file, alignment)."""
    w = _writer(path, shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())  # the data section starts aligned, as GGUFWriter does
    return fout, w.data_alignment


def layout(shape: Shape) -> Layout:
    """The file's layout and exact size without writing the weights (the header goes to a temp file)."""
    with tempfile.TemporaryDirectory() as tmp:
        fout, align = _write_header(Path(tmp) / "header.gguf", shape)
        header = fout.tell()
        fout.close()
    return Layout(shape, tensor_plan(shape), header, align)


def write_shape_gguf(path: Path, shape: Shape, dense: bool = False) -> Layout:
    """Stream the GGUF to ``path``: Q4_0 zeros (sparse unless ``dense``), F32 ones for norms."""
    path = Path(path)
    fout, align = _write_header(path, shape)
    header = fout.tell()
    plan = tensor_plan(shape)
    zeros = bytes(CHUNK) if dense else b""
    ones = np.ones(shape.embd, dtype="<f4").tobytes()
    try:
        for t in plan:
            if t.type == "F32":
                fout.write(ones)
            elif dense:
                left = t.nbytes
                while left:
                    n = min(left, CHUNK)
                    fout.write(zeros[:n] if n < CHUNK else zeros)
                    left -= n
            else:
                fout.seek(t.nbytes, os.SEEK_CUR)  # a hole: reads back as zero bytes
            pad = _pad(t.nbytes, align) - t.nbytes
            if pad and (dense or t.type == "F32"):
                fout.write(bytes(pad))
            elif pad:
                fout.seek(pad, os.SEEK_CUR)
        fout.truncate()  # the file ends where the data ends, even after a trailing hole
    finally:
        fout.close()
    out = Layout(shape, plan, header, align)
    if path.stat().st_size != out.file_size:
        raise RuntimeError(f"wrote {path.stat().st_size} bytes, expected {out.file_size}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .gguf to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="llama2-70b")
    parser.add_argument("--dense", action="store_true", help="write the zero bytes (no sparse file)")
    parser.add_argument("--dry-run", action="store_true", help="print size and parameters only")
    for flag, field in [
        ("--layers", "layers"),
        ("--embd", "embd"),
        ("--heads", "heads"),
        ("--kv-heads", "kv_heads"),
        ("--ffn", "ffn"),
        ("--vocab", "vocab"),
        ("--ctx", "ctx"),
    ]:
        parser.add_argument(flag, dest=field, type=int, help=f"override the preset's {field}")
    args = parser.parse_args(argv)
    shape = PRESETS[args.preset]
    overrides = {k: v for k, v in vars(args).items() if k in Shape.__dataclass_fields__ and v is not None}
    if overrides:
        shape = replace(shape, name=f"{shape.name} (modified)", **overrides)
    try:
        out = layout(shape) if args.dry_run else write_shape_gguf(args.out, shape, dense=args.dense)
    except ValueError as exc:
        parser.error(str(exc))
    where = "would write" if args.dry_run else "wrote"
    print(
        f"{where} {args.out}: {out.file_size:,} bytes ({out.file_size / 1e9:.2f} GB, "
        f"{out.file_size / 2**30:.2f} GiB), {out.parameter_count:,} parameters "
        f"({out.parameter_count / 1e9:.2f} B), {len(out.tensors)} tensors, "
        f"{shape.layers} layers x {shape.embd} embd, {shape.heads}/{shape.kv_heads} heads, "
        f"ffn {shape.ffn}, vocab {shape.vocab}, ctx {shape.ctx}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
