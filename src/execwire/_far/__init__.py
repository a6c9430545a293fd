"""The far side: stdlib-only modules that run on Python >= 3.6 and are shipped at start-up.

The near side imports these very same modules, so both ends share one protocol.
"""
