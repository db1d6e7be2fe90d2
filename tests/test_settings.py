"""Settings are checked when loaded; production refuses development secrets."""

from __future__ import annotations

import base64

import pytest

from server.settings import DEV_API_KEY, Settings, SettingsError


def test_defaults_match_the_operators_contract() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.env) == ("127.0.0.1", 8080, "development")
    assert str(settings.embedded_pg_dir) == "var/pg"
    assert settings.database_url is None and not settings.cluster
    assert settings.api_key == DEV_API_KEY
    assert settings.auth.access_ttl_s == 900 and settings.auth.refresh_ttl_s == 30 * 24 * 3600
    assert settings.limits.max_payload_bytes == 64 * 1024
    assert (settings.limits.ping_interval_s, settings.limits.ping_timeout_s) == (25.0, 20.0)
    assert settings.sos.socket_ack_s == 5.0 and settings.auth.trusted_proxies == ()
    assert settings.archive.mongodb_url is None and settings.uploads.s3_bucket is None
    assert str(settings.uploads_dir) == "var/uploads"


def test_production_refuses_development_defaults() -> None:
    with pytest.raises(SettingsError, match="LIFELINE_API_KEY"):
        Settings.from_env({"LIFELINE_ENV": "production"})
    good = {
        "LIFELINE_ENV": "production",
        "LIFELINE_API_KEY": "k" * 32,
        "LIFELINE_JWT_SECRET": "s" * 40,
        "DATABASE_URL": "postgresql://db/lifeline",
        "LIFELINE_DATA_KEYS": "2026a:" + base64.b64encode(b"d" * 32).decode(),
    }
    assert Settings.from_env(good).production
    with pytest.raises(SettingsError, match="LIFELINE_DATA_KEYS"):
        Settings.from_env({k: v for k, v in good.items() if k != "LIFELINE_DATA_KEYS"})
    with pytest.raises(SettingsError, match="development"):
        Settings.from_env({**good, "LIFELINE_API_KEY": DEV_API_KEY})
    with pytest.raises(SettingsError, match="32"):
        Settings.from_env({**good, "LIFELINE_JWT_SECRET": "short"})


@pytest.mark.parametrize(
    "env",
    [
        {"LIFELINE_PORT": "eighty"},
        {"LIFELINE_PORT": "70000"},
        {"LIFELINE_ENV": "staging"},
        {"LIFELINE_ACCESS_TTL_S": "1"},
        {"LIFELINE_DB_POOL_MIN": "30", "LIFELINE_DB_POOL_MAX": "10"},
        {"LIFELINE_DATA_KEYS": "k1:" + base64.b64encode(b"short").decode()},
        {"LIFELINE_DATA_KEYS": "no-key-here"},
        {"LIFELINE_TRUSTED_PROXIES": "10.0.0.0/8, not-a-network"},
        {"LIFELINE_PING_INTERVAL_S": "0"},
        {"LIFELINE_SOS_SOCKET_ACK_S": "soon"},
        {"LIFELINE_HOT_DAYS": "-1"},
        {"LIFELINE_UPLOADS_MAX_BYTES": "12"},
    ],
)
def test_malformed_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_the_map_tile_server_is_checked_and_only_its_origin_may_serve_images() -> None:
    from handlers.dashboard import CSP, content_security_policy

    assert Settings.from_env({}).map_tiles_url == ""
    assert content_security_policy("") == CSP
    tiles = "https://{s}.tile.example.org/{z}/{x}/{y}.png"
    settings = Settings.from_env({"LIFELINE_MAP_TILES_URL": tiles})
    assert settings.map_tiles_url == tiles
    policy = content_security_policy(settings.map_tiles_url)
    assert "img-src 'self' data: https://*.tile.example.org;" in policy
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy
    for bad in (
        "tile.example.org/{z}/{x}/{y}.png",
        "https://tile.example.org/tiles.png",
        "javascript:alert(1)/{z}/{x}/{y}",
    ):
        with pytest.raises(SettingsError, match="LIFELINE_MAP_TILES_URL"):
            Settings.from_env({"LIFELINE_MAP_TILES_URL": bad})
