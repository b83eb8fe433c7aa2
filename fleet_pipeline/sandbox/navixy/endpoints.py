"""Navixy endpoints about the account and its trackers: user, tracker lists, states, sensors.

The time-window endpoints (tracks, history, mileage) are in `track_endpoints.py`; see SPEC.md,
"Methods", for every rule.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fleet_pipeline.sandbox.navixy.protocol import (
    LOGIN,
    PASSWORD,
    USER_TIME_ZONE,
    Call,
    NavixyError,
    fmt,
    invalid,
)
from fleet_pipeline.sandbox.navixy.synthesis import (
    CAN_MODELS,
    FUEL_TANK_L,
    OBD_MODELS,
    PLATFORM,
    TRACKER_ID_BASE,
    USER_ID,
    board_voltage,
    engine_rpm,
    fuel_litres,
    gps_precision,
    sensor_row,
    tracker_id,
    vehicle_vin,
)

if TYPE_CHECKING:
    from fleet_pipeline.sandbox.world import Device


class AccountEndpoints:
    """user/*, tracker/list|read|group/list, tracker/get_state(s), get_last_gps_point, sensors.

    A part of `NavixyApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    # -- user --------------------------------------------------------------------------------
    def user_auth(self, call: Call) -> dict[str, Any]:
        login = call.params.string("login").strip()
        password = call.params.string("password")
        if not (hmac.compare_digest(login.lower().encode(), LOGIN.lower().encode())
                and hmac.compare_digest(password.encode("utf-8"), PASSWORD.encode("utf-8"))):
            raise NavixyError(102)
        session_hash = self._issue_session(self.now())
        with self._lock:
            self._issued.append(session_hash)
        return {"type": "authenticated", "hash": session_hash}

    def user_logout(self, call: Call) -> dict[str, Any]:
        if call.session_kind != "session":
            raise NavixyError(276)
        with self._lock:
            self._logged_out.add(call.hash or "")
        return {}

    def user_get_info(self, call: Call) -> dict[str, Any]:
        root = self.world.root_account(PLATFORM)
        created = datetime(2023, 11, 6, 9, 14, 27)
        return {
            "paas_id": 7_001,
            "paas_settings": {"domain": "tracking.fleetco.example", "service_title": "FleetCo GPS",
                              "locale": "fr_FR", "currency": "EUR", "maps": ["osm", "roadmap"],
                              "allow_registration": False, "show_mobile_apps": True,
                              "payment_link": None, "google_client_id": None},
            "user_info": {
                "id": USER_ID, "login": LOGIN, "title": root.name, "phone": "33478000000",
                "creation_date": fmt(created, call.iso), "balance": 0.0, "bonus": 0.0,
                "locale": "fr_FR", "demo": False, "verified": True, "legal_type": "legal_entity",
                "default_geocoder": "osm", "route_provider": "osrm",
                "time_zone": USER_TIME_ZONE, "measurement_system": "metric",
                "date_format": "ddMMyyyy_dots", "hour_mode": "TWENTY_FOUR_HOURS",
                "tin": "FR40123456789", "iec": None, "post_country": "France",
                "post_region": "Auvergne-Rhone-Alpes", "post_index": "69003", "post_city": "Lyon",
                "post_street_address": "12 Cours Lafayette", "registered_country": "France",
                "registered_region": "Auvergne-Rhone-Alpes", "registered_index": "69003",
                "registered_city": "Lyon", "registered_street_address": "12 Cours Lafayette",
                "first_name": "Claire", "middle_name": "", "last_name": "Fontaine",
                "legal_name": "FleetCo SAS",
            },
            "tariff_restrictions": {"allowed_maps": ["osm", "roadmap"]},
            "premium_gis": False,
            "features": ["branding_web"],
        }

    def user_settings_read(self, call: Call) -> dict[str, Any]:
        return {"settings": {"time_zone": USER_TIME_ZONE, "locale": "fr_FR",
                             "measurement_system": "metric", "date_format": "ddMMyyyy_dots",
                             "hour_mode": "TWENTY_FOUR_HOURS", "geocoder": "osm",
                             "route_provider": "osrm", "translit": False}}

    # -- trackers ----------------------------------------------------------------------------
    def _visible_devices(self, call: Call) -> list[Device]:
        deleted = self.knobs.deleted_tracker_ids or set()
        today = self.now().date()
        return [d for d in self.world.devices_on(PLATFORM)
                if d.activation_date <= today and tracker_id(d) not in deleted
                and call.account_id in (None, d.account_id)]

    def _classify(self, tid: int, call: Call) -> tuple[str, Device | None]:
        """("ok" | "blocked" | "deleted" | "missing", device) for one tracker id; a tracker of
        another account than the one an account key reaches is missing to it."""
        if tid in (self.knobs.deleted_tracker_ids or set()):
            return "deleted", None
        index = tid - TRACKER_ID_BASE
        if not 0 <= index < len(self.world.devices):
            return "missing", None
        d = self.world.devices[index]
        if (d.platform != PLATFORM or d.activation_date > self.now().date()
                or call.account_id not in (None, d.account_id)):
            return "missing", None
        if tid in (self.knobs.blocked_tracker_ids or set()):
            return "blocked", d
        return "ok", d

    def _tracker(self, call: Call) -> Device:
        """The one tracker a single-tracker call names: 201 unknown or deleted, 208 blocked."""
        tid = call.params.integer("tracker_id")
        status, d = self._classify(tid or 0, call)
        if status == "blocked":
            raise NavixyError(208)
        if status != "ok" or d is None:
            raise NavixyError(201)
        return d

    def _trackers_for_list_call(self, call: Call, *, max_size: int | None = None) -> list[Device]:
        """history and stats: every id must be a live, unblocked tracker (else 217).

        More than `max_size` ids is 221 "Device limit exceeded" (the stats doc's error).
        """
        ids = call.params.int_array("trackers")
        if max_size is not None and len(ids) > max_size:
            raise NavixyError(221)
        devices = []
        for tid in ids:
            status, d = self._classify(tid, call)
            if status != "ok" or d is None:
                raise NavixyError(217)
            devices.append(d)
        return devices

    def tracker_list(self, call: Call) -> dict[str, Any]:
        labels = call.params.str_array("labels")
        if labels is not None:
            if not 1 <= len(labels) <= 1024 or len(set(labels)) != len(labels):
                raise invalid("labels", "1 to 1024 distinct labels")
            if any(not 1 <= len(label) <= 60 for label in labels):
                raise invalid("labels", "each label must be 1 to 60 characters")
        rows = []
        for d in self._visible_devices(call):
            if labels and not any(f.lower() in d.device_name.lower() for f in labels):
                continue
            rows.append(self._tracker_object(d))
        return {"list": rows}

    def tracker_read(self, call: Call) -> dict[str, Any]:
        tid = call.params.integer("tracker_id")
        status, d = self._classify(tid or 0, call)
        if status not in ("ok", "blocked") or d is None:
            raise NavixyError(201)
        return {"value": self._tracker_object(d)}

    def tracker_group_list(self, call: Call) -> dict[str, Any]:
        colors = ("1E96DC", "E67E22", "27AE60", "8E44AD", "C0392B", "16A085")
        return {"list": [{"id": self._groups[a.account_id], "title": a.name,
                          "color": colors[n % len(colors)]}
                         for n, a in enumerate(self._accounts)]}

    # -- states ------------------------------------------------------------------------------
    def tracker_get_states(self, call: Call) -> dict[str, Any]:
        ids = call.params.int_array("trackers", max_size=self.knobs.max_states_trackers)
        list_blocked = call.params.boolean("list_blocked", False)
        allow_not_exist = call.params.boolean("allow_not_exist", False)
        found: list[Device] = []
        blocked: list[int] = []
        missing: list[int] = []
        deleted: list[int] = []
        for tid in ids:
            status, d = self._classify(tid, call)
            if status == "ok" and d is not None:
                found.append(d)
            elif status == "blocked":
                blocked.append(tid)
            elif status == "deleted":
                deleted.append(tid)
            else:
                missing.append(tid)
        if missing and not allow_not_exist:
            raise NavixyError(217)
        if deleted and not allow_not_exist:
            raise NavixyError(201)
        if blocked and not list_blocked:
            raise NavixyError(208)
        now = self.now()
        payload: dict[str, Any] = {
            "user_time": fmt(now, call.iso),
            "states": {str(tracker_id(d)): self._state(d, now, call.iso) for d in found},
        }
        if list_blocked:
            payload["blocked"] = blocked
        if allow_not_exist:
            payload["not_exist"] = sorted(missing + deleted)
        return payload

    def tracker_get_state(self, call: Call) -> dict[str, Any]:
        d = self._tracker(call)
        now = self.now()
        return {"user_time": fmt(now, call.iso), "state": self._state(d, now, call.iso)}

    def tracker_get_last_gps_point(self, call: Call) -> dict[str, Any]:
        d = self._tracker(call)
        fix = self.world.last_fix(d.imei, self.now())
        if fix is None:
            return {}
        return {"value": {
            "get_time": fmt(fix["gps_time"], call.iso),
            "heading": int(round(float(fix["direction_deg"]))) % 360,
            "lat": round(float(fix["lat"]), 7), "lng": round(float(fix["lng"]), 7),
            "satellites": int(fix["satellites"]), "speed": int(round(float(fix["speed_kmh"]))),
            "precision": gps_precision(int(fix["satellites"])) if d.manufacturer == "teltonika"
            else None,
        }}

    # -- sensors -----------------------------------------------------------------------------
    def _sensor_frame(self, call: Call) -> tuple[Device, dict[str, Any] | None, dict[str, Any]]:
        d = self._tracker(call)
        now = self.now()
        fix = self.world.last_fix(d.imei, now)
        head = {"user_time": fmt(now, call.iso),
                "update_time": fmt(fix["received_at"], call.iso) if fix else None}
        return d, fix, head

    def tracker_get_diagnostics(self, call: Call) -> dict[str, Any]:
        d, fix, head = self._sensor_frame(call)
        inputs: list[dict[str, Any]] = []
        states: dict[str, Any] | None = None
        if fix is not None and d.model in CAN_MODELS:
            odometer, speed = float(fix["odometer_km"]), float(fix["speed_kmh"])
            acc = bool(fix["acc_on"])
            inputs = [
                sensor_row("CAN: Mileage", "can_mileage", "odometer", round(odometer, 1), "km"),
                sensor_row("CAN: Speed", "can_speed", "speed", round(speed, 1), "km/h"),
                sensor_row("CAN: RPM", "can_rpm", "rpm", engine_rpm(speed, acc), ""),
                sensor_row("CAN: Engine hours", "can_engine_hours", "engine_hours",
                        round(odometer / 38.0, 1), "h"),
                sensor_row("CAN: Coolant temperature", "can_coolant_t", "temperature",
                        88.0 if acc else 14.0 + d.index % 8, "°C"),
                sensor_row("CAN: Engine load", "can_engine_load", "percent",
                        round(18.0 + speed / 3.0, 1) if acc else 0.0, "%"),
            ]
            states = {"obd_vin": vehicle_vin(d), "external_power_state": "connected",
                      "can_door_state": "0"}
        elif fix is not None and d.model in OBD_MODELS:
            speed, acc = float(fix["speed_kmh"]), bool(fix["acc_on"])
            inputs = [
                sensor_row("OBD: RPM", "obd_rpm", "rpm", engine_rpm(speed, acc), ""),
                sensor_row("OBD: Speed", "obd_speed", "speed", round(speed, 1), "km/h"),
                sensor_row("OBD: Coolant temperature", "obd_coolant_t", "temperature",
                        90.0 if acc else 15.0 + d.index % 6, "°C"),
                sensor_row("OBD: Module voltage", "obd_control_module_voltage", "power",
                        board_voltage(d, acc), "V"),
            ]
            states = {"obd_vin": vehicle_vin(d), "obd_dtc_number": 0, "obd_mil_activated_distance": 0.0}
        return {"user_time": head["user_time"], "inputs": inputs, "states": states,
                "update_time": head["update_time"]}

    def tracker_get_fuel(self, call: Call) -> dict[str, Any]:
        d, fix, head = self._sensor_frame(call)
        inputs: list[dict[str, Any]] = []
        if fix is not None:
            litres = fuel_litres(float(fix["odometer_km"]))
            if d.model in CAN_MODELS:
                inputs = [sensor_row("Fuel level", "can_fuel_litres", "fuel", litres, "litres",
                                  units_type="litre")]
            elif d.model == "FMB920":
                inputs = [sensor_row("Fuel probe", "lls_level_1", "fuel", litres, "litres",
                                  units_type="litre")]
            elif d.model in OBD_MODELS:
                inputs = [sensor_row("Fuel level", "can_fuel", "fuel",
                                  round(100.0 * litres / FUEL_TANK_L, 1), "%")]
        return {"user_time": head["user_time"], "inputs": inputs,
                "update_time": head["update_time"]}

    def tracker_get_readings(self, call: Call) -> dict[str, Any]:
        d, fix, head = self._sensor_frame(call)
        inputs: list[dict[str, Any]] = []
        if fix is not None:
            acc = bool(fix["acc_on"])
            inputs = [
                sensor_row("Board voltage", "board_voltage", "power", board_voltage(d, acc), "V"),
                sensor_row("Device temperature", "temp_sensor", "temperature",
                        float(18 + d.index % 10 + (6 if acc else 0)), "°C"),
            ]
        return {"user_time": head["user_time"], "inputs": inputs,
                "update_time": head["update_time"]}
