"""The HTTP API of a real relay process: login, tokens, tickets, relay info."""

from __future__ import annotations

from tests.support.relay import RelayProcess


def test_login_returns_an_expiring_token_and_the_display_name(shared_relay: RelayProcess) -> None:
    reply = shared_relay.login()
    assert reply["display_name"] == "Anna Nowak"
    assert len(reply["token"]) >= 32
    assert reply["expires_at"] > 0


def test_login_with_a_wrong_password_is_refused_with_a_json_error(
    shared_relay: RelayProcess,
) -> None:
    status, reply = shared_relay.api(
        "POST", "/api/login", {"username": "anna", "password": "wrong password!"}
    )
    assert status == 401
    assert reply["error"] == "invalid_credentials"
    assert reply["message"]
    status, reply = shared_relay.api(
        "POST", "/api/login", {"username": "nobody", "password": "whatever123"}
    )
    assert (status, reply["error"]) == (401, "invalid_credentials")


def test_api_without_a_token_is_unauthorized(shared_relay: RelayProcess) -> None:
    for method, path in (
        ("GET", "/api/tickets"),
        ("POST", "/api/tickets"),
        ("GET", "/api/tickets/HD-1001"),
        ("POST", "/api/logout"),
    ):
        status, reply = shared_relay.api(method, path, {} if method == "POST" else None)
        assert (status, reply["error"]) == (401, "unauthorized"), path
    status, reply = shared_relay.api("GET", "/api/tickets", token="not-a-token")
    assert status == 401


def test_logout_revokes_the_token(shared_relay: RelayProcess) -> None:
    token = shared_relay.token()
    assert shared_relay.api("GET", "/api/tickets", token=token)[0] == 200
    assert shared_relay.api("POST", "/api/logout", {}, token=token)[0] == 200
    assert shared_relay.api("GET", "/api/tickets", token=token)[0] == 401


def test_relay_info_gives_the_public_key_org_and_hours(shared_relay: RelayProcess) -> None:
    status, info = shared_relay.api("GET", "/api/relay")
    assert status == 200
    # the key the admin CLI prints for the MSI is the one the relay serves
    assert shared_relay.cli("pubkey").stdout.strip() == info["public_key"]
    assert info["org"] == shared_relay.org
    assert info["hours"] == "always open"
    assert info["version"]


def test_ticket_lifecycle_create_list_show_close_history(shared_relay: RelayProcess) -> None:
    token = shared_relay.token()
    ticket = shared_relay.create_ticket(token, problem="Printer jams\non every page")
    assert ticket["title"] == "Printer jams"
    assert ticket["status"] == "open"
    assert ticket["consultant"] == "Anna Nowak"
    for key in ("caller_name", "company", "phone", "problem", "created_at", "closed_at"):
        assert key in ticket
    status, listed = shared_relay.api("GET", "/api/tickets?status=open&mine=1", token=token)
    assert status == 200
    assert ticket["id"] in [t["id"] for t in listed["tickets"]]
    status, shown = shared_relay.api("GET", f"/api/tickets/{ticket['id']}", token=token)
    assert (status, shown) == (200, ticket)

    status, closed = shared_relay.api(
        "POST", f"/api/tickets/{ticket['id']}/close", {"resolution": "paper tray"}, token=token
    )
    assert status == 200
    assert closed["status"] == "closed"
    assert closed["resolution"] == "paper tray"
    assert closed["closed_at"] >= ticket["created_at"]
    status, again = shared_relay.api(
        "POST", f"/api/tickets/{ticket['id']}/close", {"resolution": "twice"}, token=token
    )
    assert (status, again["error"]) == (409, "ticket_closed")

    _, open_now = shared_relay.api("GET", "/api/tickets?status=open", token=token)
    assert ticket["id"] not in [t["id"] for t in open_now["tickets"]]
    _, closed_list = shared_relay.api("GET", "/api/tickets?status=closed", token=token)
    assert ticket["id"] in [t["id"] for t in closed_list["tickets"]]

    status, history = shared_relay.api("GET", f"/api/tickets/{ticket['id']}/history", token=token)
    assert status == 200
    assert [e["kind"] for e in history["events"]] == ["ticket.opened", "ticket.closed"]


def test_ticket_input_is_checked(shared_relay: RelayProcess) -> None:
    token = shared_relay.token()
    bad_bodies = [
        {"caller_name": "", "problem": "x"},
        {"caller_name": "Jan", "problem": ""},
        {"caller_name": 5, "problem": "x"},
        {"caller_name": "Jan", "problem": "x" * 5000},
    ]
    for body in bad_bodies:
        status, reply = shared_relay.api("POST", "/api/tickets", body, token=token)
        assert status == 400, body
        assert reply["error"] in ("missing_field", "bad_field")
    status, reply = shared_relay.api(
        "POST", "/api/tickets", None, token=token, headers={"Content-Length": "0"}
    )
    assert status == 400
    status, reply = shared_relay.api("GET", "/api/tickets/HD-999999", token=token)
    assert (status, reply["error"]) == (404, "ticket_unknown")
    status, reply = shared_relay.api("GET", "/api/tickets?status=weird", token=token)
    assert status == 400


def test_healthz_and_metrics(shared_relay: RelayProcess) -> None:
    status, reply = shared_relay.api("GET", "/healthz")
    assert (status, reply) == (200, {"status": "ok"})
    status, text = shared_relay.api("GET", "/metrics")
    assert status == 200
    assert "zgoda_relay_sessions" in text
    assert "zgoda_relay_logins_total" in text


def test_unknown_routes_and_methods_get_json_errors(shared_relay: RelayProcess) -> None:
    status, reply = shared_relay.api("GET", "/api/nothing-here")
    assert (status, reply["error"]) == (404, "not_found")
    status, reply = shared_relay.api("DELETE", "/api/tickets")
    assert status == 405
    assert reply["message"]
    status, reply = shared_relay.api(
        "POST", "/api/login", None, headers={"Content-Type": "application/json"}
    )
    assert (status, reply["error"]) == (400, "missing_field")
