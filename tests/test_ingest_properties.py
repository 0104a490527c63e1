"""Properties of the ingest readers, checked on generated files (Hypothesis).

Files of records of random shapes (keys present or absent, spelt in other cases, in
any order; values with delimiters, quotes, line breaks, U+2028, JSON numbers, booleans
and objects; blank, malformed and over-long lines; too-long fields) are written as
CSV, TSV or JSON Lines, plain or gzipped, and ingested into a real store. An oracle in
plain Python reads the same text with the ``csv`` and ``json`` modules and says, from
the rules the README gives, what each record must become; the properties compare.

Every record gets an ID of its own (a copy of an earlier record aside), so a stored
row can be traced to the one record it came from.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from dmp.config import load_config
from dmp.ingest import ingest_files
from dmp.store import open_store
from tests.conftest import NOW, TABLES

# The test instance's limits: small, so that too-long fields and lines stay cheap.
MAX_ID = 256
MAX_FIELD = 200
MAX_LINE = 4000
RAW_MAX = 4096  # bytes of a bad record's text quarantine keeps whole
PROPERTY = settings(
    max_examples=50,
    deadline=None,
    derandomize=False,  # each test's @seed: the same examples wherever the clone lies
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------------------------
# The oracle: what each record of a file must become, from the file's text alone.

CANONICAL = (
    "ts",
    "id",
    "id_type",
    "url",
    "event",
    "category",
    "keywords",
    "country",
    "consent",
    "gpc",
    "hem",
    "maid",
    "cookie",
)
REQUIRED = ("ts", "id", "id_type")
ID_FIELDS = ("id", "hem", "maid", "cookie")  # capped at MAX_ID bytes
OTHER_FIELDS = ("url", "event", "category", "keywords", "country", "consent", "gpc")
MAID_TYPES = ("maid", "idfa", "gaid", "aaid")
ZERO_MAID = "00000000-0000-0000-0000-000000000000"
FORMULA_LEADS = "=+-@\t\r"
EARLIEST = datetime(2000, 1, 1)
LATEST = NOW + timedelta(minutes=60)
DROPPED = {"limited_ad_tracking"}
ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?")
EMAIL_MARKERS = ("zqmail", "zqhost")  # every email the generator writes holds both


class _Any:
    """Equal to anything: a value the oracle cannot tell (an email removed from it)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()


@dataclass
class Expected:
    """One record of the file as the oracle reads it, and what it must become."""

    line: int  # the physical line the record starts on
    reason: str | None  # None: loaded (or a duplicate of an earlier copy)
    raw: str | None = None  # the text quarantine keeps, when the oracle can tell it
    event: tuple | None = None  # the events row
    links: set[tuple] = field(default_factory=set)


def strip_spaces(text: str) -> str:
    """Surrounding spaces go (any Unicode space separator; not tabs or line breaks)."""
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]) == "Zs":
        start += 1
    while end > start and unicodedata.category(text[end - 1]) == "Zs":
        end -= 1
    return text[start:end]


def clean(value: str | None) -> str | None:
    """A field as validation sees it: one that starts or ends with a space is trimmed
    of spaces; an empty one is absent."""
    if value is None:
        return None
    if value.startswith(" ") or value.endswith(" "):
        value = strip_spaces(value)
    return value or None


def maid(value: str) -> str | None:
    if re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", value):
        return value.lower()
    if re.fullmatch(r"[0-9a-fA-F]{32}", value):
        return str(UUID(value))
    return None


def cookie(value: str) -> str | None:
    """Printable ASCII without spaces or @ (nor @ URL-escaped once or twice), not
    starting like a spreadsheet formula."""
    escaped = "%40" in value or "%2540" in value
    ok = re.fullmatch(r"[!-~]+", value) and "@" not in value and not escaped
    ok = ok and value[0] not in FORMULA_LEADS
    return value if ok else None


def hem(value: str) -> str | None:
    value = value.strip(" \t\n\r\xa0")
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return value.lower()
    if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value, re.ASCII):
        return hashlib.sha256(value.lower().encode()).hexdigest()
    return None


