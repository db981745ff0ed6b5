"""The agent's configuration: one typed, frozen object (DESIGN §3).

Where the values come from, weakest first:

1. on Windows, `HKLM\\SOFTWARE\\zgoda\\Agent` (REG_SZ values `RelayUrl`, `RelayKey`,
   `TlsPin`, `OrgName`, `Language`, `VideoEncoder`), written by the MSI;
2. a TOML file: `--config PATH`, or `~/.config/zgoda/agent.toml` when not on
   Windows (keys `relay_url`, `relay_key`, `tls_pin`, `org_name`, `language`,
   `video_encoder`);
3. environment variables `ZGODA_RELAY_URL`, `ZGODA_RELAY_KEY`, `ZGODA_TLS_PIN`,
   `ZGODA_ORG_NAME`, `ZGODA_LANGUAGE`, `ZGODA_VIDEO_ENCODER`.

The registry is read through `RegistryReader`, so tests hand in a
`FakeRegistry` (a dict) and the code path that parses registry values runs on
Linux too; only `WindowsRegistry` touches `winreg`.

Every fault is a `ConfigError` whose message names the source and the value, so
an admin can fix it without reading code.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.h264 import ENCODER_CHOICES
from protocol.attestation import load_public_key
from protocol.errors import ConfigError

REGISTRY_KEY = r"SOFTWARE\zgoda\Agent"
"""Under HKEY_LOCAL_MACHINE; the MSI writes it, users cannot change it."""

DEFAULT_CONFIG_PATH = Path("~/.config/zgoda/agent.toml")

SUPPORTED_LANGUAGES = ("pl", "en")
DEFAULT_LANGUAGE = "pl"

# field name -> (registry value name, environment variable)
FIELDS: dict[str, tuple[str, str]] = {
    "relay_url": ("RelayUrl", "ZGODA_RELAY_URL"),
    "relay_key": ("RelayKey", "ZGODA_RELAY_KEY"),
    "tls_pin": ("TlsPin", "ZGODA_TLS_PIN"),
    "org_name": ("OrgName", "ZGODA_ORG_NAME"),
    "language": ("Language", "ZGODA_LANGUAGE"),
    "video_encoder": ("VideoEncoder", "ZGODA_VIDEO_ENCODER"),
}

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """What the agent needs to reach its organisation's relay, validated when built.

    `relay_url` is the relay's base URL (`https://relay.example.com` or, in
    development, `http://127.0.0.1:8443`); the agent connects to
    `<relay_url>/ws/agent` with the matching `wss://`/`ws://` scheme.
    `relay_key` is the base64 Ed25519 public key that signs attestations.
    `tls_pin`, when set, is the SHA-256 (hex) of the relay certificate's DER:
    the certificate is then accepted only if it matches, instead of being checked
    against the system store. `org_name`, when set, must equal the organisation
    the relay attests. `video_encoder` picks the H.264 encoder for motion
    (`agent.h264.ENCODER_CHOICES`): `auto` (the GPU's when it works, else
    libx264), one by name, or `off` (tiles only).

    Raises:
        ConfigError: on any malformed value.
    """

    relay_url: str
    relay_key: str
    tls_pin: str | None = None
    org_name: str | None = None
    language: str = DEFAULT_LANGUAGE
    video_encoder: str = "auto"

    def __post_init__(self) -> None:
        url = self.relay_url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ConfigError(
                f"relay URL {self.relay_url!r} must look like https://relay.example.com"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"relay URL {self.relay_url!r} must not have a query or fragment")
        object.__setattr__(self, "relay_url", url)
        load_public_key(self.relay_key)  # raises ConfigError with an admin-readable message
        object.__setattr__(self, "relay_key", self.relay_key.strip())
        if self.tls_pin is not None:
            pin = self.tls_pin.strip().lower().replace(":", "")
            if not _HEX64.fullmatch(pin):
                raise ConfigError(
                    "TLS pin must be the SHA-256 of the relay certificate: 64 hex digits"
                )
            if self.secure is False:
                raise ConfigError("a TLS pin needs an https:// (or wss://) relay URL")
            object.__setattr__(self, "tls_pin", pin)
        if self.org_name is not None:
            org = self.org_name.strip()
            object.__setattr__(self, "org_name", org or None)
        language = self.language.strip().lower()
        if language not in SUPPORTED_LANGUAGES:
            raise ConfigError(
                f"language {self.language!r} is not one of {', '.join(SUPPORTED_LANGUAGES)}"
            )
        object.__setattr__(self, "language", language)
        encoder = self.video_encoder.strip().lower()
        if encoder not in ENCODER_CHOICES:
            raise ConfigError(
                f"video encoder {self.video_encoder!r} is not one of {', '.join(ENCODER_CHOICES)}"
            )
        object.__setattr__(self, "video_encoder", encoder)

    @property
    def secure(self) -> bool:
        """True when the relay is reached over TLS."""
        return urlsplit(self.relay_url).scheme in ("https", "wss")

    @property
    def agent_ws_url(self) -> str:
        """The WebSocket endpoint the agent claims its nameplate on."""
        parts = urlsplit(self.relay_url)
        scheme = "wss" if self.secure else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/ws/agent"

    @property
    def relay_public_key(self) -> Ed25519PublicKey:
        return load_public_key(self.relay_key)


# ------------------------------------------------------------------ sources


class RegistryReader(Protocol):
    """Reads REG_SZ values under HKLM\\SOFTWARE\\zgoda\\Agent."""

    def read(self, name: str) -> str | None:
        """The value's text, or None when the key or value does not exist.

        Raises:
            ConfigError: the value exists but is not a string.
        """
        ...


class FakeRegistry:
    """A stand-in for the Windows registry (tests, Linux): value name -> data."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self.values = dict(values)

    def read(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"registry value {name} must be a string (REG_SZ)")
        return value


