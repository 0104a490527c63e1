"""Normalise and validate staged rows in one set-based pass.

Each row gets its normalised fields and at most one ``reason``: the first
check it fails, in the order of ``REASONS``. Rows with a reason in
``DROP_REASONS`` are counted but not quarantined (they are valid input that we
must not keep); every other reason sends the row to quarantine.
"""

from __future__ import annotations

from dmp.csvsafe import starts_like_formula
from dmp.ingest.readers import CANONICAL, Source

REASONS = (
    "blank_line",
    "malformed_row",
    "conflicting_fields",
    "missing_id",
    "oversize_field",
    "bad_id_type",
    "formula_id",
    "bad_id",
    "limited_ad_tracking",
    "bad_timestamp",
    "future_timestamp",
    "old_timestamp",
    "bad_hem",
    "bad_linked_id",
    "bad_country",
    "bad_gpc",
)
# Valid rows we must not keep: tracking limited by the device, or the ID opted out
# (set by the loader after validation, against the optouts table).
DROP_REASONS = frozenset({"limited_ad_tracking", "opted_out"})
# Not a record at all (an empty line in JSON Lines): neither counted nor kept.
SKIP_REASONS = frozenset({"blank_line"})

MAID_TYPES = ("maid", "idfa", "gaid", "aaid")
ZERO_MAID = "00000000-0000-0000-0000-000000000000"
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_OTHER_FIELDS = ("url", "event", "category", "keywords", "country", "consent", "gpc")
RAW_MAX_BYTES = 4096  # of a bad row's text kept in quarantine
EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
# An email address inside other text (a URL's query string, keywords, a bad row).
# Also written with an escaped @ (URL, twice-URL or JSON escapes) or an escaped dot.
_AT_SIGNS = ("@", "%40", "%2540", "\\u0040")
_EMAIL_IN_TEXT = r"[\pL\pN._%+'-]+(?:@|%40|%2540|\\u0040)[\pL\pN.-]+(?:\.|%2[Ee])\pL{2,}"


def _text(col: str) -> str:
    """The field without surrounding spaces, NULL when blank.

    Trimming copies every string, and most fields have nothing to trim, so only
    values that start or end with a space (the only character ``trim`` removes)
    or are empty pay for it; prefix and suffix tests read a byte each.
    """
    return (
        f"CASE WHEN {col} = '' OR starts_with({col}, ' ') OR ends_with({col}, ' ') "
        f"THEN nullif(trim({col}), '') ELSE {col} END"
    )


def maid_sql(col: str) -> str:
    """Canonical lower-case hyphenated UUID, or NULL when ``col`` is not one."""
    low = f"lower({col})"
    return (
        f"CASE WHEN regexp_full_match({col}, '{_UUID}') THEN {low} "
        f"WHEN regexp_full_match({col}, '[0-9a-fA-F]{{32}}') THEN "
        f"substr({low}, 1, 8) || '-' || substr({low}, 9, 4) || '-' || "
        f"substr({low}, 13, 4) || '-' || substr({low}, 17, 4) || '-' || "
        f"substr({low}, 21, 12) END"
    )


def hem_sql(col: str) -> str:
    """A hashed email: SHA-256 hex, lower-cased. A raw email is normalised (trimmed of
    any white space, lower-cased) and hashed on arrival, never stored. NULL when it is
    neither."""
    value = f"trim({col}, chr(32) || chr(9) || chr(10) || chr(13) || chr(160))"
    return (
        f"CASE WHEN regexp_full_match({value}, '[0-9a-fA-F]{{64}}') THEN lower({value}) "
        f"WHEN regexp_full_match({value}, '{EMAIL}') THEN sha256(lower({value})) END"
    )


def redact_emails(col: str) -> str:
    """``col`` with every email address in it replaced, so that none is stored; only
    text holding an @ (or an escape of it) pays for the regular expression."""
    holds = " OR ".join(f"contains({col}, '{at}')" for at in _AT_SIGNS)
    pattern = _EMAIL_IN_TEXT.replace("'", "''")  # as a SQL string literal
    return (
        f"CASE WHEN {holds} "
        f"THEN regexp_replace({col}, '{pattern}', '[email removed]', 'g') "
        f"ELSE {col} END"
    )