def timestamp(value: str | None) -> datetime | None:
    """ISO 8601 (any offset, as UTC) or epoch seconds or milliseconds."""
    if value is None:
        return None
    if ISO.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return moment
    if re.fullmatch(r"\d{1,14}", value):
        number = int(value)
        seconds = number if number < 10**11 else number / 1000
        return datetime(1970, 1, 1) + timedelta(seconds=seconds)
    return None


def domain(url: str) -> str | None:
    """The URL's host: after the scheme, before any path, query or fragment; without
    user, port or a leading www."""
    if "://" in url:
        rest = url[url.index("://") + 3 :]
    elif url.startswith("//"):
        rest = url[2:]
    else:
        rest = url
    rest = rest[:300]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0].lower()
    host = authority.rsplit("@", 1)[-1].split(":", 1)[0]
    return host.removeprefix("www.") or None


def categories(value: str | None) -> list[str] | None:
    if value is None:
        return None
    parts = [strip_spaces(p) for p in value.split("|")]
    return [p for p in parts if p] or None


def redacted(value: str | None):
    """A text field as stored: emails are removed from it, so the oracle only knows
    one that holds no email."""
    if value is not None and ("@" in value or "%40" in value.lower()):
        return ANY
    return value


def judge(line: int, fields: dict[str, str | None], raw: str) -> Expected:
    """The first check a record fails, in the README's order; or the row it becomes."""
    f = {name: clean(fields.get(name)) for name in CANONICAL}
    shown = raw if "@" not in raw and "%40" not in raw.lower() else None
    if len(raw.encode()) > RAW_MAX:
        shown = None

    def bad(reason: str) -> Expected:
        return Expected(line, reason, shown)

    if f["id"] is None:
        return bad("missing_id")
    limits = [(name, MAX_ID) for name in ID_FIELDS] + [(name, MAX_FIELD) for name in OTHER_FIELDS]
    if any(f[name] is not None and len(f[name].encode()) > cap for name, cap in limits):
        return bad("oversize_field")
    id_type = f["id_type"] and f["id_type"].lower()
    if id_type == "cookie":
        normal = cookie
    elif id_type in MAID_TYPES:
        id_type, normal = "maid", maid
    else:
        return bad("bad_id_type")
    if f["id"][0] in FORMULA_LEADS:
        return bad("formula_id")
    n_id = normal(f["id"])
    if n_id is None:
        return bad("bad_id")
    if n_id == ZERO_MAID:
        return Expected(line, "limited_ad_tracking")
    ts = timestamp(f["ts"])
    if ts is None:
        return bad("bad_timestamp")
    if ts > LATEST:
        return bad("future_timestamp")
    if ts < EARLIEST:
        return bad("old_timestamp")
    if f["hem"] is not None and hem(f["hem"]) is None:
        return bad("bad_hem")
    if (f["maid"] is not None and maid(f["maid"]) is None) or (
        f["cookie"] is not None and cookie(f["cookie"]) is None
    ):
        return bad("bad_linked_id")
    country = f["country"] and f["country"].upper()
    if country is not None and not re.fullmatch("[A-Z]{2}", country):
        return bad("bad_country")
    gpc = f["gpc"] and {"1": True, "true": True, "0": False, "false": False}.get(f["gpc"].lower())
    if f["gpc"] is not None and gpc is None:
        return bad("bad_gpc")
    url = f["url"]
    event = (
        n_id,
        id_type,
        ts,
        redacted(f["event"].lower() if f["event"] else "pageview"),
        redacted(url),
        domain(url) if url else None,
        categories(f["category"]),
        redacted(f["keywords"]),
        country,
        redacted(f["consent"]),
        gpc,
    )
    links = set()
    for kind, normal in (("hem", hem), ("maid", maid), ("cookie", cookie)):
        value = f[kind] and normal(f[kind])
        if value is not None and value != n_id:
            links.add((n_id, id_type, value, kind))
    return Expected(line, None, event=event, links=links)


