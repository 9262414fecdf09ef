"""The edge's adapters: the I/O behind the pure layers (stores, sockets, relay client).

Each module implements one interface of a pure module with one technology, for example
``memory_location`` and ``redis_location`` for :class:`sipedge.location.LocationStore`.
"""
