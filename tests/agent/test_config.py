"""The agent's configuration: registry (fake), TOML file, environment, and their faults."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import (
    AgentConfig,
    FakeRegistry,
    WindowsRegistry,
    load_config,
)
from protocol.attestation import public_key_text
from protocol.errors import ConfigError

KEY = public_key_text(Ed25519PrivateKey.generate().public_key())
PIN = "ab" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_file_gives_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'relay_url = "https://relay.example.com/"\nrelay_key = "{KEY}"\n'
        f'tls_pin = "{PIN.upper()}"\norg_name = "Example Sp. z o.o."\nlanguage = "en"\n',
    )
    config = load_config(path, env={}, platform="linux")
    assert config == AgentConfig(
        relay_url="https://relay.example.com",
        relay_key=KEY,
        tls_pin=PIN,
        org_name="Example Sp. z o.o.",
        language="en",
    )
    assert config.agent_ws_url == "wss://relay.example.com/ws/agent"
    assert config.secure


def test_plain_http_relay_gives_ws_endpoint() -> None:
    config = AgentConfig(relay_url="http://127.0.0.1:8080", relay_key=KEY)
    assert config.agent_ws_url == "ws://127.0.0.1:8080/ws/agent"
    assert config.language == "pl"
    assert config.tls_pin is None


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, f'relay_url = "https://a.example"\nrelay_key = "{KEY}"\n')
    env = {"ZGODA_RELAY_URL": "https://b.example", "ZGODA_ORG_NAME": "Org", "ZGODA_TLS_PIN": ""}
    config = load_config(path, env=env, platform="linux")
    assert config.relay_url == "https://b.example"
    assert config.org_name == "Org"
    assert config.tls_pin is None


def test_fake_registry_is_read_on_windows_and_env_overrides_it() -> None:
    registry = FakeRegistry(
        {
            "RelayUrl": "https://relay.example.com",
            "RelayKey": KEY,
            "TlsPin": PIN,
            "OrgName": "Example",
            "Language": "PL",
            "VideoEncoder": "h264_qsv",
        }
    )
    config = load_config(env={"ZGODA_LANGUAGE": "en"}, registry=registry, platform="win32")
    assert (config.relay_url, config.tls_pin, config.org_name, config.language) == (
        "https://relay.example.com",
        PIN,
        "Example",
        "en",
    )
    assert config.video_encoder == "h264_qsv"


def test_the_video_encoder_is_auto_unless_set() -> None:
    assert AgentConfig(relay_url="https://r.example", relay_key=KEY).video_encoder == "auto"
    env = {"ZGODA_RELAY_URL": "https://r.example", "ZGODA_RELAY_KEY": KEY}
    config = load_config(env={**env, "ZGODA_VIDEO_ENCODER": " OFF "}, platform="linux")
    assert config.video_encoder == "off"


def test_registry_value_of_wrong_type_is_refused() -> None:
    registry = FakeRegistry({"RelayUrl": "https://r.example", "RelayKey": KEY, "TlsPin": 5})
    with pytest.raises(ConfigError, match="TlsPin must be a string"):
        load_config(env={}, registry=registry, platform="win32")


def test_real_registry_is_refused_off_windows() -> None:
    with pytest.raises(ConfigError, match="only on Windows"):
        WindowsRegistry()


def test_missing_key_names_where_it_looked(tmp_path: Path) -> None:
    path = write(tmp_path, 'relay_url = "https://a.example"\n')
    with pytest.raises(ConfigError, match=r"no relay_key configured \(looked in .*agent.toml"):
        load_config(path, env={}, platform="linux")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("relay_url = ", "not valid TOML"),
        ('relay_ur = "x"', "unknown key 'relay_ur'"),
        ("relay_url = 5", "relay_url must be a string"),
        (f'relay_url = "ftp://x"\nrelay_key = "{KEY}"', "must look like https://"),
        (f'relay_url = "https://x?a=1"\nrelay_key = "{KEY}"', "query or fragment"),
        ('relay_url = "https://x"\nrelay_key = "not base64!"', "not base64"),
        ('relay_url = "https://x"\nrelay_key = "AAAA"', "32 bytes"),
        (f'relay_url = "https://x"\nrelay_key = "{KEY}"\ntls_pin = "abc"', "64 hex"),
        (f'relay_url = "http://x"\nrelay_key = "{KEY}"\ntls_pin = "{PIN}"', "needs an https"),
        (f'relay_url = "https://x"\nrelay_key = "{KEY}"\nlanguage = "de"', "not one of pl, en"),
        (
            f'relay_url = "https://x"\nrelay_key = "{KEY}"\nvideo_encoder = "h264_vaapi"',
            "video encoder 'h264_vaapi' is not one of auto, off, h264_nvenc",
        ),
    ],
)
def test_bad_file_gives_clear_error(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_config(write(tmp_path, text), env={}, platform="linux")


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml", env={}, platform="linux")


def test_pin_with_colons_is_normalised() -> None:
    pin = ":".join(["AB"] * 32)
    config = AgentConfig(relay_url="wss://r.example", relay_key=KEY, tls_pin=pin)
    assert config.tls_pin == PIN
