"""Tracksolid Pro (Jimi IoT): the signed form-POST API, its token lifecycle and its report limits.

``client.TracksolidClient`` returns vendor rows untouched; the schema layer types them.
"""
