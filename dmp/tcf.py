"""IAB TCF v2 consent strings (TC strings): decode the core segment; encode for test worlds.

Events may carry the ``euconsent-v2`` string a site's consent management
platform (CMP) wrote. The identity stage decodes each distinct string once and
asks :func:`allows` whether it grants the purposes (and vendor) the platform
needs before an event may feed profiles, segments or models.

Our own decoder rather than a PyPI package: the only candidates (``iab-tcf``,
last released 2022, and its fork ``iab-tcf-bitarray``) depend on compiled
bitarray builds and keep range-encoded vendors as raw ranges; the core segment
is a fixed bit layout that fits in this module.

Only the core segment (the text before the first ".") matters: disclosed
vendors and publisher TC segments say nothing about the user's consent to us.
Publisher restrictions are read past, not kept. Layout:
https://github.com/InteractiveAdvertisingBureau/GDPR-Transparency-and-Consent-Framework
(TCFv2, "Consent string and vendor list formats v2", "The Core String").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SIXBITS = {char: format(value, "06b") for value, char in enumerate(_ALPHABET)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DECISECOND = timedelta(milliseconds=100)
_MAX_VENDOR_ID = (1 << 16) - 1


@dataclass(frozen=True, kw_only=True)
class TCString:
    """The core segment of a TC string. Times are naive UTC, as the store keeps them.

    Sets hold 1-based IDs: purposes 1-24, special features 1-12, vendors as in
    the IAB Global Vendor List. Defaults let tests and the synthetic world
    build one with only the fields they care about.
    """

    created: datetime
    last_updated: datetime
    version: int = 2
    cmp_id: int = 0
    cmp_version: int = 0
    consent_screen: int = 0
    consent_language: str = "EN"
    vendor_list_version: int = 0
    tcf_policy_version: int = 2
    is_service_specific: bool = False
    use_non_standard_stacks: bool = False
    special_feature_optins: frozenset[int] = frozenset()
    purposes_consent: frozenset[int] = frozenset()
    purposes_li: frozenset[int] = frozenset()
    purpose_one_treatment: bool = False
    publisher_cc: str = "AA"
    vendor_consents: frozenset[int] = frozenset()
    vendor_li: frozenset[int] = frozenset()


def decode(tc_string: str) -> TCString:
    """Decode a TC string's core segment; ``ValueError`` says why one cannot be read.

    A string that fails here must count as *no* consent, never as a partial one,
    so every field is checked to be complete rather than read leniently.
    """
    bits = _Reader(_core_bits(tc_string))
    version = bits.uint(6)
    if version != 2:
        raise ValueError(f"version {version} is not TCF v2")
    tc = TCString(  # keyword arguments are evaluated, so read, in layout order
        version=version,
        created=bits.time(),
        last_updated=bits.time(),
        cmp_id=bits.uint(12),
        cmp_version=bits.uint(12),
        consent_screen=bits.uint(6),
        consent_language=bits.letters(2),
        vendor_list_version=bits.uint(12),
        tcf_policy_version=bits.uint(6),
        is_service_specific=bits.flag(),
        use_non_standard_stacks=bits.flag(),
        special_feature_optins=bits.bitfield(12),
        purposes_consent=bits.bitfield(24),
        purposes_li=bits.bitfield(24),
        purpose_one_treatment=bits.flag(),
        publisher_cc=bits.letters(2),
        vendor_consents=_read_vendors(bits),
        vendor_li=_read_vendors(bits),
    )
    _skip_publisher_restrictions(bits)
    return tc


def allows(tc_string: str | None, purposes: Iterable[int], vendor_id: int | None = None) -> bool:
    """True only if the string grants every purpose in ``purposes`` and, when
    ``vendor_id`` is given, consent for that vendor.

    No string or an undecodable one grants nothing. ``vendor_id`` None or 0 (the
    config's "not registered"; GVL IDs start at 1) skips the vendor check.
    Whether events *without* a string count is the caller's policy, not this one's.
    """
    if not tc_string:
        return False
    try:
        tc = _decode_cached(tc_string)
    except ValueError:
        return False
    if not set(purposes) <= tc.purposes_consent:
        return False
    return not vendor_id or vendor_id in tc.vendor_consents


def encode(tc: TCString, vendor_encoding: str = "auto") -> str:
    """The TC string for ``tc`` (core segment only, no publisher restrictions).

    For synthetic logs and tests: real strings come from CMPs. ``vendor_encoding``
    is "bitfield", "range" or "auto" (the shorter, as CMPs choose). Times are
    kept to the decisecond, as the format does.
    """
    if vendor_encoding not in ("auto", "bitfield", "range"):
        raise ValueError(f"unknown vendor encoding {vendor_encoding!r}")
    out = _Writer()
    out.uint(tc.version, 6)
    out.time(tc.created)
    out.time(tc.last_updated)
    out.uint(tc.cmp_id, 12)
    out.uint(tc.cmp_version, 12)
    out.uint(tc.consent_screen, 6)
    out.letters(tc.consent_language)
    out.uint(tc.vendor_list_version, 12)
    out.uint(tc.tcf_policy_version, 6)
    out.flag(tc.is_service_specific)
    out.flag(tc.use_non_standard_stacks)
    out.bitfield(tc.special_feature_optins, 12)
    out.bitfield(tc.purposes_consent, 24)
    out.bitfield(tc.purposes_li, 24)
    out.flag(tc.purpose_one_treatment)
    out.letters(tc.publisher_cc)
    _write_vendors(out, tc.vendor_consents, vendor_encoding)
    _write_vendors(out, tc.vendor_li, vendor_encoding)
    out.uint(0, 12)  # NumPubRestrictions
    return out.base64url()


@lru_cache(maxsize=4096)
def _decode_cached(tc_string: str) -> TCString:
    """Logs repeat a few thousand distinct strings millions of times."""
    return decode(tc_string)


def _core_bits(tc_string: str) -> str:
    """The core segment as a string of "0"/"1": base64url maps 6 bits to a character.

    Trailing "=" padding is tolerated although the format omits it.
    """
    core = tc_string.split(".", 1)[0].rstrip("=")
    if not core:
        raise ValueError("empty TC string")
    try:
        return "".join(_SIXBITS[char] for char in core)
    except KeyError:
        raise ValueError("not base64url") from None


class _Reader:
    """Fixed-width, most-significant-bit-first fields read off a bit string in order."""

    def __init__(self, bits: str) -> None:
        self._bits = bits
        self._pos = 0

    def take(self, width: int) -> str:
        end = self._pos + width
        if end > len(self._bits):
            raise ValueError("truncated core segment")
        chunk = self._bits[self._pos : end]
        self._pos = end
        return chunk

    def uint(self, width: int) -> int:
        return int(self.take(width), 2) if width else 0

    def flag(self) -> bool:
        return self.take(1) == "1"

    def bitfield(self, width: int) -> frozenset[int]:
        """Bit i (from 0) set means ID i + 1 is in the set."""
        return frozenset(i + 1 for i, bit in enumerate(self.take(width)) if bit == "1")

    def letters(self, count: int) -> str:
        codes = [self.uint(6) for _ in range(count)]
        if any(code > 25 for code in codes):
            raise ValueError("malformed core segment: letter code beyond Z")
        return "".join(chr(ord("A") + code) for code in codes)

    def time(self) -> datetime:
        """Deciseconds since the Unix epoch, as naive UTC."""
        return (_EPOCH + self.uint(36) * _DECISECOND).replace(tzinfo=None)


def _read_ranges(bits: _Reader) -> list[tuple[int, int]]:
    """NumEntries(12), then per entry IsARange(1), Start(16) and, for a range, End(16)."""
    entries = []
    for _ in range(bits.uint(12)):
        is_range = bits.flag()
        start = bits.uint(16)
        entries.append((start, bits.uint(16) if is_range else start))
    return entries


def _read_vendors(bits: _Reader) -> frozenset[int]:
    """MaxVendorId(16), IsRangeEncoding(1), then a bitfield or a list of ranges."""
    max_id = bits.uint(16)
    if not bits.flag():
        return bits.bitfield(max_id)
    ranges = _read_ranges(bits)
    for start, end in ranges:
        if not 1 <= start <= end <= max_id:
            raise ValueError(f"malformed vendor range {start}-{end} (MaxVendorId {max_id})")
    return frozenset(v for start, end in _merged(ranges) for v in range(start, end + 1))


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping ranges joined, so a hostile string of 4,095 copies of 1-65535
    costs 65,535 IDs rather than 268 million."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _skip_publisher_restrictions(bits: _Reader) -> None:
    """NumPubRestrictions(12), each PurposeId(6), RestrictionType(2) and ranges.

    Read only so that a core segment cut short here is still refused; the
    ranges are not checked, as some CMPs write them inconsistently and we do
    not use them.
    """
    for _ in range(bits.uint(12)):
        bits.take(8)
        _read_ranges(bits)


class _Writer:
    """The mirror of :class:`_Reader`: fields appended as bits, then base64url."""

    def __init__(self) -> None:
        self._bits: list[str] = []

    def uint(self, value: int, width: int) -> None:
        if not 0 <= value < 1 << width:
            raise ValueError(f"{value} does not fit in {width} bits")
        self._bits.append(format(value, f"0{width}b"))

    def flag(self, value: bool) -> None:
        self._bits.append("1" if value else "0")

    def bitfield(self, ids: Iterable[int], width: int) -> None:
        ids = set(ids)
        if ids and not 1 <= min(ids) <= max(ids) <= width:
            raise ValueError(f"IDs {sorted(ids)} out of 1-{width}")
        self._bits.append("".join("1" if i in ids else "0" for i in range(1, width + 1)))

    def letters(self, text: str) -> None:
        if len(text) != 2 or not ("AA" <= text <= "ZZ" and text.isalpha()):
            raise ValueError(f"{text!r} is not two letters A-Z")
        for char in text:
            self.uint(ord(char) - ord("A"), 6)

    def time(self, when: datetime) -> None:
        aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        self.uint((aware - _EPOCH) // _DECISECOND, 36)

    def base64url(self) -> str:
        """Bytes zero-padded, then 6 bits a character, unpadded: what CMPs write."""
        bits = "".join(self._bits)
        bits += "0" * (-len(bits) % 8)
        bits += "0" * (-len(bits) % 6)
        return "".join(_ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def _write_vendors(out: _Writer, vendors: frozenset[int], encoding: str) -> None:
    max_id = max(vendors, default=0)
    if max_id > _MAX_VENDOR_ID:
        raise ValueError(f"vendor ID {max_id} beyond {_MAX_VENDOR_ID}")
    ranges = _merged([(v, v) for v in vendors])
    range_bits = 12 + sum(17 if start == end else 33 for start, end in ranges)
    use_ranges = encoding == "range" or (encoding == "auto" and range_bits < max_id)
    out.uint(max_id, 16)
    out.flag(use_ranges)
    if not use_ranges:
        out.bitfield(vendors, max_id)
        return
    out.uint(len(ranges), 12)
    for start, end in ranges:
        out.flag(start != end)
        out.uint(start, 16)
        if start != end:
            out.uint(end, 16)
