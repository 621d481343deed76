#!/usr/bin/env python3
"""Offline parity check of a stopped jraid volume on files: scrub.py JOURNAL MEMBER...

Prints the stripes whose parity disagrees with their data and the newest valid journal record;
exits 1 if some mismatching stripe is not listed in that record (the journal's invariant), and
with --clean, if any stripe mismatches at all; also exits 1 when the newest member superblock names
another journal."""
import struct
import sys

MIB = 1 << 20
SLOTS = 64 * 1024


def crc32c(data, crc=0):
    table = crc32c.table
    if table is None:
        table = crc32c.table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c.table = None


def newest_record(path):
    with open(path, "rb") as f:
        sb = f.read(4096)
        assert sb[:8] == b"JRAIDJSB", "no journal superblock"
        uuid = sb[24:40]
        slot_bytes = struct.unpack_from("<Q", sb, 48)[0]
        best = None
        for k in range(2):
            f.seek(SLOTS + k * slot_bytes)
            rec = f.read(slot_bytes)
            if rec[:8] != b"JRAIDREC" or rec[16:32] != uuid:
                continue
            gen, count = struct.unpack_from("<QI", rec, 32)
            crc = struct.unpack_from("<I", rec, 48)[0]
            end = 64 + 12 * count
            if gen % 2 != k or end > len(rec):
                continue
            if crc32c(rec[:48] + b"\0" * 4 + rec[52:end]) != crc:
                continue
            entries = [struct.unpack_from("<IQ", rec, 64 + 12 * i) for i in range(count)]
            if best is None or gen > best[0]:
                best = (gen, entries)
        return best or (0, [])


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    clean = "--clean" in sys.argv
    journal, members = args[0], args[1:]
    files = [open(m, "rb") for m in members]
    sb = files[0].read(4096)
    assert sb[:8] == b"JRAIDMSB", "no member superblock"
    number, = struct.unpack_from("<I", sb, 56)
    bs, = struct.unpack_from("<I", sb, 68)
    strip_blocks, stripes = struct.unpack_from("<QQ", sb, 72)
    strip = strip_blocks * bs
    bad = []
    for s in range(stripes):
        acc = 0
        for f in files:
            f.seek(MIB + s * strip)
            acc ^= int.from_bytes(f.read(strip), "little")
        if acc:
            bad.append(s)
    # The newest member superblock must name this journal.
    newest = None
    for f in files:
        f.seek(0)
        msb = f.read(4096)
        if msb[:8] == b"JRAIDMSB":
            seq, = struct.unpack_from("<Q", msb, 88)
            if newest is None or seq > newest[0]:
                newest = (seq, msb[40:56])
    with open(journal, "rb") as jf:
        juuid = jf.read(4096)[24:40]
    if newest[1] != juuid:
        print("the members name another journal than", journal)
        sys.exit(1)
    gen, entries = newest_record(journal)
    listed = {st for (v, st) in entries if v == number}
    unlisted = [s for s in bad if s not in listed]
    print(f"stripes {stripes}, parity mismatches {len(bad)} {bad[:10]}, record generation {gen} "
          f"lists {len(listed)} stripes of volume {number}; mismatches not listed: {unlisted[:10]}")
    if unlisted or (clean and bad):
        sys.exit(1)


main()