def physical_lines(text: str) -> list[str]:
    """The file's lines, as a line reader splits them: at ``\\n`` only (a ``\\r``
    before it belongs to the line break; U+2028 and friends are text)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def canonical_of(name: str) -> str | None:
    """The column a header or key feeds: its name, trimmed and lower-cased."""
    target = name.strip().lower()
    return target if target in CANONICAL else None


class Rejected(Exception):
    """The oracle says the whole file is refused; the message is a part of the error."""


def read_csv_oracle(text: str, delim: str) -> list[Expected]:
    lines = physical_lines(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header = next(reader, None)
    if header is None:
        raise Rejected("empty file")
    targets = [canonical_of(h) for h in header]
    if any(t not in targets for t in REQUIRED):
        raise Rejected("missing required column")
    expected = []
    start = reader.line_num + 1
    for fields in reader:
        first, last, start = start, reader.line_num, reader.line_num + 1
        if not fields:
            continue  # a blank line holds no record
        record_text = "\n".join(lines[first - 1 : last])
        if len(record_text.encode()) > MAX_LINE:
            expected.append(Expected(first, "oversize_line"))
        elif len(fields) != len(header):
            expected.append(Expected(first, "malformed_row", record_text))
        else:
            values = {t: v or None for t, v in zip(targets, fields, strict=True) if t}
            expected.append(judge(first, values, delim.join(fields)))
    return expected


def json_text(value) -> str | None:
    """A JSON value as a text column holds it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def read_jsonl_oracle(text: str) -> list[Expected]:
    lines = physical_lines(text)
    first = next((line for line in lines if line.strip(" \t\r\n\x0b\x0c")), None)
    if first is None:
        raise Rejected("empty file")
    expected, keys, objects = [], set(), 0
    for number, line in enumerate(lines, 1):
        record = _json_object(line)
        if not strip_spaces(line):
            continue  # a blank line holds no record
        if isinstance(record, dict):
            objects += 1
            keys.update(filter(None, map(canonical_of, record)))
        if len(line.encode()) > MAX_LINE:
            expected.append(Expected(number, "oversize_line"))
        elif not isinstance(record, dict):
            expected.append(Expected(number, "malformed_row", line))
        else:
            spelled: dict[str, list[str]] = {}
            for key, value in record.items():
                if canonical_of(key) and value is not None:
                    spelled.setdefault(canonical_of(key), []).append(json_text(value))
            # Spellings of one column: the first that is not blank; two different
            # non-blank values make the record ambiguous.
            filled = {c: [v for v in vs if strip_spaces(v)] for c, vs in spelled.items()}
            if any(len(set(vs)) > 1 for vs in filled.values()):
                expected.append(Expected(number, "conflicting_fields", line))
                continue
            values = {c: (filled[c] or vs)[0] for c, vs in spelled.items()}
            expected.append(judge(number, values, line))
    if not objects:
        raise Rejected("not JSON Lines")
    if any(name not in keys for name in REQUIRED):
        raise Rejected("missing required column")
    return expected


def _json_object(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None


def read_oracle(name: str, text: str) -> list[Expected]:
    if ".jsonl" in name:
        return read_jsonl_oracle(text)
    return read_csv_oracle(text, "\t" if ".tsv" in name else ",")


# ----------------------------------------------------------------------------------
# The generator: records of random shapes, written in each format.

# Characters that trouble readers: delimiters, quotes, line and paragraph separators,
# spaces of other kinds, multi-byte text. No @: emails are put in on purpose.
TRICKY = " ,;\t\"'|/?#:=%.-_\n\u2028\u2029\x85\u00a0\u3000éß中😀"
TEXT = st.text(st.sampled_from(string.ascii_letters[:6] + string.digits[:3] + TRICKY), max_size=10)
EMAIL = st.builds(
    lambda n, at, case: case(f"zqmail{n}{at}zqhost.example"),
    st.integers(0, 9),
    st.sampled_from(["@", "@", "%40"]),
    st.sampled_from([str, str.upper]),
)
WITH_EMAIL = st.tuples(TEXT, EMAIL, TEXT).map(" ".join)
LONG = st.integers(MAX_FIELD + 50, MAX_FIELD + 150).map(lambda n: "x" * n)
HUGE = st.just("h" * (MAX_LINE + 1000))  # makes its line too long to read
JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), TEXT)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("abc"), inner, max_size=3)
    ),
    max_leaves=5,
)


