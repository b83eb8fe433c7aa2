"""The Tracksolid data endpoints: accounts, devices, positions, mileage, tracks, parking, alarms.

The token endpoints are in `access.py`; SPEC.md states the rules of each method.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from fleet_pipeline.sandbox.tracksolid.protocol import (
    ALARM_MAX_WINDOW,
    MAX_PAGE_ROWS,
    PLATFORM,
    TRACK_HISTORY_MONTHS,
    TRACK_MAX_WINDOW,
    Call,
    JimiError,
    activation,
    days,
    distance,
    expiration,
    int_param,
    months_before,
    odometer,
    ok_answer,
    window,
)
from fleet_pipeline.sandbox.tracksolid.synthesis import (
    NO_ALTITUDE_MODELS,
    alarm_row,
    mileage_row,
    parking_row,
)


class DataEndpoints:
    """jimi.user.*, jimi.track.device.detail, jimi.device.* and the parking report.

    A part of `TracksolidApp` (app.py), whose constructor sets the World, knobs, clock and state read here.
    """

    # -- accounts and devices ----------------------------------------------------------------
    def child_list(self, call: Call) -> dict[str, Any]:
        target = self._target(call, "target")
        return ok_answer([{"account": a.account_id, "name": a.name, "parentAccount": a.parent_id,
                     "type": "user"}
                    for a in self.world.child_accounts(target) if a.platform == PLATFORM])

    def device_list(self, call: Call) -> dict[str, Any]:
        target = self._target(call, "target")
        return ok_answer([{"imei": d.imei, "deviceName": d.device_name, "mcType": d.model,
                     "sim": d.sim_msisdn, "expiration": expiration(d),
                     "activationTime": activation(d), "vehicleName": d.vehicle_name,
                     "vehicleNumber": d.vehicle_number, "driverName": d.driver_name,
                     "enabledFlag": 1}
                    for d in self._direct_devices(target)])

    def device_detail(self, call: Call) -> dict[str, Any]:
        d = self._device(call, call.params["imei"].strip())
        return ok_answer({"imei": d.imei, "deviceName": d.device_name, "account": d.account_id,
                    "mcType": d.model, "sim": d.sim_msisdn, "iccid": d.sim_iccid,
                    "expiration": expiration(d), "activationTime": activation(d),
                    "vehicleName": d.vehicle_name, "vehicleNumber": d.vehicle_number,
                    "driverName": d.driver_name,
                    "currentMileage": odometer(self.world.odometer_km(d.imei, self.now())),
                    "deviceGroup": "Default group", "electQuantity": ""})

    def location_list(self, call: Call) -> dict[str, Any]:
        target = self._target(call, "target")
        now = self.now()
        rows = (self._location_row(d, now) for d in self._direct_devices(target))
        return ok_answer([row for row in rows if row is not None])

    def location_get(self, call: Call) -> dict[str, Any]:
        now = self.now()
        rows = (self._location_row(d, now) for d in self._devices(call, "imeis"))
        return ok_answer([row for row in rows if row is not None])

    # -- history -----------------------------------------------------------------------------
    def track_mileage(self, call: Call) -> dict[str, Any]:
        devices = self._devices(call, "imeis")
        begin, end = window(call.params, "begin_time", "end_time")
        start_row = int_param(call.params, "start_row", default=0, minimum=0)
        page_size = min(int_param(call.params, "page_size", default=MAX_PAGE_ROWS, minimum=1),
                        MAX_PAGE_ROWS)
        per_km = 1000.0 if self.knobs.mileage_unit == "m" else 1.0
        now = self.now()
        rows: list[dict[str, Any]] = []
        totals = []
        for d in devices:
            total_km = 0.0
            for day in days(begin, min(end, now)):
                for trip in self.world.day(d.imei, day).trips:
                    if begin <= trip.start < end and trip.end <= now:
                        total_km += trip.distance_km
                        rows.append(mileage_row(d, trip, per_km))
            totals.append({"imei": d.imei, "totalMileage": distance(total_km * per_km, per_km)})
        page = rows[start_row:start_row + page_size]
        return {"code": 0, "message": "success", "result": page, "data": totals}

    def track_list(self, call: Call) -> dict[str, Any]:
        imei = call.params["imei"].strip()
        if "," in imei:
            raise JimiError(1001, "imei must be a single IMEI")
        d = self._device(call, imei)
        begin, end = window(call.params, "begin_time", "end_time")
        now = self.now()
        if end >= now:
            raise JimiError(1001, "end_time must be earlier than the current time")
        if begin < months_before(now, TRACK_HISTORY_MONTHS):
            raise JimiError(1001, "begin_time must be within the last 3 months")
        if end - begin > TRACK_MAX_WINDOW:
            raise JimiError(1001, "time range over 7 days")
        frames = [self.world.day(d.imei, day).points for day in days(begin, end, inclusive=True)]
        frames = [f for f in frames if f.height]
        if not frames:
            return ok_answer([])
        hour = "%-H" if d.index % 4 == 1 else "%H"
        altitude = (pl.lit(0) if d.model in NO_ALTITUDE_MODELS
                    else pl.col("altitude_m").round(0).cast(pl.Int64))
        points = (pl.concat(frames, how="vertical_relaxed")
                  .filter(pl.col("gps_time").is_between(begin, end, closed="both")
                          & (pl.col("received_at") <= now))
                  .sort("gps_time")
                  .select(
                      lat=pl.col("lat").round(6), lng=pl.col("lng").round(6),
                      gpsTime=pl.col("gps_time").dt.strftime(f"%Y-%m-%d {hour}:%M:%S"),
                      gpsSpeed=pl.col("speed_kmh").round(0).cast(pl.Int64),
                      direction=(pl.col("direction_deg").round(0).cast(pl.Int64) % 360),
                      satellite=pl.col("satellites").cast(pl.Int64),
                      altitude=altitude,
                      accStatus=pl.when(pl.col("acc_on")).then(pl.lit("1")).otherwise(pl.lit("0")),
                      ignition=pl.when(pl.col("acc_on")).then(pl.lit("ON"))
                      .otherwise(pl.lit("OFF")),
                      gpsMode=pl.when(pl.col("late")).then(pl.lit("1")).otherwise(pl.lit("0")),
                  ))
        return ok_answer(points.to_dicts())

    def parking(self, call: Call) -> dict[str, Any]:
        account = self._target(call, "account")
        devices = self._devices(call, "imeis", under=account)
        start, end = window(call.params, "start_time", "end_time")
        page_size = int_param(call.params, "page_size", minimum=1, maximum=MAX_PAGE_ROWS)
        start_row = int_param(call.params, "start_row", minimum=0)
        if start_row % page_size:
            raise JimiError(1001, "start_row must be a multiple of page_size")
        acc_type = call.params.get("acc_type", "")
        if acc_type not in ("", "0", "1"):
            raise JimiError(1001, "acc_type must be 0 or 1")
        rows: list[dict[str, Any]] = []
        if acc_type:
            now = self.now()
            for d in devices:
                for day in days(start, min(end, now)):
                    for stop in self.world.day(d.imei, day).stops:
                        if (stop.kind == "parking" and start <= stop.start < end
                                and stop.end <= now and not (acc_type == "1" and stop.ignition_on)):
                            rows.append(parking_row(d, stop))
        return {"code": 0, "message": "success", "result": None,
                "data": {"rows": rows[start_row:start_row + page_size],
                         "dataTotalRows": str(len(rows))}}

    def alarm_list(self, call: Call) -> dict[str, Any]:
        devices = self._devices(call, "imeis")
        begin, end = window(call.params, "begin_time", "end_time")
        if end - begin > ALARM_MAX_WINDOW:
            raise JimiError(1001, "time range over 1 month")
        page_no = int_param(call.params, "page_no", default=1, minimum=1)
        page_size = int_param(call.params, "page_size", default=MAX_PAGE_ROWS, minimum=1,
                               maximum=MAX_PAGE_ROWS)
        now = self.now()
        found = []
        for d in devices:
            for day in days(begin, min(end, now), inclusive=True):
                for alarm in self.world.day(d.imei, day).alarms:
                    if begin <= alarm.time < end and alarm.time <= now:
                        found.append((alarm.time, d.imei, d, alarm))
        found.sort(key=lambda item: (item[0], item[1]))
        reachable = found[:self.knobs.alarm_rows_reachable]
        first = (page_no - 1) * page_size
        page = [alarm_row(d, alarm) for _, _, d, alarm in reachable[first:first + page_size]]
        return {"code": "0", "msg": "success", "result": page}
