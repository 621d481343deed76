#!/usr/bin/env python3
"""Make a stopped jraid journal list N stripes of a volume, as if a crash had left them dirty:

    forge_listed.py JOURNAL_FILE VOLUME_NUMBER N STRIPES

Writes a checkpoint record (format 2) one generation above the newest valid one, at the start of
the area the newest chain is not in, listing N stripes spread evenly over the volume's STRIPES.
For the time-to-serve benchmark (the next start must resync exactly those stripes); never on a
volume whose data matters more than a resync of what it lists."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "spdk"))
from scrub import SLOTS, crc32c, read_area  # noqa: E402


def main():
    path, volume, n, stripes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    assert 0 < n <= stripes, "N must be 1..STRIPES"
    with open(path, "r+b") as f:
        sb = f.read(4096)
        assert sb[:8] == b"JRAIDJSB", "no journal superblock"
        uuid = sb[24:40]
        bs, = struct.unpack_from("<I", sb, 40)
        slot_bytes, = struct.unpack_from("<Q", sb, 48)
        best = (0, -1)
        for k in range(2):
            f.seek(SLOTS + k * slot_bytes)
            got = read_area(f.read(slot_bytes), uuid, k, bs)
            if got is not None and got[0] > best[0]:
                best = (got[0], k)
        gen, area = best[0] + 1, 1 - best[1] if best[1] >= 0 else 0
        entries = b"".join(struct.pack("<IQ", volume, i * stripes // n) for i in range(n))
        assert 64 + len(entries) <= slot_bytes // 2, f"{n} entries do not fit a checkpoint of this journal"
        head = bytearray(64)
        head[0:8] = b"JRAIDREC"
        struct.pack_into("<II", head, 8, 2, 1)
        head[16:32] = uuid
        struct.pack_into("<QIIIIQ", head, 32, gen, n, 0, 0, area, gen)
        crc = crc32c(bytes(head) + entries)
        struct.pack_into("<I", head, 48, crc)
        rec = bytes(head) + entries
        rec += b"\0" * (-len(rec) % bs)
        f.seek(SLOTS + area * slot_bytes)
        f.write(rec)
        # The block after it must not continue the chain: zero it.
        f.write(b"\0" * bs)
    print(f"journal {path}: generation {gen} lists {n} stripes of volume {volume} (area {area})")


if __name__ == "__main__":
    main()
