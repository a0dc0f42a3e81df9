"""Loopback doubles of the payment providers' HTTP APIs — what lives outside this machine —
built from their documented request and response shapes, with the official SDKs pointed at
them (GHOSTGPT_STRIPE_API_BASE, GHOSTGPT_YOOKASSA_API_URL).

Each also serves the page a person pays on (a "Pay" button) and, when they pay, sends the
notification to GhostGPT exactly as the provider would: Stripe's event signed with the
webhook secret (`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.payload")`), YooKassa's
notification from 127.0.0.1 (the tests list it as YooKassa's address). Tests send further
events (refunds, disputes, expiries, forgeries) through `deliver`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

Route = Callable[["_Handler", dict[str, Any]], None]


class _Handler(BaseHTTPRequestHandler):
    double: Double

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_html(self, html: str) -> None:
        data = html.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location: str) -> None:
        self.send_response(303)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.double.route(self, "GET", b"")

    def do_POST(self) -> None:
        self.double.route(self, "POST", self._body())


class Double:
    """An HTTP server on 127.0.0.1 in a thread; `webhook_url` is where it notifies GhostGPT."""

    def __init__(self) -> None:
        handler = type("Handler", (_Handler,), {"double": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        self.webhook_url = ""
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, handler: _Handler, method: str, body: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def pay_page(self, handler: _Handler, title: str) -> None:
        handler.send_html(
            f"<!doctype html><title>{title}</title><h1>{title}</h1>"
            '<form method="post"><button id="pay" type="submit">Pay</button></form>'
        )


# --- Stripe ---------------------------------------------------------------------------------------


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends (docs.stripe.com/webhooks#verify-manually)."""
    at = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def _form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) as nested dicts (lists as {"0": …})."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


