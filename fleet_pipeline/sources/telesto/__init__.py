"""Telesto inventory API (``GET https://telesto.app/v2/products``): products and stock on hand.

``client.TelestoClient`` returns the vendor rows untouched (every value a string, nulls as
``""``, ``created`` without a time zone); typing belongs to the schema layer. Its one hard job is
the rate limit: 100 requests per hour per IP, and going over blocks the IP for 15 minutes, so the
client keeps a cross-process hourly budget and refuses a call rather than earn the block.
"""
