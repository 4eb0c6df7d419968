"""The model FPS game of gamebed: wire format, server, client, clock sync, recorder.

Nothing here needs privileges; it runs on loopback, in namespaces or in guests.
"""