@st.composite
def timestamps(draw):
    moment = draw(st.datetimes(NOW - timedelta(days=2), NOW + timedelta(hours=2)))
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    form = draw(st.sampled_from(["z", "z", "offset", "space", "s", "ms", "int", "odd"]))
    epoch = (moment - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
    if form == "z":
        return moment.isoformat() + "Z"
    if form == "offset":
        zone = timezone(timedelta(hours=draw(st.integers(-12, 14))))
        return moment.replace(tzinfo=UTC).astimezone(zone).isoformat()
    if form == "space":
        return moment.isoformat(sep=" ")
    if form == "s":
        return str(epoch // 1000)
    if form == "ms":
        return str(epoch)
    if form == "int":
        return epoch // 1000  # a JSON number
    odd = ["soon", "", " ", "2026-02-30T10:00:00Z", "1999-12-31T23:59:59Z", "0", "-5"]
    return draw(st.sampled_from(odd))


@st.composite
def identities(draw, index: int) -> dict:
    """id and id_type, mostly valid, every valid ID its own (``index``)."""
    kind = draw(st.sampled_from(["cookie"] * 4 + ["maid"] * 2 + ["bad", "type"]))
    cookie_types = ["cookie", "Cookie", "COOKIE", " cookie "]
    if kind == "cookie":
        tail = draw(st.text(string.ascii_letters + string.digits + "._~!*'()", max_size=4))
        value = f"ck{index}{tail}"
        value = draw(st.sampled_from([value, value, f" {value} ", 10_000 + index]))
        return {"id": value, "id_type": draw(st.sampled_from(cookie_types))}
    if kind == "maid":
        uuid = str(UUID(int=index + 1))
        value = draw(st.sampled_from([uuid, uuid.upper(), uuid.replace("-", ""), ZERO_MAID]))
        return {"id": value, "id_type": draw(st.sampled_from(["idfa", "GAID", "aaid", "maid"]))}
    if kind == "type":
        return {"id": f"ck{index}", "id_type": draw(st.sampled_from(["fax", "", None, "cookies"]))}
    bad = draw(
        st.sampled_from(
            [
                None,
                "",
                "  ",
                f"has space{index}",
                f"=ck{index}",
                f"-ck{index}",
                f"+{index}",
                f"@ck{index}",
                f"\tck{index}",
                f"ckü{index}",
                "c" * (MAX_ID + 10),
                "not-a-uuid",
            ]
        )  # fmt: skip
    )
    value = draw(st.one_of(st.just(bad), EMAIL, st.just({"a": index})))
    return {"id": value, "id_type": draw(st.sampled_from(cookie_types + ["idfa"]))}


def hosts() -> st.SearchStrategy[str]:
    return st.sampled_from(
        ["https://WWW.Cars.example", "http://news.example:8080", "//shop.example",
         "cars.example", "https://user@Mail.example", "https://a.example"]
    )  # fmt: skip


OPTIONAL = {
    "url": st.one_of(
        st.tuples(hosts(), TEXT).map(lambda p: f"{p[0]}/{p[1]}"),
        st.tuples(hosts(), WITH_EMAIL).map(lambda p: f"{p[0]}/?e={p[1]}"),
        LONG.map(lambda x: "https://long.example/" + x),
        HUGE.map(lambda x: "https://huge.example/" + x),
    ),
    "event": st.one_of(st.sampled_from(["pageview", "Click", "PURCHASE", " signup ", ""]), TEXT),
    "category": st.one_of(st.sampled_from(["1|30", " 7 | 8 |", "|", "IAB1"]), st.integers(1, 9)),
    "keywords": st.one_of(
        TEXT, WITH_EMAIL, LONG, st.dictionaries(st.sampled_from("ab"), st.integers(0, 9))
    ),
    "country": st.sampled_from(["us", "GB", "", "USA", "1x", " de "]),
    "consent": st.one_of(
        st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=30),
        TEXT,
        WITH_EMAIL,
        LONG,
    ),
    "gpc": st.sampled_from(["1", "0", "true", "FALSE", "maybe", "", True, False, 1, 0]),
    "hem": st.sampled_from(["a" * 64, "AB" * 32, " Email@Example.com ", "nothex"]),
    "maid": st.sampled_from([str(UUID(int=7)), "6D92078A82464BA4AE5B76104861E7DC", "bad-uuid"]),
    "cookie": st.sampled_from(["lk1", "=lk", "has space", "lk-2"]),
}


@st.composite
def records(draw, index: int) -> dict:
    """A record's canonical fields (absent keys absent); values may be JSON non-strings."""
    record = {"ts": draw(timestamps()), **draw(identities(index))}
    for name in draw(st.sets(st.sampled_from(sorted(OPTIONAL)), max_size=6)):
        record[name] = draw(OPTIONAL[name])
    if draw(st.integers(0, 9)) == 0:
        del record[draw(st.sampled_from(REQUIRED))]  # now and then one is missing
    return record


@st.composite
def items(draw, max_records: int = 8) -> list[tuple[str, object]]:
    """The file's content in order: ("record", fields), ("blank", text), ("malformed",
    None: the format's own kind). A repeated record is an earlier one again."""
    made: list[dict] = []
    out: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(0, max_records))):
        kind = draw(st.sampled_from(["record"] * 6 + ["copy", "blank", "malformed"]))
        if kind == "copy" and made:
            out.append(("record", draw(st.sampled_from(made))))
        elif kind == "blank":
            out.append(("blank", draw(st.sampled_from(["", "  "]))))
        elif kind == "malformed":
            out.append(("malformed", None))
        else:
            made.append(draw(records(len(made))))
            out.append(("record", made[-1]))
    return out


