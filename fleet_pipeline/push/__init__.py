"""The Tracksolid push receiver (issue 19): Jimi's servers POST telemetry that no poll returns.

`protocol` is the wire format both sides share (the documented push paths, the envelope, the
acknowledgement); `landing` writes and reads the landing files (the contract with the warehouse
load: fsync'd, append-only JSON lines); `receiver` is the ASGI application; `server` runs it
under uvicorn for ``fleet-pipeline push-receiver``. docs/push.md explains the choices.
"""
