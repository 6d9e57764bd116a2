#!/usr/bin/env python3
"""Generates native/src/tokenizer/unicode_tables.inc: the Unicode facts the native tokenizer needs,
from one pinned Unicode version (UNICODE_VERSION, read through the `unicodedata2` package of the
same version, which the `test` extra pins).

Why 16.0.0: it is the version the reference `tokenizers` library (0.23, Oniguruma regexes) matches
\\p{L}, \\p{N} and \\s with; tests/test_native_tokenizer.py checks every code point against it, so a
reference that moves to a newer Unicode shows up as a failing test, not as silent drift.

NFC is different: the reference normalizes with the `unicode-normalization-alignments` crate,
whose tables are Unicode 9.0 (it does not know the combining class of, say, U+0D3B, added in
10.0, and so does not reorder it). Normalization data of a character never changes once it is
assigned (Unicode's stability policy), so the NFC tables here are the 16.0.0 data restricted to
the characters assigned by NFC_AGE, with the ages read from DerivedAge.txt of Debian's
`unicode-data` package (UCD 15.0.0, /usr/share/unicode; anything it does not list is newer).

Output (committed; tests/test_native_tokenizer.py regenerates it and compares the bytes):
  kPropRanges       [first, last, flags] runs of code points with equal flags (flags != 0):
                    1 letter (\\p{L}), 2 number (\\p{N}), 4 White_Space (regex \\s),
                    8 NFC-sensitive (a character NFC may change or combine with a neighbour)
  kCombiningClass   [first, last, ccc] runs with canonical combining class != 0
  kDecomposition    [cp, offset, length] full canonical decompositions into kDecompositionData
  kComposition      [first, second, composite] primary composites, sorted by (first, second)
Hangul syllables are composed and decomposed arithmetically (not in the tables).

Run: python native/tools/gen_unicode_tables.py [--check]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

UNICODE_VERSION = "16.0.0"
NFC_AGE = (9, 0)  # the Unicode version of the reference's NFC tables (see above)
DERIVED_AGE = Path("/usr/share/unicode/DerivedAge.txt")  # Debian: apt-get install unicode-data
DERIVED_AGE_VERSION = "15.0.0"
OUT = Path(__file__).resolve().parents[1] / "src" / "tokenizer" / "unicode_tables.inc"

# PropList.txt's White_Space code points of category Cc (the rest of White_Space is exactly the
# categories Zs, Zl and Zp); unchanged since Unicode 6.3.
WHITE_SPACE_CONTROLS = (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85)

F_LETTER, F_NUMBER, F_SPACE, F_NFC = 1, 2, 4, 8
HANGUL_S0, HANGUL_SN = 0xAC00, 11172
HANGUL_V0, HANGUL_T0, HANGUL_VN, HANGUL_TN = 0x1161, 0x11A7, 21, 28


def load_ucd():
    import unicodedata2 as ud
    if ud.unidata_version != UNICODE_VERSION:
        sys.exit(f"unicodedata2 has Unicode {ud.unidata_version}; this generator is pinned to "
                 f"{UNICODE_VERSION}: pip install unicodedata2=={UNICODE_VERSION}")
    return ud


def assigned_by(age: tuple[int, int]) -> set[int]:
    """Code points whose Age is at most `age`, from DerivedAge.txt."""
    if not DERIVED_AGE.exists():
        sys.exit(f"{DERIVED_AGE} is missing: apt-get install unicode-data")
    text = DERIVED_AGE.read_text(encoding="utf-8")
    if f"DerivedAge-{DERIVED_AGE_VERSION}.txt" not in text.splitlines()[0]:
        sys.exit(f"{DERIVED_AGE} is not UCD {DERIVED_AGE_VERSION}: {text.splitlines()[0]}")
    out: set[int] = set()
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        cps, version = (x.strip() for x in line.split(";"))
        major, minor = (int(x) for x in version.split("."))
        if (major, minor) <= age:
            a, _, b = cps.partition("..")
            out.update(range(int(a, 16), int(b or a, 16) + 1))
    return out


def canonical_decomposition(ud, cp: int) -> list[int] | None:
    d = ud.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    out = []
    for part in d.split():
        sub = canonical_decomposition(ud, int(part, 16))
        out += sub if sub else [int(part, 16)]
    return out


def runs(values: dict[int, int]) -> list[tuple[int, int, int]]:
    out: list[list[int]] = []
    for cp in sorted(values):
        v = values[cp]
        if out and out[-1][1] == cp - 1 and out[-1][2] == v:
            out[-1][1] = cp
        else:
            out.append([cp, cp, v])
    return [tuple(r) for r in out]


def generate() -> str:
    ud = load_ucd()
    nfc_known = assigned_by(NFC_AGE)
    ccc: dict[int, int] = {}
    decomp: dict[int, list[int]] = {}
    flags: dict[int, int] = {}
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        cat = ud.category(ch)
        f = 0
        if cat[0] == "L":
            f |= F_LETTER
        if cat[0] == "N":
            f |= F_NUMBER
        if cat in ("Zs", "Zl", "Zp") or cp in WHITE_SPACE_CONTROLS:
            f |= F_SPACE
        c = ud.combining(ch)
        if c and cp in nfc_known:
            ccc[cp] = c
        if cp in nfc_known and not (HANGUL_S0 <= cp < HANGUL_S0 + HANGUL_SN):
            d = canonical_decomposition(ud, cp)
            if d:
                decomp[cp] = d
        if f:
            flags[cp] = f
    # Primary composites: a two-character canonical decomposition that NFC recomposes.
    comps = []
    for cp in decomp:
        d = ud.decomposition(chr(cp)).split()
        if len(d) == 2 and not ud.decomposition(chr(cp)).startswith("<"):
            a, b = int(d[0], 16), int(d[1], 16)
            if ud.normalize("NFC", chr(a) + chr(b)) == chr(cp) and {a, b} <= nfc_known:
                comps.append((a, b, cp))
    comps.sort()
    second = {b for _, b, _ in comps}
    # NFC-sensitive: anything NFC may rewrite or merge with its neighbour. Text without one of
    # these is already NFC, which is the common fast path.
    # (A character NFC leaves alone when on its own, e.g. a precomposed é, is not flagged: it can
    # only change next to a combining mark, and that mark is flagged.)
    for cp in set(ccc) | set(decomp) | second | set(range(0x1100, 0x1200)) | \
            set(range(HANGUL_S0, HANGUL_S0 + HANGUL_SN)):
        if ud.normalize("NFC", chr(cp)) != chr(cp) or cp in ccc or cp in second or \
                0x1100 <= cp < 0x1200 or HANGUL_S0 <= cp < HANGUL_S0 + HANGUL_SN:
            flags[cp] = flags.get(cp, 0) | F_NFC

    lines = [
        f"// unicode_tables.inc — GENERATED by native/tools/gen_unicode_tables.py from Unicode "
        f"{UNICODE_VERSION} (NFC: characters of Unicode {NFC_AGE[0]}.{NFC_AGE[1]}); do not edit.",
        "// Included once, by tokenizer/unicode_props.cpp. Layouts are described in the generator.",
        f"#define EDGERT_UNICODE_VERSION \"{UNICODE_VERSION}\"",
        "",
    ]

    def table(name: str, ctype: str, rows, per_line: int) -> None:
        lines.append(f"static const {ctype} {name}[][{len(rows[0])}] = {{")
        for i in range(0, len(rows), per_line):
            lines.append("    " + " ".join("{" + ",".join(f"0x{v:X}" for v in r) + "},"
                                           for r in rows[i:i + per_line]))
        lines.append("};")
        lines.append("")

    table("kPropRanges", "uint32_t", runs(flags), 4)
    table("kCombiningClass", "uint32_t", runs(ccc), 4)
    data: list[int] = []
    drows = []
    for cp in sorted(decomp):
        drows.append((cp, len(data), len(decomp[cp])))
        data += decomp[cp]
    table("kDecomposition", "uint32_t", drows, 4)
    lines.append("static const uint32_t kDecompositionData[] = {")
    for i in range(0, len(data), 10):
        lines.append("    " + " ".join(f"0x{v:X}," for v in data[i:i + 10]))
    lines.append("};")
    lines.append("")
    table("kComposition", "uint32_t", comps, 4)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args()
    text = generate()
    if args.check:
        same = args.output.exists() and args.output.read_text() == text
        print("up to date" if same else f"{args.output} differs from the generator's output")
        return 0 if same else 1
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
