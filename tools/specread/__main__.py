"""python -m tools.specread FILE.pcz --weights DIR [--salvage] [--json]: exit 0 when the
file reads (printing its accounting and symbol digest), 2 when the spec refuses it."""

from __future__ import annotations

import argparse
import json
import sys

from . import Refused, read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specread", description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--weights", action="append", default=[], help="a folder of .safetensors (repeatable)")
    parser.add_argument("--salvage", action="store_true", help="read past damage (pcz.md §7)")
    parser.add_argument("--no-symbols", action="store_true", help="container and accounting only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = read(args.file, args.weights, salvage=args.salvage, symbols=not args.no_symbols)
    except (Refused, OSError) as exc:
        print(f"specread: {args.file}: {exc}", file=sys.stderr)
        return 2
    facts = {**result.info, "symbols_sha256": result.digest,
             "lost_frames": [i for i, ok in enumerate(result.survivors) if not ok]}
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
