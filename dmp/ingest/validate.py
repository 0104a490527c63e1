"""Normalise and validate staged rows in one set-based pass.

Each row gets its normalised fields and at most one ``reason``: the first
check it fails, in the order of ``REASONS``. Rows with a reason in
``DROP_REASONS`` are counted but not quarantined (they are valid input that we
must not keep); every other reason sends the row to quarantine.
"""

from __future__ import annotations

REASONS = (
    "blank_line",
    "malformed_row",
    "missing_id",
    "oversize_field",
    "bad_id_type",
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
DROP_REASONS = frozenset({"limited_ad_tracking"})
# Not a record at all (an empty line in JSON Lines): neither counted nor kept.
SKIP_REASONS = frozenset({"blank_line"})

MAID_TYPES = ("maid", "idfa", "gaid", "aaid")
ZERO_MAID = "00000000-0000-0000-0000-000000000000"
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Host of a URL, scheme, user info and "www." stripped.
_HOST = r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?(?:[^/?#@]*@)?(?:[wW]{3}[.])?([^/:?#]+)"
_OTHER_FIELDS = ("url", "event", "category", "keywords", "country", "consent", "gpc")


def _maid(expr: str) -> str:
    """Canonical lower-case hyphenated UUID, or NULL when ``expr`` is not one.

    The common case (already hyphenated) is one regex match; only bare 32-hex
    IDs pay for re-assembly.
    """
    low = f"lower(trim({expr}))"
    return (
        f"CASE WHEN regexp_full_match({low}, '{_UUID}') THEN {low} "
        f"WHEN regexp_full_match({low}, '[0-9a-f]{{32}}') THEN "
        f"substr({low}, 1, 8) || '-' || substr({low}, 9, 4) || '-' || "
        f"substr({low}, 13, 4) || '-' || substr({low}, 17, 4) || '-' || "
        f"substr({low}, 21, 12) END"
    )


def _cookie(expr: str) -> str:
    """A cookie ID is opaque but printable ASCII without spaces (RFC 6265 values)."""
    return f"CASE WHEN regexp_full_match(trim({expr}), '[!-~]+') THEN trim({expr}) END"


def _blank(expr: str) -> str:
    return f"({expr} IS NULL OR trim({expr}) = '')"


def _present(expr: str) -> str:
    return f"NOT {_blank(expr)}"


def staged_sql(source_sql: str, raw_expr: str) -> str:
    """The SELECT that turns a reader's canonical text columns into typed, checked rows.

    Parameters: ``$now``, ``$latest`` (now + allowed clock skew), ``$earliest``,
    ``$max_id`` and ``$max_field`` (lengths).
    """
    oversize = " OR ".join(f"length({name}) > $max_field" for name in _OTHER_FIELDS)
    reasons = {
        "blank_line": "blank",
        "malformed_row": "malformed",
        "missing_id": _blank("id"),
        "oversize_field": (
            f"length(id) > $max_id OR length(hem) > $max_id OR length(maid) > $max_id "
            f"OR length(cookie) > $max_id OR {oversize}"
        ),
        "bad_id_type": "n_id_type IS NULL",
        "bad_id": "n_id IS NULL",
        "limited_ad_tracking": f"n_id = '{ZERO_MAID}'",
        "bad_timestamp": "n_ts IS NULL",
        "future_timestamp": "n_ts > $latest",
        "old_timestamp": "n_ts < $earliest",
        "bad_hem": (
            f"{_present('hem')} AND NOT regexp_full_match(lower(trim(hem)), '[0-9a-f]{{64}}')"
        ),
        "bad_linked_id": (
            f"({_present('maid')} AND n_maid IS NULL) "
            f"OR ({_present('cookie')} AND n_cookie IS NULL)"
        ),
        "bad_country": f"{_present('country')} AND NOT regexp_full_match(n_country, '[A-Z]{{2}}')",
        "bad_gpc": f"{_present('gpc')} AND n_gpc IS NULL",
    }
    reason_case = (
        "CASE " + " ".join(f"WHEN {reasons[name]} THEN '{name}'" for name in REASONS) + " END"
    )
    maid_types = ", ".join(f"'{t}'" for t in MAID_TYPES)
    return f"""
    WITH src AS ({source_sql}),
    typed AS (
        SELECT *,
            CASE WHEN lower(trim(id_type)) IN ({maid_types}) THEN 'maid'
                 WHEN lower(trim(id_type)) = 'cookie' THEN 'cookie' END AS n_id_type,
            TRY_CAST(trim(ts) AS DOUBLE) AS ts_number
        FROM src
    ),
    normal AS (
        SELECT *,
            CASE n_id_type WHEN 'maid' THEN {_maid("id")} WHEN 'cookie' THEN {_cookie("id")}
            END AS n_id,
            CASE WHEN ts_number IS NULL THEN TRY_CAST(trim(ts) AS TIMESTAMPTZ)::TIMESTAMP
                 WHEN ts_number >= 0 AND ts_number < 1e11
                     THEN make_timestamp(TRY_CAST(ts_number * 1e6 AS BIGINT))
                 WHEN ts_number >= 1e11 AND ts_number < 1e14
                     THEN make_timestamp(TRY_CAST(ts_number * 1e3 AS BIGINT))
            END AS n_ts,
            upper(trim(country)) AS n_country,
            CASE WHEN lower(trim(gpc)) IN ('1', 'true') THEN true
                 WHEN lower(trim(gpc)) IN ('0', 'false') THEN false END AS n_gpc,
            {_maid("maid")} AS n_maid,
            {_cookie("cookie")} AS n_cookie
        FROM typed
    ),
    checked AS (SELECT *, {reason_case} AS reason FROM normal)
    SELECT
        reason,
        CASE WHEN reason IS NOT NULL AND reason <> 'blank_line' THEN {raw_expr} END AS raw,
        n_ts AS ts,
        n_id AS id,
        n_id_type AS id_type,
        coalesce(nullif(lower(trim(event)), ''), 'pageview') AS event,
        nullif(trim(url), '') AS url,
        nullif(lower(regexp_extract(trim(url), '{_HOST}', 1)), '') AS domain,
        nullif(list_filter(list_transform(string_split(category, '|'), lambda c: trim(c)),
            lambda c: c <> ''), []) AS categories,
        nullif(trim(keywords), '') AS keywords,
        nullif(n_country, '') AS country,
        nullif(trim(consent), '') AS consent,
        n_gpc AS gpc,
        CASE WHEN {_present("hem")} THEN lower(trim(hem)) END AS link_hem,
        CASE WHEN n_maid IS DISTINCT FROM n_id THEN n_maid END AS link_maid,
        CASE WHEN n_cookie IS DISTINCT FROM n_id THEN n_cookie END AS link_cookie
    FROM checked
    """
