"""Every text the employee sees, in Polish and English, in this one place.

`Strings(language)` looks texts up by key; `TEXTS` holds both languages side by
side so a translator sees each pair together, and a test checks that every key
has both. The language comes from the config when an admin set it there, else
from the system locale (`pick_language`), else Polish: the service is Polish.
"""

from __future__ import annotations

import locale
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from agent.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_LANGUAGE,
    SUPPORTED_LANGUAGES,
    RegistryReader,
    read_env,
    read_registry,
    read_toml,
)
from agent.frontend import SessionOutcome
from protocol.errors import CodeError
from protocol.messages import EndReason, Party, RelayErrorCode

TEXTS: dict[str, dict[str, str]] = {
    # -- the tray
    "app.name": {"pl": "zgoda – pomoc zdalna", "en": "zgoda remote help"},
    "tray.idle": {
        "pl": "zgoda: kliknij, aby poprosić o pomoc",
        "en": "zgoda: click to get help",
    },
    "tray.connecting": {"pl": "zgoda: łączenie…", "en": "zgoda: connecting…"},
    "tray.asking": {
        "pl": "zgoda: konsultant czeka na Twoją zgodę",
        "en": "zgoda: the consultant waits for your answer",
    },
    "tray.viewing": {
        "pl": "zgoda: {who} widzi Twój ekran",
        "en": "zgoda: {who} sees your screen",
    },
    "tray.controlling": {
        "pl": "zgoda: {who} widzi Twój ekran i steruje myszą i klawiaturą",
        "en": "zgoda: {who} sees your screen and controls mouse and keyboard",
    },
    "tray.hand_back": {
        "pl": "zgoda: masz klawiaturę, konsultant nic nie widzi",
        "en": "zgoda: you have the keyboard, the consultant sees nothing",
    },
    "tray.reconnecting": {
        "pl": "zgoda: połączenie przerwane, ponowne łączenie… nic nie jest udostępniane",
        "en": "zgoda: link lost, reconnecting… nothing is shared meanwhile",
    },
    "tray.error": {"pl": "zgoda: {message}", "en": "zgoda: {message}"},
    "menu.get_help": {"pl": "Poproś o pomoc…", "en": "Get help…"},
    "menu.end_session": {"pl": "Zakończ sesję", "en": "End session"},
    "menu.about": {"pl": "O programie", "en": "About"},
    "menu.quit": {"pl": "Zamknij", "en": "Quit"},
    "notify.started": {
        "pl": "{who} ({org}) jest połączony z Twoim komputerem.",
        "en": "{who} ({org}) is connected to your computer.",
    },
    "notify.ended": {"pl": "Sesja zakończona. {message}", "en": "Session ended. {message}"},
    # -- the code dialog
    "code.title": {"pl": "zgoda – poproś o pomoc", "en": "zgoda – get help"},
    "code.prompt": {
        "pl": "Wpisz kod, który podyktuje Ci konsultant (9 cyfr, np. 482-913-775):",
        "en": "Type the code the consultant reads to you (9 digits, e.g. 482-913-775):",
    },
    "code.connect": {"pl": "Połącz", "en": "Connect"},
    "code.cancel": {"pl": "Anuluj", "en": "Cancel"},
    "code.close": {"pl": "Zamknij", "en": "Close"},
    "code.error.length": {
        "pl": "Kod ma 9 cyfr, np. 482-913-775. Sprawdź, czy wpisano wszystkie.",
        "en": "",  # English shows the protocol's own sentence as-is
    },
    "code.error.characters": {
        "pl": "Kod składa się tylko z cyfr, np. 482-913-775. Popraw go i spróbuj ponownie.",
        "en": "",
    },
    "phase.connecting": {
        "pl": "Łączenie z serwerem pomocy…",
        "en": "Connecting to the helpdesk server…",
    },
    "phase.waiting": {"pl": "Czekam na konsultanta…", "en": "Waiting for the consultant…"},
    "phase.verifying": {"pl": "Sprawdzanie kodu…", "en": "Checking the code…"},
    "phase.asking": {"pl": "Konsultant prosi o zgodę.", "en": "The consultant asks for consent."},
    # -- why a session did not start or ended
    "end.wrong_code": {
        "pl": "Kod się nie zgadza. Poproś konsultanta o nowy kod.",
        "en": "The code did not match. Ask the consultant for a new code.",
    },
    "end.expired_code": {
        "pl": "Ten kod jest nieważny (pomyłka przy wpisywaniu, już użyty lub wygasł). "
        "Poproś konsultanta o nowy kod.",
        "en": "This code is not valid (mistyped, already used or expired). "
        "Ask the consultant for a new code.",
    },
    "end.unreachable": {
        "pl": "Nie można połączyć się z serwerem pomocy. Sprawdź połączenie z siecią "
        "i spróbuj ponownie.",
        "en": "The helpdesk server cannot be reached. Check the network and try again.",
    },
    "end.outside_hours": {
        "pl": "Pomoc zdalna jest dostępna tylko w godzinach pracy helpdesku. {detail}",
        "en": "Remote help is available only during the helpdesk's business hours. {detail}",
    },
    "end.rate_limited": {
        "pl": "Zbyt wiele prób połączenia. Odczekaj chwilę i spróbuj ponownie.",
        "en": "Too many attempts to connect. Wait a while and try again.",
    },
    "end.version": {
        "pl": "Ten program jest za stary lub za nowy dla serwera pomocy. Poproś dział IT "
        "o aktualizację.",
        "en": "This program is too old or too new for the helpdesk server. Ask your IT team "
        "for an update.",
    },
    "end.server_restarting": {
        "pl": "Serwer pomocy jest właśnie uruchamiany ponownie. Spróbuj za minutę.",
        "en": "The helpdesk server is restarting. Try again in a minute.",
    },
    "end.storage_full": {
        "pl": "Serwer pomocy nie może teraz zapisać sesji (zapełniony dysk), więc sesja "
        "się nie rozpoczęła lub została zakończona. Nic nie jest udostępniane. "
        "Powiedz o tym konsultantowi.",
        "en": "The helpdesk server cannot record the session right now (its disk is full), "
        "so the session did not start or was ended. Nothing is shared. "
        "Please tell the consultant.",
    },
    "end.refused": {
        "pl": "Serwer pomocy odmówił: {detail}",
        "en": "The helpdesk server refused the session: {detail}",
    },
    "end.user": {"pl": "Zakończyłeś sesję.", "en": "You ended the session."},
    "end.consultant": {
        "pl": "Konsultant zakończył sesję.",
        "en": "The consultant ended the session.",
    },
    "end.denied": {
        "pl": "Odmówiłeś. Nic nie zostało udostępnione.",
        "en": "You refused the session. Nothing was shared.",
    },
    "end.timeout": {
        "pl": "Nikt nie odpowiedział na pytanie o zgodę, więc sesję odrzucono.",
        "en": "Nobody answered the prompt in time, so the session was refused.",
    },
    "end.unverified": {
        "pl": "Nie udało się potwierdzić, że prośba pochodzi z Twojego helpdesku, więc ją "
        "odrzucono. Nic nie zostało udostępnione.",
        "en": "The request could not be verified as coming from your helpdesk, so it was "
        "refused. Nothing was shared.",
    },
    "end.lost": {
        "pl": "Połączenie zostało przerwane, sesja się zakończyła. Nic nie jest już udostępniane.",
        "en": "The connection was lost, so the session has ended. Nothing is shared any more.",
    },
    "end.other": {"pl": "Sesja zakończona: {detail}", "en": "The session ended: {detail}"},
    # -- the consent prompt
    "consent.title": {"pl": "zgoda – prośba o dostęp", "en": "zgoda – request for access"},
    "consent.who": {
        "pl": "{who} z {org} prosi o dostęp do Twojego komputera.",
        "en": "{who} from {org} asks for access to your computer.",
    },
    "consent.ticket": {"pl": "Zgłoszenie {id}: {title}", "en": "Ticket {id}: {title}"},
    "consent.rights.control": {
        "pl": "Konsultant chce widzieć Twój ekran oraz sterować myszą i klawiaturą.",
        "en": "The consultant wants to see your screen and control your mouse and keyboard.",
    },
    "consent.rights.view": {
        "pl": "Konsultant chce widzieć Twój ekran.",
        "en": "The consultant wants to see your screen.",
    },
    "consent.timeout": {
        "pl": "Brak odpowiedzi w ciągu {seconds} s oznacza odmowę.",
        "en": "No answer within {seconds} s means no.",
    },
    "consent.allow": {"pl": "Zezwól", "en": "Allow"},
    "consent.view_only": {"pl": "Tylko podgląd", "en": "View only"},
    "consent.deny": {"pl": "Odmów", "en": "Deny"},
    # -- the escalation prompt
    "escalation.title": {"pl": "zgoda – prośba o sterowanie", "en": "zgoda – request for control"},
    "escalation.text": {
        "pl": "{who} widzi Twój ekran i prosi teraz o sterowanie myszą i klawiaturą.",
        "en": "{who} sees your screen and now asks to control your mouse and keyboard.",
    },
    "escalation.allow": {"pl": "Zezwól na sterowanie", "en": "Allow control"},
    "escalation.keep": {"pl": "Tylko podgląd", "en": "Keep view only"},
    # -- the session bar
    "bar.title": {"pl": "zgoda – sesja trwa", "en": "zgoda – session running"},
    "bar.viewing": {
        "pl": "{who} ({org}) widzi Twój ekran",
        "en": "{who} ({org}) sees your screen",
    },
    "bar.controlling": {
        "pl": "{who} ({org}) widzi Twój ekran i steruje myszą i klawiaturą",
        "en": "{who} ({org}) sees your screen and controls mouse and keyboard",
    },
    "bar.hand_back": {
        "pl": "{who} ({org}) czeka – masz klawiaturę",
        "en": "{who} ({org}) waits – you have the keyboard",
    },
    "bar.reconnecting": {
        "pl": "Połączenie z {who} ({org}) przerwane – ponowne łączenie… Nic nie jest udostępniane",
        "en": "Link to {who} ({org}) lost – reconnecting… Nothing is shared meanwhile",
    },
    "bar.give_keyboard": {"pl": "Daj mi klawiaturę", "en": "Give me the keyboard"},
    "bar.end": {"pl": "Zakończ sesję", "en": "End session"},
    # -- the hand-back banner
    "banner.title": {"pl": "zgoda – masz klawiaturę", "en": "zgoda – you have the keyboard"},
    "banner.text": {
        "pl": "Masz klawiaturę. Konsultant nie widzi Twojego ekranu ani naciskanych klawiszy.",
        "en": "You have the keyboard. The consultant cannot see your screen or your keys.",
    },
    "banner.by_console": {
        "pl": "Konsultant oddał Ci klawiaturę, np. do wpisania hasła.",
        "en": "The consultant handed you the keyboard, e.g. to type a password.",
    },
    "banner.by_user": {
        "pl": "Wpisz np. hasło, a potem kliknij Gotowe.",
        "en": "Type your password, for example, then click Done.",
    },
    "banner.done": {"pl": "Gotowe", "en": "Done"},
    # -- about
    "about.title": {"pl": "zgoda – o programie", "en": "zgoda – about"},
    "about.text": {
        "pl": "zgoda {version}\nSerwer pomocy: {relay}\nOrganizacja: {org}\n\n"
        "Nikt nie połączy się z tym komputerem bez Twojej zgody.",
        "en": "zgoda {version}\nHelpdesk server: {relay}\nOrganisation: {org}\n\n"
        "Nobody connects to this computer without your consent.",
    },
    "about.org_unset": {"pl": "(nie ustawiono)", "en": "(not set)"},
    "about.ok": {"pl": "OK", "en": "OK"},
    # -- the secure desktop, as the consultant is told
    "secure_desktop": {
        "pl": "Na komputerze jest okno systemowe (UAC, Ctrl+Alt+Del): użytkownik musi "
        "na nie odpowiedzieć.",
        "en": "A system prompt (UAC, Ctrl+Alt+Del) is on the PC: the user must answer it.",
    },
}