def cookie_sql(col: str) -> str:
    """A cookie ID we store: opaque but printable ASCII without spaces (RFC 6265
    values), never holding an @ (an email address is no cookie ID and must not be
    stored as one, nor its URL-escaped forms) and never starting like a spreadsheet
    formula, so that no stored ID becomes one in a CSV file someone opens."""
    escaped = " OR ".join(f"contains({col}, '{at}')" for at in ("%40", "%2540"))
    return (
        f"CASE WHEN {_cookie_text(col)} AND NOT ({escaped}) AND NOT {starts_like_formula(col)} "
        f"THEN {col} END"
    )


def cookie_lookup_sql(col: str) -> str:
    """A cookie ID to look up (opt-outs, deletions, explain): as ``cookie_sql``, but one
    starting like a formula is taken, so erasure reaches IDs stored before such IDs
    were refused."""
    return f"CASE WHEN {_cookie_text(col)} THEN {col} END"


def _cookie_text(col: str) -> str:
    return f"regexp_full_match({col}, '[!-~]+') AND NOT contains({col}, '@')"


def _after_scheme(url: str) -> str:
    """The URL from its authority on, capped at a host's maximum length.

    ``substring`` rather than slice syntax throughout: it costs a third as much.
    """
    start = (
        f"CASE WHEN strpos({url}, '://') > 0 THEN strpos({url}, '://') + 3 "
        f"WHEN starts_with({url}, '//') THEN 3 ELSE 1 END"
    )
    return f"substring({url}, {start}, 300)"


def _authority(rest: str) -> str:
    """The lower-case authority (``user@host:port``) from ``_after_scheme``.

    Built from ``strpos`` and slices on purpose: a regular expression or
    ``split_part`` over the whole URL costs more than reading the file.
    """
    ends = ", ".join(f"coalesce(nullif(strpos({rest}, '{c}'), 0), 999)" for c in "/?#")
    return f"lower(substring({rest}, 1, least({ends}) - 1))"


def _timestamp(col: str) -> str:
    """ISO 8601 text with any UTC offset, as UTC; NULL when it is not one.

    The common ``...Z`` form takes the plain cast, at half the cost. It must not
    see a zone name: the plain cast ignores one after a space.
    """
    return (
        f"CASE WHEN ends_with({col}, 'Z') AND NOT contains({col}, ' ') "
        f"THEN TRY_CAST({col} AS TIMESTAMP) ELSE TRY_CAST({col} AS TIMESTAMPTZ)::TIMESTAMP END"
    )


def _categories(col: str) -> str:
    """``a|b|c`` as a list, parts trimmed, empty parts dropped; only lists that have
    spaces or empty parts pay for the lambdas."""
    messy = " OR ".join(
        [f"contains({col}, ' ')", f"contains({col}, '||')"]
        + [f"{test}({col}, '|')" for test in ("starts_with", "ends_with")]
    )
    return (
        f"CASE WHEN {messy} THEN nullif(list_filter(list_transform(string_split({col}, '|'), "
        f"lambda c: trim(c)), lambda c: c <> ''), []) ELSE string_split({col}, '|') END"
    )


def _shortened(text: str) -> str:
    """A bad row's text as quarantine keeps it: enough to find and fix the row, not
    an oversized field's megabytes."""
    return (
        f"CASE WHEN strlen({text}) > {RAW_MAX_BYTES} "
        f"THEN left({text}, {RAW_MAX_BYTES}) || ' ... (' || strlen({text}) || ' bytes)' "
        f"ELSE {text} END"
    )


