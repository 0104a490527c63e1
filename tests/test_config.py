"""The config loader: defaults, overrides in order, and errors that name the key."""

from __future__ import annotations

import pytest

from dmp.config import load_config
from dmp.errors import ConfigError


def test_defaults_and_paths_resolve_against_home(tmp_path):
    config = load_config(tmp_path, env={})
    assert config.get("identity.cookie_ttl_days") == 30
    assert config.get("identity.maid_ttl_days") == 90
    assert config.path("store.database") == tmp_path / "dmp.duckdb"
    assert "adserver" in config.section("layouts")


def test_home_from_environment(tmp_path):
    assert load_config(env={"DMP_HOME": str(tmp_path)}).home == tmp_path


def test_overrides_apply_in_order_file_env_cli(tmp_path):
    (tmp_path / "dmp.toml").write_text(
        '[ingest]\nmax_future_minutes = 5\nmax_id_length = 64\n[store]\nmemory_limit = "1GB"\n'
    )
    config = load_config(
        tmp_path,
        overrides=["store.memory_limit=2GB"],
        env={"DMP_INGEST__MAX_FUTURE_MINUTES": "7"},
    )
    assert config.get("ingest.max_id_length") == 64
    assert config.get("ingest.max_future_minutes") == 7
    assert config.get("store.memory_limit") == "2GB"


@pytest.mark.parametrize(
    "overrides,env,message",
    [
        (
            ["ingest.max_future_minutes=soon"],
            {},
            "ingest.max_future_minutes (from --set): expected",
        ),
        ([], {"DMP_STORE__THREADS": "-1"}, "store.threads (from environment DMP_STORE__THREADS)"),
        (["store.memory_limit=lots"], {}, "store.memory_limit (from --set): expected a size"),
        (
            ["ingest.earliest_date=yesterday"],
            {},
            "ingest.earliest_date (from --set): expected a date",
        ),
        (["ingest.nope=1"], {}, "unknown config key ingest.nope"),
        (["no_equals_sign"], {}, "expected section.key=value"),
    ],
)
def test_bad_values_name_the_key_and_source(tmp_path, overrides, env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(tmp_path, overrides=overrides, env=env)


def test_bad_instance_file_names_the_file_and_key(tmp_path):
    (tmp_path / "dmp.toml").write_text("[identity]\ncookie_ttl_days = 'thirty'\n")
    with pytest.raises(ConfigError, match=r"identity.cookie_ttl_days \(from .*dmp.toml\)"):
        load_config(tmp_path, env={})
    (tmp_path / "dmp.toml").write_text("[identity\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path, env={})


def test_layouts_are_validated(tmp_path):
    from dmp.ingest.readers import layouts_from_config

    (tmp_path / "dmp.toml").write_text('[layouts.x]\ncolumns = { a = "timestamp" }\n')
    config = load_config(tmp_path, env={})
    with pytest.raises(Exception, match=r"\[layouts.x\]: 'timestamp' is not a canonical column"):
        layouts_from_config(config.section("layouts"))
