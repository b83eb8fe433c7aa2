"""The world's firmware (campaigns, OTA attempts, versions) and stock (products, daily stock).

Statistical properties are checked on a 2,000-device world (about 1,100 firmware-managed
devices, about a second to compute every attempt); determinism and size-independence compare it
with a 300-device world of the same seed.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from fleet_pipeline.sandbox.world import FIRMWARE_PLATFORMS, OTA_STATUS, World, firmware, stock
from fleet_pipeline.sandbox.world.plan import STATUS_DRIVING, STATUS_PARKED, day_statuses, plan_days

NOW = datetime(2026, 11, 20, 12)
# the demo loads the 7 complete UTC days before today
DEMO_WEEK = (NOW.date() - timedelta(days=7), NOW.date() - timedelta(days=1))
MS = timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def big() -> World:
    return World(seed=42, n_devices=2000, now=lambda: NOW)


@pytest.fixture(scope="module")
def small() -> World:
    return World(seed=42, n_devices=300, now=lambda: NOW)


@pytest.fixture(scope="module")
def managed(big: World) -> list:
    return [d for d in big.devices if d.firmware_platform is not None]


@pytest.fixture(scope="module")
def attempts(big: World, managed: list) -> dict[str, list[firmware.OtaAttempt]]:
    return {d.imei: big.ota_attempts(d.imei) for d in managed}


def by_campaign(attempts: dict[str, list[firmware.OtaAttempt]], campaign_id: str) -> dict[str, list[firmware.OtaAttempt]]:
    out: dict[str, list[firmware.OtaAttempt]] = {}
    for imei, mine in attempts.items():
        of_campaign = [a for a in mine if a.campaign_id == campaign_id]
        if of_campaign:
            out[imei] = of_campaign
    return out


def online(world: World, imei: str, day: date) -> bool:
    """Online = parked or driving, from the cheap plan (checked against world.day below)."""
    device = world.device(imei)
    status = day_statuses(world.seed, device.index, device.activation_date.toordinal(), np.array([day.toordinal()]))
    return int(status[0]) in (STATUS_PARKED, STATUS_DRIVING)


# --------------------------------------------------------------------------- determinism


def test_day_statuses_are_the_statuses_of_the_full_plans(big: World) -> None:
    for device in big.devices[:20]:
        spec = big._plan_spec(device.index)
        ordinals = np.arange(date(2026, 10, 1).toordinal(), date(2026, 12, 1).toordinal())
        full = plan_days(big.seed, big.grid, spec, ordinals).status
        assert np.array_equal(day_statuses(big.seed, device.index, spec.activation_ordinal, ordinals), full)


def test_online_helper_agrees_with_generated_days(big: World) -> None:
    days = [date(2026, 11, 10) + timedelta(days=k) for k in range(12)]
    for device in big.devices[:5]:
        for d in days:
            assert online(big, device.imei, d) == (big.day(device.imei, d).status in ("parked", "driving"))


def test_firmware_is_independent_of_world_size_and_call_order(small: World, big: World) -> None:
    fresh = World(seed=42, n_devices=300, now=lambda: NOW)
    devices = [d for d in small.devices if d.firmware_platform is not None]
    assert len(devices) > 100
    # the fresh world computes the devices in reverse order, and firmware_at before attempts
    reverse = {d.imei: fresh.firmware_at(d.imei, NOW) for d in reversed(devices)}
    for d in devices:
        assert small.ota_attempts(d.imei) == big.ota_attempts(d.imei) == fresh.ota_attempts(d.imei)
        assert small.firmware_at(d.imei, NOW) == big.firmware_at(d.imei, NOW) == reverse[d.imei]
    assert small.campaigns == big.campaigns == fresh.campaigns
    assert small.products == big.products
    aovx = [d.imei for d in devices if d.firmware_platform == "aovx"]
    assert [small.aovx_terminal_id(i) for i in aovx] == [big.aovx_terminal_id(i) for i in aovx]
    assert [small.aovx_terminal_num(i) for i in aovx] == [big.aovx_terminal_num(i) for i in aovx]


def test_another_seed_gives_another_firmware_world(big: World) -> None:
    other = World(seed=7, n_devices=50, now=lambda: NOW)
    assert [c.start_day for c in other.campaigns] != [c.start_day for c in big.campaigns]
    assert {p.product_id for p in other.products}.isdisjoint(p.product_id for p in big.products)


# --------------------------------------------------------------------------- campaigns


def test_every_managed_model_has_a_running_campaign_and_platforms_a_completed_one(big: World) -> None:
    models = Counter(c.model for c in big.campaigns)
    assert set(models) == {"FMB920", "FMC130", "FMB140", "AOVX-M1", "AOVX-C2"}
    assert all(1 <= n <= 2 for n in models.values())
    assert len({c.campaign_id for c in big.campaigns}) == len(big.campaigns)
    for c in big.campaigns:
        assert re.fullmatch(rf"{c.model.lower()}-\d{{4}}-\d{{2}}", c.campaign_id)
        assert c.platform in FIRMWARE_PLATFORMS and c.from_version != c.target_version
        assert c.stages[0][0] == 0 and c.stages[-1][1] == 1.0
        assert [s for _, s in c.stages] == sorted(s for _, s in c.stages)
    for model in models:
        mine = sorted((c for c in big.campaigns if c.model == model), key=lambda c: c.start_day)
        assert mine[-1].start_day <= DEMO_WEEK[0] and mine[-1].end_day >= NOW.date()
        for older, newer in zip(mine, mine[1:]):
            assert older.target_version == newer.from_version
    for platform in FIRMWARE_PLATFORMS:
        assert any(c.platform == platform and c.end_day < NOW.date() - timedelta(days=150) for c in big.campaigns)


def test_the_demo_week_shows_rollouts_in_progress_on_both_platforms(big: World, attempts) -> None:
    in_week = Counter()
    for mine in attempts.values():
        for a in mine:
            if DEMO_WEEK[0] <= a.sent_at.date() <= DEMO_WEEK[1]:
                in_week[a.campaign_id.startswith("aovx")] += 1
    assert in_week[True] > 20 and in_week[False] > 20


# --------------------------------------------------------------------------- attempts


def test_attempt_records_are_well_formed(big: World, attempts) -> None:
    ids = [a.attempt_id for mine in attempts.values() for a in mine]
    assert len(ids) > 1000 and len(set(ids)) == len(ids)
    campaigns = {c.campaign_id: c for c in big.campaigns}
    for imei, mine in attempts.items():
        assert mine == sorted(mine, key=lambda a: a.sent_at)
        for a in mine:
            c = campaigns[a.campaign_id]
            assert re.fullmatch(r"[0-9A-F]{32}", a.attempt_id)
            assert a.imei == imei and c.model == big.device(imei).model
            assert a.version == c.target_version and a.url == c.url
            assert {a.upgrade_type, a.upgrade_mode, a.protocol} <= {"0", "1"}
            times = [t for t, _ in a.history]
            statuses = [s for _, s in a.history]
            assert a.history[0][0] == a.sent_at and times == sorted(set(times))
            assert set(statuses) <= set(OTA_STATUS)
            assert statuses in ([-1], [1], [1, 2, 3], [1, 2, 4]), statuses
            assert a.status_at(a.sent_at - MS) is None and a.last_update_at(a.sent_at - MS) is None
            for t, s in a.history:
                assert a.status_at(t) == s and a.last_update_at(t) == t


def test_attempts_follow_online_days_and_retry_only_after_a_failure(big: World, attempts) -> None:
    checked_retries = checked_downloads = 0
    for imei, mine in attempts.items():
        for campaign_id in {a.campaign_id for a in mine}:
            chain = [a for a in mine if a.campaign_id == campaign_id]
            assert 1 <= len(chain) <= firmware.MAX_ATTEMPTS
            for earlier, later in zip(chain, chain[1:]):
                assert earlier.history[-1][1] in (-1, 4)
                assert later.sent_at.date() > earlier.history[-1][0].date()
                # the retry day is the first online day after the failure
                assert online(big, imei, later.sent_at.date())
                skipped = earlier.history[-1][0].date() + timedelta(days=1)
                while skipped < later.sent_at.date():
                    assert not online(big, imei, skipped)
                    skipped += timedelta(days=1)
                checked_retries += 1
            for a in chain:
                if len(a.history) == 3:   # the device downloaded: it was online that day
                    assert online(big, imei, a.history[1][0].date())
                    checked_downloads += 1
    assert checked_retries > 30 and checked_downloads > 1000


def test_offline_days_give_failed_or_pending_commands(big: World, attempts) -> None:
    kinds = Counter()
    for imei, mine in attempts.items():
        for a in mine:
            if online(big, imei, a.sent_at.date()):
                continue
            if a.history[0][1] == -1:
                kinds["failed"] += 1
            else:
                # "sent" waits for the device: downloading starts on a later, online day
                downloading = a.history[1][0].date()
                assert downloading > a.sent_at.date() and online(big, imei, downloading)
                kinds["waited"] += 1
    assert kinds["failed"] > 0 and kinds["waited"] > 0


def test_staged_rollout_shares_match_the_stages(big: World, attempts) -> None:
    for c in big.campaigns:
        first_days = [
            chain[0].sent_at.date()
            for imei, chain in by_campaign(attempts, c.campaign_id).items()
            if big.device(imei).activation_date < c.start_day
        ]
        assert len(first_days) > 80, c.campaign_id
        stage_days = {c.start_day + timedelta(days=d) for d, _ in c.stages}
        # scheduled on a stage day; an offline device still gets its command (-1 or pending)
        assert set(first_days) <= stage_days
        for offset, share in c.stages:
            seen = sum(d <= c.start_day + timedelta(days=offset) for d in first_days) / len(first_days)
            # four standard deviations of a binomial share: "roughly", yet a wrong stage fails
            tolerance = max(0.03, 4 * (share * (1 - share) / len(first_days)) ** 0.5)
            assert abs(seen - share) <= tolerance, (c.campaign_id, offset, share, seen)


def test_about_five_percent_never_upgrade(big: World, attempts) -> None:
    done = [c for c in big.campaigns if c.end_day + timedelta(days=firmware.ATTEMPT_HORIZON_DAYS) < NOW.date()]
    never = scheduled = 0
    for c in done:
        for chain in by_campaign(attempts, c.campaign_id).values():
            scheduled += 1
            never += chain[-1].succeeded_at is None
    assert scheduled > 300
    assert 0.02 <= never / scheduled <= 0.10
    first = [mine[0] for mine in attempts.values() if mine]
    failed_first = sum(a.history[-1][1] in (-1, 4) for a in first) / len(first)
    assert 0.08 <= failed_first <= 0.30


def test_firmware_changes_exactly_at_successful_attempts(big: World, attempts) -> None:
    campaigns = {c.campaign_id: c for c in big.campaigns}
    for imei, mine in attempts.items():
        for a in mine:
            for t, s in a.history:
                before, after = big.firmware_at(imei, t - MS), big.firmware_at(imei, t)
                if s == 3:
                    assert (before, after) == (campaigns[a.campaign_id].from_version, a.version)
                else:
                    assert before == after
        successes = [a for a in mine if a.succeeded_at is not None]
        end = datetime(2030, 1, 1)
        assert big.firmware_at(imei, end) == (successes[-1].version if successes else big.firmware_at(imei, datetime(2000, 1, 1)))
        # between attempts nothing changes: sample the middle of every gap
        times = sorted(t for a in mine for t, _ in a.history)
        for t1, t2 in zip(times, times[1:]):
            assert big.firmware_at(imei, t1 + (t2 - t1) / 2) == big.firmware_at(imei, t1)


def test_devices_activated_after_a_campaign_ship_with_its_target(big: World, managed, attempts) -> None:
    seen = 0
    for c in big.campaigns:
        for d in managed:
            if d.model == c.model and d.activation_date > c.end_day:
                assert big.firmware_at(d.imei, datetime.combine(d.activation_date, datetime.min.time())) != c.from_version
                assert not any(a.campaign_id == c.campaign_id for a in attempts[d.imei])
                seen += 1
    assert seen > 100


def test_jimi_devices_have_no_managed_firmware(big: World) -> None:
    jimi = [d for d in big.devices if d.manufacturer == "jimi"][:10]
    assert jimi
    for d in jimi:
        assert big.firmware_at(d.imei, NOW) is None and big.ota_attempts(d.imei) == []
    with pytest.raises(KeyError, match="no device"):
        big.firmware_at("000000000000000", NOW)


def test_attempts_updated_is_the_filter_of_all_attempts(big: World, attempts) -> None:
    windows = [
        (datetime(2026, 11, 19), datetime(2026, 11, 20), NOW),
        (datetime(2026, 11, 1), datetime(2026, 11, 21), NOW),
        (datetime(2026, 11, 1), datetime(2026, 11, 21), datetime(2026, 11, 10, 9)),
        (datetime(2025, 12, 1), datetime(2026, 1, 1), NOW),
        (datetime(2024, 1, 1), datetime(2024, 2, 1), NOW),
    ]
    for platform in FIRMWARE_PLATFORMS:
        for start, end, at in windows:
            expected = sorted(
                (
                    a
                    for imei, mine in attempts.items()
                    if big.device(imei).firmware_platform == platform
                    for a in mine
                    if a.last_update_at(at) is not None and start <= a.last_update_at(at) < end
                ),
                key=lambda a: (a.last_update_at(at), a.attempt_id),
            )
            assert big.ota_attempts_updated(platform, start, end, at) == expected
    assert big.ota_attempts_updated("aovx", datetime(2026, 11, 1), datetime(2026, 11, 21))  # default: now
    with pytest.raises(ValueError, match="firmware platform"):
        big.ota_attempts_updated("navixy", datetime(2026, 11, 1), datetime(2026, 11, 2), NOW)


def test_aovx_terminal_identifiers(big: World, managed) -> None:
    aovx = [d for d in managed if d.firmware_platform == "aovx"]
    ids = [big.aovx_terminal_id(d.imei) for d in aovx]
    nums = [big.aovx_terminal_num(d.imei) for d in aovx]
    assert all(re.fullmatch(r"[0-9A-F]{32}", t) for t in ids) and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"\d{12}", n) for n in nums) and len(set(nums)) == len(nums)
    assert [big.imei_for_terminal(t) for t in ids] == [d.imei for d in aovx]
    with pytest.raises(KeyError, match="AOVX terminal"):
        big.imei_for_terminal("0" * 32)
    teltonika = next(d for d in managed if d.firmware_platform == "teltonika_fota")
    with pytest.raises(ValueError, match="not managed by AOVX"):
        big.aovx_terminal_id(teltonika.imei)


# --------------------------------------------------------------------------- stock


DAYS = [date(2023, 12, 30) + timedelta(days=k) for k in range(1200)]


def test_products_cover_every_model_and_some_accessories(big: World) -> None:
    models = [p.model for p in big.products if p.model is not None]
    assert sorted(models) == sorted({d.model for d in big.devices})
    accessories = [p for p in big.products if p.model is None]
    assert 6 <= len(accessories) <= 10
    assert {"Relay kit 12V", "OBD-II Y cable"} <= {p.name for p in accessories}
    assert len({p.product_id for p in big.products}) == len({p.name for p in big.products}) == len(big.products)
    for p in big.products:
        assert re.fullmatch(r"[0-9a-f]{24}", p.product_id)
        assert p.ean_upc is None or stock.ean13_valid(p.ean_upc)
        assert p.created.tzinfo is None and p.created < datetime(2026, 1, 1)
    assert any(p.ean_upc is None for p in big.products)


def test_ean13_check_digit_matches_known_codes() -> None:
    for code in ("4006381333931", "5901234123457", "3017620422003"):
        assert stock.ean13_valid(code)
    assert not stock.ean13_valid("4006381333932") and not stock.ean13_valid("400638133393")


@pytest.mark.parametrize("n_devices", [60, 2000])
def test_stock_moves_only_by_consumption_and_deliveries(n_devices: int, big: World) -> None:
    world = big if n_devices == 2000 else World(seed=42, n_devices=n_devices, now=lambda: NOW)
    oversold_days = 0
    for p in world.products:
        if not p.counted:
            continue
        levels = [world.stock_on(p.product_id, d) for d in DAYS]
        oversold_days += sum(level < 0 for level in levels)
        topped_up_to = set()
        for k in range(1, len(DAYS)):
            d = DAYS[k]
            delivered = world.deliveries_on(p.product_id, d)
            assert levels[k] == levels[k - 1] - world.consumption_on(p.product_id, d) + delivered
            if delivered:
                # Monday's order, delivered on Thursday, brought the stock up to the product's level
                assert d.weekday() == 3, (p.name, d)
                monday = d - timedelta(days=3)
                topped_up_to.add(levels[k] + sum(world.consumption_on(p.product_id, monday + timedelta(days=j))
                                                 for j in range(4)))
        assert len(topped_up_to) <= 1, (p.name, topped_up_to)
        used = sum(world.consumption_on(p.product_id, d) for d in DAYS)
        if used > levels[0]:   # more installs than the opening stock: deliveries must have come
            assert topped_up_to, p.name
    if n_devices == 2000:
        # a growing fleet outruns a weekly order now and then: the product is oversold until Thursday
        assert oversold_days > 0


def test_one_accessory_has_no_stock_figure(small: World, big: World) -> None:
    for world in (small, big):
        uncounted = [p for p in world.products if not p.counted]
        assert len(uncounted) == 1
        product = uncounted[0]
        assert product.model is None and product.name not in ("Relay kit 12V", "OBD-II Y cable")
        assert {world.stock_on(product.product_id, d) for d in DAYS[::50]} == {None}
        assert all(world.stock_on(p.product_id, NOW.date()) is not None for p in world.products if p.counted)


def test_model_stock_falls_by_that_models_activations(big: World) -> None:
    activated = Counter((d.model, d.activation_date) for d in big.devices)
    for p in big.products:
        if p.model is None:
            continue
        for d in DAYS:
            assert big.activations_on(p.model, d) == activated[(p.model, d)]
            assert big.consumption_on(p.product_id, d) == activated[(p.model, d)]
    assert sum(activated.values()) == len(big.devices)


def test_accessories_follow_installs_deterministically(small: World, big: World) -> None:
    obd = next(p for p in big.products if p.name == "OBD-II Y cable")
    obd_days = {d.activation_date for d in big.devices if d.model in stock.OBD_MODELS}
    relay = next(p for p in big.products if p.name == "Relay kit 12V")
    for d in DAYS:
        if big.consumption_on(obd.product_id, d):
            assert d in obd_days
        for p in (obd, relay):
            # the 300 devices of the small world take the same accessories in the big one
            assert small.consumption_on(p.product_id, d) <= big.consumption_on(p.product_id, d)
    fitted = sum(big.consumption_on(relay.product_id, d) for d in DAYS) / len(big.devices)
    assert 0.25 <= fitted <= 0.35


def test_unknown_products_and_models_are_named_in_errors(big: World) -> None:
    with pytest.raises(KeyError, match="no product"):
        big.stock_on("0" * 24, date(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown device model"):
        big.activations_on("FMB999", date(2026, 1, 1))


# --------------------------------------------------------------------------- a living world

# Whatever day the sandbox runs on (a Friday noon, a Sunday just before midnight, a Monday just
# after it, a leap day two years on), the week the demo loads shows a rollout, installs and stock.
TODAYS = [datetime(2026, 11, 20, 12), datetime(2027, 2, 28, 23, 59), datetime(2026, 12, 7, 0, 1),
          datetime(2028, 2, 29, 6)]


def week_before(today: date) -> list[date]:
    return [today - timedelta(days=k) for k in range(7, 0, -1)]


@pytest.mark.parametrize("now", TODAYS, ids=lambda t: t.date().isoformat())
def test_the_week_before_today_has_a_rollout_in_progress(now: datetime) -> None:
    world = World(seed=42, n_devices=200, now=lambda: now)
    week = week_before(now.date())
    models = {d.model for d in world.devices if d.firmware_platform is not None}
    running = {c.model for c in world.campaigns if c.start_day <= week[0] and c.end_day >= now.date()}
    assert running == models == set(firmware.VERSIONS)
    sent: Counter[str] = Counter()
    for d in world.devices:
        for a in world.ota_attempts(d.imei):
            if week[0] <= a.sent_at.date() <= week[-1]:
                sent[d.firmware_platform] += 1
    assert sent["aovx"] > 0 and sent["teltonika_fota"] > 0, sent


@pytest.mark.parametrize("now", TODAYS, ids=lambda t: t.date().isoformat())
def test_the_week_before_today_has_installs_and_stock_that_moves(now: datetime) -> None:
    world = World(seed=42, n_devices=200, now=lambda: now)
    week = week_before(now.date())
    # the install stream runs through the anchor's week, to its Sunday, whatever day it is
    assert max(d.activation_date for d in world.devices) == world.anchor + timedelta(days=6)
    models = sorted({d.model for d in world.devices})
    per_day = [sum(world.activations_on(m, day) for m in models) for day in week]
    # every day of the week the demo loads has installs, the days of the anchor's week included
    assert all(n > 0 for n in per_day), per_day
    assert sum(per_day) == sum(week[0] <= d.activation_date <= week[-1] for d in world.devices) > 0
    counted = [p for p in world.products if p.counted]
    delivered = sum(world.deliveries_on(p.product_id, day) for p in counted for day in week)
    used = sum(world.consumption_on(p.product_id, day) for p in counted for day in week)
    moved = [p.name for p in counted
             if world.stock_on(p.product_id, week[-1]) != world.stock_on(p.product_id, week[0] - timedelta(days=1))]
    assert delivered > 0 and used > 0 and moved
    thursday = next(day for day in week if day.weekday() == 3)
    assert sum(world.deliveries_on(p.product_id, thursday) for p in counted) == delivered


def test_the_world_is_deterministic_for_a_seed_and_a_week() -> None:
    monday, sunday = datetime(2027, 2, 22, 0, 5), datetime(2027, 2, 28, 23, 55)
    a = World(seed=42, n_devices=200, now=lambda: monday)
    b = World(seed=42, n_devices=200, now=lambda: sunday)
    next_week = World(seed=42, n_devices=200, now=lambda: sunday + timedelta(minutes=10))
    assert a.anchor == b.anchor == monday.date() and a.today != b.today
    # every run of the week sees the same world: re-runs and consecutive snapshots agree
    assert a.devices == b.devices and a.campaigns == b.campaigns and a.products == b.products
    week = week_before(sunday.date())
    for d in a.devices[::7]:
        assert a.ota_attempts(d.imei) == b.ota_attempts(d.imei)
        assert a.day(d.imei, week[3]).trips == b.day(d.imei, week[3]).trips
    for p in a.products:
        assert [a.stock_on(p.product_id, day) for day in week] == [b.stock_on(p.product_id, day) for day in week]
    # the next Monday the world's calendar moves on by a week
    shift = timedelta(days=7)
    assert next_week.anchor == a.anchor + shift
    assert [d.activation_date for d in next_week.devices] == [d.activation_date + shift for d in a.devices]
    assert [c.start_day for c in next_week.campaigns] == [c.start_day + shift for c in a.campaigns]
