"""The relay's one typed configuration object.

Values come from, lowest priority first: the defaults below, a TOML file
(`--config PATH`, else `<data dir>/relay.toml` when it exists), environment
variables `ZGODA_RELAY_<FIELD NAME IN CAPITALS>`, and command-line options.
Every limit is a named field with the reason for its default (STYLE §7).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.codec import MAX_ENVELOPE_SIZE
from protocol.errors import ConfigError
from protocol.limits import NAMEPLATE_TTL_SECONDS, RESUME_GRACE_SECONDS

ENV_PREFIX = "ZGODA_RELAY_"


@dataclass(frozen=True, kw_only=True)
class RelayConfig:
    """Everything `zgoda relay serve` can be told. Built by `load_config`."""

    data_dir: Path
    bind: str = "127.0.0.1"
    port: int = 8765
    org: str = "zgoda"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    dev_tls: bool = False
    insecure: bool = False  # allow a non-loopback bind without TLS (behind a TLS proxy)
    log_format: str = "text"  # or "json"
    log_level: str = "INFO"

    # -- business hours (DESIGN §1: Mon–Fri 8–18, holidays excluded, Europe/Warsaw)
    hours: str = "Mon-Fri 08:00-18:00"  # or "always"
    timezone: str = "Europe/Warsaw"
    holidays: str = "PL"  # "PL" or "none"
    hours_clock: str = ""  # testing aid: an ISO local time the hours check uses instead of now

    # -- consultants
    token_ttl: float = 12 * 3600.0
    """A bearer token lives one working day plus overtime; a new login the next day."""
    login_max_failures: int = 5
    """Five wrong passwords in a row lock the account; a typo or two never does."""
    lockout_seconds: float = 30.0
    """First lockout; each further lockout in a row doubles it, up to `lockout_max_seconds`."""
    lockout_max_seconds: float = 3600.0
    logins_per_ip_per_minute: int = 30
    """Login attempts from one address: a hotline behind one NAT is a few dozen people."""

    # -- nameplates and claims
    nameplate_ttl: float = float(NAMEPLATE_TTL_SECONDS)
    claims_per_ip_per_minute: int = 5
    """Failed claims (unknown/burnt nameplate, wrong code) per address and minute.
    RustDesk allows 6 wrong tries a minute per IP; a real user needs one or two."""
    claims_per_minute: int = 20
    """Failed claims from all addresses per minute; RustDesk allows 30. Tripping
    this is what nameplate guessing looks like: the log gets an ALARM line."""
    claim_attempts_per_ip_per_minute: int = 10
    """All claims (failed or not) per address and minute: a PC claims once per session."""

    # -- connections
    handshake_timeout: float = 10.0
    """Seconds a new WebSocket has to send its first message (allocate or claim)."""
    resume_grace: float = RESUME_GRACE_SECONDS
    """A keyed session whose link drops is held this long for the end to come back
    (protocol `Resume`); 0 offers no resume (empty resume tokens)."""
    pake_timeout: float = 60.0
    """Seconds a paired session has to finish key confirmation both ways."""
    idle_timeout: float = 900.0
    """A session with no message either way for 15 minutes is ended; the console's
    acknowledgements and pings keep a live session busy far more often."""
    ping_interval: float = 20.0
    """WebSocket pings find dead links (a laptop lid closed) behind NATs that drop
    idle flows after 30–60 s."""
    slow_peer_timeout: float = 60.0
    """A peer that accepts nothing for this long while the other end waits is dropped."""
    max_connections_per_ip: int = 64
    """Open WebSockets per address: a hotline behind one NAT opens one per session."""
    max_message_size: int = MAX_ENVELOPE_SIZE
    """The largest WebSocket message accepted; larger ones are refused unread."""
    write_buffer: int = 64 * 1024
    """Bytes buffered towards one end before its sender is paused (back-pressure)."""
    shutdown_grace: float = 5.0

    # -- the path of the config file that was read, if any (not settable)
    config_file: Path | None = field(default=None)

    def __post_init__(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format must be 'text' or 'json'")
        if self.holidays not in ("PL", "none"):
            raise ConfigError("holidays must be 'PL' or 'none'")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is outside 0..65535")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key go together")
        if self.max_message_size > MAX_ENVELOPE_SIZE or self.max_message_size < 4096:
            raise ConfigError(f"max_message_size must be within 4096..{MAX_ENVELOPE_SIZE}")
        for name in (
            "login_max_failures",
            "claims_per_ip_per_minute",
            "claims_per_minute",
            "claim_attempts_per_ip_per_minute",
            "max_connections_per_ip",
            "logins_per_ip_per_minute",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")

    @property
    def tls(self) -> bool:
        return self.dev_tls or self.tls_cert is not None

    @property
    def bind_is_loopback(self) -> bool:
        if self.bind == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.bind).is_loopback
        except ValueError:
            return False

    def check_exposure(self) -> None:
        """Raises ConfigError for a non-loopback bind without TLS and without --insecure."""
        if not self.tls and not self.bind_is_loopback and not self.insecure:
            raise ConfigError(
                f"refusing to listen on {self.bind} without TLS: give --tls-cert/--tls-key "
                "or --dev-tls, or --insecure when a TLS proxy sits in front"
            )


_FIELDS = {f.name: f for f in dataclasses.fields(RelayConfig) if f.name != "config_file"}
_HINTS = typing.get_type_hints(RelayConfig)


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a TOML/env/CLI value into the field's type. Raises ConfigError."""
    hint = _HINTS[name]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if optional and value in ("", None):
        return None
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if base is Path:
            return Path(str(value)).expanduser()
        if base is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except ValueError:
        raise ConfigError(f"{source}: {name} = {value!r} is not a valid {base.__name__}") from None
    raise ConfigError(f"{source}: {name} has an unsupported type")  # pragma: no cover


def load_config(
    *,
    data_dir: Path | str | None,
    config_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RelayConfig:
    """Build the config from defaults, a TOML file, env variables and CLI overrides.

    Raises:
        ConfigError: unknown key, a value of the wrong type, a missing file or data dir.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = Path(config_file) if config_file is not None else None
    if path is None:
        env_file = env.get(ENV_PREFIX + "CONFIG")
        if env_file:
            path = Path(env_file)
    dir_hint = data_dir or env.get(ENV_PREFIX + "DATA_DIR") or (overrides or {}).get("data_dir")
    if path is None and dir_hint:
        candidate = Path(dir_hint) / "relay.toml"
        path = candidate if candidate.exists() else None
    if path is not None:
        try:
            with path.open("rb") as fh:
                table = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, value in table.items():
            if key not in _FIELDS:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, value, str(path))
    for key in _FIELDS:
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None:
            values[key] = _coerce(key, raw, ENV_PREFIX + key.upper())
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, value, "command line")
    if data_dir is not None:
        values["data_dir"] = Path(data_dir)
    if "data_dir" not in values:
        raise ConfigError("no data dir: give --data-dir or ZGODA_RELAY_DATA_DIR")
    return RelayConfig(**values, config_file=path)
