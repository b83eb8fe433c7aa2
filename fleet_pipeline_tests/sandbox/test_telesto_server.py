"""Protocol conformance of the Telesto inventory sandbox over real HTTP on loopback.

Expected values come from the World (products, stock) and from the vendor doc (shapes, error
table, 100/hour and the 15-minute block), never from the server's own helpers. Time is a
`ManualClock` shared by the sandbox clock and the rate window, so nothing sleeps.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
import requests

from fleet_pipeline.sandbox import telesto
from fleet_pipeline.sandbox.server import ManualClock, SandboxServer
from fleet_pipeline.sandbox.world import World

START = datetime(2026, 11, 20, 12, 0, 0)
CREATED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
DOCUMENTED_FIELDS = {"id", "name", "ean_upc", "stock_onhand", "created"}
ERROR_TYPES = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
               429: "TOO_MANY_REQUESTS", 500: "SERVER_ERROR"}


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=42, n_devices=60, now=lambda: START)


@dataclass
class Sandbox:
    server: SandboxServer[telesto.TelestoKnobs]
    clock: ManualClock
    world: World
    http: requests.Session

    @property
    def url(self) -> str:
        return self.server.base_url + telesto.PRODUCTS_PATH

    @property
    def knobs(self) -> telesto.TelestoKnobs:
        return self.server.knobs

    def get(self, path: str = telesto.PRODUCTS_PATH, *, key: str | None = telesto.API_KEY,
            method: str = "GET", **kwargs: Any) -> requests.Response:
        headers = {} if key is None else {"Authorization": key}
        return self.http.request(method, self.server.base_url + path, headers=headers,
                                 timeout=30, **kwargs)


@pytest.fixture
def sandbox(world: World) -> Iterator[Sandbox]:
    clock = ManualClock(START)
    with telesto.make_server(world, now=clock) as server, requests.Session() as session:
        yield Sandbox(server=server, clock=clock, world=world, http=session)


def expected_products(world: World, now: datetime) -> dict[str, Any]:
    return {p.product_id: p for p in world.products if p.created <= now}


def assert_error(response: requests.Response, status: int) -> dict[str, Any]:
    """The documented envelope, exactly: statusCode (an int equal to the HTTP status) and
    error {type, description}, nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"statusCode", "error"}
    assert body["statusCode"] == status and isinstance(body["statusCode"], int)
    assert set(body["error"]) == {"type", "description"}
    assert body["error"]["type"] == ERROR_TYPES[status]
    assert isinstance(body["error"]["description"], str) and body["error"]["description"]
    return body


def stock_figure(row: dict[str, str]) -> int | None:
    return None if row["stock_onhand"] == "" else int(row["stock_onhand"])


# -- shapes ----------------------------------------------------------------------------------
def test_products_are_all_strings_with_empty_strings_for_nulls(sandbox: Sandbox) -> None:
    response = sandbox.get()
    assert response.status_code == 200
    assert b"null" not in response.content  # nulls are sent as "" (doc: "Format de réponse")
    rows = response.json()
    assert isinstance(rows, list) and rows
    for row in rows:
        assert DOCUMENTED_FIELDS <= set(row)
        assert all(isinstance(value, str) for value in row.values()), row
        # a count, negative when oversold, "" for the product the back office does not count
        assert re.fullmatch(r"-?\d+|", row["stock_onhand"]), row
        assert re.fullmatch(r"[0-9a-f]{24}", row["id"]), row
        assert re.fullmatch(r"\d+\.\d{2}", row["price"]), row
    # Empty strings really occur: products without an EAN, accessories without a SKU.
    assert any(row["ean_upc"] == "" for row in rows)
    assert any(row["sku"] == "" for row in rows)
    assert any(row["ean_upc"] != "" for row in rows)
    assert any(row["stock_onhand"] == "" for row in rows)


def test_created_has_no_time_zone_and_rows_match_the_world(sandbox: Sandbox) -> None:
    rows = sandbox.get().json()
    products = expected_products(sandbox.world, START)
    assert [row["id"] for row in rows] and {row["id"] for row in rows} == set(products)
    assert len(rows) == len(products)
    for row in rows:
        product = products[row["id"]]
        assert CREATED.fullmatch(row["created"]), row["created"]
        assert datetime.strptime(row["created"], "%Y-%m-%d %H:%M:%S") == \
            product.created.replace(microsecond=0)
        assert row["name"] == product.name
        assert row["ean_upc"] == (product.ean_upc or "")
        if product.ean_upc:
            assert re.fullmatch(r"\d{13}", row["ean_upc"])