def spelling(name: str):
    return st.sampled_from([name, name, name, name.upper(), name.title(), f" {name}"])


@st.composite
def jsonl_line(draw, record: dict) -> str:
    """One record as a JSON object: keys in any order and spelling, with keys no column
    reads, and now and then a second spelling of a key holding null."""
    obj = {}
    for name in draw(st.permutations(list(record))):
        obj[draw(spelling(name))] = record[name]
        if draw(st.integers(0, 9)) == 0:
            obj.setdefault(name.upper(), None)
    for key in draw(st.lists(st.sampled_from(["x", "Extra", "note", "ids"]), max_size=2)):
        obj.setdefault(key, draw(st.one_of(JSON_VALUE, WITH_EMAIL)))
    compact = draw(st.booleans())
    text = json.dumps(
        obj,
        ensure_ascii=draw(st.booleans()),
        separators=(",", ":") if compact else None,
    )
    return draw(st.sampled_from([text, text, f" {text} "]))


MALFORMED_JSON = st.one_of(
    st.sampled_from(["{not json", "[1, 2]", "42", '"text"', "null", '{"id": "x"', "}{", "true"]),
    st.text(st.sampled_from('{}":,abc 1\u2028'), min_size=1, max_size=8).map(lambda t: "{" + t),
)


@st.composite
def jsonl_lines(draw, content: list) -> list[str]:
    lines = []
    for kind, value in content:
        if kind == "record":
            lines.append(draw(jsonl_line(value)))
        elif kind == "blank":
            lines.append(value)
        else:
            lines.append(draw(MALFORMED_JSON))
    return lines


def csv_field(value, delim: str, quote_all: bool) -> str:
    text = json_text(value)
    if text is None:
        return ""
    if quote_all or any(c in text for c in (delim, '"', "\n", "\r")):
        return '"' + text.replace('"', '""') + '"'
    return text


NOTE = st.one_of(TEXT, WITH_EMAIL)  # a column no field reads


