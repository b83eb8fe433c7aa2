"""AOVX cloud (RuoYi backend, e.g. ``https://cloud.aovx.com/prod``): the OTA report of terminals.

``client.AovxClient`` returns report rows exactly as sent: ``total``/``size`` strings are read for
paging only, ``upgradeInfo`` stays a JSON string and times stay vendor strings; parsing and typing
belong to the schema layer. Terminal ids (AOVX's 32-hex device ids) must be known: the vendor
documents no listing call (the sandbox offers one, ``terminals()``).
"""