def test_stock_onhand_is_the_worlds_stock_at_the_end_of_the_sandbox_day(
        sandbox: Sandbox) -> None:
    today = START.date()
    rows = sandbox.get().json()
    assert {r["id"]: stock_figure(r) for r in rows} == {
        pid: sandbox.world.stock_on(pid, today) for pid in expected_products(sandbox.world, START)
    }
    # Move the sandbox clock back to a day of the fleet's roll-out: the stock follows the
    # clock's day, and products not created yet are not listed. The day is one whose stock differs
    # from today's somewhere, so a server ignoring its clock would fail.
    products = expected_products(sandbox.world, START)
    then = next(datetime.combine(day, time(9, 30)) for day in (date(2025, 3, 10) + timedelta(days=n) for n in range(60))
                if any(sandbox.world.stock_on(pid, day) != sandbox.world.stock_on(pid, today) for pid in products))
    sandbox.clock.set(then)
    earlier = {r["id"]: stock_figure(r) for r in sandbox.get().json()}
    assert earlier == {pid: sandbox.world.stock_on(pid, then.date())
                       for pid in expected_products(sandbox.world, then)}


def test_query_parameters_do_not_page_the_array(sandbox: Sandbox) -> None:
    everything = sandbox.get().json()
    assert sandbox.get(params={"page": "2", "limit": "1", "offset": "3"}).json() == everything


# -- auth and errors -------------------------------------------------------------------------
@pytest.mark.parametrize("key", [None, "", f"Bearer {telesto.API_KEY}", "wrong-key",
                                 telesto.API_KEY.upper()])
def test_anything_but_the_bare_key_is_unauthorized(sandbox: Sandbox, key: str | None) -> None:
    assert_error(sandbox.get(key=key), 401)


def test_the_bare_key_in_any_header_case_is_accepted(sandbox: Sandbox) -> None:
    response = sandbox.http.get(sandbox.url, headers={"authorization": telesto.API_KEY},
                                timeout=30)
    assert response.status_code == 200 and isinstance(response.json(), list)


def test_no_pro_subscription_is_forbidden(sandbox: Sandbox) -> None:
    sandbox.knobs.set(no_pro_subscription=True)
    assert_error(sandbox.get(), 403)
    # Auth comes first: a bad key still says 401, not 403.
    assert_error(sandbox.get(key="wrong-key"), 401)
    sandbox.knobs.set(no_pro_subscription=False)
    assert sandbox.get().status_code == 200


@pytest.mark.parametrize("method, path", [("GET", "/v2/orders"), ("GET", "/v1/products"),
                                          ("POST", "/v2/products"), ("GET", "/")])
def test_unknown_routes_are_not_found(sandbox: Sandbox, method: str, path: str) -> None:
    assert_error(sandbox.get(path, method=method), 404)


def test_force_500_answers_the_documented_server_error_then_recovers(sandbox: Sandbox) -> None:
    sandbox.knobs.set(force_500_next=2)
    assert_error(sandbox.get(), 500)
    assert_error(sandbox.get(), 500)
    assert sandbox.get().status_code == 200
    assert sandbox.server.count("GET /v2/products", status=500, vendor_code="SERVER_ERROR") == 2


def test_force_429_answers_without_blocking(sandbox: Sandbox) -> None:
    sandbox.knobs.set(force_429_next=1)
    assert_error(sandbox.get(), 429)
    assert sandbox.server.app.blocked_until() is None
    assert sandbox.get().status_code == 200


# -- the hourly limit and the 15-minute block ------------------------------------------------
def spend(sandbox: Sandbox, n: int, *, step: timedelta = timedelta(0),
          key: str | None = telesto.API_KEY) -> list[int]:
    statuses = []
    for _ in range(n):
        statuses.append(sandbox.get(key=key).status_code)
        sandbox.clock.advance(step)
    return statuses