class Strings:
    """The texts of one language; `get(key, **values)` formats one.

    Raises:
        ValueError: an unsupported language (construction).
    """

    def __init__(self, language: str) -> None:
        if language not in SUPPORTED_LANGUAGES:
            raise ValueError(f"unsupported language {language!r}")
        self.language = language

    def get(self, key: str, **values: object) -> str:
        """The text for `key`, formatted with `values`.

        Raises:
            KeyError: no such text (a programming error, caught by the tests).
        """
        return TEXTS[key][self.language].format(**values)

    def code_error(self, error: CodeError) -> str:
        """A code's parse error for the dialog: the protocol's own sentence in English,
        its translation (by the stable `reason` key) in Polish."""
        translated = TEXTS.get(f"code.error.{error.reason}", {}).get(self.language, "")
        return translated or str(error)


def system_language(env: Mapping[str, str] | None = None) -> str | None:
    """The user's language from the system locale, if it is one we have."""
    env = os.environ if env is None else env
    candidates: list[str] = []
    if sys.platform == "win32":  # the UI language, not the formats' locale
        import ctypes

        lang_id = ctypes.windll.kernel32.GetUserDefaultUILanguage()
        candidates.append({0x15: "pl", 0x09: "en"}.get(lang_id & 0x3FF, ""))
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(var):
            candidates.append(env[var])
            break
    candidates.append(locale.getlocale()[0] or "")
    for candidate in candidates:
        code = candidate.split("_")[0].split(".")[0].lower()
        if code in SUPPORTED_LANGUAGES:
            return code
    return None


