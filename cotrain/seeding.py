"""Seeds that are the same in every process: every random choice derives from explicit parts.

Python's ``hash()`` of a string is salted per process, so it must never seed anything that ranks,
dataloader workers or a resumed run have to agree on; ``stable_seed`` hashes with CRC32 instead.
"""

from __future__ import annotations

import zlib
from typing import Any


def stable_seed(*parts: Any) -> int:
    """A 64-bit seed from strings/ints that is the same in every process (unlike ``hash``)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return (zlib.crc32(text) << 32) | zlib.crc32(text[::-1])
