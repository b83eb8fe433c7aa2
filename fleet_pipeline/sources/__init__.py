"""One package per vendor platform: its client (auth, signing, paging, limits), settings, schemas,
resource and assets, and a ``SPEC`` (``spec.VendorSpec``) that ``registry.VENDORS`` lists.

A new vendor is one package here and one line in ``registry.py`` (CONTRIBUTING.md has the whole
recipe); no vendor package imports another.
"""