class WindowsRegistry:
    """The real HKLM key; constructing it off Windows raises ConfigError."""

    def __init__(self, key: str = REGISTRY_KEY) -> None:
        if sys.platform != "win32":
            raise ConfigError("the Windows registry exists only on Windows")
        self.key = key

    def read(self, name: str) -> str | None:
        if sys.platform != "win32":  # narrows for mypy; checked in __init__ already
            return None
        import winreg

        try:
            # KEY_WOW64_64KEY: the 64-bit MSI writes the 64-bit view; a 32-bit build
            # of the agent must not look in WOW6432Node.
            access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, self.key, 0, access) as handle:
                value, kind = winreg.QueryValueEx(handle, name)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read HKLM\\{self.key}\\{name}: {exc.strerror}") from None
        if kind not in (winreg.REG_SZ, winreg.REG_EXPAND_SZ) or not isinstance(value, str):
            raise ConfigError(f"registry value HKLM\\{self.key}\\{name} must be REG_SZ")
        return value


def read_toml(path: Path) -> dict[str, str]:
    """The agent keys of a TOML file.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key, or a non-string value.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key {unknown[0]!r} (known: {', '.join(FIELDS)})"
        )
    values: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(f"config file {path}: {name} must be a string")
        values[name] = value
    return values


def read_registry(registry: RegistryReader) -> dict[str, str]:
    """The agent values present in the registry, by field name.

    Raises:
        ConfigError: a value of the wrong type.
    """
    values: dict[str, str] = {}
    for name, (value_name, _) in FIELDS.items():
        value = registry.read(value_name)
        if value is not None and value.strip():
            values[name] = value
    return values


def read_env(env: Mapping[str, str]) -> dict[str, str]:
    """The agent values set in the environment (an empty variable counts as unset)."""
    return {name: env[var] for name, (_, var) in FIELDS.items() if env.get(var, "").strip()}


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    registry: RegistryReader | None = None,
    platform: str = sys.platform,
) -> AgentConfig:
    """Build the config from registry (Windows), TOML file and environment.

    `path` is an explicit `--config`: it must exist. Without it the default file
    is read when present (not on Windows, where the MSI's registry values are the
    installed configuration). `registry` defaults to the real HKLM key on Windows
    and to none elsewhere.

    Raises:
        ConfigError: a malformed value, an unreadable explicit file, or no relay URL / key.
    """
    env = os.environ if env is None else env
    values: dict[str, str] = {}
    sources: list[str] = []
    if registry is None and platform == "win32":
        registry = WindowsRegistry()
    if registry is not None:
        values.update(read_registry(registry))
        sources.append(f"HKLM\\{REGISTRY_KEY}")
    if path is not None:
        values.update(read_toml(path))
        sources.append(str(path))
    elif platform != "win32":
        default = DEFAULT_CONFIG_PATH.expanduser()
        if default.is_file():
            values.update(read_toml(default))
        sources.append(str(default))
    values.update(read_env(env))
    sources.append("ZGODA_* environment variables")
    missing = [n for n in ("relay_url", "relay_key") if n not in values]
    if missing:
        raise ConfigError(f"no {' or '.join(missing)} configured (looked in {', '.join(sources)})")
    return AgentConfig(
        relay_url=values["relay_url"],
        relay_key=values["relay_key"],
        tls_pin=values.get("tls_pin"),
        org_name=values.get("org_name"),
        language=values.get("language", DEFAULT_LANGUAGE),
        video_encoder=values.get("video_encoder", "auto"),
    )