class StripeDouble(Double):
    def __init__(self, *, secret_key: str, webhook_secret: str) -> None:
        super().__init__()
        self.secret_key, self.webhook_secret = secret_key, webhook_secret
        self.sessions: dict[str, dict[str, Any]] = {}
        self.by_idempotency: dict[str, str] = {}

    def route(self, handler: _Handler, method: str, body: bytes) -> None:
        path = urlsplit(handler.path).path
        self.requests.append((method, path))
        if path.startswith("/v1/"):
            if handler.headers.get("Authorization") != f"Bearer {self.secret_key}":
                handler.send_json(
                    401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
                )
                return
            if method == "POST" and path == "/v1/checkout/sessions":
                self._create(handler, _form(body))
                return
            if method == "GET" and path.startswith("/v1/checkout/sessions/"):
                session = self.sessions.get(path.rsplit("/", 1)[-1])
                if session is None:
                    handler.send_json(404, {"error": {"type": "invalid_request_error", "code": "resource_missing"}})
                else:
                    handler.send_json(200, session)
                return
        if path.startswith("/c/pay/"):
            session = self.sessions.get(path.rsplit("/", 1)[-1])
            if session is None:
                handler.send_json(404, {})
            elif method == "GET":
                self.pay_page(handler, f"Pay {session['amount_total'] / 100:.2f} {session['currency'].upper()}")
            else:
                self.complete(session["id"])
                handler.redirect(session["success_url"])
            return
        handler.send_json(
            404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({path})"}}
        )

    def _create(self, handler: _Handler, params: dict[str, Any]) -> None:
        key = handler.headers.get("Idempotency-Key", "")
        with self.lock:
            if key and key in self.by_idempotency:
                handler.send_json(200, self.sessions[self.by_idempotency[key]])
                return
            item = params["line_items"]["0"]
            session_id = "cs_test_" + secrets.token_hex(12)
            session = {
                "id": session_id,
                "object": "checkout.session",
                "amount_subtotal": int(item["price_data"]["unit_amount"]) * int(item["quantity"]),
                "amount_total": int(item["price_data"]["unit_amount"]) * int(item["quantity"]),
                "cancel_url": params.get("cancel_url"),
                "client_reference_id": params.get("client_reference_id"),
                "created": int(time.time()),
                "currency": item["price_data"]["currency"],
                "expires_at": int(params.get("expires_at") or time.time() + 86400),
                "livemode": False,
                "metadata": params.get("metadata", {}),
                "mode": params.get("mode"),
                "payment_intent": None,
                "payment_status": "unpaid",
                "status": "open",
                "success_url": params.get("success_url"),
                "url": f"{self.base_url}/c/pay/{session_id}",
            }
            self.sessions[session_id] = session
            if key:
                self.by_idempotency[key] = session_id
        handler.send_json(200, session)

    def complete(self, session_id: str, *, payment_status: str = "paid", notify: bool = True) -> dict[str, Any]:
        session = self.sessions[session_id]
        session.update(status="complete", payment_status=payment_status, url=None)
        session["payment_intent"] = session["payment_intent"] or "pi_test_" + secrets.token_hex(12)
        if notify:
            self.deliver(self.event("checkout.session.completed", session))
        return session

    def event(self, kind: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {
            "id": event_id or "evt_test_" + secrets.token_hex(12),
            "object": "event",
            "api_version": "2025-10-29.clover",
            "created": int(time.time()),
            "data": {"object": dict(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }

    def deliver(self, event: dict[str, Any], *, secret: str | None = None) -> httpx.Response:
        payload = json.dumps(event).encode()
        signature = stripe_signature(payload, secret or self.webhook_secret)
        headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
        return httpx.post(self.webhook_url, content=payload, headers=headers, timeout=30)

    def charge(self, session_id: str, *, refunded: int) -> dict[str, Any]:
        """The Charge of a paid session, with `refunded` (cumulative, minor units) given back."""
        session = self.sessions[session_id]
        return {
            "id": "ch_" + session["payment_intent"][3:],
            "object": "charge",
            "amount": session["amount_total"],
            "amount_refunded": refunded,
            "currency": session["currency"],
            "payment_intent": session["payment_intent"],
            "refunded": refunded >= session["amount_total"],
            "status": "succeeded",
        }

    def dispute(self, session_id: str, *, amount: int) -> dict[str, Any]:
        session = self.sessions[session_id]
        return {
            "id": "dp_test_" + secrets.token_hex(10),
            "object": "dispute",
            "amount": amount,
            "currency": session["currency"],
            "charge": "ch_" + session["payment_intent"][3:],
            "payment_intent": session["payment_intent"],
            "reason": "fraudulent",
            "status": "needs_response",
        }


# --- YooKassa -------------------------------------------------------------------------------------


class YooKassaDouble(Double):
    def __init__(self, *, shop_id: str, secret_key: str) -> None:
        super().__init__()
        self.auth = "Basic " + base64.b64encode(f"{shop_id}:{secret_key}".encode()).decode()
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.by_idempotency: dict[str, str] = {}

    def route(self, handler: _Handler, method: str, body: bytes) -> None:
        path = urlsplit(handler.path).path
        self.requests.append((method, path))
        if path.startswith("/v3/"):
            if handler.headers.get("Authorization") != self.auth:
                handler.send_json(401, {"type": "error", "code": "invalid_credentials", "description": "Bad login"})
                return
            if method == "POST" and path == "/v3/payments":
                self._create(handler, json.loads(body))
                return
            table = self.payments if path.startswith("/v3/payments/") else self.refunds
            found = table.get(path.rsplit("/", 1)[-1]) if method == "GET" else None
            if found is None:
                handler.send_json(404, {"type": "error", "code": "not_found", "description": "Not found"})
            else:
                handler.send_json(200, found)
            return
        if path.startswith("/pay/"):
            payment = self.payments.get(path.rsplit("/", 1)[-1])
            if payment is None:
                handler.send_json(404, {})
            elif method == "GET":
                self.pay_page(handler, f"Pay {payment['amount']['value']} {payment['amount']['currency']}")
            else:
                self.succeed(payment["id"])
                handler.redirect(payment["confirmation"]["return_url"])
            return
        handler.send_json(404, {"type": "error", "code": "not_found"})

    def _create(self, handler: _Handler, params: dict[str, Any]) -> None:
        key = handler.headers.get("Idempotence-Key", "")
        with self.lock:
            if key and key in self.by_idempotency:
                handler.send_json(200, self.payments[self.by_idempotency[key]])
                return
            payment_id = str(uuid.uuid4())
            payment = {
                "id": payment_id,
                "status": "pending",
                "paid": False,
                "amount": params["amount"],
                "confirmation": {
                    "type": "redirect",
                    "return_url": params["confirmation"]["return_url"],
                    "confirmation_url": f"{self.base_url}/pay/{payment_id}",
                },
                "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "description": params.get("description", ""),
                "metadata": params.get("metadata", {}),
                "recipient": {"account_id": "100500", "gateway_id": "100700"},
                "refundable": False,
                "test": True,
            }
            if "receipt" in params:
                payment["receipt_registration"] = "pending"
            self.payments[payment_id] = payment
            self.created_with = params
            if key:
                self.by_idempotency[key] = payment_id
        handler.send_json(200, payment)

    def succeed(self, payment_id: str, *, notify: bool = True) -> dict[str, Any]:
        payment = self.payments[payment_id]
        payment.update(status="succeeded", paid=True, refundable=True)
        payment["captured_at"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if notify:
            self.deliver("payment.succeeded", payment)
        return payment

    def cancel(self, payment_id: str, reason: str = "expired_on_confirmation") -> dict[str, Any]:
        payment = self.payments[payment_id]
        payment.update(status="canceled", cancellation_details={"party": "yoo_money", "reason": reason})
        return payment

    def refund(self, payment_id: str, value: str) -> dict[str, Any]:
        payment = self.payments[payment_id]
        refund = {
            "id": str(uuid.uuid4()),
            "payment_id": payment_id,
            "status": "succeeded",
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "amount": {"value": value, "currency": payment["amount"]["currency"]},
        }
        self.refunds[refund["id"]] = refund
        return refund

    def deliver(self, event: str, obj: dict[str, Any]) -> httpx.Response:
        body = {"type": "notification", "event": event, "object": obj}
        return httpx.post(self.webhook_url, json=body, timeout=30)