def staged_sql(source: Source) -> str:
    """The SELECT that turns a reader's canonical text columns into typed, checked rows.
    Bad rows keep their text (``raw``, emails removed) and the keys that find their
    line (``text_key``, ``record_key``; see ``loader._locate_bad_rows``). Emails in
    URLs, keywords and consent strings are removed too; a raw email in ``hem`` is hashed.

    Parameters: ``$latest`` (now + allowed clock skew), ``$earliest``,
    ``$max_id`` and ``$max_field`` (lengths in bytes).
    """
    oversize = " OR ".join(f"strlen({name}) > $max_field" for name in _OTHER_FIELDS)
    ids = " OR ".join(f"strlen({name}) > $max_id" for name in ("id", "hem", "maid", "cookie"))
    reasons = {
        "blank_line": "blank",
        "malformed_row": "malformed",
        "conflicting_fields": "conflict",
        "missing_id": "id IS NULL",
        "oversize_field": f"{ids} OR {oversize}",
        "bad_id_type": "n_id_type IS NULL",
        "formula_id": starts_like_formula("id"),
        "bad_id": "n_id IS NULL",
        "limited_ad_tracking": f"n_id = '{ZERO_MAID}'",
        "bad_timestamp": "n_ts IS NULL",
        "future_timestamp": "n_ts > $latest",
        "old_timestamp": "n_ts < $earliest",
        "bad_hem": "hem IS NOT NULL AND n_hem IS NULL",
        "bad_linked_id": "(maid IS NOT NULL AND n_maid IS NULL) "
        "OR (cookie IS NOT NULL AND n_cookie IS NULL)",
        "bad_country": "country IS NOT NULL AND NOT regexp_full_match(n_country, '[A-Z]{2}')",
        "bad_gpc": "gpc IS NOT NULL AND n_gpc IS NULL",
    }
    reason_case = (
        "CASE " + " ".join(f"WHEN {reasons[name]} THEN '{name}'" for name in REASONS) + " END"
    )
    maid_types = ", ".join(f"'{t}'" for t in MAID_TYPES)
    cleaned = ", ".join(f"{_text(name)} AS {name}" for name in CANONICAL)
    redacted = ", ".join(f"{redact_emails(name)} AS {name}" for name in ("event", "category"))

    def bad(name: str, expr: str) -> str:
        return f"CASE WHEN reason IS NOT NULL AND reason <> 'blank_line' THEN {expr} END AS {name}"

    return f"""
    WITH src AS ({source.sql}),
    cleaned AS (SELECT * REPLACE ({cleaned}) FROM src),
    typed AS (
        SELECT * REPLACE ({redacted}),
            CASE WHEN id_type = 'cookie' THEN 'cookie'
                 WHEN lower(id_type) IN ({maid_types}) THEN 'maid'
                 WHEN lower(id_type) = 'cookie' THEN 'cookie' END AS n_id_type,
            {_timestamp("ts")} AS ts_text,
            {_after_scheme("url")} AS url_rest
        FROM cleaned
    ),
    numbered AS (
        SELECT *,
            CASE WHEN ts_text IS NULL THEN TRY_CAST(ts AS DOUBLE) END AS ts_number,
            {_authority("url_rest")} AS authority
        FROM typed
    ),
    normal AS (
        SELECT *,
            CASE n_id_type WHEN 'maid' THEN {maid_sql("id")} WHEN 'cookie' THEN {cookie_sql("id")}
            END AS n_id,
            CASE WHEN ts_text IS NOT NULL THEN ts_text
                 WHEN ts_number >= 0 AND ts_number < 1e11
                     THEN make_timestamp(TRY_CAST(ts_number * 1e6 AS BIGINT))
                 WHEN ts_number >= 1e11 AND ts_number < 1e14
                     THEN make_timestamp(TRY_CAST(ts_number * 1e3 AS BIGINT))
            END AS n_ts,
            upper(country) AS n_country,
            CASE WHEN lower(gpc) IN ('1', 'true') THEN true
                 WHEN lower(gpc) IN ('0', 'false') THEN false END AS n_gpc,
            {hem_sql("hem")} AS n_hem,
            {maid_sql("maid")} AS n_maid,
            {cookie_sql("cookie")} AS n_cookie,
            CASE WHEN contains(authority, '@') OR contains(authority, ':')
                 THEN split_part(split_part(authority, '@', -1), ':', 1) ELSE authority
            END AS host
        FROM numbered
    ),
    checked AS (SELECT *, {reason_case} AS reason FROM normal)
    SELECT
        reason,
        {bad("raw", _shortened(redact_emails(source.raw_expr)))},
        {bad("text_key", source.text_key)},
        {bad("record_key", source.record_key)},
        n_ts AS ts,
        n_id AS id,
        n_id_type AS id_type,
        coalesce(lower(event), 'pageview') AS event,
        {redact_emails("url")} AS url,
        nullif(CASE WHEN starts_with(host, 'www.') THEN substring(host, 5) ELSE host END, '')
            AS domain,
        {_categories("category")} AS categories,
        {redact_emails("keywords")} AS keywords,
        n_country AS country,
        {redact_emails("consent")} AS consent,
        n_gpc AS gpc,
        n_hem AS link_hem,
        CASE WHEN n_maid IS DISTINCT FROM n_id THEN n_maid END AS link_maid,
        CASE WHEN n_cookie IS DISTINCT FROM n_id THEN n_cookie END AS link_cookie
    FROM checked
    """