@st.composite
def csv_header(draw, complete: bool = False) -> list[str]:
    """Columns: the required ones (unless ``complete``, now and then one missing), some
    others, and a column no field reads; in any order and spelling."""
    names = list(REQUIRED) + draw(st.lists(st.sampled_from(sorted(OPTIONAL)), unique=True))
    if not complete and draw(st.integers(0, 19)) == 0:
        names.remove(draw(st.sampled_from(REQUIRED)))
    names += draw(st.sampled_from([[], ["note"]]))
    return [draw(spelling(n)) for n in draw(st.permutations(names))]


@st.composite
def csv_lines(draw, content: list, header: list[str], delim: str) -> list[str]:
    targets = [canonical_of(h) for h in header]
    lines = [delim.join(header)]
    for kind, value in content:
        if kind == "record":
            quote_all = draw(st.booleans())
            cells = [value.get(t) if t else draw(NOTE) for t in targets]
            lines.append(delim.join(csv_field(v, delim, quote_all) for v in cells))
        elif kind == "blank":
            lines.append("")
        else:
            width = draw(st.sampled_from([1, 2, len(header) - 1, len(header) + 1]))
            token = st.text(string.ascii_letters + string.digits, min_size=1, max_size=5)
            lines.append(delim.join(draw(st.lists(token, min_size=width, max_size=width))))
    return lines


@dataclass
class LogFile:
    name: str
    text: str
    data: bytes


@st.composite
def log_files(draw, content=None) -> LogFile:
    """A whole file: format, gzip, line ends, a byte-order mark now and then."""
    content = draw(items()) if content is None else content
    fmt = draw(st.sampled_from(["csv", "tsv", "jsonl"]))
    if fmt == "jsonl":
        lines = draw(jsonl_lines(content))
    else:
        delim = "," if fmt == "csv" else "\t"
        lines = draw(csv_lines(content, draw(csv_header()), delim))
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    text = end.join(lines) + draw(st.sampled_from([end, ""]))
    name = f"props.{fmt}" + draw(st.sampled_from(["", ".gz"]))
    data = text.encode()
    if name.endswith(".gz"):
        data = gzip.compress(data, 1)
    return LogFile(name, text, data)


# ----------------------------------------------------------------------------------
# The properties.


class Instance(tuple):
    """(store, config, input folder), shown short in a failing example's report."""

    def __repr__(self) -> str:
        return "instance"


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """One store for the module (a store per example would cost more than the ingest);
    each example empties it first (``fresh``)."""
    home = tmp_path_factory.mktemp("props")
    config = load_config(
        home,
        overrides=[f"ingest.max_field_length={MAX_FIELD}", f"ingest.max_line_bytes={MAX_LINE}"],
        env={},
    )
    with open_store(config) as store:
        yield Instance((store, config, home / "in"))


def fresh(store) -> None:
    for table in TABLES:
        store.con.execute(f"DELETE FROM {table}")


def ingest(instance, log: LogFile):
    store, config, folder = instance
    folder.mkdir(exist_ok=True)
    path = folder / log.name
    path.write_bytes(log.data)
    [result] = ingest_files(store, config, [path], now=NOW)
    return result


def rows(store, sql: str) -> list[tuple]:
    return store.con.execute(sql).fetchall()


def snapshot(store) -> dict[str, list]:
    return {t: sorted(map(str, rows(store, f"SELECT * FROM {t}"))) for t in TABLES}


EVENT = "id, id_type, ts, event, url, domain, categories, keywords, country, consent, gpc"


