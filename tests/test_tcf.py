"""TCF v2 consent strings: real CMP strings decode to their published values,
hand-built bit layouts pin each field, and anything undecodable is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dmp.generate import TCF_COUNTRIES, World, consent_strings
from dmp.tcf import TCString, allows, decode, encode

# Published examples. The first five are from the IAB's iabtcf-java decoder tests
# (TCStringV2Test), the last from the iab-tcf Python package's fixtures (tests/seed/v2).
IAB_HEADER = "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"
IAB_BITFIELD = "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA"
IAB_TWO_VENDORS_RANGE = "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA"
IAB_ONE_VENDOR_RANGE = "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAQFfgUbABAUaAAA"
IAB_LI_RANGE = "COv__-wOv__-wC2AAAENAPCgAAAAAAAAAAAAA_wAQA_gEBABAEAAAA"
IAB_DISCLOSED = "IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw"  # noqa: E501
PUBLISHER_RESTRICTIONS = (
    "CG6MJgNIvJb0TAUAEBENAzCMAFvAAG7AAAJYGUlUcVlfByPiu55Ad8JQeAgftrYDE6QzDgEJs8wJQB9WxJwQpEMgKBX4"
    "BoIIiRYEsnLAAAYkHAFcDQAAQIkVqSCsYkyMCyFCJJJEghIKM2ZYGG0OkcVQIRAY4wMsHeYAA2OrevzrigZOQCYQFY"
    "AAkJQwEg0KRQIgQADAgUA4AIKEYUiSQ0JHBDMjAINAAAAEBiAhAgAAgCgBgAAAgAASEBACACAgEAAAAgABACNAQgAAk"
    "AQSAEAQBAAKgIEgBEEEoAgBgMBACgAARIpFBIIDQgAWAAEAAwAPgArAB3AH4AToA8QCEgEtAKSCgBwABABSAFwAXYAz"
    "AB_QFTBAEIACAAFAAcAA8AC0AGQAOwApgBzAD0AIaASoBLACaAGGAMgAewA-AB9gEIAI0AVAA4AB8gEVAI7ATEAmUBS"
    "IC2AF5AL-AYMAwggAJAAWAEEAWIBnADqAK-AW0AuABk4cAUAA4AEQAJwAkgDnAL8AtEBcQDIgGSBgB4AEgAngCJAHkA"
    "RgAkwBKwCvAG8AOOAeoBJYCbAFigLoJQCAAKACIAI4AWkAxQBuAEXgJECQAwAKgKwAYeUAIAAXAAyACoALgAiwBJgCj"
    "AFKAVsBJACmwFbALkAXcAxkBkBSAKACAAGgA0gChgLtHAEAAUQBGAEcALAAmABsgDvAJaAdMBQgChwFLgKsAWyAxIBj"
    "EDHAMdGAAQAWEgBYAMQAhABMACgAG0ApoBZwFUgLxAXmAx4dAPAB5AEMARAAqgCEAFIANEAcQA_QCUgFiALyAYQA2gC7"
    "wGGlQAIATSYAIAKgCmRIAYALYAYgA3gFZANQAusWACADMAjoUAEADwAMoAfIBaBUAEARw0AIAJkAaoA4AEgjwBgArQBZ"
    "QDjAOQAdYA8QDbAHtASiAq8BYgCyQF2BoA4AywBqAFLAKuAawBDYCdiEAUAb4BAwC5gHoAU0RADgEuAJwAV-A_YD-AIi"
    "AS8AvYRACAYEAwkA.IGVtd_X9fb2vj-_599_t0eY1f9_63t-wzjheNs-8NyZ_X_J4Xv2MyvB34pqYKmR4kunbBAQdtHG"
    "ncTQgBwIlVqTLsYk2MjzNKJ7JEmlsbe2dYGH9Pn8XT_ZKZ70-v___7v3______7oA"
)
# A TCF v1.1 string (IAB Consent-String-SDK tests): version 1, a different layout.
V1_STRING = "BOVeoB_OVeoFxC-AHAFRBtAAAAAhGAEAD4AXAA2YCEQ"

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
WHEN = datetime(2026, 11, 1, 12, 30, 15, 700000)


# A bit writer of its own, independent of dmp.tcf.encode, so a misreading of the
# layout is not shared by the decoder and the strings that test it.
def uint(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def ids(members: set[int], width: int) -> str:
    return "".join("1" if i in members else "0" for i in range(1, width + 1))


def deciseconds(when: datetime) -> str:
    since_epoch = when.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return uint(since_epoch // timedelta(milliseconds=100), 36)


def bitfield_vendors(members: set[int]) -> str:
    top = max(members, default=0)
    return uint(top, 16) + "0" + ids(members, top)


def range_vendors(top: int, entries: list[tuple[int, int]]) -> str:
    body = "".join(
        "0" + uint(a, 16) if a == b else "1" + uint(a, 16) + uint(b, 16) for a, b in entries
    )
    return uint(top, 16) + "1" + uint(len(entries), 12) + body


def core(
    *,
    version: int = 2,
    purposes: set[int] = frozenset(),
    special: set[int] = frozenset(),
    vendors: str = bitfield_vendors(set()),
    li: str = bitfield_vendors(set()),
    restrictions: str = uint(0, 12),
) -> str:
    return (
        uint(version, 6)
        + deciseconds(WHEN)
        + deciseconds(WHEN + timedelta(days=3))
        + uint(42, 12)  # cmp_id
        + uint(7, 12)  # cmp_version
        + uint(3, 6)  # consent_screen
        + uint(ord("D") - 65, 6)
        + uint(ord("E") - 65, 6)
        + uint(150, 12)  # vendor_list_version
        + uint(4, 6)  # tcf_policy_version
        + "1"  # is_service_specific
        + "0"  # use_non_standard_stacks
        + ids(special, 12)
        + ids(purposes, 24)
        + ids({2, 7}, 24)
        + "1"  # purpose_one_treatment
        + uint(ord("F") - 65, 6)
        + uint(ord("R") - 65, 6)
        + vendors
        + li
        + restrictions
    )


def b64(bits: str) -> str:
    bits += "0" * (-len(bits) % 8)
    bits += "0" * (-len(bits) % 6)
    return "".join(ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


# Real strings


def test_iab_example_header_fields():
    tc = decode(IAB_HEADER)
    assert tc.version == 2
    assert tc.created == datetime(2020, 1, 26, 17, 1)
    assert tc.last_updated == datetime(2021, 2, 2, 17, 1)
    assert (tc.cmp_id, tc.cmp_version, tc.consent_screen) == (675, 2, 1)
    assert (tc.vendor_list_version, tc.tcf_policy_version) == (15, 2)
    assert (tc.consent_language, tc.publisher_cc) == ("EN", "AA")
    assert not tc.is_service_specific and not tc.use_non_standard_stacks
    assert tc.purpose_one_treatment
    assert tc.special_feature_optins == {1}
    assert tc.purposes_consent == {2, 10}
    assert tc.purposes_li == {2, 9}


def test_iab_example_bitfield_vendors():
    tc = decode(IAB_BITFIELD)
    assert tc.purposes_consent == {3, 4, 5, 6, 7, 8, 9}
    assert tc.vendor_consents == {23, 37, 47, 48, 53, 65, 98}
    assert tc.vendor_li == {37, 47, 48, 53, 65, 98, 129}


def test_iab_examples_range_vendors_with_a_second_segment():
    assert decode(f"{IAB_TWO_VENDORS_RANGE}.{IAB_DISCLOSED}").vendor_consents == {702, 703}
    assert decode(f"{IAB_ONE_VENDOR_RANGE}.{IAB_DISCLOSED}").vendor_consents == {703}
    assert decode(IAB_LI_RANGE).vendor_li == {128}


def test_cmp_string_with_publisher_restrictions():
    tc = decode(PUBLISHER_RESTRICTIONS)
    assert tc.created == datetime(1993, 7, 5, 11, 23, 32, 500000)
    assert tc.last_updated == datetime(1999, 9, 23, 13, 34, 57, 900000)
    assert (tc.cmp_id, tc.cmp_version, tc.consent_screen, tc.vendor_list_version) == (20, 4, 1, 51)
    assert (tc.consent_language, tc.publisher_cc) == ("EN", "BL")
    assert tc.special_feature_optins == {1, 2}
    assert tc.purposes_consent == {2, 4, 5, 7, 8, 9, 10}
    assert tc.purposes_li == {2, 3, 5, 6, 7, 9, 10}
    assert {2, 4, 6, 8, 12, 13, 14, 18, 807, 809} <= tc.vendor_consents
    assert not {1, 3, 5, 808} & tc.vendor_consents
    assert max(tc.vendor_consents) == 809 and max(tc.vendor_li) == 807
    assert {2, 11, 14, 15, 20, 801, 807} <= tc.vendor_li


def test_encoder_reproduces_real_strings_byte_for_byte():
    for real in (IAB_HEADER, IAB_BITFIELD, IAB_TWO_VENDORS_RANGE, IAB_LI_RANGE):
        assert encode(decode(real)) == real


# Hand-built layouts


def test_bitfield_vendor_encoding():
    tc = decode(b64(core(vendors=bitfield_vendors({1, 5, 700}), li=bitfield_vendors({5}))))
    assert tc.vendor_consents == {1, 5, 700}
    assert tc.vendor_li == {5}


def test_range_vendor_encoding():
    tc = decode(b64(core(vendors=range_vendors(900, [(3, 3), (10, 14), (900, 900)]))))
    assert tc.vendor_consents == {3, 10, 11, 12, 13, 14, 900}


def test_overlapping_ranges_are_joined():
    tc = decode(b64(core(vendors=range_vendors(20, [(5, 10), (1, 20), (8, 9)]))))
    assert tc.vendor_consents == set(range(1, 21))


def test_purposes_special_features_and_header():
    tc = decode(b64(core(purposes={1, 3, 4, 10, 24}, special={1, 12})))
    assert tc.purposes_consent == {1, 3, 4, 10, 24}
    assert tc.purposes_li == {2, 7}
    assert tc.special_feature_optins == {1, 12}
    assert (tc.cmp_id, tc.cmp_version, tc.consent_screen) == (42, 7, 3)
    assert (tc.consent_language, tc.publisher_cc) == ("DE", "FR")
    assert (tc.vendor_list_version, tc.tcf_policy_version) == (150, 4)
    assert tc.is_service_specific and not tc.use_non_standard_stacks and tc.purpose_one_treatment


def test_created_and_updated_are_naive_utc_to_the_decisecond():
    tc = decode(b64(core()))
    assert tc.created == WHEN and tc.created.tzinfo is None
    assert tc.last_updated == WHEN + timedelta(days=3)


def test_publisher_restrictions_are_read_past():
    entry = uint(3, 6) + uint(1, 2) + uint(2, 12) + "0" + uint(8, 16) + "1" + uint(20, 16)
    entry += uint(9, 16)  # an inconsistent range (20-9), as some CMPs write: not ours to judge
    tc = decode(b64(core(vendors=bitfield_vendors({8}), restrictions=uint(1, 12) + entry)))
    assert tc.vendor_consents == {8}


def test_later_segments_are_ignored():
    plain = b64(core(purposes={1}))
    assert decode(f"{plain}.{IAB_DISCLOSED}.QAagAQAgAIAwgA") == decode(plain)
    assert decode(f"{plain}.not even base64!") == decode(plain)


def test_padding_is_tolerated():
    assert decode(IAB_HEADER + "==") == decode(IAB_HEADER)


# Refusals


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty TC string"),
        (".IFoE", "empty TC string"),
        (V1_STRING, "version 1 is not TCF v2"),
        (b64(core(version=3)), "version 3 is not TCF v2"),
        ("not a consent string!", "not base64url"),
        ("CO+ybn4PA/zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA", "not base64url"),
        ("CO\u00e9ybn4PA", "not base64url"),
        (IAB_HEADER[:30], "truncated core segment"),
        (PUBLISHER_RESTRICTIONS[:400], "truncated core segment"),
        (b64(core(restrictions="")), "truncated core segment"),
        (b64(core(vendors=uint(700, 16) + "0" + ids({1}, 100))), "truncated core segment"),
        (b64(core(vendors=range_vendors(10, [(5, 3)]))), "malformed vendor range 5-3"),
        (b64(core(vendors=range_vendors(10, [(0, 3)]))), "malformed vendor range 0-3"),
        (b64(core(vendors=range_vendors(10, [(5, 11)]))), "malformed vendor range 5-11"),
    ],
)
def test_undecodable_strings_say_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        decode(text)


def test_letter_codes_beyond_z_are_malformed():
    bits = core()
    at = 6 + 36 + 36 + 12 + 12 + 6  # consent_language
    with pytest.raises(ValueError, match="letter code beyond Z"):
        decode(b64(bits[:at] + uint(40, 6) + bits[at + 6 :]))


# allows()


def test_allows_requires_every_purpose():
    granting = b64(core(purposes=set(range(1, 11)), vendors=bitfield_vendors({755})))
    partial = b64(core(purposes={1, 2, 4}, vendors=bitfield_vendors({755})))
    assert allows(granting, [1, 3, 4])
    assert allows(granting, [])
    assert not allows(partial, [1, 3, 4])
    assert allows(partial, (1, 4))


def test_allows_with_vendor_id():
    granting = b64(core(purposes={1, 3, 4}, vendors=range_vendors(800, [(700, 800)])))
    assert allows(granting, [1, 3, 4], 755)
    assert not allows(granting, [1, 3, 4], 12)
    assert allows(granting, [1, 3, 4], None)
    assert allows(granting, [1, 3, 4], 0)  # config's "no vendor ID of our own"


def test_allows_nothing_without_a_decodable_string():
    assert not allows(None, [1])
    assert not allows("", [])
    assert not allows("garbage!", [])
    assert not allows(V1_STRING, [])


# encode()


@pytest.mark.parametrize("encoding", ["auto", "bitfield", "range"])
def test_encode_round_trips(encoding):
    tc = TCString(
        created=WHEN,
        last_updated=WHEN + timedelta(hours=5),
        cmp_id=300,
        cmp_version=2,
        consent_screen=4,
        consent_language="FR",
        vendor_list_version=150,
        tcf_policy_version=4,
        is_service_specific=True,
        use_non_standard_stacks=True,
        special_feature_optins=frozenset({2}),
        purposes_consent=frozenset(range(1, 11)),
        purposes_li=frozenset({2, 7, 24}),
        purpose_one_treatment=True,
        publisher_cc="DE",
        vendor_consents=frozenset({1, 2, 3, 4, 10, 755, 793}),
        vendor_li=frozenset({52}),
    )
    text = encode(tc, encoding)
    assert decode(text) == tc
    assert set(text) <= set(ALPHABET)


def test_encode_chooses_the_shorter_vendor_encoding():
    when = datetime(2026, 1, 1)
    dense = TCString(created=when, last_updated=when, vendor_consents=frozenset(range(1, 40)))
    sparse = TCString(created=when, last_updated=when, vendor_consents=frozenset({1, 2000}))
    is_range_encoding = 213 + 16  # after the fixed header and MaxVendorId

    def bits(text: str) -> str:
        return "".join(format(ALPHABET.index(char), "06b") for char in text)

    assert bits(encode(dense))[is_range_encoding] == "0"
    assert bits(encode(sparse))[is_range_encoding] == "1"
    assert len(encode(sparse)) < len(encode(sparse, "bitfield"))


def test_encode_refuses_what_the_format_cannot_hold():
    when = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="out of 1-24"):
        encode(TCString(created=when, last_updated=when, purposes_consent=frozenset({25})))
    with pytest.raises(ValueError, match="two letters"):
        encode(TCString(created=when, last_updated=when, publisher_cc="de"))
    with pytest.raises(ValueError, match="does not fit"):
        encode(TCString(created=when, last_updated=when, cmp_id=5000))
    with pytest.raises(ValueError, match="vendor encoding"):
        encode(TCString(created=when, last_updated=when), "bits")


# The synthetic world's consent


def test_world_strings_grant_deny_and_garble_as_planned():
    grant, deny, garbage = consent_strings(datetime(2026, 11, 1))
    assert all(allows(s, range(1, 11), 755) for s in grant)
    assert {decode(grant[0]).created} == {datetime(2026, 10, 18)}
    assert [set(range(1, 11)) - decode(s).purposes_consent for s in deny] == [{3}, {4}]
    for text in garbage:
        with pytest.raises(ValueError):
            decode(text)


def test_world_gives_consent_by_country():
    import duckdb

    con = duckdb.connect()
    World(devices=4000, events=4000, seed=11, now=datetime(2026, 11, 1)).build(con)
    rows = con.execute("SELECT country, consent FROM world_devices").fetchall()
    tcf_rows = [consent for country, consent in rows if country in TCF_COUNTRIES]
    assert all(consent is None for country, consent in rows if country not in TCF_COUNTRIES)
    assert all(consent is not None for consent in tcf_rows)
    granting = sum(allows(c, [1, 3, 4]) for c in tcf_rows) / len(tcf_rows)
    undecodable = sum(not _decodes(c) for c in tcf_rows) / len(tcf_rows)
    assert 0.85 < granting < 0.96
    assert 0.002 < undecodable < 0.03
    per_event = con.execute(
        """SELECT count(*) FROM world_events e JOIN world_devices d ON lower(e.id) = lower(d.id)
           WHERE e.consent IS DISTINCT FROM d.consent"""
    ).fetchone()[0]
    assert per_event == 0


def _decodes(text: str) -> bool:
    try:
        decode(text)
    except ValueError:
        return False
    return True
