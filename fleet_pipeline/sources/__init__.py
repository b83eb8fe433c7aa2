"""One package per vendor platform: its client (auth, signing, paging, limits), assets and schemas.

Adding a vendor means adding a package here; no vendor package imports another.
"""
