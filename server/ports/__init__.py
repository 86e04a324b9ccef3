"""Ports: the typing.Protocols through which core talks to the outside world.

One module per kind of outside thing (store, broker, firmware catalog, clock). Core imports
only these; adapters (server/store, server/mqtt, server/firmware) implement them; app.py wires.
"""
