"""The Navixy API methods this client calls, and which fields of their answers are date-times.

The field lists are what ``timezones.convert_times`` turns into naive UTC; a field missing here
would reach the schema layer as a user-local string.
"""

VENDOR = "navixy"

USER_AUTH = "user/auth"
USER_GET_INFO = "user/get_info"
TRACKER_LIST = "tracker/list"
GET_STATES = "tracker/get_states"
GET_LAST_GPS_POINT = "tracker/get_last_gps_point"
GET_DIAGNOSTICS = "tracker/get_diagnostics"
GET_FUEL = "tracker/get_fuel"
GET_READINGS = "tracker/get_readings"
TRACK_LIST = "track/list"
TRACK_READ = "track/read"
HISTORY_LIST = "history/tracker/list"
MILEAGE_READ = "tracker/stats/mileage/read"

# Dotted paths, ``*`` = every value of a map or item of a list.
USER_TIME_FIELDS = ("user_info.creation_date", "master.creation_date")
STATE_TIME_FIELDS = (
    "gps.updated", "gsm.updated", "movement_status_update", "ignition_update", "last_update",
    "battery_update", "inputs_update", "outputs_update", "additional.*.updated",
    "actual_track_update",
)
SENSOR_TIME_FIELDS = ("user_time", "update_time")
POINT_TIME_FIELDS = ("get_time",)
TRIP_TIME_FIELDS = ("start_date", "end_date", "points_list.*.get_time")
EVENT_TIME_FIELDS = ("time",)