def test_the_101st_request_within_an_hour_blocks_the_ip_for_15_minutes(
        sandbox: Sandbox) -> None:
    # 100 requests spread over 49.5 minutes are all served.
    assert spend(sandbox, 100, step=timedelta(seconds=30)) == [200] * 100
    blocked_at = sandbox.clock()
    body = assert_error(sandbox.get(), 429)
    assert "15" in body["error"]["description"]
    assert sandbox.server.app.blocked_until() == blocked_at + timedelta(minutes=15)
    # Requests during the block answer 429 and do not push its end.
    for minutes in (1, 5, 10, 14):
        sandbox.clock.set(blocked_at + timedelta(minutes=minutes, seconds=59))
        assert_error(sandbox.get(), 429)
    assert sandbox.server.app.blocked_until() == blocked_at + timedelta(minutes=15)
    # At exactly 15 minutes the block is lifted.
    sandbox.clock.set(blocked_at + timedelta(minutes=15))
    assert sandbox.get().status_code == 200
    assert sandbox.server.count(status=429) == 5
    assert sandbox.server.count(status=200) == 101


def test_after_a_block_the_ip_starts_a_fresh_hour(sandbox: Sandbox) -> None:
    assert spend(sandbox, 100) == [200] * 100
    assert_error(sandbox.get(), 429)
    sandbox.clock.advance(minutes=15)
    # Only 15 minutes after the first 100 (still inside their hour), a whole new allowance:
    # 100 more, then blocked again.
    assert spend(sandbox, 100) == [200] * 100
    assert_error(sandbox.get(), 429)


def test_the_window_slides_so_an_hour_later_nothing_is_blocked(sandbox: Sandbox) -> None:
    assert spend(sandbox, 60) == [200] * 60
    sandbox.clock.advance(minutes=30)
    assert spend(sandbox, 40) == [200] * 40
    # 100 in the last hour: one more would block. Just after the first 60 leave the window,
    # 60 calls are free again and none of them is refused.
    sandbox.clock.advance(minutes=30, seconds=1)
    assert spend(sandbox, 60) == [200] * 60
    assert sandbox.server.count(status=429) == 0
    assert_error(sandbox.get(), 429)


def test_every_request_counts_whatever_its_answer(sandbox: Sandbox) -> None:
    assert spend(sandbox, 60, key="wrong-key") == [401] * 60
    assert [sandbox.get("/v2/nothing").status_code for _ in range(40)] == [404] * 40
    assert_error(sandbox.get(), 429)


def test_the_limit_is_per_client_ip(sandbox: Sandbox) -> None:
    assert spend(sandbox, 100) == [200] * 100
    assert_error(sandbox.get(), 429)
    # Another address of the loopback network (Linux routes all of 127/8 to lo).
    connection = http.client.HTTPConnection(sandbox.server.host, sandbox.server.port, timeout=30,
                                            source_address=("127.0.0.2", 0))
    try:
        connection.request("GET", telesto.PRODUCTS_PATH,
                           headers={"Authorization": telesto.API_KEY})
        response = connection.getresponse()
        assert response.status == 200
        assert isinstance(json.loads(response.read()), list)
    finally:
        connection.close()
    assert sandbox.server.app.blocked_until("127.0.0.2") is None
    assert sandbox.server.app.blocked_until("127.0.0.1") is not None


def test_retry_after_is_absent_unless_the_knob_asks_for_it(sandbox: Sandbox) -> None:
    spend(sandbox, 100)
    assert "Retry-After" not in sandbox.get().headers
    sandbox.knobs.set(retry_after_header=True)
    sandbox.clock.advance(minutes=10)
    assert sandbox.get().headers["Retry-After"] == "300"


def test_the_limits_are_knobs(world: World) -> None:
    clock = ManualClock(START)
    with telesto.make_server(world, now=clock, rate_limit_per_hour=2, block_s=60) as server:
        url = server.base_url + telesto.PRODUCTS_PATH
        def get() -> requests.Response:
            return requests.get(url, headers={"Authorization": telesto.API_KEY}, timeout=30)

        assert [get().status_code for _ in range(3)] == [200, 200, 429]
        clock.advance(seconds=59)
        assert get().status_code == 429
        clock.advance(seconds=1)
        assert get().status_code == 200