@PROPERTY
@seed(20261204)
@given(log=log_files())
def test_every_record_becomes_what_the_oracle_reads_from_it(instance, log):
    store = instance[0]
    fresh(store)
    result = ingest(instance, log)
    try:
        expected = read_oracle(log.name, log.text)
    except Rejected as refused:
        assert result.status == "rejected" and str(refused) in result.error
        assert rows(store, "SELECT count(*) FROM events") == [(0,)]
        assert rows(store, "SELECT count(*) FROM quarantine") == [(0,)]
        return
    assert result.status == "loaded", result.error

    # Every record is accounted for exactly once; blank lines are no records.
    reasons = Counter(e.reason for e in expected if e.reason)
    good = [e for e in expected if e.reason is None]
    assert result.rows == len(expected)
    assert result.reasons == dict(reasons)
    assert result.dropped == sum(n for r, n in reasons.items() if r in DROPPED)
    assert result.quarantined == sum(n for r, n in reasons.items() if r not in DROPPED)
    assert result.loaded + result.duplicates == len(good)
    assert result.loaded + result.duplicates + result.quarantined + result.dropped == result.rows

    # Each bad record is quarantined on its own line, for its reason, with its text.
    bad = [e for e in expected if e.reason and e.reason not in DROPPED]
    stored = rows(store, "SELECT line, reason, raw FROM quarantine")
    assert sorted((line, reason) for line, reason, _ in stored) == sorted(
        (e.line, e.reason) for e in bad
    )
    texts = {(line, reason): raw for line, reason, raw in stored}
    for e in bad:
        if e.raw is not None:
            assert texts[(e.line, e.reason)] == e.raw, e.line

    # Each good record's row holds what the oracle reads from that record: one row per
    # ID (copies of a record are duplicates), whatever the other records look like.
    by_id = {e.event[0]: e.event for e in good}
    events = rows(store, f"SELECT {EVENT} FROM events ORDER BY id")
    assert sorted(e[0] for e in events) == sorted(by_id)
    for row in events:
        assert row == by_id[row[0]]
    assert result.loaded == len(by_id)
    links = set().union(*(e.links for e in good))
    assert set(rows(store, "SELECT id, id_type, linked_id, linked_type FROM id_links")) == links
    devices = rows(store, "SELECT id, id_type, event_count, first_seen, last_seen FROM devices")
    assert sorted(devices) == sorted((i, e[1], 1, e[2], e[2]) for i, e in by_id.items())

    # No email the file held is stored anywhere, raw or URL-escaped.
    for table in [t for (t,) in rows(store, "SELECT table_name FROM duckdb_tables()")]:
        text = str(rows(store, f"SELECT * FROM {table}")).lower()
        assert not any(marker in text for marker in EMAIL_MARKERS), table

    # The same file again changes nothing.
    before = snapshot(store)
    again = ingest(instance, log)
    assert again.status == "skipped"
    assert snapshot(store) == before


@settings(PROPERTY, max_examples=15)
@seed(20261204)
@given(data=st.data())
def test_a_records_outcome_does_not_depend_on_the_other_records(instance, data):
    """The same record, among other records of any shape, in any place, is stored (or
    quarantined, with the same reason and text) the same way."""
    store = instance[0]
    target = data.draw(records(0))
    target.update(id="target", id_type="cookie")
    if target.get("ts") is None:  # a file none of whose records has a ts is refused whole
        target["ts"] = "2026-11-19T10:00:00Z"
    fmt = data.draw(st.sampled_from(["csv", "tsv", "jsonl"]))
    if fmt == "jsonl":
        header, delim = None, None
        line = data.draw(jsonl_line(target))
    else:
        delim = "," if fmt == "csv" else "\t"
        header = data.draw(csv_header(complete=True))
        line = data.draw(csv_lines([("record", target)], header, delim))[1]
    outcomes = []
    for name in ("a", "b"):
        others = [c for c in data.draw(items()) if c[0] != "malformed"]
        place = data.draw(st.integers(0, len(others)))
        if fmt == "jsonl":
            lines = data.draw(jsonl_lines(others))
        else:
            lines = data.draw(csv_lines(others, header, delim))[1:]
        lines.insert(place, line)
        if header:
            lines.insert(0, delim.join(header))
        text = "\n".join(lines) + "\n"
        fresh(store)
        result = ingest(instance, LogFile(f"{name}.{fmt}", text, text.encode()))
        assert result.status == "loaded", result.error
        outcomes.append(
            (
                rows(store, f"SELECT {EVENT} FROM events WHERE id = 'target'"),
                rows(store, "SELECT reason, raw FROM quarantine WHERE id = 'target'"),
                rows(store, "SELECT linked_id, linked_type FROM id_links WHERE id = 'target'"),
            )
        )
    assert outcomes[0] == outcomes[1]