def configured_language(
    path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    registry: RegistryReader | None = None,
) -> str | None:
    """The language an admin set (registry, TOML or env), or None when none did.

    `agent.config.AgentConfig.language` cannot tell "set to pl" from "unset"
    (it defaults to pl), so the sources are read again here, cheaply.

    Raises:
        ConfigError: a source is malformed (load_config would have said so first).
    """
    values: dict[str, str] = {}
    if registry is not None:
        values.update(read_registry(registry))
    if path is not None:
        values.update(read_toml(path))
    elif sys.platform != "win32" and DEFAULT_CONFIG_PATH.expanduser().is_file():
        values.update(read_toml(DEFAULT_CONFIG_PATH.expanduser()))
    values.update(read_env(os.environ if env is None else env))
    return values.get("language", "").strip().lower() or None


def pick_language(configured: str | None, system: str | None) -> str:
    """Config first, then the system's language, then Polish."""
    for language in (configured, system):
        if language in SUPPORTED_LANGUAGES:
            return language
    return DEFAULT_LANGUAGE


# What the relay's refusal codes mean to the employee; a code not named here (one
# the relay only sends a console, or a fault) shows the relay's own sentence.
_BY_RELAY_CODE: dict[RelayErrorCode, str] = {
    RelayErrorCode.NAMEPLATE_UNKNOWN: "end.expired_code",
    RelayErrorCode.OUTSIDE_HOURS: "end.outside_hours",  # with the relay's sentence: the hours
    RelayErrorCode.RATE_LIMITED: "end.rate_limited",
    RelayErrorCode.VERSION_MISMATCH: "end.version",
    RelayErrorCode.SHUTTING_DOWN: "end.server_restarting",
    RelayErrorCode.SESSION_UNKNOWN: "end.lost",  # a resume came too late
    RelayErrorCode.STORAGE_FULL: "end.storage_full",
}

