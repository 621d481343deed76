#!/usr/bin/env python3
"""Offline parity check of a stopped jraid volume on files: scrub.py JOURNAL MEMBER...

With --journal-area, JOURNAL is a member file whose journal area (the journal on the members:
the byte offset in its member superblock) holds the journal. With --journal-only, only the
newest record is read and shown (no parity check: for a degraded volume's files).

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


def decode(buf, off, uuid, area):
    """The record at buf[off:] of this journal and area (format 2), or None."""
    if off + 64 > len(buf):
        return None
    h = buf[off:off + 64]
    if h[:8] != b"JRAIDREC" or h[16:32] != uuid:
        return None
    version, kind = struct.unpack_from("<II", h, 8)
    assert version == 2, f"journal record format {version}: this checker reads format 2"
    gen, adds, removes, crc, rec_area, base = struct.unpack_from("<QIIIIQ", h, 32)
    end = off + 64 + 12 * (adds + removes)
    if rec_area != area or kind not in (1, 2) or end > len(buf):
        return None
    if kind == 1 and (removes != 0 or base != gen):
        return None
    if crc32c(h[:48] + b"\0" * 4 + h[52:] + buf[off + 64:end]) != crc:
        return None
    entries = [struct.unpack_from("<IQ", buf, off + 64 + 12 * i) for i in range(adds + removes)]
    return kind, gen, base, entries[:adds], entries[adds:], end - off


def read_area(buf, uuid, area, bs):
    """(generation, set) of the chain in an area: a checkpoint, then consecutive deltas."""
    first = decode(buf, 0, uuid, area)
    if first is None or first[0] != 1:
        return None
    _, gen, base, adds, _, size = first
    listed = set(adds)
    off = -(-size // bs) * bs
    while True:
        d = decode(buf, off, uuid, area)
        if d is None or d[0] != 2 or d[2] != base or d[1] != gen + 1:
            break
        _, gen, _, adds, removes, size = d
        listed.difference_update(removes)
        listed.update(adds)
        off += -(-size // bs) * bs
    return gen, listed


def journal_base(path, in_area):
    """Byte offset of the journal in `path`: 0, or a member's journal area."""
    if not in_area:
        return 0
    with open(path, "rb") as f:
        msb = f.read(4096)
    assert msb[:8] == b"JRAIDMSB", "no member superblock"
    area, = struct.unpack_from("<Q", msb, 716)
    assert area, "the member has no journal area"
    return area


def newest_record(path, base=0):
    with open(path, "rb") as f:
        f.seek(base)
        sb = f.read(4096)
        assert sb[:8] == b"JRAIDJSB", "no journal superblock"
        uuid = sb[24:40]
        bs, = struct.unpack_from("<I", sb, 40)
        slot_bytes = struct.unpack_from("<Q", sb, 48)[0]
        best = None
        for k in range(2):
            f.seek(base + SLOTS + k * slot_bytes)
            got = read_area(f.read(slot_bytes), uuid, k, bs)
            if got is not None and (best is None or got[0] > best[0]):
                best = got
        return best or (0, set())


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    clean = "--clean" in sys.argv
    journal, members = args[0], args[1:]
    base = journal_base(journal, "--journal-area" in sys.argv)
    files = [open(m, "rb") for m in members]
    sb = files[0].read(4096)
    assert sb[:8] == b"JRAIDMSB", "no member superblock"
    number, = struct.unpack_from("<I", sb, 56)
    if "--journal-only" in sys.argv:
        gen, entries = newest_record(journal, base)
        listed = {st for (v, st) in entries if v == number}
        print(f"record generation {gen} lists {len(listed)} stripes of volume {number}")
        return
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
        jf.seek(base)
        juuid = jf.read(4096)[24:40]
    if newest[1] != juuid:
        print("the members name another journal than", journal)
        sys.exit(1)
    gen, entries = newest_record(journal, base)
    listed = {st for (v, st) in entries if v == number}
    unlisted = [s for s in bad if s not in listed]
    print(f"stripes {stripes}, parity mismatches {len(bad)} {bad[:10]}, record generation {gen} "
          f"lists {len(listed)} stripes of volume {number}; mismatches not listed: {unlisted[:10]}")
    if unlisted or (clean and bad):
        sys.exit(1)


if __name__ == "__main__":
    main()
