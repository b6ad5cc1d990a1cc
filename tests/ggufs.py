"""Small real GGUF files for tests, written with the ``gguf`` package (a llama-shaped toy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_gguf(
    path: Path,
    arch: str = "llama",
    n_layers: int = 4,
    split_max_tensors: int = 0,
    name: str = "toy",
) -> list[Path]:
    """Write a tiny llama-like GGUF (split into parts when asked); the files written."""
    import gguf

    writer = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    writer.add_name(name)
    writer.add_context_length(2048)
    writer.add_block_count(n_layers)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_chat_template("{% for m in messages %}[INST] <<SYS>>{{ m.content }}{% endfor %}")
    writer.add_tensor("token_embd.weight", np.ones((100, 64), dtype=np.float32))
    for layer in range(n_layers):
        writer.add_tensor(f"blk.{layer}.attn_q.weight", np.ones((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split_max_tensors:
        return sorted(path.parent.glob(path.stem + "-*-of-*.gguf"))
    return [path]