# The engine's own sentence when the relay cannot be reached at all (agent/runner.py):
# no relay spoke, so there is no relay code.
_UNREACHABLE_MARK = "cannot be reached"
# Fallback while the engine's SessionOutcome does not carry the relay's code
# (agent.runner builds it from protocol.connection.SessionEnded, whose `relay_code`
# it drops): the relay's own words (relay/sessions.py, relay/hours.py).
_EXPIRED_MARKS = ("code is not valid", "code expired")
_HOURS_MARK = "business hours"


def relay_code_of(outcome: SessionOutcome) -> RelayErrorCode | None:
    """The relay's refusal code, once the engine passes it on in the outcome."""
    code = getattr(outcome, "relay_code", None)
    return code if isinstance(code, RelayErrorCode) else None


def describe_outcome(
    outcome: SessionOutcome, strings: Strings, relay_code: RelayErrorCode | None = None
) -> str:
    """Why the session ended (or never started), in the user's language.

    `relay_code` is the relay's `RelayErrorCode` when it refused (default: the
    outcome's own, `relay_code_of`); without one the relay's words are matched.
    """
    reason, detail = outcome.reason, outcome.detail
    if relay_code is None:
        relay_code = relay_code_of(outcome)
    if reason is EndReason.WRONG_CODE:
        return strings.get("end.wrong_code")
    if reason is EndReason.RELAY_REFUSED:
        if relay_code is not None:
            key = _BY_RELAY_CODE.get(relay_code, "end.refused")
            return strings.get(key, detail=detail)  # texts without {detail} ignore it
        lowered = detail.lower()
        if _UNREACHABLE_MARK in lowered:
            return strings.get("end.unreachable")
        if any(mark in lowered for mark in _EXPIRED_MARKS):
            return strings.get("end.expired_code")
        if _HOURS_MARK in lowered:
            return strings.get("end.outside_hours", detail=detail)
        return strings.get("end.refused", detail=detail)
    if reason is EndReason.USER_ENDED:
        return strings.get("end.user" if outcome.by is Party.AGENT else "end.consultant")
    if reason is EndReason.CONSULTANT_ENDED:
        return strings.get("end.consultant")
    if reason is EndReason.DENIED:
        if detail == "timeout":
            return strings.get("end.timeout")
        if outcome.by is Party.AGENT and "verif" in outcome.message:
            return strings.get("end.unverified")
        return strings.get("end.denied")
    if reason is EndReason.PEER_LOST:
        return strings.get("end.lost")
    if strings.language == "en":
        return outcome.message
    return strings.get("end.other", detail=outcome.message)
