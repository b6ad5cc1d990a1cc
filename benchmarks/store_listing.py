"""How long listing an experiment's conversations takes, cold (no index) and warm (index).

    python benchmarks/store_listing.py [--n 10000]

Writes N conversation files into a temporary experiment, then times ConversationStore.list():
the first listing reads every file and builds .convogen/index.json; later listings (also from a
new process, simulated by a new store object) only stat the files. Prints seconds and the ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

from convogen_tui.core.keeping.store import ConversationStore

CONV = "\n".join(f"SocBot: a considered reply number {i}.\nUser: a reply {i}" for i in range(8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        expt = Path(tmp)
        (expt / "conversations").mkdir()
        (expt / "restyled-conversations").mkdir()
        for i in range(args.n):
            name = f"{uuid.uuid4()}.json"
            record = {
                "tweet_id": str(i),
                "disposition": "d",
                "motivation": "m",
                "tweet": "t" * 120,
                "conv": CONV,
                "persona": {"motivation": "distrust", "disposition": "cynical"},
                "provenance": {"created_at": 1.7e9 + i},
            }
            (expt / "conversations" / name).write_text(json.dumps(record))
            if i % 2:
                (expt / "restyled-conversations" / name).write_text('{"restyled_conv": "x"}')
        t0 = time.perf_counter()
        rows = ConversationStore(expt).list()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = ConversationStore(expt).list()
        warm = time.perf_counter() - t0
        assert len(rows) == args.n
        print(f"conversations: {args.n}")
        print(f"cold listing (reads every file, builds index): {cold:.3f} s")
        print(f"warm listing (new store, index on disk):       {warm:.3f} s")
        print(f"cold/warm={cold / warm:.2f}")


if __name__ == "__main__":
    main()
