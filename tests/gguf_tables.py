"""gguf_tables.py — a small, fast reader of a GGUF file's tables (header,
metadata, tensor table) for the tests, written here with struct: not our
C reader, and unlike gguf-py's GGUFReader (which parses every element of
every array into numpy views: ~10 s for a 150k-token vocabulary) it skips
what the caller does not ask for."""
import mmap
import struct

import gguf

SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf(path, keep_kv=lambda key: False):
    """(tensors, general.file_type, kvs, data) of a GGUF file: tensors
    {name: (type name, shape)}, the KVs keep_kv accepts as [(key, vtype,
    value, array element vtype)], data {name: absolute file offset}."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        pos = 0

        def take(fmt):
            nonlocal pos
            v = struct.unpack_from(fmt, mm, pos)
            pos += struct.calcsize(fmt)
            return v[0] if len(v) == 1 else v

        def string():
            nonlocal pos
            n = take("<Q")
            pos += n
            return mm[pos - n:pos].decode("utf-8", "replace")

        def value(vt, want):
            nonlocal pos
            if vt == 8:
                if want:
                    return string()
                n = take("<Q")  # (not pos += take(): take moves pos)
                pos += n
                return None
            if vt == 9:
                et, n = take("<I"), take("<Q")
                if want:
                    return [value(et, want) for _ in range(n)], et
                if et in SCALAR:  # skipped without unpacking
                    pos += n * struct.calcsize(SCALAR[et])
                else:
                    for _ in range(n):
                        value(et, False)
                return None
            if want:
                return take(SCALAR[vt])
            pos += struct.calcsize(SCALAR[vt])
            return None

        magic, version, n_t, n_kv = take("<4sIQQ")
        assert magic == b"GGUF" and version in (2, 3), (path, magic, version)
        kvs, ft, align = [], None, 32
        for _ in range(n_kv):
            key, vt = string(), take("<I")
            v = value(vt, keep_kv(key) or key in ("general.file_type", "general.alignment"))
            if key == "general.file_type":
                ft = v
            elif key == "general.alignment":
                align = v
            if keep_kv(key):
                kvs.append((key, vt, v[0], v[1]) if vt == 9 else (key, vt, v, None))
        tensors, offsets = {}, {}
        for _ in range(n_t):
            name, nd = string(), take("<I")
            dims = [take("<Q") for _ in range(nd)]
            ty, offsets[name] = take("<I"), take("<Q")
            tensors[name] = (gguf.GGMLQuantizationType(ty).name, dims)
        start = (pos + align - 1) // align * align
        data = {n: start + o for n, o in offsets.items()}  # absolute file offsets
        return tensors, ft, kvs, data
    finally:
        mm.close()
